//! Faithful proxying: what the app receives is what the client sent, minus hop-by-hop headers,
//! plus X-Forwarded-*, and only ever at `--upstream`. The upstream here is a real socket in the
//! test that records each request and answers as told.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;

use common::scripted::{Act, Received, ScriptedApp};
use common::*;

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok";

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn headers_are_forwarded_hop_by_hop_stripped_and_forwarded_for_added() {
    let up = ScriptedApp::answering(OK.as_bytes());
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send(
        "GET /path?q=1 HTTP/1.1\r\nHost: shop.example\r\nX-Custom: kept\r\n\
         X-Forwarded-For: 203.0.113.7\r\nConnection: keep-alive, X-Secret-Hop\r\n\
         X-Secret-Hop: dropped\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("keep-alive"),
        None,
        "the app's hop-by-hop headers stay with the app"
    );

    let head = up.next().head;
    assert!(head.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{head}");
    assert_eq!(header(&head, "host"), Some("shop.example"), "Host kept");
    assert_eq!(header(&head, "x-custom"), Some("kept"));
    assert_eq!(
        header(&head, "x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(header(&head, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        header(&head, "x-secret-hop"),
        None,
        "named in Connection: hop-by-hop"
    );
    assert_eq!(header(&head, "keep-alive"), None);
    assert_eq!(header(&head, "te"), None);
}

#[test]
fn absolute_form_never_leaves_the_upstream() {
    let up = ScriptedApp::answering(OK.as_bytes());
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let head = up.next().head;
    assert!(
        head.starts_with("GET /latest/meta-data HTTP/1.1\r\n"),
        "origin-form: {head}"
    );
    assert_eq!(header(&head, "host"), Some("169.254.169.254"));

    // A Host that contradicts the request target is refused outright (request smuggling).
    let mut c = Client::connect(ld.data).unwrap();
    c.send("GET http://169.254.169.254/ HTTP/1.1\r\nHost: elsewhere\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 400);
    assert!(up.received().is_empty(), "nothing forwarded");
}

#[test]
fn request_bodies_are_forwarded_whole_both_framings() {
    let up = ScriptedApp::answering(OK.as_bytes());
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let body = "x".repeat(200_000);
    let mut c = Client::connect(ld.data).unwrap();
    c.send(&format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
    .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let Received { head, body: got } = up.next();
    assert!(head.starts_with("POST /upload"));
    assert_eq!(got.len(), body.len());

    c.send("POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let Received { head, body: got } = up.next();
    assert!(head.starts_with("POST /chunked"));
    assert!(String::from_utf8_lossy(&got).contains("hello"));
}

#[test]
fn slowapp_gets_posts_and_answers_through_lameduck() {
    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, &[]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("POST /?delay_ms=5 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello World!");
    assert_eq!(r.header("x-served-by"), Some("app-under-test"));
}

#[test]
fn websocket_upgrade_is_passed_through() {
    let up = ScriptedApp::answering(OK.as_bytes());
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send(
        "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 101);
    let head = up.next().head;
    assert_eq!(
        header(&head, "upgrade"),
        Some("websocket"),
        "Upgrade kept for upgrades: {head}"
    );
    c.stream.write_all(b"ping over the tunnel").unwrap();
    let mut buf = [0u8; 20];
    c.stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping over the tunnel");
}

#[tokio::test]
async fn h2c_clients_are_served_and_get_goaway_in_the_window() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = tokio::task::spawn_blocking(move || {
        Lameduck::start_ready(app_addr, &["--shutdown-delay", "3s"])
    })
    .await
    .unwrap();

    let (mut sender, conn) = h2c_connect(ld.data).await;
    let req = hyper::Request::get("http://t/?delay_ms=1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "Hello World!"
    );

    // The window opens: the connection gets GOAWAY and ends, while lameduck is still a lame duck.
    let admin = ld.admin;
    let _drain = std::thread::spawn(move || get(admin, "/drain"));
    tokio::time::timeout(DEADLINE, conn)
        .await
        .expect("GOAWAY ends the h2 connection")
        .unwrap()
        .ok();
    let phase = tokio::task::spawn_blocking(move || ld.phase())
        .await
        .unwrap();
    assert_eq!(phase, "lame_duck");
}

// The fast path forwards responses in the framing they came in; the client must see exactly
// what a direct connection to the app would have shown, and the connection must stay usable.

#[test]
fn chunked_and_close_delimited_responses_arrive_whole() {
    let up = ScriptedApp::start(|_, _, req| {
        let head = &req.head;
        if head.starts_with("GET /chunked") {
            Act::Send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  6\r\nhello \r\n5;ext=x\r\nworld\r\n0\r\nX-Checksum: 1\r\n\r\n"
                    .to_vec(),
            )
        } else {
            // No length at all: the body ends when the app closes.
            Act::SendClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec())
        }
    });
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    let r = c.get("/chunked").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    assert_eq!(r.header("connection"), Some("keep-alive"));

    // Same connection: the chunked body ended where it should.
    c.send("GET /eof HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "until the end");
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "a body delimited by the app's close reaches an HTTP/1.1 client chunked, so a cut shows"
    );
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(
        c.get("/chunked").unwrap().status,
        200,
        "and the connection goes on"
    );
}

#[test]
fn head_responses_have_no_body_and_interim_responses_are_passed_on() {
    let up = ScriptedApp::start(|_, _, req| {
        let head = &req.head;
        Act::Send(if head.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec()
        })
    });
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_head_byte_by_byte(&mut c.stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Length: 5"), "{head}");
    // Right after the HEAD response's head comes the next response: no body in between.
    let hints = c.read_response().unwrap();
    assert_eq!(hints.status, 103);
    assert_eq!(hints.header("link"), Some("</s.css>; rel=preload"));
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = ScriptedApp::start(|_, _, req| {
        let head = &req.head;
        let path = head.split(' ').nth(1).unwrap().to_string();
        Act::Send(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
                path.len()
            )
            .into_bytes(),
        )
    });
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send(
        "POST /one HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
         GET /two HTTP/1.1\r\nHost: t\r\n\r\nGET /three HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    for path in ["/one", "/two", "/three"] {
        assert_eq!(c.read_response().unwrap().text(), path);
    }
    let Received { head, body } = up.next();
    assert!(head.starts_with("POST /one"));
    assert_eq!(body, b"abc");
}

#[test]
fn large_bodies_stream_through_both_ways() {
    const SIZE: usize = 3 * 1024 * 1024 + 7;
    let up = ScriptedApp::start(|_, _, _| {
        let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
        r.extend((0..SIZE).map(|i| (i % 251) as u8));
        Act::Send(r)
    });
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    let upload: Vec<u8> = (0..SIZE).map(|i| (i % 13) as u8).collect();
    c.send(&format!(
        "PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\n\r\n"
    ))
    .unwrap();
    c.send_bytes(&upload).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.body.len(), SIZE);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (i % 251) as u8));
    let Received { head: _, body: got } = up.next();
    assert!(got == upload, "upload arrived whole and in order");
    assert_eq!(
        c.get("/again").unwrap().status,
        200,
        "connection still in step"
    );
}

