//! CIS-FW-UFW, "Firewall enabled (UFW)": UFW as the seed checked it, and
//! nftables, iptables and firewalld too.
//!
//! The live ruleset decides where it can be read (the root is `/`, the
//! agent holds CAP_NET_ADMIN): the check passes when a base chain on the
//! IP input hook filters (see [`nft::Ruleset::input_filter`]), whatever
//! put it there (nft, iptables-nft, UFW, firewalld). The nftables dump is
//! skipped when nf_tables is a module that is not loaded (asking would
//! load it): then there is no nftables ruleset.
//!
//! iptables-legacy keeps its rules outside nftables, where only a raw
//! socket could read them; its loaded tables show in
//! `/proc/net/ip_tables_names` (root only) or as `iptable_filter` in
//! `/proc/modules`. When they do, or when the ruleset cannot be read, the
//! configuration decides: UFW's `ENABLED=yes` in /etc/ufw/ufw.conf with
//! ufw.service active, or an active nftables, netfilter-persistent,
//! firewalld or iptables service (see `units.rs`).

use super::{
    Content, Host, Outcome, lines,
    nft::{self, Ruleset},
    units::{self, UnitState},
};

/// What could be learnt of the live ruleset.
#[derive(Clone, Debug)]
pub enum Live {
    Ruleset(Ruleset),
    /// nf_tables is not loaded: there is no nftables ruleset.
    NotLoaded,
    /// The ruleset was not read, for this reason.
    Unavailable(String),
}

/// Services that load a firewall at boot, besides UFW's.
const SERVICES: &[&str] = &[
    "nftables.service",
    "netfilter-persistent.service",
    "firewalld.service",
    "iptables.service",
];

pub fn check(host: &Host, problems: &mut Vec<String>) -> Outcome {
    let live = if host.live {
        read_live(host, problems)
    } else {
        Live::Unavailable(format!(
            "the live ruleset is not read: the root is {}, not /",
            host.root.display()
        ))
    };
    decide(host, live, problems)
}

/// Reads the ruleset of the agent's network namespace.
pub fn read_live(host: &Host, problems: &mut Vec<String>) -> Live {
    if let Content::Text(m) = host.read("/proc/modules", problems)
        && !m.lines().any(|l| l.starts_with("nf_tables "))
        && !host.exists("/sys/module/nf_tables")
        && !nf_tables_built_in(host, problems)
    {
        return Live::NotLoaded;
    }
    match nft::read() {
        Ok(rs) => Live::Ruleset(rs),
        Err(e) => match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Live::Unavailable(format!(
                "reading the nftables ruleset needs CAP_NET_ADMIN ({e})"
            )),
            Some(libc::EOPNOTSUPP | libc::EPROTONOSUPPORT) => Live::NotLoaded,
            _ => Live::Unavailable(format!("cannot read the nftables ruleset: {e}")),
        },
    }
}

/// Whether the running kernel lists nf_tables among its built-in modules
/// (which need no /sys/module entry). `ProtectKernelModules=` hides the
/// file: under the shipped units such a kernel reads as one without
/// nf_tables.
fn nf_tables_built_in(host: &Host, problems: &mut Vec<String>) -> bool {
    let Content::Text(release) = host.read("/proc/sys/kernel/osrelease", problems) else {
        return false;
    };
    let list = format!("/lib/modules/{}/modules.builtin", release.trim());
    matches!(host.read(&list, problems), Content::Text(t) if t.lines().any(|l| l.ends_with("/nf_tables.ko")))
}

/// UFW's own switch in /etc/ufw/ufw.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ufw {
    NotInstalled,
    /// Enabled or not, with `file:line: ENABLED=...`.
    Conf(bool, String),
    Unreadable(String),
}

