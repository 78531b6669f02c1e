//! slowapp: parse the configuration, set up logging, run the server, map the outcome to an exit
//! code (0 after any shutdown, cut requests included, as the seed; 1 if it cannot serve; 2 for a
//! bad command line).

#![forbid(unsafe_code)]

mod config;
mod grpc;
mod handler;
mod logging;
mod respond;
mod server;
mod shutdown;
mod websocket;

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{CliOutcome, Config, USAGE_EXIT_CODE};

fn main() -> ExitCode {
    let config = match Config::from_args() {
        Ok(config) => config,
        Err(CliOutcome::Info(info)) => info.exit(),
        Err(CliOutcome::Usage(line)) => {
            eprintln!("{line}");
            return ExitCode::from(USAGE_EXIT_CODE);
        }
    };
    logging::init(config.log_format);

    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: &Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = shutdown::install()?;
        server::run(config, shutdown).await.map(drop)
    })
}
