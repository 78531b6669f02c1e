//! The data plane: every client connection, from accept to close, and how each request is
//! forwarded to the app.
//!
//! Rooms, each doing one job, and one shared request scope:
//! - [`DataPlane`] (this module) owns the *connection*: it accepts (until the drain begins), waits for a
//!   request while the connection is idle (and closes idle connections when draining begins),
//!   detects HTTP/2 (h2c), counts connections for the drain, and cuts them at the drain timeout.
//! - [`fast::FastPath`] forwards every HTTP/1 request, in the connection's own task: one
//!   reading of HTTP/1 framing for all of them ([`fast::head`]).
//! - [`h2`] serves HTTP/2 (h2c) clients and sends their streams to the app over h2c;
//!   [`general::Forwarder`], a pingora-proxy `ProxyHttp`, takes them instead when the app does
//!   not speak h2c.
//! - [`scope`]: what both forwarders share per request (holding it for the app, counting it,
//!   the error answers).
//!
//! Every forwarder holds early requests until the app is ready, add `Connection: close` once
//! the shutdown has begun, turn failures into 502/503/504 responses that say what happened,
//! and count everything the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

pub mod fast;
mod general;
mod h2;
pub mod scope;

use crate::config::{DataPlaneConfig, UpstreamProtocol};
use crate::lifecycle::Lifecycle;
use crate::metrics::{DataPlaneMetrics, GoawayReason};
use crate::phase::Phase;
use crate::upstream_pool::UpstreamPool;
use fast::head::{self, Request, RequestPlan};
use fast::{buffers, FastPath, Outcome};
use general::Forwarder;
use h2::H2Forwarder;

/// The first bytes of every HTTP/2 prior-knowledge (h2c) connection (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The first pause after a failed accept, and the longest.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Per-connection handling; see the module docs.
pub struct DataPlane {
    /// One permit per client connection that may be open (`--max-connections`).
    slots: Arc<tokio::sync::Semaphore>,
    max_connections: usize,
    /// The most connections open at once since the memory task last looked.
    high_water: Arc<AtomicUsize>,
    fast: FastPath,
    proxy: Arc<HttpProxy<Forwarder>>,
    /// HTTP/2 clients, when their requests go to the app as HTTP/2 (`--upstream-protocol`
    /// `auto` or `h2c`); else pingora-proxy takes them and speaks HTTP/1.1 to the app.
    h2: Option<Arc<H2Forwarder>>,
    /// `--upstream-protocol h2c`: HTTP/1 clients' connections go to [`H2Forwarder`] too.
    all_h2: bool,
    lc: Arc<Lifecycle>,
    metrics: Arc<DataPlaneMetrics>,
    /// pingora's view of the phase: true from LameDuck on (`Connection: close`, GOAWAY).
    lame_duck: ShutdownWatch,
    idle_timeout: Duration,
    client_read_timeout: Duration,
}

impl DataPlane {
    pub fn new(
        args: &DataPlaneConfig,
        lc: Arc<Lifecycle>,
        metrics: Arc<DataPlaneMetrics>,
        pool: Arc<UpstreamPool>,
    ) -> Self {
        let conf = Arc::new(pingora_core::server::configuration::ServerConf::default());
        let forwarder = Forwarder::new(args, lc.clone(), metrics.clone());
        let mut proxy = pingora_proxy::http_proxy(&conf, forwarder);
        let mut options = pingora_core::apps::HttpServerOptions::default();
        options.h2c = true;
        // As on the h2 path: a connection with no stream open for this long is closed.
        options.h2_idle_timeout = Some(args.idle_timeout);
        proxy.server_options = Some(options);
        let h2 = (args.upstream_protocol != UpstreamProtocol::Http1)
            .then(|| Arc::new(H2Forwarder::new(args, lc.clone(), metrics.clone())));
        let fast = FastPath {
            lc: lc.clone(),
            metrics: metrics.clone(),
            pool,
            upstream: args.upstream,
            client_read_timeout: args.client_read_timeout,
            upstream_timeout: args.upstream_timeout,
            client_write_timeout: args.idle_timeout,
            startup_hold: args.startup_hold,
        };
        let max_connections = args.max_connections;
        DataPlane {
            slots: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            max_connections,
            high_water: Arc::new(AtomicUsize::new(0)),
            fast,
            proxy: Arc::new(proxy),
            h2,
            all_h2: args.upstream_protocol == UpstreamProtocol::H2c,
            lame_duck: lc.lame_duck_watch(),
            lc,
            metrics,
            idle_timeout: args.idle_timeout,
            client_read_timeout: args.client_read_timeout,
        }
    }

