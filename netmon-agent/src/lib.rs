//! netmon's userspace agent.
//!
//! Start-up order: find the API key, load the eBPF object, attach to the
//! interfaces, bind the API; any failure there ends the process with an
//! [`Error`] whose [`Error::exit_code`] says which step failed. Then these
//! run until SIGINT or SIGTERM:
//! - the drain thread, which owns the kernel object: every interval it
//!   re-checks the interfaces (the watcher attaches to new ones and
//!   forgets removed ones), reads the maps, folds them into
//!   [`traffic::Traffic`] and publishes a [`snapshot::Snapshot`];
//! - one thread per enabled collector ([`collect`]), each at its own
//!   interval, publishing into [`collect::Telemetry`];
//! - with a history file, the store's writer thread (records each interval)
//!   and maintenance thread (downsampling, expiry, size budget), restarted
//!   after a panic ([`store::supervise`]);
//! - the HTTP API on tokio, which serves the latest snapshot, the
//!   collectors' readings and the history.
//!
//! The collectors and the store's maintenance stop on one
//! [`shutdown::Stop`]; the drain thread on a channel; the API on the
//! signal's future. The module graph is layered: see docs/design.md,
//! "Layering", and tests/layering.rs.
//!
//! On shutdown the drain thread detaches every program before the process
//! exits; since every attachment is a BPF link, even SIGKILL leaves nothing
//! attached.

pub mod alerts;
pub mod api;
pub mod check;
pub mod collect;
pub mod config;
pub mod ebpf;
pub mod errors;
pub mod ifaces;
pub mod keys;
pub mod logging;
pub mod lru;
pub mod metrics;
pub mod privileges;
pub mod rates;
pub mod shutdown;
pub mod snapshot;
pub mod store;
pub mod traffic;
pub mod units;

/// Skipping this crate's privileged unit tests when `cargo test` runs as a
/// normal user (the integration tests have `skip_unless_root!` in
/// tests/common/root.rs); `cargo xtask test` runs them as root.
#[cfg(test)]
pub(crate) mod test_root {
    use std::{io::Write, sync::Once};

    /// True when the calling test should return early because the effective
    /// user is not root; the first such call writes one line about it
    /// straight to the stderr handle, which libtest does not capture.
    pub(crate) fn skip_privileged() -> bool {
        static NOTE: Once = Once::new();
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return false;
        }
        NOTE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "netmon: skipping the privileged tests of netmon_agent's unit tests: \
                 they need root (run them with cargo xtask test)"
            );
        });
        true
    }
}

use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    path::Path,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant, SystemTime},
};

use tracing::{error, info, warn};

use crate::{
    api::auth,
    config::{Config, Loaded},
    ebpf::{AttachError, Attachments, Kernel, LoadError},
    snapshot::{InterfaceRow, Shared, Snapshot},
    traffic::{Reading, Traffic},
};

/// How long shutdown waits for HTTP requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the agent could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable API key.
    #[error(transparent)]
    Key(#[from] keys::AuthError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] api::tls::TlsError),
    /// The history file is of a newer schema or not netmon's.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Loading the eBPF object failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Attaching to a requested interface failed.
    #[error(transparent)]
    Attach(#[from] Box<AttachError>),
    /// The interface list could not be read.
    #[error("cannot list network interfaces in {}", ifaces::SYS_CLASS_NET)]
    Interfaces(#[source] io::Error),
    /// No interface matched the default selection.
    #[error(
        "no interface to watch: none is up, non-loopback and with a MAC address; name one with --iface"
    )]
    NoInterfaces,
    /// The API could not listen.
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The API server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] io::Error),
    /// The webhook secret cannot be read.
    #[error(transparent)]
    Alerts(#[from] alerts::run::SecretError),
}

impl Error {
    /// The process exit code for this error (documented in the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Key(_) | Error::Tls(_) | Error::Alerts(_) => 2,
            Error::Load(LoadError::MissingCapability(_)) => 3,
            Error::Load(LoadError::NoBtf) => 4,
            Error::Load(_) => 7,
            Error::NoInterfaces => 5,
            Error::Attach(e) if matches!(**e, AttachError::UnknownInterface(_)) => 5,
            Error::Attach(_) => 6,
            Error::Listen { .. } => 8,
            Error::Store(_) => 9,
            Error::Interfaces(_) | Error::Serve(_) => 1,
        }
    }
}

