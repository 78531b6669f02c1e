//! A small HTTP/1.1 client over a plain tokio `TcpStream`.
//!
//! The lab must tell a refused connect from a reset from a connection closed before the
//! response, and must control exactly which connection each request goes on; a general client
//! library retries, pools and folds errors together behind its own policy. This one does none of
//! that: one request on one connection, and the error says what the socket said.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::measure::record::Outcome;

/// What went wrong, as the socket reported it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection refused")]
    Refused,
    #[error("connection reset ({0})")]
    Reset(String),
    #[error("connection closed before a complete response (eof after {0} response bytes)")]
    Eof(usize),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    pub fn outcome(&self) -> Outcome {
        match self {
            ClientError::Refused => Outcome::Refused,
            ClientError::Reset(_) | ClientError::Eof(_) => Outcome::Reset,
            ClientError::Timeout => Outcome::Timeout,
            ClientError::Other(_) => Outcome::Other,
        }
    }

    fn from_io(e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ClientError::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => ClientError::Reset(e.kind().to_string()),
            io::ErrorKind::TimedOut => ClientError::Timeout,
            _ => ClientError::Other(e.to_string()),
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server asked to close the connection (or it is HTTP/1.0 without keep-alive).
    pub close: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Requests sent on it so far.
    pub used: u32,
    /// The client's port: lets the run find which pod the L4 service front chose for it.
    pub local_port: u16,
    /// Some byte of the current request's response has arrived.
    pub got_bytes: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, ClientError> {
        Conn::connect_from(addr, |_| {}).await
    }

    /// Connects from an explicitly bound port (on loopback for a loopback target, else on any
    /// address, as a load generator in a pod does), reported through `port` before the
    /// handshake: a connection the front resets at once still tells which route it took.
    pub async fn connect_from(
        addr: SocketAddr,
        port: impl FnOnce(u16),
    ) -> Result<Conn, ClientError> {
        let socket = tokio::net::TcpSocket::new_v4().map_err(ClientError::from_io)?;
        socket
            .bind(if addr.ip().is_loopback() {
                SocketAddr::from(([127, 0, 0, 1], 0))
            } else {
                SocketAddr::from(([0, 0, 0, 0], 0))
            })
            .map_err(ClientError::from_io)?;
        port(socket.local_addr().map(|a| a.port()).unwrap_or(0));
        let stream = socket.connect(addr).await.map_err(ClientError::from_io)?;
        let _ = stream.set_nodelay(true);
        let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(1024),
            used: 0,
            local_port,
            got_bytes: false,
        })
    }

    /// Whether the server has already closed (or reset) this idle connection. Every real
    /// client pool checks this before reusing a connection; without it the lab would count
    /// as lost requests that no real client would have sent.
    pub fn closed_by_peer(&self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.try_read(&mut b) {
            Ok(_) => true, // EOF, or bytes nobody asked for: unusable either way
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    }

    /// Sends one request and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: &[u8],
        close: bool,
    ) -> Result<Response, ClientError> {
        self.used += 1;
        self.got_bytes = false;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lameduck-lab\r\n");
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.stream
            .write_all(&msg)
            .await
            .map_err(ClientError::from_io)?;
        self.read_response(method == "HEAD").await
    }

    async fn fill(&mut self, received: usize) -> Result<(), ClientError> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(ClientError::from_io)?;
        if n == 0 {
            return Err(ClientError::Eof(received));
        }
        self.got_bytes = true;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self, head_only: bool) -> Result<Response, ClientError> {
        let (status, headers, version, head_len) = self.read_head().await?;
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let conn_hdr = get("connection").unwrap_or_default();
        let mut close =
            conn_hdr.contains("close") || (version == 0 && !conn_hdr.contains("keep-alive"));
        let body = if head_only || status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            self.read_chunked(head_len).await?
        } else if let Some(len) = get("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| ClientError::Other(format!("bad content-length {len}")))?;
            self.read_length(head_len, len).await?
        } else {
            // Delimited by close.
            close = true;
            self.read_to_close().await?
        };
        Ok(Response {
            status,
            headers,
            body,
            close,
        })
    }

    /// The final response head (1xx interim responses skipped): status, headers, HTTP minor
    /// version, head length. The buffer keeps what followed the head.
    async fn read_head(&mut self) -> Result<(u16, Vec<(String, String)>, u8, usize), ClientError> {
        self.buf.clear();
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = r.code.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        self.buf.drain(..len);
                        continue;
                    }
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    let version = r.version.unwrap_or(1);
                    self.buf.drain(..len);
                    return Ok((status, headers, version, len));
                }
                Ok(httparse::Status::Partial) => {
                    let got = self.buf.len();
                    self.fill(got).await?
                }
                Err(e) => return Err(ClientError::Other(format!("malformed response: {e}"))),
            }
        }
    }

    async fn read_length(&mut self, head_len: usize, len: usize) -> Result<Vec<u8>, ClientError> {
        while self.buf.len() < len {
            let got = head_len + self.buf.len();
            self.fill(got).await?;
        }
        Ok(self.buf.drain(..len).collect())
    }

    async fn read_to_close(&mut self) -> Result<Vec<u8>, ClientError> {
        loop {
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(ClientError::from_io(e)),
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    async fn read_chunked(&mut self, head_len: usize) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let got = head_len + body.len() + self.buf.len();
                self.fill(got).await?;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| ClientError::Other(format!("bad chunk size `{line}`")))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers, then the final CRLF.
                loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        let empty = i == 0;
                        self.buf.drain(..i + 2);
                        if empty {
                            return Ok(body);
                        }
                        continue;
                    }
                    let got = head_len + body.len() + self.buf.len();
                    self.fill(got).await?;
                }
            }
            while self.buf.len() < size + 2 {
                let got = head_len + body.len() + self.buf.len();
                self.fill(got).await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

/// A one-shot GET on a fresh connection, bounded by `timeout`: what the kubelet's probes and
/// preStop `httpGet` do.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response, ClientError> {
    let fut = async {
        let mut c = Conn::connect(addr).await?;
        c.request("GET", &addr.to_string(), path, &[], true).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}
