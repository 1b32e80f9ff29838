//! Delivery of request bodies to HTTP receivers, through a [`Spool`] on
//! disk per receiver, one thread each.
//!
//! [`Outbox::send`] writes the body into every receiver's spool and
//! returns; each receiver's thread posts its spool's oldest body until the
//! receiver takes it. A post that fails for a reason that may pass (no
//! connection, a timeout, a 5xx, 408, 429, or 401/403, which a fixed token
//! cures) is retried with exponential backoff, so a receiver that is down
//! gets every body, in order, when it returns, as long as the spool held
//! them. A body the receiver refuses for good (another 4xx: it cannot
//! parse it) is dropped and counted as rejected, so one bad body cannot
//! block the queue. Bodies still queued at shutdown stay on disk and go
//! out after the next start.

use std::{
    path::Path,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::spool::Spool;
use crate::http_post::{Backoff, Client, Posted, pause};

/// A receiver: where bodies go and the headers each post carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Most bytes of bodies each receiver's spool keeps.
    pub queue_bytes: u64,
    /// Each post's whole time limit.
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// One receiver's counts since the agent started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bodies the receiver accepted, and their bytes.
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    /// Posts that failed and will be retried.
    pub failures: AtomicU64,
    /// Bodies deleted from a full spool, oldest first.
    pub dropped: AtomicU64,
    /// Bodies the receiver refused for good (a 4xx that retrying cannot
    /// cure).
    pub rejected: AtomicU64,
    /// Bodies that could not be written to or read from the spool.
    pub spool_errors: AtomicU64,
}

struct Inner {
    spool: Spool,
    closed: bool,
}

struct Queue {
    target: Target,
    inner: Mutex<Inner>,
    cond: Condvar,
    stats: Stats,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::http_post::lock(&self.inner)
    }
}

/// The receivers' spools and threads. Dropping it stops the threads; what
/// is queued stays on disk.
pub struct Outbox {
    queues: Vec<Arc<Queue>>,
    threads: Vec<JoinHandle<()>>,
}

/// A receiver's spool directory under `dir`: its host and port, and a hash
/// of the whole URL so two paths on one host get two spools.
pub fn spool_dir(dir: &Path, url: &str) -> std::path::PathBuf {
    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    let host: String = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hex: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join(format!("{host}-{hex}"))
}

impl Outbox {
    /// An outbox for `urls`, every post carrying `headers`, retried with
    /// backoff from 1 s to 60 s; queues under `dir` (see [`Outbox::start`]).
    pub fn for_urls(
        urls: &[String],
        headers: &[(String, String)],
        queue_bytes: u64,
        timeout: Duration,
        dir: &Path,
        thread_name: &str,
    ) -> std::io::Result<Outbox> {
        let targets = urls
            .iter()
            .map(|url| Target {
                url: url.clone(),
                headers: headers.to_vec(),
            })
            .collect();
        let opts = Options {
            queue_bytes,
            timeout,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        };
        Outbox::start(targets, dir, &opts, thread_name)
    }

    /// Opens each target's spool under `dir` (see [`spool_dir`]) and
    /// starts its thread, named `thread_name`. Bodies left from an earlier
    /// run are delivered first.
    pub fn start(
        targets: Vec<Target>,
        dir: &Path,
        opts: &Options,
        thread_name: &str,
    ) -> std::io::Result<Outbox> {
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for target in targets {
            let spool = Spool::open(&spool_dir(dir, &target.url), opts.queue_bytes)?;
            if !spool.is_empty() {
                tracing::info!(url = %target.url, bodies = spool.len(), bytes = spool.bytes(), "Resuming the delivery of bodies queued before the last stop");
            }
            let q = Arc::new(Queue {
                target,
                inner: Mutex::new(Inner {
                    spool,
                    closed: false,
                }),
                cond: Condvar::new(),
                stats: Stats::default(),
            });
            let (q2, o) = (q.clone(), opts.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(thread_name.into())
                    .spawn(move || sender(&q2, &o))?,
            );
            queues.push(q);
        }
        Ok(Outbox { queues, threads })
    }

    /// Queues `body` for every receiver; never blocks on the network.
    pub fn send(&self, body: &[u8]) {
        for q in &self.queues {
            let mut inner = q.lock();
            match inner.spool.push(body) {
                Ok(pushed) => {
                    if pushed.dropped > 0 {
                        q.stats.dropped.fetch_add(pushed.dropped, Relaxed);
                        tracing::warn!(url = %q.target.url, dropped = pushed.dropped, "The delivery queue is full: the oldest bodies were dropped");
                    }
                }
                Err(e) => {
                    q.stats.spool_errors.fetch_add(1, Relaxed);
                    tracing::warn!(url = %q.target.url, "Could not queue a body: {e}");
                }
            }
            drop(inner);
            q.cond.notify_all();
        }
    }

