//! `lameduck inject` on a corpus of real manifests of different shapes (tests/fixtures/inject/):
//! what it does to each workload and why it leaves others alone, that its output passes
//! `lameduck check` and strict schema validation on every supported Kubernetes version, that
//! it is idempotent, and that what it does not touch comes out as it went in. The real binary
//! reads the files; the real `kubectl kustomize` renders k8s/; the real validator checks.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stderr line for `workload` (e.g. "Deployment shop/web").
    fn line(&self, workload: &str) -> &str {
        let prefix = format!("{workload}: ");
        self.stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for {workload} in:\n{}", self.stderr))
    }

    fn warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("  warning: "))
            .collect()
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn lameduck(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lameduck");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("lameduck output");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn inject(fixture: &str, flags: &[&str]) -> Run {
    let path = fixtures().join(fixture);
    let mut args = vec!["inject", path.to_str().unwrap()];
    args.extend_from_slice(flags);
    let run = lameduck(&args, "");
    assert_eq!(run.code, 0, "inject {fixture}:\n{}", run.stderr);
    run
}

/// `lameduck check -` on `text`: its error lines for `workload` (the lines indented under the
/// workload's header).
fn check_errors(text: &str, workload: &str) -> Vec<String> {
    let run = lameduck(&["check", "-"], text);
    let mut errors = Vec::new();
    let mut inside = false;
    for l in run.stdout.lines() {
        if !l.starts_with(' ') {
            inside = l == workload;
        } else if inside {
            if let Some(e) = l.strip_prefix("  error: ") {
                errors.push(e.to_string());
            }
        }
    }
    assert!(
        run.stdout.lines().any(|l| l == workload),
        "check did not see {workload}:\n{}",
        run.stdout
    );
    errors
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn container<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    pod_spec["containers"]
        .as_array()
        .into_iter()
        .chain(pod_spec["initContainers"].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod_spec}"))
}

