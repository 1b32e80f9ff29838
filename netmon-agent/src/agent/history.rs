//! The history's part of the agent: opening the file at start-up and the
//! store's two threads.

use std::{
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use tracing::{error, info, warn};

use super::Error;
use crate::{api, collect, config::Config, errors, shutdown, snapshot::Shared, store};

/// Opens the history file. A file netmon must not touch (a newer schema,
/// not netmon's) stops the start: the operator has to decide. A damaged
/// file is moved aside and a fresh one started (said loudly; `/health`
/// says so). A file that cannot be created or opened otherwise
/// (permissions, a missing volume, open in another process) leaves the
/// agent running without history, said loudly, and the history endpoints
/// answer 503 with the reason. A file far over its size budget is cut down
/// and compacted here, while nothing else uses it; if that fails the agent
/// goes on with the file as it is.
pub fn open_store(cfg: &Config) -> Result<api::StoreSlot, Error> {
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

/// The history's two threads, each supervised (a panic restarts it after
/// a pause, see `store/supervise.rs`): the recorder writes each new
/// snapshot (and the collectors' new readings) in one transaction,
/// retrying intervals that could not be written, and at shutdown writes
/// the last one and everything queued; maintenance folds, expires and
/// enforces the size budget. Both stop with the collectors.
pub fn spawn_store(
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
