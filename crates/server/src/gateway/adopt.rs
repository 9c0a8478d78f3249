//! Connections born outside the gateway (Socket.IO sockets), adopted so that every connection
//! is counted, reachable by id, and closed with 1012 when the server shuts down.

use switchboard_apps::Adopted;
use switchboard_runtime::{Runtime, SocketId};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Gateway;
use super::socket::close;

/// Lives as long as the adopted connection: shutdown waits for it, metrics count it.
struct Adoption {
    runtime: Runtime,
    id: SocketId,
    protocol: &'static str,
    _tracked: TaskTrackerToken,
}

impl Drop for Adoption {
    fn drop(&mut self) {
        metrics::gauge!("switchboard_connections_open").decrement(1.0);
        metrics::gauge!("switchboard_adopted_connections_open", "protocol" => self.protocol).decrement(1.0);
        self.runtime.socket_ended(self.id);
    }
}

pub(super) fn adopt(gateway: &Gateway, protocol: &'static str) -> Adopted {
    let conn = gateway.runtime.new_socket(gateway.config.outbound_queue);
    metrics::gauge!("switchboard_connections_open").increment(1.0);
    metrics::gauge!("switchboard_adopted_connections_open", "protocol" => protocol).increment(1.0);
    // On shutdown the adopter sees a close with 1012 in its queue, like every gateway socket.
    let (watched, shutdown) = (conn.clone(), gateway.shutdown.clone());
    gateway.sockets.spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => watched.close(close::RESTARTING, "server restarting"),
            _ = watched.closing() => {}
        }
    });
    let guard = Adoption {
        runtime: gateway.runtime.clone(),
        id: conn.id(),
        protocol,
        _tracked: gateway.sockets.token(),
    };
    Adopted::new(conn, Box::new(guard))
}