fn args(c: &Value) -> Vec<&str> {
    c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

#[test]
fn a_named_target_port_moves_to_lameduck_and_the_service_stays() {
    let run = inject("named-target.yaml", &[]);
    let line = run.line("Deployment shop/web");
    assert!(line.starts_with("Deployment shop/web: injected"), "{line}");
    assert!(
        line.contains("targetPort \"http\" now lameduck's"),
        "{line}"
    );
    let out = docs(&run.stdout);
    let spec = &find(&out, "Deployment", "web")["spec"]["template"]["spec"];
    let app = container(spec, "web");
    let ld = container(spec, "lameduck");
    // The name went to lameduck; the app's port and its liveness probe were renamed together.
    assert_eq!(app["ports"][0]["name"], "app-http");
    assert_eq!(app["livenessProbe"]["httpGet"]["port"], "app-http");
    assert_eq!(ld["ports"][0]["name"], "http");
    // Readiness moved to lameduck, translated to its app probe; liveness stayed on the app.
    assert!(app.get("readinessProbe").is_none());
    assert_eq!(ld["readinessProbe"]["httpGet"]["path"], "/ready");
    assert!(args(ld).contains(&"--app-probe=http:/healthz"));
    assert!(args(ld).contains(&"--upstream=127.0.0.1:8080"));
    assert_eq!(app["lifecycle"]["preStop"]["httpGet"]["path"], "/drain");
    assert_eq!(
        app["lifecycle"]["preStop"]["httpGet"]["port"],
        ld["ports"][1]["containerPort"]
    );
    // Raised from the default 30 s to lameduck's budget with the app's 30 s kept.
    assert_eq!(spec["terminationGracePeriodSeconds"], 62);
    assert!(args(ld).contains(&"--termination-grace-period=62s"));
    // What inject does not model came through.
    assert_eq!(app["imagePullPolicy"], "IfNotPresent");
    assert_eq!(app["resources"]["requests"]["cpu"], "100m");
    assert_eq!(spec["serviceAccountName"], "web");
    let template = &find(&out, "Deployment", "web")["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["example.com/owner"],
        "team-web"
    );
    let input = docs(&std::fs::read_to_string(fixtures().join("named-target.yaml")).unwrap());
    assert_eq!(find(&out, "Service", "web"), find(&input, "Service", "web"));

    assert!(check_errors(&run.stdout, "Deployment shop/web").is_empty());
}

#[test]
fn numeric_and_defaulted_target_ports_are_pointed_at_lameduck() {
    let run = inject("numeric-target.yaml", &[]);
    let line = run.line("Deployment api");
    assert!(
        line.contains("Service api port 80: targetPort 8000 -> 15080"),
        "{line}"
    );
    assert!(
        line.contains("Service api-direct port 8000: targetPort 8000 -> 15080"),
        "{line}"
    );
    assert!(
        line.contains("terminationGracePeriodSeconds 20 -> 52"),
        "{line}"
    );
    let out = docs(&run.stdout);
    assert_eq!(
        find(&out, "Service", "api")["spec"]["ports"][0]["targetPort"],
        15080
    );
    assert_eq!(
        find(&out, "Service", "api-direct")["spec"]["ports"][0]["targetPort"],
        15080
    );
    let spec = &find(&out, "Deployment", "api")["spec"]["template"]["spec"];
    assert!(args(container(spec, "lameduck")).contains(&"--app-probe=tcp"));
    // The Ingress passes through as it was.
    let input = docs(&std::fs::read_to_string(fixtures().join("numeric-target.yaml")).unwrap());
    assert_eq!(find(&out, "Ingress", "api"), find(&input, "Ingress", "api"));
    assert!(check_errors(&run.stdout, "Deployment api").is_empty());
}

#[test]
fn an_exec_probe_stays_on_the_app_and_other_containers_wait_for_the_drain_too() {
    let run = inject("several-containers.yaml", &[]);
    let line = run.line("Deployment shop");
    assert!(
        line.contains("fronts container \"shop\" port 3000"),
        "{line}"
    );
    assert!(
        line.contains("readiness exec `shop ready` kept on \"shop\""),
        "{line}"
    );
    assert!(
        run.warnings()
            .iter()
            .any(|w| w.contains("maxUnavailable 1 takes 1 of 2")),
        "{}",
        run.stderr
    );
    let out = docs(&run.stdout);
    let d = find(&out, "Deployment", "shop");
    // The strategy is the user's: left as written.
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 1);
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(
        container(spec, "shop")["readinessProbe"]["exec"]["command"][1],
        "ready"
    );
    assert_eq!(
        container(spec, "logs")["lifecycle"]["preStop"]["httpGet"]["path"],
        "/drain"
    );
    // The init container is untouched and lameduck is a classic sidecar.
    assert_eq!(spec["initContainers"].as_array().unwrap().len(), 1);
    assert!(container(spec, "migrate").get("lifecycle").is_none());
    // The metrics port is not lameduck's business: its Service port is left alone.
    let svc = find(&out, "Service", "shop");
    assert_eq!(svc["spec"]["ports"][1]["targetPort"], "metrics");
    // check agrees with everything but the strategy the user chose.
    let errors = check_errors(&run.stdout, "Deployment shop");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("maxUnavailable"), "{errors:?}");
}

