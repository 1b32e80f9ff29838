//! The options of the Prometheus endpoint and the encoder's settings.

use std::net::SocketAddr;

/// Whether `/metrics` needs the API key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAuth {
    /// Off when `--listen` is a loopback address, else on.
    #[default]
    Auto,
    /// Always needs the key.
    On,
    /// Never needs the key.
    Off,
}

/// Options of the Prometheus endpoint.
#[derive(Clone, Debug, clap::Args)]
#[group(id = "metrics-options")]
pub struct Options {
    /// Whether GET /metrics needs the API key: auto (off when --listen is a
    /// loopback address, else on), on or off.
    #[arg(long, value_enum, default_value = "auto", env = "NETMON_METRICS_AUTH")]
    pub metrics_auth: MetricsAuth,

    /// Most devices with series in /metrics; beyond it the busiest by bytes
    /// are kept and netmon_device_series_dropped counts the others.
    #[arg(long, default_value_t = 1000, env = "NETMON_METRICS_MAX_DEVICES")]
    pub metrics_max_devices: usize,

    /// Export one series per flow (off by default: flows are many and short-lived).
    #[arg(long, env = "NETMON_METRICS_FLOWS")]
    pub metrics_flows: bool,

    /// Most flows with series in /metrics when --metrics-flows is on; the
    /// busiest by bytes are kept.
    #[arg(long, default_value_t = 1000, env = "NETMON_METRICS_MAX_FLOWS")]
    pub metrics_max_flows: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            metrics_auth: MetricsAuth::Auto,
            metrics_max_devices: 1000,
            metrics_flows: false,
            metrics_max_flows: 1000,
        }
    }
}

impl Options {
    /// Whether `/metrics` needs the key when the API listens on `listen`.
    pub fn needs_key(&self, listen: SocketAddr) -> bool {
        match self.metrics_auth {
            MetricsAuth::On => true,
            MetricsAuth::Off => false,
            MetricsAuth::Auto => !listen.ip().is_loopback(),
        }
    }
}

/// The encoder's settings (from [`Options`]).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_devices: usize,
    pub flows: bool,
    pub max_flows: usize,
}

impl From<&Options> for Limits {
    fn from(o: &Options) -> Self {
        Limits {
            max_devices: o.metrics_max_devices,
            flows: o.metrics_flows,
            max_flows: o.metrics_max_flows,
        }
    }
}

/// Settings of the `/metrics` route, fixed at start-up (they live in
/// `api::AppState`): whether it needs the key (resolved against the listen
/// address) and the encoder's limits.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub needs_key: bool,
    pub limits: Limits,
}

impl Settings {
    pub fn new(opts: &Options, listen: SocketAddr) -> Self {
        Settings {
            needs_key: opts.needs_key(listen),
            limits: opts.into(),
        }
    }
}
