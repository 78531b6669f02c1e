//! Bad input fails fast and clearly: a wrong flag or value exits 2 with one line naming it, and an
//! address that cannot be bound exits 1 saying which.

mod common;

use std::net::TcpListener;
use std::process::Output;

use common::{command, free_addr, SlowApp};

fn run(cmd: &mut std::process::Command) -> Output {
    cmd.output().expect("running slowapp")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_unknown_flag_exits_2_naming_it() {
    let out = run(command().arg("--respnse-delay").arg("1s"));
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "one line, got {lines:?}");
    assert!(lines[0].contains("--respnse-delay"), "{lines:?}");
}

#[test]
fn a_bad_duration_exits_2_naming_the_flag() {
    let out = run(command().args(["--response-delay", "5 parsecs"]));
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "one line, got {lines:?}");
    assert!(
        lines[0].contains("--response-delay") && lines[0].contains("5 parsecs"),
        "{lines:?}"
    );
}

#[test]
fn a_bad_duration_in_the_environment_exits_2_too() {
    let out = run(command().env("SLOWAPP_SHUTDOWN_TIMEOUT", "soon"));
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert!(
        lines.len() == 1 && lines[0].contains("--shutdown-timeout") && lines[0].contains("soon"),
        "{lines:?}"
    );
}

#[test]
fn flags_can_come_from_the_environment() {
    let mut cmd = command();
    cmd.env("SLOWAPP_STARTUP_DELAY", "0s")
        .env("SLOWAPP_RESPONSE_DELAY", "0s")
        .env("SLOWAPP_NAME", "env-pod");
    let app = SlowApp::spawn(cmd, &[]);
    app.wait_for_log("Start server");
    let response = common::get(app.addr, "/").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-served-by"), Some("env-pod"));
}

#[test]
fn help_exits_0() {
    let out = run(command().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--startup-delay",
        "--response-delay",
        "--shutdown-timeout",
        "--name",
        "--log-format",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn an_address_in_use_exits_1_naming_it() {
    let taken = TcpListener::bind(free_addr()).unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(command().args(["--startup-delay", "0s", "--listen", &addr]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}
