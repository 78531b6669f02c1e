//! What the lab's integration tests share: the lab binary and the real binaries it runs
//! (built beside it), a scratch directory per test, and a run's output, shown when an assertion
//! fails.

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lab"))
}

/// The lab's binary, with the binaries it runs as pods (slowapp, lameduck) checked to be
/// beside it.
pub fn lab_with_pods() -> Command {
    for bin in ["slowapp", "lameduck"] {
        beside_lab(bin);
    }
    lab()
}

/// A workspace binary in the lab's target directory: a workspace test run builds it, `cargo
/// test -p lab` alone does not, which the failure says.
pub fn beside_lab(bin: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_lab"))
        .parent()
        .expect("target dir")
        .join(bin);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (the lab runs the real binaries)",
        path.display()
    );
    path
}

/// An empty directory of this test process's own under the target's scratch space.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// A finished run's exit status and output, for an assertion's message.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn read_json(p: &Path) -> Value {
    let text =
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", p.display()))
}
