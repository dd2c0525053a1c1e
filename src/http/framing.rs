//! Which request on a connection declared both `Transfer-Encoding` and `Content-Length`.
//!
//! RFC 9112 §6.1: such a request may be a smuggling attempt; a server may reject it and must close
//! the connection after answering. hyper closes, but it answers as if only `Transfer-Encoding` had
//! been sent, and it drops `Content-Length` before the request reaches a handler, so the handler
//! cannot tell. [`Watched`] reads the bytes hyper reads and follows the framing (heads, sized and
//! chunked bodies) just far enough to number the requests and note the first that declares both;
//! `server.rs` answers that one 400 instead of routing it. It holds a few hundred bytes per
//! connection, never a head or a body. On anything it does not follow (a malformed head, CONNECT),
//! it stops: hyper refuses or closes those itself.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The number (0 = first on the connection) of the first request that declared both headers.
#[derive(Debug, Default, Clone)]
pub struct Conflict(Arc<AtomicU64>);

impl Conflict {
    const NONE: u64 = u64::MAX;

    pub fn new() -> Self {
        Conflict(Arc::new(AtomicU64::new(Self::NONE)))
    }

    /// True if request number `n` of the connection declared both headers.
    pub fn is(&self, n: u64) -> bool {
        self.0.load(Ordering::Acquire) == n
    }

    fn set(&self, n: u64) {
        let _ = self.0.compare_exchange(Self::NONE, n, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Only the start of a line is kept: enough for the two header names, their values and a chunk size.
const KEPT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the request line (empty lines there are skipped, as httparse does).
    RequestLine,
    /// Header lines until the empty one.
    Headers,
    /// This many body bytes left.
    Sized(u64),
    ChunkSize,
    /// This many bytes of the current chunk left, then its CRLF.
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    /// Not followed any further.
    Stopped,
}

/// Follows the framing of the requests in the bytes given to [`Framing::feed`].
#[derive(Debug)]
pub struct Framing {
    state: State,
    line: Vec<u8>,
    /// The current line was longer than [`KEPT`].
    cut: bool,
    request: u64,
    transfer_encoding: Option<bool>, // Some(chunked?)
    content_length: Option<u64>,
    conflict: Conflict,
}

impl Framing {
    pub fn new(conflict: Conflict) -> Self {
        Framing {
            state: State::RequestLine,
            line: Vec::with_capacity(KEPT),
            cut: false,
            request: 0,
            transfer_encoding: None,
            content_length: None,
            conflict,
        }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Sized(left) | State::ChunkData(left) => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = match (self.state, left - n) {
                        (State::Sized(_), 0) => self.next_request(),
                        (State::Sized(_), rest) => State::Sized(rest),
                        (_, 0) => State::ChunkEnd,
                        (_, rest) => State::ChunkData(rest),
                    };
                }
                _ => match bytes.iter().position(|b| *b == b'\n') {
                    None => {
                        self.keep(bytes);
                        return;
                    }
                    Some(end) => {
                        self.keep(&bytes[..end]);
                        bytes = &bytes[end + 1..];
                        self.line_done();
                    }
                },
            }
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let room = KEPT - self.line.len();
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        self.cut |= part.len() > room;
    }

    fn line_done(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let cut = std::mem::take(&mut self.cut);
        self.state = self.after_line(&line, cut);
        line.clear();
        self.line = line;
    }

    fn after_line(&mut self, line: &[u8], cut: bool) -> State {
        match self.state {
            State::RequestLine if line.is_empty() && !cut => State::RequestLine,
            State::RequestLine if line.starts_with(b"CONNECT ") => State::Stopped,
            State::RequestLine => State::Headers,
            State::Headers if line.is_empty() && !cut => self.body(),
            State::Headers => self.header(line, cut),
            State::ChunkSize => {
                let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                let size = std::str::from_utf8(&line[..digits]).ok().and_then(|d| u64::from_str_radix(d, 16).ok());
                match size {
                    _ if cut && digits == line.len() => State::Stopped,
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                    None => State::Stopped,
                }
            }
            State::ChunkEnd if line.is_empty() && !cut => State::ChunkSize,
            State::Trailers if line.is_empty() && !cut => self.next_request(),
            State::Trailers => State::Trailers,
            _ => State::Stopped,
        }
    }

