//! Passive ARP: one `AF_PACKET` socket for ARP per watched interface, kept
//! open across cycles and drained at each one, so every ARP frame on the
//! link (not only answers to the sweep) is heard: its sender claims its
//! address ([`super::claims`]), and announcements (gratuitous ARP: sender
//! and target address the same) are counted per sender for the security
//! collector's storm check.
//!
//! What waits between cycles is bounded by the socket's receive buffer
//! (the kernel drops beyond it); a cycle reads at most
//! [`MAX_FRAMES_PER_CYCLE`] frames a socket. Frames are dated when read,
//! so within one discovery interval.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    os::fd::OwnedFd,
    time::{Instant, SystemTime},
};

use super::{
    DiscoveryError,
    arp::{self, Arp},
    claims::Claims,
    inventory::SeenBy,
};

/// What passive listening gave in one cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Passive {
    /// ARP frames heard from other hosts, and frames that were not usable.
    pub frames: u64,
    pub malformed: u64,
    pub gratuitous: Vec<Gratuitous>,
    /// Senders of gratuitous ARP beyond `--discovery-max-claims`, not
    /// counted.
    pub senders_dropped: u64,
    /// The seconds the frames were heard over (since the previous cycle;
    /// none at the first).
    pub seconds: Option<f64>,
}

/// Most frames one cycle reads from one socket.
pub const MAX_FRAMES_PER_CYCLE: usize = 65_536;

/// An ARP frame heard on a watched interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heard {
    pub ifindex: u32,
    pub arp: Arp,
    pub at: SystemTime,
}

impl Heard {
    /// An announcement: the sender asks for, or tells, its own address.
    pub fn gratuitous(&self) -> bool {
        self.arp.sender_ip == self.arp.target_ip && !self.arp.sender_ip.is_unspecified()
    }
}

/// Gratuitous ARPs from one MAC on one interface during one cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gratuitous {
    pub ifindex: u32,
    pub interface: String,
    pub mac: [u8; 6],
    /// The addresses announced, in first-heard order (at most 8).
    pub ips: Vec<Ipv4Addr>,
    pub frames: u64,
}

/// The open sockets.
#[derive(Debug, Default)]
pub struct Listener {
    socks: HashMap<u32, OwnedFd>,
    last: Option<Instant>,
}

impl Listener {
    /// Opens a socket for each newly watched interface, closes those no
    /// longer watched, and reads what every socket holds. Returns the
    /// frames that were not usable ARP, and the seconds since the previous
    /// drain (none at the first).
    pub fn drain(
        &mut self,
        ifaces: &[u32],
        out: &mut Vec<Heard>,
    ) -> Result<(u64, Option<f64>), DiscoveryError> {
        self.socks.retain(|i, _| ifaces.contains(i));
        for &i in ifaces {
            if let std::collections::hash_map::Entry::Vacant(e) = self.socks.entry(i) {
                e.insert(arp::open(i)?);
            }
        }
        let now = Instant::now();
        let since = self.last.map(|l| now.duration_since(l).as_secs_f64());
        self.last = Some(now);
        let mut buf = [0u8; 256];
        let mut malformed = 0;
        for (&ifindex, fd) in &self.socks {
            for _ in 0..MAX_FRAMES_PER_CYCLE {
                let Some(n) = arp::recv_frame(fd, &mut buf) else {
                    break;
                };
                match arp::parse(&buf[..n.min(buf.len())]) {
                    Ok(arp) => out.push(Heard {
                        ifindex,
                        arp,
                        at: SystemTime::now(),
                    }),
                    Err(_) => malformed += 1,
                }
            }
        }
        Ok((malformed, since))
    }
}

impl Listener {
    /// One cycle: reads every socket, records each sender's claim to its
    /// address in `claims` (never this host's MACs, group or zero MACs, or
    /// the unspecified address of a duplicate-address probe) and counts
    /// the announcements.
    pub fn cycle(
        &mut self,
        watched: &[u32],
        own: &HashSet<[u8; 6]>,
        claims: &mut Claims,
        max: usize,
        name: impl Fn(u32) -> String,
        now: SystemTime,
    ) -> Result<Passive, DiscoveryError> {
        let mut heard = Vec::new();
        let (malformed, seconds) = self.drain(watched, &mut heard)?;
        heard.retain(|h| {
            let m = h.arp.sender_mac;
            !own.contains(&m) && m[0] & 1 == 0 && m != [0; 6] && !h.arp.sender_ip.is_unspecified()
        });
        for h in &heard {
            let a = &h.arp;
            claims.claim(h.ifindex, a.sender_ip, a.sender_mac, h.at, SeenBy::Arp, now);
        }
        let (gratuitous, senders_dropped) = count_gratuitous(&heard, max, name);
        Ok(Passive {
            frames: heard.len() as u64,
            malformed,
            gratuitous,
            senders_dropped,
            seconds,
        })
    }
}

/// Counts the gratuitous ARPs of `heard` per (interface, MAC), at most
/// `max` senders (the rest counted in the second value); `name` names an
/// interface.
pub fn count_gratuitous(
    heard: &[Heard],
    max: usize,
    name: impl Fn(u32) -> String,
) -> (Vec<Gratuitous>, u64) {
    let mut by: HashMap<(u32, [u8; 6]), Gratuitous> = HashMap::new();
    let mut dropped = 0;
    for h in heard.iter().filter(|h| h.gratuitous()) {
        let key = (h.ifindex, h.arp.sender_mac);
        if !by.contains_key(&key) && by.len() >= max {
            dropped += 1;
            continue;
        }
        let g = by.entry(key).or_insert_with(|| Gratuitous {
            ifindex: h.ifindex,
            interface: name(h.ifindex),
            mac: h.arp.sender_mac,
            ips: Vec::new(),
            frames: 0,
        });
        g.frames += 1;
        if g.ips.len() < 8 && !g.ips.contains(&h.arp.sender_ip) {
            g.ips.push(h.arp.sender_ip);
        }
    }
    let mut out: Vec<Gratuitous> = by.into_values().collect();
    out.sort_by_key(|g| (g.ifindex, g.mac));
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(mac: u8, sender: [u8; 4], target: [u8; 4]) -> Heard {
        Heard {
            ifindex: 2,
            arp: Arp {
                op: 1,
                sender_mac: [2, 0, 0, 0, 0, mac],
                sender_ip: sender.into(),
                target_mac: [0; 6],
                target_ip: target.into(),
            },
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn announcements_are_counted_per_sender_and_bounded() {
        let mut h = vec![
            // An ordinary who-has, and a DAD probe (sender 0.0.0.0): no.
            heard(1, [10, 0, 0, 1], [10, 0, 0, 2]),
            heard(1, [0, 0, 0, 0], [0, 0, 0, 0]),
        ];
        for i in 0..5 {
            h.push(heard(1, [10, 0, 0, 1 + i % 2], [10, 0, 0, 1 + i % 2]));
        }
        h.push(heard(2, [10, 0, 0, 9], [10, 0, 0, 9]));
        h.push(heard(3, [10, 0, 0, 8], [10, 0, 0, 8]));
        let (g, dropped) = count_gratuitous(&h, 2, |i| format!("if{i}"));
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].mac[5], g[0].frames, g[0].interface.as_str()),
            (1, 5, "if2")
        );
        assert_eq!(
            g[0].ips,
            [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
        );
        assert_eq!((g[1].mac[5], g[1].frames), (2, 1));
        assert_eq!(dropped, 1);
    }
}
