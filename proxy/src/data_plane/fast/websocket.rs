//! WebSocket connections at shutdown: told to go, not cut.
//!
//! After a 101 the connection is a tunnel (RFC 6455 frames both ways). Cutting it at the drain
//! timeout leaves both ends with close code 1006 (abnormal closure) and no reason. Instead,
//! when draining begins lameduck sends each side a Close frame with code 1001 (Going Away), at a
//! frame boundary of the direction it goes in, so no frame is split: to the client unmasked,
//! as a server sends it; to the app masked, as a client must (RFC 6455, 5.3). From then on the
//! frames each side still sends are not passed on (an endpoint that has received a Close sends
//! no more data); lameduck waits for each side's own Close in reply and then closes the
//! connection. A side that does not answer is cut at the drain timeout like any request.
//!
//! The payload is never re-framed or unmasked: lameduck only reads frame headers to know where
//! each frame ends.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Close code 1001, Going Away: "an endpoint is going away, such as a server going down".
const GOING_AWAY: [u8; 2] = 1001u16.to_be_bytes();

/// Opcode of a Close frame.
const CLOSE: u8 = 0x8;

/// The Close frame lameduck sends the client: FIN + Close, unmasked, the code as payload.
pub fn close_to_client() -> [u8; 4] {
    [0x80 | CLOSE, 2, GOING_AWAY[0], GOING_AWAY[1]]
}

/// The Close frame lameduck sends the app: FIN + Close, masked with `key`.
pub fn close_to_app(key: [u8; 4]) -> [u8; 8] {
    [
        0x80 | CLOSE,
        0x80 | 2,
        key[0],
        key[1],
        key[2],
        key[3],
        GOING_AWAY[0] ^ key[0],
        GOING_AWAY[1] ^ key[1],
    ]
}

/// Follows frame boundaries in one direction of a WebSocket stream, fed bytes in any pieces.
#[derive(Debug, Default)]
pub struct Frames {
    /// Bytes of the current frame header seen so far (at most 14).
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come; `None` while in a header.
    payload_left: Option<u64>,
}

/// What a piece of a stream holds, as [`Frames::next_event`] finds it.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A frame header ends after this many bytes of the piece; its opcode.
    Header { end: usize, opcode: u8 },
    /// The current frame ends after this many bytes: a boundary.
    Boundary(usize),
    /// Nothing more in this piece.
    More,
}

impl Frames {
    /// Whether the stream is between two frames now.
    pub fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left.is_none()
    }

    /// Consumes `data` up to the next event and returns it, with its offset in `data`; call
    /// again with the rest.
    pub fn next_event(&mut self, data: &[u8]) -> Event {
        let mut i = 0;
        loop {
            if let Some(left) = self.payload_left {
                let take = (data.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                i += take;
                if left == take as u64 {
                    self.payload_left = None;
                    return Event::Boundary(i);
                }
                self.payload_left = Some(left - take as u64);
                return Event::More;
            }
            if i == data.len() {
                return Event::More;
            }
            self.header[self.have] = data[i];
            self.have += 1;
            i += 1;
            if let Some(payload) = self.header_complete() {
                self.have = 0;
                // A frame without payload ends with its header: then this is a boundary too.
                self.payload_left = (payload > 0).then_some(payload);
                return Event::Header {
                    end: i,
                    opcode: self.header[0] & 0x0f,
                };
            }
        }
    }

    /// Consumes all of `data`.
    fn skip(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.next_event(data) {
                Event::More => return,
                Event::Header { end, .. } | Event::Boundary(end) => data = &data[end..],
            }
        }
    }

    /// Consumes `data` up to the first frame boundary in it and returns its offset; `None`
    /// when all of it belongs to the current frame.
    fn until_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let mut off = 0;
        loop {
            match self.next_event(&data[off..]) {
                Event::More => return None,
                Event::Header { end, .. } | Event::Boundary(end) => {
                    off += end;
                    if self.at_boundary() {
                        return Some(off);
                    }
                }
            }
        }
    }

    /// The payload length once the header is whole.
    fn header_complete(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let masked = self.header[1] & 0x80 != 0;
        let len7 = self.header[1] & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let need = 2 + ext + if masked { 4 } else { 0 };
        if self.have < need {
            return None;
        }
        Some(match ext {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            _ => u64::from_be_bytes(self.header[2..10].try_into().unwrap_or([0; 8])),
        })
    }
}

