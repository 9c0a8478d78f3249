//! The client side of the wire: WebSockets from chosen source addresses, a keep-alive HTTP
//! client, and the bench's own clock.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client WebSocket.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one connection attempt (TCP plus handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Nanoseconds since the bench started, on a monotonic clock. Publishers put these in their
/// payloads and subscribers in the same process subtract them, so no wall clock is involved.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { epoch: Instant::now() }
    }

    pub fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    pub fn now_ns(&self) -> u64 {
        self.ns(Instant::now())
    }
}

/// Source addresses for many client sockets: 127.0.0.1 for the first `per_source`, then
/// 127.0.0.2, and so on, so that no source runs out of local ports.
#[derive(Clone, Copy, Debug)]
pub struct Sources {
    pub per_source: u64,
}

impl Sources {
    /// Rotates every `wanted` sockets, or sooner if the local port range is smaller.
    pub fn new(wanted: u64) -> Sources {
        let ports = crate::probe::local_ports();
        Sources {
            per_source: wanted.min(ports.saturating_sub(1000).max(1000)).max(1),
        }
    }

    /// The source address of socket number `i`.
    pub fn of(&self, i: u64) -> Ipv4Addr {
        let n = 1 + (i / self.per_source) as u32;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + n.min(0x00ff_fffe))
    }
}

/// Opens a WebSocket to `url` at `addr`, from `source` when it is given (bound before connect,
/// so each source address has its own range of local ports).
pub async fn connect(url: &str, addr: SocketAddr, source: Option<Ipv4Addr>) -> anyhow::Result<Ws> {
    let attempt = async {
        let socket = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddrV4::new(ip, 0).into())
                .with_context(|| format!("cannot bind to source address {ip}"))?;
        }
        let stream = socket.connect(addr).await.context("TCP connect failed")?;
        stream.set_nodelay(true)?;
        // Small read buffers: thousands of idle client sockets should cost little memory.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .context("WebSocket handshake failed")?;
        anyhow::Ok(ws)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .context("connect timed out")?
}

/// Runs `make(i)` for `i` in `0..n`, at most `concurrency` at a time, ticking `bar` as each
/// ends. Returns the results in order.
pub async fn for_each_bounded<T, F, Fut>(n: usize, concurrency: usize, bar: &indicatif::ProgressBar, make: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await.expect("semaphore never closes");
        let job = make(i);
        set.spawn(async move {
            let result = job.await;
            drop(permit);
            (i, result)
        });
        while let Some(done) = set.try_join_next() {
            let (i, result) = done.expect("bench tasks do not panic");
            out[i] = Some(result);
            bar.inc(1);
        }
    }
    while let Some(done) = set.join_next().await {
        let (i, result) = done.expect("bench tasks do not panic");
        out[i] = Some(result);
        bar.inc(1);
    }
    out.into_iter().map(|r| r.expect("every index ran")).collect()
}

/// An HTTP client with keep-alive connections, for RPCs and publishes.
/// Closes `ws` politely: a close frame, then what the server still sends, for at most 5 s.
pub async fn goodbye(ws: &mut Ws) {
    use futures_util::StreamExt;
    let close = async {
        ws.close(None).await?;
        while ws.next().await.is_some() {}
        anyhow::Ok(())
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), close).await;
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("static client settings")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate_within_loopback() {
        let s = Sources { per_source: 3 };
        assert_eq!(s.of(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(s.of(2), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(s.of(3), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(s.of(3 * 300), Ipv4Addr::new(127, 0, 1, 45));
        assert!(Sources::new(50_000).per_source <= 50_000);
    }
}
