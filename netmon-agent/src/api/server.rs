//! The HTTP server: accepts connections, enforces the connection limits of
//! [`super::limits`], and serves the router on each connection with hyper's
//! HTTP/1.1 connection builder (plain or TLS).
//!
//! - At most `--http-max-connections` connections are served at once. One
//!   more is accepted and refused at once: plain HTTP gets a short JSON 503
//!   (`Connection: close`), TLS is closed before the handshake; the refusal
//!   is counted. Refusals themselves are bounded ([`MAX_REFUSING`] at a time;
//!   beyond that a connection is closed without a word), so a flood of
//!   connections costs neither file descriptors nor tasks beyond the cap.
//! - Each connection has a watchdog (`Activity`) fed by its socket's reads
//!   and writes and by the requests it carries: the first request's head
//!   must be complete `--http-header-timeout` after the connection opened, a
//!   later one's that long after its first byte; a kept-alive connection
//!   without a request is closed after `--http-idle-timeout`, and so is one
//!   whose client has read nothing of a response for that long (its writes
//!   blocked). Each closure is counted by reason.
//! - TLS handshakes run inside the connection's slot, for at most
//!   `--tls-handshake-timeout`.
//! - Shutdown stops accepting, asks every connection to finish its request
//!   in progress and close, and returns once all have; the caller bounds that
//!   wait.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::limits::{Counters, Http, MAX_REFUSING};

/// How long a refusal may take to write its 503 and see the client's
/// request, before the socket is closed anyway.
const REFUSE_LINGER: Duration = Duration::from_millis(500);
/// How long to pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The answer to a connection over the cap.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 108\r\n\r\n\
{\"error\": {\"code\": \"unavailable\", \"message\": \"too many connections (--http-max-connections); retry later\"}}\n";

/// The socket a request came in on, in its extensions: lets a streaming
/// handler see how much of what it sent the client has not acknowledged.
/// Valid while the request's connection is being served (a response body is
/// only polled then).
#[derive(Clone, Copy, Debug)]
pub struct ConnSocket(pub RawFd);

impl ConnSocket {
    /// Bytes sent on the socket and not yet acknowledged by the peer
    /// (`SIOCOUTQ`), if the kernel says.
    pub fn unacknowledged(self) -> Option<u64> {
        let mut queued: libc::c_int = 0;
        // SAFETY: the fd is the open socket of the connection being served
        // (see the type's doc); SIOCOUTQ (TIOCOUTQ) writes one int.
        let rc = unsafe { libc::ioctl(self.0, libc::TIOCOUTQ, &raw mut queued) };
        (rc == 0).then(|| u64::try_from(queued).unwrap_or(0))
    }
}

/// Serves `app` on `listener` (TLS with `tls`) under `http`'s limits until
/// `shutdown` completes and every connection has closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    http: Arc<Http>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = http.opts.http_max_connections;
    let slots = Arc::new(Semaphore::new(max as usize));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let tls = tls.map(TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    // Set while accept keeps failing, so the failure is logged once.
    let mut failing = false;
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    failing = false;
                    conn
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "Cannot accept API connections; retrying.");
                    }
                    failing = true;
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let conn = Connection {
                    app: app.clone(),
                    http: Arc::clone(&http),
                    remote,
                    stop: stop_rx.clone(),
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    conn.run(tcp, tls).await;
                    drop(slot);
                });
            }
            Err(_) => {
                Counters::bump(&http.counters.connections_refused);
                debug!(%remote, max, "Refused an API connection: too many open.");
                if let (None, Ok(permit)) = (&tls, Arc::clone(&refusing).try_acquire_owned()) {
                    tokio::spawn(async move {
                        refuse(tcp).await;
                        drop(permit);
                    });
                }
                // Else dropped here: closed at once.
            }
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    // Every connection task holds a slot until it ends.
    let _all = slots.acquire_many(max).await;
    Ok(())
}

