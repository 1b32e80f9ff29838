//! Configuration: command line > environment (`NETMON_*`) > config file
//! (TOML, `--config`, default [`DEFAULT_CONFIG`]) > defaults.
//!
//! clap defines every option once, in [`Config`] (here), which flattens
//! each part's own `Options`; the file's keys are the long option names
//! (`flow-entries = 65536`, or `flow_entries`). The other files:
//! - `load.rs`: [`load()`] parses the command line and environment, then
//!   feeds the file's values for the options neither of them set back
//!   through clap, so a value from the file is checked exactly like one
//!   typed on the command line, and an error ([`ConfigError`]) names the
//!   file and the field;
//! - `provenance.rs`: [`Loaded`], each option's value and [`ConfigSource`];
//! - `example.rs`: [`example_file`], the shipped `deploy/netmon.toml`;
//! - `api_limits.rs`: the HTTP API's limits as options (enforced in
//!   [`crate::api::limits`]: `config` sits below `api/` and does not use it).

pub mod api_limits;
mod example;
mod load;
mod provenance;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use netmon_common::{DEFAULT_FLOW_ENTRIES, DEFAULT_FLOW_INSERT_BUDGET, DEFAULT_MAC_ENTRIES};

pub use self::{
    example::example_file,
    load::{ConfigError, load},
    provenance::{ConfigSource, Loaded, Setting},
};
use crate::ebpf::IngressHook;

/// Where the config file is read from unless `--config` says otherwise. A
/// missing default file is not an error; a missing `--config` file is.
pub const DEFAULT_CONFIG: &str = "/etc/netmon/netmon.toml";

const SUBCOMMANDS_HELP: &str = "\
Subcommands (before the options):
  netmon-agent check [OPTIONS]         preflight: what this machine and configuration lack
  netmon-agent config check [OPTIONS]  validate the configuration (file included), start nothing
  netmon-agent config show [OPTIONS]   print the effective configuration and where each value came from
  netmon-agent hash-key                print the sha256: and argon2 forms of a key read on stdin
  netmon-agent hub [OPTIONS]           receive many agents' pushes (see `netmon-agent hub --help`)
  netmon-agent hub token add|revoke|list  the hub's per-host and read-only tokens";

/// The agent's configuration.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "netmon-agent",
    version,
    about = "eBPF network telemetry agent",
    after_help = SUBCOMMANDS_HELP
)]
pub struct Config {
    /// Config file (TOML; keys are these options' long names). Options on
    /// the command line and in the environment override it.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_CONFIG, env = "NETMON_CONFIG")]
    pub config: PathBuf,

