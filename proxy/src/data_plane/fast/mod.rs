//! The HTTP/1.1 fast path: lameduck's own forwarding of the plain requests that make up almost
//! all of a sidecar's traffic.
//!
//! Why not pingora-proxy for everything: a sidecar's cost is paid in every pod, and the
//! benchmark (docs/benchmarks.md) found pingora-proxy spending ~110k instructions and ~86
//! allocations per request where nginx spends 21k. A sidecar in front of one app on loopback
//! needs far less than a general proxy: no routing, no cache, no TLS, one upstream. So a request
//! whose framing is unambiguous is forwarded here, in the connection's own task, with one read
//! and one write per direction for small messages and no per-request task or channel;
//! and it is lameduck's only HTTP/1 forwarder, so every HTTP/1 request (chunked uploads,
//! HTTP/1.0, `Expect`, absolute-form, WebSocket upgrades, malformed heads) meets one set of
//! rules ([`head`]). pingora-proxy serves HTTP/2 only.
//!
//! Bodies are forwarded in the framing they came in, except a close-delimited response to an
//! HTTP/1.1 client, which is re-framed as chunked so that a body the app cut short is seen to
//! be cut. Once a response head has gone to the client, a failure never writes a byte more: the
//! connection is closed (reset, when a close would look like the end of the body).

pub mod body;
pub mod buffers;
pub mod head;
#[cfg(test)]
mod props;
pub mod websocket;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::data_plane::scope::{hold_until_ready, RequestScope};
use crate::lifecycle::Lifecycle;
use crate::metrics::{DataPlaneMetrics, UpstreamErrorKind};
use crate::phase::Phase;
use crate::upstream_pool::UpstreamPool;
use body::ChunkedEnd;
use head::{BodyFraming, Framing, RequestPlan, Response, ResponseContext, ResponsePlan};

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
    /// The response was cut after its head went out and a plain close would look like its
    /// end (a close-delimited body): reset the connection instead.
    Abort,
}

/// Everything the fast path needs, shared by all connections.
pub struct FastPath {
    pub lc: Arc<Lifecycle>,
    pub metrics: Arc<DataPlaneMetrics>,
    pub pool: Arc<UpstreamPool>,
    pub upstream: SocketAddr,
    pub client_read_timeout: Duration,
    pub upstream_timeout: Duration,
    /// A client that accepts no byte of its response for this long is gone.
    pub client_write_timeout: Duration,
    /// `--startup-hold`: how long a request that arrives before the app is ready waits.
    pub startup_hold: Duration,
}

/// What goes to the app: the first write (head and the body bytes already read), and what of
/// the body is still to come from the client.
struct Outgoing {
    request: Vec<u8>,
    rest: Remaining,
}

/// The app's answer to a request: the connection it came on, its head, and whether that
/// connection can go back to the pool afterwards.
struct Answered {
    up: TcpStream,
    resp: ResponsePlan,
    app_reusable: bool,
}

/// A response body on its way: the client it goes to, the app connection it comes from, and
/// the buffer that holds what came with the head (the body's first bytes start at `head_len`).
struct Body<'a> {
    client: &'a mut TcpStream,
    up: &'a mut TcpStream,
    ubuf: &'a mut Vec<u8>,
    head_len: usize,
}

