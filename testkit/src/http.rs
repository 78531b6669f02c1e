//! A raw HTTP/1.1 client over a blocking `TcpStream`.
//!
//! Tests need to control what goes on which connection (keep-alive or not, a malformed request,
//! half a request) and to see exactly what comes back, including a connection closed or reset
//! where a response should have been. A general client library retries, pools and repairs behind
//! its own policy, which is what the tests are there to observe, so this one does none of that.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::DEADLINE;

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `GET path` on a new connection (`Connection: close`), read with [`Client::read_response`].
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    let mut c = Client::connect(addr)?;
    c.send(&format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    ))?;
    c.read_response()
}

/// Reads exactly one response from a connection that stays open, framed like
/// [`Client::read_response`], and reads nothing past it: the caller can go on using `stream`
/// for the next request on the same connection.
pub fn read_one_response(stream: &mut TcpStream) -> io::Result<Response> {
    // One byte per read: slow, but the only way not to consume what may follow without a buffer
    // that outlives the call. Test responses are small.
    struct ByteByByte<'a>(&'a mut TcpStream);
    impl Read for ByteByByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }
    read_framed(&mut ByteByByte(stream), &mut Vec::new())
}

/// A raw HTTP/1.1 connection, so tests control keep-alive and see exactly what comes back.
pub struct Client {
    pub stream: TcpStream,
    /// Bytes read past the last response (pipelined or early data), kept for the next one.
    buf: Vec<u8>,
}

impl Client {
    /// Connects, with reads bounded by [`DEADLINE`] so a response that never comes fails the
    /// test instead of hanging it.
    pub fn connect(addr: SocketAddr) -> io::Result<Client> {
        Client::connect_with_timeout(addr, DEADLINE)
    }

    /// Connects, with reads bounded by `read_timeout` (for tests whose responses are slow on
    /// purpose).
    pub fn connect_with_timeout(addr: SocketAddr, read_timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(read_timeout))?;
        Ok(Client {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, raw: &str) -> io::Result<()> {
        self.send_bytes(raw.as_bytes())
    }

    pub fn send_bytes(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream.write_all(raw)
    }

    /// `GET path` on this connection, kept alive.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))?;
        self.read_response()
    }

    /// Reads one response, framed as RFC 9112 section 6.3 has it: 1xx, 204 and 304 have no body,
    /// then chunked encoding, then Content-Length, else the body runs to the end of the connection.
    /// A connection closed before the response is complete is `UnexpectedEof`.
    pub fn read_response(&mut self) -> io::Result<Response> {
        read_framed(&mut self.stream, &mut self.buf)
    }

    /// Reads until the server closes the connection, and takes everything after the head as the
    /// body, whatever the head says: for a `Connection: close` exchange where the close itself is
    /// part of what is tested.
    pub fn read_to_close(&mut self) -> io::Result<Response> {
        self.stream.read_to_end(&mut self.buf)?;
        let raw = std::mem::take(&mut self.buf);
        let Some(head_end) = find(&raw, b"\r\n\r\n") else {
            return Err(invalid("no complete response head", &raw));
        };
        let (status, headers) = parse_head(&raw[..head_end])?;
        Ok(Response {
            status,
            headers,
            body: raw[head_end + 4..].to_vec(),
        })
    }

    /// Waits for the server to close the connection; true if it did (EOF or reset) before
    /// `deadline`, false if it sent bytes or the deadline passed.
    pub fn closed_by_server(&mut self, deadline: Duration) -> bool {
        self.stream.set_read_timeout(Some(deadline)).unwrap();
        let mut b = [0u8; 64];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

/// Reads one framed response from `stream`; `buf` holds bytes already read and keeps those read
/// past the response.
fn read_framed(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Response> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        if fill(stream, buf)? == 0 {
            return Err(eof(format!(
                "connection closed before a full response head ({} bytes)",
                buf.len()
            )));
        }
    };
    let (status, headers) = parse_head(&buf[..head_end])?;
    buf.drain(..head_end + 4);
    let body = if status == 204 || status == 304 || status < 200 {
        Vec::new()
    } else if header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(stream, buf)?
    } else if let Some(len) = header(&headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid("bad content-length", len.as_bytes()))?;
        fill_to(stream, buf, len, "body cut short")?;
        buf.drain(..len).collect()
    } else {
        while fill(stream, buf)? > 0 {}
        std::mem::take(buf)
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A chunked body, through the last chunk and the trailer section after it (read and dropped:
/// tests look at bodies, and what follows on the connection must start at the next response).
fn read_chunked(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid("bad chunk size", line.as_bytes()))?;
        if size == 0 {
            while !read_line(stream, buf)?.is_empty() {}
            return Ok(body);
        }
        fill_to(stream, buf, size + 2, "chunk cut short")?;
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// One CRLF-terminated line of a chunked body, without the CRLF.
fn read_line(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<String> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n") {
            break i;
        }
        if fill(stream, buf)? == 0 {
            return Err(eof("chunk cut short".to_string()));
        }
    };
    let line = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 2);
    Ok(line)
}

/// The status and headers of a response head (without its final blank line).
fn parse_head(head: &[u8]) -> io::Result<(u16, Vec<(String, String)>)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line", head))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

fn fill(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn fill_to(stream: &mut impl Read, buf: &mut Vec<u8>, len: usize, what: &str) -> io::Result<()> {
    while buf.len() < len {
        if fill(stream, buf)? == 0 {
            return Err(eof(what.to_string()));
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn eof(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what)
}

fn invalid(what: &str, raw: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{what}: {:?}", String::from_utf8_lossy(raw)),
    )
}
