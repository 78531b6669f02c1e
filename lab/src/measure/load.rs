//! The load: open loop, at a fixed rate, every request recorded.
//!
//! Request k is sent at `start + k / rate` whatever happened to the ones before: a closed loop
//! (send the next when the previous returns) slows down exactly when the server is in trouble
//! and so under-counts the failures a rollout causes. The mix covers what differs between
//! fronts and pods: clients with a keep-alive connection pool and clients that open a connection
//! per request; GETs and POSTs with a body (a front may retry a GET on its own, never a POST it
//! has sent); short and long requests (`?delay_ms=N` on slowapp).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::measure::httpc::{ClientError, Conn, Response};
use crate::measure::record::{Outcome, Recorder, RequestRecord};
use crate::measure::{LoadKind, ProtocolLoad, Target};

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Requests per second (wall clock).
    pub rate: f64,
    /// Share of requests sent by keep-alive clients (the rest open a connection each).
    pub keepalive_share: f64,
    pub post_share: f64,
    pub long_share: f64,
    /// `delay_ms` of short and long requests (already scaled).
    pub short_delay: Duration,
    pub long_delay: Duration,
    /// A request with no complete response after this is a timeout.
    pub timeout: Duration,
    pub seed: u64,
}

pub struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts the load `proto.kind` says against `target`: HTTP and WebSocket need an address
    /// (a front), gRPC takes either an address or the endpoints (client-side balancing).
    pub fn start_kind(
        proto: &ProtocolLoad,
        target: Target,
        cfg: LoadConfig,
        rec: Arc<Recorder>,
    ) -> anyhow::Result<Load> {
        let (stop, stop_rx) = watch::channel(false);
        let task =
            match (proto.kind, target) {
                (LoadKind::Http, Target::Addr(addr)) => {
                    tokio::spawn(generate(addr, cfg, rec, stop_rx))
                }
                (LoadKind::GrpcUnary | LoadKind::GrpcStream, target) => tokio::spawn(
                    super::grpc::generate(target, proto.clone(), cfg, rec, stop_rx),
                ),
                (LoadKind::Websocket, Target::Addr(addr)) => tokio::spawn(
                    super::websocket::generate(addr, proto.clone(), cfg, rec, stop_rx),
                ),
                (kind, Target::Endpoints(_)) => anyhow::bail!(
                "the {} load needs a front address; only gRPC balances over the endpoints itself",
                kind.name()
            ),
            };
        Ok(Load { stop, task })
    }

    /// Stops sending and waits for the requests in flight (each bounded by its timeout).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The keep-alive clients' connection pool: idle connections, most recently used last.
type Pool = Arc<Mutex<Vec<Conn>>>;

async fn generate(
    target: SocketAddr,
    cfg: LoadConfig,
    rec: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let pool: Pool = Arc::new(Mutex::new(Vec::new()));
    let ids = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cfg.rate);
    let mut inflight = JoinSet::new();
    let mut k: u32 = 0;
    loop {
        let due = start + interval * k;
        tokio::time::sleep_until(due).await;
        if *stop.borrow() {
            break;
        }
        k += 1;
        let plan = Plan {
            keepalive: rng.gen_bool(cfg.keepalive_share),
            post: rng.gen_bool(cfg.post_share),
            delay: if rng.gen_bool(cfg.long_share) {
                cfg.long_delay
            } else {
                cfg.short_delay
            },
            body_len: rng.gen_range(512..8192),
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        inflight.spawn(one(
            id,
            target,
            plan,
            cfg.timeout,
            pool.clone(),
            rec.clone(),
        ));
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
}

struct Plan {
    keepalive: bool,
    post: bool,
    delay: Duration,
    body_len: usize,
}

impl Plan {
    fn method(&self) -> &'static str {
        if self.post {
            "POST"
        } else {
            "GET"
        }
    }

    fn delay_ms(&self) -> u64 {
        self.delay.as_millis() as u64
    }
}

