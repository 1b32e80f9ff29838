//! Reverse DNS, cached, resolved off the caller's thread.
//!
//! [`ReverseDns::lookup`] only reads the cache and, for an address it has
//! no fresh answer for, queues a lookup for the worker threads; it never
//! waits. The workers ask the system resolver (`getnameinfo` with
//! `NI_NAMEREQD`), so `/etc/nsswitch.conf`, `/etc/hosts` and
//! `/etc/resolv.conf` apply as for every other program; their answers come
//! back on a channel that the next call drains.
//!
//! Invariants: the cache holds at most `max_entries` addresses; an address
//! is queued at most once at a time (its entry is marked pending); an
//! expired name keeps being returned while its renewal is pending.

use std::{
    collections::HashMap,
    ffi::CStr,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use tracing::{debug, warn};

use super::leases::sanitize;

/// Addresses waiting for a worker; when full, lookups are retried by later
/// calls instead of queued.
pub const QUEUE: usize = 1024;
/// Worker threads: lookups that hit a slow resolver wait in parallel.
pub const WORKERS: usize = 2;
/// A pending lookup older than this is assumed lost and queued again.
const PENDING_TIMEOUT: Duration = Duration::from_secs(120);
/// Retry delay after a resolver failure other than "no name" (at most the
/// negative TTL).
const FAILURE_RETRY: Duration = Duration::from_secs(60);

/// What the resolver said about one address.
#[derive(Debug)]
enum Answer {
    Name(String),
    NoName,
    Failed(String),
}

#[derive(Debug)]
struct Entry {
    name: Option<String>,
    /// When the answer must be renewed; an entry never answered has
    /// `expires` in the past.
    expires: Instant,
    /// When the lookup was queued, while one is.
    pending: Option<Instant>,
}

/// Counts of the cache's entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub names: usize,
    pub no_name: usize,
    pub pending: usize,
}

/// The reverse-DNS cache and its workers. Dropping it stops the workers
/// once their current lookup returns.
#[derive(Debug)]
pub struct ReverseDns {
    queue: SyncSender<IpAddr>,
    answers: Receiver<(IpAddr, Answer)>,
    cache: HashMap<IpAddr, Entry>,
    ttl: Duration,
    negative_ttl: Duration,
    max_entries: usize,
    /// The last condition logged, so a lasting one is logged once.
    logged: Option<&'static str>,
}

