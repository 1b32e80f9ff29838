//! The compliance, packages and security collectors in the running agent: their
//! views, `/metrics` families and history series, through the registry.
//!
//! Compliance reads a fixture root (tests/fixtures/compliance/hardened) so
//! the results do not depend on the test machine; packages reads the test
//! machine's own dpkg database and must list exactly what `dpkg-query -W`
//! lists.
//!
//! Privileged: run as root (`cargo xtask test` does).

mod common;

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// The seed's ten ids, in its order.
const IDS: [&str; 10] = [
    "CIS-SSH-ROOT",
    "CIS-FW-UFW",
    "CIS-TIME-SYNC",
    "CIS-AUDITD",
    "CIS-APPARMOR",
    "CIS-PASS-EXP",
    "CIS-PASS-COMPLEX",
    "CIS-WORLD-WRITABLE",
    "CIS-CRAMFS",
    "CIS-GDM-AUTOLOGIN",
];

/// `GET path` until it answers 200 with `done(body)` (a collector's view
/// is a 503 until its first cycle ends).
fn wait_ok(agent: &Agent<'_>, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let last = agent.try_request(path, &[("X-API-KEY", TEST_KEY)]);
        if let Ok((200, body)) = &last
            && done(body)
        {
            return body.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET {path}: {last:?}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metric_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn compliance_is_served_exported_and_recorded() {
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compliance/hardened");
    let root_arg = format!("--compliance-root={}", root.display());
    let agent = Agent::start(b.ns(), &["--iface=eth0", "--interval=200ms", &root_arg]);

    let r = wait_ok(&agent, "/api/v1/compliance", |r| {
        r["cis_results"].is_array()
    });
    let ids: Vec<&str> = r["cis_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, IDS, "{r:#}");
    let ssh = &r["cis_results"][0];
    assert_eq!(ssh["status"], "PASS", "{ssh:#}");
    assert_eq!(
        ssh["evidence"],
        "/etc/ssh/sshd_config.d/10-hardening.conf:2: PermitRootLogin no"
    );
    assert_eq!(ssh["check_name"], "Root login disabled over SSH");
    let score = &r["score"];
    let n = |k: &str| score[k].as_u64().unwrap();
    assert_eq!(n("total"), 10);
    assert_eq!(
        n("passed") + n("failed") + n("not_applicable"),
        10,
        "{score:#}"
    );
    assert_eq!(
        n("percent"),
        (100.0 * n("passed") as f64 / 10.0).round() as u64
    );
    assert!(r["collection"].is_object(), "{r:#}");

    let m = http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    assert_eq!(
        metric_line(&m, "netmon_compliance_score_percent "),
        Some(format!("netmon_compliance_score_percent {}", n("percent")).as_str()),
        "{m}"
    );
    assert!(
        m.contains(
            "netmon_compliance_check_pass{check_id=\"CIS-SSH-ROOT\",check_name=\"Root login disabled over SSH\"} 1\n"
        ),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "netmon_compliance_checks{{status=\"PASS\"}} {}\n",
            n("passed")
        )),
        "{m}"
    );

    // The score and each check's result go to the history.
    let series = agent.wait_for("/api/v1/series?family=compliance_check", WAIT, |s| {
        s["series"].as_array().is_some_and(|l| l.len() == 10)
    });
    assert!(
        series["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "compliance_check/CIS-SSH-ROOT"),
        "{series:#}"
    );
    agent.wait_for("/api/v1/series?family=compliance", WAIT, |s| {
        s["series"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s == "compliance"))
    });
}

/// What `dpkg-query -W` lists: (name, architecture, version, status word).
fn dpkg_query() -> BTreeSet<(String, String, String, String)> {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package}\\t${Architecture}\\t${Version}\\t${db:Status-Status}\\n",
        ])
        .output()
        .expect("running dpkg-query");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].into(), f[1].into(), f[2].into(), f[3].into())
        })
        .collect()
}

