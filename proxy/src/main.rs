//! lameduck: parse the configuration, set up logging, run, and map the outcome to an exit code.
//!
//! Exit codes: 0 drained and signalled; 1 a second signal cut the drain short, or a runtime
//! failure (a port already taken); 2 a bad flag, value or combination of values.

mod admin;
mod check;
mod config;
mod data_plane;
mod memory;
mod metrics;
mod phase;
mod server;
mod shutdown;
mod upstream;
mod upstream_pool;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Check { file, kube_version }) => return check::run(&file, kube_version),
        None => cli.run,
    };
    if let Err(e) = args.validate() {
        eprintln!("lameduck: {e}");
        return ExitCode::from(2);
    }
    init_logging(args.log_format);
    match server::run(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lameduck: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `RUST_LOG` overrides the default: lameduck at info, pingora only when it has a real problem
/// (lameduck logs upstream failures itself, with their kind).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,pingora_core=error,pingora_proxy=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