/// One direction of the tunnel: forwards everything from `from` to `to` until `going_away`
/// completes; then, at the next frame boundary, sends `close` to `to`, stops forwarding, and
/// reads on until `from` answers with its own Close frame, closes, or errs. Returns whether
/// `close` was sent.
pub async fn relay(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    close: &[u8],
    going_away: impl std::future::Future<Output = ()>,
) -> io::Result<bool> {
    tokio::pin!(going_away);
    let mut frames = Frames::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut draining = false;
    loop {
        if draining && frames.at_boundary() {
            to.write_all(close).await?;
            answer(&mut from, &mut frames, &mut buf, 0).await?;
            return Ok(true);
        }
        let n = tokio::select! {
            biased;
            _ = &mut going_away, if !draining => {
                draining = true;
                continue;
            }
            n = from.read(&mut buf) => n?,
        };
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(false);
        }
        if !draining {
            frames.skip(&buf[..n]);
            to.write_all(&buf[..n]).await?;
            continue;
        }
        // Draining in the middle of a frame: the frame goes out whole, then the Close.
        match frames.until_boundary(&buf[..n]) {
            None => to.write_all(&buf[..n]).await?,
            Some(k) => {
                to.write_all(&buf[..k]).await?;
                to.write_all(close).await?;
                buf.copy_within(k..n, 0);
                answer(&mut from, &mut frames, &mut buf, n - k).await?;
                return Ok(true);
            }
        }
    }
}

/// After our Close went out: reads what the sender still sends (the first `pending` bytes of
/// `buf` already read), passing nothing on, until its Close frame begins, it closes, or errs.
async fn answer(
    from: &mut (impl AsyncRead + Unpin),
    frames: &mut Frames,
    buf: &mut [u8],
    mut pending: usize,
) -> io::Result<()> {
    loop {
        let mut piece = &buf[..pending];
        while !piece.is_empty() {
            match frames.next_event(piece) {
                Event::More => break,
                Event::Header { opcode: CLOSE, .. } => return Ok(()),
                Event::Header { end, .. } | Event::Boundary(end) => piece = &piece[end..],
            }
        }
        pending = from.read(buf).await?;
        if pending == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        let m = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend_from_slice(payload);
        f
    }

    /// Offsets of every boundary, feeding `data` in pieces of `step` bytes.
    fn boundaries(data: &[u8], step: usize) -> Vec<usize> {
        let mut frames = Frames::default();
        let mut out = Vec::new();
        let mut base = 0;
        for piece in data.chunks(step) {
            let mut off = 0;
            while off < piece.len() {
                match frames.next_event(&piece[off..]) {
                    Event::More => break,
                    Event::Header { end, .. } | Event::Boundary(end) => {
                        off += end;
                        if frames.at_boundary() {
                            out.push(base + off);
                        }
                    }
                }
            }
            base += piece.len();
        }
        out
    }

    #[test]
    fn frame_boundaries_are_found_however_the_stream_is_split() {
        let mut s = frame(0x1, true, b"hello");
        let a = s.len();
        s.extend(frame(0x2, false, &vec![7u8; 300]));
        let b = s.len();
        s.extend(frame(0x9, true, b""));
        let c = s.len();
        s.extend(frame(0x2, false, &vec![1u8; 70_000]));
        let d = s.len();
        for step in [1, 2, 3, 7, 100, 4096, s.len()] {
            assert_eq!(boundaries(&s, step), vec![a, b, c, d], "step {step}");
        }
    }

    #[test]
    fn the_close_frames_carry_going_away() {
        assert_eq!(close_to_client(), [0x88, 0x02, 0x03, 0xE9]);
        let f = close_to_app([9, 8, 7, 6]);
        assert_eq!(&f[..2], &[0x88, 0x82]);
        assert_eq!([f[6] ^ 9, f[7] ^ 8], [0x03, 0xE9]);
    }
}