fn ufw(host: &Host, problems: &mut Vec<String>) -> Ufw {
    const FILE: &str = "/etc/ufw/ufw.conf";
    match host.read(FILE, problems) {
        Content::Missing => Ufw::NotInstalled,
        Content::Unreadable(r) => Ufw::Unreadable(r),
        Content::Text(t) => lines(&t)
            .filter_map(|(n, l)| {
                let v = l.strip_prefix("ENABLED=")?.trim().trim_matches(['"', '\'']);
                Some(Ufw::Conf(
                    v.eq_ignore_ascii_case("yes"),
                    format!("{FILE}:{n}: ENABLED={v}"),
                ))
            })
            .last()
            .unwrap_or_else(|| Ufw::Conf(false, format!("{FILE} has no ENABLED= line"))),
    }
}

/// iptables-legacy's loaded tables, where the agent can see them.
fn legacy_tables(host: &Host, problems: &mut Vec<String>) -> Option<String> {
    let mut names = Vec::new();
    for f in ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"] {
        if let Content::Text(t) = host.read(f, problems) {
            names.extend(t.split_whitespace().map(str::to_owned));
        }
    }
    if names.is_empty()
        && let Content::Text(m) = host.read("/proc/modules", problems)
    {
        names.extend(
            m.lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|m| matches!(*m, "iptable_filter" | "ip6table_filter"))
                .map(str::to_owned),
        );
    }
    names.sort();
    names.dedup();
    (!names.is_empty()).then(|| names.join(", "))
}

/// The decision, from the live ruleset (as read, or why not) and the files.
pub fn decide(host: &Host, live: Live, problems: &mut Vec<String>) -> Outcome {
    let ufw = ufw(host, problems);
    let ufw_note = match &ufw {
        Ufw::Conf(true, at) => format!("; {at}, yet no rule of it is loaded"),
        _ => String::new(),
    };
    let legacy = legacy_tables(host, problems);
    let mut notes = Vec::new();
    match live {
        Live::Ruleset(rs) => {
            if let Some(c) = rs.input_filter() {
                return Outcome::pass(format!(
                    "nftables ruleset ({}): {} filters the input",
                    rs.summary(),
                    c.describe()
                ));
            }
            let said = format!(
                "nftables ruleset ({}): no input chain drops or rejects",
                rs.summary()
            );
            match &legacy {
                None => return Outcome::fail(format!("{said}{ufw_note}")),
                Some(t) => notes.push(format!(
                    "{said}; iptables-legacy tables {t} are loaded, their rules unread"
                )),
            }
        }
        Live::NotLoaded => match &legacy {
            None => {
                return Outcome::fail(format!(
                    "no nftables ruleset (nf_tables is not loaded){ufw_note}"
                ));
            }
            Some(t) => notes.push(format!(
                "no nftables ruleset; iptables-legacy tables {t} are loaded, their rules unread"
            )),
        },
        Live::Unavailable(r) => notes.push(r),
    }
    let notes = format!(" ({})", notes.join("; "));
    // The configuration and the services decide.
    let systemd = units::systemd(host);
    if let Ufw::Conf(true, at) = &ufw {
        return match &systemd {
            Ok(()) => match units::state(host, "ufw.service") {
                UnitState::Active => Outcome::pass(format!("{at}; ufw.service is active{notes}")),
                s => Outcome::fail(format!(
                    "{at}, but {}{notes}",
                    units::describe("ufw.service", s)
                )),
            },
            Err(r) => Outcome::pass(format!("{at} ({r}){notes}")),
        };
    }
    if let Err(r) = systemd {
        return Outcome::unavailable(format!("{r}; UFW: {}{notes}", ufw_said(&ufw)));
    }
    if let Some(unit) = SERVICES
        .iter()
        .find(|u| units::state(host, u) == UnitState::Active)
    {
        return Outcome::pass(format!(
            "{}{notes}",
            units::describe(unit, UnitState::Active)
        ));
    }
    Outcome::fail(format!(
        "UFW: {}; none of {} is active{notes}",
        ufw_said(&ufw),
        SERVICES.join(", ")
    ))
}

fn ufw_said(u: &Ufw) -> String {
    match u {
        Ufw::NotInstalled => "not installed (no /etc/ufw/ufw.conf)".into(),
        Ufw::Conf(_, at) => at.clone(),
        Ufw::Unreadable(r) => r.clone(),
    }
}
