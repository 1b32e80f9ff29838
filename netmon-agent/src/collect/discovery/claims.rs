//! Who claims each IPv4 address: for every (interface, address) seen in
//! ARP (sweep replies, requests heard during a sweep), the kernel's IPv4
//! neighbour table, or as the source of a watched interface's on-link
//! traffic, the MACs that used it, each with when it was first and last
//! seen and in which discovery cycles.
//!
//! The security collector reads the addresses claimed by more than one MAC
//! ([`Claims::contested`]) to find ARP spoofing, gateway impersonation and
//! MAC changes; discovery itself only keeps the table.
//!
//! Pure bookkeeping, driven by the caller's clock. Invariants: at most
//! `max_addresses` addresses (when full, the address claimed least
//! recently makes room, counted in `evicted_total`); at most
//! [`MAX_MACS_PER_ADDRESS`] MACs an address (the first claimant is kept,
//! the least recently seen other makes room, counted in
//! `macs_evicted_total`); a claim unseen for `forget_after` is removed.
//! A claim's `last_cycle` moves only on *fresh* evidence (a sighting newer
//! than its `last_seen`): a neighbour entry read again with the same age is
//! not the device answering again.

use std::{
    collections::{BTreeSet, HashMap},
    net::Ipv4Addr,
    time::{Duration, SystemTime},
};

use super::{
    Local, arp,
    inventory::{Observation, SeenBy},
};
use std::net::IpAddr;

/// Most MACs kept for one address.
pub const MAX_MACS_PER_ADDRESS: usize = 4;

/// One MAC's claim to an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub mac: [u8; 6],
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    /// The discovery cycles of the first and of the latest fresh sighting.
    pub first_cycle: u64,
    pub last_cycle: u64,
    pub sources: BTreeSet<SeenBy>,
}

/// An address claimed by more than one MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contested {
    pub ifindex: u32,
    pub interface: String,
    pub ip: Ipv4Addr,
    /// First claimant first (by first cycle, then first seen).
    pub claims: Vec<Claim>,
}

/// The table's size and churn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClaimStats {
    /// Addresses tracked now, and the most kept.
    pub addresses: usize,
    pub max_addresses: usize,
    /// Addresses dropped to make room, since start.
    pub evicted_total: u64,
    /// MACs dropped from an address holding [`MAX_MACS_PER_ADDRESS`].
    pub macs_evicted_total: u64,
    /// The current discovery cycle (1 is the first).
    pub cycle: u64,
}

fn new_claim(cycle: u64, mac: [u8; 6], seen: SystemTime, source: SeenBy) -> Claim {
    Claim {
        mac,
        first_seen: seen,
        last_seen: seen,
        first_cycle: cycle,
        last_cycle: cycle,
        sources: BTreeSet::from([source]),
    }
}

/// Every address's claims.
#[derive(Debug)]
pub struct Claims {
    max_addresses: usize,
    forget_after: Duration,
    by_address: HashMap<(u32, Ipv4Addr), Vec<Claim>>,
    cycle: u64,
    evicted_total: u64,
    macs_evicted_total: u64,
}

impl Claims {
    pub fn new(max_addresses: usize, forget_after: Duration) -> Self {
        Claims {
            max_addresses: max_addresses.max(1),
            forget_after,
            by_address: HashMap::new(),
            cycle: 0,
            evicted_total: 0,
            macs_evicted_total: 0,
        }
    }

    /// Starts a discovery cycle: sightings recorded until the next call
    /// belong to it.
    pub fn next_cycle(&mut self) {
        self.cycle += 1;
    }

