//! The lab's gRPC and WebSocket loads, end to end: the real lab binary runs rolling restarts of
//! the bare and the lameduck scenarios under each load. With lameduck no call and no message is
//! lost; the bare app loses some (the lag is well above zero, so that does not depend on luck),
//! and the records say what was sent (the method) and who answered (the pod).

mod common;

use std::path::PathBuf;

use common::{lab_with_pods as lab, read_json, scratch_dir, show};

/// Runs bare and lameduck under `load` through `fronts`, one rollout each, and checks the
/// verdict: lameduck lost nothing, bare lost something, every ok record was `method` answered
/// by a pod. Returns the output directory.
fn rollout(load: &str, fronts: &str, method: &str) -> PathBuf {
    let out = scratch_dir(&format!("lab-{load}"));
    let o = lab()
        .args(["rollout", "--load", load, "--scenario", "bare,lameduck"])
        .args(["--front", fronts, "--time-scale", "0.1", "--restarts", "1"])
        // 200..400 ms of wall time at this scale: the bare app's window of loss is never empty.
        .args(["--lag", "2s..4s", "--rate", "80", "--quiet", "--out"])
        .arg(&out)
        .output()
        .expect("running the lab");
    let summary = read_json(&out.join("summary.json"));
    assert_eq!(
        summary["settings"]["kind"],
        load,
        "summary.json names the load it ran\n{}",
        show(&o)
    );
    let runs = summary["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in summary.json\n{}", show(&o)));
    let n_fronts = fronts.split(',').count();
    assert_eq!(runs.len(), 2 * n_fronts, "{}", show(&o));
    for r in runs {
        let (scenario, front) = (
            r["scenario"].as_str().unwrap(),
            r["front"].as_str().unwrap(),
        );
        let failed = r["failed"].as_u64().unwrap();
        let requests = r["requests"].as_u64().unwrap();
        assert!(
            r["error"].is_null(),
            "{scenario}/{front}: {}\n{}",
            r["error"],
            show(&o)
        );
        assert!(requests > 100, "{scenario}/{front}: only {requests} sent");
        match scenario {
            "lameduck" => assert_eq!(
                failed, 0,
                "lameduck lost {failed} of {requests} through the {front} ({load})\n{}",
                show(&o)
            ),
            _ => assert!(
                failed > 0,
                "bare lost nothing through the {front} ({load}): the lab saw no loss to prevent\n{}",
                show(&o)
            ),
        }
        let run = read_json(&out.join(format!("{scenario}-{front}/run.json")));
        assert_eq!(
            run["settings"]["kind"], load,
            "run.json names the load it ran"
        );
        assert!(
            run["settings"]["connections"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "a long-lived load's run.json says over how many connections"
        );
        for req in run["requests"].as_array().unwrap() {
            assert_eq!(req["method"], method, "{req}");
            if req["outcome"] == "ok" {
                assert!(
                    req["pod"].as_str().is_some_and(|p| p.starts_with("pod-")),
                    "an ok record names the pod that answered: {req}"
                );
            }
        }
    }
    assert!(
        o.status.success(),
        "the lab exits 0 when lameduck lost nothing\n{}",
        show(&o)
    );
    out
}

#[test]
fn grpc_unary_calls_through_the_service_and_a_balancing_client_lose_nothing_with_lameduck() {
    rollout("grpc-unary", "service,headless", "Hello");
}

#[test]
fn grpc_server_streams_through_the_service_lose_nothing_with_lameduck() {
    rollout("grpc-stream", "service", "Count");
}

#[test]
fn websocket_messages_lose_nothing_with_lameduck_which_closes_with_1001() {
    let out = rollout("websocket", "service", "message");
    // How each pod's sockets ended, from slowapp's own log: lameduck closed them with 1001
    // (and the clients moved on); the bare app left them to the process exit.
    let logs = |run: &str| -> String {
        let dir = out.join(run).join("logs");
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect()
    };
    assert!(
        logs("lameduck-service").contains(r#"end="close 1001"#),
        "no WebSocket of a lameduck pod was closed with 1001"
    );
    assert!(
        logs("bare-service").contains("end with the process, without a Close frame"),
        "the bare app's WebSockets should end with its process"
    );
}
