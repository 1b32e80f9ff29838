//! Stream tickets: how a browser opens `/api/v1/stream`. `EventSource`
//! cannot send headers, and an API key in a URL would land in logs and
//! history, so a client trades its key for a ticket
//! (`POST /api/v1/stream/ticket`, see [`super::stream`]) and passes the
//! ticket as `?ticket=` on the stream's URL.
//!
//! A ticket is 32 random bytes (64 hex digits), good for one stream
//! connection within [`TTL`] of its issue, and for nothing else: no other
//! route looks at it. Only its sha-256 is kept. At most
//! `--stream-max-tickets` unused tickets live at once; expired ones are
//! pruned before each issue, and an issue over the cap is refused (503,
//! counted). Tickets redeemed, refused and expired unused are counted too.

use std::{
    collections::HashMap,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::error::ApiError;
use crate::keys::sha256;

/// How long a ticket may wait for its stream.
pub const TTL: Duration = Duration::from_secs(30);

/// The live tickets and what became of the others.
#[derive(Debug)]
pub struct Tickets {
    /// sha-256 of each unused ticket → when it expires.
    live: Mutex<HashMap<[u8; 32], Instant>>,
    max: usize,
    ttl: Duration,
    /// Tickets issued.
    pub issued: AtomicU64,
    /// Issues refused: `max` tickets were live.
    pub refused: AtomicU64,
    /// Tickets that opened a stream.
    pub redeemed: AtomicU64,
    /// Presented tickets that were unknown, used or expired.
    pub rejected: AtomicU64,
    /// Tickets pruned unused after their time.
    pub expired: AtomicU64,
}

/// A ticket just issued.
pub struct Issued {
    /// The ticket itself, 64 hex digits.
    pub ticket: String,
    /// How long it is good for.
    pub ttl: Duration,
}

impl Tickets {
    /// At most `max` live tickets, each good for `ttl`.
    pub fn new(max: u32, ttl: Duration) -> Self {
        Self {
            live: Mutex::new(HashMap::new()),
            max: max as usize,
            ttl,
            issued: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            redeemed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            expired: AtomicU64::new(0),
        }
    }

    /// A new ticket, or a 503 (counted) when `max` are live.
    pub fn issue(&self) -> Result<Issued, ApiError> {
        self.issue_at(Instant::now())
    }

    fn issue_at(&self, now: Instant) -> Result<Issued, ApiError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut live = self.lock();
        let before = live.len();
        live.retain(|_, expires| *expires > now);
        self.expired
            .fetch_add((before - live.len()) as u64, Ordering::Relaxed);
        if live.len() >= self.max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::Unavailable(format!(
                "{} stream tickets are waiting to be used, the most --stream-max-tickets allows; \
                 retry later",
                self.max
            )));
        }
        live.insert(sha256(ticket.as_bytes()), now + self.ttl);
        self.issued.fetch_add(1, Ordering::Relaxed);
        Ok(Issued {
            ticket,
            ttl: self.ttl,
        })
    }

    /// Uses up `ticket`: true when it was live and unexpired (counted
    /// either way).
    pub fn redeem(&self, ticket: &str) -> bool {
        self.redeem_at(ticket, Instant::now())
    }

    fn redeem_at(&self, ticket: &str, now: Instant) -> bool {
        let removed = self.lock().remove(&sha256(ticket.as_bytes()));
        let ok = removed.is_some_and(|expires| expires > now);
        let counter = if ok { &self.redeemed } else { &self.rejected };
        counter.fetch_add(1, Ordering::Relaxed);
        if removed.is_some() && !ok {
            self.expired.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Unused tickets held now (expired ones included until pruned).
    pub fn live(&self) -> usize {
        self.lock().len()
    }

    /// The cap (`--stream-max-tickets`).
    pub fn max(&self) -> u32 {
        u32::try_from(self.max).unwrap_or(u32::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    #[test]
    fn a_ticket_opens_one_stream_within_its_time() {
        let t = Tickets::new(8, Duration::from_secs(30));
        let now = Instant::now();
        let a = t.issue_at(now).unwrap();
        assert_eq!(a.ticket.len(), 64);
        assert!(a.ticket.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(t.redeem_at(&a.ticket, now + Duration::from_secs(29)));
        // Single use.
        assert!(!t.redeem_at(&a.ticket, now + Duration::from_secs(29)));
        // Expired.
        let b = t.issue_at(now).unwrap();
        assert!(!t.redeem_at(&b.ticket, now + Duration::from_secs(30)));
        // Unknown, and a key is not a ticket.
        assert!(!t.redeem_at("0123456789abcdef-test", now));
        assert_eq!(get(&t.issued), 2);
        assert_eq!(get(&t.redeemed), 1);
        assert_eq!(get(&t.rejected), 3);
        assert_eq!(get(&t.expired), 1);
        assert_eq!(t.live(), 0);
    }

    #[test]
    fn live_tickets_are_capped_and_expired_ones_pruned() {
        let t = Tickets::new(3, Duration::from_secs(30));
        let now = Instant::now();
        let first: Vec<_> = (0..3).map(|_| t.issue_at(now).unwrap()).collect();
        let err = t.issue_at(now + Duration::from_secs(1)).err().unwrap();
        assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(err.to_string().contains("--stream-max-tickets"), "{err}");
        assert_eq!(get(&t.refused), 1);
        // Redeeming one frees its place.
        assert!(t.redeem_at(&first[0].ticket, now + Duration::from_secs(1)));
        t.issue_at(now + Duration::from_secs(1)).unwrap();
        assert_eq!(t.live(), 3);
        // Past their time they go at the next issue.
        t.issue_at(now + Duration::from_secs(30)).unwrap();
        assert_eq!(t.live(), 2);
        assert_eq!(get(&t.expired), 2);
        t.issue_at(now + Duration::from_secs(31)).unwrap();
        assert_eq!(get(&t.expired), 3);
        assert_eq!(t.live(), 2);
    }

    #[test]
    fn tickets_differ() {
        let t = Tickets::new(100, TTL);
        let set: std::collections::HashSet<String> =
            (0..100).map(|_| t.issue().unwrap().ticket).collect();
        assert_eq!(set.len(), 100);
    }
}
