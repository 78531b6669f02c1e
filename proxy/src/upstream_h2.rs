//! HTTP/2 connections to the app (h2c, prior knowledge), for the requests that must reach it as
//! HTTP/2: gRPC above all, which no server accepts over HTTP/1.1.
//!
//! A few multiplexed connections, each carrying many streams at once: requests take them in
//! turn, so one slow connection (a large message filling its window) does not hold back the
//! rest. A slot whose connection has closed (the app restarted, sent GOAWAY, or idled it out) is
//! reconnected by the next request that lands on it. A request that the closing connection never
//! took is sent once more on a fresh connection: nothing of it reached the app.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::metrics::UpstreamErrorKind;

/// Connections kept per app. Each carries up to the app's `SETTINGS_MAX_CONCURRENT_STREAMS`
/// (hyper and tonic: 200 by default; grpc-go: unlimited), so a handful is plenty for a sidecar.
const CONNECTIONS: usize = 4;

/// Per-stream and per-connection flow-control windows asked of the app: large enough that one
/// 16 MiB message does not wait on a round trip per 64 KiB (HTTP/2's default window).
const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// Why a request could not be given to the app, in the terms of the error answers.
#[derive(Debug)]
pub struct SendError {
    pub kind: UpstreamErrorKind,
    pub detail: String,
}

/// The app's h2c connections; see the module docs.
pub struct H2Upstream {
    addr: SocketAddr,
    connect_timeout: Duration,
    slots: Vec<Mutex<Option<SendRequest<Incoming>>>>,
    next: AtomicUsize,
    /// What the last [`H2Upstream::speaks_h2c`] probe found, and when.
    h2c_seen: parking_lot::Mutex<Option<(bool, Instant)>>,
}

/// How long a probe's verdict on whether the app speaks h2c is trusted: an app can be
/// redeployed with another server behind the same port.
const H2C_VERDICT_TTL: Duration = Duration::from_secs(10);

impl H2Upstream {
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Self {
        H2Upstream {
            addr,
            connect_timeout,
            slots: (0..CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            h2c_seen: parking_lot::Mutex::new(None),
        }
    }

    /// Whether the app speaks h2c (prior knowledge), for `--upstream-protocol auto`: an
    /// HTTP/1-only app must get an HTTP/2 client's requests as HTTP/1.1 instead. Found by
    /// sending the HTTP/2 preface and an empty SETTINGS and reading the first bytes back: an
    /// HTTP/2 server answers with its SETTINGS frame, an HTTP/1 one with an HTTP/1 error or a
    /// close. Remembered for a few seconds. `true` when the app cannot be reached at all: the
    /// h2c path then gives the client the error answer (a gRPC status for gRPC).
    pub async fn speaks_h2c(&self) -> bool {
        if let Some((verdict, at)) = *self.h2c_seen.lock() {
            if at.elapsed() < H2C_VERDICT_TTL {
                return verdict;
            }
        }
        let verdict = match tokio::time::timeout(self.connect_timeout, probe_h2c(self.addr)).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(_)) | Err(_) => return true,
        };
        if !verdict {
            tracing::info!(upstream = %self.addr, "the app does not speak h2c: HTTP/2 clients' requests go to it as HTTP/1.1");
        }
        *self.h2c_seen.lock() = Some((verdict, Instant::now()));
        verdict
    }

    /// Sends `req` on one of the connections and waits for the response head.
    pub async fn send(
        &self,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<Incoming>, SendError> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut sender = self.sender(slot, false).await?;
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut e) => match e.take_message() {
                // Never sent (the connection closed under us): once more, on a new connection.
                Some(req) => {
                    let mut sender = self.sender(slot, true).await?;
                    sender
                        .send_request(req)
                        .await
                        .map_err(|e| request_error(&e))
                }
                None => Err(request_error(e.error())),
            },
        }
    }

    /// The slot's connection, (re)connected if it has closed or `fresh` is asked for.
    async fn sender(&self, slot: usize, fresh: bool) -> Result<SendRequest<Incoming>, SendError> {
        let mut guard = self.slots[slot].lock().await;
        if let Some(sender) = guard.as_ref() {
            if !fresh && !sender.is_closed() {
                return Ok(sender.clone());
            }
        }
        let sender = self.connect().await?;
        *guard = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> Result<SendRequest<Incoming>, SendError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr)).await {
                Err(_) => {
                    return Err(SendError {
                        kind: UpstreamErrorKind::ConnectTimeout,
                        detail: format!(
                            "connecting took longer than {}",
                            crate::config::fmt_duration(self.connect_timeout)
                        ),
                    })
                }
                Ok(Err(e)) => {
                    let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        UpstreamErrorKind::ConnectRefused
                    } else {
                        UpstreamErrorKind::ConnectError
                    };
                    return Err(SendError {
                        kind,
                        detail: format!("connect: {e}"),
                    });
                }
                Ok(Ok(stream)) => stream,
            };
        let _ = stream.set_nodelay(true);
        let handshake = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(64 * 1024)
            // A dead app behind a live socket is found out, not waited on forever.
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(TokioIo::new(stream));
        let (sender, conn) = match tokio::time::timeout(self.connect_timeout, handshake).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                return Err(SendError {
                    kind: UpstreamErrorKind::Protocol,
                    detail: format!("h2c handshake (does the app speak HTTP/2 without TLS?): {e}"),
                })
            }
            Err(_) => {
                return Err(SendError {
                    kind: UpstreamErrorKind::ConnectTimeout,
                    detail: "no h2c handshake from the app in time".to_string(),
                })
            }
        };
        let addr = self.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %addr, error = %e, "h2c connection to the app ended");
            }
        });
        Ok(sender)
    }
}

/// One probe connection: the preface and an empty SETTINGS frame out; the app's first frame
/// header back. A SETTINGS frame (type 4 on stream 0) first is what RFC 9113 requires of an
/// HTTP/2 server.
async fn probe_h2c(addr: SocketAddr) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await?;
    let mut head = [0u8; 9];
    match stream.read_exact(&mut head).await {
        Ok(_) => Ok(head[3] == 4 && head[5..9] == [0, 0, 0, 0]),
        // Closed without a frame: an HTTP/1 server refusing `PRI *`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Names a failed request in the terms of the error answers.
fn request_error(e: &hyper::Error) -> SendError {
    let kind = if e.is_timeout() {
        UpstreamErrorKind::Timeout
    } else if e.is_parse() || e.is_user() {
        UpstreamErrorKind::Protocol
    } else {
        UpstreamErrorKind::Closed
    };
    SendError {
        kind,
        detail: error_text(e),
    }
}

/// An error with its causes, on one line.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