    /// Records that `mac` used `ip` on `ifindex` at `seen` (clamped to
    /// `now`); a sighting older than `forget_after` of a claim not kept is
    /// ignored.
    pub fn claim(
        &mut self,
        ifindex: u32,
        ip: Ipv4Addr,
        mac: [u8; 6],
        seen: SystemTime,
        source: SeenBy,
        now: SystemTime,
    ) {
        let seen = seen.min(now);
        let old = now.duration_since(seen).unwrap_or_default() >= self.forget_after;
        let key = (ifindex, ip);
        if let Some(claims) = self.by_address.get_mut(&key) {
            if let Some(c) = claims.iter_mut().find(|c| c.mac == mac) {
                if seen > c.last_seen {
                    c.last_seen = seen;
                    c.last_cycle = self.cycle;
                }
                c.first_seen = c.first_seen.min(seen);
                c.sources.insert(source);
                return;
            }
            if old {
                return;
            }
            claims.push(new_claim(self.cycle, mac, seen, source));
            if claims.len() > MAX_MACS_PER_ADDRESS {
                // Never the first claimant: a flood of MACs must not push
                // out the address's owner.
                let victim = (1..claims.len()).min_by_key(|&i| claims[i].last_seen);
                if let Some(i) = victim {
                    claims.remove(i);
                    self.macs_evicted_total += 1;
                }
            }
            return;
        }
        if old {
            return;
        }
        if self.by_address.len() >= self.max_addresses {
            let victim = self
                .by_address
                .iter()
                .min_by_key(|(_, cs)| cs.iter().map(|c| c.last_seen).max())
                .map(|(k, _)| *k);
            if let Some(k) = victim {
                self.by_address.remove(&k);
                self.evicted_total += 1;
            }
        }
        let claim = new_claim(self.cycle, mac, seen, source);
        self.by_address.insert(key, vec![claim]);
    }

    /// Removes claims unseen for `forget_after`, and addresses left with
    /// none.
    pub fn expire(&mut self, now: SystemTime) {
        let forget = self.forget_after;
        self.by_address.retain(|_, claims| {
            claims.retain(|c| now.duration_since(c.last_seen).unwrap_or_default() < forget);
            !claims.is_empty()
        });
    }

    /// The addresses claimed by more than one MAC, by interface and
    /// address; `name` names an interface.
    pub fn contested(&self, name: impl Fn(u32) -> String) -> Vec<Contested> {
        let mut out: Vec<Contested> = self
            .by_address
            .iter()
            .filter(|(_, claims)| claims.len() > 1)
            .map(|(&(ifindex, ip), claims)| {
                let mut claims = claims.clone();
                claims.sort_by_key(|c| (c.first_cycle, c.first_seen, c.mac));
                Contested {
                    ifindex,
                    interface: name(ifindex),
                    ip,
                    claims,
                }
            })
            .collect();
        out.sort_by_key(|c| (c.ifindex, c.ip));
        out
    }

    pub fn stats(&self) -> ClaimStats {
        ClaimStats {
            addresses: self.by_address.len(),
            max_addresses: self.max_addresses,
            evicted_total: self.evicted_total,
            macs_evicted_total: self.macs_evicted_total,
            cycle: self.cycle,
        }
    }
}

