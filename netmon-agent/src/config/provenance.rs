//! Provenance: where each option's value came from (command line,
//! environment, config file, default) and the values in effect, as
//! `config show` prints them and `/api/v1/config` serves them.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, parser::ValueSource};

use super::{Config, ConfigError};

/// Where an option's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
#[schema(as = ConfigSource)]
pub enum ConfigSource {
    CommandLine,
    Environment,
    #[serde(rename = "config-file")]
    File,
    Default,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigSource::CommandLine => "command line",
            ConfigSource::Environment => "environment",
            ConfigSource::File => "config file",
            ConfigSource::Default => "default",
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
    pub sources: BTreeMap<String, ConfigSource>,
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
    pub source: ConfigSource,
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
                let source = self
                    .sources
                    .get(name)
                    .copied()
                    .unwrap_or(ConfigSource::Default);
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

/// The configuration parsed into `matches`, with each option's source:
/// [`ConfigSource::File`] for the options in `from_file` (those the file set),
/// else what clap says of it.
pub(super) fn finish(
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
            ConfigSource::File
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => ConfigSource::CommandLine,
                Some(ValueSource::EnvVariable) => ConfigSource::Environment,
                _ => ConfigSource::Default,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{load_with, write};

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
        assert_eq!(s["iface"], setting(&["a", "b"], ConfigSource::CommandLine));
        assert_eq!(s["flow-entries"], setting(&["1024"], ConfigSource::File));
        assert_eq!(s["interval"], setting(&["1s"], ConfigSource::Default));
        assert_eq!(s["api-key-file"], setting(&[], ConfigSource::Default));
    }
}
