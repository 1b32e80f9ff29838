//! Configuration: command line > environment (`NETMON_*`) > config file
//! (TOML, `--config`, default [`DEFAULT_CONFIG`]) > defaults.
//!
//! clap defines every option once; the file's keys are the long option
//! names (`flow-entries = 65536`, or `flow_entries`). [`load`] parses the
//! command line and environment, then feeds the file's values for the
//! options neither of them set back through clap, so a value from the file
//! is checked exactly like one typed on the command line, and an error names
//! the file and the field.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt, fs, io,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use std::error::Error as _;

use clap::{
    ArgMatches, CommandFactory as _, FromArgMatches as _, Parser,
    error::{ContextKind, ContextValue, ErrorKind},
    parser::ValueSource,
};
use netmon_common::{DEFAULT_FLOW_ENTRIES, DEFAULT_FLOW_INSERT_BUDGET, DEFAULT_MAC_ENTRIES};

use crate::ebpf::IngressHook;

/// Where the config file is read from unless `--config` says otherwise. A
/// missing default file is not an error; a missing `--config` file is.
pub const DEFAULT_CONFIG: &str = "/etc/netmon/netmon.toml";

const SUBCOMMANDS_HELP: &str = "\
Subcommands (before the options):
  netmon-agent check [OPTIONS]         preflight: what this machine and configuration lack
  netmon-agent config check [OPTIONS]  validate the configuration (file included), start nothing
  netmon-agent config show [OPTIONS]   print the effective configuration and where each value came from
  netmon-agent hash-key                print the sha256: and argon2 forms of a key read on stdin";

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
    /// update; each CPU gets an equal share, 192 bytes per flow slot.
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
    pub api_limits: crate::api::limits::Options,

    #[command(flatten, next_help_heading = "History")]
    pub store: crate::store::Options,

    #[command(flatten, next_help_heading = "History")]
    pub record: crate::store::record::Options,
}

/// Where an option's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = ConfigSource)]
pub enum Source {
    CommandLine,
    Environment,
    #[serde(rename = "config-file")]
    File,
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::CommandLine => "command line",
            Source::Environment => "environment",
            Source::File => "config file",
            Source::Default => "default",
        })
    }
}

/// The effective configuration and its provenance.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// The config file read, if one was.
    pub file: Option<PathBuf>,
    /// Each option's source, by long name.
    pub sources: BTreeMap<String, Source>,
    /// The effective values, by long name, as clap rendered them.
    pub values: BTreeMap<String, Vec<String>>,
}

/// One option in effect, as `config show` prints it and `/api/v1/config`
/// serves it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Setting {
    /// Its values as given or defaulted (`1s`, `65536`, `true`): none when
    /// not set, several for a repeatable option.
    pub values: Vec<String>,
    pub source: Source,
}

impl Loaded {
    /// Every option in effect by long name, `config` (the file itself)
    /// aside. No option holds a secret: API keys come from the environment,
    /// key files and credentials, which options only name (a test keeps it
    /// so).
    pub fn settings(&self) -> BTreeMap<String, Setting> {
        self.values
            .iter()
            .filter(|(name, _)| *name != "config")
            .map(|(name, values)| {
                let source = self.sources.get(name).copied().unwrap_or(Source::Default);
                (
                    name.clone(),
                    Setting {
                        values: values.clone(),
                        source,
                    },
                )
            })
            .collect()
    }
}

