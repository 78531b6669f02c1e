//! `lameduck check`: manifest wiring and the shutdown budget. (Being written: issue 6.)

use std::process::ExitCode;

pub fn run(file: &str) -> ExitCode {
    eprintln!("lameduck check: not implemented yet (cannot check {file})");
    ExitCode::from(2)
}