#[test]
fn a_pooled_connection_the_app_closed_is_not_used() {
    // The app answers, then closes the connection as an idle timeout would. The next request,
    // a POST that must not be sent twice, goes on a new connection and is not lost.
    let up = ScriptedApp::start(|_, _, _| Act::SendClose(OK.as_bytes().to_vec()));
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    assert_eq!(c.get("/first").unwrap().status, 200);
    up.closed.recv_timeout(DEADLINE).unwrap();
    c.send("POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(up.conns.load(Ordering::SeqCst), 2);
    let m = ld.metrics();
    assert_eq!(
        metric(&m, "lameduck_upstream_connections_opened_total"),
        Some(2.0)
    );
    assert_eq!(metric(&m, "lameduck_upstream_retries_total"), Some(0.0));
}

#[test]
fn idempotent_requests_are_retried_once_when_a_pooled_connection_dies() {
    // Connection 0 answers its first request and then dies on the second without a word: the
    // close race. A GET is sent again on a new connection; a POST is not (the app may have
    // acted on it) and gets a 502 that says why.
    let up = ScriptedApp::start(|conn, i, _| match (conn, i) {
        (0, 0) | (2, 0) => Act::Send(OK.as_bytes().to_vec()),
        (0, _) | (2, _) => Act::Close,
        _ => Act::Send(OK.as_bytes().to_vec()),
    });
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    assert_eq!(c.get("/warm").unwrap().status, 200);
    assert_eq!(c.get("/retried").unwrap().status, 200, "GET retried");
    assert_eq!(up.conns.load(Ordering::SeqCst), 2);
    let sent: Vec<String> = up.received().into_iter().map(|r| r.head).collect();
    assert_eq!(
        sent.iter()
            .filter(|h| h.starts_with("GET /retried"))
            .count(),
        2
    );

    // Connection 1 (the retry's) goes back to the pool and dies on no one; warm connection 2.
    drop(c);
    let ld2 = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld2.data).unwrap();
    assert_eq!(c.get("/warm").unwrap().status, 200);
    c.send("POST /once HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("(closed)"), "{}", r.text());
    let posts = up
        .received()
        .iter()
        .filter(|r| r.head.starts_with("POST"))
        .count();
    assert_eq!(posts, 1, "a POST is never sent twice");
}

#[test]
fn a_broken_response_is_a_502_and_a_truncated_one_cuts_the_client() {
    let up = ScriptedApp::start(|_, _, req| {
        let head = &req.head;
        if head.starts_with("GET /garbage") {
            Act::SendClose(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx".to_vec(),
            )
        } else {
            Act::SendClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..".to_vec())
        }
    });
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let r = get(ld.data, "/garbage").unwrap();
    assert_eq!(r.status, 502);
    assert!(r.text().contains("(protocol)"), "{}", r.text());

    let mut c = Client::connect(ld.data).unwrap();
    c.send("GET /truncated HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = c.read_to_close().unwrap();
    assert_eq!(r.status, 200, "the head had gone out already");
    assert_eq!(
        r.text(),
        "only ten..",
        "the client sees a short body and a closed connection"
    );
    let m = ld.metrics();
    assert_eq!(
        metric(&m, r#"lameduck_upstream_errors_total{kind="protocol"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, r#"lameduck_upstream_errors_total{kind="closed"}"#),
        Some(1.0)
    );
    assert_eq!(
        get(ld.data, "/garbage").unwrap().status,
        502,
        "still serving"
    );
}

#[test]
fn a_chunked_upload_between_plain_requests_keeps_the_connection_and_its_order() {
    let up = ScriptedApp::answering(OK.as_bytes());
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    assert_eq!(c.get("/fast").unwrap().status, 200);
    c.send("POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    assert_eq!(c.get("/after").unwrap().status, 200);
    let paths: Vec<String> = up
        .received()
        .iter()
        .map(|r| r.head.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(paths, ["GET /fast", "POST /chunked", "GET /after"]);
    assert_eq!(
        up.conns.load(Ordering::SeqCst),
        1,
        "one pooled app connection"
    );
    assert_eq!(
        metric(&ld.metrics(), "lameduck_pingora_handoffs_total"),
        Some(0.0),
        "HTTP/1 never leaves lameduck's own forwarder"
    );
}

/// Reads exactly one response head and not a byte more (for HEAD responses, whose headers
/// announce a body that does not come).
fn read_head_byte_by_byte(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn an_early_answer_from_the_app_reaches_the_client_mid_upload() {
    // An app that refuses an upload from its head alone (413, or 401 on a large POST) answers
    // before it has the body. That answer is the client's, not a 502.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        conn.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
            .unwrap();
        // A lingering close of its own, as servers do, so the answer is not lost to a reset.
        let _ = conn.shutdown(std::net::Shutdown::Write);
        conn.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut sink = [0u8; 4096];
        while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
    });
    let ld = Lameduck::start_ready(addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("PUT /big HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n")
        .unwrap();
    c.send_bytes(&[b'x'; 1024]).unwrap(); // ...and the rest never comes
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (413, "too large"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        c.closed_by_server(DEADLINE),
        "the half-sent upload ends the connection"
    );
    assert_eq!(
        metric(
            &ld.metrics(),
            r#"lameduck_upstream_errors_total{kind="closed"}"#
        ),
        Some(0.0)
    );
}

#[test]
fn idle_connections_close_after_the_idle_timeout_and_busy_ones_stay() {
    let up = ScriptedApp::answering(OK.as_bytes());
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none", "--idle-timeout", "1s"]);
    let mut c = Client::connect(ld.data).unwrap();
    // Busy for more than twice the idle timeout, a request every 100 ms: each one re-arms it.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(2500) {
        assert_eq!(c.get("/busy").unwrap().status, 200, "closed while busy");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(c.closed_by_server(DEADLINE), "closed once idle");
}
