//! The drain thread: it owns the kernel object. Every interval it re-checks
//! the interfaces when they changed (the [`Watcher`] attaches to new ones
//! and forgets removed ones), reads the maps, folds them into
//! [`Traffic`], deletes idle entries, builds the API's answers from a new
//! [`Snapshot`] ([`Prebuilt::warm`]) and publishes it; it
//! answers systemd's watchdog, and when the agent stops it detaches every
//! program.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use tracing::{info, warn};

use super::watcher::Watcher;
use crate::{
    api::{AppState, prebuilt::Prebuilt},
    config::Config,
    ebpf::{Attachments, Kernel},
    ifaces,
    shutdown::Stop,
    snapshot::{self, InterfaceRow, Shared, Snapshot},
    store,
    traffic::{MapCounts, Traffic},
};

/// Starts the drain thread; it stops (and detaches) with `stop`.
pub fn spawn(
    cfg: &Config,
    kernel: Kernel,
    attachments: Attachments,
    watcher: Watcher,
    state: &AppState,
    series: &Arc<store::record::FlowSeriesStats>,
    stop: &Stop,
) -> thread::JoinHandle<()> {
    let (state, series, cfg, stop) = (state.clone(), Arc::clone(series), cfg.clone(), stop.clone());
    thread::Builder::new()
        .name("netmon-drain".into())
        .spawn(move || {
            let out = Published {
                shared: &state.snapshot,
                series: &series,
                prebuild: &|snapshot| Prebuilt::warm(&state, snapshot),
            };
            drain_loop(&cfg, kernel, attachments, watcher, out, &stop)
        })
        .expect("spawning the drain thread")
}

/// Where the drain loop publishes: the snapshot, what it copies into each
/// snapshot from the history's recorder, and what it builds from each
/// snapshot before publishing it (the API's prebuilt answers).
pub(super) struct Published<'a> {
    pub(super) shared: &'a Shared,
    pub(super) series: &'a store::record::FlowSeriesStats,
    pub(super) prebuild: &'a dyn Fn(&Arc<Snapshot>),
}

/// Flow-cache slots the drain folds at a time (72 bytes each: 1.1 MiB).
const CACHE_PART: usize = 16_384;

pub(super) fn drain_loop(
    cfg: &Config,
    mut kernel: Kernel,
    mut attachments: Attachments,
    mut watcher: Watcher,
    out: Published<'_>,
    stop: &Stop,
) {
    let mut traffic = Traffic::with_limits(
        cfg.idle_expiry,
        cfg.max_flows as usize,
        cfg.max_devices as usize,
    );
    // The recorder picks the interval's top flows from the listed ones.
    let listed = snapshot::LISTED_FLOWS.max(cfg.store.store_flows_per_interval as usize);
    let mut reading = MapCounts::default();
    let mut part = Vec::with_capacity(CACHE_PART);
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut own_macs: HashMap<u32, Option<[u8; 6]>> = HashMap::new();
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
            // A link notification may be a changed MAC: read them again.
            own_macs.clear();
        }
        for a in attachments.values() {
            names.insert(a.ifindex, a.name.clone());
            own_macs
                .entry(a.ifindex)
                .or_insert_with(|| own_mac(&a.name));
        }
        let removed = !watcher.removed.is_empty();
        for gone in watcher.removed.drain(..) {
            traffic.forget_interface(gone);
        }
        match kernel.read_maps(&mut reading) {
            Ok(done) => {
                // The interval is measured to the moment its counts were
                // cut (the flow cache's flip, just before the maps are read),
                // not to the end of a read that waited for a grace period.
                let now = reading.taken.unwrap_or_else(Instant::now);
                let wall = SystemTime::now()
                    .checked_sub(now.elapsed())
                    .unwrap_or_else(SystemTime::now);
                // The flow cache's slots are folded CACHE_PART at a time as
                // they are read, never all held at once.
                let mut fold = traffic.begin(now, wall, &reading.macs);
                let cached = kernel.read_cache_parts(done, &mut part, CACHE_PART, |p| {
                    traffic.fold_cached(&mut fold, p, &subnets)
                });
                traffic.fold_cached(&mut fold, &part, &subnets);
                part.clear();
                if let Err(e) = cached {
                    // What was read of the cache is counted; the maps too.
                    warn!(
                        error = %format!("{:#}", anyhow::Error::from(e)),
                        "Reading the flow cache failed."
                    );
                }
                let expired = traffic.finish(fold, &reading, &subnets);
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
                let mut snap = snapshot(&traffic, &attachments, &names, listed, wall);
                for i in &mut snap.interfaces {
                    i.mac = own_macs.get(&i.ifindex).copied().flatten();
                }
                snap.flow_series = out.series.get();
                let snap = Arc::new(snap);
                (out.prebuild)(&snap);
                out.shared.publish(snap);
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

/// Sleeps until `next`, answering the watchdog every `watchdog` meanwhile.
/// False when the agent is stopping.
fn wait_for_tick(next: Instant, watchdog: Option<Duration>, stop: &Stop) -> bool {
    loop {
        if watchdog.is_some() {
            notify(&[sd_notify::NotifyState::Watchdog]);
        }
        let now = Instant::now();
        if next <= now {
            return true;
        }
        let until = watchdog.map_or(next, |w| next.min(now + w));
        if stop.wait_until(until) {
            return false;
        }
    }
}

/// Tells systemd (when it started us with `Type=notify`) about a state
/// change; without `$NOTIFY_SOCKET` it does nothing.
pub(crate) fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "Cannot notify systemd.");
    }
}

fn snapshot(
    traffic: &Traffic,
    attachments: &Attachments,
    names: &HashMap<u32, String>,
    listed: usize,
    updated: SystemTime,
) -> Snapshot {
    let mut interfaces: Vec<_> = attachments
        .values()
        .map(|a| InterfaceRow {
            name: a.name.clone(),
            ifindex: a.ifindex,
            mac: None,
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
        updated: Some(updated),
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

/// The MAC of interface `name` from sysfs; None where it has none (or
/// cannot be read).
fn own_mac(name: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    ifaces::parse_mac(text.trim())
}
