//! The HTTP/1.1 fast path: lameduck's own forwarding of the plain requests that make up almost
//! all of a sidecar's traffic.
//!
//! Why not pingora-proxy for everything: a sidecar's cost is paid in every pod, and the
//! benchmark (docs/benchmarks.md) found pingora-proxy spending ~110k instructions and ~86
//! allocations per request where nginx spends 21k. A sidecar in front of one app on loopback
//! needs far less than a general proxy: no routing, no cache, no TLS, one upstream. So a request
//! whose framing is unambiguous is forwarded here, in the connection's own task, with one read
//! and one write per direction for small messages and no per-request task or channel;
//! everything else (see [`head`]) goes to pingora-proxy, which stays the reference.
//!
//! Bodies are forwarded in the framing they came in. Errors are answered like pingora's path
//! answers them (same statuses, same texts), and counted the same way.

pub mod body;
pub mod buffers;
pub mod head;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::metrics::UpstreamErrorKind;
use crate::phase::Lifecycle;
use crate::upstream_pool::UpstreamPool;
use body::ChunkedEnd;
use head::{Framing, RequestPlan, Response, ResponsePlan};

/// How much a read asks for at once; a body larger than this streams through in pieces.
const READ_CHUNK: usize = 16 * 1024;

/// What becomes of the client connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    KeepAlive,
    Close,
    /// Close, but the client may still be sending a body nobody will read: closing a socket
    /// with unread bytes sends a reset, which can destroy the response before the client reads
    /// it. So: send FIN, drain what comes for a moment, then close (nginx's lingering close).
    CloseLingering,
}

/// Everything the fast path needs, shared by all connections.
pub struct FastPath {
    pub lc: Arc<Lifecycle>,
    pub pool: Arc<UpstreamPool>,
    pub upstream: SocketAddr,
    pub client_read_timeout: Duration,
    pub upstream_timeout: Duration,
    /// A client that accepts no byte of its response for this long is gone.
    pub client_write_timeout: Duration,
}

/// Why a request could not be completed.
enum Failure {
    /// The app failed before the client got anything: answer with an error response.
    Upstream(UpstreamErrorKind, String),
    /// The app failed mid-response: the client connection can only be cut.
    UpstreamMidResponse(UpstreamErrorKind, String),
    /// The client went away, or stopped sending or reading: nothing to answer.
    Client,
}

impl FastPath {
    /// Forwards one request whose head is in `buf` and returns what the connection should do
    /// next. On return `buf` holds what the client sent after this request (pipelining).
    pub async fn forward(
        &self,
        client: &mut TcpStream,
        buf: &mut Vec<u8>,
        plan: RequestPlan,
        deadline: Pin<&mut Sleep>,
    ) -> Outcome {
        let arrived = Instant::now();
        let phase = self.lc.phase();
        self.lc.note_arrival();
        let _in_flight = crate::data_plane::scope::InFlight::new(self.lc.clone());
        let (status, outcome) = match self.exchange(client, buf, plan, deadline).await {
            Ok((status, outcome)) => (Some(status), outcome),
            Err(Failure::Client) => (None, Outcome::Close),
            Err(Failure::Upstream(kind, error)) => {
                let (code, body) =
                    crate::data_plane::scope::upstream_error_response(kind, self.upstream);
                self.upstream_failed(kind, code, &error);
                let _ = self.write(client, &error_response(code, &body)).await;
                (Some(code), Outcome::Close)
            }
            Err(Failure::UpstreamMidResponse(kind, error)) => {
                self.upstream_failed(kind, 0, &error);
                (None, Outcome::Close)
            }
        };
        self.lc
            .metrics
            .request_done(phase, status, arrived.elapsed());
        outcome
    }

    fn upstream_failed(&self, kind: UpstreamErrorKind, status: u16, error: &str) {
        self.lc.metrics.upstream_error(kind);
        tracing::warn!(kind = kind.as_str(), status, upstream = %self.upstream, error, "upstream error");
    }

