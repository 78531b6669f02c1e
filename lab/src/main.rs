//! `lab`: parse the command line, run the matrix, map the outcome to an exit code
//! (0 all good; 1 a lameduck scenario lost a request or a run failed; 2 a bad command line).

mod cli;
mod cluster;
mod fronts;
mod manifest;
mod matrix;
mod measure;
mod procs;
mod report;
mod run;
mod scale;
mod scenario;
mod settings;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let args = match cli.command {
        Some(cli::Command::Rollout(a)) => a,
        None => cli.rollout,
    };
    procs::install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lab: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = matrix::rollout(args) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    // Whatever happened, no child outlives the lab.
    procs::kill_all();
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Some(Ok(true)) => ExitCode::SUCCESS,
        Some(Ok(false)) => ExitCode::FAILURE,
        Some(Err(e)) => {
            eprintln!("lab: {e:#}");
            ExitCode::FAILURE
        }
        None => {
            eprintln!("lab: interrupted; every child process was killed");
            ExitCode::from(130)
        }
    }
}
