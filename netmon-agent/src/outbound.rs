//! What the agent sends to other machines on its own: the snapshot
//! (`--push-url`) and the metrics by remote-write (`--remote-write-url`),
//! each on its own thread, through [`crate::push`]'s queues on disk.

use std::{
    sync::Arc,
    thread,
    time::{Instant, SystemTime},
};

use tracing::info;

use crate::{api, config::Config, push, shutdown};

/// A queue's directory under the state directory could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the queue in {}", dir.display())]
pub struct QueueError {
    pub dir: std::path::PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The receivers' queues and threads for --push-url; `None` without one.
pub fn start_push(cfg: &Config, key: Option<&str>) -> Result<Option<Arc<push::Push>>, QueueError> {
    if cfg.push.push_urls.is_empty() {
        return Ok(None);
    }
    let push = push::Push::start(&cfg.push, key, &cfg.state_dir).map_err(|source| QueueError {
        dir: cfg.state_dir.join("push"),
        source,
    })?;
    Ok(Some(Arc::new(push)))
}

/// Every --push-interval (default the drain interval), the snapshot goes
/// to each --push-url through its queue on disk.
pub fn spawn_push(
    cfg: &Config,
    push: Arc<push::Push>,
    state: &api::AppState,
    stop: &shutdown::Stop,
) -> thread::JoinHandle<()> {
    let every = cfg.push.push_interval.unwrap_or(cfg.interval);
    info!(receivers = cfg.push.push_urls.len(), every = ?every, "Pushing the snapshot.");
    let (state, stop) = (state.clone(), stop.clone());
    thread::Builder::new()
        .name("netmon-push".into())
        .spawn(move || {
            let mut next = Instant::now() + every;
            while !stop.wait_until(next) {
                // After a stall, the next push is an interval from now,
                // not a burst of the ones missed.
                next = (next + every).max(Instant::now());
                push.send(&api::snapshot::json(&state));
            }
        })
        .expect("spawning the push thread")
}

/// The remote-write endpoints' queues and threads; `None` without one.
pub fn start_remote_write(
    cfg: &Config,
    bearer: Option<&str>,
) -> Result<Option<Arc<push::remote_write::RemoteWrite>>, QueueError> {
    if cfg.remote_write.remote_write_urls.is_empty() {
        return Ok(None);
    }
    let rw = push::remote_write::RemoteWrite::start(&cfg.remote_write, bearer, &cfg.state_dir)
        .map_err(|source| QueueError {
            dir: cfg.state_dir.join("remote-write"),
            source,
        })?;
    Ok(Some(Arc::new(rw)))
}

/// Every --remote-write-interval, /metrics' series go to each
/// --remote-write-url.
pub fn spawn_remote_write(
    cfg: &Config,
    rw: Arc<push::remote_write::RemoteWrite>,
    state: &api::AppState,
    stop: &shutdown::Stop,
) -> thread::JoinHandle<()> {
    let every = cfg.remote_write.remote_write_interval;
    info!(endpoints = cfg.remote_write.remote_write_urls.len(), every = ?every, "Sending the metrics by remote-write.");
    let (state, stop) = (state.clone(), stop.clone());
    thread::Builder::new()
        .name("netmon-remote-write".into())
        .spawn(move || {
            let mut next = Instant::now() + every;
            while !stop.wait_until(next) {
                next = (next + every).max(Instant::now());
                rw.send(&api::metrics::text(&state), SystemTime::now());
            }
        })
        .expect("spawning the remote-write thread")
}