/// One request of the load: sent (on a pooled connection when the plan says keep-alive),
/// bounded by `timeout`, and recorded whatever happened.
async fn one(
    id: u64,
    target: SocketAddr,
    plan: Plan,
    timeout: Duration,
    pool: Pool,
    rec: Arc<Recorder>,
) {
    let start = rec.now();
    let pooled = if plan.keepalive {
        take_pooled(&pool)
    } else {
        None
    };
    let reused = pooled.is_some();
    let mut exchange = Exchange::new(id, target, &plan);
    let result = tokio::time::timeout(timeout, exchange.attempt(pooled))
        .await
        .unwrap_or(Err(ClientError::Timeout));
    let mut record = RequestRecord {
        id,
        start,
        end: rec.now(),
        client: if plan.keepalive { "keepalive" } else { "new" },
        reused,
        retried: exchange.retried,
        method: plan.method(),
        delay_ms: plan.delay_ms(),
        outcome: Outcome::Other,
        status: None,
        pod: None,
        error: None,
        local_port: exchange.port.load(Ordering::Relaxed),
        routed_to: None,
        front_caused: false,
    };
    match result {
        Ok((conn, resp)) => {
            answered(&mut record, &resp);
            if plan.keepalive && !resp.close {
                pool.lock().expect("pool lock").push(conn);
            }
        }
        Err(e) => {
            record.outcome = e.outcome();
            record.error = Some(e.to_string());
        }
    }
    rec.request(record);
}

/// The request on the wire: what is sent, and what the attempts learned (the local port of the
/// last connection, which the report matches against the fronts' logs; whether it was retried).
struct Exchange {
    target: SocketAddr,
    host: String,
    method: &'static str,
    path: String,
    body: Vec<u8>,
    close: bool,
    retry_allowed: bool,
    port: AtomicU16,
    retried: bool,
}

impl Exchange {
    fn new(id: u64, target: SocketAddr, plan: &Plan) -> Exchange {
        Exchange {
            target,
            host: target.to_string(),
            method: plan.method(),
            path: format!("/?delay_ms={}&id={id}", plan.delay_ms()),
            body: if plan.post {
                vec![b'x'; plan.body_len]
            } else {
                Vec::new()
            },
            close: !plan.keepalive,
            retry_allowed: !plan.post,
            port: AtomicU16::new(0),
            retried: false,
        }
    }

    async fn attempt(&mut self, pooled: Option<Conn>) -> Result<(Conn, Response), ClientError> {
        let reused = pooled.is_some();
        match self.send(pooled).await {
            // A server may close an idle keep-alive connection at any moment (RFC 9112
            // 9.3.1); a request that crossed the close got no byte back, and clients (Go's
            // transport, curl, browsers) send an idempotent request again on a new connection.
            // A POST is not retried: it stays lost.
            Err((ClientError::Eof(_) | ClientError::Reset(_), false))
                if reused && self.retry_allowed =>
            {
                self.retried = true;
                self.send(None).await.map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        }
    }

    /// One try; an error says whether any response byte had arrived (then it is not retried).
    async fn send(&self, conn: Option<Conn>) -> Result<(Conn, Response), (ClientError, bool)> {
        let mut conn = match conn {
            Some(c) => c,
            None => Conn::connect_from(self.target, |p| self.port.store(p, Ordering::Relaxed))
                .await
                .map_err(|e| (e, false))?,
        };
        self.port.store(conn.local_port, Ordering::Relaxed);
        match conn
            .request(self.method, &self.host, &self.path, &self.body, self.close)
            .await
        {
            Ok(resp) => Ok((conn, resp)),
            Err(e) => Err((e, conn.got_bytes)),
        }
    }
}

/// A pooled connection, if one is left that the server has not closed; the closed ones are
/// discarded, as every client pool does.
fn take_pooled(pool: &Pool) -> Option<Conn> {
    let mut p = pool.lock().expect("pool lock");
    while let Some(c) = p.pop() {
        if !c.closed_by_peer() {
            return Some(c);
        }
    }
    None
}

/// What a response says about its request: the outcome, the pod that answered, and for a
/// failure the start of the body (lameduck's and the fronts' error texts say why).
fn answered(record: &mut RequestRecord, resp: &Response) {
    record.outcome = match resp.status {
        200..=299 => Outcome::Ok,
        500..=599 => Outcome::Status5xx,
        _ => Outcome::Other,
    };
    record.status = Some(resp.status);
    record.pod = resp.header("x-served-by").map(str::to_string);
    record.error = (record.outcome != Outcome::Ok).then(|| {
        String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
            .trim()
            .to_string()
    });
}
