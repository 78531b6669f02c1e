//! A scripted app: a raw HTTP/1.1 socket in the test that records every request exactly as it
//! arrived (head and body bytes) and answers each as the test's script says, so nothing about
//! the app's behaviour is left to a library's discretion. A WebSocket upgrade is answered 101
//! and echoed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use testkit::DEADLINE;

/// What the app does once it has read one request.
#[derive(Clone)]
pub enum Act {
    /// Write these bytes and keep the connection for the next request.
    Send(Vec<u8>),
    /// Write these bytes, then close (FIN), as an app's idle timeout would.
    SendClose(Vec<u8>),
    /// Write these bytes, then reset the connection (RST).
    SendReset(Vec<u8>),
    /// Close without answering: the app went away as the request arrived.
    Close,
}

/// One request as the app read it: the head, then the body (a chunked body as its raw chunks).
#[derive(Debug, Clone)]
pub struct Received {
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    /// Head and body as one text, exactly the bytes that arrived.
    pub fn text(&self) -> String {
        format!("{}{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

pub struct ScriptedApp {
    pub addr: SocketAddr,
    requests: mpsc::Receiver<Received>,
    /// Connections accepted so far.
    pub conns: Arc<AtomicUsize>,
    /// Told after the app closed a connection on its own (`Act::SendClose`).
    pub closed: mpsc::Receiver<()>,
}

impl ScriptedApp {
    /// `script(connection number, request number on it, request)` decides each answer.
    pub fn start(
        script: impl Fn(usize, usize, &Received) -> Act + Send + Sync + 'static,
    ) -> ScriptedApp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::channel();
        let (closed_tx, closed) = mpsc::channel();
        let conns = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(script);
        let counter = conns.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (tx, closed_tx, script) = (tx.clone(), closed_tx.clone(), script.clone());
                std::thread::spawn(move || serve(conn, n, &*script, &tx, &closed_tx));
            }
        });
        ScriptedApp {
            addr,
            requests,
            conns,
            closed,
        }
    }

    /// An app that answers every request with `reply`.
    pub fn answering(reply: &'static [u8]) -> ScriptedApp {
        ScriptedApp::start(move |_, _, _| Act::Send(reply.to_vec()))
    }

    /// The next request the app receives (waits up to [`DEADLINE`]).
    pub fn next(&self) -> Received {
        self.requests.recv_timeout(DEADLINE).expect("a request")
    }

    /// Every request the app has received so far and not yet taken.
    pub fn received(&self) -> Vec<Received> {
        self.requests.try_iter().collect()
    }
}

fn serve(
    mut conn: TcpStream,
    n: usize,
    script: &(dyn Fn(usize, usize, &Received) -> Act + Send + Sync),
    tx: &mpsc::Sender<Received>,
    closed_tx: &mpsc::Sender<()>,
) {
    for i in 0.. {
        let Some(req) = read_request(&mut conn) else {
            return;
        };
        let upgrade = req.head.to_ascii_lowercase().contains("upgrade: websocket");
        let act = script(n, i, &req);
        if tx.send(req).is_err() {
            return;
        }
        if upgrade {
            return echo_upgraded(conn);
        }
        match act {
            Act::Send(b) => {
                if conn.write_all(&b).is_err() {
                    return;
                }
            }
            Act::SendClose(b) => {
                let _ = conn.write_all(&b);
                drop(conn);
                let _ = closed_tx.send(());
                return;
            }
            Act::SendReset(b) => {
                let _ = conn.write_all(&b);
                std::thread::sleep(Duration::from_millis(50));
                let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
                return;
            }
            Act::Close => return,
        }
    }
}

/// Answers the upgrade and echoes whatever the client sends on the upgraded connection.
fn echo_upgraded(mut conn: TcpStream) {
    let _ = conn.write_all(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    let mut buf = [0u8; 1024];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Reads one request: the head, then a Content-Length or chunked body.
fn read_request(conn: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head_len = buf.len();
    let head = String::from_utf8_lossy(&buf).into_owned();
    let lower = head.to_ascii_lowercase();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let mut body = vec![0; len.trim().parse().ok()?];
        conn.read_exact(&mut body).ok()?;
        buf.extend_from_slice(&body);
    } else if lower.contains("transfer-encoding: chunked") {
        while !buf.ends_with(b"\r\n0\r\n\r\n") {
            if conn.read(&mut byte).ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
    }
    let body = buf.split_off(head_len);
    Some(Received { head, body })
}
