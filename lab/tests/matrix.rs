//! The lab, end to end: real slowapp and lameduck processes, real nginx and HAProxy, real
//! sockets. One short matrix (fast time scale, two rollouts per run) through all three fronts:
//! every lameduck scenario must lose nothing, the bare scenario must lose requests through the
//! service front (so the lab can see a loss at all), and every picture and JSON file must be
//! written and well-formed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{lab_with_pods as lab, read_json, scratch_dir, show};
use serde_json::Value;

#[test]
fn rolling_restarts_through_every_front() {
    for program in ["nginx", "haproxy"] {
        let found = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
            .iter()
            .any(|d| Path::new(d).join(program).is_file());
        assert!(
            found,
            "{program} is not installed: apt-get install nginx-light haproxy"
        );
    }
    // One lab per front, side by side (each on loopback addresses of its own): the 9 runs take
    // the wall time of 3. Each lab runs every scenario.
    let labs: Vec<_> = ["service", "ingress", "router"]
        .into_iter()
        .map(|front| std::thread::spawn(move || (front, every_scenario_through(front))))
        .collect();
    for lab in labs {
        let (front, (out, o)) = lab.join().expect("a lab thread panicked");
        check_matrix(front, &out, &o);
    }
}

/// `lab rollout` of every scenario through `front`; its output directory and its output.
fn every_scenario_through(front: &str) -> (PathBuf, Output) {
    let out = scratch_dir(&format!("lab-matrix-{front}"));
    let o = lab()
        .args(["rollout", "--scenario", "bare,lameduck,lameduck-native"])
        .args(["--front", front])
        .args(["--time-scale", "0.1", "--restarts", "2", "--rate", "80"])
        // A lag well above zero, so the bare scenario's losses through the service do not
        // depend on luck: 200..400 ms of wall time at this scale.
        .args(["--lag", "2s..4s", "--quiet", "--out"])
        .arg(&out)
        .output()
        .expect("running the lab");
    (out, o)
}

/// The lameduck scenarios lost nothing, bare through the service lost requests, every run's
/// files are complete and well-formed, and the table and the pictures are printed.
fn check_matrix(front: &str, out: &Path, o: &Output) {
    let summary = read_json(&out.join("summary.json"));
    let runs = summary["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in summary.json\n{}", show(o)));
    assert_eq!(runs.len(), 3, "3 scenarios through {front}\n{}", show(o));

    let mut problems = Vec::new();
    for r in runs {
        check_summary_row(r, out, &mut problems);
        check_run_files(&run_dir(out, r), r, &mut problems);
    }
    assert!(problems.is_empty(), "{}\n{}", problems.join("\n"), show(o));
    // Exit status follows the lameduck scenarios: they lost nothing, so 0.
    assert!(o.status.success(), "{}", show(o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("| bare | {front} |")),
        "the table is printed\n{stdout}"
    );
    assert!(
        stdout.contains("timeline.svg"),
        "the pictures are named\n{stdout}"
    );
}

/// Where the lab wrote a run's files: `<scenario>-<front>` under the output directory.
fn run_dir(out: &Path, row: &Value) -> PathBuf {
    let (scenario, front) = (row["scenario"].as_str(), row["front"].as_str());
    out.join(format!("{}-{}", scenario.unwrap(), front.unwrap()))
}

/// One run's row of summary.json: it completed with enough requests; a lameduck scenario lost
/// nothing the front did not lose by itself; the bare scenario through the service lost some.
fn check_summary_row(r: &Value, out: &Path, problems: &mut Vec<String>) {
    let (scenario, front) = (
        r["scenario"].as_str().unwrap(),
        r["front"].as_str().unwrap(),
    );
    let failed = r["failed"].as_u64().unwrap();
    let requests = r["requests"].as_u64().unwrap();
    if let Some(e) = r["error"].as_str() {
        problems.push(format!("{scenario} via {front}: run error: {e}"));
    }
    if requests < 200 {
        problems.push(format!("{scenario} via {front}: only {requests} requests"));
    }
    // Requests the front lost by itself before any pod was involved (an nginx reload closing
    // an idle client connection) are the front's, not lameduck's; the lab reports them apart.
    let front_caused = r["front_caused"].as_u64().unwrap();
    if scenario.starts_with("lameduck") && failed > front_caused {
        problems.push(format!(
            "{scenario} via {front} lost {failed} requests ({}, {front_caused} by the front itself); see {}",
            r["failed_by_kind"],
            run_dir(out, r).join("timeline.svg").display()
        ));
    }
    if scenario == "bare" && front == "service" && failed == 0 {
        problems.push(
            "bare via service lost nothing: the lab cannot see the problem it exists to show"
                .into(),
        );
    }
}