    async fn exchange(
        &self,
        client: &mut TcpStream,
        buf: &mut Vec<u8>,
        mut plan: RequestPlan,
        mut deadline: Pin<&mut Sleep>,
    ) -> Result<(u16, Outcome), Failure> {
        // The head and whatever part of the body came with it go to the app in one write.
        let in_buf = buf.len() - plan.head_len;
        let first = usize::try_from(plan.body_len).map_or(in_buf, |n| n.min(in_buf));
        let mut request = std::mem::take(&mut plan.upstream_head);
        request.extend_from_slice(&buf[plan.head_len..plan.head_len + first]);
        buf.drain(..plan.head_len + first);
        let rest = plan.body_len - first as u64;

        let mut ubuf = buffers::take();
        let mut retried = false;
        let mut app_reusable = true;
        let (mut up, resp) = loop {
            let conn = self
                .pool
                .get()
                .await
                .map_err(|e| Failure::Upstream(e.kind, e.to_string()))?;
            let mut up = conn.stream;
            // A pooled connection the app closed a moment ago fails here or returns EOF before
            // any byte of a response: the race of RFC 9112, 9.6. The request is sent again
            // on a new connection if the app cannot have acted on it: the write itself
            // failed, or it is idempotent and nothing of it remains unsent.
            let may_retry = conn.reused && !retried && rest == 0;
            if let Err(e) = self.write_upstream(&mut up, &request).await {
                if may_retry {
                    retried = true;
                    self.lc.metrics.upstream_retries.inc();
                    continue;
                }
                return Err(closed(e));
            }
            if rest > 0 {
                let timeouts = (self.client_read_timeout, self.upstream_timeout);
                if !send_body(client, &mut up, rest, buf, timeouts).await? {
                    // The app answered before it had the whole body (a 413, a 401 on an
                    // upload). Its answer is the client's; the rest of the body is still in
                    // the client's socket, so this connection ends after it, and so does the
                    // app's, whose state we cannot know.
                    plan.client_close = true;
                    app_reusable = false;
                }
                // `buf` was the scratch space: nothing in it is the client's next request.
                buf.clear();
            }
            ubuf.clear();
            match self
                .read_response_head(&mut up, &mut ubuf, &plan, client, deadline.as_mut())
                .await
            {
                Ok(resp) => break (up, resp),
                Err(Failure::Upstream(UpstreamErrorKind::Closed, _))
                    if may_retry && plan.idempotent && ubuf.is_empty() =>
                {
                    retried = true;
                    self.lc.metrics.upstream_retries.inc();
                }
                Err(e) => return Err(e),
            }
        };
        let status = resp.status;
        let close = resp.closes_client;
        let reusable = self
            .forward_response(client, &mut up, &mut ubuf, resp)
            .await?;
        if reusable && app_reusable {
            self.pool.put(up);
        }
        buffers::give(request);
        buffers::give(ubuf);
        let outcome = match (close, app_reusable) {
            (_, false) => Outcome::CloseLingering,
            (true, true) => Outcome::Close,
            (false, true) => Outcome::KeepAlive,
        };
        Ok((status, outcome))
    }

