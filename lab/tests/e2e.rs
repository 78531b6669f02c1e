//! The lab's e2e commands (scripts/e2e.sh): `lab loadgen` against a real slowapp on loopback,
//! stopped by its stdin closing as `kubectl attach` closes it; `lab e2e-report` on a recorded
//! run (tests/fixtures/e2e-run: a load generator's output with one refused request, a pod
//! watch stream, EndpointSlices, Events and rollout times, shaped as kubectl prints them).

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{beside_lab, lab, scratch_dir, show};
use serde_json::Value;
use testkit::net::{free_addr_on, own_loopback_ip};
use testkit::process::Proc;
use testkit::wait::wait_until;

/// A copy of the recorded run (the report writes run.json and timeline.svg beside its input).
fn recorded_run(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e-run");
    let dst = scratch_dir(&format!("e2e-{name}")).join("run");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn report(run: &str, out: &Path) -> Output {
    lab()
        .args(["e2e-report", "--run", run, "--out"])
        .arg(out)
        .output()
        .expect("run lab e2e-report")
}

#[test]
fn loadgen_records_every_request_and_stops_when_stdin_closes() {
    let addr = free_addr_on(own_loopback_ip());
    let _app = slowapp(addr, "e2e-test");
    // The load runs for as long as stdin stays open: this is its measurement window.
    let doc = loadgen_until_stdin_closes(addr, Duration::from_millis(1500));

    assert_eq!(doc["stopped_by"], "stdin closed");
    assert_eq!(doc["target"], addr.to_string());
    let reqs = all_answered_by(&doc, "e2e-test", "http");
    for (field, value) in [
        ("client", "new"),
        ("client", "keepalive"),
        ("method", "GET"),
        ("method", "POST"),
    ] {
        assert!(
            reqs.iter().any(|r| r[field] == value),
            "no request with {field} {value}"
        );
    }
}

#[test]
fn loadgen_sends_grpc_and_websocket_through_lameduck() {
    // A pod's wiring on loopback: slowapp (gRPC over h2c and the /ws echo on its one port)
    // behind lameduck, whose default `--upstream-protocol auto` carries both.
    let ip = own_loopback_ip();
    let app = free_addr_on(ip);
    let _app = slowapp(app, "e2e-protocols");
    let data = free_addr_on(ip);
    let admin = free_addr_on(ip);
    let _lameduck = lameduck(data, admin, app);
    for (kind, method, client) in [
        ("grpc-unary", "Hello", "channel"),
        ("grpc-stream", "Count", "channel"),
        ("websocket", "message", "websocket"),
    ] {
        let doc = loadgen_with(
            data,
            Duration::from_millis(1500),
            &["--load", kind, "--connections", "2"],
        );
        assert_eq!(doc["stopped_by"], "stdin closed", "{kind}");
        assert_eq!(doc["kind"], kind);
        assert_eq!(doc["connections"], 2, "{kind}");
        let reqs = all_answered_by(&doc, "e2e-protocols", kind);
        for r in reqs {
            assert_eq!(r["method"], method, "{kind}: {r}");
            assert_eq!(r["client"], client, "{kind}: {r}");
        }
        // Two connections, and every later unit on one of them.
        assert!(
            reqs.iter().filter(|r| r["reused"] == true).count() >= reqs.len() - 2,
            "{kind}: the load did not keep its connections"
        );
    }
}

/// The records of a 1.5 s load at 40/s: at least 30, each answered (`ok`) by `pod`.
fn all_answered_by<'a>(doc: &'a Value, pod: &str, kind: &str) -> &'a [Value] {
    let reqs = doc["requests"].as_array().unwrap();
    assert!(
        reqs.len() >= 30,
        "{kind}: {} units at 40/s over 1.5 s",
        reqs.len()
    );
    for r in reqs {
        assert_eq!(r["outcome"], "ok", "{kind}: {r}");
        assert_eq!(r["pod"], pod, "{kind}: {r}");
    }
    reqs
}

/// lameduck on `data` (admin on `admin`) in front of `upstream`, once its data port accepts and
/// it reports ready (killed when dropped).
fn lameduck(data: SocketAddr, admin: SocketAddr, upstream: SocketAddr) -> Proc {
    let args = [
        format!("--listen={data}"),
        format!("--admin-listen={admin}"),
        format!("--upstream={upstream}"),
    ];
    let proc = Proc::spawn("lameduck", beside_lab("lameduck"), args);
    wait_until(
        &format!("lameduck ready on {admin}"),
        Duration::from_secs(10),
        || testkit::http::get(admin, "/ready").is_ok_and(|r| r.status == 200),
    );
    proc
}

/// slowapp on `addr`, answering as `name`, once it listens (killed when dropped).
fn slowapp(addr: SocketAddr, name: &str) -> Proc {
    let args = [
        "--listen",
        &addr.to_string(),
        "--startup-delay",
        "0s",
        "--name",
        name,
    ];
    let app = Proc::spawn("slowapp", beside_lab("slowapp"), args);
    wait_until(
        &format!("slowapp listening on {addr}"),
        Duration::from_secs(10),
        || TcpStream::connect(addr).is_ok(),
    );
    app
}