/// What start-up produced: everything that needs privilege is done.
pub struct Started {
    cfg: Config,
    keys: auth::Keyring,
    /// HTTPS when `--tls-cert`/`--tls-key` are set.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    listener: std::net::TcpListener,
    kernel: Kernel,
    watcher: Watcher,
    attachments: Attachments,
    /// The history, or why there is none.
    store: api::StoreSlot,
    /// What `/api/v1/config` answers.
    effective: Arc<api::config::Effective>,
    /// The alert rules and receivers (the webhook secret read).
    alerts: alerts::run::Prepared,
}

/// Runs the agent until SIGINT or SIGTERM: [`start`], then [`serve`].
pub async fn run(loaded: Loaded) -> Result<(), Error> {
    serve(start(loaded)?).await
}

/// The privileged part of start-up, on the calling thread: find the API
/// key, bind the API address, load the programs, attach them. Call it
/// before any other thread exists, then [`privileges::drop_unneeded`].
pub fn start(loaded: Loaded) -> Result<Started, Error> {
    let cfg = loaded.config.clone();
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let (key, source) = keys::load_or_generate_with_credentials(
        std::env::var(keys::KEY_ENV_VAR).ok(),
        cfg.api_key_file.as_deref(),
        credentials.as_deref(),
        &cfg.state_dir,
    )?;
    match &source {
        keys::KeySource::Generated(path) => info!(
            path = %path.display(),
            "Generated an API key (readable only by this user). Send it as `X-API-KEY: <key>` or `Authorization: Bearer <key>`."
        ),
        other => info!(source = %other, "Using the API key."),
    }
    let read_only = keys::read_key_lists(&cfg.access.read_only_key_files)?;
    if !read_only.is_empty() {
        info!(
            keys = read_only.len(),
            files = cfg.access.read_only_key_files.len(),
            "Using read-only API keys."
        );
    }
    let effective = Arc::new(api::config::Effective::new(
        &loaded,
        &source,
        read_only.len(),
    ));
    let keys = auth::Keyring::new(key).with(auth::Role::ReadOnly, read_only);
    // Read now: the key file may be readable by root only.
    let tls = api::tls::load(&cfg.access)?;
    let alerts = alerts::run::Prepared::new(&cfg.alerts, &cfg.alert_rules)?;

    // Bind first: a taken address fails before anything is attached.
    let listen_err = |source| Error::Listen {
        addr: cfg.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;

    let store = open_store(&cfg)?;

    let mut kernel = Kernel::load(cfg.ingress, cfg.map_sizes())?;
    let mut watcher = Watcher::new(cfg.ifaces.clone());
    let mut attachments = Attachments::new();
    watcher.reconcile(&mut kernel, &mut attachments, true)?;
    Ok(Started {
        cfg,
        keys,
        tls,
        listener,
        kernel,
        watcher,
        attachments,
        store,
        effective,
        alerts,
    })
}

/// Opens the history file. A file netmon must not touch (a newer schema,
/// not netmon's) stops the start: the operator has to decide. A damaged
/// file is moved aside and a fresh one started (said loudly; `/health`
/// says so). A file that cannot be created or opened otherwise
/// (permissions, a missing volume, open in another process) leaves the
/// agent running without history, said loudly, and the history endpoints
/// answer 503 with the reason. A file far over its size budget is cut down
/// and compacted here, while nothing else uses it; if that fails the agent
/// goes on with the file as it is.
fn open_store(cfg: &Config) -> Result<api::StoreSlot, Error> {
    if cfg.store.no_history {
        info!("History is off (--no-history).");
        return Ok(Err(Arc::from("turned off with --no-history")));
    }
    let path = cfg.store_path();
    match store::Store::open_or_recover(&path, cfg.store.retention()) {
        Ok(mut s) => {
            info!(path = %path.display(), "History file open.");
            if let Err(e) = s.compact_oversized(s.now().wall_ms) {
                warn!(
                    error = %errors::error_chain(&e),
                    "Could not compact the oversized history file; going on with it as it is."
                );
            }
            Ok(Ok(Arc::new(s)))
        }
        Err(e @ (store::StoreError::Newer { .. } | store::StoreError::Foreign { .. })) => {
            Err(e.into())
        }
        Err(e) => {
            let reason = format!("{:#}", anyhow::Error::from(e));
            error!(
                error = reason,
                "History disabled: the agent runs without it."
            );
            Ok(Err(Arc::from(reason.as_str())))
        }
    }
}

/// Runs a [`start`]ed agent until SIGINT or SIGTERM.
pub async fn serve(started: Started) -> Result<(), Error> {
    let Started {
        cfg,
        keys,
        tls,
        listener,
        kernel,
        watcher,
        attachments,
        store,
        effective,
        alerts,
    } = started;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| Error::Listen {
        addr: cfg.listen,
        source,
    })?;
    let http = Arc::new(api::limits::Http::new(cfg.api_limits.clone(), cfg.interval));
    api::limits::check_fd_limit(&cfg.api_limits);
    let tls_config = tls;
    let tls = tls_config.is_some();
    info!(addr = %cfg.listen, tls, "API listening.");

    let shared = Shared::default();
    let telemetry = collect::Telemetry::default();
    let stop_collectors = shutdown::Stop::default();
    let collectors = telemetry.spawn(
        &cfg.collect,
        &collect::Context {
            traffic: shared.clone(),
            stop: stop_collectors.clone(),
        },
        &stop_collectors,
    );
    let series = Arc::new(store::record::FlowSeriesStats::default());
    let store_threads = match &store {
        Ok(st) => spawn_store(&cfg, st, &shared, &telemetry, &stop_collectors, &series),
        Err(_) => Vec::new(),
    };
    let (alerts, alert_thread) =
        spawn_alerts(&cfg, alerts, &store, &shared, &telemetry, &stop_collectors);
    let watched = attachments.len();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let drain = {
        let shared = shared.clone();
        let series = Arc::clone(&series);
        let cfg = cfg.clone();
        thread::Builder::new()
            .name("netmon-drain".into())
            .spawn(move || {
                let out = Published {
                    shared: &shared,
                    series: &series,
                };
                drain_loop(&cfg, kernel, attachments, watcher, out, &stop_rx)
            })
            .expect("spawning the drain thread")
    };

    let scheme = if tls { "https" } else { "http" };
    let status = format!(
        "Watching {watched} interface(s); API on {scheme}://{}.",
        cfg.listen
    );
    // Ready: the programs are attached and the API socket is bound (requests
    // queue until the server below accepts them).
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);

    let app = api::router(
        api::AppState {
            snapshot: shared,
            telemetry,
            server_id: cfg.server_id.clone(),
            metrics: metrics::Settings::new(&cfg.metrics, cfg.listen),
            store,
            config: effective,
            http: Arc::clone(&http),
            alerts,
        },
        Arc::new(keys.limited(&cfg.api_limits, Arc::clone(&http.counters))),
    );
    let stopping = Arc::new(tokio::sync::Notify::new());
    let shutdown = {
        let stopping = Arc::clone(&stopping);
        async move { stopping.notified().await }
    };
    let server = api::server::serve(listener, tls_config, app, http, shutdown);
    // Graceful shutdown waits for requests in progress; a client that never
    // finishes its request must not keep the programs attached, so the wait
    // is bounded.
    let served = tokio::select! {
        served = server => served,
        () = async {
            shutdown_signal().await;
            notify(&[sd_notify::NotifyState::Stopping]);
            stopping.notify_one();
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            warn!(grace = ?SHUTDOWN_GRACE, "Requests still open at shutdown; dropping them.");
            Ok(())
        }
    };

    // Stop the drain thread; it detaches the programs.
    let _ = stop_tx.send(());
    stop_collectors.stop();
    if drain.join().is_err() {
        error!("The drain thread panicked.");
    }
    for c in collectors
        .into_iter()
        .chain(store_threads)
        .chain(alert_thread)
    {
        if c.join().is_err() {
            error!("A collector or history thread panicked.");
        }
    }
    served.map_err(Error::Serve)?;
    info!("Stopped.");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down."),
        _ = term.recv() => info!("SIGTERM: shutting down."),
    }
}

