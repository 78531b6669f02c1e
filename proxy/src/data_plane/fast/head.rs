//! Request and response heads: parsed with httparse, judged, and written out again with
//! lameduck's changes, in one pass each.
//!
//! This is lameduck's one reading of HTTP/1 framing (RFC 9112, 6): every HTTP/1 request goes
//! through it, so there is one set of rules, statuses and limits. A request whose framing is
//! ambiguous is refused (400), never interpreted: two different Content-Lengths,
//! Content-Length with Transfer-Encoding, a transfer coding other than `chunked`, a missing or
//! repeated Host, obs-fold. What is accepted is forwarded in one canonical form the app cannot
//! read two ways: one `Content-Length: N` (a list of equal values is folded into it), or
//! `Transfer-Encoding: chunked`.

use std::mem::MaybeUninit;

use httparse::Status;

/// Header lines a head may have (requests and responses): what nginx and pingora accept, so an
/// app behind lameduck sees no lower limit than behind them. (The array is left uninitialised:
/// httparse fills what it parses, and zeroing it per head was a tenth of the fast path's
/// instructions.)
pub const MAX_HEADERS: usize = 256;

/// The longest head lameduck buffers; a longer request head gets 431.
pub const MAX_HEAD: usize = 64 * 1024;

/// The header names lameduck acts on; every other header passes through as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    ForwardedFor,
    ForwardedProto,
    /// The other hop-by-hop headers (RFC 9110, 7.6.1): they describe one connection and are
    /// never forwarded. `Proxy-Authorization` is for a proxy, and lameduck is the last before
    /// the app.
    HopByHop,
    Other,
}

/// One length check, then one or two comparisons: this runs for every header of every request
/// and response.
fn classify(name: &str) -> Name {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    match name.len() {
        2 if is("te") => Name::HopByHop,
        4 if is("host") => Name::Host,
        6 if is("expect") => Name::Expect,
        7 if is("upgrade") => Name::Upgrade,
        7 if is("trailer") => Name::HopByHop,
        10 if is("connection") => Name::Connection,
        10 if is("keep-alive") => Name::HopByHop,
        14 if is("content-length") => Name::ContentLength,
        15 if is("x-forwarded-for") => Name::ForwardedFor,
        16 if is("proxy-connection") => Name::HopByHop,
        17 if is("transfer-encoding") => Name::TransferEncoding,
        17 if is("x-forwarded-proto") => Name::ForwardedProto,
        19 if is("proxy-authorization") => Name::HopByHop,
        _ => Name::Other,
    }
}

/// Whether a header stays with this hop: hop-by-hop by name, or named in `Connection`.
fn stays_here(kind: Name, name: &str, named: &[&[u8]]) -> bool {
    match kind {
        Name::Connection | Name::Upgrade | Name::HopByHop => true,
        Name::Other => named
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name.as_bytes())),
        _ => false,
    }
}

