//! The helpers against a real loopback socket answering canned bytes, and a real child process:
//! each suite's tests trust these to report what the wire said, so these check that they do.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;

use testkit::{read_one_response, Client, Proc, DEADLINE};

/// A one-connection server on its own loopback IP: reads one request head, then writes `reply`
/// and closes.
fn canned(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind((testkit::own_loopback_ip(), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        conn.write_all(reply).unwrap();
    });
    addr
}

#[test]
fn pipelined_responses_of_each_framing_come_back_one_by_one() {
    let addr = canned(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n\
          HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n\
          HTTP/1.1 201 Created\r\ncontent-length: 3\r\nX-A: b\r\n\r\nabc\
          HTTP/1.1 500 Oops\r\n\r\nto the end",
    );
    let mut c = Client::connect(addr).unwrap();
    let r = c.get("/").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello world"));
    assert_eq!(c.read_response().unwrap().status, 204);
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (201, "abc"));
    assert_eq!(r.header("x-a"), Some("b"));
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.text().as_str()), (500, "to the end"));
    let err = c.read_response().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
}

#[test]
fn a_body_cut_short_is_an_error_not_a_short_body() {
    let addr = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    let err = testkit::get(addr, "/").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
}

#[test]
fn read_to_close_takes_everything_after_the_head() {
    let addr = canned(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nabc");
    let mut c = Client::connect(addr).unwrap();
    c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_to_close().unwrap().text(), "abc");
}

#[test]
fn read_one_response_leaves_the_next_one_in_the_stream() {
    let addr = canned(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi\
          HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    );
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_one_response(&mut stream).unwrap().text(), "hi");
    assert_eq!(read_one_response(&mut stream).unwrap().status, 404);
    let err = read_one_response(&mut stream).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
}

#[test]
fn a_child_s_stderr_is_captured_to_the_last_line() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo first >&2; echo 'last line' >&2; exit 3"]);
    let mut p = Proc::start("sh", cmd);
    assert_eq!(p.wait_exit(DEADLINE).code(), Some(3));
    assert_eq!(p.log_lines(), ["first", "last line"]);
    assert_eq!(p.wait_log("last"), "last line");
    assert!(!p.is_running());
}