/// Where the drain loop publishes: the snapshot, and what it copies into
/// each snapshot from the history's recorder.
struct Published<'a> {
    shared: &'a Shared,
    series: &'a store::record::FlowSeriesStats,
}

fn drain_loop(
    cfg: &Config,
    mut kernel: Kernel,
    mut attachments: Attachments,
    mut watcher: Watcher,
    out: Published<'_>,
    stop: &mpsc::Receiver<()>,
) {
    let mut traffic = Traffic::with_limits(
        cfg.idle_expiry,
        cfg.max_flows as usize,
        cfg.max_devices as usize,
    );
    // The recorder picks the interval's top flows from the listed ones.
    let listed = snapshot::LISTED_FLOWS.max(cfg.store.store_flows_per_interval as usize);
    let mut reading = Reading::default();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut next = Instant::now();
    // systemd's watchdog is answered from this thread, so a drain that hangs
    // (in a map read, say) stops the answers and gets the service restarted.
    let watchdog = sd_notify::watchdog_enabled().map(|period| period / 2);
    if let Some(every) = watchdog {
        info!(?every, "Answering systemd's watchdog.");
    }
    let mut changes = ifaces::Changes::new();
    let mut subnets = ifaces::subnets();
    loop {
        // Interfaces are listed again only when the kernel says links or
        // addresses changed (and every Changes::RECHECK): listing them costs
        // more than reading the maps.
        if changes.changed() {
            if let Err(e) = watcher.reconcile(&mut kernel, &mut attachments, false) {
                warn!(error = %e, "Re-checking interfaces failed.");
            }
            subnets = ifaces::subnets();
        }
        for a in attachments.values() {
            names.insert(a.ifindex, a.name.clone());
        }
        let removed = !watcher.removed.is_empty();
        for gone in watcher.removed.drain(..) {
            traffic.forget_interface(gone);
        }
        match kernel.read(&mut reading) {
            Ok(()) => {
                let expired = traffic.update(Instant::now(), SystemTime::now(), &reading, &subnets);
                let (macs, flows) = kernel.delete(&expired);
                traffic.deleted(macs, flows);
                let lingering = names.keys().any(|i| !attachments.contains_key(i));
                if lingering && (removed || !expired.macs.is_empty() || !expired.flows.is_empty()) {
                    // Keep the names of removed interfaces while devices or
                    // flows on them are still listed (a pass over every
                    // flow: only while such names remain).
                    let in_use: HashSet<u32> = traffic
                        .devices
                        .values()
                        .map(|d| d.ifindex)
                        .chain(traffic.flows.values().map(|f| f.key.ifindex))
                        .collect();
                    names.retain(|i, _| attachments.contains_key(i) || in_use.contains(i));
                }
                let mut snap = snapshot(&traffic, &attachments, &names, listed);
                snap.flow_series = out.series.get();
                out.shared.set(snap);
            }
            Err(e) => {
                warn!(error = %format!("{:#}", anyhow::Error::from(e)), "Reading the maps failed.")
            }
        }
        next += cfg.interval;
        let now = Instant::now();
        if next < now {
            // A slow read: skip the missed ticks rather than burst.
            next = now + cfg.interval;
        }
        if !wait_for_tick(next, watchdog, stop) {
            break;
        }
    }
    for (_, a) in attachments.drain() {
        kernel.detach(a);
    }
}

