//! `lab`: parse the command line, run the matrix, map the outcome to an exit code
//! (0 all good; 1 a lameduck scenario lost a request or a run failed; 2 a bad command line).

// One exception, `procs::harden`'s pre_exec hook (PR_SET_PDEATHSIG in the child).
#![deny(unsafe_code)]

mod cli;
mod cluster;
mod e2e;
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
mod values;

use std::process::ExitCode;

use clap::Parser;

/// `lab loadgen` on its own runtime: no child processes, nothing of the matrix.
fn e2e_command(f: impl std::future::Future<Output = anyhow::Result<bool>>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => exit(rt.block_on(f)),
        Err(e) => {
            eprintln!("lab: starting the tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit(r: anyhow::Result<bool>) -> ExitCode {
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let args = match cli.command {
        Some(cli::Command::Rollout(a)) => a,
        None => cli.rollout,
        Some(cli::Command::Loadgen(a)) => return e2e_command(e2e::loadgen(a)),
        Some(cli::Command::E2eReport(a)) => return exit(e2e::report(a)),
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