    /// Interface to watch (repeatable). Default: every interface that is up,
    /// is not loopback and has a MAC address, including ones that appear later.
    #[arg(
        short,
        long = "iface",
        value_name = "NAME",
        env = "NETMON_IFACES",
        value_delimiter = ','
    )]
    pub ifaces: Vec<String>,

    /// How often the kernel maps are drained into totals and rates.
    #[arg(long, default_value = "1s", value_parser = crate::units::parse_interval, env = "NETMON_INTERVAL")]
    pub interval: Duration,

    /// Devices, flows and map entries with no traffic for this long are forgotten.
    #[arg(long, default_value = "5m", value_parser = crate::units::parse_duration, env = "NETMON_IDLE_EXPIRY")]
    pub idle_expiry: Duration,

    /// Ingress hook.
    #[arg(long, value_enum, default_value_t = IngressHook::Auto, env = "NETMON_INGRESS")]
    pub ingress: IngressHook,

    /// Capacity of the MAC-pair map (entries).
    #[arg(long, default_value_t = DEFAULT_MAC_ENTRIES, value_parser = clap::value_parser!(u32).range(16..=16_777_216), env = "NETMON_MAC_ENTRIES")]
    pub mac_entries: u32,

    /// Capacity of the flow map (entries).
    #[arg(long, default_value_t = DEFAULT_FLOW_ENTRIES, value_parser = clap::value_parser!(u32).range(16..=16_777_216), env = "NETMON_FLOW_ENTRIES")]
    pub flow_entries: u32,

    /// Memory for the flow cache, all CPUs together (e.g. 64MiB; 0 turns
    /// the cache off). The cache counts most IP frames without a hash-map
    /// update; each CPU gets an equal share, 144 bytes per flow slot.
    #[arg(long, default_value = "64MiB", value_parser = parse_cache_memory, env = "NETMON_FLOW_CACHE_MEMORY")]
    pub flow_cache_memory: u64,

    /// Flow-cache slots per CPU (a multiple of 4 up to 4194304; 0 turns the
    /// cache off), instead of what --flow-cache-memory holds.
    #[arg(long, value_parser = parse_cache_slots, env = "NETMON_FLOW_CACHE_SLOTS")]
    pub flow_cache_slots: Option<u32>,

    /// Flow-map entries each CPU may create per interval. Frames of further
    /// new flows that find no flow-cache slot are counted in their MAC
    /// pair's aggregate (`flows_aggregated`), which caps what a flood of
    /// new flows costs; device and interface totals stay exact.
    #[arg(long, default_value_t = DEFAULT_FLOW_INSERT_BUDGET, value_parser = clap::value_parser!(u32).range(0..=16_777_216), env = "NETMON_FLOW_INSERT_BUDGET")]
    pub flow_insert_budget: u32,

    /// Most flows the agent tracks. When full, a new flow evicts the least
    /// recently active one, whose totals move to its interface's "other"
    /// flows (interface and device totals are unaffected). About 262 bytes
    /// a flow. Default: twice the flow map's default size (65536).
    #[arg(long, default_value_t = crate::traffic::DEFAULT_MAX_FLOWS, value_parser = clap::value_parser!(u32).range(16..=16_777_216), env = "NETMON_MAX_FLOWS")]
    pub max_flows: u32,

    /// Most devices (interface, MAC) the agent tracks. When full, a new one
    /// evicts the least recently active. Default: the MAC-pair map's
    /// default size.
    #[arg(long, default_value_t = crate::traffic::DEFAULT_MAX_DEVICES, value_parser = clap::value_parser!(u32).range(16..=16_777_216), env = "NETMON_MAX_DEVICES")]
    pub max_devices: u32,

    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:9713", env = "NETMON_LISTEN")]
    pub listen: SocketAddr,

    /// File holding the API key. Default: $NETMON_API_KEY, else
    /// api-key in the state directory, generated on first start.
    #[arg(long, value_name = "PATH", env = "NETMON_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Directory for the agent's state: the generated API key and, unless
    /// --store-path says otherwise, the history file (netmon.redb).
    #[arg(long, default_value = "/var/lib/netmon", env = "NETMON_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `netmon_agent=debug`).
    #[arg(long, default_value = "info", env = "NETMON_LOG")]
    pub log: String,

    /// `serverId` in /api/v1/snapshot (the earlier agents' machine
    /// identifier). Default: the hostname.
    #[arg(long, value_name = "ID", env = "NETMON_SERVER_ID")]
    pub server_id: Option<String>,

    /// Log line format: `auto` is `journal` under journald, else `human`.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Auto, env = "NETMON_LOG_FORMAT")]
    pub log_format: crate::logging::LogFormat,

    #[command(flatten)]
    pub collect: crate::collect::Options,

    #[command(flatten, next_help_heading = "Prometheus metrics")]
    pub metrics: crate::metrics::Options,

    #[command(flatten, next_help_heading = "API access")]
    pub access: crate::keys::Options,

    #[command(flatten, next_help_heading = "API limits")]
    pub api_limits: api_limits::Options,

    #[command(flatten, next_help_heading = "History")]
    pub store: crate::store::Options,

    #[command(flatten, next_help_heading = "History")]
    pub record: crate::store::record::Options,

    #[command(flatten, next_help_heading = "Push")]
    pub push: crate::push::Options,

    #[command(flatten, next_help_heading = "Remote write")]
    pub remote_write: crate::push::remote_write::Options,

    #[command(flatten, next_help_heading = "Alerts")]
    pub alerts: crate::alerts::run::Options,

    /// The alert rules: the defaults and the config file's `[alerts]`
    /// section (a table, not options: see `load.rs`).
    #[arg(skip)]
    pub alert_rules: crate::alerts::run::Rules,
}

fn parse_cache_slots(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let (ways, max) = (
        crate::ebpf::SLOTS_MULTIPLE,
        crate::ebpf::MAX_FLOW_CACHE_SLOTS,
    );
    if !n.is_multiple_of(ways) || n > max {
        return Err(format!("{n} is not a multiple of {ways} up to {max}"));
    }
    Ok(n)
}

/// A size of at most 1 TiB (the flow cache's memory).
fn parse_cache_memory(s: &str) -> Result<u64, String> {
    let n = crate::units::parse_size(s)?;
    if n > 1 << 40 {
        return Err(format!("`{s}` is more than 1TiB"));
    }
    Ok(n)
}