/// The history's two threads, each supervised (a panic restarts it after
/// a pause, see `store/supervise.rs`): the recorder writes each new
/// snapshot (and the collectors' new readings) in one transaction,
/// retrying intervals that could not be written, and at shutdown writes
/// the last one and everything queued; maintenance folds, expires and
/// enforces the size budget. Both stop with the collectors.
fn spawn_store(
    cfg: &Config,
    st: &Arc<store::Store>,
    shared: &Shared,
    telemetry: &collect::Telemetry,
    stop: &shutdown::Stop,
    series: &Arc<store::record::FlowSeriesStats>,
) -> Vec<thread::JoinHandle<()>> {
    use store::{status::Part, supervise};
    /// How long the last write at shutdown may take.
    const FINISH: Duration = Duration::from_secs(5);
    let writer = {
        let (shared, tel) = (shared.clone(), telemetry.clone());
        let rec = store::record::Recorder::new(cfg.store.store_flows_per_interval as usize)
            .with_capacity(cfg.store.store_queue_intervals as usize)
            .with_flow_series_cap(
                cfg.record.store_flow_series_per_hour as usize,
                Arc::clone(series),
            );
        let every = cfg.interval;
        let mut inject = supervise::Injector::from_env(Part::Writer);
        supervise::spawn(
            "netmon-store",
            Part::Writer,
            Arc::clone(st),
            stop.clone(),
            rec,
            move |rec, st, stop| {
                let stamp = |st: &store::Store| {
                    SystemTime::UNIX_EPOCH + Duration::from_millis(st.now().wall_ms)
                };
                loop {
                    inject.tick();
                    // It logs its own failures (once until they change) and
                    // keeps unwritten intervals queued.
                    let _ = rec.write_interval(st, &shared.get(), &tel, stamp(st));
                    if stop.wait_until(Instant::now() + every) {
                        st.begin_shutdown();
                        let deadline = Instant::now() + FINISH;
                        rec.finish(st, &shared.get(), &tel, stamp(st), deadline);
                        return;
                    }
                }
            },
        )
        .expect("spawning the history writer")
    };
    let maintenance = {
        let every = cfg.store.store_maintenance_interval;
        supervise::spawn(
            "netmon-store-maint",
            Part::Maintenance,
            Arc::clone(st),
            stop.clone(),
            supervise::Injector::from_env(Part::Maintenance),
            move |inject, st, stop| store::retention::maintenance_loop(st, every, stop, inject),
        )
        .expect("spawning the history maintenance")
    };
    vec![writer, maintenance]
}

