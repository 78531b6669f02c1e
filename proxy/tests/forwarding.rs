//! Faithful proxying: what the app receives is what the client sent, minus hop-by-hop headers,
//! plus X-Forwarded-*, and only ever at `--upstream`. The upstream here is a real socket in the
//! test that records each request and answers as told.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;

use common::*;

/// A raw HTTP/1.1 upstream: records request heads and bodies, answers `reply` to each.
struct RecordingUpstream {
    addr: SocketAddr,
    requests: mpsc::Receiver<(String, Vec<u8>)>,
}

fn recording_upstream(reply: &'static str) -> RecordingUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || loop {
                let Some((head, body)) = read_request(&mut conn) else {
                    return;
                };
                let upgrade = head.to_ascii_lowercase().contains("upgrade: websocket");
                if tx.send((head, body)).is_err() {
                    return;
                }
                if upgrade {
                    conn.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n").unwrap();
                    // Echo whatever the client sends on the upgraded connection.
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    return;
                }
                if conn.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            });
        }
    });
    RecordingUpstream { addr, requests: rx }
}

fn read_request(conn: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let lower = head.to_ascii_lowercase();
    let mut body = Vec::new();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        body.resize(len.trim().parse().unwrap(), 0);
        conn.read_exact(&mut body).ok()?;
    } else if lower.contains("transfer-encoding: chunked") {
        // Read chunks until the terminating zero-size chunk.
        let mut raw = Vec::new();
        while !raw.ends_with(b"0\r\n\r\n") {
            if conn.read(&mut byte).ok()? == 0 {
                return None;
            }
            raw.push(byte[0]);
        }
        body = raw;
    }
    Some((head, body))
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok";

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn headers_are_forwarded_hop_by_hop_stripped_and_forwarded_for_added() {
    let up = recording_upstream(OK);
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

    let (head, _) = up.requests.recv_timeout(DEADLINE).unwrap();
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
    let up = recording_upstream(OK);
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send("GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let (head, _) = up
        .requests
        .recv_timeout(DEADLINE)
        .expect("the request reached the upstream");
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
    assert!(up.requests.try_recv().is_err(), "nothing forwarded");
}

#[test]
fn request_bodies_are_forwarded_whole_both_framings() {
    let up = recording_upstream(OK);
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let body = "x".repeat(200_000);
    let mut c = Client::connect(ld.data).unwrap();
    c.send(&format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
    .unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let (head, got) = up.requests.recv_timeout(DEADLINE).unwrap();
    assert!(head.starts_with("POST /upload"));
    assert_eq!(got.len(), body.len());

    c.send("POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 200);
    let (head, got) = up.requests.recv_timeout(DEADLINE).unwrap();
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
    let up = recording_upstream(OK);
    let ld = Lameduck::start_ready(up.addr, &["--app-probe", "none"]);
    let mut c = Client::connect(ld.data).unwrap();
    c.send(
        "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 101);
    let (head, _) = up.requests.recv_timeout(DEADLINE).unwrap();
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
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let app_addr = free_addr();
    let _app = slowapp(app_addr, &[]);
    let ld = tokio::task::spawn_blocking(move || {
        Lameduck::start_ready(app_addr, &["--shutdown-delay", "3s"])
    })
    .await
    .unwrap();

    let stream = tokio::net::TcpStream::connect(ld.data).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c prior-knowledge handshake");
    let conn = tokio::spawn(conn);
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