    /// The high-water mark of open connections, for [`crate::memory`] (which resets it).
    pub fn high_water(&self) -> Arc<AtomicUsize> {
        self.high_water.clone()
    }

    /// Accepts connections until the drain begins, then closes the listener: from then on a
    /// connection attempt is refused, which every front retries elsewhere.
    ///
    /// At most `--max-connections` client connections are open at once: past that, new ones
    /// wait in the listen backlog. That keeps file descriptors for the app's connections and
    /// for the admin plane, whose `/ready` the kubelet must still reach when slow or idle
    /// clients hold the data plane. An accept that fails (EMFILE) is retried with a backoff
    /// of up to a second, logged once a second at most, not in a tight loop.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut phase = self.lc.subscribe();
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut last_log: Option<tokio::time::Instant> = None;
        let mut failures = 0u64;
        loop {
            let permit = match self.slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    self.metrics.connection_limit_reached.inc();
                    tracing::warn!(
                        max_connections = self.max_connections,
                        "connection limit reached; new connections wait in the backlog"
                    );
                    tokio::select! {
                        biased;
                        _ = phase.wait_for(|p| *p >= Phase::Draining) => break,
                        p = self.slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    }
                }
            };
            let accepted = tokio::select! {
                biased;
                _ = phase.wait_for(|p| *p >= Phase::Draining) => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    let open = self.max_connections - self.slots.available_permits();
                    self.high_water.fetch_max(open, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(self.clone().connection(stream, peer, permit));
                }
                // Out of file descriptors, or a connection reset before we took it: keep
                // serving the others, and back off so an EMFILE does not spin.
                Err(e) => {
                    self.metrics.accept_errors.inc();
                    failures += 1;
                    let now = tokio::time::Instant::now();
                    if last_log.is_none_or(|t| now - t >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, failures, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                        last_log = Some(now);
                        failures = 0;
                    }
                    tokio::select! {
                        biased;
                        _ = phase.wait_for(|p| *p >= Phase::Draining) => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
        tracing::debug!("listener closed");
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        _slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let _conn = self.lc.drain.connection();
        // Drained with this connection still open: the drain timeout cut it.
        let mut phase = self.lc.subscribe();
        let mut to_h2 = None;
        tokio::select! {
            biased;
            _ = self.serve(stream, peer, &mut to_h2) => {}
            _ = phase.wait_for(|p| *p == Phase::Drained) => {}
        }
        // Outside the cut above: an HTTP/2 connection ends its own streams at the drain
        // timeout (trailers, RST_STREAM) before it closes.
        if let (Some((stream, read)), Some(h2)) = (to_h2, self.h2.as_ref()) {
            let is_h2 = read.starts_with(H2_PREFACE);
            Box::pin(Arc::clone(h2).serve(stream, read, peer, is_h2)).await;
        }
    }

    /// Serves the HTTP/1 requests of one connection in order (pipelined ones too); hands an
    /// HTTP/2 connection to pingora-proxy.
    ///
    /// A connection for [`H2Forwarder`] (HTTP/2 with `--upstream-protocol auto|h2c`, any with
    /// `h2c`) is put in `to_h2` instead, for the caller.
    async fn serve(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        to_h2: &mut Option<(TcpStream, Vec<u8>)>,
    ) {
        let client_ip = peer.ip().to_string();
        // Per connection, not per request: the drain's signal, the idle timer and the app's
        // response deadline are registered once and then re-armed, which costs far less than
        // a watch subscription and two timers registered and dropped for every request.
        let draining = self.lc.reached(Phase::Draining);
        tokio::pin!(draining);
        let idle = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle);
        let response_deadline = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(response_deadline);
        // Taken when a request arrives and given back while the connection is idle: a thousand
        // idle keep-alive connections (an ingress controller's pool) then hold no buffers.
        let mut buf: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            if buf.is_empty()
                && !self
                    .wait_for_request(&stream, draining.as_mut(), idle.as_mut())
                    .await
            {
                return;
            }
            if buf.capacity() == 0 {
                buf = buffers::take();
            }
            let plan = match self
                .read_head(&mut stream, &mut buf, first, &client_ip)
                .await
            {
                Head::Request(plan) => plan,
                Head::Http2 => {
                    if let Some(h2) = &self.h2 {
                        // `auto` and an app without h2c: pingora-proxy, as HTTP/1.1.
                        if self.all_h2 || Box::pin(h2.app_speaks_h2c()).await {
                            *to_h2 = Some((stream, buf));
                            return;
                        }
                    }
                    return Box::pin(self.hand_to_pingora(stream, &buf)).await;
                }
                Head::AllToH2 => {
                    *to_h2 = Some((stream, buf));
                    return;
                }
                Head::Reject(code, why) => {
                    return Box::pin(self.fast.reject(stream, code, why)).await;
                }
                Head::Gone => return,
            };
            first = false;
            let deadline = response_deadline.as_mut();
            // Boxed: a request's state machine is large (kilobytes) and exists only while the
            // request does, so an idle connection's task stays small.
            let forward = Box::pin(self.fast.forward(&mut stream, &mut buf, plan, deadline));
            match forward.await {
                Outcome::KeepAlive => {}
                Outcome::Close => return,
                Outcome::CloseLingering => return linger_close(stream).await,
                Outcome::Abort => return abort(stream),
            }
            if buf.is_empty() {
                buffers::give(std::mem::take(&mut buf));
            }
        }
    }

    /// Reads until `buf` holds a whole request head (within `--client-read-timeout`), and says
    /// what the connection is: the first bytes of a connection may also be the HTTP/2 preface.
    async fn read_head(
        &self,
        stream: &mut TcpStream,
        buf: &mut Vec<u8>,
        first: bool,
        client_ip: &str,
    ) -> Head {
        let deadline = tokio::time::Instant::now() + self.client_read_timeout;
        loop {
            if !buf.is_empty() {
                let maybe_h2 = first && H2_PREFACE.starts_with(&buf[..buf.len().min(24)]);
                if maybe_h2 && buf.len() >= H2_PREFACE.len() {
                    return Head::Http2;
                }
                if !maybe_h2 && first && self.all_h2 {
                    // `h2c`: HTTP/1 too goes to the app as HTTP/2, through H2Forwarder.
                    return Head::AllToH2;
                }
                if !maybe_h2 {
                    match head::parse_request(buf, client_ip) {
                        Request::Partial => {}
                        Request::Forward(plan) => return Head::Request(plan),
                        Request::Reject(code, why) => return Head::Reject(code, why),
                    }
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(4096);
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                // Closed, failed, or a client trickling its head (slowloris): dropped without
                // a word, as nginx does (it is not reading anyway).
                Ok(_) | Err(_) => return Head::Gone,
            }
        }
    }

    /// Waits while the connection is idle. Returns false when it should close instead: the
    /// client closed it, it was idle too long, or draining began.
    ///
    /// Idle connections close when draining begins, not earlier: closing an idle keep-alive
    /// connection races with a client sending on it at that instant (RFC 9112, 9.6), and a POST
    /// lost in that race cannot be retried. The rollout lab lost POSTs this way through all
    /// three fronts when idle connections were closed as the window opened. During the window
    /// every response carries `Connection: close`, which moves clients elsewhere with no race;
    /// by the end of the window (quiet period) the fronts have stopped sending here.
    async fn wait_for_request(
        &self,
        stream: &TcpStream,
        draining: Pin<&mut impl Future<Output = ()>>,
        mut idle: Pin<&mut Sleep>,
    ) -> bool {
        idle.as_mut()
            .reset(tokio::time::Instant::now() + self.idle_timeout);
        tokio::select! {
            biased;
            ready = stream.readable() => ready.is_ok(),
            // Polled only here, and the connection ends when it fires: never polled again
            // after it completed.
            _ = draining => {
                self.metrics.idle_closed.inc();
                false
            }
            _ = idle => false,
        }
    }

    /// Gives an HTTP/2 (h2c) connection to pingora-proxy, with the bytes already read put
    /// back in front. pingora runs the connection (every stream in its own task) and sends
    /// GOAWAY when the window opens.
    async fn hand_to_pingora(&self, stream: TcpStream, read: &[u8]) {
        self.metrics.pingora_handoffs.inc();
        let lame_duck = self.lc.reached(Phase::LameDuck);
        tokio::pin!(lame_duck);
        let mut l4 = L4Stream::from(stream);
        // pingora reads the client address (X-Forwarded-For) from the socket digest.
        l4.set_socket_digest(SocketDigest::from_raw_fd(l4.as_raw_fd()));
        l4.rewind(read);
        let stream: Stream = Box::new(l4);
        let served = ServerApp::process_new(&self.proxy, stream, &self.lame_duck);
        tokio::pin!(served);
        tokio::select! {
            _ = &mut served => return,
            // pingora sends GOAWAY on the shutdown watch to a connection still open.
            _ = &mut lame_duck => self.metrics.http2_goaway(GoawayReason::Shutdown),
        }
        served.await;
    }
}