/// Writes the 503 to a connection over the cap, reads what the client sent
/// (so closing does not reset the connection before it reads the answer),
/// and closes it; all within [`REFUSE_LINGER`].
async fn refuse(tcp: TcpStream) {
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        let mut sent = 0;
        while sent < REFUSAL.len() {
            tcp.writable().await?;
            match tcp.try_write(&REFUSAL[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        socket2::SockRef::from(&tcp).shutdown(std::net::Shutdown::Write)?;
        let mut sink = [0u8; 1024];
        loop {
            tcp.readable().await?;
            match tcp.try_read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
}

/// One admitted connection.
struct Connection {
    app: Router,
    http: Arc<Http>,
    remote: SocketAddr,
    stop: watch::Receiver<bool>,
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    HeaderTimeout,
    Idle,
    Stalled,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        let counters = Arc::clone(&self.http.counters);
        Counters::bump(&counters.connections_open);
        let _open = scopeguard(move || {
            counters
                .connections_open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
        let _ = tcp.set_nodelay(true);
        let fd = tcp.as_raw_fd();
        let Some(acceptor) = tls else {
            return self.drive(tcp, fd).await;
        };
        let limit = self.http.opts.tls_handshake_timeout;
        let handshake = tokio::select! {
            r = tokio::time::timeout(limit, acceptor.accept(tcp)) => r,
            _ = self.stop.changed() => return,
        };
        match handshake {
            Ok(Ok(stream)) => self.drive(stream, fd).await,
            Ok(Err(e)) => {
                Counters::bump(&self.http.counters.closed_tls_handshake);
                debug!(remote = %self.remote, error = %e, "TLS handshake failed.");
            }
            Err(_) => {
                Counters::bump(&self.http.counters.closed_tls_handshake);
                debug!(remote = %self.remote, ?limit, "TLS handshake timed out.");
            }
        }
    }

    /// Serves HTTP/1.1 on `io` (whose socket is `fd`) until the client
    /// closes, the watchdog closes it, or shutdown has let it finish.
    async fn drive<I>(mut self, io: I, fd: RawFd)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Mutex::new(Activity::new(Instant::now())));
        let io = Tracked {
            inner: io,
            activity: Arc::clone(&activity),
        };
        let service = {
            let (app, remote, activity) = (self.app.clone(), self.remote, Arc::clone(&activity));
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(remote));
                req.extensions_mut().insert(ConnSocket(fd));
                lock(&activity).request_started();
                let in_flight = InFlight(Arc::clone(&activity));
                let response = app.clone().oneshot(req);
                async move {
                    let response = response.await?;
                    Ok::<_, Infallible>(response.map(|inner| TrackedBody {
                        inner,
                        _in_flight: in_flight,
                    }))
                }
            })
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let opts = &self.http.opts;
        let (header, idle) = (opts.http_header_timeout, opts.http_idle_timeout);
        let tick = (header.min(idle) / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        loop {
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        debug!(remote = %self.remote, error = %e, "API connection ended with an error.");
                    }
                    return;
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = ticks.tick() => {
                    let verdict = lock(&activity).verdict(Instant::now(), header, idle);
                    if let Some(reason) = verdict {
                        let c = &self.http.counters;
                        Counters::bump(match reason {
                            Closed::HeaderTimeout => &c.closed_header_timeout,
                            Closed::Idle => &c.closed_idle,
                            Closed::Stalled => &c.closed_stalled,
                        });
                        debug!(remote = %self.remote, ?reason, "Closed an API connection.");
                        return;
                    }
                }
            }
        }
    }
}

