//! `/ws/echo`: sends every text and binary frame back, for protocol conformance testing.

use std::sync::Arc;

use switchboard_runtime::{Frame, SocketConn};

use super::socket::SocketHandler;

/// Echoes frames through the socket's own outbound queue, so echo exercises the same write
/// path (and slow-consumer bound) as every other socket.
pub struct Echo;

impl SocketHandler for Echo {
    async fn on_frame(&mut self, conn: &Arc<SocketConn>, frame: Frame) {
        let _ = conn.send(frame);
    }

    async fn on_close(self, _conn: &Arc<SocketConn>, _code: u16, _reason: String) {}
}
