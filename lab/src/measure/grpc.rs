//! The gRPC load: open loop, at the fixed rate, every call recorded like an HTTP request.
//!
//! Real gRPC clients hold a few long-lived HTTP/2 channels and multiplex every call on them;
//! they move only when told (a GOAWAY, or the connection ending) and then reconnect. Two client
//! shapes, by [`Target`]:
//!
//! - **an address** (the `service` front, kube-proxy): `--connections` tonic channels to it.
//!   Each channel's connection lands on one pod and stays there; after a GOAWAY or a closed
//!   connection the channel reconnects through the Service, so to whichever pod it now picks.
//!   Call *k* goes on channel *k mod n*.
//! - **the endpoints** (the `headless` front): one tonic channel balancing over every endpoint
//!   ([`Channel::balance_channel`], one connection per pod), fed the endpoint list as a client's
//!   resolver over a headless Service learns it: each change after the propagation lag.
//!
//! What counts: a call is ok when it ends with status OK and, for a `Count` stream, with all its
//! replies. Any other status, a stream cut before its last reply, or no end within
//! `--request-timeout` is lost, with one exception that grpc-go and C-core make ("transparent
//! retry"): a call no server processed is sent again once. tonic does not do it itself, so the
//! lab does, for exactly the two cases where the HTTP/2 layer proves the call was not processed:
//! the connection closed before the call was sent (hyper's canceled request, which tonic reports
//! as `CANCELLED` "operation was canceled"), and the call was refused because the server had
//! sent GOAWAY (h2 refuses new streams on a connection that got a GOAWAY, and fails those above
//! its last stream id; tonic reports `INTERNAL` "h2 protocol error"), or REFUSED_STREAM. Such a
//! call is sent again (up to 5 attempts in all: the balancer may pick the same closing
//! connection once more), is recorded as `retried`, and counts by its last outcome.
//! `UNAVAILABLE` (a refused or reset connection, lameduck's "drain timeout reached" trailers) is
//! never retried: a client needs a retry policy for that, and the lab measures what reaches the
//! application.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use slowapp::proto::{CountRequest, HelloRequest, SlowClient};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::measure::load::LoadConfig;
use crate::measure::record::{Outcome, Recorder, RequestRecord};
use crate::measure::{LoadKind, ProtocolLoad, Target};

