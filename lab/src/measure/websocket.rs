//! The WebSocket load: `--connections` clients each hold a WebSocket to slowapp's `/ws` echo
//! through the front and send messages on it; open loop, message *k* at `start + k / rate` on
//! connection *k mod n*, every message recorded like an HTTP request (its end is its echo).
//!
//! What counts:
//! - a message is ok when its echo comes back (each message carries its id);
//! - a clean close from the server (a Close frame with 1000, 1001 Going Away or 1012 Service
//!   Restart, what lameduck sends when it drains) is the server saying "go elsewhere": the client
//!   answers the Close, reconnects through the front, and sends the messages that had no echo
//!   yet again on the new connection, as a client with an at-least-once message protocol does
//!   (those count as `retried`, and by how the resend ends);
//! - a connection that ends without a Close frame (1006 in a browser: reset, or a close at the
//!   TCP level) loses every message still waiting for its echo (`reset`): the client cannot tell
//!   what the server did with them;
//! - a message that cannot be sent because the (re)connect fails is lost as that failure says
//!   (`refused`, `reset`, `5xx` for an error answer to the upgrade); one with no echo within
//!   `--request-timeout` is a `timeout`.
//!
//! Every connection asks for the short delay (`?delay_ms=`): each echo comes that long after its
//! message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::measure::load::LoadConfig;
use crate::measure::record::{Outcome, Recorder, RequestRecord};
use crate::measure::ProtocolLoad;

pub async fn generate(
    addr: SocketAddr,
    proto: ProtocolLoad,
    cfg: LoadConfig,
    rec: Arc<Recorder>,
    stop: watch::Receiver<bool>,
) {
    let mut senders = Vec::new();
    let mut workers = JoinSet::new();
    for _ in 0..proto.connections.max(1) {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        workers.spawn(
            Worker {
                addr,
                cfg: cfg.clone(),
                rec: rec.clone(),
                conn: None,
                pending: BTreeMap::new(),
            }
            .run(rx),
        );
    }
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cfg.rate);
    let mut k: u64 = 0;
    loop {
        tokio::time::sleep_until(start + interval * k as u32).await;
        if *stop.borrow() {
            break;
        }
        let msg = Msg {
            id: k,
            start: rec.now(),
            sent_at: Instant::now(),
            reused: false,
            retried: false,
        };
        let _ = senders[k as usize % senders.len()].send(msg);
        k += 1;
    }
    // Closing the queues lets each worker finish: it waits for its echoes, then closes.
    drop(senders);
    while workers.join_next().await.is_some() {}
}

/// One message, from the moment it was due.
struct Msg {
    id: u64,
    start: f64,
    sent_at: Instant,
    reused: bool,
    retried: bool,
}

struct Live {
    ws: WebSocketStream<TcpStream>,
    /// `X-Served-By` of the upgrade answer.
    pod: Option<String>,
    local_port: u16,
    used: bool,
}

/// One client: its connection (when it has one) and the messages waiting for their echo.
struct Worker {
    addr: SocketAddr,
    cfg: LoadConfig,
    rec: Arc<Recorder>,
    conn: Option<Live>,
    pending: BTreeMap<u64, (Msg, u16)>,
}

