//! Request and response heads: parsed with httparse, judged, and written out again with
//! lameduck's changes, in one pass each.
//!
//! The fast path takes only requests whose framing is unambiguous (RFC 9112, 6): HTTP/1.1,
//! origin-form target, one Host, at most one Content-Length, no Transfer-Encoding, no Upgrade,
//! no Expect. Everything else (chunked uploads, WebSocket, `100-continue`, absolute-form,
//! HTTP/1.0, and anything malformed, which must get a 400) goes to pingora-proxy, which knows
//! all of HTTP/1. That split keeps the code here small enough to read in one sitting and keeps
//! request smuggling out of it: a request with two framings is never ours to interpret.

use std::mem::MaybeUninit;

use httparse::Status;

/// Header lines a head may have on the fast path; a request with more goes to pingora. (The
/// array is left uninitialised: httparse fills what it parses, and zeroing 3 KiB per head was
/// a tenth of the fast path's instructions.)
const MAX_HEADERS: usize = 96;

/// The longest head the fast path buffers; a longer one goes to pingora, which refuses it.
pub const MAX_HEAD: usize = 64 * 1024;

/// The header names the fast path acts on; every other header passes through as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Host,
    ContentLength,
    /// Hop-by-hop too, but bodies are forwarded in the framing they came in, so a response's
    /// passes through (a request with one never reaches the fast path).
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
    /// Ours to forward.
    Forward(RequestPlan),
    /// pingora-proxy's to handle, with the bytes read so far put back.
    Fallback(&'static str),
}

/// A request the fast path forwards, and the head to send upstream.
pub struct RequestPlan {
    /// Bytes of the client's head (the body, if any, follows).
    pub head_len: usize,
    /// From Content-Length; 0 without one.
    pub body_len: u64,
    /// HEAD: the response has no body whatever its headers say.
    pub is_head: bool,
    /// Safe to send twice (RFC 9110, 9.2.2) when a pooled connection turned out dead.
    pub idempotent: bool,
    /// The client said `Connection: close`.
    pub client_close: bool,
    /// The head to write to the app.
    pub upstream_head: Vec<u8>,
}

