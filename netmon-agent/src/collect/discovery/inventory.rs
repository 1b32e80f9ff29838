//! The device inventory: one entry per (interface, MAC), fed with
//! observations from every source, with a status derived from when the
//! device was last seen.
//!
//! Pure bookkeeping: every call takes the current time, so tests drive the
//! clock. Invariants: at most `max_devices` entries; each entry at most
//! [`MAX_ADDRESSES`] addresses, most recently seen first; `first_seen <=
//! last_seen`; entries unseen for `forget_after` are removed.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tracing::warn;

use crate::ifaces::format_mac;

/// How many addresses a device keeps, most recently seen first.
pub const MAX_ADDRESSES: usize = 16;

/// Where an observation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Source)]
pub enum SeenBy {
    /// The kernel's IPv4 neighbour (ARP) table.
    Neighbour,
    /// An ARP reply to the sweep, or an ARP request heard during it.
    Arp,
    /// The kernel's IPv6 neighbour (NDP) table.
    Ndp,
    /// Frames counted by the eBPF programs.
    Traffic,
}

/// How recently a device was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Seen within `idle_after`.
    Active,
    /// Seen within `gone_after`, not within `idle_after`.
    Idle,
    /// Not seen for `gone_after`; removed after `forget_after`.
    Gone,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Idle => "idle",
            Status::Gone => "gone",
        }
    }
}

/// The status thresholds and the inventory's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub idle_after: Duration,
    pub gone_after: Duration,
    pub forget_after: Duration,
    pub max_devices: usize,
}

impl Limits {
    /// The status of something last seen at `last_seen`. A clock that went
    /// backwards counts as "just now".
    pub fn status(&self, now: SystemTime, last_seen: SystemTime) -> Status {
        let age = now.duration_since(last_seen).unwrap_or_default();
        if age < self.idle_after {
            Status::Active
        } else if age < self.gone_after {
            Status::Idle
        } else {
            Status::Gone
        }
    }
}

/// One sighting of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The address it used, if the source says.
    pub ip: Option<IpAddr>,
    /// When the source last saw it active.
    pub seen: SystemTime,
    pub source: SeenBy,
}

/// An address of a device and when it was last seen with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Address {
    #[schema(value_type = String)]
    pub ip: IpAddr,
    /// RFC 3339.
    #[serde(serialize_with = "super::ser_time")]
    #[schema(value_type = String)]
    pub last_seen: SystemTime,
}

/// One device in the inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// Most recently seen first, at most [`MAX_ADDRESSES`].
    pub addresses: Vec<Address>,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub sources: BTreeSet<SeenBy>,
}

impl Device {
    fn add_address(&mut self, ip: IpAddr, seen: SystemTime) {
        match self.addresses.iter_mut().find(|a| a.ip == ip) {
            Some(a) => a.last_seen = a.last_seen.max(seen),
            None => self.addresses.push(Address {
                ip,
                last_seen: seen,
            }),
        }
        // Stable: equal times keep their order.
        self.addresses
            .sort_by_key(|a| std::cmp::Reverse(a.last_seen));
        self.addresses.truncate(MAX_ADDRESSES);
    }
}

/// What [`Inventory::observe`] did with an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Updated,
    Added,
    /// Added after removing the least recently seen idle or gone device.
    AddedEvicting,
    /// Not added: the inventory is full of active devices.
    Refused,
}

/// Every device seen on the watched interfaces.
#[derive(Debug)]
pub struct Inventory {
    limits: Limits,
    devices: HashMap<(u32, [u8; 6]), Device>,
    /// Set once the full inventory was logged; cleared when it has room.
    full_logged: bool,
    /// Devices removed to make room, and observations refused, since start.
    pub evicted_total: u64,
    pub refused_total: u64,
}