/// run.json holds every request and the lifecycle events; timeline.svg is well-formed XML with
/// a lane per pod and a mark per request.
fn check_run_files(dir: &Path, summary: &Value, problems: &mut Vec<String>) {
    let run = read_json(&dir.join("run.json"));
    let requests = run["requests"].as_array().expect("requests array");
    check_requests(dir, requests, summary, problems);
    let events = run["events"].as_array().expect("events array");
    check_events(dir, events, problems);
    let pods: BTreeSet<&str> = events
        .iter()
        .filter(|e| e["kind"] == "pod_created")
        .filter_map(|e| e["pod"].as_str())
        .collect();
    check_timeline(dir, &pods, requests.len(), problems);
}

/// As many requests as the summary counts, each with the fields a reader needs.
fn check_requests(dir: &Path, requests: &[Value], summary: &Value, problems: &mut Vec<String>) {
    if requests.len() as u64 != summary["requests"].as_u64().unwrap() {
        problems.push(format!(
            "{}: run.json has {} requests, the summary says {}",
            dir.display(),
            requests.len(),
            summary["requests"]
        ));
    }
    for r in requests {
        for field in ["id", "start", "end", "outcome", "method", "client"] {
            if r.get(field).is_none() {
                problems.push(format!(
                    "{}: a request has no `{field}`: {r}",
                    dir.display()
                ));
                return;
            }
        }
    }
}

/// Every step of a rollout shows up among the events.
fn check_events(dir: &Path, events: &[Value], problems: &mut Vec<String>) {
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for k in [
        "pod_created",
        "pod_ready",
        "terminating",
        "sigterm",
        "endpoint_removed",
        "rollout_complete",
        "container_exited",
    ] {
        if !kinds.contains(&k) {
            problems.push(format!("{}: no `{k}` event", dir.display()));
        }
    }
}

/// timeline.svg: an <svg>, a lane named for each pod, a mark per request.
fn check_timeline(dir: &Path, pods: &BTreeSet<&str>, requests: usize, problems: &mut Vec<String>) {
    let svg_text = std::fs::read_to_string(dir.join("timeline.svg")).expect("timeline.svg");
    let doc = match roxmltree::Document::parse(&svg_text) {
        Ok(d) => d,
        Err(e) => {
            problems.push(format!(
                "{}/timeline.svg is not well-formed XML: {e}",
                dir.display()
            ));
            return;
        }
    };
    if doc.root_element().tag_name().name() != "svg" {
        problems.push(format!("{}/timeline.svg: root is not <svg>", dir.display()));
    }
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    for p in pods {
        if !texts.contains(p) {
            problems.push(format!("{}/timeline.svg: no lane for {p}", dir.display()));
        }
    }
    let marks = doc
        .descendants()
        .filter(|n| n.has_tag_name("title") && n.text().is_some_and(|t| t.starts_with('#')))
        .count();
    if marks != requests {
        problems.push(format!(
            "{}/timeline.svg: {marks} request marks for {requests} requests",
            dir.display()
        ));
    }
}

#[test]
fn a_bad_flag_exits_2_naming_it() {
    let o = lab()
        .args(["rollout", "--rate", "fast"])
        .output()
        .expect("running the lab");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--rate"),
        "{}",
        show(&o)
    );
}

#[test]
fn an_unknown_scenario_is_named() {
    let o = lab()
        .args(["rollout", "--scenario", "nope", "--out"])
        .arg(scratch_dir("lab-unknown"))
        .output()
        .expect("running the lab");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown scenario `nope`") && err.contains("lameduck"),
        "{}",
        show(&o)
    );
}

#[test]
fn missing_binaries_say_how_to_build_them() {
    let empty = scratch_dir("lab-nobins");
    let o = lab()
        .args([
            "rollout",
            "--scenario",
            "bare",
            "--front",
            "service",
            "--bin-dir",
        ])
        .arg(&empty)
        .arg("--out")
        .arg(empty.join("out"))
        .output()
        .expect("running the lab");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cargo build --workspace"),
        "{}",
        show(&o)
    );
}

#[test]
fn a_manifest_file_runs_as_a_scenario() {
    // The seed's prestop-sleep Deployment behind a Service document naming the target port,
    // as `kubectl kustomize` would render it: the Deployment is picked out of the documents.
    let dir = scratch_dir("lab-manifest");
    let manifest = dir.join("rendered.yaml");
    let deployment = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/prestop-sleep.yaml"),
    )
    .unwrap();
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n    targetPort: http\n---\n{deployment}"),
    )
    .unwrap();
    let o = lab()
        .args(["rollout", "--manifest"])
        .arg(&manifest)
        .args([
            "--front",
            "service",
            "--restarts",
            "1",
            "--rate",
            "40",
            "--quiet",
            "--out",
        ])
        .arg(dir.join("out"))
        .output()
        .expect("running the lab");
    // Not a lameduck scenario: its losses do not fail the run.
    assert!(o.status.success(), "{}", show(&o));
    let summary = read_json(&dir.join("out/summary.json"));
    assert_eq!(summary["runs"][0]["scenario"], "rendered", "{}", show(&o));
    assert!(summary["runs"][0]["error"].is_null(), "{}", show(&o));
}