/// Why the configuration cannot be used. Every variant is exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A bad command line or environment value, or `--help`/`--version`
    /// (clap renders those itself).
    #[error("{0}")]
    Clap(#[from] clap::Error),
    #[error("cannot read the config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("config file {}: not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("config file {}: unknown field `{field}`{}", path.display(), hint.as_deref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
    UnknownField {
        path: PathBuf,
        field: String,
        hint: Option<String>,
    },
    #[error("config file {}: field `{field}`: {message}", path.display())]
    BadValue {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// Parses `args` (the program name first) with the environment and the
/// config file.
pub fn load<I, T>(args: I) -> Result<Loaded, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = Config::command();
    let first = cmd.clone().try_get_matches_from(&args)?;
    let path: PathBuf = first
        .get_one::<PathBuf>("config")
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let explicit = first.value_source("config") != Some(ValueSource::DefaultValue);
    let text = match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => None,
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let Some(text) = text else {
        return finish(&first, None, &[]);
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.clone(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
    let (extra, from_file) = file_args(&cmd, &first, &table, &path)?;
    let mut all = args.clone();
    all.extend(extra);
    let matches = match cmd.try_get_matches_from(&all) {
        Ok(m) => m,
        Err(e) => return Err(blame_file(e, &from_file, &path)),
    };
    finish(&matches, Some(path), &from_file)
}

fn finish(
    matches: &ArgMatches,
    file: Option<PathBuf>,
    from_file: &[String],
) -> Result<Loaded, ConfigError> {
    let config = Config::from_arg_matches(matches)?;
    let mut sources = BTreeMap::new();
    let mut values = BTreeMap::new();
    for arg in Config::command().get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if matches!(long, "help" | "version") {
            continue;
        }
        let source = if from_file.iter().any(|f| f == long) {
            Source::File
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::CommandLine,
                Some(ValueSource::EnvVariable) => Source::Environment,
                _ => Source::Default,
            }
        };
        sources.insert(long.to_owned(), source);
        let rendered: Vec<String> = matches
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        values.insert(long.to_owned(), rendered);
    }
    Ok(Loaded {
        config,
        file,
        sources,
        values,
    })
}

/// The command-line arguments standing for the file's values of options
/// that neither the command line nor the environment set, and the names of
/// those options.
fn file_args(
    cmd: &clap::Command,
    first: &ArgMatches,
    table: &toml::Table,
    path: &Path,
) -> Result<(Vec<OsString>, Vec<String>), ConfigError> {
    let longs: Vec<&str> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !matches!(*l, "help" | "version" | "config"))
        .collect();
    let mut extra = Vec::new();
    let mut from_file = Vec::new();
    for (key, value) in table {
        let field = key.replace('_', "-");
        let bad = |message: String| ConfigError::BadValue {
            path: path.to_owned(),
            field: key.clone(),
            message,
        };
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(field.as_str()) && field != "config")
            .filter(|_| longs.contains(&field.as_str()))
        else {
            return Err(ConfigError::UnknownField {
                path: path.to_owned(),
                field: key.clone(),
                hint: closest(&field, &longs),
            });
        };
        let id = arg.get_id().as_str();
        if !matches!(
            first.value_source(id),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue; // the command line or the environment wins
        }
        let flag = format!("--{field}");
        if !arg.get_action().takes_values() {
            match value {
                toml::Value::Boolean(true) => extra.push(OsString::from(&flag)),
                toml::Value::Boolean(false) => {}
                other => {
                    return Err(bad(format!(
                        "expected true or false, found {}",
                        other.type_str()
                    )));
                }
            }
            from_file.push(field);
            continue;
        }
        let items: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for item in items {
            let text = match item {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(bad(format!(
                        "expected a string, number or boolean, found {}",
                        other.type_str()
                    )));
                }
            };
            extra.push(OsString::from(format!("{flag}={text}")));
        }
        from_file.push(field);
    }
    Ok((extra, from_file))
}

/// A clap error about a value that came from the file, restated as the
/// file's error.
fn blame_file(e: clap::Error, from_file: &[String], path: &Path) -> ConfigError {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let long = arg
        .trim_start_matches("--")
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_owned();
    if !from_file.contains(&long) {
        return ConfigError::Clap(e);
    }
    let message = match (e.kind(), e.get(ContextKind::InvalidValue)) {
        (ErrorKind::ArgumentConflict, _) => "used more than once".to_owned(),
        (_, Some(ContextValue::String(v))) => {
            let detail = e.source().map(|s| format!(": {s}")).unwrap_or_default();
            format!("invalid value '{v}'{detail}")
        }
        _ => e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned(),
    };
    ConfigError::BadValue {
        path: path.to_owned(),
        field: long,
        message,
    }
}

