//! lameduck: parse the configuration, set up logging, run, and map the outcome to an exit code.
//!
//! Exit codes: 0 drained and signalled; 1 a second signal cut the drain short, or a runtime
//! failure (a port already taken); 2 a bad flag, value or combination of values.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use lameduck::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Check { file, kube_version }) => {
            return lameduck::check::run(&file, kube_version)
        }
        Some(Command::Inject(args)) => return lameduck::inject::run(&args),
        Some(Command::Webhook(cmd)) => return lameduck::webhook::run(&cmd),
        None => cli.run,
    };
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lameduck: {e}");
            return ExitCode::from(2);
        }
    };
    lameduck::logging::init(config.runtime.log_format);
    match lameduck::start(config) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lameduck: {e:#}");
            ExitCode::from(1)
        }
    }
}