impl Config {
    /// The history file: `--store-path`, else `netmon.redb` in
    /// `--state-dir`.
    pub fn store_path(&self) -> PathBuf {
        self.store.path(&self.state_dir)
    }

    /// The kernel map sizes this configuration asks for.
    pub fn map_sizes(&self) -> crate::ebpf::MapSizes {
        crate::ebpf::MapSizes {
            mac_entries: self.mac_entries,
            flow_entries: self.flow_entries,
            flow_cache_slots: self.flow_cache_slots.unwrap_or_else(|| {
                crate::ebpf::cache_slots_for(self.flow_cache_memory, crate::ebpf::possible_cpus())
            }),
            flow_insert_budget: self.flow_insert_budget,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::{
        fs,
        path::{Path, PathBuf},
    };

    use clap::CommandFactory as _;

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("netmon-agent").chain(args.iter().copied()))
    }

    pub(super) fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netmon.toml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    pub(super) fn load_with(path: &Path, args: &[&str]) -> Result<Loaded, ConfigError> {
        let mut all = vec!["netmon-agent", "--config", path.to_str().unwrap()];
        all.extend_from_slice(args);
        load(all)
    }

    /// Option values are shown to admins and printed by `config show`: an
    /// option about keys or other secrets may only name a file.
    #[test]
    fn options_about_secrets_only_name_files() {
        let cmd = Config::command();
        let mut named = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["key", "secret", "password", "token", "credential"]
                .iter()
                .any(|w| long.contains(w))
            {
                let value_names: Vec<&str> = arg
                    .get_value_names()
                    .into_iter()
                    .flatten()
                    .map(|n| n.as_str())
                    .collect();
                assert_eq!(value_names, ["PATH"], "--{long} may hold a secret");
                named.push(long);
            }
        }
        assert_eq!(
            named,
            [
                "api-key-file",
                "read-only-key-file",
                "tls-key",
                "push-key-file",
                "webhook-secret-file"
            ]
        );
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert!(c.ifaces.is_empty());
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.idle_expiry, Duration::from_secs(300));
        assert_eq!(c.ingress, IngressHook::Auto);
        assert_eq!(c.listen, "127.0.0.1:9713".parse().unwrap());
        assert_eq!(c.max_flows, 131_072);
        assert_eq!(c.max_devices, 16_384);
        assert_eq!(c.store_path(), Path::new("/var/lib/netmon/netmon.redb"));
    }

    #[test]
    fn the_history_file_follows_the_state_dir_unless_named() {
        let c = parse(&["--state-dir", "/srv/nm"]).unwrap();
        assert_eq!(c.store_path(), Path::new("/srv/nm/netmon.redb"));
        let c = parse(&["--state-dir", "/srv/nm", "--store-path", "/data/h.redb"]).unwrap();
        assert_eq!(c.store_path(), Path::new("/data/h.redb"));
        // From the config file too.
        let (_d, path) = write("state-dir = \"/srv/from-file\"\n");
        let l = load_with(&path, &[]).unwrap();
        assert_eq!(
            l.config.store_path(),
            Path::new("/srv/from-file/netmon.redb")
        );
    }

    #[test]
    fn repeated_and_comma_separated_interfaces() {
        let c = parse(&["-i", "eth0", "--iface", "eth1,eth2"]).unwrap();
        assert_eq!(c.ifaces, ["eth0", "eth1", "eth2"]);
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, option) in [
            (&["--interval", "10ms"][..], "--interval"),
            (&["--interval", "soon"][..], "--interval"),
            (&["--flow-entries", "3"][..], "--flow-entries"),
            (&["--flow-cache-slots", "6"][..], "--flow-cache-slots"),
            (&["--flow-cache-memory", "2TiB"][..], "--flow-cache-memory"),
            (&["--max-flows", "15"][..], "--max-flows"),
            (&["--max-devices", "many"][..], "--max-devices"),
            (&["--ingress", "magic"][..], "--ingress"),
            (
                &["--http-max-connections", "0"][..],
                "--http-max-connections",
            ),
            (
                &["--tls-handshake-timeout", "2h"][..],
                "--tls-handshake-timeout",
            ),
            (&["--sse-max-backlog", "100"][..], "--sse-max-backlog"),
            (&["--listen", "localhost"][..], "--listen"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(option), "{args:?}: {err}");
        }
    }
}