/// What to do with a request head.
pub enum Request {
    /// More bytes are needed.
    Partial,
    /// To forward.
    Forward(RequestPlan),
    /// Refused with this status and reason; the connection closes after the answer.
    Reject(u16, &'static str),
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length` (0 without one).
    Length(u64),
    /// `Transfer-Encoding: chunked`: forwarded chunk by chunk, its end found by
    /// [`super::body::ChunkedEnd`].
    Chunked,
}

/// A request to forward, and the head to send upstream.
pub struct RequestPlan {
    /// Bytes of the client's head (the body, if any, follows).
    pub head_len: usize,
    pub body: BodyFraming,
    /// HEAD: the response has no body whatever its headers say.
    pub is_head: bool,
    /// Safe to send twice (RFC 9110, 9.2.2) when a pooled connection turned out dead.
    pub idempotent: bool,
    /// The connection ends after this request: the client said `Connection: close`, or an
    /// HTTP/1.0 client did not ask for keep-alive.
    pub client_close: bool,
    /// An HTTP/1.0 client: its response is never chunked and gets no 1xx (RFC 9112, 6.1;
    /// RFC 9110, 15.2). The app is asked in HTTP/1.0 too, so it answers in a framing such a
    /// client reads.
    pub http10: bool,
    /// `Expect: 100-continue`: lameduck answers `100 Continue` itself when it wants the body
    /// (as nginx does) and does not pass the expectation on.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` (WebSocket): a 101 turns the connection into a
    /// tunnel.
    pub upgrade: bool,
    /// The upgrade is to WebSocket: told to go at the drain (see [`super::websocket`]).
    pub websocket: bool,
    /// The head to write to the app.
    pub upstream_head: Vec<u8>,
}

/// Why a request is refused: the status and the reason said to the client.
type Refusal = (u16, &'static str);

/// Parses a request head and, when it is to be forwarded, writes the head to send to the app:
/// the client's header lines in their order and spelling, minus hop-by-hop ones and the
/// framing headers (written once, canonically), plus `X-Forwarded-For` (the client appended)
/// and `X-Forwarded-Proto` (kept if a front set it).
pub fn parse_request(buf: &[u8], client_ip: &str) -> Request {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if buf.len() < MAX_HEAD => return Request::Partial,
        Ok(Status::Partial) => return Request::Reject(431, "request head too large"),
        Err(httparse::Error::TooManyHeaders) => {
            return Request::Reject(431, "too many header lines")
        }
        Err(_) => return Request::Reject(400, "malformed request head"),
    };
    match judge_request(&req, head_len, client_ip) {
        Ok(plan) => Request::Forward(plan),
        Err((code, why)) => Request::Reject(code, why),
    }
}

/// The rules, in order: the request line, each header, the framing as a whole; then the head
/// for the app.
fn judge_request(
    req: &httparse::Request,
    head_len: usize,
    client_ip: &str,
) -> Result<RequestPlan, Refusal> {
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err((400, "malformed request head"));
    };
    let http10 = version == 0;
    if method == "CONNECT" {
        return Err((501, "CONNECT is not supported"));
    }
    let target = Target::parse(method, path)?;
    let mut kinds = [Name::Other; MAX_HEADERS];
    let facts = HeaderFacts::read(req.headers, &mut kinds)?;
    facts.check(req.headers, http10, target.authority.as_ref())?;
    // An upgrade to h2c is not passed on: lameduck speaks HTTP/1.1 to the app for this
    // request, as nginx does.
    let upgrade = facts.has_upgrade && facts.connection_upgrade && !http10;
    let body = if facts.chunked {
        BodyFraming::Chunked
    } else {
        BodyFraming::Length(facts.length.unwrap_or(0))
    };
    let upstream_head = UpstreamHead {
        method,
        target: &target,
        http10,
        upgrade,
        body,
        facts: &facts,
        client_ip,
    }
    .write(req.headers, &kinds);
    Ok(RequestPlan {
        head_len,
        body,
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        client_close: facts.client_close || (http10 && !facts.keep_alive),
        http10,
        expect_continue: facts.expect_continue,
        upgrade,
        websocket: upgrade && facts.websocket,
        upstream_head,
    })
}

/// The request target as the app gets it: origin-form, `*` for OPTIONS, or absolute-form
/// turned into origin-form with its authority as Host (RFC 9112 3.2.2). lameduck connects
/// only to its app whatever the authority says.
struct Target<'a> {
    origin: std::borrow::Cow<'a, str>,
    authority: Option<http::uri::Authority>,
}

impl<'a> Target<'a> {
    fn parse(method: &str, path: &'a str) -> Result<Self, Refusal> {
        if path.starts_with('/') || (path == "*" && method == "OPTIONS") {
            return Ok(Target {
                origin: path.into(),
                authority: None,
            });
        }
        match path.parse::<http::Uri>() {
            Ok(uri) if uri.scheme().is_some() && uri.authority().is_some() => Ok(Target {
                origin: uri
                    .path_and_query()
                    .map_or("/".to_string(), |p| p.as_str().to_string())
                    .into(),
                authority: uri.authority().cloned(),
            }),
            _ => Err((400, "bad request target")),
        }
    }
}

/// What the request's headers say about its framing and its connection, read in one pass.
#[derive(Default)]
struct HeaderFacts<'a> {
    hosts: usize,
    length: Option<u64>,
    chunked: bool,
    client_close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    has_upgrade: bool,
    websocket: bool,
    expect_continue: bool,
    forwarded_proto: bool,
    /// Headers named in `Connection`: hop-by-hop too (RFC 9110, 7.6.1).
    named: Vec<&'a [u8]>,
}

