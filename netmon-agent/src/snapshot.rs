//! What the drain loop publishes after each read, and the API serves.
//!
//! The drain thread builds a new [`Snapshot`] each interval and swaps it in;
//! readers clone the `Arc` and never block the drain for longer than that.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use netmon_common::Globals;

use crate::{
    ebpf::HookMode,
    traffic::{CacheStats, Device, Flow, InterfaceTotals, MapStats, TableStats},
};

/// Flows a snapshot lists at least, per order the API sorts by (the most
/// `/api/v1/flows` returns).
pub const LISTED_FLOWS: usize = 10_000;

/// A watched interface and its totals.
#[derive(Clone, Debug)]
pub struct InterfaceRow {
    pub name: String,
    pub ifindex: u32,
    /// The interface's own MAC (from sysfs), so its frames' device is
    /// known as this host's before discovery's first cycle.
    pub mac: Option<[u8; 6]>,
    pub ingress: HookMode,
    pub totals: InterfaceTotals,
}

/// How the history's hourly cap on flow series was doing at one moment (a
/// copy of [`crate::store::record::FlowSeriesStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSeries {
    /// `--store-flow-series-per-hour`.
    pub cap: u64,
    /// Distinct flow series written this hour.
    pub this_hour: u64,
    /// Flow samples added to an `other` series because the hour's cap was
    /// reached, since start.
    pub aggregated: u64,
}

/// Everything known after one drain.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// When the maps were read; `None` before the first read.
    pub updated: Option<SystemTime>,
    /// The interval the rates were measured over.
    pub interval: Duration,
    pub interfaces: Vec<InterfaceRow>,
    pub devices: Vec<Device>,
    /// The busiest flows, not all of them: see
    /// [`crate::traffic::Traffic::listed_flows`]; `flow_table.entries`
    /// says how many there are.
    pub flows: Vec<Flow>,
    /// The agent's flow table: flows tracked, capacity, evictions.
    pub flow_table: TableStats,
    /// The agent's device table.
    pub device_table: TableStats,
    /// The history's hourly cap on flow series (as of the drain).
    pub flow_series: FlowSeries,
    pub globals: Globals,
    pub mac_map: MapStats,
    pub flow_map: MapStats,
    pub flow_cache: CacheStats,
    /// Interface names by index, for devices and flows (including interfaces
    /// no longer attached whose entries have not expired yet).
    pub names: HashMap<u32, String>,
}

impl Snapshot {
    /// The name of interface `ifindex`, or its number when unknown.
    pub fn iface_name(&self, ifindex: u32) -> String {
        self.names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }
}

/// The latest snapshot, shared between the drain thread and the API.
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<RwLock<Arc<Snapshot>>>);

impl Shared {
    /// The latest snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the latest snapshot.
    pub fn set(&self, s: Snapshot) {
        self.publish(Arc::new(s));
    }

    /// Replaces the latest snapshot with one already shared (the API has
    /// built its answers from it before).
    pub fn publish(&self, s: Arc<Snapshot>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = s;
    }
}
