//! Posting a body to an HTTP receiver, what its answer means, and the
//! backoff between retries: shared by alert delivery (`alerts::deliver`)
//! and the push and remote-write outbox (`push::outbox`).
//!
//! A leaf: it uses nothing of the crate (see docs/design.md, "Layering").

use std::{
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// How a post ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Posted {
    Ok,
    /// May pass (no connection, a timeout, 408, 429, a 5xx; 401 and 403
    /// too when the caller says a corrected token cures them): try again.
    Retry(String),
    /// The receiver will never take this body (another 4xx).
    Refused(String),
}

/// A blocking HTTP client with a whole-request time limit.
pub struct Client {
    agent: ureq::Agent,
    /// Whether 401 and 403 are worth retrying (the receiver's token may be
    /// fixed) rather than a refusal of the body.
    retry_auth: bool,
}

impl Client {
    pub fn new(timeout: Duration, retry_auth: bool) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            retry_auth,
        }
    }

    /// Posts `body` to `url` with `headers`.
    pub fn post<'a>(
        &self,
        url: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) -> Posted {
        let mut req = self.agent.post(url);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        match req.send(body) {
            Err(e) => Posted::Retry(e.to_string()),
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                let why = format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                );
                match status {
                    200..=299 => Posted::Ok,
                    408 | 429 | 500.. => Posted::Retry(why),
                    401 | 403 if self.retry_auth => Posted::Retry(why),
                    _ => Posted::Refused(why),
                }
            }
        }
    }
}

/// Exponential backoff from `min` to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next retry; the one after is twice as long.
    pub fn step(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// After a success; true when there had been failures.
    pub fn reset(&mut self) -> bool {
        let was_failing = self.next > self.min;
        self.next = self.min;
        was_failing
    }
}

/// Sleeps on `cond` for `wait`, or until `closed` says the queue behind
/// `guard` is closing; returns the guard.
pub fn pause<'a, T>(
    mut guard: MutexGuard<'a, T>,
    cond: &Condvar,
    wait: Duration,
    closed: impl Fn(&T) -> bool,
) -> MutexGuard<'a, T> {
    let deadline = Instant::now() + wait;
    while !closed(&guard) && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        guard = cond
            .wait_timeout(guard, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    guard
}

/// `m` locked, whether or not a holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_max_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| b.step().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert!(b.reset());
        assert!(!b.reset());
        assert_eq!(b.step(), Duration::from_secs(1));
    }
}