    /// Each receiver's URL, counts, and queued bodies and bytes.
    pub fn stats(&self) -> impl Iterator<Item = (&str, &Stats, usize, u64)> {
        self.queues.iter().map(|q| {
            let inner = q.lock();
            (
                q.target.url.as_str(),
                &q.stats,
                inner.spool.len(),
                inner.spool.bytes(),
            )
        })
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        for q in &self.queues {
            q.lock().closed = true;
            q.cond.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn sender(q: &Queue, opts: &Options) {
    let client = Client::new(opts.timeout, true);
    let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
    loop {
        let (entry, body) = {
            let mut inner = q.lock();
            loop {
                if inner.closed {
                    return;
                }
                match inner.spool.front() {
                    Ok(Some(front)) => break front,
                    Ok(None) => {}
                    Err(e) => {
                        // Unreadable: drop it rather than stall the queue.
                        q.stats.spool_errors.fetch_add(1, Relaxed);
                        tracing::warn!(url = %q.target.url, "Could not read a queued body, dropping it: {e}");
                        let _ = inner.spool.pop();
                        continue;
                    }
                }
                inner = q.cond.wait(inner).unwrap_or_else(|e| e.into_inner());
            }
        };
        let headers = q
            .target
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()));
        match client.post(&q.target.url, headers, &body) {
            Posted::Ok => {
                q.stats.sent.fetch_add(1, Relaxed);
                q.stats.sent_bytes.fetch_add(entry.bytes, Relaxed);
                if backoff.reset() {
                    tracing::info!(url = %q.target.url, "The receiver takes bodies again");
                }
            }
            Posted::Refused(why) => {
                q.stats.rejected.fetch_add(1, Relaxed);
                tracing::warn!(url = %q.target.url, "The receiver refused a body, dropping it: {why}");
            }
            Posted::Retry(why) => {
                q.stats.failures.fetch_add(1, Relaxed);
                let wait = backoff.step();
                tracing::warn!(url = %q.target.url, retry_in = ?wait, "Delivery failed: {why}");
                drop(pause(q.lock(), &q.cond, wait, |i| i.closed));
                continue;
            }
        }
        // Delivered or refused: unless a full spool dropped it meanwhile,
        // it is still first.
        let mut inner = q.lock();
        if inner.spool.first() == Some(entry)
            && let Err(e) = inner.spool.pop()
        {
            q.stats.spool_errors.fetch_add(1, Relaxed);
            tracing::warn!(url = %q.target.url, "Could not remove a delivered body: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::TcpListener,
        sync::mpsc,
        time::Instant,
    };

    use super::*;

    /// What the test receiver got: the status it answered, the body, the
    /// header lines.
    type Got = (u16, Vec<u8>, Vec<String>);

    /// A receiver on loopback that answers each post with the next status
    /// of `statuses` (200 once they run out) and reports what it got.
    fn receiver(statuses: Vec<u16>) -> (String, mpsc::Receiver<Got>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let (mut headers, mut len) = (Vec::new(), 0);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let line = line.trim_end().to_owned();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    headers.push(line);
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let status = statuses.next().unwrap_or(200);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                if tx.send((status, body, headers)).is_err() {
                    return;
                }
            }
        });
        (url, rx)
    }

    fn opts(queue_bytes: u64) -> Options {
        Options {
            queue_bytes,
            timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
        }
    }

    #[test]
    fn bodies_arrive_in_order_through_failures_with_their_headers() {
        let (url, got) = receiver(vec![503, 503, 401, 200, 429]);
        let dir = tempfile::tempdir().unwrap();
        let target = Target {
            url: url.clone(),
            headers: vec![("X-API-KEY".into(), "k1".into())],
        };
        let outbox = Outbox::start(vec![target], dir.path(), &opts(1 << 20), "test").unwrap();
        for i in 0..4u8 {
            outbox.send(&[i; 3]);
        }
        let mut accepted = Vec::new();
        while accepted.len() < 4 {
            let (status, body, headers) = got.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(
                headers
                    .iter()
                    .any(|h| h == "X-API-KEY: k1" || h == "x-api-key: k1"),
                "{headers:?}"
            );
            if status == 200 {
                accepted.push(body);
            }
        }
        assert_eq!(accepted, (0..4u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        // The receiver answers before the sender counts: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while outbox.stats().next().unwrap().1.sent.load(Relaxed) < 4 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        let (_, stats, queued, bytes) = outbox.stats().next().unwrap();
        assert_eq!(stats.sent.load(Relaxed), 4);
        assert_eq!(stats.failures.load(Relaxed), 4);
        assert_eq!((queued, bytes), (0, 0));
    }

    #[test]
    fn a_refused_body_is_dropped_and_the_next_goes_out() {
        let (url, got) = receiver(vec![400]);
        let dir = tempfile::tempdir().unwrap();
        let target = Target {
            url,
            headers: vec![],
        };
        let outbox = Outbox::start(vec![target], dir.path(), &opts(1 << 20), "test").unwrap();
        outbox.send(b"bad");
        outbox.send(b"good");
        assert_eq!(got.recv_timeout(Duration::from_secs(10)).unwrap().1, b"bad");
        assert_eq!(
            got.recv_timeout(Duration::from_secs(10)).unwrap().1,
            b"good"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while outbox.stats().next().unwrap().1.sent.load(Relaxed) < 1 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(outbox.stats().next().unwrap().1.rejected.load(Relaxed), 1);
    }

    #[test]
    fn what_is_queued_when_the_agent_stops_goes_out_after_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens here: every post fails and is retried.
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", dead.local_addr().unwrap());
        drop(dead);
        let target = Target {
            url: url.clone(),
            headers: vec![],
        };
        let outbox = Outbox::start(vec![target], dir.path(), &opts(1 << 20), "test").unwrap();
        outbox.send(b"one");
        outbox.send(b"two");
        drop(outbox);
        let (live, got) = receiver(vec![]);
        // The same URL names the same spool; point it at the live receiver
        // by moving the directory.
        std::fs::rename(spool_dir(dir.path(), &url), spool_dir(dir.path(), &live)).unwrap();
        let target = Target {
            url: live,
            headers: vec![],
        };
        let _outbox = Outbox::start(vec![target], dir.path(), &opts(1 << 20), "test").unwrap();
        assert_eq!(got.recv_timeout(Duration::from_secs(10)).unwrap().1, b"one");
        assert_eq!(got.recv_timeout(Duration::from_secs(10)).unwrap().1, b"two");
    }
}
