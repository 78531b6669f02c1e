//! Telling HTTP/2 clients to go, read frame by frame: when the lame-duck window opens, GOAWAY
//! with last stream id 2^31-1 and a PING, then, once the PING is acknowledged, GOAWAY with the
//! real last stream id; open streams run on; at the drain timeout what is left ends visibly
//! (RST_STREAM(CANCEL) for plain HTTP/2, trailers with grpc-status 14 UNAVAILABLE for gRPC) and
//! is counted as cut. A gRPC client calling through the window loses no call.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use common::*;
use slowapp::proto::{CountRequest, SlowClient};
use testkit::grpc::{channel, runtime};

const GOAWAY: u8 = 7;
const PING: u8 = 6;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const ACK: u8 = 0x1;
const CANCEL: u32 = 0x8;

#[derive(Debug, Clone)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap()) & 0x7fff_ffff
    }
}

/// A minimal HTTP/2 client over a plain socket: it sends the preface, SETTINGS, and request
/// HEADERS (HPACK literals, no compression), acknowledges SETTINGS and PINGs as a client must,
/// and keeps every frame it receives, in order, for the test to read.
struct RawH2 {
    writer: Arc<Mutex<TcpStream>>,
    frames: Arc<Mutex<Vec<Frame>>>,
}

fn write_frame(w: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut head = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    head.extend_from_slice(&stream.to_be_bytes());
    head.extend_from_slice(payload);
    w.write_all(&head).unwrap();
}

impl RawH2 {
    fn connect(addr: SocketAddr) -> RawH2 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .unwrap();
        write_frame(&mut stream, SETTINGS, 0, 0, &[]);
        let mut reader = stream.try_clone().unwrap();
        let writer = Arc::new(Mutex::new(stream));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (w, f) = (Arc::clone(&writer), Arc::clone(&frames));
        std::thread::spawn(move || loop {
            let mut head = [0u8; 9];
            if reader.read_exact(&mut head).is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if reader.read_exact(&mut payload).is_err() {
                return;
            }
            let frame = Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
                payload,
            };
            if frame.flags & ACK == 0 && (frame.kind == SETTINGS || frame.kind == PING) {
                let mut w = w.lock().unwrap();
                write_frame(
                    &mut w,
                    frame.kind,
                    ACK,
                    0,
                    if frame.kind == PING {
                        &frame.payload
                    } else {
                        &[]
                    },
                );
            }
            f.lock().unwrap().push(frame);
        });
        RawH2 { writer, frames }
    }

    /// `GET path` on stream `id`, the request complete in one HEADERS frame.
    fn get(&self, id: u32, authority: &str, path: &str) {
        let mut block = Vec::new();
        for (name, value) in [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", authority),
            (":path", path),
        ] {
            // Literal header field without indexing, new name (RFC 7541, 6.2.2); short strings.
            block.push(0x00);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(value.len() as u8);
            block.extend_from_slice(value.as_bytes());
        }
        let mut w = self.writer.lock().unwrap();
        write_frame(&mut w, 0x1, 0x4 | 0x1, id, &block);
    }

    fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// Waits for a frame after position `from` that `want` accepts; returns its position.
    fn wait_frame(&self, what: &str, from: usize, want: impl Fn(&Frame) -> bool) -> usize {
        let mut found = None;
        wait_until(what, DEADLINE, || {
            found = self
                .frames()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, f)| want(f))
                .map(|(i, _)| i);
            found.is_some()
        });
        found.unwrap()
    }
}

fn app_and_lameduck(extra: &[&str]) -> (Proc, Lameduck) {
    let app_addr = free_addr();
    let app = slowapp(app_addr, &[]);
    let ld = Lameduck::start_ready(app_addr, extra);
    (app, ld)
}

fn wait_in_flight(ld: &Lameduck, n: f64) {
    wait_until(&format!("{n} request(s) in flight"), DEADLINE, || {
        metric(&ld.metrics(), "lameduck_in_flight_requests") == Some(n)
    });
}