impl Inventory {
    pub fn new(limits: Limits) -> Self {
        Inventory {
            limits,
            devices: HashMap::new(),
            full_logged: false,
            evicted_total: 0,
            refused_total: 0,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    pub fn get(&self, ifindex: u32, mac: [u8; 6]) -> Option<&Device> {
        self.devices.get(&(ifindex, mac))
    }

    /// Records `obs`, taken at `now`. A sighting older than `forget_after`
    /// of a device not in the inventory is ignored (a day-old stale
    /// neighbour entry is no news), as is one that would not fit.
    pub fn observe(&mut self, obs: Observation, now: SystemTime) -> Outcome {
        // A source's clock may run ahead of ours by a little: never later
        // than now.
        let seen = obs.seen.min(now);
        let key = (obs.ifindex, obs.mac);
        if let Some(d) = self.devices.get_mut(&key) {
            d.last_seen = d.last_seen.max(seen);
            d.first_seen = d.first_seen.min(seen);
            d.sources.insert(obs.source);
            if let Some(ip) = obs.ip {
                d.add_address(ip, seen);
            }
            return Outcome::Updated;
        }
        if now.duration_since(seen).unwrap_or_default() >= self.limits.forget_after {
            return Outcome::Updated;
        }
        let mut outcome = Outcome::Added;
        if self.devices.len() >= self.limits.max_devices {
            if !self.evict_one(now) {
                self.refused_total += 1;
                self.log_full(obs);
                return Outcome::Refused;
            }
            self.log_full(obs);
            outcome = Outcome::AddedEvicting;
        }
        let mut d = Device {
            ifindex: obs.ifindex,
            mac: obs.mac,
            addresses: Vec::new(),
            first_seen: seen,
            last_seen: seen,
            sources: BTreeSet::from([obs.source]),
        };
        if let Some(ip) = obs.ip {
            d.add_address(ip, seen);
        }
        self.devices.insert(key, d);
        outcome
    }

    fn log_full(&mut self, obs: Observation) {
        if !self.full_logged {
            self.full_logged = true;
            warn!(
                max_devices = self.limits.max_devices,
                mac = format_mac(obs.mac),
                ifindex = obs.ifindex,
                "Device inventory full: dropping the least recently seen idle or gone devices, \
                 and new devices while every one is active (raise --discovery-max-devices to \
                 keep more). Logged once until it has room again."
            );
        }
    }

    /// Removes the least recently seen device that is not active; false
    /// if every device is active.
    fn evict_one(&mut self, now: SystemTime) -> bool {
        let limits = self.limits;
        let victim = self
            .devices
            .iter()
            .filter(|(_, d)| limits.status(now, d.last_seen) != Status::Active)
            .min_by_key(|(_, d)| d.last_seen)
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                self.devices.remove(&k);
                self.evicted_total += 1;
                true
            }
            None => false,
        }
    }

