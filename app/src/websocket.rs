//! `GET /ws`: a WebSocket echo server, so the lab and the tests have a long-lived connection of
//! our own to shut down.
//!
//! Each text or binary message comes back unchanged, `?delay_ms=N` after it arrived (default 0:
//! an echo), like the HTTP handler's knob; messages are echoed in order and concurrently (the
//! delay runs for every message at once, not one after the other). The upgrade answer carries
//! `X-Served-By` like every response.
//!
//! What it does at shutdown is what an app with no help does: the upgraded connections are no
//! longer hyper's, so the graceful shutdown neither waits for them nor closes them; they end when
//! the process exits, without a Close frame (the client sees 1006, abnormal closure). slowapp
//! logs how many it leaves so. Telling WebSocket clients to go (Close 1001) is lameduck's job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::respond::{delay_override, text, SERVED_BY};

/// The path of the echo endpoint.
pub const PATH: &str = "/ws";

/// Open WebSocket connections: the number the shutdown leaves to end with the process.
#[derive(Debug, Default)]
pub struct Open(AtomicUsize);

impl Open {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Decrements [`Open`] however the connection's task ends.
struct OpenGuard(Arc<Open>);

impl OpenGuard {
    fn enter(open: &Arc<Open>) -> Self {
        open.0.fetch_add(1, Ordering::SeqCst);
        OpenGuard(Arc::clone(open))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a request asks for a WebSocket upgrade (RFC 6455 4.1: a GET with `Upgrade:
/// websocket` and `Connection: upgrade`).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    let has_token = |name, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.method() == Method::GET
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
}

/// `GET /ws` without the upgrade headers: 426, naming what is needed (RFC 9110 15.5.22).
pub fn upgrade_required() -> Response<Full<Bytes>> {
    let mut response = text(
        StatusCode::UPGRADE_REQUIRED,
        "/ws is a WebSocket echo: send Upgrade: websocket\n",
    );
    response
        .headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("websocket"));
    response
}

/// Answers the handshake (101, or 400 saying what is wrong) and, on 101, spawns the echo on the
/// upgraded connection.
pub fn accept(
    req: Request<Incoming>,
    served_by: &HeaderValue,
    open: &Arc<Open>,
) -> Response<Full<Bytes>> {
    let delay = match delay_override(req.uri().query()) {
        Ok(d) => d.unwrap_or(Duration::ZERO),
        Err(msg) => return text(StatusCode::BAD_REQUEST, &format!("{msg}\n")),
    };
    if req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return text(
            StatusCode::BAD_REQUEST,
            "WebSocket upgrade needs Sec-WebSocket-Version: 13\n",
        );
    }
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY) else {
        return text(
            StatusCode::BAD_REQUEST,
            "WebSocket upgrade needs Sec-WebSocket-Key\n",
        );
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let guard = OpenGuard::enter(open);
    let name = served_by.to_str().unwrap_or("").to_string();
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                tracing::info!(delay_ms = delay.as_millis() as u64, "websocket open");
                let (messages, end) = echo(ws, delay).await;
                tracing::info!(messages, end, served_by = %name, "websocket closed");
            }
            Err(e) => tracing::info!(error = %e, "websocket upgrade failed"),
        }
        drop(guard);
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(SERVED_BY.clone(), served_by.clone());
    response
}

/// Echoes until the peer closes or the connection breaks; returns the messages echoed and how
/// it ended, for the log.
async fn echo<S>(ws: WebSocketStream<S>, delay: Duration) -> (u64, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    // The reader stamps each message with its due time; the writer sends each at that time. One
    // delay for the whole connection keeps the due times in order, so the echoes are too.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Message)>();
    let writer = tokio::spawn(async move {
        let mut sent = 0u64;
        while let Some((due, message)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if sink.send(message).await.is_err() {
                break;
            }
            sent += 1;
        }
        let _ = sink.close().await;
        sent
    });
    let end = loop {
        match stream.next().await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                if tx.send((Instant::now() + delay, m)).is_err() {
                    break "writer gone".to_string();
                }
            }
            // Pings are answered by tungstenite itself; a Close is answered by it too.
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
                    None => "close without a code".to_string(),
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("error: {e}"),
            None => break "connection ended".to_string(),
        }
    };
    drop(tx);
    let sent = writer.await.unwrap_or(0);
    (sent, end)
}