#[test]
fn a_grpc_probe_becomes_lameducks_when_lameduck_can_run_it() {
    let run = inject("grpc.yaml", &[]);
    let line = run.line("Deployment greeter");
    let out = docs(&run.stdout);
    let spec = &find(&out, "Deployment", "greeter")["spec"]["template"]["spec"];
    let app = container(spec, "greeter");
    // Whether this lameduck has `--app-probe grpc:SERVICE` is asked of the binary itself,
    // through `check` (which parses a container's flags with the binary's own parser).
    let probe_check = lameduck(
        &["check", "-"],
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: lameduck\n    image: lameduck\n    args: [--app-probe=grpc:x]\n",
    );
    let grpc_supported = !probe_check.stdout.contains("do not parse");
    if grpc_supported {
        assert!(
            line.contains("moved to lameduck's /ready (--app-probe=grpc:greeter.v1.Greeter)"),
            "{line}"
        );
        assert!(app.get("readinessProbe").is_none());
        assert!(args(container(spec, "lameduck")).contains(&"--app-probe=grpc:greeter.v1.Greeter"));
    } else {
        assert!(line.contains("kept on \"greeter\""), "{line}");
        assert_eq!(app["readinessProbe"]["grpc"]["port"], 50051);
        assert!(args(container(spec, "lameduck")).contains(&"--app-probe=tcp"));
    }
    // The grpc liveness probe stays on the app (numbers only, so the rename cannot break it).
    assert_eq!(app["livenessProbe"]["grpc"]["port"], 50051);
    assert!(check_errors(&run.stdout, "Deployment greeter").is_empty());
}

#[test]
fn what_it_does_not_understand_is_left_alone_with_the_reason() {
    for (fixture, expected) in [
        (
            "non-http.yaml",
            &[
                ("StatefulSet redis", "its name \"redis\" says redis"),
                ("Deployment game", "its name \"tcp-game\" says tcp"),
                ("DaemonSet dns", "protocol UDP"),
                ("Deployment tls-app", "appProtocol kubernetes.io/wss"),
            ][..],
        ),
        (
            "not-served.yaml",
            &[
                ("Deployment worker", "no container declares a port"),
                ("DaemonSet node-agent", "hostNetwork"),
                ("Job backfill", "runs to completion"),
                ("CronJob nightly", "runs to completion"),
                ("Pod debug", "lameduck.io/inject: disabled"),
            ][..],
        ),
        (
            "ambiguous.yaml",
            &[(
                "ReplicaSet twoports",
                "several ports declared could be the one to front (5000, 6000)",
            )][..],
        ),
    ] {
        let run = inject(fixture, &[]);
        for (workload, reason) in expected {
            let line = run.line(workload);
            assert!(
                line.contains("unchanged: ") && line.contains(reason),
                "{fixture}: {line}"
            );
        }
        // The output is the input, object for object (ConfigMaps, Services and all).
        let input = docs(&std::fs::read_to_string(fixtures().join(fixture)).unwrap());
        assert_eq!(docs(&run.stdout), input, "{fixture}");
    }
}

#[test]
fn the_port_flag_settles_an_ambiguous_pod() {
    let run = inject("ambiguous.yaml", &["--port", "6000"]);
    let line = run.line("ReplicaSet twoports");
    assert!(line.contains("port 6000 on 15080"), "{line}");
    assert!(check_errors(&run.stdout, "ReplicaSet twoports").is_empty());
    let missing = inject("ambiguous.yaml", &["--port", "7000"]);
    assert!(missing
        .line("ReplicaSet twoports")
        .contains("port 7000: no container has it"));
}

