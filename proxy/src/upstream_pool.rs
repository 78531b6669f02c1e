//! Keep-alive connections to the app, reused across requests.
//!
//! A sidecar has exactly one upstream, on the same loopback, so the pool is one LIFO stack of
//! idle connections behind an uncontended lock: the most recently used connection is the one
//! least likely to have been closed by the app, and the cold ones at the bottom age out.
//!
//! The hard part of any keep-alive pool is the race with the app closing an idle connection
//! (RFC 9112, 9.6): a request written to a connection the app has just closed is lost, and a
//! POST cannot safely be retried. Two defences:
//! - we close idle connections first: [`IDLE_TIMEOUT`] is below the keep-alive timeouts apps
//!   commonly use (Go and hyper: none or 90 s; nginx 75 s);
//! - a connection whose socket turned readable while it sat idle (the app's FIN, or stray bytes)
//!   is never handed out. The check reads the readiness tokio already tracks from epoll, so it
//!   costs no syscall for a healthy connection.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::net::TcpStream;

use crate::metrics::UpstreamErrorKind;

/// How long a connection may sit idle in the pool before we close it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept at most; more than one sidecar's concurrency ever needs at once.
const MAX_IDLE: usize = 128;

pub struct UpstreamPool {
    addr: SocketAddr,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    /// `lameduck_upstream_connections_opened_total`.
    opened: IntCounter,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// A connection to the app, and whether it came from the pool (a failure on a reused
/// connection may be the close race, and an idempotent request may then be retried).
pub struct Conn {
    pub stream: TcpStream,
    pub reused: bool,
}

/// Why no connection to the app could be had; carries the `kind` for metrics and the response.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the app at {addr}: {source}")]
pub struct ConnectError {
    pub kind: UpstreamErrorKind,
    addr: SocketAddr,
    source: io::Error,
}

impl UpstreamPool {
    pub fn new(addr: SocketAddr, connect_timeout: Duration, opened: IntCounter) -> Self {
        UpstreamPool {
            addr,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            opened,
        }
    }

    /// A live idle connection if there is one, else a new one.
    pub async fn get(&self) -> Result<Conn, ConnectError> {
        while let Some(idle) = self.idle.lock().pop() {
            if idle.since.elapsed() < IDLE_TIMEOUT && !closed_while_idle(&idle.stream) {
                return Ok(Conn {
                    stream: idle.stream,
                    reused: true,
                });
            }
        }
        self.connect().await.map(|stream| Conn {
            stream,
            reused: false,
        })
    }

    async fn connect(&self) -> Result<TcpStream, ConnectError> {
        let error = |kind, source| ConnectError {
            kind,
            addr: self.addr,
            source,
        };
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(error(UpstreamErrorKind::ConnectRefused, e))
                }
                Ok(Err(e)) => return Err(error(UpstreamErrorKind::ConnectError, e)),
                Err(_) => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    return Err(error(UpstreamErrorKind::ConnectTimeout, e));
                }
            };
        // Heads and small bodies go out in one write each; Nagle would only add delay.
        let _ = stream.set_nodelay(true);
        self.opened.inc();
        Ok(stream)
    }

    /// Returns a connection whose last response was read completely and that may be reused.
    pub fn put(&self, stream: TcpStream) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                stream,
                since: Instant::now(),
            });
        }
    }

    /// Closes connections that aged out or that the app closed, so that their sockets do not
    /// linger in CLOSE_WAIT until the next request finds them.
    pub async fn reap(&self) {
        let mut tick = tokio::time::interval(IDLE_TIMEOUT / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.idle
                .lock()
                .retain(|i| i.since.elapsed() < IDLE_TIMEOUT && !closed_while_idle(&i.stream));
        }
    }
}

/// Whether an idle connection became readable: the app closed it (EOF), reset it, or sent
/// bytes nobody asked for. Either way it must not carry another request.
fn closed_while_idle(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => false,
        // Readiness can be left over from reading the last response: ask the socket.
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            !matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
        Poll::Ready(Err(_)) => true,
    }
}
