//! The discovery collector's families: its inventory by status.

use super::{self as discovery, inventory::Status};
use crate::exposition::Family;

pub(super) fn families(r: &discovery::Report, out: &mut Vec<Family>) {
    let mut f = Family::gauge(
        "netmon_discovery_devices",
        &["status"],
        "Devices in discovery's inventory by status.",
    );
    let i = &r.inventory;
    for (status, n) in [
        (Status::Active, i.active),
        (Status::Idle, i.idle),
        (Status::Gone, i.gone),
    ] {
        f.int(&[status.as_str()], n as u64);
    }
    out.push(f);
}
