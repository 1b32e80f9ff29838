//! Loading: the command line and the environment, then the TOML file's
//! values for the options neither of them set, fed back through clap so
//! that a value from the file is checked exactly like one typed on the
//! command line; an error names the file and the field.

use std::{
    ffi::OsString,
    fs, io,
    path::{Path, PathBuf},
};

use std::error::Error as _;

use clap::{
    ArgMatches, CommandFactory as _,
    error::{ContextKind, ContextValue, ErrorKind},
    parser::ValueSource,
};

use super::{Config, DEFAULT_CONFIG, Loaded, provenance::finish};

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
    let rules = alert_rules(&text, &path)?;
    let (extra, from_file) = file_args(&cmd, &first, &table, &path)?;
    let mut all = args.clone();
    all.extend(extra);
    let matches = match cmd.try_get_matches_from(&all) {
        Ok(m) => m,
        Err(e) => return Err(blame_file(e, &from_file, &path)),
    };
    let mut loaded = finish(&matches, Some(path), &from_file)?;
    loaded.config.alert_rules = rules;
    Ok(loaded)
}

/// The file's `[alerts]` section (the one table that is not options): the
/// rules in force, or the error naming the field (`alerts.rules[2].for`).
fn alert_rules(text: &str, path: &Path) -> Result<crate::alerts::run::Rules, ConfigError> {
    crate::alerts::rules::Section::from_toml(text)
        .and_then(|s| s.rules())
        .map(crate::alerts::run::Rules)
        .map_err(|e| ConfigError::BadValue {
            path: path.to_owned(),
            field: e.field,
            message: e.message,
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
        if key == "alerts" {
            continue; // the rules' section, read by `alert_rules`
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{
        ConfigSource,
        tests::{load_with, write},
    };

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
        assert_eq!(l.sources["interval"], ConfigSource::File);
        assert_eq!(l.sources["flow-entries"], ConfigSource::File);
        assert_eq!(l.sources["listen"], ConfigSource::CommandLine);
        assert_eq!(l.sources["idle-expiry"], ConfigSource::Default);
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
    fn the_alerts_section_is_read_and_its_errors_name_the_field() {
        let (_d, path) = write(
            "interval = \"2s\"\n[alerts]\n[[alerts.rules]]\nname = \"burst\"\nexpr = \"device_tx_bps > 1000\"\n",
        );
        let l = load_with(&path, &[]).unwrap();
        let rules = &l.config.alert_rules.0;
        assert!(rules.iter().any(|r| r.name == "burst"));
        assert!(rules.iter().any(|r| r.name == "cpu_high"), "defaults kept");
        let (_d, path) = write("[[alerts.rules]]\nname = \"cpu_high\"\nfor = \"soon\"\n");
        match load_with(&path, &[]).unwrap_err() {
            ConfigError::BadValue { field, message, .. } => {
                assert_eq!(field, "alerts.rules[0].for", "{message}");
            }
            e => panic!("{e}"),
        }
        // No file: the defaults.
        let l = load(["netmon-agent"]).unwrap();
        assert_eq!(l.config.alert_rules.0, crate::alerts::rules::defaults());
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
}
