//! Sockets that belong to durable objects: the gateway side of `accept`.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use switchboard_runtime::{CallError, ConnectInfo, Frame, Object, ObjectSocket, SocketConn, Stub};

use super::Gateway;
use super::socket::{SocketHandler, close};

/// Hands a socket's frames and its close to the object that accepted it.
struct ObjectHandler(ObjectSocket);

impl SocketHandler for ObjectHandler {
    async fn on_frame(&mut self, _conn: &Arc<SocketConn>, frame: Frame) {
        self.0.frame(frame).await;
    }

    async fn on_close(self, _conn: &Arc<SocketConn>, code: u16, reason: String) {
        self.0.closed(code, reason).await;
    }
}

impl Gateway {
    /// Upgrades `req` and offers the socket to the object behind `stub`. A socket the object
    /// does not accept is closed with 1008; one the runtime cannot deliver is closed with 1011
    /// (1012 while shutting down).
    pub fn connect_object<O: Object>(&self, req: Request, stub: Stub<O>, info: ConnectInfo) -> Response {
        self.upgrade(req, move |connection| async move {
            let conn = connection.conn.clone();
            match stub.connect(conn.clone(), info).await {
                Ok(Some(socket)) => connection.run(ObjectHandler(socket)),
                Ok(None) => {
                    conn.close(close::POLICY, "rejected");
                    connection.run(Rejected);
                }
                Err(e) => {
                    let (code, reason) = match e {
                        CallError::ShuttingDown => (close::RESTARTING, "server restarting"),
                        _ => (close::INTERNAL, "object unavailable"),
                    };
                    tracing::warn!(error = %e, "socket could not be connected to its object");
                    conn.close(code, reason);
                    connection.run(Rejected);
                }
            }
        })
    }
}

/// A socket being closed before any object took it: frames are ignored.
struct Rejected;

impl SocketHandler for Rejected {
    async fn on_frame(&mut self, _conn: &Arc<SocketConn>, _frame: Frame) {}
    async fn on_close(self, _conn: &Arc<SocketConn>, _code: u16, _reason: String) {}
}
