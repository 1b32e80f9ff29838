//! `netmon-agent`: see the library docs and the README.
//!
//! `netmon-agent [OPTIONS]` runs the agent; `check`, `config check` and
//! `config show` (before the options) inspect the machine and the
//! configuration without starting it; `hash-key` prints the hashed forms of
//! an API key read on stdin; `rules` prints the default alert rules as a
//! Prometheus rules file; `hub` runs the receiver of many agents' pushes
//! (see `netmon_agent::hub`).

use std::{ffi::OsString, process::ExitCode};

use netmon_agent::config::{self, ConfigError, Loaded};
use tracing_subscriber::EnvFilter;

enum Mode {
    Run,
    Check,
    ConfigCheck,
    ConfigShow,
}

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let mode = match (
        args.get(1).and_then(|a| a.to_str()),
        args.get(2).and_then(|a| a.to_str()),
    ) {
        (Some("check"), _) => {
            args.remove(1);
            Mode::Check
        }
        (Some("config"), Some(sub @ ("check" | "show"))) => {
            let mode = if sub == "check" {
                Mode::ConfigCheck
            } else {
                Mode::ConfigShow
            };
            args.drain(1..3);
            mode
        }
        (Some("config"), other) => {
            eprintln!(
                "error: `netmon-agent config` needs `check` or `show`, not {}",
                other.map_or("nothing".to_owned(), |o| format!("`{o}`"))
            );
            return ExitCode::from(2);
        }
        (Some("hash-key"), _) => return hash_key(),
        (Some("hub"), _) => return netmon_agent::hub::main(args),
        (Some("rules"), _) => {
            print!("{}", netmon_agent::alerts::prom::rules_file());
            return ExitCode::SUCCESS;
        }
        _ => Mode::Run,
    };
    let loaded = match config::load(args) {
        Ok(l) => l,
        Err(ConfigError::Clap(e)) => e.exit(),
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from(e));
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Run => run(loaded),
        Mode::Check => {
            init_logs(&loaded, "warn");
            let rows = netmon_agent::check::run(&loaded.config);
            let (table, ok) = netmon_agent::check::render(&rows);
            print!("{table}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Mode::ConfigCheck => {
            match &loaded.file {
                Some(f) => println!("Configuration is valid (file {}).", f.display()),
                None => println!(
                    "Configuration is valid (no config file: {} does not exist).",
                    config::DEFAULT_CONFIG
                ),
            }
            ExitCode::SUCCESS
        }
        Mode::ConfigShow => {
            print!("{}", show(&loaded));
            ExitCode::SUCCESS
        }
    }
}

/// `netmon-agent hash-key`: reads a key on stdin (its first line), prints
/// its `sha256:` and argon2 forms, either of which can replace the key in a
/// key file.
fn hash_key() -> ExitCode {
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("error: cannot read the key from stdin: {e}");
        return ExitCode::from(2);
    }
    match netmon_agent::keys::hash_key(&line) {
        Ok((sha256, argon2)) => {
            println!("{sha256}");
            println!("{argon2}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logs(loaded: &Loaded, level: &str) -> bool {
    let spec = if level.is_empty() {
        &loaded.config.log
    } else {
        level
    };
    match EnvFilter::try_new(spec) {
        Ok(f) => {
            netmon_agent::logging::init(f, loaded.config.log_format);
            true
        }
        Err(e) => {
            eprintln!("error: invalid value '{spec}' for '--log': {e}");
            false
        }
    }
}

fn run(loaded: Loaded) -> ExitCode {
    if !init_logs(&loaded, "") {
        return ExitCode::from(2);
    }
    if let Some(file) = &loaded.file {
        tracing::info!(file = %file.display(), "Read the config file.");
    }
    let fail = |e: netmon_agent::Error| {
        let code = e.exit_code();
        // `{:#}` prints the whole cause chain on one line.
        tracing::error!("{:#}", anyhow::Error::from(e));
        ExitCode::from(code)
    };
    // The privileged steps run here, single-threaded, so that dropping the
    // capabilities afterwards covers every thread the agent will have.
    let started = match netmon_agent::start(loaded.clone()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    netmon_agent::privileges::drop_unneeded(&loaded.config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(netmon_agent::serve(started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// The effective configuration as TOML a config file could hold, each line
/// with its source. The API key never appears: only where it comes from.
fn show(loaded: &Loaded) -> String {
    let mut out = match &loaded.file {
        Some(f) => format!("# Effective configuration (config file {}).\n", f.display()),
        None => "# Effective configuration (no config file).\n".to_owned(),
    };
    for (name, setting) in loaded.settings() {
        let source = setting.source;
        let quoted: Vec<String> = setting.values.iter().map(|v| toml_value(v)).collect();
        match quoted.len() {
            0 => out.push_str(&format!("# {name}: not set  # {source}\n")),
            1 => out.push_str(&format!("{name} = {}  # {source}\n", quoted[0])),
            _ => out.push_str(&format!("{name} = [{}]  # {source}\n", quoted.join(", "))),
        }
    }
    if std::env::var_os(netmon_agent::keys::KEY_ENV_VAR).is_some() {
        out.push_str(&format!(
            "# api key: from ${} (value hidden)\n",
            netmon_agent::keys::KEY_ENV_VAR
        ));
    }
    out
}

/// Numbers and booleans bare, everything else as a TOML string.
fn toml_value(v: &str) -> String {
    if v.parse::<i64>().is_ok() || v == "true" || v == "false" {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}