/// `lab loadgen` at 40/s against `addr` for `window`, then its stdin closed as `kubectl attach`
/// closes it: it must stop at once (not at its 60 s `--duration`) and print one JSON line.
fn loadgen_until_stdin_closes(addr: SocketAddr, window: Duration) -> Value {
    loadgen_with(addr, window, &[])
}

/// [`loadgen_until_stdin_closes`] with more flags (`--load KIND`, ...).
fn loadgen_with(addr: SocketAddr, window: Duration, extra: &[&str]) -> Value {
    let mut gen = lab()
        .args(["loadgen", "--target", &addr.to_string(), "--rate", "40"])
        .args(["--long-delay", "300ms", "--duration", "60s"])
        .args(extra)
        .arg("--stop-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lab loadgen");
    std::thread::sleep(window);
    drop(gen.stdin.take());
    let closed = Instant::now();
    let mut stdout = String::new();
    gen.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = gen.wait().unwrap();
    assert!(status.success(), "loadgen failed: {status:?}");
    assert!(
        closed.elapsed() < Duration::from_secs(10),
        "loadgen did not stop when stdin closed"
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line on stdout")
}

#[test]
fn a_lameduck_run_that_lost_a_request_fails_with_the_lab_table() {
    let run = recorded_run("lossless");
    let out = report(
        &format!("lameduck:lossless:{}", run.display()),
        &run.join(".."),
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("| lameduck | kube-proxy | 4 | 3 | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 0 |"),
        "{}",
        show(&out)
    );
    assert!(stdout.trim_end().ends_with("| 22.7 |"), "{}", show(&out));
    assert!(
        stderr.contains("FAIL: lameduck lost 1 of 4 requests: lameduck must lose none"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_miswired_run_must_lose_requests() {
    let run = recorded_run("lossy");
    let out = report(&format!("bare:lossy:{}", run.display()), &run.join(".."));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // The same records without the loss: the test would have no teeth.
    let text = std::fs::read_to_string(run.join("loadgen.json")).unwrap();
    let healed = text.replace(
        r#""outcome":"refused","error":"connection refused""#,
        r#""outcome":"ok","status":200,"pod":"web-2""#,
    );
    assert_ne!(text, healed);
    std::fs::write(run.join("loadgen.json"), healed).unwrap();
    let out = report(&format!("bare:lossy:{}", run.display()), &run.join(".."));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("FAIL: bare lost nothing, but it is wired to lose requests"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_cluster_events_land_on_the_runs_clock() {
    let run = recorded_run("events");
    let out = report(
        &format!("prestop-sleep:any:{}", run.display()),
        &run.join(".."),
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let events = doc["events"].as_array().unwrap();
    let at = |kind: &str, pod: &str| -> Vec<f64> {
        events
            .iter()
            .filter(|e| e["kind"] == kind && e["pod"] == pod)
            .map(|e| e["t"].as_f64().unwrap())
            .collect()
    };
    let close = |got: Vec<f64>, want: f64| got.len() == 1 && (got[0] - want).abs() < 1e-6;
    // t0 = the load's start, 22:43:20; the deletion was the deadline less the grace period.
    assert!(close(at("pod_created", "web-1"), -10.0), "{events:?}");
    assert!(close(at("pod_ready", "web-1"), -8.0), "{events:?}");
    assert!(close(at("terminating", "web-1"), 10.0), "{events:?}");
    assert!(close(at("pre_stop_done", "web-1"), 10.0), "{events:?}");
    assert!(close(at("endpoint_removed", "web-1"), 11.0), "{events:?}");
    assert!(close(at("container_exited", "web-1"), 12.0), "{events:?}");
    assert!(close(at("pod_unready", "web-1"), 12.0), "{events:?}");
    assert!(close(at("pod_ready", "web-2"), 11.0), "{events:?}");
    assert!(
        events.iter().all(|e| e["pod"] != "loadgen"),
        "the load generator is not one of the Deployment's pods: {events:?}"
    );
    let starts: Vec<f64> = events
        .iter()
        .filter(|e| e["kind"] == "rollout_started")
        .map(|e| e["t"].as_f64().unwrap())
        .collect();
    assert!(close(starts, 8.5), "{events:?}");

    let svg = std::fs::read_to_string(run.join("timeline.svg")).unwrap();
    roxmltree::Document::parse(&svg).expect("timeline.svg is well-formed XML");
    for needle in [
        "web-1",
        "web-2",
        "preStop of app returned: failed",
        "rollout 1",
    ] {
        assert!(svg.contains(needle), "timeline.svg lacks {needle}");
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("../summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["runs"][0]["failed_by_kind"]["refused"], 1);
}

#[test]
fn a_bad_run_spec_exits_2_naming_the_flag() {
    let out = lab()
        .args(["e2e-report", "--run", "bare:maybe:/tmp", "--out", "/tmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--run") && stderr.contains("`maybe` is not lossless, lossy or any"),
        "{}",
        show(&out)
    );
}
