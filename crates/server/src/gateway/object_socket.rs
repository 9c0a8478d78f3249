//! Sockets that belong to durable objects: the gateway side of `accept`.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use switchboard_apps::{Connector, SocketOptions};
use switchboard_runtime::{CallError, Frame, ObjectSocket, SocketConn};

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
    /// Upgrades `req` and offers the socket to the object `connector` names. A socket the
    /// object does not accept is closed with 1008; one whose class is not registered with 1011
    /// and a reason naming the class; one whose object failed with 1011; 1012 while shutting
    /// down.
    pub(crate) fn connect_object(&self, req: Request, options: SocketOptions, connector: Connector) -> Response {
        self.upgrade(req, options, move |connection| async move {
            let conn = connection.conn.clone();
            match connector(conn.clone()).await {
                Ok(Some(socket)) => connection.run(ObjectHandler(socket)),
                Ok(None) => {
                    conn.close(close::POLICY, "rejected");
                    connection.run(Rejected);
                }
                Err(e) => {
                    let reason = match &e {
                        CallError::ShuttingDown => "server restarting".to_string(),
                        CallError::UnknownClass(class) => format!("no object class {class:?} is served here"),
                        CallError::Unreachable(_) | CallError::TimedOut(_) => "object moving; reconnect".to_string(),
                        _ => "object unavailable".to_string(),
                    };
                    let code = match e {
                        // Another node is taking the object over: a reconnect finds it.
                        CallError::ShuttingDown | CallError::Unreachable(_) | CallError::TimedOut(_) => {
                            close::RESTARTING
                        }
                        _ => close::INTERNAL,
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