impl<'a> HeaderFacts<'a> {
    /// Classifies every header (into `kinds`, for writing the head) and notes what it says.
    fn read(headers: &[httparse::Header<'a>], kinds: &mut [Name]) -> Result<Self, Refusal> {
        let mut facts = HeaderFacts::default();
        for (h, kind) in headers.iter().zip(kinds.iter_mut()) {
            *kind = classify(h.name);
            facts.note(*kind, h.value)?;
        }
        Ok(facts)
    }

    fn note(&mut self, kind: Name, value: &'a [u8]) -> Result<(), Refusal> {
        match kind {
            Name::Host => self.hosts += 1,
            Name::ContentLength => {
                // `5, 5` or two lines of `5` are one length; anything else is two framings.
                for value in value.split(|b| *b == b',') {
                    match parse_length(value) {
                        Some(n) if self.length.is_none_or(|l| l == n) => self.length = Some(n),
                        Some(_) => return Err((400, "conflicting Content-Length")),
                        None => return Err((400, "bad Content-Length")),
                    }
                }
            }
            Name::TransferEncoding => {
                for coding in tokens(value) {
                    if self.chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                        // Only `chunked`, once, and last (RFC 9112, 6.1); another coding is
                        // one lameduck cannot frame.
                        return Err((501, "unsupported Transfer-Encoding"));
                    }
                    self.chunked = true;
                }
                if !self.chunked {
                    return Err((400, "empty Transfer-Encoding"));
                }
            }
            Name::Upgrade => {
                self.has_upgrade = true;
                self.websocket |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
            }
            Name::Expect => {
                if !value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    return Err((417, "unsupported expectation"));
                }
                self.expect_continue = true;
            }
            Name::Connection => {
                for token in tokens(value) {
                    self.note_connection_token(token)?;
                }
            }
            Name::ForwardedProto => self.forwarded_proto = true,
            Name::ForwardedFor | Name::HopByHop | Name::Other => {}
        }
        Ok(())
    }

    fn note_connection_token(&mut self, token: &'a [u8]) -> Result<(), Refusal> {
        if token.eq_ignore_ascii_case(b"close") {
            self.client_close = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            // Names a header that is hop-by-hop anyway: not collected, so the common
            // `Connection: keep-alive` does not allocate.
            self.keep_alive = true;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            self.connection_upgrade = true;
        } else {
            let end_to_end = matches!(
                classify(std::str::from_utf8(token).unwrap_or("")),
                Name::Host | Name::ContentLength | Name::TransferEncoding
            );
            if end_to_end {
                return Err((400, "Connection names a framing header"));
            }
            self.named.push(token);
        }
        Ok(())
    }

    /// The rules about the headers together: one framing, one Host that agrees with the target.
    fn check(
        &self,
        headers: &[httparse::Header],
        http10: bool,
        authority: Option<&http::uri::Authority>,
    ) -> Result<(), Refusal> {
        if self.chunked && self.length.is_some() {
            return Err((400, "both Content-Length and Transfer-Encoding"));
        }
        if self.chunked && http10 {
            return Err((400, "Transfer-Encoding in an HTTP/1.0 request"));
        }
        if self.hosts > 1 || (self.hosts == 0 && !http10 && authority.is_none()) {
            return Err((400, "Host missing or repeated"));
        }
        if let Some(authority) = authority {
            // Two different hosts in one request is how requests are smuggled past routing.
            let host = headers.iter().find(|h| classify(h.name) == Name::Host);
            if host.is_some_and(|h| !h.value.eq_ignore_ascii_case(authority.as_str().as_bytes())) {
                return Err((400, "Host contradicts the request target"));
            }
        }
        Ok(())
    }
}

/// The head lameduck sends the app for an accepted request.
struct UpstreamHead<'r> {
    method: &'r str,
    target: &'r Target<'r>,
    http10: bool,
    upgrade: bool,
    body: BodyFraming,
    facts: &'r HeaderFacts<'r>,
    client_ip: &'r str,
}