/// The option name closest to a misspelt `field`, if any is close.
fn closest(field: &str, longs: &[&str]) -> Option<String> {
    longs
        .iter()
        .map(|l| (strsim::levenshtein(field, l), *l))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, l)| l.to_owned())
}

/// The example config file shipped as `deploy/netmon.toml`: every option,
/// commented out at its default, with its help text. Generated from the
/// option definitions; a test keeps the shipped file equal to it.
pub fn example_file() -> String {
    let mut out = String::from(
        "# netmon-agent configuration: /etc/netmon/netmon.toml, or --config PATH.
#
# Keys are the long option names of `netmon-agent --help` (dashes or
# underscores). Precedence: command line > environment (NETMON_*) > this
# file > defaults. Every setting below is commented out at its default.
# Check a file with `netmon-agent config check --config FILE`; see what is
# in effect with `netmon-agent config show`.
#
# The API key does not belong here: use $NETMON_API_KEY, api-key-file, or a
# systemd credential (see deploy/systemd). This file is generated from the
# option definitions (netmon-agent/src/config.rs, example_file).
",
    );
    for arg in Config::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version" | "config") {
            continue;
        }
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in textwrap_lines(&help, 74) {
            out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
        }
        let values = arg.get_possible_values();
        if !values.is_empty() {
            let names: Vec<&str> = values.iter().map(|v| v.get_name()).collect();
            out.push_str(&format!("# One of: {}.\n", names.join(", ")));
        }
        if let Some(env) = arg.get_env() {
            out.push_str(&format!("# Environment: {}.\n", env.to_string_lossy()));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let multi = matches!(arg.get_action(), clap::ArgAction::Append);
        let render = |v: &str| {
            if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
                v.to_owned()
            } else {
                toml::Value::String(v.to_owned()).to_string()
            }
        };
        let value = match (defaults.as_slice(), multi) {
            ([], true) => "[]".to_owned(),
            ([], false) => format!("\"<{}>\"", long.to_uppercase()),
            (d, true) => format!(
                "[{}]",
                d.iter().map(|v| render(v)).collect::<Vec<_>>().join(", ")
            ),
            ([d], false) => render(d),
            (d, false) => render(&d.join(",")),
        };
        out.push_str(&format!("#{long} = {value}\n"));
    }
    out
}

