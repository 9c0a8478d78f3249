//! Serving at the edge of capacity: a client the server will not take is told so at once (a
//! short JSON answer and a close) instead of waiting in the accept queue, and failed accepts
//! are logged once per interval with a count instead of once per try.
//!
//! At the open-file limit `accept` fails while clients pile up in the kernel's queue, where
//! they wait until they give up (a liveness probe among them). A [`Reserve`] descriptor, opened
//! at start, is given up to accept one of them, answer it 503 and close, and is taken back.

use std::fs::File;
use std::io::ErrorKind;
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How often a persisting accept failure is logged.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// True for the errors that mean the process or system is out of file descriptors.
pub fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One descriptor kept open for the moment the process has none left.
pub struct Reserve(Option<File>);

impl Reserve {
    pub fn open() -> Self {
        Reserve(File::open("/dev/null").ok())
    }

    /// Gives the descriptor up; false if it was not held (still in use, or never reopened).
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Takes the descriptor back if there is one to be had.
    pub fn refill(&mut self) {
        if self.0.is_none() {
            self.0 = File::open("/dev/null").ok();
        }
    }
}

/// Counts failed accepts between log lines.
pub struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    pub fn new() -> Self {
        AcceptErrors {
            last_logged: None,
            unlogged: 0,
        }
    }

    /// Records a failure at `now`; returns how many failures the log line due now stands for,
    /// or `None` if one was written less than [`LOG_INTERVAL`] ago.
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self.last_logged.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL) {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self::new()
    }
}

/// Answers `stream` with `status` and `{"error": message}` and closes it, giving the client up
/// to `linger` to finish sending (so the close does not reset the answer away). Reads nothing
/// it does not already have when `linger` is zero, so it never waits on the client then.
pub async fn refuse(mut stream: TcpStream, status: StatusCode, message: &str, linger: Duration) {
    let body = serde_json::json!({ "error": message }).to_string();
    let answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    );
    let mut scratch = [0u8; 4096];
    // What the client already sent is read first: unread bytes at close turn the FIN into a reset.
    while matches!(stream.try_read(&mut scratch), Ok(n) if n > 0) {}
    let linger_until = Instant::now() + linger;
    let written = tokio::time::timeout(linger.max(Duration::from_millis(100)), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout_at(linger_until, async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    })
    .await;
    while matches!(stream.try_read(&mut scratch), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing accept is logged at once, then at most once per interval, with the count of
    /// failures the line stands for.
    #[test]
    fn accept_errors_are_logged_once_per_interval() {
        let mut errors = AcceptErrors::new();
        let start = Instant::now();
        assert_eq!(errors.record(start), Some(1));
        for ms in (50..LOG_INTERVAL.as_millis() as u64).step_by(50) {
            assert_eq!(errors.record(start + Duration::from_millis(ms)), None);
        }
        let suppressed = (LOG_INTERVAL.as_millis() as u64 - 50) / 50;
        assert_eq!(errors.record(start + LOG_INTERVAL), Some(suppressed + 1));
        assert_eq!(errors.record(start + LOG_INTERVAL + Duration::from_millis(1)), None);
    }
}