impl UpstreamHead<'_> {
    fn write(&self, headers: &[httparse::Header], kinds: &[Name]) -> Vec<u8> {
        let mut out = super::buffers::take();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.origin.as_bytes());
        out.extend_from_slice(if self.http10 {
            b" HTTP/1.0\r\n".as_slice()
        } else {
            b" HTTP/1.1\r\n".as_slice()
        });
        if let Some(authority) = &self.target.authority {
            push_header(&mut out, b"Host", authority.as_str().as_bytes());
        }
        let prior_for = self.write_passed_headers(&mut out, headers, kinds);
        self.write_own_headers(&mut out, prior_for);
        out
    }

    /// The client's header lines that pass, in their order and spelling; returns the
    /// `X-Forwarded-For` values the client sent, joined.
    fn write_passed_headers(
        &self,
        out: &mut Vec<u8>,
        headers: &[httparse::Header],
        kinds: &[Name],
    ) -> Option<Vec<u8>> {
        let mut prior_for: Option<Vec<u8>> = None;
        for (h, &kind) in headers.iter().zip(kinds.iter()) {
            match kind {
                Name::ForwardedFor => {
                    let prior = prior_for.get_or_insert_with(Vec::new);
                    if !prior.is_empty() {
                        prior.extend_from_slice(b", ");
                    }
                    prior.extend_from_slice(h.value);
                    continue;
                }
                Name::Host if self.target.authority.is_some() => continue,
                // Written once below, canonically; lameduck answers `Expect` itself.
                Name::ContentLength | Name::TransferEncoding | Name::Expect => continue,
                Name::Upgrade if self.upgrade => {}
                _ if stays_here(kind, h.name, &self.facts.named) => continue,
                _ => {}
            }
            push_header(out, h.name.as_bytes(), h.value);
        }
        prior_for
    }

    /// The framing (canonical), the connection's, and the forwarding headers; the blank line.
    fn write_own_headers(&self, out: &mut Vec<u8>, prior_for: Option<Vec<u8>>) {
        match self.body {
            BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            BodyFraming::Length(n) if self.facts.length.is_some() => {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(n.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            BodyFraming::Length(_) => {}
        }
        if self.upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\n");
        } else if self.http10 {
            // Asked so that the app keeps the pooled connection; an HTTP/1.0 request is
            // otherwise the connection's last.
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"X-Forwarded-For: ");
        if let Some(prior) = prior_for {
            out.extend_from_slice(&prior);
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(self.client_ip.as_bytes());
        out.extend_from_slice(b"\r\n");
        if !self.facts.forwarded_proto {
            out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// How the response body is delimited (RFC 9112, 6.3), in the order the rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204, 304: no body whatever the headers say.
    Empty,
    /// `Transfer-Encoding` ending in `chunked`: forwarded as it is, chunk by chunk.
    Chunked,
    /// `Content-Length`.
    Length(u64),
    /// Neither: the body ends when the app closes. An HTTP/1.1 client gets it re-framed as
    /// chunked (see [`ResponsePlan::rechunk`]), so a body the app cut short is seen to be
    /// cut; an HTTP/1.0 client gets it as it is, and the connection closes after it.
    UntilClose,
}

/// What to do with a response head.
pub enum Response {
    Partial,
    Forward(ResponsePlan),
    /// Not a response we can forward: the client gets a 502.
    Invalid(&'static str),
}

pub struct ResponsePlan {
    pub head_len: usize,
    pub status: u16,
    /// 1xx: forward (to HTTP/1.1 clients), then read the final response after it.
    pub interim: bool,
    /// 101 to an upgrade request: the connection becomes a tunnel after this head.
    pub switching: bool,
    pub framing: Framing,
    /// A close-delimited body sent to the client in chunks.
    pub rechunk: bool,
    /// The app will keep the connection open after this response.
    pub upstream_reusable: bool,
    /// This is the client connection's last response (`Connection: close` was added).
    pub closes_client: bool,
    /// The head to write to the client.
    pub client_head: Vec<u8>,
}

/// What the response head depends on from its request and the moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseContext {
    pub is_head: bool,
    /// This is the connection's last response (lameduck is shutting down, the client asked).
    pub close_client: bool,
    pub http10: bool,
    pub upgrade: bool,
}

/// Parses the app's response head and writes the one to send to the client: the app's header
/// lines minus hop-by-hop ones, one canonical `Content-Length`, and `Connection: close` when
/// this is the connection's last response.
pub fn parse_response(buf: &[u8], cx: ResponseContext) -> Response {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if buf.len() < MAX_HEAD => return Response::Partial,
        Ok(Status::Partial) => return Response::Invalid("response head too large"),
        Err(httparse::Error::TooManyHeaders) => return Response::Invalid("too many headers"),
        Err(_) => return Response::Invalid("malformed response head"),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Response::Invalid("malformed response head");
    };
    match judge_response(&resp, head_len, version, status, cx) {
        Ok(plan) => Response::Forward(plan),
        Err(why) => Response::Invalid(why),
    }
}

/// The rules for a response head, in order (what it is, its headers, its framing), then the
/// head for the client.
fn judge_response(
    resp: &httparse::Response,
    head_len: usize,
    version: u8,
    status: u16,
    cx: ResponseContext,
) -> Result<ResponsePlan, &'static str> {
    let switching = status == 101;
    if switching && !cx.upgrade {
        return Err("101 without an Upgrade request");
    }
    let interim = (100..200).contains(&status) && !switching;
    let mut kinds = [Name::Other; MAX_HEADERS];
    let facts = ResponseFacts::read(resp.headers, &mut kinds, version)?;
    let framing = if cx.is_head || interim || switching || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (facts.chunked, facts.length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    if cx.http10 && framing == Framing::Chunked {
        // The app was asked in HTTP/1.0 and must not chunk (RFC 9112, 6.1).
        return Err("chunked response to an HTTP/1.0 request");
    }
    // Re-framed only when the app sent no Transfer-Encoding at all: one with another final
    // coding is rare, and is left close-delimited rather than rewritten.
    let rechunk = framing == Framing::UntilClose && !cx.http10 && facts.chunked.is_none();
    let close_client =
        !interim && (cx.close_client || (framing == Framing::UntilClose && !rechunk));
    let client_head = ClientHead {
        status,
        reason: resp.reason.unwrap_or(""),
        switching,
        interim,
        rechunk,
        close_client,
        facts: &facts,
    }
    .write(resp.headers, &kinds);
    Ok(ResponsePlan {
        head_len,
        status,
        interim,
        switching,
        framing,
        rechunk,
        upstream_reusable: !facts.app_close && !switching && framing != Framing::UntilClose,
        closes_client: close_client,
        client_head,
    })
}

/// What the app's headers say about the body's framing and the connection.
struct ResponseFacts<'a> {
    length: Option<u64>,
    /// `Some(true)`: Transfer-Encoding ending in chunked; `Some(false)`: another one.
    chunked: Option<bool>,
    app_close: bool,
    /// Headers named in `Connection`.
    named: Vec<&'a [u8]>,
}

impl<'a> ResponseFacts<'a> {
    fn read(
        headers: &[httparse::Header<'a>],
        kinds: &mut [Name],
        version: u8,
    ) -> Result<Self, &'static str> {
        let mut facts = ResponseFacts {
            length: None,
            chunked: None,
            app_close: version == 0,
            named: Vec::new(),
        };
        for (h, kind) in headers.iter().zip(kinds.iter_mut()) {
            *kind = classify(h.name);
            match *kind {
                Name::ContentLength => {
                    for value in h.value.split(|b| *b == b',') {
                        match parse_length(value) {
                            Some(n) if facts.length.is_none_or(|l| l == n) => {
                                facts.length = Some(n)
                            }
                            _ => return Err("bad Content-Length"),
                        }
                    }
                }
                Name::TransferEncoding => {
                    // Only the last coding decides (RFC 9112, 6.3): `gzip, chunked` is chunked.
                    let last = tokens(h.value).last();
                    facts.chunked = Some(last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
                }
                Name::Connection => facts.note_connection(h.value, version),
                _ => {}
            }
        }
        Ok(facts)
    }

    fn note_connection(&mut self, value: &'a [u8], version: u8) {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.app_close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                // HTTP/1.0 keeps the connection only when told; the name itself is hop-by-hop
                // anyway, so it is not collected (no allocation).
                self.app_close &= version != 0;
            } else if !token.eq_ignore_ascii_case(b"upgrade") {
                self.named.push(token);
            }
        }
    }
}

