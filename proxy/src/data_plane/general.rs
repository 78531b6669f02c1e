//! The general forwarder: pingora-proxy, for every request the fast path does not take
//! (HTTP/2, upgrades, chunked uploads, HTTP/1.0, `Expect`, absolute-form targets, malformed
//! requests). A connection handed to it stays with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};

use super::scope::{hold_until_ready, upstream_error_response, RequestScope};
use crate::config::DataPlaneConfig;
use crate::lifecycle::Lifecycle;
use crate::metrics::{DataPlaneMetrics, UpstreamErrorKind};
use crate::phase::Phase;

/// Hop-by-hop headers (RFC 9110, 7.6.1): they describe one connection, so they are never
/// forwarded. `Connection` and `Upgrade` are kept on upgrade requests, which need them.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Forwards each request to the app; see the module docs.
pub struct Forwarder {
    lc: Arc<Lifecycle>,
    metrics: Arc<DataPlaneMetrics>,
    peer: HttpPeer,
    upstream: SocketAddr,
    startup_hold: Duration,
}

impl Forwarder {
    pub fn new(args: &DataPlaneConfig, lc: Arc<Lifecycle>, metrics: Arc<DataPlaneMetrics>) -> Self {
        let mut peer = HttpPeer::new(args.upstream, false, String::new());
        peer.options.connection_timeout = Some(args.upstream_connect_timeout);
        peer.options.read_timeout = Some(args.upstream_timeout);
        peer.options.write_timeout = Some(args.upstream_timeout);
        // Below typical app keep-alive timeouts (Go's and hyper's default to none or 60s+), so
        // lameduck is the side that closes pooled connections.
        peer.options.idle_timeout = Some(Duration::from_secs(30));
        Forwarder {
            lc,
            metrics,
            peer,
            upstream: args.upstream,
            startup_hold: args.startup_hold,
        }
    }
}

/// What lameduck knows about one request while pingora-proxy runs it.
pub struct RequestCtx {
    /// Opened when pingora has read the request head; recorded when pingora drops the context
    /// after its `logging` step, with the status `logging` found written.
    scope: RequestScope,
    upstream_error: Option<UpstreamErrorKind>,
}

fn classify(e: &Error) -> Option<UpstreamErrorKind> {
    use ErrorType::*;
    let kind = match e.etype() {
        ConnectRefused => UpstreamErrorKind::ConnectRefused,
        ConnectTimedout => UpstreamErrorKind::ConnectTimeout,
        ConnectNoRoute | ConnectError | SocketError | BindError => UpstreamErrorKind::ConnectError,
        _ if e.esource() != &ErrorSource::Upstream => return None,
        ReadTimedout | WriteTimedout => UpstreamErrorKind::Timeout,
        ConnectionClosed | ReadError | WriteError => UpstreamErrorKind::Closed,
        _ => UpstreamErrorKind::Protocol,
    };
    Some(kind)
}

#[async_trait]
impl ProxyHttp for Forwarder {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            scope: RequestScope::open(&self.lc, &self.metrics),
            upstream_error: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if ctx.scope.phase() == Phase::Starting && !self.lc.app_ready() {
            let held =
                hold_until_ready(&self.lc, &self.metrics, self.startup_hold, self.upstream).await;
            if let Err(refusal) = held {
                respond(session, 503, &refusal).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Only ever the configured upstream: an absolute-form request URI cannot make lameduck
        // connect anywhere else.
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        let upgrade = session.is_upgrade_req();
        // Headers named in `Connection` are hop-by-hop too.
        let named: Vec<String> = req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        for name in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
            if upgrade && (name == "connection" || name == "upgrade") {
                continue;
            }
            req.remove_header(name);
        }
        // Absolute-form (`GET http://host/path`): forward origin-form, the authority as Host.
        // (pingora has already refused a Host that contradicts the authority.)
        let raw = req.raw_path();
        if !raw.starts_with(b"/") && raw != b"*" {
            let bad = || Error::explain(ErrorType::InvalidHTTPHeader, "unparsable request target");
            let target: http::Uri = std::str::from_utf8(raw)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(bad)?;
            let path = target.path_and_query().map_or("/", |p| p.as_str());
            req.set_uri(path.parse().map_err(|_| bad())?);
            if let Some(authority) = target.authority() {
                req.insert_header(http::header::HOST, authority.as_str())?;
            }
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let ip = client.ip().to_string();
            let xff = match req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip,
            };
            req.insert_header("x-forwarded-for", xff)?;
        }
        // Keep what an ingress in front already said (it terminated TLS); else we saw plain HTTP.
        if !req.headers.contains_key("x-forwarded-proto") {
            req.insert_header("x-forwarded-proto", "http")?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        resp.remove_header("keep-alive");
        resp.remove_header("proxy-connection");
        if self.lc.phase().is_shutting_down() {
            // HTTP/1.1: pingora writes `Connection: close` and closes after the response, so
            // the client's next request opens a connection that the fronts route elsewhere.
            session.set_keepalive(None);
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        ctx.upstream_error = classify(&e);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.upstream_error = classify(&e);
        let mut e = e.more_context(format!("upstream {peer}"));
        // pingora's default policy: retry only idempotent requests, and only when a pooled
        // connection turned out to be closed by the app.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let kind = ctx.upstream_error.or_else(|| classify(e));
        let (code, body) = match (kind, e.etype()) {
            (_, ErrorType::HTTPStatus(code)) => (*code, String::new()),
            (Some(kind), _) => upstream_error_response(kind, self.upstream),
            // The client's side: a broken connection gets nothing, anything else a 400.
            (None, ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed) => {
                (0, String::new())
            }
            (None, ErrorType::ReadTimedout) => {
                (408, "lameduck: timed out reading the request\n".into())
            }
            (None, _) if e.esource() == &ErrorSource::Downstream => {
                (400, "lameduck: bad request\n".into())
            }
            (None, _) => (500, "lameduck: internal error\n".into()),
        };
        // Once the response head is out, a failure may only abort: writing an error text now
        // would append it to the body and end it cleanly, a corrupted response that looks
        // whole. Returning without writing drops the stream unfinished, which HTTP/2 sends as
        // RST_STREAM.
        let head_sent = session.response_written().is_some();
        let code = if head_sent { 0 } else { code };
        if let Some(kind) = kind {
            self.metrics.upstream_error(kind);
            tracing::warn!(kind = kind.as_str(), status = code, head_sent, upstream = %self.upstream, error = %e, "upstream error");
        }
        if code > 0 {
            if let Err(e) = respond(session, code, &body).await {
                tracing::debug!(error = %e, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(written) = session.response_written() {
            ctx.scope.answered(written.status.as_u16());
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // fail_to_proxy logs upstream errors with their kind; client-side errors are routine.
        true
    }
}

/// Writes a small text response made by lameduck itself, closing the connection after it.
async fn respond(session: &mut Session, code: u16, body: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(code, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    if matches!(code, 502 | 503) {
        resp.insert_header(http::header::RETRY_AFTER, "1")?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await?;
    session.finish_body().await
}