    fn header(&mut self, line: &[u8], cut: bool) -> State {
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return State::Stopped; // obs-fold: httparse refuses it
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else { return State::Stopped };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|b| *b == b',').next().unwrap_or_default().trim_ascii();
            // Cut short, the value's last coding is unknown; whether it is chunked decides the framing.
            self.transfer_encoding = if cut { None } else { Some(last.eq_ignore_ascii_case(b"chunked")) };
            if cut {
                return State::Stopped;
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
            match (parsed, self.content_length) {
                (Some(n), None) if !cut => self.content_length = Some(n),
                (Some(n), Some(prev)) if !cut && n == prev => {}
                // Invalid or differing lengths: hyper refuses the request and closes.
                _ => return State::Stopped,
            }
        }
        State::Headers
    }

    /// At the end of a head: what follows it.
    fn body(&mut self) -> State {
        match (self.transfer_encoding.take(), self.content_length.take()) {
            (Some(_), Some(_)) => {
                self.conflict.set(self.request);
                State::Stopped // hyper closes the connection after answering this one
            }
            (Some(true), None) => State::ChunkSize,
            (Some(false), None) => State::Stopped, // not chunked: hyper refuses it
            (None, Some(n)) if n > 0 => State::Sized(n),
            (None, _) => self.next_request(),
        }
    }

    fn next_request(&mut self) -> State {
        self.request += 1;
        State::RequestLine
    }
}

/// A stream whose incoming bytes also go through a [`Framing`].
pub struct Watched<IO> {
    io: IO,
    framing: Framing,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, conflict: Conflict) -> Self {
        Watched { io, framing: Framing::new(conflict) }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.framing.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers flagged after feeding `stream` in pieces of `step` bytes.
    fn flagged(stream: &[u8], step: usize) -> Option<u64> {
        let conflict = Conflict::new();
        let mut f = Framing::new(conflict.clone());
        for piece in stream.chunks(step) {
            f.feed(piece);
        }
        (0..16).find(|n| conflict.is(*n))
    }

    #[test]
    fn finds_the_request_that_declares_both_whatever_the_order_and_the_pieces() {
        let get = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
        let sized = "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        let chunked =
            "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n";
        let both = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
        let both_reversed = "POST /a HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        // A body that looks like a conflicting head is a body.
        let tricky = format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n{both}", both.len());
        let long_header = format!("POST /a HTTP/1.1\r\nx-long: {}\r\ncontent-length: 2\r\n\r\nok", "v".repeat(5000));
        for (name, stream, want) in [
            ("none", format!("{get}{sized}{chunked}{get}"), None),
            ("first", format!("{both}{get}"), Some(0)),
            ("reversed, after three", format!("{get}{sized}{chunked}{both_reversed}"), Some(3)),
            ("a body that looks like one", format!("{tricky}{get}"), None),
            ("after a long header", format!("{long_header}{both}"), Some(1)),
            ("leading empty lines", format!("\r\n\r\n{get}{both}"), Some(1)),
            ("bare LF line ends", format!("{}{both}", sized.replace("\r\n", "\n")), Some(1)),
        ] {
            for step in [1, 3, 7, 4096] {
                assert_eq!(flagged(stream.as_bytes(), step), want, "case {name}, pieces of {step}");
            }
        }
    }

    #[test]
    fn stops_where_hyper_refuses_or_closes() {
        for stream in [
            "POST /a HTTP/1.1\r\ncontent-length: x\r\n\r\n",
            "POST /a HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "POST /a HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
            "POST /a HTTP/1.1\r\nx: a\r\n folded\r\n\r\n",
            "CONNECT a:1 HTTP/1.1\r\n\r\n",
        ] {
            let both = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
            assert_eq!(flagged(format!("{stream}{both}").as_bytes(), 5), None, "{stream:?}");
        }
    }
}
