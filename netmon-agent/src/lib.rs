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
//! Every thread (the drain, the collectors, the store's two) stops on one
//! [`shutdown::Stop`]; the API on the signal's future. The threads' code is
//! in [`agent`]. The module graph is layered: see docs/design.md,
//! "Layering", and tests/layering.rs.
//!
//! On shutdown the drain thread detaches every program before the process
//! exits; since every attachment is a BPF link, even SIGKILL leaves nothing
//! attached.

pub mod agent;
pub mod alerts;
pub mod api;
pub mod check;
pub mod collect;
pub mod config;
pub mod ebpf;
pub mod errors;
pub mod exposition;
pub mod http_post;
pub mod hub;
pub mod ifaces;
pub mod keys;
pub mod logging;
pub mod lru;
pub mod metrics;
pub mod outbound;
pub mod privileges;
pub mod push;
pub mod rates;
pub mod shutdown;
pub mod snapshot;
pub mod store;
pub mod traffic;
pub mod units;

use std::{sync::Arc, thread, time::Duration};

use tracing::{error, info, warn};

pub use crate::agent::Error;
use crate::{
    agent::{drain, history, watcher::Watcher},
    api::auth,
    config::{Config, Loaded},
    ebpf::{Attachments, Kernel},
    snapshot::Shared,
};

/// How long shutdown waits for HTTP requests in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
    /// The key sent with each push (`--push-key-file`) and the
    /// remote-write token, read before the privileges go.
    push_key: Option<String>,
    remote_write_bearer: Option<String>,
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
    // Read now: the key files may be readable by root only.
    let tls = api::tls::load(&cfg.access)?;
    let push_key = match &cfg.push.push_key_file {
        None => None,
        Some(path) => Some(keys::read_secret_file(path)?),
    };
    let remote_write_bearer = match &cfg.remote_write.remote_write_bearer_file {
        None => None,
        Some(path) => Some(keys::read_secret_file(path)?),
    };
    let alerts = alerts::run::Prepared::new(&cfg.alerts, &cfg.alert_rules)?;

    // Bind first: a taken address fails before anything is attached.
    let listen_err = |source| Error::Listen {
        addr: cfg.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;

    let store = history::open_store(&cfg)?;

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
        push_key,
        remote_write_bearer,
        alerts,
    })
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
        push_key,
        remote_write_bearer,
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
    let started = std::time::SystemTime::now();
    let telemetry = collect::Telemetry::default();
    // One stop for every thread: the collectors, the history's two and
    // the drain (which detaches the programs).
    let stop = shutdown::Stop::default();
    let collectors = telemetry.spawn(
        &cfg.collect,
        &collect::Context {
            traffic: shared.clone(),
            stop: stop.clone(),
            telemetry: telemetry.clone(),
        },
        &stop,
    );
    let series = Arc::new(store::record::FlowSeriesStats::default());
    let store_threads = match &store {
        Ok(st) => history::spawn_store(&cfg, st, &shared, &telemetry, &stop, &series),
        Err(_) => Vec::new(),
    };
    let (alerts, alert_thread) = spawn_alerts(&cfg, alerts, &store, &shared, &telemetry, &stop);
    let push = outbound::start_push(&cfg, push_key.as_deref())?;
    let remote_write = outbound::start_remote_write(&cfg, remote_write_bearer.as_deref())?;
    let state = api::AppState {
        snapshot: shared,
        telemetry,
        server_id: cfg.server_id.clone(),
        metrics: metrics::Settings::new(&cfg.metrics, cfg.listen),
        store,
        config: effective,
        http: Arc::clone(&http),
        push: push.clone(),
        remote_write: remote_write.clone(),
        alerts,
        prebuilt: Default::default(),
        snapshot_flows: cfg.push.push_flows as usize,
        started,
    };
    let watched = attachments.len();
    let drain = drain::spawn(&cfg, kernel, attachments, watcher, &state, &series, &stop);

    let scheme = if tls { "https" } else { "http" };
    let status = format!(
        "Watching {watched} interface(s); API on {scheme}://{}.",
        cfg.listen
    );
    // Ready: the programs are attached and the API socket is bound (requests
    // queue until the server below accepts them).
    drain::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);

    let pusher = push.map(|push| outbound::spawn_push(&cfg, push, &state, &stop));
    let writer = remote_write.map(|rw| outbound::spawn_remote_write(&cfg, rw, &state, &stop));
    let app = api::router(
        state,
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
            drain::notify(&[sd_notify::NotifyState::Stopping]);
            stopping.notify_one();
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            warn!(grace = ?SHUTDOWN_GRACE, "Requests still open at shutdown; dropping them.");
            Ok(())
        }
    };

    // Stop every thread; the drain detaches the programs.
    stop.stop();
    if drain.join().is_err() {
        error!("The drain thread panicked.");
    }
    for c in collectors
        .into_iter()
        .chain(store_threads)
        .chain(pusher)
        .chain(writer)
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
        intervals: alerts::values::Intervals(
            collect::SOURCES
                .iter()
                .map(|s| (s.name(), s.interval(&cfg.collect)))
                .collect(),
        ),
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down."),
        _ = term.recv() => info!("SIGTERM: shutting down."),
    }
}

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
