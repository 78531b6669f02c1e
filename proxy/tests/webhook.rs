//! `lameduck webhook` over real TLS: certificates from `lameduck webhook cert`, real
//! AdmissionReview requests for pods of different shapes (made from the inject corpus' pod
//! templates), the returned JSONPatch applied with the json-patch crate, and the patched pod
//! checked by `lameduck check` and validated strictly against the Kubernetes schema. Also: the
//! opt-in rules, never blocking (allowed, warned, counted), certificate reload, and the drain
//! on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{addr_field, get, metric, wait_until, Proc, DEADLINE};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use serde_json::{json, Value};

struct Webhook {
    proc: Proc,
    https: SocketAddr,
    admin: SocketAddr,
    certs: PathBuf,
}

fn lameduck_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lameduck"))
}

/// `lameduck webhook cert` into `dir`, valid for 127.0.0.1.
fn make_certs(dir: &Path) {
    let out = std::process::Command::new(lameduck_bin())
        .args(["webhook", "cert", "--ip", "127.0.0.1", "--out-dir"])
        .arg(dir)
        .output()
        .expect("run lameduck webhook cert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lameduck-webhook-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Webhook {
    fn start(name: &str, extra: &[&str]) -> Webhook {
        let certs = temp_dir(name);
        make_certs(&certs);
        let mut args: Vec<String> = vec![
            "webhook".into(),
            "--listen=127.0.0.1:0".into(),
            "--admin-listen=127.0.0.1:0".into(),
            format!("--tls-cert={}", certs.join("tls.crt").display()),
            format!("--tls-key={}", certs.join("tls.key").display()),
            "--tls-reload-interval=100ms".into(),
            "--shutdown-delay=300ms".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn("lameduck webhook", lameduck_bin(), &args);
        let started = proc.wait_log("lameduck webhook started");
        Webhook {
            https: addr_field(&started, "listen"),
            admin: addr_field(&started, "admin"),
            proc,
            certs,
        }
    }

    fn ca(&self) -> Vec<u8> {
        std::fs::read(self.certs.join("ca.crt")).unwrap()
    }

    fn post(&self, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        post(self.https, &self.ca(), path, body).expect("POST over TLS")
    }

    /// Sends a review to `path` and returns its response part.
    fn review(&self, path: &str, review: &Value) -> Value {
        let (status, body) = self.post(path, &serde_json::to_vec(review).unwrap());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).expect("JSON answer");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
        assert_eq!(answer["response"]["allowed"], true, "it never blocks");
        answer["response"].clone()
    }

    fn metric(&self, series: &str) -> f64 {
        let text = get(self.admin, "/metrics").expect("GET /metrics").text();
        metric(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.certs);
    }
}

/// One HTTP/1.1 POST over TLS, trusting only `ca_pem`.
fn post(
    addr: SocketAddr,
    ca_pem: &[u8],
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(c?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::post(path)
            .header("host", "lameduck-webhook")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))?;
        let resp =
            tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await??;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, body))
    })
}