/// Splits `text` into lines of at most `width` columns at spaces, keeping
/// its own line breaks.
fn textwrap_lines(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
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
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("netmon-agent").chain(args.iter().copied()))
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netmon.toml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn load_with(path: &Path, args: &[&str]) -> Result<Loaded, ConfigError> {
        let mut all = vec!["netmon-agent", "--config", path.to_str().unwrap()];
        all.extend_from_slice(args);
        load(all)
    }

    #[test]
    fn file_values_fill_in_what_the_command_line_leaves() {
        let (_d, path) = write(
            "interval = \"2s\"\niface = [\"a\", \"b\"]\nflow_entries = 1024\nlisten = \"127.0.0.1:9000\"\n",
        );
        let l = load_with(&path, &["--listen", "127.0.0.1:9001"]).unwrap();
        assert_eq!(l.config.interval, Duration::from_secs(2));
        assert_eq!(l.config.ifaces, ["a", "b"]);
        assert_eq!(l.config.flow_entries, 1024);
        assert_eq!(l.config.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(l.sources["interval"], Source::File);
        assert_eq!(l.sources["flow-entries"], Source::File);
        assert_eq!(l.sources["listen"], Source::CommandLine);
        assert_eq!(l.sources["idle-expiry"], Source::Default);
        assert_eq!(l.file.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn unknown_fields_are_named_with_a_suggestion() {
        let (_d, path) = write("intervall = \"2s\"\n");
        match load_with(&path, &[]).unwrap_err() {
            ConfigError::UnknownField { field, hint, .. } => {
                assert_eq!(field, "intervall");
                assert_eq!(hint.as_deref(), Some("interval"));
            }
            e => panic!("{e}"),
        }
        let (_d, path) = write("config = \"/etc/other.toml\"\n");
        assert!(matches!(
            load_with(&path, &[]).unwrap_err(),
            ConfigError::UnknownField { .. }
        ));
    }

    #[test]
    fn bad_values_name_the_file_and_the_field() {
        for (text, field, needle) in [
            ("interval = \"soon\"\n", "interval", "soon"),
            ("flow-entries = 3\n", "flow-entries", "3"),
            ("flow-cache-slots = 6001\n", "flow-cache-slots", "6001"),
            ("max-flows = 0\n", "max-flows", "0"),
            ("ingress = \"magic\"\n", "ingress", "magic"),
            ("http-max-connections = 0\n", "http-max-connections", "0"),
            (
                "http-idle-timeout = \"10ms\"\n",
                "http-idle-timeout",
                "10ms",
            ),
            ("history-max-points = 99\n", "history-max-points", "99"),
            ("interval = { a = 1 }\n", "interval", "table"),
            (
                "listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
                "listen",
                "",
            ),
        ] {
            let (_d, path) = write(text);
            let err = load_with(&path, &[]).unwrap_err();
            let msg = err.to_string();
            match &err {
                ConfigError::BadValue { field: f, .. } => assert_eq!(f, field, "{msg}"),
                e => panic!("{text}: not a BadValue: {e}"),
            }
            assert!(msg.contains(path.to_str().unwrap()), "{msg}");
            assert!(msg.contains(needle), "{text}: {msg}");
        }
    }

    #[test]
    fn syntax_errors_and_missing_files() {
        let (_d, path) = write("interval = \n");
        let msg = load_with(&path, &[]).unwrap_err().to_string();
        assert!(
            msg.contains("not valid TOML") && msg.contains("line 1"),
            "{msg}"
        );
        let err = load_with(Path::new("/nonexistent/netmon.toml"), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    /// `deploy/netmon.toml` is [`example_file`]; `NETMON_BLESS=1` rewrites it.
    #[test]
    fn shipped_example_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/netmon.toml");
        let want = example_file();
        if std::env::var_os("NETMON_BLESS").is_some() {
            fs::write(&path, &want).unwrap();
        }
        let have = fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date: run `NETMON_BLESS=1 cargo test -p netmon-agent --lib config::tests::shipped_example_is_current`",
            path.display()
        );
    }

    /// The example with every setting uncommented is a valid config file
    /// (placeholders for options without a default aside).
    #[test]
    fn example_values_are_valid() {
        let text: String = example_file()
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = ") && !l.contains("\"<"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(text.contains("interval = \"1s\""), "{text}");
        let (_d, path) = write(&text);
        load_with(&path, &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
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
        assert_eq!(named, ["api-key-file", "read-only-key-file", "tls-key"]);
    }

    #[test]
    fn settings_are_every_option_but_config_with_its_source() {
        let (_d, path) = write("flow-entries = 1024\n");
        let l = load_with(&path, &["--iface", "a,b"]).unwrap();
        let s = l.settings();
        assert!(!s.contains_key("config"));
        assert_eq!(s.len(), l.values.len() - 1);
        let setting = |values: &[&str], source| Setting {
            values: values.iter().map(|v| v.to_string()).collect(),
            source,
        };
        assert_eq!(s["iface"], setting(&["a", "b"], Source::CommandLine));
        assert_eq!(s["flow-entries"], setting(&["1024"], Source::File));
        assert_eq!(s["interval"], setting(&["1s"], Source::Default));
        assert_eq!(s["api-key-file"], setting(&[], Source::Default));
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
