//! Command line and environment configuration.
//!
//! Every option can also be set from the environment (`NETMON_*`); the
//! command line wins. Values are checked here, so a bad one is reported by
//! clap with the option's name before anything is loaded.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use netmon_common::{DEFAULT_FLOW_ENTRIES, DEFAULT_MAC_ENTRIES};

/// How frames are counted on the way in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum IngressHook {
    /// Native (driver) XDP where the driver supports it, else TC ingress.
    #[default]
    Auto,
    /// Native XDP only: fail on interfaces whose driver lacks it.
    Xdp,
    /// Generic (SKB-mode) XDP. Works on any driver but disables GRO on the
    /// interface and costs throughput: only when asked for.
    XdpGeneric,
    /// TC ingress classifier (TCX on kernels >= 6.6).
    Tc,
}

/// The agent's configuration.
#[derive(Clone, Debug, Parser)]
#[command(name = "netmon-agent", version, about = "eBPF network telemetry agent")]
pub struct Config {
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
    #[arg(long, default_value = "1s", value_parser = parse_interval, env = "NETMON_INTERVAL")]
    pub interval: Duration,

    /// Devices, flows and map entries with no traffic for this long are forgotten.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "NETMON_IDLE_EXPIRY")]
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

    /// Address the HTTP API listens on.
    #[arg(long, default_value = "127.0.0.1:9713", env = "NETMON_LISTEN")]
    pub listen: SocketAddr,

    /// File holding the API key. Default: $NETMON_API_KEY, else
    /// <state-dir>/api-key, generated on first start.
    #[arg(long, value_name = "PATH", env = "NETMON_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Directory for the agent's state (the generated API key).
    #[arg(long, default_value = "/var/lib/netmon", env = "NETMON_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `netmon_agent=debug`).
    #[arg(long, default_value = "info", env = "NETMON_LOG")]
    pub log: String,

    /// Log line format: `auto` is `journal` under journald, else `human`.
    #[arg(long, value_enum, default_value_t = crate::logging::LogFormat::Auto, env = "NETMON_LOG_FORMAT")]
    pub log_format: crate::logging::LogFormat,

    #[command(flatten)]
    pub collect: crate::collect::Options,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 1s, 5m)"))
}

pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("{s} is outside 100ms..=1h"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("netmon-agent").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert!(c.ifaces.is_empty());
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.idle_expiry, Duration::from_secs(300));
        assert_eq!(c.ingress, IngressHook::Auto);
        assert_eq!(c.listen, "127.0.0.1:9713".parse().unwrap());
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
            (&["--ingress", "magic"][..], "--ingress"),
            (&["--listen", "localhost"][..], "--listen"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(option), "{args:?}: {err}");
        }
    }
}
