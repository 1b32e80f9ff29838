//! The live nftables ruleset, read from the kernel over nfnetlink: a dump
//! of every chain (with its hook and policy) and of every rule (counted,
//! and whether it drops or rejects). iptables-nft, UFW on it and firewalld
//! all keep their rules here, so this sees them all; iptables-legacy's
//! tables are elsewhere (see `firewall.rs`).
//!
//! Reading the ruleset needs CAP_NET_ADMIN in the agent's network
//! namespace (nfnetlink checks it for every message), which the agent
//! keeps to attach its programs. Nothing is written. The parsers take
//! bytes and never fail: a malformed attribute ends its list.

use std::{
    collections::HashMap,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(crate) const NFT_MSG_GETCHAIN: u16 = 4;
pub(crate) const NFT_MSG_GETRULE: u16 = 7;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// nfproto values of the families that filter IP traffic.
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_IPV6: u8 = 10;
/// The input hook of the IP families (`NF_INET_LOCAL_IN`).
pub const HOOK_INPUT: u32 = 1;
/// Verdicts (`NF_DROP`, `NF_ACCEPT`).
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;

/// Chains kept; more are counted in [`Ruleset::chains_omitted`].
pub const MAX_CHAINS: usize = 65_536;
/// Bytes read per `recv`; the kernel's dump messages are smaller.
const RECV_BUFFER: usize = 64 * 1024;

/// What the ruleset holds, as far as the check needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: Vec<Chain>,
    pub chains_omitted: u64,
    /// Rules whose chain was not in the chain dump (changed in between).
    pub rules_unmatched: u64,
}

/// One chain: a base chain has a hook (and a policy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub family: u8,
    pub table: String,
    pub name: String,
    pub hook: Option<u32>,
    pub policy: Option<u32>,
    pub rules: u64,
    /// Rules ending in a drop or reject verdict.
    pub drops: u64,
}

impl Chain {
    /// `inet filter input (hook input, policy drop, 5 rules)`.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {} {}", family_name(self.family), self.table, self.name);
        let mut parts = Vec::new();
        if self.hook == Some(HOOK_INPUT) {
            parts.push("hook input".to_owned());
        }
        match self.policy {
            Some(NF_DROP) => parts.push("policy drop".into()),
            Some(NF_ACCEPT) => parts.push("policy accept".into()),
            _ => {}
        }
        parts.push(format!("{} rules", self.rules));
        s.push_str(&format!(" ({})", parts.join(", ")));
        s
    }
}

impl Ruleset {
    /// The first base chain on the IP input hook that filters: its policy
    /// drops, or it has rules and its table has a rule that drops or
    /// rejects (UFW's and firewalld's verdicts sit in chains the input
    /// chain jumps to).
    pub fn input_filter(&self) -> Option<&Chain> {
        let table_drops = |c: &Chain| {
            self.chains
                .iter()
                .filter(|o| o.family == c.family && o.table == c.table)
                .any(|o| o.drops > 0)
        };
        self.chains.iter().find(|c| {
            matches!(c.family, NFPROTO_INET | NFPROTO_IPV4 | NFPROTO_IPV6)
                && c.hook == Some(HOOK_INPUT)
                && (c.policy == Some(NF_DROP) || (c.rules > 0 && table_drops(c)))
        })
    }

    /// `2 tables, 5 chains, 17 rules`.
    pub fn summary(&self) -> String {
        let mut tables: Vec<(u8, &str)> = self
            .chains
            .iter()
            .map(|c| (c.family, c.table.as_str()))
            .collect();
        tables.sort_unstable();
        tables.dedup();
        let rules: u64 = self.chains.iter().map(|c| c.rules).sum();
        format!(
            "{} tables, {} chains, {} rules",
            tables.len(),
            self.chains.len() as u64 + self.chains_omitted,
            rules + self.rules_unmatched
        )
    }
}

pub fn family_name(f: u8) -> &'static str {
    match f {
        NFPROTO_INET => "inet",
        NFPROTO_IPV4 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        NFPROTO_IPV6 => "ip6",
        _ => "unknown",
    }
}

/// Reads the ruleset of the calling thread's network namespace.
pub fn read() -> io::Result<Ruleset> {
    // A dump that a concurrent change interrupted is read again.
    for _ in 0..3 {
        let sock = open()?;
        let mut rs = Ruleset::default();
        let mut index: HashMap<(u8, String, String), usize> = HashMap::new();
        let mut interrupted = dump(&sock, NFT_MSG_GETCHAIN, 1, &mut |family, attrs| {
            add_chain(&mut rs, &mut index, family, attrs);
        })?;
        interrupted |= dump(&sock, NFT_MSG_GETRULE, 2, &mut |family, attrs| {
            add_rule(&mut rs, &index, family, attrs);
        })?;
        if !interrupted {
            return Ok(rs);
        }
    }
    Err(io::Error::other(
        "the ruleset kept changing while it was read",
    ))
}

/// A netfilter netlink socket with a receive timeout.
pub(crate) fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket this function just opened and owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: `timeout` is a valid timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

/// A request with no attributes: the netlink header and an nfgenmsg for
/// every family.
pub(crate) fn request(msg: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(&20u32.to_ne_bytes());
    b.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]); // family unspec, version 0, res_id 0
    b
}

