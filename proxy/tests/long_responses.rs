//! Long responses (server-sent events, long polls) at the drain timeout: the client must be able
//! to tell the response was cut. An SSE stream runs on through the lame-duck window and the
//! drain, and at the drain timeout its connection closes without the last chunk, so no client
//! takes it for a complete response (an EventSource reconnects, with `Last-Event-ID`).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::*;

/// An SSE endpoint: a chunked `text/event-stream` that sends `id: N` / `data: tick N` every
/// 50 ms until its client goes away. Started before lameduck, on its own port.
fn sse_app() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let probe = head.starts_with(b"GET /ready");
                if probe {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    return;
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                for n in 1.. {
                    let event = format!("id: {n}\ndata: tick {n}\n\n");
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    if stream.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    addr
}

#[test]
fn an_sse_stream_cut_at_the_drain_timeout_does_not_end_cleanly() {
    let app = sse_app();
    let mut ld =
        Lameduck::start_ready(app, &["--shutdown-delay", "300ms", "--drain-timeout", "1s"]);
    let mut client = TcpStream::connect(ld.data).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("id: 3\n") {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before it began");
        received.extend_from_slice(&buf[..n]);
    }
    ld.proc.sigterm();
    let before_signal = received.len();
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the stream: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("transfer-encoding: chunked") || text.contains("Transfer-Encoding: chunked"),
        "{text}"
    );
    assert!(
        received.len() > before_signal + 200,
        "events kept coming through the window and the drain"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a cut stream must not carry the last chunk that says it is complete: ...{}",
        &text[text.len().saturating_sub(80)..]
    );
    assert!(ld.proc.wait_exit(DEADLINE).success());
    let exit = ld.proc.wait_log("lameduck exiting");
    assert!(exit.contains("requests_cut=1"), "{exit}");
}