fn lock(activity: &Mutex<Activity>) -> std::sync::MutexGuard<'_, Activity> {
    activity.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a connection has been doing, for its watchdog.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Requests whose response body has not been sent in full.
    in_flight: usize,
    /// Requests received.
    requests: u64,
    /// When the last response was sent in full.
    idle_since: Instant,
    /// First byte of a request whose head is not complete yet (not for the
    /// first request: that one's clock starts at `opened`).
    head_started: Option<Instant>,
    /// Since when writes have been blocked by a client not reading.
    write_blocked: Option<Instant>,
    /// When bytes were last written (hyper hands a body over before it is
    /// sent: a response is not over until its bytes are).
    last_write: Instant,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Self {
            opened: now,
            in_flight: 0,
            requests: 0,
            idle_since: now,
            head_started: None,
            write_blocked: None,
            last_write: now,
        }
    }

    fn read(&mut self, now: Instant) {
        if self.in_flight == 0 && self.head_started.is_none() {
            self.head_started = Some(now);
        }
    }

    fn request_started(&mut self) {
        self.in_flight += 1;
        self.requests += 1;
        self.head_started = None;
    }

    fn response_done(&mut self, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.idle_since = now;
    }

    /// A write attempt: `Some(true)` moved bytes, `Some(false)` was blocked,
    /// `None` neither (an error, or nothing to write). Only moving bytes
    /// ends a blocked spell: a flush that finds nothing to do (plain TCP's
    /// always does) says nothing about the client.
    fn wrote(&mut self, moved: Option<bool>, now: Instant) {
        match moved {
            Some(true) => {
                self.write_blocked = None;
                self.last_write = now;
            }
            Some(false) if self.write_blocked.is_none() => self.write_blocked = Some(now),
            _ => {}
        }
    }

    /// Whether the connection must be closed at `now`, and why.
    fn verdict(&self, now: Instant, header: Duration, idle: Duration) -> Option<Closed> {
        let past = |since: Instant, limit: Duration| now.saturating_duration_since(since) >= limit;
        // Bytes waiting for a client that reads nothing, whether or not the
        // handler is done.
        if let Some(t) = self.write_blocked {
            return past(t, idle).then_some(Closed::Stalled);
        }
        if self.in_flight > 0 {
            return None;
        }
        if self.requests == 0 {
            return past(self.opened, header).then_some(Closed::HeaderTimeout);
        }
        match self.head_started {
            Some(t) => past(t, header).then_some(Closed::HeaderTimeout),
            None => past(self.idle_since.max(self.last_write), idle).then_some(Closed::Idle),
        }
    }
}

/// The socket (or TLS stream), reporting reads and writes to its
/// connection's [`Activity`].
struct Tracked<I> {
    inner: I,
    activity: Arc<Mutex<Activity>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            lock(&self.activity).read(Instant::now());
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        lock(&self.activity).wrote(progress(&polled), Instant::now());
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        lock(&self.activity).wrote(progress(&polled), Instant::now());
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if polled.is_pending() {
            lock(&self.activity).wrote(Some(false), Instant::now());
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a write's outcome says about the client: see [`Activity::wrote`].
fn progress(polled: &Poll<io::Result<usize>>) -> Option<bool> {
    match polled {
        Poll::Pending => Some(false),
        Poll::Ready(Ok(n)) if *n > 0 => Some(true),
        Poll::Ready(_) => None,
    }
}

/// A request in progress; its end (the response body sent in full, or
/// dropped) is reported to the connection's [`Activity`].
struct InFlight(Arc<Mutex<Activity>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).response_done(Instant::now());
    }
}