/// The head lameduck sends the client for the app's response.
struct ClientHead<'r> {
    status: u16,
    reason: &'r str,
    switching: bool,
    interim: bool,
    rechunk: bool,
    close_client: bool,
    facts: &'r ResponseFacts<'r>,
}

impl ClientHead<'_> {
    fn write(&self, headers: &[httparse::Header], kinds: &[Name]) -> Vec<u8> {
        let mut out = super::buffers::take();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa_status(self.status).as_slice());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (h, &kind) in headers.iter().zip(kinds.iter()) {
            match kind {
                // Written once below, canonically (beside a Transfer-Encoding, not at all).
                Name::ContentLength => continue,
                Name::Upgrade if self.switching => {}
                _ if stays_here(kind, h.name, &self.facts.named) => continue,
                _ => {}
            }
            push_header(&mut out, h.name.as_bytes(), h.value);
        }
        // With a Transfer-Encoding the length is meaningless (RFC 9112, 6.3) and must not
        // reach the client beside it, whatever the framing (a HEAD or 1xx answer included).
        if let (Some(n), None) = (self.facts.length, self.facts.chunked) {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.rechunk {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        // Said explicitly either way, as nginx and pingora do: HTTP/1.0-era clients behind an
        // ingress still look for `keep-alive`.
        if self.switching {
            out.extend_from_slice(b"Connection: upgrade\r\n");
        } else if self.close_client {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if !self.interim {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The comma-separated tokens of a list header, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// A Content-Length value: digits only (no sign, no spaces inside), at most 18 of them.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

fn itoa_status(status: u16) -> [u8; 3] {
    [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(raw: &str) -> RequestPlan {
        match parse_request(raw.as_bytes(), "10.0.0.9") {
            Request::Forward(p) => p,
            Request::Partial => panic!("partial: {raw}"),
            Request::Reject(code, why) => panic!("rejected ({code} {why}): {raw}"),
        }
    }

    fn reject(raw: &str) -> (u16, &'static str) {
        match parse_request(raw.as_bytes(), "10.0.0.9") {
            Request::Reject(code, why) => (code, why),
            _ => panic!("expected a refusal: {raw}"),
        }
    }

    fn upstream(raw: &str) -> String {
        String::from_utf8(plan(raw).upstream_head).unwrap()
    }

    #[test]
    fn request_head_is_rewritten_for_the_app() {
        let p = plan(
            "GET /a?b HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\
             X-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nTE: trailers\r\nX-Keep: k\r\n\r\n",
        );
        assert_eq!(
            String::from_utf8(p.upstream_head).unwrap(),
            "GET /a?b HTTP/1.1\r\nHost: h\r\nX-Keep: k\r\n\
             X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
        assert!(!p.client_close && p.idempotent && !p.is_head);
    }

    #[test]
    fn ambiguous_or_malformed_requests_are_refused() {
        let h = "Host: h\r\n";
        let cases = [
            (
                format!("POST / HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 2\r\n\r\n"),
                400,
            ),
            (
                format!("POST / HTTP/1.1\r\n{h}Content-Length: 1, 2\r\n\r\n"),
                400,
            ),
            (
                format!("POST / HTTP/1.1\r\n{h}Content-Length: +1\r\n\r\n"),
                400,
            ),
            (
                format!(
                    "POST / HTTP/1.1\r\n{h}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                ),
                400,
            ),
            (
                format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: gzip, chunked\r\n\r\n"),
                501,
            ),
            (
                format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked, chunked\r\n\r\n"),
                501,
            ),
            (
                format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: xchunked\r\n\r\n"),
                501,
            ),
            (
                format!("POST / HTTP/1.0\r\n{h}Transfer-Encoding: chunked\r\n\r\n"),
                400,
            ),
            (format!("GET / HTTP/1.1\r\n{h}Expect: magic\r\n\r\n"), 417),
            (
                format!("GET / HTTP/1.1\r\n{h}Connection: Host\r\n\r\n"),
                400,
            ),
            (format!("GET / HTTP/1.1\r\n{h}{h}\r\n"), 400),
            ("GET / HTTP/1.1\r\n\r\n".to_string(), 400),
            ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n".to_string(), 400),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n".to_string(),
                400,
            ),
            ("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n".to_string(), 501),
            ("NOT HTTP\r\n\r\n".to_string(), 400),
        ];
        for (raw, code) in cases {
            assert_eq!(reject(&raw).0, code, "{raw:?}");
        }
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(reject(&format!("GET / HTTP/1.1\r\n{h}{many}\r\n")).0, 431);
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost:", "ip"),
            Request::Partial
        ));
    }

    #[test]
    fn every_accepted_framing_is_forwarded_canonically() {
        let h = "Host: h\r\n";
        let up = upstream(&format!(
            "POST / HTTP/1.1\r\n{h}Content-Length: 5, 5\r\ncontent-length: 5\r\n\r\n"
        ));
        assert_eq!(up.matches("Content-Length").count(), 1, "{up}");
        assert!(up.contains("Content-Length: 5\r\n"), "{up}");
        let up = upstream(&format!(
            "POST / HTTP/1.1\r\n{h}Transfer-Encoding: Chunked\r\n\r\n"
        ));
        assert!(up.contains("Transfer-Encoding: chunked\r\n"), "{up}");
        assert_eq!(
            plan(&format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n"
            ))
            .body,
            BodyFraming::Chunked
        );
        // Absolute-form: origin-form to the app, the authority as Host.
        let up = upstream("GET http://a.example/p?q HTTP/1.1\r\nHost: A.example\r\n\r\n");
        assert!(
            up.starts_with("GET /p?q HTTP/1.1\r\nHost: a.example\r\n"),
            "{up}"
        );
        assert!(!up.contains("A.example"), "{up}");
        // HTTP/1.0: asked in HTTP/1.0, keep-alive only when the client asked.
        let p = plan("GET / HTTP/1.0\r\n\r\n");
        assert!(p.http10 && p.client_close);
        assert!(!plan("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").client_close);
        assert!(upstream("GET / HTTP/1.0\r\n\r\n").starts_with("GET / HTTP/1.0\r\n"));
        // Expect is answered here, not passed on.
        let p = plan(&format!(
            "POST / HTTP/1.1\r\n{h}Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        ));
        assert!(p.expect_continue);
        assert!(!String::from_utf8(p.upstream_head)
            .unwrap()
            .contains("Expect"));
        // An upgrade keeps Upgrade and Connection: upgrade; an h2c upgrade is dropped.
        let up = upstream(&format!(
            "GET / HTTP/1.1\r\n{h}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(
            up.contains("Upgrade: websocket\r\n") && up.contains("Connection: upgrade\r\n"),
            "{up}"
        );
        let up = upstream(&format!("GET / HTTP/1.1\r\n{h}Upgrade: websocket\r\n\r\n"));
        assert!(
            !up.contains("Upgrade"),
            "an Upgrade without Connection: upgrade is hop-by-hop: {up}"
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let frame = |raw: &str, is_head| match parse_response(
            raw.as_bytes(),
            ResponseContext {
                is_head,
                ..Default::default()
            },
        ) {
            Response::Forward(p) => p.framing,
            _ => panic!("{raw}"),
        };
        assert_eq!(
            frame("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false),
            Framing::Length(5)
        );
        assert_eq!(
            frame("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true),
            Framing::Empty
        );
        assert_eq!(
            frame(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Framing::Chunked
        );
        assert_eq!(frame("HTTP/1.1 200 OK\r\n\r\n", false), Framing::UntilClose);
        assert_eq!(
            frame("HTTP/1.1 304 Not Modified\r\n\r\n", false),
            Framing::Empty
        );
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                ResponseContext::default()
            ),
            Response::Invalid(_)
        ));
    }

    #[test]
    fn response_head_closes_the_client_when_told_and_drops_hop_by_hop() {
        let Response::Forward(p) = parse_response(
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            ResponseContext { close_client: true, ..Default::default() },
        ) else {
            panic!()
        };
        assert_eq!(
            String::from_utf8(p.client_head).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert!(p.upstream_reusable);
        let Response::Forward(p) = parse_response(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            ResponseContext::default(),
        ) else {
            panic!()
        };
        assert!(
            !p.upstream_reusable,
            "HTTP/1.0 closes unless it says keep-alive"
        );
    }
}
