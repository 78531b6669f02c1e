//! `lameduck check` on real renders: every overlay under k8s/ passes (the prestop-sleep
//! baseline is rejected on purpose), and each deliberately broken copy under
//! tests/fixtures/check/ (a kustomize overlay of the real manifests with one thing wrong) is
//! caught with its message. Renders with the real `kubectl kustomize`; the real binary reads
//! them on stdin or from a file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn errors(&self) -> Vec<&str> {
        self.lines("  error: ")
    }

    fn warnings(&self) -> Vec<&str> {
        self.lines("  warning: ")
    }

    fn lines(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .collect()
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check")
}

/// `kubectl kustomize DIR`. kubectl ships on the project's machines (scripts/test.sh); a
/// missing kubectl fails the test, it does not skip it.
fn render(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl (needed to render k8s/): {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 render")
}

fn check_stdin(input: &str, env: &[(&str, &str)]) -> Outcome {
    check_stdin_with(&[], input, env)
}

/// `lameduck check FLAGS -` with `input` on stdin.
fn check_stdin_with(flags: &[&str], input: &str, env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lameduck"));
    cmd.arg("check")
        .args(flags)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn lameduck check");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    finish(child.wait_with_output().expect("lameduck check output"))
}

fn check_file(path: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .arg("check")
        .arg(path)
        .output()
        .expect("run lameduck check");
    finish(out)
}

fn finish(out: std::process::Output) -> Outcome {
    Outcome {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Renders fixture NAME and checks it: it must fail (exit 1) with exactly one error that
/// contains every one of `needles`.
fn assert_caught(name: &str, needles: &[&str]) -> Outcome {
    let out = check_stdin(&render(&fixtures().join(name)), &[]);
    assert_eq!(out.code, 1, "{name} not rejected:\n{}", out.stdout);
    let errors = out.errors();
    assert!(
        errors.iter().any(|e| needles.iter().all(|n| e.contains(n))),
        "{name}: no error containing {needles:?}:\n{}",
        out.stdout
    );
    out
}

#[test]
fn every_lameduck_overlay_passes_clean() {
    for overlay in ["base", "overlays/native-sidecar"] {
        let out = check_stdin(&render(&repo().join("k8s").join(overlay)), &[]);
        assert_eq!(out.code, 0, "{overlay}:\n{}{}", out.stdout, out.stderr);
        assert!(
            out.errors().is_empty() && out.warnings().is_empty(),
            "{overlay}:\n{}",
            out.stdout
        );
        assert!(
            out.stdout
                .contains("= 42s; terminationGracePeriodSeconds 45"),
            "{overlay}: the budget line is missing:\n{}",
            out.stdout
        );
        assert!(
            out.stdout
                .contains("Service zero-downtime port 80 (http) -> 8080 (lameduck's data port)"),
            "{overlay}: the Service was not checked:\n{}",
            out.stdout
        );
    }
}

#[test]
fn the_modes_are_recognised() {
    let classic = check_stdin(&render(&repo().join("k8s/base")), &[]);
    assert!(
        classic.stdout.contains("lameduck: classic sidecar"),
        "{}",
        classic.stdout
    );
    let native = check_stdin(&render(&repo().join("k8s/overlays/native-sidecar")), &[]);
    assert!(
        native.stdout.contains("lameduck: native sidecar"),
        "{}",
        native.stdout
    );
}

#[test]
fn the_seed_baseline_is_rejected_for_lacking_lameduck() {
    let out = check_stdin(&render(&repo().join("k8s/overlays/prestop-sleep")), &[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.errors()
            .iter()
            .any(|e| e.starts_with("lameduck container missing")),
        "{}",
        out.stdout
    );
}

/// Every directory under fixtures/check is a broken copy that some test below asserts: a new
/// fixture without a test, or a test whose fixture is gone, fails here.
#[test]
fn every_broken_copy_is_caught() {
    let cases: &[(&str, &[&str])] = &[
        (
            "no-readiness",
            &[
                "container \"lameduck\"",
                "no readinessProbe on lameduck's admin /ready",
            ],
        ),
        (
            "readiness-on-data-port",
            &[
                "readinessProbe is httpGet /ready on port \"http\"",
                "not lameduck's admin /ready",
            ],
        ),
        (
            "app-no-prestop",
            &["container \"app\"", "no preStop hook", "/drain, port: 9901"],
        ),
        (
            "app-prestop-sleep",
            &[
                "container \"app\"",
                "preStop is exec `sh -c sleep 2`",
                "not a call to lameduck's /drain",
            ],
        ),
        (
            "app-prestop-named-port",
            &[
                "preStop port \"admin\" is a name",
                "container \"app\"'s own ports",
                "number 9901",
            ],
        ),
        (
            "grace-too-short",
            &[
                "terminationGracePeriodSeconds 30 is below lameduck's shutdown budget",
                "= 42s",
                "at least 42",
            ],
        ),
        (
            "grace-unset",
            &["terminationGracePeriodSeconds 30 (unset: the default) is below"],
        ),
        (
            "budget-raised-by-env",
            &[
                "terminationGracePeriodSeconds 45 is below",
                "drain-timeout 40s",
                "= 67s",
            ],
        ),
        (
            "max-unavailable",
            &["maxUnavailable 1 lets the rollout take 1 of 2 ready pods away"],
        ),
        ("recreate", &["strategy Recreate"]),
        (
            "liveness-on-ready",
            &[
                "container \"lameduck\": livenessProbe is httpGet /ready",
                "fails during the shutdown",
                "/live",
            ],
        ),
        (
            "service-to-app",
            &[
                "Service zero-downtime port 80 (http): targetPort 9090 is the app's port",
                "bypasses lameduck",
            ],
        ),
        (
            "bad-flag",
            &["container \"lameduck\"", "flags do not parse", "forever"],
        ),
        (
            "native-startup-on-ready",
            &["startupProbe is httpGet /ready", "never starts"],
        ),
        (
            "native-no-app-prestop",
            &[
                "container \"app\": no preStop hook",
                "native sidecar outlives the app",
            ],
        ),
        (
            "native-named-target-port",
            &[
                "Service zero-downtime port 80 (http): targetPort \"http\" is declared only by \
                 native sidecar \"lameduck\"",
                "before 1.32",
                "use the number 8080",
                "checked for Kubernetes 1.29",
            ],
        ),
        (
            "native-plain-init",
            &["container \"lameduck\" is a plain init container"],
        ),
    ];
    let warning_only = ["app-listens-everywhere", "unknown-env"];

    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut covered: Vec<String> = cases
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(warning_only.iter().map(|n| n.to_string()))
        .collect();
    covered.sort();
    assert_eq!(
        on_disk, covered,
        "fixture directories and test cases differ"
    );

    for (name, needles) in cases {
        assert_caught(name, needles);
    }
}

/// A Service's named targetPort that only the native sidecar declares works from 1.32 on
/// (kubernetes#127958): an error for older servers, a note from 1.32, whatever the spelling of
/// the version.
#[test]
fn a_named_target_port_on_a_native_sidecar_depends_on_the_server_version() {
    let broken = render(&fixtures().join("native-named-target-port"));
    for old in ["1.29", "1.31", "v1.31.4"] {
        let out = check_stdin_with(&["--kube-version", old], &broken, &[]);
        assert_eq!(out.code, 1, "{old}:\n{}", out.stdout);
        let want = "before 1.32 resolves a Service's named targetPort against spec.containers \
                    only (kubernetes#127958): the EndpointSlice gets no port";
        assert!(
            out.errors().iter().any(|e| e.contains(want)),
            "{old}:\n{}",
            out.stdout
        );
    }
    for new in ["1.32", "v1.33.0"] {
        let out = check_stdin_with(&["--kube-version", new], &broken, &[]);
        assert_eq!(out.code, 0, "{new}:\n{}", out.stdout);
        assert!(out.warnings().is_empty(), "{new}:\n{}", out.stdout);
        assert!(
            out.stdout
                .contains("which Kubernetes resolves from 1.32 on")
                && out.stdout.contains(
                    "Service zero-downtime port 80 (http) -> 8080 (lameduck's data port)"
                ),
            "{new}:\n{}",
            out.stdout
        );
    }
    // The shipped overlay targets the number and passes on the oldest supported server.
    let shipped = render(&repo().join("k8s/overlays/native-sidecar"));
    let out = check_stdin_with(&["--kube-version", "1.29"], &shipped, &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.errors().is_empty() && out.warnings().is_empty(),
        "{}",
        out.stdout
    );
}

/// Native sidecars are alpha (gated) in 1.28 and absent before; the classic base is fine there.
#[test]
fn native_sidecars_on_old_servers() {
    let native = render(&repo().join("k8s/overlays/native-sidecar"));
    let alpha = check_stdin_with(&["--kube-version", "1.28"], &native, &[]);
    assert_eq!(alpha.code, 0, "{}", alpha.stdout);
    assert!(
        alpha.warnings().iter().any(|w| w.contains(
            "alpha in 1.28: the SidecarContainers feature gate must be on for the \
             kube-apiserver, the kubelet and the kube-scheduler"
        )),
        "{}",
        alpha.stdout
    );
    let absent = check_stdin_with(&["--kube-version", "1.27"], &native, &[]);
    assert_eq!(absent.code, 1, "{}", absent.stdout);
    assert!(
        absent
            .errors()
            .iter()
            .any(|e| e.contains("needs Kubernetes >= 1.28")),
        "{}",
        absent.stdout
    );
    let classic = check_stdin_with(
        &["--kube-version", "1.27"],
        &render(&repo().join("k8s/base")),
        &[],
    );
    assert_eq!(classic.code, 0, "{}", classic.stdout);
    assert!(classic.warnings().is_empty(), "{}", classic.stdout);
}

#[test]
fn a_bad_kube_version_exits_2_naming_the_flag() {
    let out = check_stdin_with(&["--kube-version", "latest"], "", &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--kube-version")
            && out
                .stderr
                .contains("\"latest\" is not a Kubernetes version"),
        "{}",
        out.stderr
    );
}

#[test]
fn lameduck_refusing_to_start_is_reported_with_its_own_words() {
    let out = assert_caught(
        "budget-raised-by-env",
        &[
            "lameduck would refuse to start",
            "--termination-grace-period 45s is too short",
        ],
    );
    assert_eq!(out.errors().len(), 2, "{}", out.stdout);
}

#[test]
fn a_grace_period_flag_that_disagrees_with_the_pod_is_a_warning() {
    let out = assert_caught("grace-too-short", &["below lameduck's shutdown budget"]);
    assert!(
        out.warnings().iter().any(|w| w.contains(
            "--termination-grace-period 45s but the pod's terminationGracePeriodSeconds is 30"
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn an_app_on_every_address_is_a_warning_not_an_error() {
    let out = check_stdin(&render(&fixtures().join("app-listens-everywhere")), &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.warnings().iter().any(|w| w
            .contains("container \"app\" listens on 0.0.0.0:9090 (args): reachable on the pod IP")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_misspelt_setting_is_a_warning() {
    let out = check_stdin(&render(&fixtures().join("unknown-env")), &[]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("env LAMEDUCK_DRAIN_TIMOUT is not a lameduck setting")),
        "{}",
        out.stdout
    );
}

/// The checker's own LAMEDUCK_* environment must not count as the container's: with a 1s grace
/// period from the environment, lameduck would refuse to start with pod-list.yaml's settings
/// (which do not set one; a set one would override the environment anyway).
#[test]
fn the_checkers_own_environment_does_not_leak_in() {
    let pod = std::fs::read_to_string(fixtures().join("pod-list.yaml")).unwrap();
    let out = check_stdin(&pod, &[("LAMEDUCK_TERMINATION_GRACE_PERIOD", "1s")]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.warnings().is_empty(), "{}", out.stdout);
}

#[test]
fn a_pod_in_a_list_read_from_a_file() {
    let out = check_file(&fixtures().join("pod-list.yaml"));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Pod web"), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "lameduck: classic sidecar (container \"proxy\"), data port 8000, admin port 9000"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("= 17s; terminationGracePeriodSeconds 20"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Service web port 80 -> 8000 (lameduck's data port)"),
        "{}",
        out.stdout
    );
}

#[test]
fn unreadable_input_exits_2() {
    let missing = check_file(&fixtures().join("no-such-file.yaml"));
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot read"), "{}", missing.stderr);

    let broken = check_file(&fixtures().join("not-yaml.yaml"));
    assert_eq!(broken.code, 2);
    assert!(
        broken.stderr.contains("document 1: not YAML or JSON"),
        "{}",
        broken.stderr
    );

    let nothing = check_file(&fixtures().join("service-only.yaml"));
    assert_eq!(nothing.code, 2);
    assert!(
        nothing
            .stderr
            .contains("no Deployment, StatefulSet, DaemonSet, ReplicaSet or Pod"),
        "{}",
        nothing.stderr
    );
}