impl ReverseDns {
    pub fn new(ttl: Duration, negative_ttl: Duration, max_entries: usize) -> Self {
        let (queue, jobs) = mpsc::sync_channel::<IpAddr>(QUEUE);
        let (done, answers) = mpsc::channel();
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..WORKERS {
            let jobs = Arc::clone(&jobs);
            let done = done.clone();
            let spawned = thread::Builder::new()
                .name(format!("netmon-rdns-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(ip) = job else { return };
                        if done.send((ip, resolve(ip))).is_err() {
                            return;
                        }
                    }
                });
            if let Err(error) = spawned {
                warn!(%error, "Cannot start a reverse-DNS worker thread.");
            }
        }
        ReverseDns {
            queue,
            answers,
            cache: HashMap::new(),
            ttl,
            negative_ttl,
            max_entries,
            logged: None,
        }
    }

    /// The cached name of `ip`; queues a lookup when there is no fresh
    /// answer. Never blocks.
    pub fn lookup(&mut self, ip: IpAddr) -> Option<String> {
        self.drain();
        if !worth_asking(ip) {
            return None;
        }
        let now = Instant::now();
        if let Some(e) = self.cache.get_mut(&ip) {
            let waiting = e
                .pending
                .is_some_and(|t| now.duration_since(t) < PENDING_TIMEOUT);
            if now >= e.expires && !waiting {
                match self.queue.try_send(ip) {
                    Ok(()) => e.pending = Some(now),
                    Err(TrySendError::Full(_)) => log_once(&mut self.logged, "queue full"),
                    Err(TrySendError::Disconnected(_)) => log_once(&mut self.logged, "no workers"),
                }
            }
            return e.name.clone();
        }
        if self.cache.len() >= self.max_entries {
            log_once(&mut self.logged, "cache full");
            return None;
        }
        match self.queue.try_send(ip) {
            Ok(()) => {
                self.cache.insert(
                    ip,
                    Entry {
                        name: None,
                        expires: now,
                        pending: Some(now),
                    },
                );
            }
            Err(TrySendError::Full(_)) => log_once(&mut self.logged, "queue full"),
            Err(TrySendError::Disconnected(_)) => log_once(&mut self.logged, "no workers"),
        }
        None
    }

    /// Takes in the workers' answers.
    fn drain(&mut self) {
        let now = Instant::now();
        while let Ok((ip, answer)) = self.answers.try_recv() {
            let (name, ttl) = match answer {
                Answer::Name(name) => (Some(name), self.ttl),
                Answer::NoName => (None, self.negative_ttl),
                Answer::Failed(error) => {
                    debug!(%ip, error, "Reverse DNS lookup failed; retrying later.");
                    (None, self.negative_ttl.min(FAILURE_RETRY))
                }
            };
            if !self.cache.contains_key(&ip) && self.cache.len() >= self.max_entries {
                continue;
            }
            self.cache.insert(
                ip,
                Entry {
                    name,
                    expires: now + ttl,
                    pending: None,
                },
            );
        }
    }

    /// Drops answers that expired more than a TTL ago (addresses no longer
    /// asked about), so the cache follows the devices present. Call it now
    /// and then (the owner does, once per refresh).
    pub fn prune(&mut self) {
        self.drain();
        let now = Instant::now();
        let keep = self.ttl.max(self.negative_ttl);
        self.cache.retain(|_, e| {
            e.pending
                .is_some_and(|t| now.duration_since(t) < PENDING_TIMEOUT)
                || now < e.expires + keep
        });
        if self.cache.len() < self.max_entries && self.logged == Some("cache full") {
            self.logged = None;
        }
    }

    pub fn stats(&mut self) -> CacheStats {
        self.drain();
        let mut s = CacheStats::default();
        for e in self.cache.values() {
            if e.pending.is_some() {
                s.pending += 1;
            } else if e.name.is_some() {
                s.names += 1;
            } else {
                s.no_name += 1;
            }
        }
        s
    }
}

fn log_once(logged: &mut Option<&'static str>, what: &'static str) {
    if *logged != Some(what) {
        *logged = Some(what);
        match what {
            "cache full" => warn!(
                "The reverse-DNS cache is full; addresses not cached yet go unnamed until entries expire."
            ),
            "queue full" => {
                warn!("The reverse-DNS queue is full (slow resolver?); retrying later.")
            }
            _ => warn!("No reverse-DNS worker is running; names come from lease files only."),
        }
    }
}

/// Addresses no PTR record can usefully name.
fn worth_asking(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => {
            !(a.is_unspecified() || a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Asks the system resolver for `ip`'s name. Blocks (resolver timeouts).
fn resolve(ip: IpAddr) -> Answer {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match SocketAddr::new(ip, 0) {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::from_mut(&mut storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `storage` holds a sockaddr of `len` bytes; `host` is a
    // writable buffer of the given length; no service buffer is asked for.
    let rc = unsafe {
        libc::getnameinfo(
            std::ptr::from_ref(&storage).cast(),
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    match rc {
        0 => {
            // SAFETY: on success getnameinfo wrote a NUL-terminated string
            // into `host`.
            let raw = unsafe { CStr::from_ptr(host.as_ptr()) };
            sanitize(&raw.to_string_lossy()).map_or(Answer::NoName, Answer::Name)
        }
        libc::EAI_NONAME => Answer::NoName,
        rc => {
            // SAFETY: gai_strerror returns a static NUL-terminated string.
            let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
            Answer::Failed(msg.to_string_lossy().into_owned())
        }
    }
}