/// The alerts runner (see `alerts/run.rs`), evaluating every drain
/// interval over the latest telemetry, with the alert log in the history
/// file; it stops with the collectors. A runner that cannot start leaves
/// the agent running without alerts, said loudly.
fn spawn_alerts(
    cfg: &Config,
    prepared: alerts::run::Prepared,
    store: &api::StoreSlot,
    shared: &Shared,
    telemetry: &collect::Telemetry,
    stop: &shutdown::Stop,
) -> (alerts::run::Alerts, Option<thread::JoinHandle<()>>) {
    use alerts::run::{HistorySlot, Inputs};
    let c = &cfg.collect;
    let history = match store {
        Ok(st) => HistorySlot::Open(Arc::new(store::alert_log::AlertHistory {
            store: Arc::clone(st),
            max_entries: cfg.alerts.alerts_log_max as usize,
        })),
        Err(_) if cfg.store.no_history => HistorySlot::Off,
        Err(_) => HistorySlot::Failed,
    };
    let inputs = Inputs {
        snapshot: shared.clone(),
        telemetry: telemetry.clone(),
        intervals: alerts::values::Intervals {
            system: c.system.system_interval,
            interfaces: c.interfaces.interfaces_interval,
            discovery: c.discovery.discovery_interval,
            latency: c.latency.latency_interval,
        },
        history,
    };
    let shared_alerts = alerts::run::Alerts::default();
    let thread = alerts::run::spawn(
        &cfg.alerts,
        prepared,
        cfg.interval,
        &shared_alerts,
        inputs,
        stop.clone(),
    )
    .unwrap_or_else(|e| {
        error!(error = %e, "Cannot start the alerts runner: no alerts.");
        None
    });
    (shared_alerts, thread)
}