    /// Removes devices unseen for `forget_after`, and addresses unseen for
    /// that long from the devices that stay.
    pub fn expire(&mut self, now: SystemTime) {
        let forget = self.limits.forget_after;
        let old = |t: SystemTime| now.duration_since(t).unwrap_or_default() >= forget;
        self.devices.retain(|_, d| {
            d.addresses.retain(|a| !old(a.last_seen));
            !old(d.last_seen)
        });
        if self.devices.len() < self.limits.max_devices {
            self.full_logged = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const MAC: [u8; 6] = [0x00, 0x1b, 0x21, 0, 0, 1];

    fn limits(max_devices: usize) -> Limits {
        Limits {
            idle_after: Duration::from_secs(60),
            gone_after: Duration::from_secs(600),
            forget_after: Duration::from_secs(3600),
            max_devices,
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn obs(mac: [u8; 6], ip: Option<u8>, seen: SystemTime, source: SeenBy) -> Observation {
        Observation {
            ifindex: 2,
            mac,
            ip: ip.map(|o| IpAddr::V4(Ipv4Addr::new(10, 0, 0, o))),
            seen,
            source,
        }
    }

    fn status(inv: &Inventory, mac: [u8; 6], now: SystemTime) -> Status {
        let d = inv.get(2, mac).expect("device present");
        inv.limits().status(now, d.last_seen)
    }

    #[test]
    fn active_then_idle_then_gone_then_forgotten() {
        let mut inv = Inventory::new(limits(10));
        assert_eq!(
            inv.observe(obs(MAC, Some(5), t(0), SeenBy::Arp), t(0)),
            Outcome::Added
        );
        assert_eq!(status(&inv, MAC, t(59)), Status::Active);
        assert_eq!(status(&inv, MAC, t(60)), Status::Idle);
        assert_eq!(status(&inv, MAC, t(599)), Status::Idle);
        assert_eq!(status(&inv, MAC, t(600)), Status::Gone);
        inv.expire(t(3599));
        assert_eq!(inv.len(), 1);
        inv.expire(t(3600));
        assert!(inv.is_empty());
    }

    #[test]
    fn a_new_sighting_makes_it_active_again_and_merges_sources_and_addresses() {
        let mut inv = Inventory::new(limits(10));
        inv.observe(obs(MAC, Some(5), t(0), SeenBy::Neighbour), t(0));
        assert_eq!(status(&inv, MAC, t(700)), Status::Gone);
        inv.observe(obs(MAC, Some(6), t(700), SeenBy::Traffic), t(700));
        assert_eq!(status(&inv, MAC, t(700)), Status::Active);
        let d = inv.get(2, MAC).unwrap();
        assert_eq!(d.first_seen, t(0));
        assert_eq!(d.last_seen, t(700));
        assert_eq!(
            d.sources.iter().copied().collect::<Vec<_>>(),
            [SeenBy::Neighbour, SeenBy::Traffic]
        );
        let ips: Vec<_> = d.addresses.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.6", "10.0.0.5"]);
    }

    #[test]
    fn old_sightings_do_not_move_last_seen_back_nor_add_stale_devices() {
        let mut inv = Inventory::new(limits(10));
        inv.observe(obs(MAC, None, t(100), SeenBy::Arp), t(100));
        inv.observe(obs(MAC, None, t(10), SeenBy::Neighbour), t(110));
        let d = inv.get(2, MAC).unwrap();
        assert_eq!((d.first_seen, d.last_seen), (t(10), t(100)));
        // A neighbour entry last confirmed two hours ago is not a device.
        let other = [0x00, 0x1b, 0x21, 0, 0, 2];
        inv.observe(obs(other, Some(9), t(0), SeenBy::Neighbour), t(7200));
        assert!(inv.get(2, other).is_none());
        // A time from the future is clamped to now.
        inv.observe(obs(other, None, t(9000), SeenBy::Arp), t(8000));
        assert_eq!(inv.get(2, other).unwrap().last_seen, t(8000));
    }

    #[test]
    fn addresses_are_capped_most_recent_first() {
        let mut inv = Inventory::new(limits(10));
        for i in 0..40u8 {
            inv.observe(obs(MAC, Some(i), t(u64::from(i)), SeenBy::Arp), t(100));
        }
        let d = inv.get(2, MAC).unwrap();
        assert_eq!(d.addresses.len(), MAX_ADDRESSES);
        assert_eq!(d.addresses[0].ip.to_string(), "10.0.0.39");
        assert_eq!(d.addresses[MAX_ADDRESSES - 1].ip.to_string(), "10.0.0.24");
    }

    #[test]
    fn a_full_inventory_evicts_the_oldest_inactive_else_refuses() {
        let mut inv = Inventory::new(limits(3));
        let mac = |i: u8| [0x00, 0x1b, 0x21, 0, 1, i];
        inv.observe(obs(mac(1), None, t(0), SeenBy::Arp), t(0));
        inv.observe(obs(mac(2), None, t(10), SeenBy::Arp), t(10));
        inv.observe(obs(mac(3), None, t(500), SeenBy::Arp), t(500));
        // At 520: 1 and 2 are idle, 3 active. 1 is the oldest.
        assert_eq!(
            inv.observe(obs(mac(4), None, t(520), SeenBy::Arp), t(520)),
            Outcome::AddedEvicting
        );
        assert!(inv.get(2, mac(1)).is_none());
        assert_eq!(inv.len(), 3);
        inv.observe(obs(mac(2), None, t(520), SeenBy::Arp), t(520));
        // Everyone active now: a fifth is refused, the inventory unchanged.
        assert_eq!(
            inv.observe(obs(mac(5), None, t(521), SeenBy::Arp), t(521)),
            Outcome::Refused
        );
        assert_eq!(inv.len(), 3);
        assert_eq!((inv.evicted_total, inv.refused_total), (1, 1));
    }
}