#[test]
fn packages_lists_exactly_what_dpkg_query_lists() {
    skip_unless_root!();
    assert!(
        Path::new("/var/lib/dpkg/status").exists(),
        "this test needs a Debian machine (dpkg)"
    );
    let pair = Pair::new();
    let b = pair.b();
    let agent = Agent::start(b.ns(), &["--iface=eth0", "--interval=200ms"]);
    let r = wait_ok(&agent, "/api/v1/packages", |r| {
        r["inventory"]["packages"].is_array()
    });
    let ours: BTreeSet<(String, String, String, String)> = r["inventory"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            (s("name"), s("architecture"), s("version"), s("status"))
        })
        .collect();
    let theirs = dpkg_query();
    assert!(!theirs.is_empty());
    let missing: Vec<_> = theirs.difference(&ours).take(5).collect();
    let extra: Vec<_> = ours.difference(&theirs).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "dpkg-query lists {} packages, the agent {}; missing {missing:?}, extra {extra:?}",
        theirs.len(),
        ours.len()
    );
    assert_eq!(r["inventory"]["omitted"], 0);

    // changed_since filters the changes; a bad one is a 400 naming it.
    let now = agent.get("/api/v1/packages?changed_since=now");
    assert_eq!(now["changes"], Value::Array(vec![]), "{now:#}");
    let bad = http_get_ok(
        b.ns(),
        "/api/v1/packages?changed_since=yesterday",
        &[("X-API-KEY", TEST_KEY)],
    );
    assert_eq!(bad.status, 400, "{bad:#?}");
    assert!(bad.text.contains("changed_since"), "{}", bad.text);

    let m = http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    assert_eq!(
        metric_line(&m, "netmon_packages "),
        Some(format!("netmon_packages {}", theirs.len()).as_str()),
        "{m}"
    );
}

/// A process started from a copy of a binary in /tmp is a `process_in_tmp`
/// finding with its pid within two cycles (by the cycle count); once its file is deleted it is also a
/// `deleted_executable`; when it ends, the findings go.
#[test]
fn a_process_run_from_tmp_is_a_security_finding() {
    skip_unless_root!();
    let pair = Pair::new();
    let b = pair.b();
    let dir = tempfile::Builder::new()
        .prefix("netmon-e2e-sec-")
        .tempdir_in("/tmp")
        .unwrap();
    let copy = dir.path().join("sleeper");
    std::fs::copy("/bin/sleep", &copy).unwrap();
    let agent = Agent::start(
        b.ns(),
        &["--iface=eth0", "--interval=200ms", "--security-interval=1s"],
    );
    // The cycle count published before the process starts: the cycle after
    // the next one at the latest must list it (the next may have begun
    // before the process did).
    let before = wait_ok(&agent, "/api/v1/security", |_| true)["collection"]["cycles"]
        .as_u64()
        .unwrap();
    let mut child = Command::new(&copy).arg("60").spawn().unwrap();
    let pid = child.id();
    let has = |r: &Value, kind: &str| {
        r["findings"]
            .as_array()
            .is_some_and(|l| l.iter().any(|f| f["pid"] == pid && f["kind"] == kind))
    };
    let r = wait_ok(&agent, "/api/v1/security", |r| has(r, "process_in_tmp"));
    let cycles = r["collection"]["cycles"].as_u64().unwrap();
    // Cycles are 1 s apart and the view is polled every 100 ms, so the
    // first reading that lists it is the one seen here.
    assert!(
        cycles <= before + 2,
        "listed in cycle {cycles}, started after cycle {before}"
    );
    let f = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["pid"] == pid)
        .unwrap()
        .clone();
    assert_eq!(f["exe"], copy.display().to_string(), "{f:#}");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["process"], "sleeper");
    let m = http_get_ok(b.ns(), "/metrics", &[("X-API-KEY", TEST_KEY)]).text;
    let line = metric_line(&m, "netmon_security_findings{kind=\"process_in_tmp\"}").unwrap();
    assert!(!line.ends_with(" 0"), "{line}");

    std::fs::remove_file(&copy).unwrap();
    wait_ok(&agent, "/api/v1/security", |r| {
        has(r, "deleted_executable") && has(r, "process_in_tmp")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    wait_ok(&agent, "/api/v1/security", |r| {
        r["findings"]
            .as_array()
            .is_some_and(|l| !l.iter().any(|f| f["pid"] == pid))
    });
}
