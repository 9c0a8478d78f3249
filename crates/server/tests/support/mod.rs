//! Test support: the real server on an ephemeral port (in-process, or as a child process for
//! tests that kill it) and real WebSocket clients.

#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod board;
pub mod raw_http;
pub mod tally;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchboard_apps::AttachedApp;
use switchboard_server::config::{Config, Secret};
use switchboard_server::{Server, Serving};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The API secret every test server uses.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Option<Server>,
    pub shutdown: CancellationToken,
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

/// A config for tests: port 0, a fresh data folder, a known secret.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.to_owned();
    config.auth_secret = Some(Secret::new(SECRET));
    // Test clients often stop reading before the server's close: do not wait long for them.
    config.close_timeout = Duration::from_millis(300);
    config
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}, vec![]).await
    }

    /// Starts a server with a config adjusted by `configure`, serving the built-in apps and
    /// `extra`.
    pub async fn start_with(configure: impl FnOnce(&mut Config), extra: Vec<Box<dyn AttachedApp>>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(dir.path(), configure, extra).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a server on an existing data folder (to test restarts).
    pub async fn start_in(
        data_dir: &Path,
        configure: impl FnOnce(&mut Config),
        extra: Vec<Box<dyn AttachedApp>>,
    ) -> Self {
        let mut serving = Serving::default();
        serving.apps.extend(extra);
        Self::serve_in(data_dir, configure, serving).await
    }

    /// Starts a server on an existing data folder, serving what `serving` says.
    pub async fn serve_in(data_dir: &Path, configure: impl FnOnce(&mut Config), serving: Serving) -> Self {
        let mut config = test_config(data_dir);
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let shutdown = CancellationToken::new();
        let server = switchboard_server::start_with(config, listener, shutdown.clone(), serving)
            .await
            .unwrap();
        TestServer {
            addr: server.addr,
            server: Some(server),
            shutdown,
            data_dir: data_dir.to_owned(),
            _dir: None,
        }
    }

    pub fn runtime(&self) -> &switchboard_runtime::Runtime {
        &self.server.as_ref().unwrap().runtime
    }

    /// Waits until the runtime's counters satisfy `pred` (woken by the runtime when they
    /// change); fails the test if they do not within [`WAIT`].
    pub async fn wait_for_stats(
        &self,
        what: &str,
        pred: impl Fn(&switchboard_runtime::StatsSnapshot) -> bool,
    ) -> switchboard_runtime::StatsSnapshot {
        match tokio::time::timeout(WAIT, self.runtime().wait_for_stats(pred)).await {
            Ok(stats) => stats,
            Err(_) => panic!("{what} did not happen: {:?}", self.runtime().stats()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Shuts the server down and waits until storage is flushed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT, server.wait())
                .await
                .expect("server stops in time")
                .unwrap();
        }
    }
}

/// The `switchboard` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchboard")
}

/// A server running as a child process (so a test can SIGTERM or SIGKILL it).
pub struct ProcessServer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ProcessServer {
    /// Starts `switchboard serve` on port 0 with `data_dir` and extra `--set` pairs, and waits
    /// for it to log its address.
    pub fn spawn(data_dir: &Path, sets: &[&str]) -> Self {
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
            .arg(data_dir)
            .env("SWITCHBOARD_AUTH_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for set in sets {
            cmd.args(["--set", set]);
        }
        Self::spawn_command(cmd)
    }

    /// Starts a server program (one that logs `addr` in JSON, like `switchboard serve
    /// --log-format json`) and waits for it to log its address.
    pub fn spawn_command(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // The server's warnings and errors show in a failing test's output.
                if line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#) {
                    eprintln!("server {line}");
                }
                if !sent
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(addr) = v["fields"]["addr"].as_str()
                {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                    sent = true;
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).expect("server logs its address");
        ProcessServer { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY-free: libc::kill on our own child's pid.
        let rc = unsafe_free_kill(self.child.id() as i32, signal);
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit; returns its exit status and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(started.elapsed() < limit, "server did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_free_kill(pid: i32, signal: i32) -> i32 {
    // `kill(1)` keeps the test crate free of unsafe code.
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    if status.success() { 0 } else { -1 }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `url`.
pub async fn ws(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    ws
}

/// Sends a text frame.
pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

/// The next data frame's text (skipping pings and pongs).
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time");
        match msg {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next text frame, parsed as JSON.
pub async fn next_json(ws: &mut Ws) -> serde_json::Value {
    let text = next_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {text}: {e}"))
}

/// Reads until the server's close frame; returns it.
pub async fn next_close(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error before close: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

/// POSTs `body` as JSON (with a Bearer token if given); returns the status and the JSON reply.
pub async fn post_json(url: &str, body: &serde_json::Value, bearer: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// GETs `url`; returns the status and the JSON reply.
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let res = reqwest::get(url).await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// GETs `url` with `Authorization: Bearer <bearer>`; returns the status and the JSON reply.
pub async fn get_json_bearer(url: &str, bearer: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new()
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

/// True if `s` is RFC 3339 UTC with milliseconds, like `2025-01-15T12:00:00.000Z`.
pub fn is_iso_ms(s: &serde_json::Value) -> bool {
    let Some(s) = s.as_str() else { return false };
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.'
}
