//! Everything a run observes, on one clock: lifecycle events and every request.
//!
//! One recorder per run, shared by every task. Times are seconds of wall-clock time since the
//! run started, so events from the kubelet, the fronts and the load line up on one axis in the
//! JSON and in the picture.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Deserializer, Serialize};

/// What happened, to whom.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    PodCreated {
        ip: String,
        revision: u32,
    },
    ContainerStarted {
        container: String,
        binary: String,
        pid: u32,
    },
    ContainerExited {
        container: String,
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// A container ended although nobody asked it to (not terminating, not torn down).
    UnexpectedExit {
        container: String,
        code: Option<i32>,
        signal: Option<i32>,
    },
    PodReady,
    PodUnready,
    /// The pod got its deletionTimestamp: endpoints drop it, preStop hooks start.
    Terminating,
    PreStopStarted {
        container: String,
        action: String,
    },
    PreStopDone {
        container: String,
        outcome: String,
    },
    Sigterm {
        container: String,
    },
    Sigkill {
        container: String,
    },
    /// lameduck's own phase, read from its admin `/status`.
    LameduckPhase {
        phase: String,
    },
    /// The endpoint set computed from pod states (what the EndpointSlice controller publishes).
    EndpointsPublished {
        pods: Vec<String>,
    },
    /// A front applied an endpoint set (after its propagation lag).
    EndpointsApplied {
        front: String,
        pods: Vec<String>,
        lag_ms: f64,
    },
    EndpointRemoved {
        front: String,
    },
    RolloutStarted {
        rollout: u32,
    },
    RolloutComplete {
        rollout: u32,
    },
    LoadStarted,
    LoadStopped,
    Note {
        text: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub t: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx response, read to the end.
    Ok,
    /// The TCP connect was refused.
    Refused,
    /// The connection was reset, or closed before a complete response.
    Reset,
    /// A 5xx response.
    Status5xx,
    /// No complete response before the deadline.
    Timeout,
    /// Anything else (a 4xx, a malformed response).
    Other,
}

impl Outcome {
    pub const FAILURES: [Outcome; 5] = [
        Outcome::Refused,
        Outcome::Reset,
        Outcome::Status5xx,
        Outcome::Timeout,
        Outcome::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Status5xx => "5xx",
            Outcome::Timeout => "timeout",
            Outcome::Other => "other",
        }
    }
}

/// One request of the load, as the client saw it. Deserialize reads back what `lab loadgen`
/// wrote in a pod (the e2e).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: u64,
    pub start: f64,
    pub end: f64,
    /// `keepalive` (from a client connection pool) or `new` (a connection per request); for
    /// the other loads `channel` (a gRPC channel to one address), `balanced` (a gRPC channel
    /// balancing over the endpoints) or `websocket`.
    #[serde(deserialize_with = "known_str")]
    pub client: &'static str,
    /// Sent on a connection that had already carried a request.
    pub reused: bool,
    /// The first attempt failed on a reused keep-alive connection before any response byte and
    /// the request (idempotent) was sent again on a new connection, as HTTP clients do.
    pub retried: bool,
    /// `GET` / `POST`; `Hello` / `Count` (gRPC); `message` (WebSocket).
    #[serde(deserialize_with = "known_str")]
    pub method: &'static str,
    pub delay_ms: u64,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `X-Served-By`: the pod that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The client's TCP port (0 when the connect failed).
    pub local_port: u16,
    /// The pod the service front routed the connection to, when the response did not name
    /// one (a reset says nothing): filled in after the run from the front's own routing log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routed_to: Option<String>,
    /// The failure happened between the client and the front: the request never reached the
    /// front's request handling, so no pod could have caused or prevented it (an nginx worker
    /// retiring after a reload closed the client's idle keep-alive connection as the request
    /// was sent). Only set when the front's own log proves it.
    #[serde(default)]
    pub front_caused: bool,
}

/// The load's client kinds and methods are a fixed set: read back as the same static strings.
fn known_str<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    [
        "keepalive",
        "new",
        "GET",
        "POST",
        "channel",
        "balanced",
        "websocket",
        "Hello",
        "Count",
        "message",
    ]
    .into_iter()
    .find(|k| *k == s)
    .ok_or_else(|| serde::de::Error::custom(format!("unknown client or method `{s}`")))
}

/// The run's shared log.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    requests: Mutex<Vec<RequestRecord>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        })
    }

    /// Seconds since the run started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub fn event(&self, pod: Option<&str>, kind: EventKind) {
        let e = Event {
            t: self.now(),
            pod: pod.map(str::to_string),
            kind,
        };
        self.events.lock().expect("recorder lock").push(e);
    }

    /// An event observed elsewhere (a real cluster's pod status), at `t` on this run's clock.
    pub fn event_at(&self, t: f64, pod: Option<&str>, kind: EventKind) {
        let e = Event {
            t,
            pod: pod.map(str::to_string),
            kind,
        };
        self.events.lock().expect("recorder lock").push(e);
    }

    pub fn request(&self, r: RequestRecord) {
        self.requests.lock().expect("recorder lock").push(r);
    }

    pub fn events(&self) -> Vec<Event> {
        let mut v = self.events.lock().expect("recorder lock").clone();
        v.sort_by(|a, b| a.t.total_cmp(&b.t));
        v
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        let mut v = self.requests.lock().expect("recorder lock").clone();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Fills `routed_to` of the requests no pod answered.
    pub fn attribute(&self, route: impl Fn(u16) -> Option<String>) {
        for r in self.requests.lock().expect("recorder lock").iter_mut() {
            if r.pod.is_none() && r.local_port != 0 {
                r.routed_to = route(r.local_port);
            }
        }
    }

    /// Marks the failed requests that the front never handled (`handled(id)` is false).
    pub fn blame_front(&self, handled: impl Fn(u64) -> bool) {
        for r in self.requests.lock().expect("recorder lock").iter_mut() {
            // Only HTTP requests carry their id to the front (in the path); a gRPC call or a
            // WebSocket message is never in its access log.
            let http = matches!(r.client, "keepalive" | "new");
            if http && r.outcome != Outcome::Ok && r.status.is_none() && !handled(r.id) {
                r.front_caused = true;
            }
        }
    }

    pub fn request_count(&self) -> (usize, usize) {
        let v = self.requests.lock().expect("recorder lock");
        let failed = v.iter().filter(|r| r.outcome != Outcome::Ok).count();
        (v.len(), failed)
    }
}
