//! Log set-up: tracing to stderr (where Kubernetes collects it), as text for people or JSON for
//! log pipelines; `RUST_LOG` refines the level.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What differs between the binaries' logs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The filter when `RUST_LOG` is not set, e.g. `info`.
    pub default_filter: &'static str,
    /// JSON: the event's fields at the top level of each line (lameduck), or under `fields`
    /// (slowapp, whose JSON shape its users already parse).
    pub flatten_json: bool,
}

/// Installs the global subscriber.
pub fn init(format: LogFormat, options: Options) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(options.default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(options.flatten_json).init(),
    }
}