/// Whether an observation is a claim to its IPv4 address: from ARP
/// always (the neighbour table's are recorded as it is read, with their
/// confirmation time); from traffic only when on-link, not one of the
/// interface's own addresses (a router's frames carry the addresses of
/// every host behind it).
pub(super) fn is_claim(locals: &[Local], o: &Observation) -> bool {
    let Some(IpAddr::V4(ip)) = o.ip else {
        return false;
    };
    match o.source {
        SeenBy::Arp => true,
        SeenBy::Neighbour | SeenBy::Ndp => false,
        SeenBy::Traffic => locals.iter().any(|l| {
            l.ifindex == o.ifindex
                && l.v4.iter().all(|&(a, _)| a != ip)
                && l.v4.iter().any(|&(a, p)| arp::same_subnet(a, p, ip))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn mac(i: u8) -> [u8; 6] {
        [2, 0, 0, 0, 0, i]
    }

    #[test]
    fn a_second_mac_makes_an_address_contested_with_cycles_and_times() {
        let mut c = Claims::new(10, Duration::from_secs(3600));
        c.next_cycle();
        c.claim(2, IP, mac(1), t(0), SeenBy::Arp, t(0));
        assert!(c.contested(|i| format!("if{i}")).is_empty());
        c.next_cycle();
        // A neighbour entry read again with the same time is not fresh.
        c.claim(2, IP, mac(1), t(0), SeenBy::Neighbour, t(10));
        c.claim(2, IP, mac(2), t(10), SeenBy::Arp, t(10));
        let got = c.contested(|i| format!("if{i}"));
        assert_eq!(got.len(), 1);
        let [a, b] = &got[0].claims[..] else {
            panic!("{got:?}")
        };
        assert_eq!((a.mac, a.first_cycle, a.last_cycle), (mac(1), 1, 1));
        assert_eq!(
            a.sources.iter().copied().collect::<Vec<_>>(),
            [SeenBy::Neighbour, SeenBy::Arp]
        );
        assert_eq!((b.mac, b.first_cycle, b.first_seen), (mac(2), 2, t(10)));
        c.next_cycle();
        c.claim(2, IP, mac(1), t(20), SeenBy::Arp, t(20));
        let a = &c.contested(|i| format!("if{i}"))[0].claims[0];
        assert_eq!((a.last_cycle, a.last_seen), (3, t(20)));
        // Another interface is another address.
        c.claim(3, IP, mac(3), t(20), SeenBy::Arp, t(20));
        assert_eq!(c.contested(|i| format!("if{i}")).len(), 1);
        assert_eq!(c.stats().addresses, 2);
    }

    #[test]
    fn macs_and_addresses_are_bounded_and_evictions_counted() {
        let mut c = Claims::new(2, Duration::from_secs(3600));
        c.next_cycle();
        for i in 1..=6u8 {
            c.claim(2, IP, mac(i), t(u64::from(i)), SeenBy::Arp, t(10));
        }
        let claims = &c.contested(|i| format!("if{i}"))[0].claims;
        let macs: Vec<[u8; 6]> = claims.iter().map(|c| c.mac).collect();
        // The owner stays; the least recently seen others made room.
        assert_eq!(macs, [mac(1), mac(4), mac(5), mac(6)]);
        assert_eq!(c.stats().macs_evicted_total, 2);
        let other = Ipv4Addr::new(10, 0, 0, 2);
        c.claim(2, other, mac(9), t(10), SeenBy::Arp, t(10));
        c.claim(
            2,
            Ipv4Addr::new(10, 0, 0, 3),
            mac(9),
            t(11),
            SeenBy::Arp,
            t(11),
        );
        let s = c.stats();
        assert_eq!((s.addresses, s.max_addresses, s.evicted_total), (2, 2, 1));
        // 10.0.0.1 (last claimed at 6) made room; 10.0.0.2 (at 10) stays.
        assert!(c.contested(|i| format!("if{i}")).is_empty());
    }

    #[test]
    fn claims_unseen_for_forget_after_are_removed() {
        let mut c = Claims::new(10, Duration::from_secs(100));
        c.next_cycle();
        c.claim(2, IP, mac(1), t(0), SeenBy::Arp, t(0));
        c.claim(2, IP, mac(2), t(50), SeenBy::Arp, t(50));
        // Too old to be news.
        c.claim(2, IP, mac(3), t(0), SeenBy::Neighbour, t(120));
        c.expire(t(120));
        assert!(c.contested(|i| format!("if{i}")).is_empty());
        assert_eq!(c.stats().addresses, 1);
        c.expire(t(150));
        assert_eq!(c.stats().addresses, 0);
    }

    fn obs(ifindex: u32, ip: &str, source: SeenBy) -> Observation {
        Observation {
            ifindex,
            mac: [2, 0, 0, 0, 0, 1],
            ip: Some(ip.parse().unwrap()),
            seen: SystemTime::UNIX_EPOCH,
            source,
        }
    }

    #[test]
    fn traffic_claims_only_on_link_addresses_and_arp_any() {
        let locals = [Local {
            ifindex: 2,
            name: "br0".into(),
            mac: None,
            v4: vec![(Ipv4Addr::new(10, 0, 0, 254), 24)],
            v6: Vec::new(),
        }];
        let claim = |o| is_claim(&locals, &o);
        assert!(claim(obs(2, "10.0.0.7", SeenBy::Traffic)));
        // Behind a router, our own address, another interface: no.
        assert!(!claim(obs(2, "192.0.2.9", SeenBy::Traffic)));
        assert!(!claim(obs(2, "10.0.0.254", SeenBy::Traffic)));
        assert!(!claim(obs(3, "10.0.0.7", SeenBy::Traffic)));
        assert!(claim(obs(3, "10.9.9.9", SeenBy::Arp)));
        // IPv6, and neighbours (recorded as the table is read): no.
        assert!(!claim(obs(2, "fd00::7", SeenBy::Traffic)));
        assert!(!claim(obs(2, "10.0.0.7", SeenBy::Neighbour)));
    }
}