/// What the first bytes of a request (or of a connection) turned out to be.
enum Head {
    /// An HTTP/1 request to forward.
    Request(RequestPlan),
    /// The HTTP/2 preface.
    Http2,
    /// `--upstream-protocol h2c`: the connection goes to the h2 path whatever it speaks.
    AllToH2,
    /// A request refused with this status and reason.
    Reject(u16, &'static str),
    /// The client closed, failed, or was too slow to send a head.
    Gone,
}

/// Resets a connection (SO_LINGER 0): for a response cut mid-body whose end a plain close
/// would fake.
fn abort(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
}

/// How long a lingering close waits for the client to stop sending.
const LINGER: Duration = Duration::from_secs(2);

/// Closes a connection whose client may still be sending a body: FIN first, then read and
/// discard until the client closes too or [`LINGER`] passes, so the response already written
/// is not destroyed by a reset.
pub(crate) async fn linger_close(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.shutdown().await;
    // On the heap: an array here would grow every connection task's future by its size.
    let mut sink = buffers::take();
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            sink.clear();
            if !matches!(stream.read_buf(&mut sink).await, Ok(n) if n > 0) {
                break;
            }
        }
    })
    .await;
    buffers::give(sink);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunCommand;
    use clap::Parser;

    /// Every open connection is one task holding this future, idle keep-alive connections
    /// included (an ingress controller keeps hundreds): a request's state machine (kilobytes:
    /// the forwarder's nested futures) is boxed for the request's lifetime, so it is not part
    /// of it. Was 5.6 KiB per connection before that (debug build); now about 1.4 KiB.
    #[tokio::test]
    async fn an_idle_connection_task_holds_no_request_state() {
        let cfg = RunCommand::try_parse_from(["lameduck", "--upstream", "127.0.0.1:1"])
            .unwrap()
            .run
            .into_config()
            .unwrap();
        let m = crate::metrics::Metrics::new().unwrap();
        let lc = Lifecycle::new(m.shutdown.clone());
        let pool = Arc::new(UpstreamPool::new(
            cfg.data_plane.upstream,
            Duration::from_secs(1),
            m.data_plane.upstream_connections_opened.clone(),
        ));
        let dp = Arc::new(DataPlane::new(
            &cfg.data_plane,
            lc,
            m.data_plane.clone(),
            pool,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let permit = dp.slots.clone().acquire_owned().await.unwrap();
        let task = dp.clone().connection(stream, addr, permit);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2048, "a connection's task is {size} bytes");
    }
}