/// Sleeps until `next`, answering the watchdog every `watchdog` meanwhile.
/// False when the agent is stopping.
fn wait_for_tick(next: Instant, watchdog: Option<Duration>, stop: &mpsc::Receiver<()>) -> bool {
    loop {
        if watchdog.is_some() {
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
        let left = next.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        match stop.recv_timeout(watchdog.map_or(left, |w| w.min(left))) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Tells systemd (when it started us with `Type=notify`) about a state
/// change; without `$NOTIFY_SOCKET` it does nothing.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "Cannot notify systemd.");
    }
}

fn snapshot(
    traffic: &Traffic,
    attachments: &Attachments,
    names: &HashMap<u32, String>,
    listed: usize,
) -> Snapshot {
    let mut interfaces: Vec<_> = attachments
        .values()
        .map(|a| InterfaceRow {
            name: a.name.clone(),
            ifindex: a.ifindex,
            ingress: a.ingress,
            totals: traffic
                .interfaces
                .get(&a.ifindex)
                .copied()
                .unwrap_or_default(),
        })
        .collect();
    interfaces.sort_by_key(|i| i.ifindex);
    Snapshot {
        updated: Some(SystemTime::now()),
        interval: traffic.interval,
        interfaces,
        devices: traffic.devices.values().cloned().collect(),
        flows: traffic.listed_flows(listed),
        flow_table: traffic.flow_table,
        device_table: traffic.device_table,
        flow_series: Default::default(),
        globals: traffic.globals,
        mac_map: traffic.mac_map,
        flow_map: traffic.flow_map,
        flow_cache: traffic.flow_cache,
        names: names.clone(),
    }
}

/// Keeps the attachments in step with the system's interfaces: attaches to
/// interfaces that appear (or are re-created with a new index) and forgets
/// those that disappear.
struct Watcher {
    /// Interfaces named with --iface; empty means the default selection.
    named: Vec<String>,
    /// Interfaces whose attach failed, so the failure is logged once.
    failed: HashMap<u32, String>,
    /// Interfaces removed since the last call.
    removed: Vec<u32>,
}

impl Watcher {
    fn new(named: Vec<String>) -> Self {
        Watcher {
            named,
            failed: HashMap::new(),
            removed: Vec::new(),
        }
    }

    /// At start-up (`first`) any failure is an error; later, failures are
    /// logged and retried on the next call.
    fn reconcile(
        &mut self,
        kernel: &mut Kernel,
        attached: &mut Attachments,
        first: bool,
    ) -> Result<(), Error> {
        let present = ifaces::list(Path::new(ifaces::SYS_CLASS_NET)).map_err(Error::Interfaces)?;
        let gone: Vec<u32> = attached
            .iter()
            .filter(|(ifindex, a)| {
                !present
                    .iter()
                    .any(|i| i.ifindex == **ifindex && i.name == a.name)
            })
            .map(|(ifindex, _)| *ifindex)
            .collect();
        for ifindex in gone {
            if let Some(a) = attached.remove(&ifindex) {
                warn!(
                    iface = a.name,
                    ifindex, "Interface went away; will re-attach if it returns."
                );
                kernel.detach(a);
                self.removed.push(ifindex);
            }
        }
        if first
            && let Some(name) = self
                .named
                .iter()
                .find(|n| !present.iter().any(|i| &i.name == *n))
        {
            return Err(Box::new(AttachError::UnknownInterface(name.clone())).into());
        }
        let wanted = present.iter().filter(|i| {
            if self.named.is_empty() {
                i.watched_by_default()
            } else {
                self.named.contains(&i.name)
            }
        });
        let mut any = !attached.is_empty();
        for iface in wanted {
            if attached.contains_key(&iface.ifindex) {
                continue;
            }
            match kernel.attach(&iface.name, iface.ifindex) {
                Ok(a) => {
                    self.failed.remove(&iface.ifindex);
                    attached.insert(iface.ifindex, a);
                    any = true;
                }
                Err(e) if first => return Err(Box::new(e).into()),
                Err(e) => {
                    if self
                        .failed
                        .insert(iface.ifindex, iface.name.clone())
                        .is_none()
                    {
                        warn!(error = %format!("{:#}", anyhow::Error::from(e)), "Cannot attach; will retry.");
                    }
                }
            }
        }
        if first && !any {
            return Err(Error::NoInterfaces);
        }
        Ok(())
    }
}
