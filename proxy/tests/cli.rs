//! Flags: a wrong flag or value exits 2 with one line naming it; the shutdown budget is checked
//! against the pod's grace period before anything starts.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(lameduck_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_flag_exits_2_naming_it() {
    let (code, err) = run(&["--shutdown-dealy", "5s"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--shutdown-dealy"), "{err}");
}

#[test]
fn bad_values_exit_2_naming_the_flag() {
    for (flag, value) in [
        ("--shutdown-delay", "soon"),
        ("--app-probe", "grpc:"),
        ("--listen", "localhost"),
        ("--readiness-on-shutdown", "maybe"),
        ("--threads", "0"),
    ] {
        let (code, err) = run(&[flag, value]);
        assert_eq!(code, Some(2), "{flag} {value}");
        assert!(err.contains(flag), "{flag}: {err}");
    }
}

#[test]
fn env_vars_are_read_and_checked() {
    let out = Command::new(lameduck_bin())
        .env("LAMEDUCK_DRAIN_TIMEOUT", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--drain-timeout"));
}

#[test]
fn grace_period_too_short_exits_2_with_the_arithmetic() {
    let (code, err) = run(&["--termination-grace-period", "30s"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("shutdown-delay-max 15s + drain-timeout 15s + app-shutdown-budget 10s + margin 2s = 42s"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn delay_longer_than_max_exits_2() {
    let (code, err) = run(&["--shutdown-delay", "20s", "--shutdown-delay-max", "10s"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--shutdown-delay 20s is longer than --shutdown-delay-max 10s"),
        "{err}"
    );
}