/// Sends a dump request and hands each answer's family and attributes to
/// `each`; true when the kernel flagged the dump as interrupted.
fn dump(sock: &OwnedFd, msg: u16, seq: u32, each: &mut dyn FnMut(u8, &[u8])) -> io::Result<bool> {
    let req = request(msg, NLM_F_REQUEST | NLM_F_DUMP, seq);
    // SAFETY: `req` is a valid buffer of the length given.
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut interrupted = false;
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(io::Error::other("a netlink message larger than 64 KiB"));
        }
        match parse_messages(&buf[..n], seq, each)? {
            Batch::More { interrupted: i } => interrupted |= i,
            Batch::Done { interrupted: i } => return Ok(interrupted | i),
        }
    }
}

/// What one datagram of a dump said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Batch {
    More { interrupted: bool },
    Done { interrupted: bool },
}

/// Walks the netlink messages of one datagram.
pub(crate) fn parse_messages(
    mut b: &[u8],
    seq: u32,
    each: &mut dyn FnMut(u8, &[u8]),
) -> io::Result<Batch> {
    let mut interrupted = false;
    while b.len() >= 16 {
        let len = u32::from_ne_bytes(b[0..4].try_into().unwrap_or_default()) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        let mseq = u32::from_ne_bytes(b[8..12].try_into().unwrap_or_default());
        if len < 16 || len > b.len() {
            return Err(io::Error::other("a malformed netlink message"));
        }
        let payload = &b[16..len];
        b = &b[align4(len).min(b.len())..];
        if mseq != seq {
            continue;
        }
        interrupted |= flags & NLM_F_DUMP_INTR != 0;
        match ty {
            NLMSG_NOOP => {}
            NLMSG_ERROR | NLMSG_DONE => {
                let code = payload
                    .get(0..4)
                    .map_or(0, |c| i32::from_ne_bytes(c.try_into().unwrap_or_default()));
                if code < 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(Batch::Done { interrupted });
            }
            _ if payload.len() >= 4 => each(payload[0], &payload[4..]),
            _ => {}
        }
    }
    Ok(Batch::More { interrupted })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes of a netlink attribute list, as (type, payload); a
/// malformed one ends the list.
pub(crate) fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            b = &[];
            return None;
        }
        let payload = &b[4..len];
        b = &b[align4(len).min(b.len())..];
        Some((ty, payload))
    })
}

fn attr_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn attr_be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(0..4)?.try_into().ok()?))
}

// Attribute numbers of linux/netfilter/nf_tables.h.
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_TARGET_NAME: u16 = 1;

fn add_chain(
    rs: &mut Ruleset,
    index: &mut HashMap<(u8, String, String), usize>,
    family: u8,
    b: &[u8],
) {
    let mut c = Chain {
        family,
        ..Chain::default()
    };
    for (ty, p) in attrs(b) {
        match ty {
            NFTA_CHAIN_TABLE => c.table = attr_str(p),
            NFTA_CHAIN_NAME => c.name = attr_str(p),
            NFTA_CHAIN_HOOK => {
                c.hook = attrs(p)
                    .find(|(t, _)| *t == NFTA_HOOK_HOOKNUM)
                    .and_then(|(_, v)| attr_be32(v));
            }
            NFTA_CHAIN_POLICY => c.policy = attr_be32(p),
            _ => {}
        }
    }
    if rs.chains.len() >= MAX_CHAINS {
        rs.chains_omitted += 1;
        return;
    }
    index.insert((family, c.table.clone(), c.name.clone()), rs.chains.len());
    rs.chains.push(c);
}

fn add_rule(rs: &mut Ruleset, index: &HashMap<(u8, String, String), usize>, family: u8, b: &[u8]) {
    let (mut table, mut chain, mut drops) = (String::new(), String::new(), false);
    for (ty, p) in attrs(b) {
        match ty {
            NFTA_RULE_TABLE => table = attr_str(p),
            NFTA_RULE_CHAIN => chain = attr_str(p),
            NFTA_RULE_EXPRESSIONS => {
                drops = attrs(p).any(|(t, e)| t == NFTA_LIST_ELEM && expr_drops(e))
            }
            _ => {}
        }
    }
    match index.get(&(family, table, chain)) {
        Some(&i) => {
            rs.chains[i].rules += 1;
            rs.chains[i].drops += u64::from(drops);
        }
        None => rs.rules_unmatched += 1,
    }
}

/// Whether an expression ends its rule with a drop or reject: nft's
/// `drop` (an immediate verdict), `reject`, or iptables-nft's `REJECT` and
/// `DROP` targets.
fn expr_drops(e: &[u8]) -> bool {
    let mut name = String::new();
    let mut data: &[u8] = &[];
    for (t, p) in attrs(e) {
        match t {
            NFTA_EXPR_NAME => name = attr_str(p),
            NFTA_EXPR_DATA => data = p,
            _ => {}
        }
    }
    match name.as_str() {
        "reject" => true,
        "immediate" => attrs(data)
            .filter(|(t, _)| *t == NFTA_IMMEDIATE_DATA)
            .flat_map(|(_, d)| attrs(d))
            .filter(|(t, _)| *t == NFTA_DATA_VERDICT)
            .flat_map(|(_, v)| attrs(v))
            .any(|(t, c)| t == NFTA_VERDICT_CODE && attr_be32(c) == Some(NF_DROP)),
        "target" => attrs(data).any(|(t, n)| {
            t == NFTA_TARGET_NAME && matches!(attr_str(n).as_str(), "REJECT" | "DROP")
        }),
        _ => false,
    }
}