/// Why a request could not be completed.
enum Failure {
    /// The app failed before the client got anything: answer with an error response.
    Upstream(UpstreamErrorKind, String),
    /// The app failed mid-response: the client connection can only be cut.
    UpstreamMidResponse(UpstreamErrorKind, String),
    /// The same, for a body whose end is the connection's close: only a reset tells.
    UpstreamMidResponseUntilClose(UpstreamErrorKind, String),
    /// The client's body is malformed (a bad chunk): answered 400, the app's connection
    /// dropped (it has part of a request).
    BadRequest(&'static str),
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
        let mut scope = RequestScope::open(&self.lc, &self.metrics);
        if scope.phase() == Phase::Starting && !self.lc.app_ready() {
            let held =
                hold_until_ready(&self.lc, &self.metrics, self.startup_hold, self.upstream).await;
            if let Err(refusal) = held {
                let _ = self.write(client, &error_response(503, &refusal)).await;
                scope.answered(503);
                return Outcome::Close;
            }
        }
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
            Err(Failure::UpstreamMidResponseUntilClose(kind, error)) => {
                self.upstream_failed(kind, 0, &error);
                (None, Outcome::Abort)
            }
            Err(Failure::BadRequest(why)) => {
                let _ = self
                    .write(
                        client,
                        &error_response(400, &format!("lameduck: bad request: {why}\n")),
                    )
                    .await;
                (Some(400), Outcome::CloseLingering)
            }
        };
        if let Some(status) = status {
            scope.answered(status);
        }
        outcome
    }

    /// Answers a request lameduck refuses (malformed, ambiguous framing) and ends the
    /// connection: after a head that cannot be read, nothing on it can be.
    pub async fn reject(&self, mut client: TcpStream, code: u16, why: &str) {
        let mut scope = RequestScope::open(&self.lc, &self.metrics);
        let body = format!("lameduck: bad request: {why}\n");
        let _ = self.write(&mut client, &error_response(code, &body)).await;
        scope.answered(code);
        drop(scope);
        crate::data_plane::linger_close(client).await;
    }

    fn upstream_failed(&self, kind: UpstreamErrorKind, status: u16, error: &str) {
        self.metrics.upstream_error(kind);
        tracing::warn!(kind = kind.as_str(), status, upstream = %self.upstream, error, "upstream error");
    }

    async fn exchange(
        &self,
        client: &mut TcpStream,
        buf: &mut Vec<u8>,
        mut plan: RequestPlan,
        mut deadline: Pin<&mut Sleep>,
    ) -> Result<(u16, Outcome), Failure> {
        let mut outgoing = self.first_write(client, buf, &mut plan).await?;
        let mut ubuf = buffers::take();
        let answered = self
            .send(
                client,
                buf,
                &mut plan,
                &mut outgoing,
                &mut ubuf,
                deadline.as_mut(),
            )
            .await?;
        let Answered {
            mut up,
            resp,
            app_reusable,
        } = answered;
        if resp.switching {
            return self
                .tunnel(client, up, buf, ubuf, resp, plan.websocket)
                .await;
        }
        let status = resp.status;
        let close = resp.closes_client;
        let reusable = self
            .forward_response(client, &mut up, &mut ubuf, resp)
            .await?;
        if reusable && app_reusable {
            self.pool.put(up);
        }
        buffers::give(outgoing.request);
        buffers::give(ubuf);
        let outcome = match (close, app_reusable) {
            (_, false) => Outcome::CloseLingering,
            (true, true) => Outcome::Close,
            (false, true) => Outcome::KeepAlive,
        };
        Ok((status, outcome))
    }

    /// The bytes of the first write to the app: the head and whatever part of the body came
    /// with it, taken out of `buf`; and what of the body is still to come. Answers
    /// `100 Continue` when the client waits for it.
    async fn first_write(
        &self,
        client: &mut TcpStream,
        buf: &mut Vec<u8>,
        plan: &mut RequestPlan,
    ) -> Result<Outgoing, Failure> {
        let in_buf = buf.len() - plan.head_len;
        let rest = match plan.body {
            BodyFraming::Length(n) => {
                let first = usize::try_from(n).map_or(in_buf, |n| n.min(in_buf));
                Remaining::Length(n - first as u64, first)
            }
            BodyFraming::Chunked => {
                let mut end = ChunkedEnd::default();
                match end.feed(&buf[plan.head_len..]) {
                    Ok(Some(k)) => Remaining::Length(0, k),
                    Ok(None) => Remaining::Chunked(end, in_buf),
                    Err(e) => return Err(Failure::BadRequest(e.0)),
                }
            }
        };
        let first = rest.first();
        let mut request = std::mem::take(&mut plan.upstream_head);
        request.extend_from_slice(&buf[plan.head_len..plan.head_len + first]);
        buf.drain(..plan.head_len + first);
        if plan.expect_continue && first == 0 && !rest.done() {
            // The client waits for this before it sends the body (RFC 9110, 10.1.1).
            self.write(client, b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        Ok(Outgoing { request, rest })
    }

    /// Sends the request to the app (on a pooled connection if there is one) and reads the
    /// head of its answer into `ubuf`.
    ///
    /// A pooled connection the app closed a moment ago fails on the write, or returns EOF
    /// before any byte of a response: the race of RFC 9112, 9.6. The request is sent again, once,
    /// on a new connection if the app cannot have acted on it: the write itself failed, or it
    /// is idempotent and nothing of it remained unsent.
    async fn send(
        &self,
        client: &mut TcpStream,
        buf: &mut Vec<u8>,
        plan: &mut RequestPlan,
        outgoing: &mut Outgoing,
        ubuf: &mut Vec<u8>,
        mut deadline: Pin<&mut Sleep>,
    ) -> Result<Answered, Failure> {
        let Outgoing { request, rest } = outgoing;
        let mut retried = false;
        let mut app_reusable = true;
        loop {
            let conn = self
                .pool
                .get()
                .await
                .map_err(|e| Failure::Upstream(e.kind, e.to_string()))?;
            let mut up = conn.stream;
            let may_retry = conn.reused && !retried && rest.done();
            if let Err(e) = self.write_upstream(&mut up, request).await {
                if may_retry {
                    retried = true;
                    self.metrics.upstream_retries.inc();
                    continue;
                }
                return Err(closed(e));
            }
            if !rest.done() {
                let timeouts = (self.client_read_timeout, self.upstream_timeout);
                if !send_body(client, &mut up, rest, buf, timeouts).await? {
                    // The app answered before it had the whole body (a 413, a 401 on an
                    // upload). Its answer is the client's; the rest of the body is still in
                    // the client's socket, so this connection ends after it, and so does the
                    // app's, whose state we cannot know.
                    plan.client_close = true;
                    app_reusable = false;
                    buf.clear();
                }
            }
            ubuf.clear();
            match self
                .read_response_head(&mut up, ubuf, plan, client, deadline.as_mut())
                .await
            {
                Ok(resp) => {
                    return Ok(Answered {
                        up,
                        resp,
                        app_reusable,
                    })
                }
                Err(Failure::Upstream(UpstreamErrorKind::Closed, _))
                    if may_retry && plan.idempotent && ubuf.is_empty() =>
                {
                    retried = true;
                    self.metrics.upstream_retries.inc();
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// After a 101: the connection is a tunnel between the client and the app until either
    /// side closes it. Bytes each side sent early (the client's first frames, the app's after
    /// its 101) are passed on first. A WebSocket is told to go when draining begins (Close
    /// 1001 to both sides, [`websocket`]); another upgraded protocol runs until the drain
    /// timeout cuts it.
    async fn tunnel(
        &self,
        client: &mut TcpStream,
        mut up: TcpStream,
        buf: &mut Vec<u8>,
        ubuf: Vec<u8>,
        resp: ResponsePlan,
        is_websocket: bool,
    ) -> Result<(u16, Outcome), Failure> {
        let mut out = resp.client_head;
        out.extend_from_slice(&ubuf[resp.head_len..]);
        self.write(client, &out).await?;
        buffers::give(out);
        buffers::give(ubuf);
        if !buf.is_empty() {
            self.write_upstream(&mut up, buf).await.map_err(closed)?;
            buf.clear();
        }
        if !is_websocket {
            let _ = tokio::io::copy_bidirectional(client, &mut up).await;
            return Ok((resp.status, Outcome::Close));
        }
        let to_app = websocket::close_to_app(mask_key());
        let to_client = websocket::close_to_client();
        let (client_read, client_write) = client.split();
        let (app_read, app_write) = up.split();
        let (a, b) = tokio::join!(
            websocket::relay(
                app_read,
                client_write,
                &to_client,
                self.lc.reached(Phase::Draining)
            ),
            websocket::relay(
                client_read,
                app_write,
                &to_app,
                self.lc.reached(Phase::Draining)
            ),
        );
        if matches!(a, Ok(true)) || matches!(b, Ok(true)) {
            self.metrics.websocket_going_away.inc();
        }
        Ok((resp.status, Outcome::Close))
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
                let cx = ResponseContext {
                    is_head: plan.is_head,
                    close_client: plan.client_close || self.lc.phase().is_shutting_down(),
                    http10: plan.http10,
                    upgrade: plan.upgrade,
                };
                match head::parse_response(ubuf, cx) {
                    Response::Forward(resp) if resp.interim => {
                        // An HTTP/1.0 client knows no 1xx (RFC 9110, 15.2); and lameduck
                        // answered `100-continue` itself.
                        let ours = resp.status == 100 && plan.expect_continue;
                        if !plan.http10 && !ours {
                            self.write(client, &resp.client_head).await?;
                        }
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
        let reusable = resp.upstream_reusable;
        let head_len = resp.head_len;
        let out = resp.client_head;
        let body = Body {
            client,
            up,
            ubuf,
            head_len,
        };
        let ended_clean = match resp.framing {
            Framing::Empty => {
                let clean = body.ubuf.len() == head_len;
                self.write_head_with(body.client, out, &[]).await?;
                clean
            }
            Framing::Length(n) => self.send_length(body, out, n).await?,
            Framing::Chunked => self.send_chunked(body, out).await?,
            Framing::UntilClose if resp.rechunk => self.send_rechunked(body, out).await?,
            Framing::UntilClose => self.send_until_close(body, out).await?,
        };
        Ok(ended_clean && reusable)
    }

    /// The client head with the first bytes of the body appended, in one write; the head's
    /// buffer goes back to the pool.
    async fn write_head_with(
        &self,
        client: &mut TcpStream,
        mut out: Vec<u8>,
        body: &[u8],
    ) -> Result<(), Failure> {
        out.extend_from_slice(body);
        let written = self.write(client, &out).await;
        buffers::give(out);
        written
    }

    /// A `Content-Length` body. Returns whether the app sent nothing past it.
    async fn send_length(&self, b: Body<'_>, out: Vec<u8>, n: u64) -> Result<bool, Failure> {
        let body = &b.ubuf[b.head_len..];
        let take = usize::try_from(n).map_or(body.len(), |n| n.min(body.len()));
        let extra = body.len() > take;
        self.write_head_with(b.client, out, &body[..take]).await?;
        let rest = n - take as u64;
        if rest > 0 {
            self.copy_exact(b.up, b.client, rest, b.ubuf).await?;
        }
        Ok(!extra)
    }

    /// A chunked body, passed on as it is, up to its last chunk (tracked by [`ChunkedEnd`]).
    /// Returns whether the app sent nothing past it.
    async fn send_chunked(&self, b: Body<'_>, out: Vec<u8>) -> Result<bool, Failure> {
        let mut end = ChunkedEnd::default();
        let bad = |e: body::BadChunk| {
            Failure::UpstreamMidResponse(UpstreamErrorKind::Protocol, e.to_string())
        };
        let body = &b.ubuf[b.head_len..];
        let mut done = end.feed(body).map_err(bad)?;
        let mut extra = done.is_some_and(|k| k < body.len());
        self.write_head_with(b.client, out, &body[..done.unwrap_or(body.len())])
            .await?;
        while done.is_none() {
            if self.next_piece(b.up, b.ubuf).await? == 0 {
                return Err(mid_response(io::ErrorKind::UnexpectedEof.into()));
            }
            done = end.feed(b.ubuf).map_err(bad)?;
            extra = done.is_some_and(|k| k < b.ubuf.len());
            self.write(b.client, &b.ubuf[..done.unwrap_or(b.ubuf.len())])
                .await?;
        }
        Ok(!extra)
    }

    /// A body that ends when the app closes, sent to an HTTP/1.1 client as chunks: each piece
    /// as a chunk, the last chunk only at the app's clean EOF, so a body the app cut short
    /// (reset, stall) ends without it, which every client detects. Never reusable.
    async fn send_rechunked(&self, b: Body<'_>, mut out: Vec<u8>) -> Result<bool, Failure> {
        push_chunk(&mut out, &b.ubuf[b.head_len..]);
        self.write_head_with(b.client, out, &[]).await?;
        let mut framed = buffers::take();
        loop {
            let n = self.next_piece(b.up, b.ubuf).await?;
            framed.clear();
            if n == 0 {
                framed.extend_from_slice(b"0\r\n\r\n");
                self.write(b.client, &framed).await?;
                break;
            }
            push_chunk(&mut framed, b.ubuf);
            self.write(b.client, &framed).await?;
        }
        buffers::give(framed);
        Ok(false)
    }

    /// A body that ends when the app closes, passed on as it is (to an HTTP/1.0 client, or
    /// with a Transfer-Encoding other than chunked); the client's connection closes after it.
    /// Never reusable.
    async fn send_until_close(&self, b: Body<'_>, out: Vec<u8>) -> Result<bool, Failure> {
        self.write_head_with(b.client, out, &b.ubuf[b.head_len..])
            .await?;
        let until_close = |f| match f {
            Failure::UpstreamMidResponse(kind, e) => {
                Failure::UpstreamMidResponseUntilClose(kind, e)
            }
            other => other,
        };
        while self.next_piece(b.up, b.ubuf).await.map_err(until_close)? > 0 {
            self.write(b.client, b.ubuf).await?;
        }
        Ok(false)
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

/// What is left of a request body after the part that came with its head.
enum Remaining {
    /// This many bytes (after `first` in the client's buffer).
    Length(u64, usize),
    /// A chunked body whose end has not been seen yet.
    Chunked(ChunkedEnd, usize),
}

impl Remaining {
    /// Bytes of body that came with the head.
    fn first(&self) -> usize {
        match self {
            Remaining::Length(_, first) | Remaining::Chunked(_, first) => *first,
        }
    }

    fn done(&self) -> bool {
        matches!(self, Remaining::Length(0, _))
    }
}

/// Streams the rest of a request body from the client to the app, never forwarding past its
/// end: what follows may be the client's next request (pipelining), and stays in `buf`.
/// Returns false when the app began to answer before it had the whole body: the sending
/// stops there.
async fn send_body(
    client: &mut TcpStream,
    up: &mut TcpStream,
    rest: &mut Remaining,
    buf: &mut Vec<u8>,
    (read_timeout_each, write_timeout): (Duration, Duration),
) -> Result<bool, Failure> {
    let mut probe = [0u8; 1];
    let (mut answer, mut to_app) = up.split();
    // Bytes of the client's next request read past a chunked body's end.
    let mut next_request: Option<usize> = None;
    while !rest.done() {
        buf.clear();
        reserve(buf);
        let read = async {
            match rest {
                Remaining::Length(left, _) => (&mut *client).take(*left).read_buf(buf).await,
                Remaining::Chunked(..) => client.read_buf(buf).await,
            }
        };
        // `peek`, not `readable`: a readiness left over from the connection's last response
        // must not pass for an answer.
        let n = tokio::select! {
            biased;
            _ = answer.peek(&mut probe) => return Ok(false),
            read = tokio::time::timeout(read_timeout_each, read) => match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => return Err(Failure::Client),
            },
        };
        let send = match rest {
            Remaining::Length(left, first) => {
                *rest = Remaining::Length(*left - n as u64, *first);
                n
            }
            Remaining::Chunked(end, first) => match end.feed(&buf[..n]) {
                Ok(Some(k)) => {
                    next_request = Some(k);
                    *rest = Remaining::Length(0, *first);
                    k
                }
                Ok(None) => n,
                Err(e) => return Err(Failure::BadRequest(e.0)),
            },
        };
        tokio::select! {
            biased;
            _ = answer.peek(&mut probe) => return Ok(false),
            written = tokio::time::timeout(write_timeout, to_app.write_all(&buf[..send])) => {
                match written {
                    Ok(written) => written.map_err(closed)?,
                    Err(_) => return Err(closed(io::ErrorKind::TimedOut.into())),
                }
            }
        }
    }
    match next_request {
        Some(k) => {
            buf.drain(..k);
        }
        // `buf` was the scratch space: nothing in it is the client's next request.
        None => buf.clear(),
    }
    Ok(true)
}

/// A masking key for the frames lameduck sends the app (RFC 6455, 5.3 asks for unpredictable
/// ones; std's per-process random hasher keys are).
fn mask_key() -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let k = h.finish().to_le_bytes();
    [k[0], k[1], k[2], k[3]]
}

/// Appends `data` as one chunk (nothing for no data: an empty chunk is the last one).
fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
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
