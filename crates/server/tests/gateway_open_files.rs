//! At the open-file limit the server stays observable: clients it cannot take are answered 503
//! at once instead of waiting in the accept queue, and it says so in its log once per interval,
//! not once per try.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use support::raw_http::{exchange, read_answer};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Descriptors the child may hold; it needs about 20 before any client.
const OPEN_FILES: usize = 64;

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

struct Limited {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `switchboard serve` under `prlimit --nofile`, with a header deadline long enough that idle
/// clients hold their descriptors for the whole test.
fn spawn_limited(data_dir: &std::path::Path) -> Limited {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={OPEN_FILES}:{OPEN_FILES}"))
        .arg("--")
        .arg(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(data_dir)
        .args(["--set", "handshake_timeout_ms=120000"])
        .env("SWITCHBOARD_AUTH_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchboard under prlimit");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(addr) = v["fields"]["addr"].as_str()
            {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let addr = rx.recv_timeout(WAIT).expect("server logs its address");
    Limited { child, addr, log }
}

/// With every descriptor taken by idle clients, the clients still queued and a new `/healthz`
/// are answered 503 `{"error"}` at once instead of hanging; `accept failed` is logged once per
/// interval with a count; once the idle clients leave, `/healthz` answers 200 again.
#[tokio::test]
async fn open_file_limit_is_answered_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_limited(dir.path());
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..OPEN_FILES + 16 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        // Half a request: the server holds the connection open, waiting for the rest.
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        idle.push(stream);
    }
    let refused = exchange(server.addr, HEALTHZ).await;
    refused.assert_json_error(503);
    assert!(
        refused.json()["error"].as_str().unwrap().contains("connection limit"),
        "{refused:?}"
    );
    // The last idle client was still queued when the limit was reached: it was told too.
    read_answer(idle.last_mut().unwrap()).await.assert_json_error(503);

    let accept_logs = || {
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("accept failed"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let logged = accept_logs();
    assert!(!logged.is_empty(), "the condition is logged");
    assert!(logged[0].contains("failures"), "the log line counts: {}", logged[0]);
    let intervals = started.elapsed().as_secs() / 10 + 1;
    assert!(
        logged.len() as u64 <= intervals,
        "accept failed logged {} times in {:?}",
        logged.len(),
        started.elapsed()
    );

    drop(idle);
    // The server frees descriptors as it sees the clients go; each retry is a round trip.
    loop {
        let answer = exchange(server.addr, HEALTHZ).await;
        if answer.status == 200 {
            break;
        }
        answer.assert_json_error(503);
        assert!(started.elapsed() < 3 * WAIT, "the server did not recover");
    }
}