fn admission_review(uid: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

/// The pod a controller would create from a workload's template (as the API server passes it
/// to the webhook: generateName, no name yet).
fn pod_from_template(workload: &Value) -> Value {
    let template = &workload["spec"]["template"];
    let name = workload["metadata"]["name"].as_str().unwrap();
    let mut meta = template["metadata"].clone();
    if meta.is_null() {
        meta = json!({});
    }
    meta["generateName"] = json!(format!("{name}-"));
    meta["namespace"] = json!("shop");
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

fn fixture_objects(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inject")
        .join(name);
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Applies the response's JSONPatch to `pod` (the patch must apply cleanly).
fn patched(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .expect("base64 patch");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("a JSONPatch");
    let mut pod = pod.clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies");
    pod
}

fn check(pod: &Value) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(lameduck_bin())
        .args(["check", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(pod).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_of_every_shape_come_back_injected_checked_and_valid() {
    let wh = Webhook::start("shapes", &[]);
    let mut valid = Vec::new();
    for (fixture, workload) in [
        ("named-target.yaml", "web"),
        ("numeric-target.yaml", "api"),
        ("several-containers.yaml", "shop"),
        ("grpc.yaml", "greeter"),
        ("statefulset-headless.yaml", "search"),
        ("annotations.yaml", "tuned"),
        ("annotations.yaml", "native"),
        ("list.json", "hello"),
    ] {
        let objects = fixture_objects(fixture);
        let objects: Vec<Value> = objects
            .into_iter()
            .flat_map(|o| match o["items"].as_array() {
                Some(items) => items.clone(),
                None => vec![o],
            })
            .collect();
        let w = objects
            .iter()
            .find(|o| o["metadata"]["name"] == workload && o["spec"]["template"].is_object())
            .unwrap_or_else(|| panic!("{fixture}: no {workload}"));
        let pod = pod_from_template(w);
        let response = wh.review(
            "/mutate",
            &admission_review(&format!("uid-{workload}"), &pod),
        );
        let injected = patched(&pod, &response);
        let report = check(&injected);
        // The strategy is not a pod's: only the pod-level rules apply, and they all pass.
        assert!(
            report.contains("0 error(s)"),
            "{fixture} {workload}:\n{report}\n{}",
            serde_json::to_string_pretty(&injected).unwrap()
        );
        // The webhook sees no Service: it says how Services must target the pod.
        let warnings = response["warnings"].as_array().cloned().unwrap_or_default();
        if injected["spec"]["containers"][0]["ports"][0]["name"].is_null() {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.as_str().unwrap().contains("still reaches the app")),
                "{workload}: {warnings:?}"
            );
        }
        assert!(warnings.iter().all(|w| w.as_str().unwrap().len() <= 256));
        valid.push((workload, injected));
    }
    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"injected\"}"),
        8.0
    );

    // Strictly valid Pods (native sidecars from 1.29 on).
    let dir = temp_dir("valid");
    let (mut classic, mut native) = (String::new(), String::new());
    for (_, pod) in &valid {
        let doc = format!("---\n{}\n", serde_json::to_string_pretty(pod).unwrap());
        if pod["spec"]["initContainers"]
            .as_array()
            .is_some_and(|ics| ics.iter().any(|c| c["restartPolicy"] == "Always"))
        {
            native.push_str(&doc);
        } else {
            classic.push_str(&doc);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Classic pods on 1.25..1.28, all of them from 1.29 on (one validator run per version).
    assert!(!native.is_empty() && !classic.is_empty());
    let all = classic.clone() + &native;
    for (name, text, range) in [
        ("classic", classic, ["--newest", "28"]),
        ("all", all, ["--oldest", "29"]),
    ] {
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/validate-k8s.sh"))
            .args(range)
            .arg(&file)
            .current_dir(root)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("valid (strict)"),
            "{name}:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn simple_pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "shop", "labels": {"app": "web"}, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}]}]}
    })
}

#[test]
fn namespace_and_pod_opt_in_rules() {
    let wh = Webhook::start("opt-in", &[]);
    // An opted-in namespace: injected, unless the pod opts out.
    let r = wh.review("/mutate", &admission_review("a", &simple_pod(json!({}))));
    assert_eq!(r["patchType"], "JSONPatch");
    let r = wh.review(
        "/mutate",
        &admission_review("b", &simple_pod(json!({"lameduck.io/inject": "disabled"}))),
    );
    assert!(r.get("patch").is_none(), "{r}");
    // Any other namespace: only pods that opt in.
    let r = wh.review(
        "/mutate/opt-in",
        &admission_review("c", &simple_pod(json!({}))),
    );
    assert!(r.get("patch").is_none(), "{r}");
    let pod = simple_pod(json!({"lameduck.io/inject": "enabled", "lameduck.io/native": "true"}));
    let r = wh.review("/mutate/opt-in", &admission_review("d", &pod));
    let injected = patched(&pod, &r);
    assert_eq!(injected["spec"]["initContainers"][0]["name"], "lameduck");
    // A native sidecar leaves the app its port name: Services that use it still reach the app.
    assert!(
        r["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("the name \"http\", which the app keeps")),
        "{r}"
    );
    // A reinvocation (reinvocationPolicy: IfNeeded) sees its own work and changes nothing.
    let again = wh.review("/mutate", &admission_review("e", &injected));
    assert!(
        again.get("patch").is_none() && again.get("warnings").is_none(),
        "{again}"
    );

    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"injected\"}"),
        2.0
    );
    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"not_opted_in\"}"),
        2.0
    );
    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"already_injected\"}"),
        1.0
    );
}

#[test]
fn what_it_cannot_handle_is_allowed_unchanged_with_a_warning_and_counted() {
    let wh = Webhook::start("never-blocks", &[]);
    let redis = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "redis-", "namespace": "shop"},
        "spec": {"containers": [{"name": "redis", "image": "redis:7", "ports": [{"name": "redis", "containerPort": 6379}]}]}
    });
    let r = wh.review("/mutate", &admission_review("r", &redis));
    assert!(r.get("patch").is_none());
    let warning = r["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("lameduck: not injected:") && warning.contains("redis"),
        "{warning}"
    );

    let broken =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"containers": "many"}});
    let r = wh.review("/mutate", &admission_review("s", &broken));
    assert!(r.get("patch").is_none());
    assert!(
        r["warnings"][0].as_str().unwrap().contains("pod spec"),
        "{r}"
    );

    let mut update = admission_review("u", &simple_pod(json!({})));
    update["request"]["operation"] = json!("UPDATE");
    assert!(wh.review("/mutate", &update).get("patch").is_none());

    // Not a review at all: 400 (it has no uid to answer), and the webhook keeps serving.
    let (status, body) = wh.post("/mutate", b"{\"kind\": \"nonsense\"");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = wh.post("/elsewhere", b"{}");
    assert_eq!(status, 404);
    assert_eq!(
        wh.review(
            "/mutate",
            &admission_review("after", &simple_pod(json!({})))
        )["patchType"],
        "JSONPatch"
    );

    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"unchanged\"}"),
        1.0
    );
    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"error\"}"),
        1.0
    );
    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"skipped\"}"),
        1.0
    );
    assert_eq!(
        wh.metric("lameduck_webhook_reviews_total{outcome=\"malformed\"}"),
        1.0
    );
}

