//! Service state, from the files systemd keeps for everyone to read.
//!
//! PID 1 creates `/run/systemd/units/invocation:<unit>` when a unit
//! starts and removes it whenever the unit becomes inactive or failed
//! (src/core/unit.c, `unit_notify`), so the link exists exactly while the
//! unit is active, activating, reloading or deactivating. The directory
//! is world-readable and needs no D-Bus call, no capability and no
//! `systemctl` process, so this works under the capability-restricted
//! unit. A unit without the link is installed but not active when its
//! unit file is in one of systemd's unit directories, else not installed.
//! Without `/run/systemd/system` (systemd is not PID 1: a container, this
//! project's test VM) service state is unavailable.

use super::{Host, Outcome};

const UNITS: &str = "/run/systemd/units";
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitState {
    /// Has an invocation: active (or activating, reloading, deactivating).
    Active,
    Inactive,
    NotInstalled,
}

/// Whether service state can be read here, and if not why.
pub fn systemd(host: &Host) -> Result<(), String> {
    if !host.exists("/run/systemd/system") {
        return Err(
            "systemd is not running here (no /run/systemd/system), so service state is unknown"
                .into(),
        );
    }
    std::fs::read_dir(host.path(UNITS))
        .map(|_| ())
        .map_err(|e| format!("cannot read {UNITS}: {e}"))
}

pub fn state(host: &Host, unit: &str) -> UnitState {
    if host.exists(&format!("{UNITS}/invocation:{unit}")) {
        UnitState::Active
    } else if UNIT_DIRS
        .iter()
        .any(|d| host.exists(&format!("{d}/{unit}")))
    {
        UnitState::Inactive
    } else {
        UnitState::NotInstalled
    }
}

/// `chrony.service is active (/run/systemd/units/invocation:chrony.service)`.
pub fn describe(unit: &str, state: UnitState) -> String {
    match state {
        UnitState::Active => format!("{unit} is active ({UNITS}/invocation:{unit})"),
        UnitState::Inactive => {
            format!("{unit} is installed but not active (no invocation in {UNITS})")
        }
        UnitState::NotInstalled => format!("{unit} is not installed"),
    }
}

/// CIS-AUDITD.
pub fn auditd(host: &Host, _: &mut Vec<String>) -> Outcome {
    const UNIT: &str = "auditd.service";
    if let Err(reason) = systemd(host) {
        return Outcome::unavailable(reason);
    }
    let s = state(host, UNIT);
    if s == UnitState::Active {
        Outcome::pass(describe(UNIT, s))
    } else {
        Outcome::fail(describe(UNIT, s))
    }
}

/// The time synchronization daemons that count, the seed's chrony first.
const TIME_DAEMONS: &[&str] = &[
    "chrony.service",
    "systemd-timesyncd.service",
    "ntpsec.service",
    "ntp.service",
    "openntpd.service",
];

/// CIS-TIME-SYNC: chrony, or another time synchronization daemon, active.
pub fn time_sync(host: &Host, _: &mut Vec<String>) -> Outcome {
    if let Err(reason) = systemd(host) {
        return Outcome::unavailable(reason);
    }
    let states: Vec<(&str, UnitState)> =
        TIME_DAEMONS.iter().map(|u| (*u, state(host, u))).collect();
    if let Some(&(unit, s)) = states.iter().find(|(_, s)| *s == UnitState::Active) {
        return Outcome::pass(describe(unit, s));
    }
    // chrony always named; the others when installed.
    let said: Vec<String> = states
        .iter()
        .filter(|(u, s)| *u == TIME_DAEMONS[0] || *s != UnitState::NotInstalled)
        .map(|(u, s)| describe(u, *s))
        .collect();
    Outcome::fail(format!(
        "no time synchronization daemon is active: {}",
        said.join("; ")
    ))
}