    /// Reads the app's response head into `ubuf`, passing interim (1xx) responses on to the
    /// client as they come.
    async fn read_response_head(
        &self,
        up: &mut TcpStream,
        ubuf: &mut Vec<u8>,
        plan: &RequestPlan,
        client: &mut TcpStream,
        mut deadline: Pin<&mut Sleep>,
    ) -> Result<ResponsePlan, Failure> {
        // The connection's own timer, re-armed: moving a registered deadline later costs
        // almost nothing in tokio's timer wheel, registering a new one per request does.
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + self.upstream_timeout);
        loop {
            if !ubuf.is_empty() {
                // Decided as late as possible: a response finishing after the window opened
                // must still carry `Connection: close`.
                let close = plan.client_close || self.lc.phase().is_shutting_down();
                match head::parse_response(ubuf, plan.is_head, close) {
                    Response::Forward(resp) if resp.interim => {
                        self.write(client, &resp.client_head).await?;
                        ubuf.drain(..resp.head_len);
                        continue;
                    }
                    Response::Forward(resp) => return Ok(resp),
                    Response::Invalid(why) => {
                        return Err(Failure::Upstream(UpstreamErrorKind::Protocol, why.into()))
                    }
                    Response::Partial => {}
                }
            }
            reserve(ubuf);
            let read = tokio::select! {
                biased;
                read = up.read_buf(ubuf) => Ok(read),
                _ = deadline.as_mut() => Err(()),
            };
            match read {
                Err(()) => {
                    let waited = crate::config::fmt_duration(self.upstream_timeout);
                    let e = format!("no response within --upstream-timeout {waited}");
                    return Err(Failure::Upstream(UpstreamErrorKind::Timeout, e));
                }
                Ok(Ok(0)) => {
                    let e = "the app closed the connection before responding".to_string();
                    return Err(Failure::Upstream(UpstreamErrorKind::Closed, e));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(closed(e)),
            }
        }
    }

    /// Sends the response head and body to the client. Returns whether the upstream connection
    /// ended exactly at the end of the response and may carry another request.
    async fn forward_response(
        &self,
        client: &mut TcpStream,
        up: &mut TcpStream,
        ubuf: &mut Vec<u8>,
        resp: ResponsePlan,
    ) -> Result<bool, Failure> {
        let mut out = resp.client_head;
        let body = &ubuf[resp.head_len..];
        match resp.framing {
            Framing::Empty => {
                let clean = body.is_empty();
                self.write(client, &out).await?;
                buffers::give(std::mem::take(&mut out));
                Ok(clean && resp.upstream_reusable)
            }
            Framing::Length(n) => {
                let take = usize::try_from(n).map_or(body.len(), |n| n.min(body.len()));
                let extra = body.len() > take;
                out.extend_from_slice(&body[..take]);
                self.write(client, &out).await?;
                buffers::give(std::mem::take(&mut out));
                let rest = n - take as u64;
                if rest > 0 {
                    self.copy_exact(up, client, rest, ubuf).await?;
                }
                Ok(!extra && resp.upstream_reusable)
            }
            Framing::Chunked => {
                let mut end = ChunkedEnd::default();
                let bad = |e: body::BadChunk| {
                    Failure::UpstreamMidResponse(UpstreamErrorKind::Protocol, e.to_string())
                };
                let mut done = end.feed(body).map_err(bad)?;
                let mut extra = done.is_some_and(|k| k < body.len());
                out.extend_from_slice(&body[..done.unwrap_or(body.len())]);
                self.write(client, &out).await?;
                buffers::give(std::mem::take(&mut out));
                while done.is_none() {
                    if self.next_piece(up, ubuf).await? == 0 {
                        return Err(mid_response(io::ErrorKind::UnexpectedEof.into()));
                    }
                    done = end.feed(ubuf).map_err(bad)?;
                    extra = done.is_some_and(|k| k < ubuf.len());
                    self.write(client, &ubuf[..done.unwrap_or(ubuf.len())])
                        .await?;
                }
                Ok(!extra && resp.upstream_reusable)
            }
            Framing::UntilClose => {
                out.extend_from_slice(body);
                self.write(client, &out).await?;
                buffers::give(std::mem::take(&mut out));
                while self.next_piece(up, ubuf).await? > 0 {
                    self.write(client, ubuf).await?;
                }
                Ok(false)
            }
        }
    }