/// Parses a request head and, when it is ours, writes the head to send to the app: the
/// client's header lines in their order and spelling, minus hop-by-hop ones, plus
/// `X-Forwarded-For` (the client appended) and `X-Forwarded-Proto` (kept if a front set it).
pub fn parse_request(buf: &[u8], client_ip: &str) -> Request {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) if buf.len() < MAX_HEAD => return Request::Partial,
        Ok(Status::Partial) => return Request::Fallback("head too large"),
        Err(httparse::Error::TooManyHeaders) => return Request::Fallback("many headers"),
        Err(_) => return Request::Fallback("malformed head"),
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Request::Fallback("not HTTP/1.1");
    };
    if !path.starts_with('/') {
        return Request::Fallback("not origin-form");
    }
    if method == "CONNECT" {
        return Request::Fallback("CONNECT");
    }

    let mut hosts = 0;
    let mut body_len = None;
    let mut client_close = false;
    let mut forwarded_proto = false;
    // Headers named in `Connection` are hop-by-hop too (RFC 9110, 7.6.1).
    let mut named: Vec<&[u8]> = Vec::new();
    let mut kinds = [Name::Other; MAX_HEADERS];
    for (h, kind) in req.headers.iter().zip(kinds.iter_mut()) {
        *kind = classify(h.name);
        match *kind {
            Name::Host => hosts += 1,
            Name::ContentLength => {
                if body_len.is_some() {
                    return Request::Fallback("several Content-Length");
                }
                match parse_length(h.value) {
                    Some(n) => body_len = Some(n),
                    None => return Request::Fallback("bad Content-Length"),
                }
            }
            Name::TransferEncoding => return Request::Fallback("Transfer-Encoding"),
            Name::Upgrade => return Request::Fallback("Upgrade"),
            Name::Expect => return Request::Fallback("Expect"),
            Name::Connection => {
                for token in tokens(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        client_close = true;
                    } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                        // `keep-alive` names a header that is hop-by-hop anyway; skipping it
                        // keeps the common `Connection: keep-alive` from allocating.
                        named.push(token);
                    }
                }
            }
            Name::ForwardedProto => forwarded_proto = true,
            Name::ForwardedFor | Name::HopByHop | Name::Other => {}
        }
    }
    if hosts != 1 {
        return Request::Fallback("Host missing or repeated");
    }

    let mut out = super::buffers::take();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut prior_for: Option<Vec<u8>> = None;
    for (h, &kind) in req.headers.iter().zip(kinds.iter()) {
        if kind == Name::ForwardedFor {
            let prior = prior_for.get_or_insert_with(Vec::new);
            if !prior.is_empty() {
                prior.extend_from_slice(b", ");
            }
            prior.extend_from_slice(h.value);
            continue;
        }
        if stays_here(kind, h.name, &named) {
            continue;
        }
        push_header(&mut out, h.name.as_bytes(), h.value);
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(prior) = prior_for {
        out.extend_from_slice(&prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !forwarded_proto {
        out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
    }
    out.extend_from_slice(b"\r\n");

    Request::Forward(RequestPlan {
        head_len,
        body_len: body_len.unwrap_or(0),
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
        client_close,
        upstream_head: out,
    })
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
    /// Neither: the body ends when the app closes, so the client connection must close too.
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
    /// 1xx: forward, then read the final response after it.
    pub interim: bool,
    pub framing: Framing,
    /// The app will keep the connection open after this response.
    pub upstream_reusable: bool,
    /// This is the client connection's last response (`Connection: close` was added).
    pub closes_client: bool,
    /// The head to write to the client.
    pub client_head: Vec<u8>,
}

/// Parses the app's response head and writes the one to send to the client: the app's header
/// lines minus hop-by-hop ones, plus `Connection: close` when `close_client` says this is the
/// connection's last response (lameduck is shutting down, the client asked, or the body is
/// delimited by close).
pub fn parse_response(buf: &[u8], is_head: bool, close_client: bool) -> Response {
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
    if status == 101 {
        // Only an Upgrade request may be answered with 101, and those go to pingora.
        return Response::Invalid("101 without an Upgrade request");
    }
    let interim = (100..200).contains(&status);

    let mut length = None;
    let mut chunked = None;
    let mut app_close = version == 0;
    let mut named: Vec<&[u8]> = Vec::new();
    let mut kinds = [Name::Other; MAX_HEADERS];
    for (h, kind) in resp.headers.iter().zip(kinds.iter_mut()) {
        *kind = classify(h.name);
        match *kind {
            Name::ContentLength => match parse_length(h.value) {
                Some(n) if length.is_none() || length == Some(n) => length = Some(n),
                _ => return Response::Invalid("bad Content-Length"),
            },
            Name::TransferEncoding => {
                // Only the last coding decides (RFC 9112, 6.3): `gzip, chunked` is chunked.
                let last = tokens(h.value).last();
                chunked = Some(last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")));
            }
            Name::Connection => {
                for token in tokens(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        app_close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        // HTTP/1.0 keeps the connection only when told; the name itself is
                        // hop-by-hop anyway, so it is not collected (no allocation).
                        app_close &= version != 0;
                    } else {
                        named.push(token);
                    }
                }
            }
            _ => {}
        }
    }
    let framing = if is_head || interim || status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    let close_client = !interim && (close_client || framing == Framing::UntilClose);

    let reason = resp.reason.unwrap_or("");
    let mut out = super::buffers::take();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa_status(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (h, &kind) in resp.headers.iter().zip(kinds.iter()) {
        if stays_here(kind, h.name, &named)
            // With chunked framing a Content-Length is wrong, and must not reach the client.
            || (framing == Framing::Chunked && kind == Name::ContentLength)
        {
            continue;
        }
        push_header(&mut out, h.name.as_bytes(), h.value);
    }
    // Said explicitly either way, as nginx and pingora do: HTTP/1.0-era clients behind an
    // ingress still look for `keep-alive`.
    if close_client {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if !interim {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");

    Response::Forward(ResponsePlan {
        head_len,
        status,
        interim,
        framing,
        upstream_reusable: !app_close && framing != Framing::UntilClose,
        closes_client: close_client,
        client_head: out,
    })
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
            Request::Fallback(why) => panic!("fallback ({why}): {raw}"),
        }
    }

    fn fallback(raw: &str) -> &'static str {
        match parse_request(raw.as_bytes(), "10.0.0.9") {
            Request::Fallback(why) => why,
            _ => panic!("expected a fallback: {raw}"),
        }
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
    fn framings_the_fast_path_does_not_interpret_go_to_pingora() {
        let h = "Host: h\r\n";
        assert_eq!(
            fallback(&format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n"
            )),
            "Transfer-Encoding"
        );
        assert_eq!(
            fallback(&format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 1\r\n\r\n"
            )),
            "several Content-Length"
        );
        assert_eq!(
            fallback(&format!("POST / HTTP/1.1\r\n{h}Content-Length: +1\r\n\r\n")),
            "bad Content-Length"
        );
        assert_eq!(
            fallback("GET / HTTP/1.1\r\n\r\n"),
            "Host missing or repeated"
        );
        assert_eq!(
            fallback("GET / HTTP/1.0\r\nHost: h\r\n\r\n"),
            "not HTTP/1.1"
        );
        assert_eq!(
            fallback("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            "not origin-form"
        );
        assert_eq!(fallback("NOT HTTP\r\n\r\n"), "malformed head");
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost:", "ip"),
            Request::Partial
        ));
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let frame = |raw: &str, is_head| match parse_response(raw.as_bytes(), is_head, false) {
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
                false,
                false
            ),
            Response::Invalid(_)
        ));
    }

    #[test]
    fn response_head_closes_the_client_when_told_and_drops_hop_by_hop() {
        let Response::Forward(p) = parse_response(
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
            true,
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
            false,
            false,
        ) else {
            panic!()
        };
        assert!(
            !p.upstream_reusable,
            "HTTP/1.0 closes unless it says keep-alive"
        );
    }
}