#[test]
fn annotations_tune_each_workload() {
    let run = inject("annotations.yaml", &[]);
    let out = docs(&run.stdout);

    let tuned = &find(&out, "Deployment", "tuned")["spec"]["template"]["spec"];
    let ld = container(tuned, "lameduck");
    let a = args(ld);
    for want in [
        "--upstream=127.0.0.1:8081",
        "--shutdown-delay=2s",
        "--shutdown-delay-max=8s",
        "--drain-timeout=30s",
        "--readiness-on-shutdown=serve",
        "--upstream-protocol=http1",
        "--app-shutdown-budget=5s",
        "--termination-grace-period=45s",
    ] {
        assert!(a.contains(&want), "{want} not in {a:?}");
    }
    assert_eq!(ld["image"], "registry.example.com/lameduck:0.1.0");
    // 8s + 30s + 5s + 2s: the annotations' budget, not the defaults'.
    assert_eq!(tuned["terminationGracePeriodSeconds"], 45);

    let native = &find(&out, "Deployment", "native")["spec"]["template"]["spec"];
    let ld = container(native, "lameduck");
    assert_eq!(ld["restartPolicy"], "Always");
    assert_eq!(ld["startupProbe"]["httpGet"]["path"], "/live");
    assert!(native["containers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["name"] != "lameduck"));
    // Its own preStop was replaced, as the annotation asked.
    let app = container(native, "native");
    assert_eq!(app["lifecycle"]["preStop"]["httpGet"]["path"], "/drain");
    // Native: the app keeps its port name (named ports of init containers resolve only from
    // Kubernetes 1.32 on), and the Service is pointed at lameduck's port by number.
    assert_eq!(app["ports"][0]["name"], "http");
    assert_eq!(
        find(&out, "Service", "native")["spec"]["ports"][0]["targetPort"],
        15080
    );

    for (workload, flag) in [
        ("Deployment mistyped", "--drain-timeout"),
        ("Deployment mistyped-protocol", "--upstream-protocol"),
    ] {
        let line = run.line(workload);
        assert!(
            line.contains("unchanged: ") && line.contains(flag),
            "{line}"
        );
    }

    for w in ["Deployment tuned", "Deployment native"] {
        assert!(check_errors(&run.stdout, w).is_empty(), "{w}");
    }
}

#[test]
fn an_apps_own_pre_stop_is_kept_and_reported_unless_replacing_is_asked_for() {
    let kept = inject("kept-prestop.yaml", &[]);
    assert!(
        kept.warnings().iter().any(
            |w| w.contains("container \"legacy\" keeps its own preStop (exec `sh -c sleep 2`)")
        ),
        "{}",
        kept.stderr
    );
    let out = docs(&kept.stdout);
    let spec = &find(&out, "Pod", "legacy")["spec"];
    assert_eq!(
        container(spec, "legacy")["lifecycle"]["preStop"]["exec"]["command"][0],
        "sh"
    );
    // check flags what was kept, so it is not forgotten.
    let errors = check_errors(&kept.stdout, "Pod legacy");
    assert!(
        errors.iter().any(|e| e.contains("preStop is exec")),
        "{errors:?}"
    );

    let replaced = inject("kept-prestop.yaml", &["--replace-prestop"]);
    assert!(replaced
        .line("Pod legacy")
        .contains("preStop exec `sh -c sleep 2` replaced"));
    assert!(check_errors(&replaced.stdout, "Pod legacy").is_empty());
}

#[test]
fn kubectl_get_output_in_json_comes_back_as_json() {
    let run = inject("list.json", &[]);
    let out: Value = serde_json::from_str(&run.stdout).expect("JSON in, JSON out");
    assert_eq!(out["kind"], "List");
    let d = &out["items"][0];
    // Server-set fields pass through untouched.
    assert_eq!(d["metadata"]["uid"], "5d4f2a9e-2b6e-4c0c-9a59-1f1c3c6f0a11");
    assert_eq!(d["status"]["readyReplicas"], 2);
    assert!(d["spec"]["template"]["metadata"]["creationTimestamp"].is_null());
    assert_eq!(out["items"][1]["spec"]["ports"][0]["targetPort"], 15080);
    assert!(check_errors(&run.stdout, "Deployment default/hello").is_empty());
}

#[test]
fn inject_of_its_own_output_changes_nothing() {
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let first = inject(path.file_name().unwrap().to_str().unwrap(), &[]);
        let second = lameduck(&["inject", "-"], &first.stdout);
        assert_eq!(second.code, 0);
        assert_eq!(second.stdout, first.stdout, "{}", path.display());
        assert!(
            second.stderr.contains(" 0 of "),
            "{}: injected twice:\n{}",
            path.display(),
            second.stderr
        );
    }
}

#[test]
fn the_hand_wired_base_is_recognised_as_injected() {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join("k8s/base"))
        .output()
        .expect("kubectl (needed to render k8s/)");
    assert!(out.status.success());
    let base = String::from_utf8(out.stdout).unwrap();
    let run = lameduck(&["inject", "-"], &base);
    assert_eq!(run.code, 0);
    assert!(run
        .line("Deployment zero-downtime/zero-downtime")
        .contains("unchanged: already injected"));
    assert_eq!(docs(&run.stdout), docs(&base));
}

