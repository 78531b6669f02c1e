//! Where a body ends. The fast path forwards bodies byte for byte in the framing they came in
//! (no re-chunking, trailers kept), so all it needs to know is where each one stops: a count
//! for Content-Length, and for chunked framing a scanner over the chunk-size lines.

/// Longest chunk-size line (with extensions) or trailer line we accept from the app.
const MAX_LINE: usize = 4096;

/// Finds the end of a chunked body (RFC 9112, 7.1) in bytes fed to it in any pieces.
#[derive(Debug, Default)]
pub struct ChunkedEnd {
    state: State,
    size: u64,
    digits: usize,
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

/// The app's chunked framing is broken: the client connection must be cut, not finished.
#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body ({0})")]
pub struct BadChunk(pub &'static str);

impl ChunkedEnd {
    /// Scans `data`. Returns `Some(n)` when the body ends after the first `n` bytes of it,
    /// `None` when all of it belongs to the body and more is to come.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, BadChunk> {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(BadChunk("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        self.size = self.size * 16 + u64::from(d);
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = State::Extension,
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    _ => return Err(BadChunk("bad chunk size")),
                },
                State::Extension => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(BadChunk("chunk extension too long"));
                    }
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(BadChunk("chunk size line not ended by CRLF"));
                    }
                    self.line = 0;
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let take =
                        (data.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr if b == b'\r' => self.state = State::DataLf,
                State::DataLf if b == b'\n' => self.state = State::Size,
                State::DataCr | State::DataLf => {
                    return Err(BadChunk("chunk data not followed by CRLF"))
                }
                State::TrailerStart if b == b'\r' => self.state = State::EndLf,
                State::TrailerStart | State::TrailerLine => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(BadChunk("trailer line too long"));
                    }
                    self.state = State::TrailerLine;
                    if b == b'\n' {
                        self.line = 0;
                        self.state = State::TrailerStart;
                    }
                }
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(Some(i + 1));
                }
                State::EndLf => return Err(BadChunk("last chunk not ended by CRLF")),
                State::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";

    #[test]
    fn finds_the_end_whole_and_byte_by_byte() {
        let end = BODY.len() - 4;
        assert_eq!(ChunkedEnd::default().feed(BODY).unwrap(), Some(end));
        let mut c = ChunkedEnd::default();
        for (i, b) in BODY.iter().enumerate() {
            match c.feed(std::slice::from_ref(b)).unwrap() {
                None => assert!(i + 1 < end, "ended late at {i}"),
                Some(n) => {
                    assert_eq!((i + 1, n), (end, 1), "ended at the last CRLF");
                    return;
                }
            }
        }
        panic!("never ended");
    }

    #[test]
    fn refuses_broken_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"\r\n",
            b"ffffffffffffffff\r\n",
            b"0\r\n\rX",
        ] {
            assert!(ChunkedEnd::default().feed(bad).is_err(), "{bad:?}");
        }
    }
}
