//! The NFC reader: the [`TagReader`] trait, and the thread that polls it and hands what it
//! reads to async code through a channel.
//!
//! Reader drivers block (a PN532 poll waits on the SPI bus), so they run on a thread of their
//! own; the seed started an event loop per tag from that thread instead.

use std::time::Duration;

use switchboard_proto::kiosk::uid_from_bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A reader of NFC tags.
pub trait TagReader: Send + 'static {
    /// Its name in `status` and logs (`mock`, `pn532`).
    fn driver(&self) -> &'static str;
    /// Waits up to `timeout` for a tag in the field; its uid bytes, or `None` if none came.
    fn poll(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ReaderError>;
}

/// A reader that failed (unplugged, wrong wiring).
#[derive(Debug, thiserror::Error)]
#[error("NFC reader: {0}")]
pub struct ReaderError(pub String);

/// What the reader thread reports.
#[derive(Debug, PartialEq)]
pub enum ReaderEvent {
    /// A tag was read; its uid in the wire's form.
    Tag(String),
    /// The reader started or stopped answering.
    Connected(bool),
}

/// A reader fed by hand: tests and `switchboard nfc simulate` present tags through its
/// [`MockTags`]; with no feeder left it reads nothing.
pub struct MockReader {
    tags: std::sync::mpsc::Receiver<Vec<u8>>,
}

/// Presents tags to a [`MockReader`].
#[derive(Clone)]
pub struct MockTags(std::sync::mpsc::Sender<Vec<u8>>);

impl MockTags {
    pub fn present(&self, uid: &[u8]) {
        let _ = self.0.send(uid.to_vec());
    }
}

impl MockReader {
    pub fn new() -> (MockReader, MockTags) {
        let (tx, rx) = std::sync::mpsc::channel();
        (MockReader { tags: rx }, MockTags(tx))
    }
}

impl TagReader for MockReader {
    fn driver(&self) -> &'static str {
        "mock"
    }

    fn poll(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ReaderError> {
        match self.tags.recv_timeout(timeout) {
            Ok(uid) => Ok(Some(uid)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Nobody can present a tag any more: idle like a reader with an empty field.
                std::thread::sleep(timeout);
                Ok(None)
            }
        }
    }
}

/// Time between attempts while the reader fails.
const RETRY: Duration = Duration::from_secs(1);

/// Polls `reader` on a thread of its own, `poll` at a time, until `stop` is cancelled; uids and
/// changes of state arrive on the returned channel. Every uid read is sent: the debounce is the
/// kiosk's, one rule for every source of tags.
pub fn spawn(mut reader: Box<dyn TagReader>, poll: Duration, stop: CancellationToken) -> mpsc::Receiver<ReaderEvent> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("nfc-reader".into())
        .spawn(move || {
            let mut connected = true;
            while !stop.is_cancelled() {
                let event = match reader.poll(poll) {
                    Ok(uid) => {
                        if !connected {
                            connected = true;
                            if tx.blocking_send(ReaderEvent::Connected(true)).is_err() {
                                return;
                            }
                        }
                        uid.map(|uid| ReaderEvent::Tag(uid_from_bytes(&uid)))
                    }
                    Err(e) => {
                        if connected {
                            tracing::warn!(error = %e, "kiosk: the NFC reader does not answer; retrying");
                            connected = false;
                            if tx.blocking_send(ReaderEvent::Connected(false)).is_err() {
                                return;
                            }
                        }
                        std::thread::sleep(RETRY);
                        None
                    }
                };
                if let Some(event) = event
                    && tx.blocking_send(event).is_err()
                {
                    return;
                }
            }
        })
        .expect("start the NFC reader thread");
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that fails once, then reads one tag.
    struct Flaky(u32);

    impl TagReader for Flaky {
        fn driver(&self) -> &'static str {
            "flaky"
        }

        fn poll(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, ReaderError> {
            self.0 += 1;
            match self.0 {
                1 => Err(ReaderError("no answer".into())),
                2 => Ok(Some(vec![0x04, 0xA1, 0xB2, 0xC3])),
                _ => {
                    std::thread::sleep(timeout);
                    Ok(None)
                }
            }
        }
    }

    /// Uids read on the reader's thread arrive in async code, with the reader's state changes.
    #[tokio::test]
    async fn the_thread_hands_uids_to_async_code() {
        let stop = CancellationToken::new();
        let (reader, tags) = MockReader::new();
        let mut events = spawn(Box::new(reader), Duration::from_millis(20), stop.clone());
        tags.present(&[4, 0x11, 0x5d, 0x22]);
        tags.present(&[4, 0x11, 0x5d, 0x22]);
        assert_eq!(events.recv().await, Some(ReaderEvent::Tag("04:11:5D:22".into())));
        assert_eq!(events.recv().await, Some(ReaderEvent::Tag("04:11:5D:22".into())));
        stop.cancel();
        assert_eq!(events.recv().await, None, "the thread ends when stopped");

        let stop = CancellationToken::new();
        let mut events = spawn(Box::new(Flaky(0)), Duration::from_millis(20), stop.clone());
        assert_eq!(events.recv().await, Some(ReaderEvent::Connected(false)));
        assert_eq!(events.recv().await, Some(ReaderEvent::Connected(true)));
        assert_eq!(events.recv().await, Some(ReaderEvent::Tag("04:A1:B2:C3".into())));
        stop.cancel();
    }
}