#[test]
fn goaway_max_and_ping_then_the_real_last_stream_then_rst_stream_at_the_drain_timeout() {
    let (_app, mut ld) = app_and_lameduck(&["--drain-timeout", "1500ms"]);
    let client = RawH2::connect(ld.data);
    client.get(1, &ld.data.to_string(), "/?delay_ms=60000");
    wait_in_flight(&ld, 1.0);
    let before = client.frames().len();

    ld.proc.sigterm();
    let first = client.wait_frame("GOAWAY(2^31-1)", before, |f| f.kind == GOAWAY);
    let frames = client.frames();
    assert_eq!(
        frames[first].word(0),
        0x7fff_ffff,
        "the first GOAWAY is the warning: {:?}",
        frames[first]
    );
    assert_eq!(frames[first].word(4), 0, "NO_ERROR");
    let ping = client.wait_frame("a PING after the first GOAWAY", first, |f| {
        f.kind == PING && f.flags & ACK == 0
    });
    let last = client.wait_frame("the second GOAWAY", ping, |f| f.kind == GOAWAY);
    let frames = client.frames();
    assert_eq!(
        frames[last].word(0),
        1,
        "the real last stream id: {:?}",
        frames[last]
    );
    assert!(
        !frames[..last].iter().any(|f| f.kind == RST_STREAM),
        "the open stream runs on through the window: {frames:?}"
    );
    assert_eq!(
        metric(
            &ld.metrics(),
            r#"lameduck_http2_goaway_total{reason="shutdown"}"#
        ),
        Some(1.0),
        "the connection told to go is counted"
    );

    // The drain timeout: the stream still open is reset with CANCEL, and counted as cut.
    let rst = client.wait_frame("RST_STREAM at the drain timeout", last, |f| {
        f.kind == RST_STREAM
    });
    let frames = client.frames();
    assert_eq!(
        (frames[rst].stream, frames[rst].word(0)),
        (1, CANCEL),
        "{:?}",
        frames[rst]
    );
    assert!(ld.proc.wait_exit(DEADLINE).success());
    let exit = ld.proc.wait_log("lameduck exiting");
    assert!(exit.contains("requests_cut=1"), "{exit}");
}

async fn slow_client(addr: SocketAddr) -> SlowClient<tonic::transport::Channel> {
    SlowClient::new(channel(addr).await)
}

#[test]
fn a_grpc_stream_cut_at_the_drain_timeout_ends_unavailable_after_running_through_the_window() {
    let (_app, mut ld) = app_and_lameduck(&["--shutdown-delay", "500ms", "--drain-timeout", "1s"]);
    let rt = runtime();
    let (status, after_signal) = rt.block_on(async {
        let mut stream = slow_client(ld.data)
            .await
            .count(CountRequest {
                count: 10_000,
                delay_ms: Some(20),
            })
            .await
            .expect("Count")
            .into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap().seq, 1);
        ld.proc.sigterm();
        let mut after_signal = 0;
        loop {
            match stream.message().await {
                Ok(Some(_)) => after_signal += 1,
                Ok(None) => panic!("a cut stream must not end cleanly"),
                Err(status) => break (status, after_signal),
            }
        }
    });
    assert!(
        after_signal > 10,
        "the stream ran on through the window ({after_signal} messages)"
    );
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("drain timeout"), "{status:?}");
    assert!(ld.proc.wait_exit(DEADLINE).success());
    let exit = ld.proc.wait_log("lameduck exiting");
    assert!(exit.contains("requests_cut=1"), "{exit}");
}

/// grpcio (C-core) honours GOAWAY the way the issue asks: the calls it makes on one channel
/// while the window opens move to a new connection and none fails. (tonic 0.14's client does
/// not: a call that races the GOAWAY fails with "connection closed" without ever reaching
/// lameduck; docs/protocols.md says so.)
#[test]
fn grpcio_calls_through_the_window_all_succeed() {
    let (_app, ld) = app_and_lameduck(&["--shutdown-delay", "1500ms"]);
    let dir = std::env::temp_dir().join(format!("lameduck-grpcio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flag = dir.join("signalled");
    let _ = std::fs::remove_file(&flag);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/grpcio/call_loop.py"
    );
    // The Debian python3 that apt's python3-grpcio installs into (scripts/test.sh).
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    cmd.arg(script)
        .arg(ld.data.to_string())
        .arg("1.0")
        .env("SIGNALLED_FILE", &flag);
    let mut client = Proc::start("grpcio client", cmd);
    client.wait_log("ok 3 ");
    ld.proc.sigterm();
    ld.wait_phase("lame_duck");
    std::fs::write(&flag, b"").unwrap();
    let status = client.wait_exit(DEADLINE);
    let log = client.log_text();
    assert!(status.success(), "a call failed during the window:\n{log}");
    let after = log.matches("after_signal=True").count();
    assert!(after > 5, "{after} calls after the signal:\n{log}");
    assert!(
        !ld.proc.log_text().contains("upstream error"),
        "{}",
        ld.proc.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
