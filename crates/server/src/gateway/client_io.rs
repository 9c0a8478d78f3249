//! The accepted TCP stream as hyper sees it: it holds the client address's connection slot for
//! as long as the connection lives (a WebSocket included), and puts hyper's own error answers in
//! the API's `{"error"}` shape.
//!
//! hyper answers a request it cannot parse (400), a URI too long (414) or headers too large or
//! too many (431) by itself, with an empty body and no hook to change it. Those answers are the
//! only bodiless 4xx the gateway writes (every route's error has a JSON body), so they are
//! recognised on the way out and replaced by the same status with a JSON body.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::limits::IpSlot;

pub struct ClientIo<S = TcpStream> {
    stream: S,
    _slot: IpSlot,
    /// False once the connection switched protocols: its bytes are no longer HTTP answers.
    http: bool,
    /// Boxed: it is rare, and a WebSocket keeps this stream for its whole life.
    substitute: Option<Box<Substitute>>,
}

/// A JSON answer being written in place of one of hyper's.
struct Substitute {
    bytes: Vec<u8>,
    sent: usize,
    /// Length of hyper's answer, reported written once all of `bytes` are.
    replaces: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ClientIo<S> {
    pub fn new(stream: S, slot: IpSlot) -> Self {
        ClientIo {
            stream,
            _slot: slot,
            http: true,
            substitute: None,
        }
    }

    /// Starts a substitute if `buf` is one of hyper's own error answers.
    fn inspect(&mut self, buf: &[u8]) {
        if !self.http || self.substitute.is_some() {
            return;
        }
        if buf.starts_with(b"HTTP/1.1 101 ") {
            self.http = false;
        } else if let Some(status) = automatic_error(buf) {
            self.substitute = Some(Box::new(Substitute {
                bytes: json_answer(status),
                sent: 0,
                replaces: buf.len(),
            }));
        }
    }

    /// Writes the substitute, if any; `Ready(Some(n))` once hyper's `n` bytes count as written.
    fn poll_substitute(&mut self, cx: &mut Context<'_>) -> Poll<Option<std::io::Result<usize>>> {
        let Some(sub) = self.substitute.as_mut() else {
            return Poll::Ready(None);
        };
        while sub.sent < sub.bytes.len() {
            match ready!(Pin::new(&mut self.stream).poll_write(cx, &sub.bytes[sub.sent..])) {
                Ok(0) => return Poll::Ready(Some(Err(std::io::ErrorKind::WriteZero.into()))),
                Ok(n) => sub.sent += n,
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        let replaces = sub.replaces;
        self.substitute = None;
        Poll::Ready(Some(Ok(replaces)))
    }
}

/// The status of `buf` if it is a whole bodiless 400, 414 or 431 answer, as hyper writes for a
/// request it could not parse.
fn automatic_error(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = match rest.get(..4)? {
        b"400 " => StatusCode::BAD_REQUEST,
        b"414 " => StatusCode::URI_TOO_LONG,
        b"431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let bodiless = buf
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0\r\n"));
    (head_end + 4 == buf.len() && bodiless).then_some(status)
}

fn json_answer(status: StatusCode) -> Vec<u8> {
    let message = match status {
        StatusCode::URI_TOO_LONG => "the request URI is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request headers are too large or too many",
        _ => "the request is not valid HTTP/1.1",
    };
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes()
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.inspect(buf);
        if let Some(done) = ready!(self.poll_substitute(cx)) {
            return Poll::Ready(done);
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            self.inspect(first);
        }
        if let Some(done) = ready!(self.poll_substitute(cx)) {
            return Poll::Ready(done);
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's bodiless parse-error answers are recognised; route answers with a body are not.
    #[test]
    fn recognises_only_bodiless_parse_errors() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            automatic_error(hyper_431),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let route_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(automatic_error(route_400), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error(ok), None);
        let answer = String::from_utf8(json_answer(StatusCode::URI_TOO_LONG)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(serde_json::from_str::<serde_json::Value>(body).unwrap()["error"].is_string());
    }
}
