//! Graceful shutdown of the real binary: SIGTERM closes every socket with 1012 and exits 0.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::*;

/// With 1,000 sockets open, SIGTERM closes all of them with 1012 and the process exits 0 in
/// under 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_1000_sockets_with_1012() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ProcessServer::spawn(dir.path(), &[]);
    let url = server.ws_url("/ws/echo");
    let mut sockets = Vec::new();
    for chunk in 0..10 {
        let batch = join_all((0..100).map(|_| ws(&url))).await;
        sockets.extend(batch);
        assert_eq!(sockets.len(), (chunk + 1) * 100);
    }
    // Every socket is live: one round trip on the last one proves the server has them all.
    let last = sockets.last_mut().unwrap();
    send(last, "ready?").await;
    assert_eq!(next_text(last).await, "ready?");

    server.signal(15);
    let closes = join_all(sockets.iter_mut().map(next_close)).await;
    let codes: Vec<u16> = closes
        .iter()
        .map(|c| c.as_ref().map_or(0, |c| u16::from(c.code)))
        .collect();
    assert!(
        codes.iter().all(|&c| c == 1012),
        "close codes: {:?}",
        codes.iter().filter(|&&c| c != 1012).collect::<Vec<_>>()
    );
    drop(sockets);
    let (status, took) = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5));
}
