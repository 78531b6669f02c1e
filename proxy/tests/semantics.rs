//! HTTP semantics at the edges, as a contract: what the client sees and, byte for byte, what
//! reached the app, for every way a request can be ambiguous and every way the app can fail.
//! Each case here was a defect once (issue 11): a failing app's error text written into a 200
//! body, a cut body that looked complete, pipelined requests dropped, a Content-Length list
//! forwarded verbatim, 96-line response heads refused, 1xx and chunked sent to HTTP/1.0.
//!
//! The app is a raw socket in the test (`common::scripted`) that logs every byte it receives
//! and answers as the case says, so nothing about the app's behaviour is left to a library's
//! discretion.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::scripted::{Act, ScriptedApp};
use common::*;
use testkit::read_one_response;

/// Everything the client receives until the connection ends, and how it ended.
fn until_end(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

fn send(addr: SocketAddr, raw: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(raw).unwrap();
    s
}

fn start(app: &ScriptedApp) -> Lameduck {
    Lameduck::start_ready(app.addr, &["--app-probe", "none"])
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

// --- The app fails after its response head went out: never a byte of lameduck's own. ---

#[test]
fn a_short_content_length_body_is_cut_never_padded() {
    let app = ScriptedApp::start(|_, _, _| {
        Act::SendClose(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nDDDDDDDDDD".to_vec())
    });
    let ld = start(&app);
    for version in ["1.1", "1.0"] {
        let mut c = send(
            ld.data,
            format!("GET /x HTTP/{version}\r\nHost: t\r\n\r\n").as_bytes(),
        );
        let (got, _) = until_end(&mut c);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.ends_with("\r\n\r\nDDDDDDDDDD"),
            "HTTP/{version}: the client gets exactly what the app sent, then the close: {text:?}"
        );
        assert!(!text.contains("lameduck"), "{text:?}");
    }
}

#[test]
fn a_chunked_body_cut_by_the_app_ends_without_its_last_chunk() {
    for act in [Act::SendClose as fn(Vec<u8>) -> Act, Act::SendReset] {
        let app = ScriptedApp::start(move |_, _, _| {
            act(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec())
        });
        let ld = start(&app);
        let mut c = send(ld.data, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        let (got, _) = until_end(&mut c);
        let text = String::from_utf8_lossy(&got);
        assert!(text.ends_with("5\r\nhello\r\n"), "{text:?}");
        assert!(
            !text.contains("0\r\n\r\n") && !text.contains("lameduck"),
            "{text:?}"
        );
    }
}

#[test]
fn a_close_delimited_body_reset_by_the_app_is_seen_to_be_cut() {
    let app = ScriptedApp::start(|_, _, req| {
        let body = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial".to_vec();
        if req.head.starts_with("GET /clean") {
            Act::SendClose(body)
        } else {
            Act::SendReset(body)
        }
    });
    let ld = start(&app);

    // HTTP/1.1: re-framed as chunked, so a clean end has the last chunk and a cut one not.
    let mut c = send(ld.data, b"GET /clean HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut r = read_one_response(&mut c).unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(std::mem::take(&mut r.body), b"partial");
    let mut c = send(ld.data, b"GET /reset HTTP/1.1\r\nHost: t\r\n\r\n");
    let (got, _) = until_end(&mut c);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.ends_with("7\r\npartial\r\n"),
        "no last chunk: {text:?}"
    );

    // HTTP/1.0 knows no chunks: a clean end is a FIN, a cut one a reset.
    let mut c = send(ld.data, b"GET /clean HTTP/1.0\r\n\r\n");
    let (got, end) = until_end(&mut c);
    assert!(got.ends_with(b"\r\n\r\npartial") && end.is_ok(), "{end:?}");
    let mut c = send(ld.data, b"GET /reset HTTP/1.0\r\n\r\n");
    let (got, end) = until_end(&mut c);
    assert!(
        !got.windows(8).any(|w| w == b"lameduck"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        end.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset),
        "the cut reaches an HTTP/1.0 client as a reset, not a FIN that looks complete"
    );
}

#[tokio::test]
async fn an_h2_response_cut_by_the_app_is_reset_not_finished() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    // Chunked, cut by the app's close: no length for the client to check, so only a reset
    // tells it (lameduck once wrote its error text and ended the stream cleanly).
    let app = ScriptedApp::start(|_, _, _| {
        Act::SendClose(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\nDDDDDDDDDD\r\n".to_vec(),
        )
    });
    let ld = tokio::task::spawn_blocking(move || (start(&app), app))
        .await
        .unwrap();
    let (mut sender, _conn) = h2c_connect(ld.0.data).await;
    let req = hyper::Request::get("http://t/x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(DEADLINE, resp.into_body().collect())
        .await
        .unwrap();
    assert!(
        body.is_err(),
        "the stream is reset, not ended cleanly with lameduck's text: {:?}",
        body.map(|b| b.to_bytes())
    );
}

// --- Pipelining: every request already sent is served, in order. ---

#[test]
fn pipelined_requests_are_all_served_in_order_whatever_their_framing() {
    let app = ScriptedApp::answering(OK);
    let ld = start(&app);
    let mut c = send(
        ld.data,
        b"GET /p1 HTTP/1.1\r\nHost: t\r\n\r\n\
          POST /p2 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /p3 HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /p4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
          GET /p5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..5 {
        assert_eq!(read_one_response(&mut c).unwrap().status, 200);
    }
    let paths: Vec<String> = app
        .received()
        .iter()
        .map(|r| r.head.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/p1", "/p2", "/p3", "/p4", "/p5"]);
    assert!(until_end(&mut c).0.is_empty(), "nothing after the last");
}

// --- Framing reaches the app in one form only. ---

#[test]
fn a_content_length_list_reaches_the_app_as_one_value() {
    let app = ScriptedApp::answering(OK);
    let ld = start(&app);
    for lengths in [
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
    ] {
        let mut c = Client::connect(ld.data).unwrap();
        c.send(&format!(
            "POST /a HTTP/1.1\r\nHost: t\r\n{lengths}\r\nhello"
        ))
        .unwrap();
        assert_eq!(c.read_response().unwrap().status, 200);
        // The next request on the same pooled app connection arrives whole: the body was not
        // taken for the start of a request.
        assert_eq!(c.get("/after").unwrap().status, 200);
        let first = app.next().text();
        assert_eq!(first.matches("Content-Length").count(), 1, "{first:?}");
        assert!(first.contains("Content-Length: 5\r\n") && first.ends_with("\r\n\r\nhello"));
        assert!(app.next().text().starts_with("GET /after HTTP/1.1\r\n"));
    }
}

#[test]
fn ambiguous_or_malformed_requests_are_refused_and_nothing_reaches_the_app() {
    let app = ScriptedApp::answering(OK);
    let ld = start(&app);
    let cases: &[(&str, u16)] = &[
        // CL.TE and TE.CL
        ("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
        // Transfer-Encoding obfuscations
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400),
        // Content-Length that disagrees with itself, or is no number
        ("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello", 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        // bad chunk sizes
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", 400),
        // heads
        ("GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nConnection: Host\r\n\r\n", 400),
        ("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n", 417),
        ("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
    ];
    for (raw, code) in cases {
        let mut c = send(ld.data, raw.as_bytes());
        let r = read_one_response(&mut c).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(r.status, *code, "{raw:?}: {}", r.text());
        assert!(
            r.text().starts_with("lameduck: bad request: "),
            "{}",
            r.text()
        );
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert_eq!(app.received().len(), 0, "none reached the app");
    assert_eq!(get(ld.data, "/still").unwrap().status, 200, "still serving");
}

// --- Heads and versions. ---

#[test]
fn large_response_heads_pass_and_http10_clients_get_what_they_read() {
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big: &'static [u8] = format!("HTTP/1.1 200 OK\r\n{many}Content-Length: 2\r\n\r\nok")
        .leak()
        .as_bytes();
    let app = ScriptedApp::start(move |_, _, req| {
        if req.head.starts_with("GET /big") {
            Act::Send(big.to_vec())
        } else {
            Act::Send(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec())
        }
    });
    let ld = start(&app);
    let r = get(ld.data, "/big").unwrap();
    assert_eq!(
        r.status, 200,
        "200 header lines are forwarded, as nginx does"
    );
    assert_eq!(r.header("x-h199"), Some("v"));
    app.next().text();

    // HTTP/1.1 sees the 103; HTTP/1.0 does not, and the app was asked in HTTP/1.0.
    let mut c = send(
        ld.data,
        b"GET /hints HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&until_end(&mut c).0).starts_with("HTTP/1.1 103 "));
    app.next().text();
    let mut c = send(ld.data, b"GET /hints HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&until_end(&mut c).0).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "no 1xx to HTTP/1.0: {text:?}"
    );
    assert!(app.next().text().starts_with("GET /hints HTTP/1.0\r\n"));
}

#[test]
fn expect_100_continue_is_answered_and_the_body_forwarded() {
    let app = ScriptedApp::answering(OK);
    let ld = start(&app);
    let mut c = send(
        ld.data,
        b"PUT /up HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    );
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"abc").unwrap();
    assert_eq!(read_one_response(&mut c).unwrap().status, 200);
    let seen = app.next().text();
    assert!(
        !seen.contains("Expect") && seen.ends_with("\r\n\r\nabc"),
        "{seen:?}"
    );
}

#[test]
fn a_head_trickled_past_the_read_timeout_is_dropped_however_many_lines_it_has() {
    let app = ScriptedApp::answering(OK);
    let ld = Lameduck::start_ready(
        app.addr,
        &["--app-probe", "none", "--client-read-timeout", "1s"],
    );
    let mut c = TcpStream::connect(ld.data).unwrap();
    // 100 header lines at once (more than a head once could have before it changed hands and
    // lost its deadline), then 200 more, one every 20 ms: every read is quick, the head as a
    // whole is not.
    let first: String = (0..100).map(|i| format!("X-A{i}: v\r\n")).collect();
    c.write_all(format!("GET / HTTP/1.1\r\nHost: t\r\n{first}").as_bytes())
        .unwrap();
    let start = std::time::Instant::now();
    let mut cut = false;
    for i in 0..200 {
        if c.write_all(format!("X-{i}: v\r\n").as_bytes()).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cut,
        "the connection ends once the head is late (after {:?}), not when the client is done",
        start.elapsed()
    );
    let (got, _) = until_end(&mut c);
    assert!(got.is_empty(), "dropped without an answer");
    assert!(app.received().is_empty());
}