impl Worker {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Msg>) {
        let mut open = true;
        let mut tick =
            tokio::time::interval((self.cfg.timeout / 20).max(Duration::from_millis(20)));
        while open || !self.pending.is_empty() {
            tokio::select! {
                m = queue.recv(), if open => match m {
                    Some(m) => self.send(m).await,
                    None => open = false,
                },
                frame = next_frame(&mut self.conn) => self.on_frame(frame).await,
                _ = tick.tick() => self.expire(),
            }
        }
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(self.cfg.timeout, async {
                let _ = c.ws.close(None).await;
                while c.ws.next().await.is_some() {}
            })
            .await;
        }
    }

    /// Sends `m`, connecting first if there is no connection.
    async fn send(&mut self, mut m: Msg) {
        if self.conn.is_none() {
            match connect(self.addr, &self.cfg).await {
                Ok(c) => self.conn = Some(c),
                Err((outcome, status, error, port)) => {
                    return self.lost(m, outcome, status, error, port, None);
                }
            }
        }
        let c = self.conn.as_mut().expect("connected above");
        m.reused = c.used;
        c.used = true;
        let port = c.local_port;
        match c.ws.send(Message::text(m.id.to_string())).await {
            Ok(()) => {
                self.pending.insert(m.id, (m, port));
            }
            Err(e) => {
                let pod = c.pod.clone();
                self.conn = None;
                self.lost(
                    m,
                    Outcome::Reset,
                    None,
                    format!("send failed: {e}"),
                    port,
                    pod,
                );
                self.broken(&format!("connection broke while sending: {e}"));
            }
        }
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, WsError>>) {
        match frame {
            Some(Ok(Message::Text(t))) => {
                let Ok(id) = t.as_str().parse::<u64>() else {
                    return;
                };
                if let Some((m, port)) = self.pending.remove(&id) {
                    let pod = self.conn.as_ref().and_then(|c| c.pod.clone());
                    self.rec.request(record(
                        &m,
                        &self.cfg,
                        Outcome::Ok,
                        None,
                        port,
                        pod,
                        None,
                        &self.rec,
                    ));
                }
            }
            Some(Ok(Message::Close(Some(f))))
                if matches!(
                    f.code,
                    CloseCode::Normal | CloseCode::Away | CloseCode::Restart
                ) =>
            {
                // Told to go: answer the Close (tungstenite queued the reply; closing flushes
                // it), then send what had no echo again on a new connection.
                if let Some(mut c) = self.conn.take() {
                    let timeout = self.cfg.timeout;
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(timeout, async {
                            let _ = c.ws.close(None).await;
                            while c.ws.next().await.is_some() {}
                        })
                        .await;
                    });
                }
                let again = std::mem::take(&mut self.pending);
                for (_, (mut m, _)) in again {
                    m.retried = true;
                    self.send(m).await;
                }
            }
            Some(Ok(Message::Close(f))) => {
                self.conn = None;
                self.broken(&format!("closed by the server with {f:?}"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                self.conn = None;
                self.broken(&format!(
                    "connection ended without a Close frame (1006): {e}"
                ));
            }
            None => {
                self.conn = None;
                self.broken("connection ended without a Close frame (1006)");
            }
        }
    }

    /// The connection ended abnormally: every message waiting for its echo is lost.
    fn broken(&mut self, why: &str) {
        for (_, (m, port)) in std::mem::take(&mut self.pending) {
            self.lost(m, Outcome::Reset, None, why.to_string(), port, None);
        }
    }

    fn expire(&mut self) {
        let timeout = self.cfg.timeout;
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (m, _))| m.sent_at.elapsed() > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some((m, port)) = self.pending.remove(&id) {
                self.lost(
                    m,
                    Outcome::Timeout,
                    None,
                    format!("no echo within {timeout:?}"),
                    port,
                    None,
                );
            }
        }
    }

    fn lost(
        &self,
        m: Msg,
        outcome: Outcome,
        status: Option<u16>,
        error: String,
        port: u16,
        pod: Option<String>,
    ) {
        self.rec.request(record(
            &m,
            &self.cfg,
            outcome,
            status,
            port,
            pod,
            Some(error),
            &self.rec,
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    m: &Msg,
    cfg: &LoadConfig,
    outcome: Outcome,
    status: Option<u16>,
    local_port: u16,
    pod: Option<String>,
    error: Option<String>,
    rec: &Recorder,
) -> RequestRecord {
    RequestRecord {
        id: m.id,
        start: m.start,
        end: rec.now(),
        client: "websocket",
        reused: m.reused,
        retried: m.retried,
        method: "message",
        delay_ms: cfg.short_delay.as_millis() as u64,
        outcome,
        status,
        pod,
        error,
        local_port,
        routed_to: None,
        front_caused: false,
    }
}

/// The next frame of the connection, or never when there is none.
async fn next_frame(conn: &mut Option<Live>) -> Option<Result<Message, WsError>> {
    match conn {
        Some(c) => c.ws.next().await,
        None => std::future::pending().await,
    }
}

type ConnectError = (Outcome, Option<u16>, String, u16);

/// A WebSocket to `/ws` through the front, within the request timeout.
async fn connect(addr: SocketAddr, cfg: &LoadConfig) -> Result<Live, ConnectError> {
    let url = format!("ws://{addr}/ws?delay_ms={}", cfg.short_delay.as_millis());
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| {
            let outcome = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                Outcome::Refused
            } else {
                Outcome::Reset
            };
            (outcome, None, format!("connect: {e}"), 0)
        })?;
        let _ = tcp.set_nodelay(true);
        let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
        match tokio_tungstenite::client_async(url, tcp).await {
            Ok((ws, response)) => Ok(Live {
                ws,
                pod: response
                    .headers()
                    .get("x-served-by")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                local_port: port,
                used: false,
            }),
            Err(WsError::Http(r)) => {
                let status = r.status().as_u16();
                let outcome = if status >= 500 {
                    Outcome::Status5xx
                } else {
                    Outcome::Other
                };
                Err((
                    outcome,
                    Some(status),
                    format!("upgrade answered {status}"),
                    port,
                ))
            }
            Err(e) => Err((Outcome::Reset, None, format!("handshake: {e}"), port)),
        }
    };
    match tokio::time::timeout(cfg.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err((
            Outcome::Timeout,
            None,
            "no upgrade answer in time".into(),
            0,
        )),
    }
}