#[test]
fn a_new_certificate_is_served_once_its_files_change_and_a_bad_one_is_not() {
    let wh = Webhook::start("reload", &[]);
    let old_ca = wh.ca();
    let body = serde_json::to_vec(&admission_review("x", &simple_pod(json!({})))).unwrap();
    assert!(post(wh.https, &old_ca, "/mutate", &body).is_ok());

    // A new CA and certificate in the same files (what a Secret update does).
    let fresh = temp_dir("reload-fresh");
    make_certs(&fresh);
    let new_ca = std::fs::read(fresh.join("ca.crt")).unwrap();
    for f in ["tls.key", "tls.crt"] {
        std::fs::copy(fresh.join(f), wh.certs.join(f)).unwrap();
    }
    wait_until("the new certificate to be served", DEADLINE, || {
        post(wh.https, &new_ca, "/mutate", &body).is_ok()
    });
    assert!(
        post(wh.https, &old_ca, "/mutate", &body).is_err(),
        "the old certificate is gone"
    );
    assert_eq!(
        wh.metric("lameduck_webhook_tls_reloads_total{result=\"ok\"}"),
        1.0
    );

    // A broken rotation is counted and the last good certificate keeps serving.
    std::fs::write(wh.certs.join("tls.crt"), "not a certificate\n").unwrap();
    wait_until("the bad files to be seen", DEADLINE, || {
        wh.metric("lameduck_webhook_tls_reloads_total{result=\"error\"}") == 1.0
    });
    assert!(post(wh.https, &new_ca, "/mutate", &body).is_ok());
    let _ = std::fs::remove_dir_all(&fresh);
}

#[test]
fn sigterm_fails_ready_keeps_answering_for_the_delay_then_exits_0() {
    let mut wh = Webhook::start("sigterm", &["--shutdown-delay=1s"]);
    assert_eq!(get(wh.admin, "/ready").unwrap().status, 200);
    assert_eq!(get(wh.admin, "/live").unwrap().status, 200);
    wh.proc.sigterm();
    wait_until("/ready to fail", DEADLINE, || {
        get(wh.admin, "/ready").is_ok_and(|r| r.status == 503)
    });
    // Still serving reviews while the endpoints are removed.
    assert_eq!(
        wh.review("/mutate", &admission_review("late", &simple_pod(json!({}))))["patchType"],
        "JSONPatch"
    );
    let status = wh.proc.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", wh.proc.log_text());
    assert!(
        wh.proc.find_log("drained, exiting").is_some(),
        "{}",
        wh.proc.log_text()
    );
}

#[test]
fn without_a_certificate_it_refuses_to_start() {
    let out = std::process::Command::new(lameduck_bin())
        .args(["webhook", "--listen=127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
    let out = std::process::Command::new(lameduck_bin())
        .args([
            "webhook",
            "--tls-cert=/no/such.crt",
            "--tls-key=/no/such.key",
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /no/such.crt"));
}

/// The shipped manifests and the binary agree: the Deployment's args start the webhook (only
/// the addresses and certificate paths swapped for the test's), and every path the
/// MutatingWebhookConfiguration calls answers reviews.
#[test]
fn the_shipped_manifests_run_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(root.join("k8s/webhook/overlays/cert-manager"))
        .output()
        .expect("kubectl (needed to render k8s/)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the webhook Deployment");
    let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let certs = temp_dir("shipped");
    make_certs(&certs);
    let args: Vec<String> = args
        .into_iter()
        .map(|a| match a.split_once('=') {
            Some(("--listen" | "--admin-listen", _)) => {
                format!("{}=127.0.0.1:0", a.split('=').next().unwrap())
            }
            Some(("--tls-cert", _)) => format!("--tls-cert={}", certs.join("tls.crt").display()),
            Some(("--tls-key", _)) => format!("--tls-key={}", certs.join("tls.key").display()),
            _ => a,
        })
        .collect();
    assert_eq!(args[0], "webhook");
    let proc = Proc::spawn("shipped webhook", lameduck_bin(), &args);
    let started = proc.wait_log("lameduck webhook started");
    let https = addr_field(&started, "listen");
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    let config = objects
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    let webhooks = config["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 2);
    for w in webhooks {
        assert_eq!(w["failurePolicy"], "Ignore");
        assert_eq!(w["reinvocationPolicy"], "IfNeeded");
        let path = w["clientConfig"]["service"]["path"].as_str().unwrap();
        let pod = simple_pod(json!({"lameduck.io/inject": "enabled"}));
        let body = serde_json::to_vec(&admission_review("shipped", &pod)).unwrap();
        let (status, answer) = post(https, &ca, path, &body).unwrap();
        assert_eq!(status, 200, "{path}");
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["response"]["patchType"], "JSONPatch", "{path}");
    }
    let _ = std::fs::remove_dir_all(&certs);
}
