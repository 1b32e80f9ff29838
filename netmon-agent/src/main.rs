//! `netmon-agent`: see the library docs and the README.

use std::process::ExitCode;

use clap::Parser as _;
use netmon_agent::config::Config;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cfg = Config::parse();
    let filter = match EnvFilter::try_new(&cfg.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: invalid value '{}' for '--log': {e}", cfg.log);
            return ExitCode::from(2);
        }
    };
    netmon_agent::logging::init(filter, cfg.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    match runtime.block_on(netmon_agent::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            // `{:#}` prints the whole cause chain on one line.
            tracing::error!("{:#}", anyhow::Error::from(e));
            ExitCode::from(code)
        }
    }
}
