//! lameduck: parse the configuration, set up logging, run, and map the outcome to an exit code.

mod check;
mod config;

use std::process::ExitCode;

use clap::Parser;

use crate::config::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { file }) => check::run(&file),
        None => {
            if let Err(e) = cli.run.validate() {
                eprintln!("lameduck: {e}");
                return ExitCode::from(2);
            }
            println!("lameduck {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