/// Every injected output validates strictly against the Kubernetes schema (native sidecars on
/// 1.29 and later, classic ones on every supported version), with scripts/validate-k8s.sh.
#[test]
fn the_output_validates_strictly_on_every_supported_version() {
    let dir = std::env::temp_dir().join(format!("lameduck-inject-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Classic outputs on every version; native sidecars (init containers with restartPolicy:
    // Always) exist from 1.29 on. Outputs are gathered into two files: the validator's start-up
    // is most of its time, so one run per file and version.
    let (mut classic, mut native) = (String::new(), String::new());
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let run = inject(path.file_name().unwrap().to_str().unwrap(), &[]);
        // The validator has no schema for `kind: List`: its items are validated instead. Each
        // as JSON (which is YAML): its YAML 1.1 reader would take an unquoted timestamp for a
        // date, where Kubernetes' reader keeps the string.
        let objects: Vec<Value> = docs(&run.stdout)
            .into_iter()
            .flat_map(|d| match d["kind"].as_str() {
                Some("List") => d["items"].as_array().unwrap().clone(),
                _ => vec![d],
            })
            .collect();
        let text: String = objects
            .iter()
            .map(|o| format!("---\n{}\n", serde_json::to_string_pretty(o).unwrap()))
            .collect();
        let has_native = objects.iter().any(|o| {
            let spec = &o["spec"]["template"]["spec"];
            spec["initContainers"]
                .as_array()
                .is_some_and(|ics| ics.iter().any(|c| c["restartPolicy"] == "Always"))
        });
        if has_native {
            native.push_str(&text);
        } else {
            classic.push_str(&text);
        }
    }
    assert!(!native.is_empty() && !classic.is_empty());
    let (classic_file, all_file) = (dir.join("classic.yaml"), dir.join("all.yaml"));
    std::fs::write(&classic_file, &classic).unwrap();
    std::fs::write(&all_file, classic + &native).unwrap();
    validate_strictly(&[("--newest", "28")], &classic_file, "1.25..1.28");
    validate_strictly(&[("--oldest", "29")], &all_file, "1.29..1.37");
    std::fs::remove_dir_all(&dir).ok();
}

/// scripts/validate-k8s.sh on one file and a range of versions; it must say the whole range
/// passed.
fn validate_strictly(range: &[(&str, &str)], file: &Path, versions: &str) {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/validate-k8s.sh"));
    for (flag, value) in range {
        cmd.args([flag, value]);
    }
    let out = cmd
        .arg(file)
        .current_dir(repo())
        .output()
        .expect("run scripts/validate-k8s.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "validate-k8s.sh failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("ok   {}: valid (strict) on", file.display());
    assert!(
        stdout.contains(&want) && stdout.contains(&format!("versions {versions}")),
        "{stdout}"
    );
}

#[test]
fn unreadable_input_and_wrong_flags_exit_2() {
    let broken = lameduck(&["inject", "-"], "kind: [oops\n");
    assert_eq!(broken.code, 2);
    assert!(
        broken
            .stderr
            .contains("stdin: document 1: not YAML or JSON"),
        "{}",
        broken.stderr
    );
    let missing = lameduck(&["inject", "/no/such/file.yaml"], "");
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot read /no/such/file.yaml"));
    let flag = lameduck(&["inject", "--port", "Not_A_Port", "-"], "");
    assert_eq!(flag.code, 2);
    assert!(flag.stderr.contains("--port"), "{}", flag.stderr);
}