pub async fn generate(
    target: Target,
    proto: ProtocolLoad,
    cfg: LoadConfig,
    rec: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) {
    let (channels, client, resolver) = match target {
        Target::Addr(addr) => {
            let channels: Vec<Channel> = (0..proto.connections.max(1))
                .map(|_| endpoint(addr, &cfg).connect_lazy())
                .collect();
            (channels, "channel", None)
        }
        Target::Endpoints(endpoints) => {
            let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
            let resolver = tokio::spawn(resolve(endpoints, changes, cfg.clone()));
            (vec![channel], "balanced", Some(resolver))
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let ids = AtomicU64::new(0);
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cfg.rate);
    let mut inflight = JoinSet::new();
    let mut k: u32 = 0;
    loop {
        tokio::time::sleep_until(start + interval * k).await;
        if *stop.borrow() {
            break;
        }
        let channel = channels[k as usize % channels.len()].clone();
        let call = Call {
            id: ids.fetch_add(1, Ordering::Relaxed),
            kind: proto.kind,
            client,
            reused: k as usize >= channels.len(),
            delay: if rng.gen_bool(cfg.long_share) {
                cfg.long_delay
            } else {
                cfg.short_delay
            },
            messages: proto.stream_messages.max(1),
        };
        k += 1;
        inflight.spawn(one(call, channel, cfg.timeout, rec.clone()));
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    if let Some(r) = resolver {
        r.abort();
    }
}

fn endpoint(addr: SocketAddr, cfg: &LoadConfig) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a socket address is a valid URI")
        .connect_timeout(cfg.timeout)
        .tcp_nodelay(true)
}

/// The client's resolver: each endpoint set the (lagging) view publishes becomes inserts and
/// removals on the balanced channel.
async fn resolve(
    mut endpoints: watch::Receiver<Vec<SocketAddr>>,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
    cfg: LoadConfig,
) {
    let mut known: HashSet<SocketAddr> = HashSet::new();
    loop {
        let now: HashSet<SocketAddr> = endpoints.borrow_and_update().iter().copied().collect();
        for gone in known.difference(&now) {
            if changes.send(Change::Remove(*gone)).await.is_err() {
                return;
            }
        }
        for new in now.difference(&known) {
            if changes
                .send(Change::Insert(*new, endpoint(*new, &cfg)))
                .await
                .is_err()
            {
                return;
            }
        }
        known = now;
        if endpoints.changed().await.is_err() {
            return;
        }
    }
}

/// At most this many attempts of a call that no server processed (gRFC A6 lets a client retry
/// a call that never left it without limit; a bound keeps a broken channel from spinning).
const TRANSPARENT_ATTEMPTS: u32 = 5;

struct Call {
    id: u64,
    kind: LoadKind,
    client: &'static str,
    reused: bool,
    delay: Duration,
    messages: u32,
}

/// What one attempt ended with: the pod that answered, or the status and whether any reply had
/// come (a stream cut after its first reply cannot be sent again unseen).
type Attempt = Result<String, (Status, u32)>;

async fn one(call: Call, channel: Channel, timeout: Duration, rec: Arc<Recorder>) {
    let start = rec.now();
    let mut client = SlowClient::new(channel);
    let mut retried = false;
    let run = async {
        let mut attempts = 1;
        loop {
            match attempt(&mut client, &call).await {
                // Not processed by any server (see the module doc): sent again.
                Err((s, 0)) if never_processed(&s) && attempts < TRANSPARENT_ATTEMPTS => {
                    retried = true;
                    attempts += 1;
                }
                other => break other,
            }
        }
    };
    let result = tokio::time::timeout(timeout, run).await;
    let mut record = RequestRecord {
        id: call.id,
        start,
        end: rec.now(),
        client: call.client,
        reused: call.reused,
        retried,
        method: match call.kind {
            LoadKind::GrpcStream => "Count",
            _ => "Hello",
        },
        delay_ms: call.delay.as_millis() as u64,
        outcome: Outcome::Ok,
        status: None,
        pod: None,
        error: None,
        local_port: 0,
        routed_to: None,
        front_caused: false,
    };
    match result {
        Ok(Ok(pod)) => {
            record.status = Some(Code::Ok as u16);
            record.pod = Some(pod);
        }
        Ok(Err((status, got))) => {
            record.outcome = outcome(&status);
            record.status = Some(status.code() as u16);
            let cut = if call.kind == LoadKind::GrpcStream {
                format!(" after {got} of {} replies", call.messages)
            } else {
                String::new()
            };
            record.error = Some(format!(
                "{:?}: {}{cut}{}",
                status.code(),
                status.message(),
                causes(&status)
            ));
        }
        Err(_) => {
            record.outcome = Outcome::Timeout;
            record.error = Some(format!("no end within {timeout:?}"));
        }
    }
    rec.request(record);
}

async fn attempt(client: &mut SlowClient<Channel>, call: &Call) -> Attempt {
    let delay_ms = call.delay.as_millis() as u64;
    match call.kind {
        LoadKind::GrpcStream => {
            // The stream lasts as long as a request of the same delay: `messages` replies, one
            // every delay / messages.
            let request = CountRequest {
                count: call.messages,
                delay_ms: Some(delay_ms / u64::from(call.messages)),
            };
            let mut stream = client
                .count(request)
                .await
                .map_err(|s| (s, 0))?
                .into_inner();
            let mut got = 0u32;
            let mut pod = String::new();
            loop {
                match stream.message().await {
                    Ok(Some(reply)) => {
                        got += 1;
                        pod = reply.served_by;
                    }
                    Ok(None) if got == call.messages => return Ok(pod),
                    Ok(None) => {
                        return Err((Status::data_loss("stream ended early with status OK"), got))
                    }
                    Err(s) => return Err((s, got)),
                }
            }
        }
        _ => {
            let request = HelloRequest {
                delay_ms: Some(delay_ms),
                ..Default::default()
            };
            match client.hello(request).await {
                Ok(reply) => Ok(reply.into_inner().served_by),
                Err(s) => Err((s, 0)),
            }
        }
    }
}

/// Whether the HTTP/2 layer proves that no server processed the call (see the module doc).
fn never_processed(status: &Status) -> bool {
    sources(status).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
            || e.downcast_ref::<h2::Error>().is_some_and(|h2| {
                (h2.is_go_away() && h2.is_remote())
                    || h2.reason() == Some(h2::Reason::REFUSED_STREAM)
            })
    })
}

/// The chain of errors behind a status, outermost first.
fn sources(status: &Status) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(status), |e| e.source())
}

/// The causes a status's message leaves out (tonic's "h2 protocol error: http2 error" says
/// nothing about the GOAWAY or reset behind it).
fn causes(status: &Status) -> String {
    sources(status)
        .map(|e| format!(": {e}"))
        .collect::<Vec<_>>()
        .join("")
}

/// The table's failure kinds, for a gRPC status: `refused` when the connect was refused;
/// `5xx` when a server or proxy answered with an error status (its trailers or headers came:
/// lameduck's UNAVAILABLE at the drain timeout, an app's error); `reset` when the transport
/// failed (connection reset or closed mid-call: tonic's UNAVAILABLE, UNKNOWN or CANCELLED
/// without a response); `timeout` for DEADLINE_EXCEEDED.
fn outcome(status: &Status) -> Outcome {
    if status.code() == Code::DeadlineExceeded {
        return Outcome::Timeout;
    }
    if sources(status).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    }) {
        return Outcome::Refused;
    }
    if status.metadata().is_empty() {
        Outcome::Reset
    } else {
        Outcome::Status5xx
    }
}
