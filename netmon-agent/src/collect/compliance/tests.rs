//! The checks on fixture roots (tests/fixtures/compliance/): `hardened`
//! passes every check, `defaults` (Debian's defaults, and worse) fails
//! every one, `bare` (nothing installed, no systemd, a private /tmp) is not
//! applicable to any, `broken` is full of odd lines. Each test copies its
//! root into a temporary directory and adds what git cannot hold (/tmp
//! and its modes).

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{
    firewall::{self, Live},
    nft::{self, Chain, Ruleset},
    *,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compliance")
        .join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if t.is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A copy of fixture `name`.
fn root(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture(name), dir.path());
    dir
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// A /tmp of `mode` holding `files` (name, mode).
fn make_tmp(root: &Path, mode: u32, files: &[(&str, u32)]) {
    let tmp = root.join("tmp");
    fs::create_dir_all(tmp.join("sub")).unwrap();
    for (name, m) in files {
        let p = tmp.join(name);
        fs::write(&p, "x").unwrap();
        chmod(&p, *m);
    }
    chmod(&tmp, mode);
}

fn opts(root: &Path) -> Options {
    Options {
        compliance_interval: Duration::from_secs(3600),
        compliance_root: root.into(),
        compliance_tmp_scan_limit: 1000,
        compliance_max_changes: 1000,
    }
}

fn host(root: &Path) -> Host {
    Host {
        root: root.into(),
        live: false,
        tmp_scan_limit: 1000,
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn by_id(r: &Report) -> BTreeMap<&str, &CheckResult> {
    r.cis_results
        .iter()
        .map(|c| (c.check_id.as_str(), c))
        .collect()
}

fn assert_all(r: &Report, status: Status) {
    for c in &r.cis_results {
        assert_eq!(c.status, status, "{}: {}", c.check_id, c.evidence);
    }
}

#[test]
fn the_seeds_ids_and_names_in_its_order() {
    let ids: Vec<(&str, &str)> = ALL.iter().map(|c| (c.id, c.name)).collect();
    assert_eq!(
        ids,
        [
            ("CIS-SSH-ROOT", "Root login disabled over SSH"),
            ("CIS-FW-UFW", "Firewall enabled (UFW)"),
            ("CIS-TIME-SYNC", "Time synchronization configured (chrony)"),
            ("CIS-AUDITD", "Auditd service running"),
            ("CIS-APPARMOR", "AppArmor enabled"),
            ("CIS-PASS-EXP", "Password expiration policy enforced"),
            ("CIS-PASS-COMPLEX", "Password complexity policy enabled"),
            ("CIS-WORLD-WRITABLE", "No world writable files in /tmp"),
            ("CIS-CRAMFS", "Unused filesystem cramfs disabled"),
            ("CIS-GDM-AUTOLOGIN", "GDM auto-login disabled"),
        ]
    );
}

#[test]
fn a_hardened_host_passes_every_check() {
    let dir = root("hardened");
    make_tmp(dir.path(), 0o1777, &[("ok", 0o644), ("sub/also-ok", 0o600)]);
    let r = Compliance::new(&opts(dir.path())).scan(at(0));
    assert_all(&r, Status::Pass);
    let c = by_id(&r);
    let evidence = |id: &str| c[id].evidence.as_str();
    assert_eq!(
        evidence("CIS-SSH-ROOT"),
        "/etc/ssh/sshd_config.d/10-hardening.conf:2: PermitRootLogin no"
    );
    assert!(
        evidence("CIS-FW-UFW").starts_with("/etc/ufw/ufw.conf:5: ENABLED=yes; ufw.service is active (the live ruleset is not read: the root is "),
        "{}",
        evidence("CIS-FW-UFW")
    );
    assert_eq!(
        evidence("CIS-TIME-SYNC"),
        "chrony.service is active (/run/systemd/units/invocation:chrony.service)"
    );
    assert_eq!(
        evidence("CIS-AUDITD"),
        "auditd.service is active (/run/systemd/units/invocation:auditd.service)"
    );
    assert_eq!(
        evidence("CIS-APPARMOR"),
        "AppArmor is enabled; 3 profiles in enforce mode, 2 in complain mode, 5 loaded (/sys/kernel/security/apparmor/profiles)"
    );
    assert_eq!(
        evidence("CIS-PASS-EXP"),
        "/etc/login.defs:11: PASS_MAX_DAYS 90"
    );
    assert_eq!(
        evidence("CIS-PASS-COMPLEX"),
        "/etc/pam.d/common-password:5: password\trequisite\t\t\tpam_pwquality.so retry=3 minlen=14"
    );
    assert_eq!(
        evidence("CIS-WORLD-WRITABLE"),
        "/tmp is mode 1777; no world-writable file among 3 entries"
    );
    assert_eq!(
        evidence("CIS-CRAMFS"),
        "/etc/modprobe.d/cramfs.conf:2: install cramfs /bin/false; /etc/modprobe.d/cramfs.conf:3: blacklist cramfs"
    );
    assert_eq!(
        evidence("CIS-GDM-AUTOLOGIN"),
        "/etc/gdm3/custom.conf:10: AutomaticLoginEnable = false"
    );
    assert!(
        c.values()
            .all(|c| c.unavailable.is_none() && c.since == at(0))
    );
    assert_eq!(
        r.score,
        Score {
            passed: 10,
            total: 10,
            percent: 100,
            failed: 0,
            not_applicable: 0,
            percent_applicable: Some(100),
        }
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn a_host_with_the_defaults_fails_every_check() {
    let dir = root("defaults");
    make_tmp(
        dir.path(),
        0o777,
        &[("a-secret", 0o666), ("sub/b", 0o777), ("fine", 0o644)],
    );
    let r = Compliance::new(&opts(dir.path())).scan(at(0));
    assert_all(&r, Status::Fail);
    let c = by_id(&r);
    let evidence = |id: &str| c[id].evidence.as_str();
    assert_eq!(
        evidence("CIS-SSH-ROOT"),
        "PermitRootLogin is not set in /etc/ssh/sshd_config or its includes: OpenSSH's default, \
         prohibit-password, lets root log in with a key; but the Match block at \
         /etc/ssh/sshd_config:28 sets PermitRootLogin prohibit-password for the connections it matches"
    );
    assert_eq!(
        evidence("CIS-FW-UFW"),
        "UFW: /etc/ufw/ufw.conf:2: ENABLED=no; none of nftables.service, netfilter-persistent.service, \
         firewalld.service, iptables.service is active (the live ruleset is not read: the root is "
            .to_owned()
            + &dir.path().display().to_string()
            + ", not /)"
    );
    assert_eq!(
        evidence("CIS-TIME-SYNC"),
        "no time synchronization daemon is active: chrony.service is not installed; \
         systemd-timesyncd.service is installed but not active (no invocation in /run/systemd/units)"
    );
    assert_eq!(evidence("CIS-AUDITD"), "auditd.service is not installed");
    assert_eq!(
        evidence("CIS-APPARMOR"),
        "AppArmor is in the kernel but disabled (/sys/module/apparmor/parameters/enabled: N)"
    );
    assert_eq!(
        evidence("CIS-PASS-EXP"),
        "/etc/login.defs:7: PASS_MAX_DAYS 99999 (more than 365 days)"
    );
    assert_eq!(
        evidence("CIS-PASS-COMPLEX"),
        "no pam_pwquality.so or pam_cracklib.so on a password line of /etc/pam.d/common-password"
    );
    assert_eq!(
        evidence("CIS-WORLD-WRITABLE"),
        "/tmp is mode 0777: world-writable without the sticky bit; 2 world-writable files in /tmp: /tmp/a-secret, /tmp/sub/b"
    );
    assert_eq!(
        evidence("CIS-CRAMFS"),
        "cramfs can be loaded: no `install cramfs /bin/false` or `blacklist cramfs` in modprobe.d"
    );
    assert_eq!(
        evidence("CIS-GDM-AUTOLOGIN"),
        "/etc/gdm3/custom.conf:2: AutomaticLoginEnable = true; /etc/gdm3/custom.conf:4: TimedLoginEnable=1"
    );
    assert_eq!(r.score.passed, 0);
    assert_eq!(r.score.percent, 0);
    assert_eq!(r.score.percent_applicable, Some(0));
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn a_bare_host_is_not_applicable_to_any_check() {
    let r = Compliance::new(&opts(&fixture("bare"))).scan(at(0));
    assert_all(&r, Status::NotApplicable);
    let c = by_id(&r);
    let no_systemd =
        "systemd is not running here (no /run/systemd/system), so service state is unknown";
    assert_eq!(c["CIS-TIME-SYNC"].unavailable.as_deref(), Some(no_systemd));
    assert_eq!(c["CIS-AUDITD"].unavailable.as_deref(), Some(no_systemd));
    assert!(
        c["CIS-FW-UFW"]
            .unavailable
            .as_deref()
            .unwrap()
            .starts_with(&format!(
                "{no_systemd}; UFW: not installed (no /etc/ufw/ufw.conf)"
            )),
        "{}",
        c["CIS-FW-UFW"].evidence
    );
    assert_eq!(
        c["CIS-WORLD-WRITABLE"].unavailable.as_deref(),
        Some(
            "the agent runs with PrivateTmp=: its /tmp is its own \
             (/tmp/systemd-private-1f2e3d4c5b6a79880123456789abcdef-netmon-agent.service-Hx3b2Q/tmp), \
             not the host's"
        )
    );
    // Not installed: not applicable, and no reason of unavailability.
    for (id, evidence) in [
        (
            "CIS-SSH-ROOT",
            "the OpenSSH server is not installed (no /etc/ssh/sshd_config)",
        ),
        ("CIS-APPARMOR", "the kernel runs SELinux, not AppArmor"),
        (
            "CIS-PASS-EXP",
            "no /etc/login.defs: the shadow password tools are not installed",
        ),
        (
            "CIS-PASS-COMPLEX",
            "no PAM password stack (/etc/pam.d/common-password, /etc/pam.d/system-auth, /etc/pam.d/password-auth)",
        ),
        (
            "CIS-CRAMFS",
            "the kernel has no cramfs and cannot load modules (no /proc/modules)",
        ),
        (
            "CIS-GDM-AUTOLOGIN",
            "GDM is not installed (no /etc/gdm3/custom.conf)",
        ),
    ] {
        assert_eq!(c[id].evidence, evidence, "{id}");
        assert_eq!(c[id].unavailable, None, "{id}");
    }
    assert_eq!(
        r.score,
        Score {
            passed: 0,
            total: 10,
            percent: 0,
            failed: 0,
            not_applicable: 10,
            percent_applicable: None,
        }
    );
}

#[test]
fn odd_lines_are_problems_logged_once_and_stop_nothing() {
    let mut c = Compliance::new(&opts(&fixture("broken")));
    let r = c.scan(at(0));
    assert_eq!(r.cis_results.len(), 10);
    let by = by_id(&r);
    assert_eq!(by["CIS-SSH-ROOT"].status, Status::Fail);
    assert_eq!(
        by["CIS-SSH-ROOT"].evidence,
        "/etc/ssh/sshd_config:2: PermitRootLogin (no value)"
    );
    assert_eq!(
        by["CIS-PASS-EXP"].evidence,
        "/etc/login.defs:1: PASS_MAX_DAYS ninety (not a number)"
    );
    assert_eq!(
        by["CIS-PASS-COMPLEX"].status,
        Status::Pass,
        "line 4 is whole"
    );
    assert_eq!(
        by["CIS-GDM-AUTOLOGIN"].status,
        Status::Pass,
        "[daemon without `]` is no section"
    );
    assert_eq!(
        r.problems,
        [
            "/etc/ssh/sshd_config:1: Include nested more than 16 deep",
            "/etc/ssh/sshd_config:2: PermitRootLogin (no value)",
            "/etc/ssh/sshd_config:3: PermitRootLogin maybe (not a value sshd knows)",
            "/etc/login.defs:1: PASS_MAX_DAYS `ninety` is not a number",
            "/etc/pam.d/common-password:1: not a PAM rule",
            "/etc/pam.d/common-password:2: not a PAM rule",
            "/etc/pam.d/common-password:3: not a PAM rule",
            "/etc/gdm3/custom.conf:1: a section header without `]`",
            "/etc/gdm3/custom.conf:3: not a `key=value` line",
            "/etc/gdm3/custom.conf:5: not a `key=value` line",
        ]
    );
    let logged = c.logged.clone();
    assert_eq!(logged.len(), r.problems.len());
    // The same problems next time: nothing new to log.
    let again = c.scan(at(60));
    assert_eq!(again.problems, r.problems);
    assert_eq!(c.logged, logged);
}

#[test]
fn sshd_first_value_includes_and_match_blocks() {
    let dir = root("hardened");
    let h = host(dir.path());
    let ssh = |h: &Host| checks::ssh_root(h, &mut Vec::new());
    let conf = dir.path().join("etc/ssh/sshd_config");
    // A relative include, a Match block closed by `Match all`.
    fs::write(
        &conf,
        "Include sshd_config.d/90-*.conf\nMatch User x\n  PermitRootLogin no\nMatch all\nPermitRootLogin no\n",
    )
    .unwrap();
    assert_eq!(
        ssh(&h),
        Outcome::fail("/etc/ssh/sshd_config.d/90-later.conf:1: PermitRootLogin yes")
    );
    // A Match block inside an included file ends with that file.
    fs::write(
        dir.path().join("etc/ssh/sshd_config.d/90-later.conf"),
        "Match Group adm\nPermitRootLogin yes\n",
    )
    .unwrap();
    assert_eq!(
        ssh(&h),
        Outcome::fail(
            "/etc/ssh/sshd_config:5: PermitRootLogin no; but the Match block at \
             /etc/ssh/sshd_config.d/90-later.conf:2 sets PermitRootLogin yes for the connections it matches"
        )
    );
    // An include that cannot be read before any value: unknown.
    fs::write(
        &conf,
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n",
    )
    .unwrap();
    fs::create_dir(dir.path().join("etc/ssh/sshd_config.d/05-cloud.conf")).unwrap();
    let o = ssh(&h);
    assert_eq!(o.status, Status::NotApplicable);
    assert!(
        o.unavailable
            .as_deref()
            .unwrap()
            .starts_with("cannot read /etc/ssh/sshd_config.d/05-cloud.conf: "),
        "{o:?}"
    );
    // No configuration, but sshd installed: its default applies.
    fs::remove_dir_all(dir.path().join("etc/ssh")).unwrap();
    fs::create_dir_all(dir.path().join("usr/sbin")).unwrap();
    fs::write(dir.path().join("usr/sbin/sshd"), "").unwrap();
    assert_eq!(ssh(&h).status, Status::Fail);
}

#[test]
fn glob_and_wildcards() {
    for (p, s, want) in [
        ("*.conf", "a.conf", true),
        ("*.conf", "a.conf.bak", false),
        ("*", "", true),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("*a*b", "xxaxxb", true),
        ("*a*b", "xxaxxbx", false),
        ("", "", true),
        ("", "a", false),
    ] {
        assert_eq!(
            checks::wildcard(p.as_bytes(), s.as_bytes()),
            want,
            "{p} {s}"
        );
    }
    let dir = root("hardened");
    fs::write(dir.path().join("etc/ssh/sshd_config.d/.hidden.conf"), "").unwrap();
    assert_eq!(
        checks::glob(&host(dir.path()), "/etc/ssh/sshd_config.d/*.conf"),
        [
            "/etc/ssh/sshd_config.d/10-hardening.conf",
            "/etc/ssh/sshd_config.d/90-later.conf"
        ]
    );
}

#[test]
fn password_expiry_bounds() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("etc")).unwrap();
    let h = host(dir.path());
    for (text, status) in [
        ("PASS_MAX_DAYS 365\n", Status::Pass),
        ("PASS_MAX_DAYS 1\n", Status::Pass),
        ("PASS_MAX_DAYS 366\n", Status::Fail),
        ("PASS_MAX_DAYS -1\n", Status::Fail),
        ("PASS_MAX_DAYS 0\n", Status::Fail),
        ("# PASS_MAX_DAYS 30\n", Status::Fail),
        ("PASS_MAX_DAYS 30\nPASS_MAX_DAYS 400\n", Status::Fail),
    ] {
        fs::write(dir.path().join("etc/login.defs"), text).unwrap();
        assert_eq!(
            checks::password_expiry(&h, &mut Vec::new()).status,
            status,
            "{text}"
        );
    }
}

#[test]
fn world_writable_scan_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 0o644)).collect();
    make_tmp(dir.path(), 0o1777, &files);
    let mut h = host(dir.path());
    h.tmp_scan_limit = 10;
    let o = checks::world_writable(&h, &mut Vec::new());
    assert_eq!(o.status, Status::NotApplicable);
    assert!(
        o.unavailable
            .as_deref()
            .unwrap()
            .contains("more than 10 entries"),
        "{o:?}"
    );
    // A symbolic link to a world-writable file is not followed.
    h.tmp_scan_limit = 1000;
    let target = dir.path().join("outside");
    fs::write(&target, "").unwrap();
    chmod(&target, 0o666);
    symlink(&target, dir.path().join("tmp/link")).unwrap();
    assert_eq!(
        checks::world_writable(&h, &mut Vec::new()).status,
        Status::Pass
    );
}

#[test]
fn cramfs_loaded_or_built_in_fails() {
    let dir = root("hardened");
    let h = host(dir.path());
    let modules = dir.path().join("proc/modules");
    fs::write(&modules, "ext4 1 0 - Live 0x0\ncramfs 40960 0 - Live 0x0\n").unwrap();
    assert_eq!(
        checks::cramfs(&h, &mut Vec::new()),
        Outcome::fail("the cramfs module is loaded (/proc/modules:2)")
    );
    fs::remove_file(&modules).unwrap();
    fs::write(
        dir.path().join("proc/filesystems"),
        "nodev\tsysfs\n\tcramfs\n",
    )
    .unwrap();
    assert_eq!(
        checks::cramfs(&h, &mut Vec::new()),
        Outcome::fail(
            "cramfs is built into the kernel (/proc/filesystems:2): it cannot be disabled"
        )
    );
}

#[test]
fn apparmor_without_enforced_profiles_fails() {
    let dir = root("hardened");
    fs::write(
        dir.path().join("sys/kernel/security/apparmor/profiles"),
        "a (complain)\nb (complain)\n",
    )
    .unwrap();
    let o = checks::apparmor(&host(dir.path()), &mut Vec::new());
    assert_eq!(o.status, Status::Fail, "{o:?}");
    fs::remove_file(dir.path().join("sys/kernel/security/apparmor/profiles")).unwrap();
    let o = checks::apparmor(&host(dir.path()), &mut Vec::new());
    assert_eq!(o.status, Status::Pass, "enabled, profiles unlisted: {o:?}");
}

fn chain(
    family: u8,
    table: &str,
    name: &str,
    hook: Option<u32>,
    policy: Option<u32>,
    rules: u64,
    drops: u64,
) -> Chain {
    Chain {
        family,
        table: table.into(),
        name: name.into(),
        hook,
        policy,
        rules,
        drops,
    }
}

#[test]
fn the_live_ruleset_decides_where_it_is_read() {
    let dir = root("defaults");
    let h = host(dir.path());
    // nf_tables is a module, not loaded: not asked (that would load it).
    assert!(matches!(
        firewall::read_live(&h, &mut Vec::new()),
        Live::NotLoaded
    ));
    let decide = |live| firewall::decide(&h, live, &mut Vec::new());
    // UFW on iptables-nft: INPUT's policy drops.
    let ufw = Ruleset {
        chains: vec![
            chain(
                nft::NFPROTO_IPV4,
                "filter",
                "INPUT",
                Some(nft::HOOK_INPUT),
                Some(nft::NF_DROP),
                9,
                0,
            ),
            chain(
                nft::NFPROTO_IPV4,
                "filter",
                "ufw-user-input",
                None,
                None,
                3,
                0,
            ),
        ],
        ..Ruleset::default()
    };
    assert_eq!(
        decide(Live::Ruleset(ufw)),
        Outcome::pass(
            "nftables ruleset (1 tables, 2 chains, 12 rules): ip filter INPUT (hook input, policy drop, 9 rules) filters the input"
        )
    );
    // firewalld: accept policy, a reject in a chain the input chain jumps to.
    let firewalld = Ruleset {
        chains: vec![
            chain(
                nft::NFPROTO_INET,
                "firewalld",
                "filter_INPUT",
                Some(nft::HOOK_INPUT),
                Some(nft::NF_ACCEPT),
                6,
                0,
            ),
            chain(
                nft::NFPROTO_INET,
                "firewalld",
                "filter_IN_public",
                None,
                None,
                4,
                1,
            ),
        ],
        ..Ruleset::default()
    };
    assert_eq!(decide(Live::Ruleset(firewalld)).status, Status::Pass);
    // Docker alone: drops on forward, nothing on input.
    let docker = Ruleset {
        chains: vec![
            chain(
                nft::NFPROTO_IPV4,
                "filter",
                "INPUT",
                Some(nft::HOOK_INPUT),
                Some(nft::NF_ACCEPT),
                0,
                0,
            ),
            chain(
                nft::NFPROTO_IPV4,
                "filter",
                "FORWARD",
                Some(2),
                Some(nft::NF_DROP),
                5,
                1,
            ),
            chain(nft::NFPROTO_IPV4, "filter", "DOCKER-USER", None, None, 1, 1),
        ],
        ..Ruleset::default()
    };
    assert_eq!(
        decide(Live::Ruleset(docker)),
        Outcome::fail(
            "nftables ruleset (1 tables, 3 chains, 6 rules): no input chain drops or rejects"
        )
    );
    assert_eq!(
        decide(Live::NotLoaded),
        Outcome::fail("no nftables ruleset (nf_tables is not loaded)")
    );
    // UFW switched on in its file, nothing loaded: said so.
    let conf = dir.path().join("etc/ufw/ufw.conf");
    fs::write(&conf, "ENABLED=yes\n").unwrap();
    assert_eq!(
        decide(Live::Ruleset(Ruleset::default())),
        Outcome::fail(
            "nftables ruleset (0 tables, 0 chains, 0 rules): no input chain drops or rejects; /etc/ufw/ufw.conf:1: ENABLED=yes, yet no rule of it is loaded"
        )
    );
    // iptables-legacy's filter table loaded: the configuration decides.
    fs::write(
        dir.path().join("proc/modules"),
        "iptable_filter 16384 1 - Live 0x0\n",
    )
    .unwrap();
    assert_eq!(
        decide(Live::NotLoaded),
        Outcome::fail(
            "/etc/ufw/ufw.conf:1: ENABLED=yes, but ufw.service is installed but not active (no invocation in \
             /run/systemd/units) (no nftables ruleset; iptables-legacy tables iptable_filter are loaded, their rules unread)"
        )
    );
    fs::write(conf, "ENABLED=no\n").unwrap();
    let units = dir.path().join("run/systemd/units");
    symlink("0a", units.join("invocation:netfilter-persistent.service")).unwrap();
    assert_eq!(
        decide(Live::Unavailable("no CAP_NET_ADMIN".into())),
        Outcome::pass(
            "netfilter-persistent.service is active (/run/systemd/units/invocation:netfilter-persistent.service) (no CAP_NET_ADMIN)"
        )
    );
}

#[test]
fn status_changes_are_kept_and_bounded() {
    let dir = root("hardened");
    make_tmp(dir.path(), 0o1777, &[]);
    let mut o = opts(dir.path());
    o.compliance_max_changes = 2;
    let mut c = Compliance::new(&o);
    c.scan(at(0));
    let defs = dir.path().join("etc/login.defs");
    fs::write(&defs, "PASS_MAX_DAYS 99999\n").unwrap();
    let r = c.scan(at(10));
    let exp = |r: &Report| by_id(r)["CIS-PASS-EXP"].clone();
    assert_eq!(exp(&r).status, Status::Fail);
    assert_eq!(exp(&r).since, at(10));
    assert_eq!(
        r.changes,
        [StatusChange {
            at: at(10),
            check_id: "CIS-PASS-EXP".into(),
            from: Status::Pass,
            to: Status::Fail,
        }]
    );
    let r = c.scan(at(20));
    assert_eq!(exp(&r).since, at(10), "unchanged");
    assert_eq!(r.changes.len(), 1);
    fs::write(&defs, "PASS_MAX_DAYS 30\n").unwrap();
    c.scan(at(30));
    fs::remove_file(&defs).unwrap();
    let r = c.scan(at(40));
    assert_eq!(r.changes.len(), 2);
    assert_eq!(r.changes_evicted, 1);
    assert_eq!(r.changes[1].to, Status::NotApplicable);
}

#[test]
fn score_as_the_seed_computes_it() {
    let result = |status| CheckResult {
        check_id: String::new(),
        check_name: String::new(),
        status,
        evidence: String::new(),
        remediation: String::new(),
        unavailable: None,
        since: at(0),
    };
    let mut results: Vec<CheckResult> = [Status::Pass; 6].into_iter().map(result).collect();
    results.extend([Status::Fail; 3].into_iter().map(result));
    results.push(result(Status::NotApplicable));
    // The seed's dashboard: "60% Compliant (6/10 checks passed)".
    assert_eq!(
        Score::of(&results),
        Score {
            passed: 6,
            total: 10,
            percent: 60,
            failed: 3,
            not_applicable: 1,
            percent_applicable: Some(67),
        }
    );
    assert_eq!(Score::of(&[]).percent, 0);
}

#[test]
fn report_json_keeps_the_seeds_fields() {
    let r = Compliance::new(&opts(&fixture("bare"))).scan(at(0));
    let v = serde_json::to_value(&r).unwrap();
    let first = &v["cis_results"][0];
    assert_eq!(first["check_id"], "CIS-SSH-ROOT");
    assert_eq!(first["check_name"], "Root login disabled over SSH");
    assert_eq!(first["status"], "NOT_APPLICABLE");
    assert!(first["evidence"].is_string());
    assert!(first["remediation"].is_string());
    assert!(first.get("unavailable").is_none(), "absent when evaluated");
    assert_eq!(first["since"], "2023-11-14T22:13:20.000Z");
    assert!(v["cis_results"][3]["unavailable"].is_string());
    assert_eq!(
        v["score"],
        serde_json::json!({"passed": 0, "total": 10, "percent": 0, "failed": 0, "not_applicable": 10, "percent_applicable": null})
    );
}

/// This machine as it is: every check answers, none panics.
#[test]
fn runs_on_this_machine() {
    let r = Compliance::new(&opts(Path::new("/"))).scan(at(0));
    assert_eq!(r.cis_results.len(), 10);
    for c in &r.cis_results {
        assert!(!c.evidence.is_empty(), "{}", c.check_id);
    }
}

// nfnetlink messages, as nft(8) writes them, for the tests below.

fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(payload);
    b.resize(b.len().next_multiple_of(4), 0);
    b
}

fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    attr(ty | 0x8000, &parts.concat())
}

fn strz(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn message(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, body: &[Vec<u8>]) -> Vec<u8> {
    let body = body.concat();
    let mut b = ((20 + body.len()) as u32).to_ne_bytes().to_vec();
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.push(family);
    b.push(0);
    b.extend_from_slice(&res_id.to_be_bytes());
    b.extend_from_slice(&body);
    b
}

fn chain_attrs(table: &str, name: &str, hook: Option<u32>, policy: Option<u32>) -> Vec<Vec<u8>> {
    let mut a = vec![attr(1, &strz(table)), attr(3, &strz(name))];
    if let Some(h) = hook {
        a.push(nest(4, &[attr(1, &be32(h)), attr(2, &be32(0))]));
        a.push(attr(7, &strz("filter")));
    }
    if let Some(p) = policy {
        a.push(attr(5, &be32(p)));
    }
    a
}

fn rule_attrs(table: &str, chain: &str, verdict: u32) -> Vec<Vec<u8>> {
    let counter = nest(1, &[attr(1, &strz("counter")), nest(2, &[])]);
    let immediate = nest(
        1,
        &[
            attr(1, &strz("immediate")),
            nest(
                2,
                &[
                    attr(1, &be32(0)),
                    nest(2, &[nest(2, &[attr(1, &be32(verdict))])]),
                ],
            ),
        ],
    );
    vec![
        attr(1, &strz(table)),
        attr(2, &strz(chain)),
        nest(4, &[counter, immediate]),
    ]
}

// NFT_MSG_NEWTABLE is 0.
const NEWTABLE: u16 = 10 << 8;
const NEWCHAIN: u16 = (10 << 8) | 3;
const NEWRULE: u16 = (10 << 8) | 6;

#[test]
fn parses_chain_and_rule_dumps() {
    let chains = [
        message(
            NEWCHAIN,
            2,
            1,
            nft::NFPROTO_INET,
            0,
            &chain_attrs("t", "input", Some(1), Some(1)),
        ),
        message(
            NEWCHAIN,
            2,
            1,
            nft::NFPROTO_INET,
            0,
            &chain_attrs("t", "sub", None, None),
        ),
        message(3, 2, 1, 0, 0, &[0i32.to_ne_bytes().to_vec()]),
    ]
    .concat();
    let mut got = Vec::new();
    let batch = nft::parse_messages(&chains, 1, &mut |family, attrs| {
        got.push((family, attrs.to_vec()))
    });
    assert_eq!(batch.unwrap(), nft::Batch::Done { interrupted: false });
    assert_eq!(got.len(), 2);
    // Another sequence number is not ours; an error is an error.
    let other = message(NEWCHAIN, 2, 9, 1, 0, &chain_attrs("x", "y", None, None));
    assert_eq!(
        nft::parse_messages(&other, 1, &mut |_, _| panic!("not ours")).unwrap(),
        nft::Batch::More { interrupted: false }
    );
    // NLMSG_ERROR: the header, the error code, the request's header.
    let mut eperm = 36u32.to_ne_bytes().to_vec();
    eperm.extend_from_slice(&2u16.to_ne_bytes());
    eperm.extend_from_slice(&0u16.to_ne_bytes());
    eperm.extend_from_slice(&1u32.to_ne_bytes());
    eperm.extend_from_slice(&0u32.to_ne_bytes());
    eperm.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
    eperm.extend_from_slice(&[0; 16]);
    let err = nft::parse_messages(&eperm, 1, &mut |_, _| {}).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    // Garbage never panics: every prefix of a valid datagram, and noise.
    for n in 0..chains.len() {
        let _ = nft::parse_messages(&chains[..n], 1, &mut |_, attrs| {
            nft::attrs(attrs).count();
        });
    }
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = nft::parse_messages(&noise, 0, &mut |_, a| {
        nft::attrs(a).count();
    });
    assert_eq!(
        nft::attrs(&[8, 0, 1, 0, 1]).count(),
        0,
        "length past the end"
    );
}

/// Sends a batch of nftables changes and waits for each one's ack.
fn apply(sock: &std::os::fd::OwnedFd, changes: &[Vec<u8>]) {
    use std::os::fd::AsRawFd;
    let begin = message(0x10, nft::NLM_F_REQUEST, 100, 0, 10, &[]);
    let end = message(0x11, nft::NLM_F_REQUEST, 200, 0, 10, &[]);
    let batch = [vec![begin], changes.to_vec(), vec![end]].concat().concat();
    // SAFETY: a valid buffer of the length given.
    let n = unsafe { libc::send(sock.as_raw_fd(), batch.as_ptr().cast(), batch.len(), 0) };
    assert_eq!(
        n,
        batch.len() as isize,
        "send: {}",
        std::io::Error::last_os_error()
    );
    let mut acks = 0;
    let mut buf = vec![0u8; 65536];
    while acks < changes.len() {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert!(n > 0, "recv: {}", std::io::Error::last_os_error());
        let mut b = &buf[..n as usize];
        while b.len() >= 20 {
            let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            if ty == 2 {
                let code = i32::from_ne_bytes(b[16..20].try_into().unwrap());
                assert_eq!(
                    code,
                    0,
                    "the kernel refused a change: {}",
                    std::io::Error::from_raw_os_error(-code)
                );
                acks += 1;
            }
            b = &b[len.next_multiple_of(4).min(b.len())..];
        }
    }
}

/// The real kernel, in a network namespace of its own: an empty ruleset,
/// then an accepting input chain, then one that drops.
#[test]
fn reads_the_live_ruleset() {
    if crate::test_root::skip_privileged() {
        return;
    }
    std::thread::spawn(|| {
        // SAFETY: unshare on this thread only; it exits afterwards.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
        let rs = nft::read().expect("reading an empty ruleset");
        assert_eq!(rs, Ruleset::default());
        let sock = nft::open().unwrap();
        let flags = nft::NLM_F_REQUEST | 0x4 | 0x400; // ACK, CREATE
        apply(
            &sock,
            &[
                message(NEWTABLE, flags, 101, nft::NFPROTO_INET, 0, &[attr(1, &strz("t"))]),
                message(NEWCHAIN, flags, 102, nft::NFPROTO_INET, 0, &chain_attrs("t", "in", Some(nft::HOOK_INPUT), Some(nft::NF_ACCEPT))),
                message(NEWCHAIN, flags, 103, nft::NFPROTO_INET, 0, &chain_attrs("t", "sub", None, None)),
                message(NEWRULE, flags | 0x800, 104, nft::NFPROTO_INET, 0, &rule_attrs("t", "in", nft::NF_ACCEPT)),
            ],
        );
        let rs = nft::read().unwrap();
        assert_eq!(
            rs.chains,
            [
                chain(nft::NFPROTO_INET, "t", "in", Some(nft::HOOK_INPUT), Some(nft::NF_ACCEPT), 1, 0),
                chain(nft::NFPROTO_INET, "t", "sub", None, None, 0, 0),
            ]
        );
        assert_eq!(rs.input_filter(), None, "accepting everything filters nothing");
        apply(
            &sock,
            &[message(NEWRULE, flags | 0x800, 105, nft::NFPROTO_INET, 0, &rule_attrs("t", "sub", nft::NF_DROP))],
        );
        let rs = nft::read().unwrap();
        assert_eq!(rs.chains[1].drops, 1);
        assert_eq!(rs.input_filter().map(|c| c.name.as_str()), Some("in"));
        // The whole check, reading this namespace's ruleset.
        let dir = root("defaults");
        // The fixture's kernel loads modules and has not loaded nf_tables,
        // but has it built in: the ruleset is read.
        fs::create_dir_all(dir.path().join("proc/sys/kernel")).unwrap();
        fs::write(dir.path().join("proc/sys/kernel/osrelease"), "6.1.0-test\n").unwrap();
        let builtin = dir.path().join("lib/modules/6.1.0-test");
        fs::create_dir_all(&builtin).unwrap();
        fs::write(
            builtin.join("modules.builtin"),
            "kernel/fs/ext4/ext4.ko\nkernel/net/netfilter/nf_tables.ko\n",
        )
        .unwrap();
        let mut h = host(dir.path());
        h.live = true;
        let o = firewall::check(&h, &mut Vec::new());
        assert_eq!(
            o,
            Outcome::pass("nftables ruleset (1 tables, 2 chains, 2 rules): inet t in (hook input, policy accept, 1 rules) filters the input"),
        );
    })
    .join()
    .unwrap();
}

/// The OpenAPI schema the API will serve, named apart from the others.
#[test]
fn report_schema() {
    use utoipa::{PartialSchema, ToSchema};
    assert_eq!(Report::name(), "ComplianceReport");
    assert_eq!(CheckResult::name(), "ComplianceCheck");
    let v = serde_json::to_value(<Report as PartialSchema>::schema()).unwrap();
    let props: Vec<&String> = v["properties"].as_object().unwrap().keys().collect();
    assert_eq!(
        props,
        [
            "changes",
            "changes_evicted",
            "cis_results",
            "problems",
            "root",
            "score"
        ]
    );
}