    /// Streams exactly `len` bytes of a response body from the app to the client, never
    /// reading past them (a well-behaved app sends nothing more; anything more is not
    /// forwarded).
    async fn copy_exact(
        &self,
        up: &mut TcpStream,
        client: &mut TcpStream,
        len: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let mut left = len;
        while left > 0 {
            scratch.clear();
            reserve(scratch);
            let mut limited = (&mut *up).take(left);
            let n = match tokio::time::timeout(self.upstream_timeout, limited.read_buf(scratch))
                .await
            {
                Ok(Ok(n)) if n > 0 => n,
                Ok(Ok(_)) => return Err(mid_response(io::ErrorKind::UnexpectedEof.into())),
                Ok(Err(e)) => return Err(mid_response(e)),
                Err(_) => return Err(mid_response(io::ErrorKind::TimedOut.into())),
            };
            self.write(client, &scratch[..n]).await?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Reads the next piece of a response body into `ubuf` (emptied first); 0 at the app's EOF.
    async fn next_piece(&self, up: &mut TcpStream, ubuf: &mut Vec<u8>) -> Result<usize, Failure> {
        ubuf.clear();
        reserve(ubuf);
        read_timeout(up, ubuf, self.upstream_timeout)
            .await
            .map_err(mid_response)
    }

    async fn write(&self, client: &mut TcpStream, data: &[u8]) -> Result<(), Failure> {
        match tokio::time::timeout(self.client_write_timeout, client.write_all(data)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Failure::Client),
        }
    }

    async fn write_upstream(&self, up: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        match tokio::time::timeout(self.upstream_timeout, up.write_all(data)).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Streams the rest of a request body (`len` bytes) from the client to the app, never reading
/// past it (what follows may be the client's next request). Returns false when the app began
/// to answer before it had the whole body: the sending stops there.
async fn send_body(
    client: &mut TcpStream,
    up: &mut TcpStream,
    len: u64,
    scratch: &mut Vec<u8>,
    (read_timeout_each, write_timeout): (Duration, Duration),
) -> Result<bool, Failure> {
    let mut left = len;
    let mut probe = [0u8; 1];
    let (mut answer, mut to_app) = up.split();
    while left > 0 {
        scratch.clear();
        reserve(scratch);
        let mut limited = (&mut *client).take(left);
        // `peek`, not `readable`: a readiness left over from the connection's last response
        // must not pass for an answer.
        let n = tokio::select! {
            biased;
            _ = answer.peek(&mut probe) => return Ok(false),
            read = tokio::time::timeout(read_timeout_each, limited.read_buf(scratch)) => match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => return Err(Failure::Client),
            },
        };
        tokio::select! {
            biased;
            _ = answer.peek(&mut probe) => return Ok(false),
            written = tokio::time::timeout(write_timeout, to_app.write_all(&scratch[..n])) => {
                match written {
                    Ok(written) => written.map_err(closed)?,
                    Err(_) => return Err(closed(io::ErrorKind::TimedOut.into())),
                }
            }
        }
        left -= n as u64;
    }
    Ok(true)
}

/// The app failed while its response body was being forwarded.
fn mid_response(e: io::Error) -> Failure {
    match e.kind() {
        io::ErrorKind::TimedOut => Failure::UpstreamMidResponse(
            UpstreamErrorKind::Timeout,
            "the app stalled mid-response".into(),
        ),
        _ => Failure::UpstreamMidResponse(UpstreamErrorKind::Closed, e.to_string()),
    }
}

fn closed(e: io::Error) -> Failure {
    Failure::Upstream(UpstreamErrorKind::Closed, e.to_string())
}

fn reserve(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

async fn read_timeout(s: &mut TcpStream, buf: &mut Vec<u8>, t: Duration) -> io::Result<usize> {
    match tokio::time::timeout(t, s.read_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// A small text response made by lameduck itself; the connection closes after it.
pub fn error_response(code: u16, body: &str) -> Vec<u8> {
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let retry = if matches!(code, 502 | 503) {
        "Retry-After: 1\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n{retry}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