/// A response body that ends its request's [`InFlight`] when hyper is done
/// with it.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};

    use axum::routing::get;

    use super::*;

    const S: Duration = Duration::from_secs(1);

    /// Serves `app` (inside the API's outer layers) with `http`'s limits on
    /// a loopback socket, on a runtime of its own.
    fn serve_app(app: Router, http: Arc<Http>) -> (SocketAddr, tokio::runtime::Runtime) {
        let app = super::super::guarded(app, Arc::clone(&http));
        crate::api::test_support::serve_on_loopback(app, http)
    }

    /// Sends `GET path` on `conn` (kept alive) and reads one response:
    /// status, head, body.
    fn exchange(conn: &mut std::net::TcpStream, path: &str) -> (u16, String, String) {
        write!(conn, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "closed: {head}");
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no content-length: {head}"));
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let status = head[9..12].parse().unwrap();
        (status, head, String::from_utf8(body).unwrap())
    }

    /// A handler that panics is answered a JSON 500, the panic is counted,
    /// and the server goes on serving: on the same connection and new ones.
    #[test]
    fn a_panicking_handler_gets_a_json_500_and_the_server_keeps_serving() {
        let http = Arc::new(Http::default());
        async fn boom() -> &'static str {
            panic!("injected panic")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }));
        let (addr, _runtime) = serve_app(app, Arc::clone(&http));
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(10 * S)).unwrap();
        for _ in 0..2 {
            let (status, head, body) = exchange(&mut conn, "/boom");
            assert_eq!(status, 500, "{head}{body}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{head}"
            );
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                json,
                serde_json::json!({"error": {"code": "internal", "message": "internal server error"}})
            );
            let (status, _, body) = exchange(&mut conn, "/ok");
            assert_eq!((status, body.as_str()), (200, "ok"));
        }
        assert_eq!(Counters::get(&http.counters.panics), 2);
        let mut other = std::net::TcpStream::connect(addr).unwrap();
        other.set_read_timeout(Some(10 * S)).unwrap();
        assert_eq!(exchange(&mut other, "/ok").0, 200);
        // Errors from axum itself are JSON too: a method the path lacks.
        write!(
            other,
            "POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut reply = [0u8; 512];
        let n = other.read(&mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply[..n]);
        assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
        assert!(reply.contains("\"method_not_allowed\""), "{reply}");
    }

    /// The connection cap: with every slot taken, one more connection is
    /// answered the JSON 503 and closed, while the admitted ones are served.
    #[test]
    fn connections_over_the_cap_get_a_503_and_the_admitted_are_served() {
        let http = Arc::new(Http::new(
            crate::api::limits::Options {
                http_max_connections: 2,
                ..Default::default()
            },
            S,
        ));
        let app = Router::new().route("/ok", get(|| async { "ok" }));
        let (addr, _runtime) = serve_app(app, Arc::clone(&http));
        let mut admitted: Vec<_> = (0..2)
            .map(|_| {
                let c = std::net::TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(10 * S)).unwrap();
                c
            })
            .collect();
        // Both are served (so both hold a slot) before the third comes.
        for c in &mut admitted {
            assert_eq!(exchange(c, "/ok").0, 200);
        }
        let mut extra = std::net::TcpStream::connect(addr).unwrap();
        extra.set_read_timeout(Some(10 * S)).unwrap();
        let mut reply = Vec::new();
        // The answer comes without a request, and then the end.
        let _ = extra.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
        assert!(reply.contains("--http-max-connections"), "{reply}");
        assert_eq!(Counters::get(&http.counters.connections_refused), 1);
        for c in &mut admitted {
            assert_eq!(exchange(c, "/ok").0, 200);
        }
        assert_eq!(Counters::get(&http.counters.connections_open), 2);
        // A slot freed is a slot for the next client.
        drop(admitted.pop());
        let deadline = Instant::now() + 10 * S;
        loop {
            let mut next = std::net::TcpStream::connect(addr).unwrap();
            next.set_read_timeout(Some(10 * S)).unwrap();
            write!(next, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = [0u8; 12];
            let _ = next.read_exact(&mut buf);
            if buf.starts_with(b"HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "the freed slot was never reused");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client that stops reading a response is cut once the server's
    /// writes have been blocked for `--http-idle-timeout`, and counted; a
    /// handler's own time is not cut.
    #[test]
    fn a_client_that_reads_nothing_of_a_response_is_cut_and_counted() {
        const BIG: usize = 64 << 20;
        let http = Arc::new(Http::new(
            crate::api::limits::Options {
                http_idle_timeout: Duration::from_millis(500),
                ..Default::default()
            },
            S,
        ));
        async fn slow() -> &'static str {
            // Longer than the idle timeout, without a write.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "done"
        }
        let app = Router::new()
            .route("/big", get(|| async { vec![b'x'; BIG] }))
            .route("/slow", get(slow));
        let (addr, _runtime) = serve_app(app, Arc::clone(&http));
        let mut patient = std::net::TcpStream::connect(addr).unwrap();
        patient.set_read_timeout(Some(10 * S)).unwrap();
        let (status, _, body) = exchange(&mut patient, "/slow");
        assert_eq!((status, body.as_str()), (200, "done"));
        assert_eq!(Counters::get(&http.counters.closed_stalled), 0);

        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut stalled: std::net::TcpStream = socket.into();
        write!(stalled, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let deadline = Instant::now() + 20 * S;
        while Counters::get(&http.counters.closed_stalled) == 0 {
            assert!(
                Instant::now() < deadline,
                "a client reading nothing was never cut"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // What it can still read ends well before the whole body.
        stalled.set_read_timeout(Some(10 * S)).unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stalled.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(got < BIG, "the whole body arrived: {got}");
    }

    #[test]
    fn refusal_is_a_well_formed_json_503() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "unavailable");
    }

    #[test]
    fn first_request_head_is_timed_from_the_opening() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        assert_eq!(a.verdict(t0 + 9 * S, 10 * S, 60 * S), None);
        a.read(t0 + 9 * S);
        assert_eq!(
            a.verdict(t0 + 10 * S, 10 * S, 60 * S),
            Some(Closed::HeaderTimeout)
        );
        a.request_started();
        assert_eq!(a.verdict(t0 + 100 * S, 10 * S, 60 * S), None);
    }

    #[test]
    fn kept_alive_connections_are_idle_until_a_byte_then_timed_for_the_head() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        a.request_started();
        a.response_done(t0 + S);
        assert_eq!(a.verdict(t0 + 60 * S, 10 * S, 60 * S), None);
        assert_eq!(a.verdict(t0 + 61 * S, 10 * S, 60 * S), Some(Closed::Idle));
        a.read(t0 + 30 * S);
        assert_eq!(a.verdict(t0 + 39 * S, 10 * S, 60 * S), None);
        assert_eq!(
            a.verdict(t0 + 40 * S, 10 * S, 60 * S),
            Some(Closed::HeaderTimeout)
        );
    }

    #[test]
    fn a_response_still_being_sent_is_not_idle() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        a.request_started();
        // hyper took the whole body at once; its bytes go out slowly.
        a.response_done(t0 + S);
        for i in 2..200 {
            a.wrote(Some(false), t0 + i * S);
            a.wrote(Some(true), t0 + i * S + S / 2);
            assert_eq!(a.verdict(t0 + (i + 1) * S, 10 * S, 60 * S), None, "{i}");
        }
        assert_eq!(a.verdict(t0 + 259 * S, 10 * S, 60 * S), None);
        assert_eq!(a.verdict(t0 + 260 * S, 10 * S, 60 * S), Some(Closed::Idle));
        // Blocked after the handler is done: stalled, not idle.
        a.wrote(Some(false), t0 + 300 * S);
        assert_eq!(
            a.verdict(t0 + 360 * S, 10 * S, 60 * S),
            Some(Closed::Stalled)
        );
    }

    #[test]
    fn a_response_is_only_cut_when_its_writes_stay_blocked() {
        let t0 = Instant::now();
        let mut a = Activity::new(t0);
        a.request_started();
        // A long handler: never closed for it.
        assert_eq!(a.verdict(t0 + 1000 * S, 10 * S, 60 * S), None);
        a.wrote(Some(false), t0 + 1000 * S);
        a.wrote(Some(false), t0 + 1050 * S);
        a.wrote(None, t0 + 1055 * S);
        assert_eq!(a.verdict(t0 + 1059 * S, 10 * S, 60 * S), None);
        a.wrote(Some(true), t0 + 1059 * S);
        assert_eq!(a.verdict(t0 + 1100 * S, 10 * S, 60 * S), None);
        a.wrote(Some(false), t0 + 1100 * S);
        assert_eq!(
            a.verdict(t0 + 1160 * S, 10 * S, 60 * S),
            Some(Closed::Stalled)
        );
    }
}
