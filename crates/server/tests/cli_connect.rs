//! `switchboard connect` as scripts and people use it: one-shot `--send`, exit codes, and an
//! interactive session in a real terminal (tmux).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

fn connect(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).arg("connect").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `--send` with `--count`: the frames received go to stdout, one JSON line each, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_send_prints_frames_and_exits_zero() {
    let server = TestServer::start().await;
    let url = server.ws_url("/ws/counter/cli");
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        connect(&[
            &url,
            "--send",
            r#"{"type":"increment","amount":2,"id":"c1"}"#,
            "--count",
            "2",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let frames: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(frames.len(), 2, "{out}");
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "result" && f["id"] == "c1" && f["value"] == 2)
    );
    assert!(frames.iter().any(|f| f["type"] == "increment" && f["value"] == 2));
    server.stop().await;
}

/// A refused upgrade exits 1 with the HTTP status; a close by the server with a code other than
/// 1000 exits 3 and names the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_have_exit_codes() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 200, vec![]).await;
    let missing = server.ws_url("/ws/nowhere");
    let (code, _, err) = tokio::task::spawn_blocking(move || connect(&[&missing])).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let echo = server.ws_url("/ws/echo");
    let big = "x".repeat(500);
    let (code, _, err) = tokio::task::spawn_blocking(move || connect(&[&echo, "--send", &big]))
        .await
        .unwrap();
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("1009"), "{err}");
    server.stop().await;
}

/// A person in a terminal: typed lines are sent, received frames show with `< `, Ctrl-D
/// closes the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_session_in_a_terminal() {
    let server = TestServer::start().await;
    let socket = format!("sb-connect-{}", std::process::id());
    let tmux = move |args: &[&str]| Command::new("tmux").arg("-L").arg(&socket).args(args).output().unwrap();
    let cmd = format!(
        "{} connect {}; echo EXIT=$?; sleep 30",
        binary(),
        server.ws_url("/ws/echo")
    );
    let tmux_for_session = tmux.clone();
    tokio::task::spawn_blocking(move || {
        assert!(
            tmux_for_session(&["new-session", "-d", "-s", "t", "-x", "150", "-y", "20", &cmd])
                .status
                .success()
        );
    })
    .await
    .unwrap();
    let screen = |tmux: &dyn Fn(&[&str]) -> std::process::Output| {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    };
    let wait_for = |needle: &str| {
        let started = std::time::Instant::now();
        loop {
            let text = screen(&tmux);
            if text.contains(needle) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never saw {needle:?} on screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("connected to");
        tmux(&["send-keys", "-t", "t", "hello there", "Enter"]);
        wait_for("< hello there");
        tmux(&["send-keys", "-t", "t", "C-d"]);
        wait_for("EXIT=0")
    }));
    tmux(&["kill-server"]);
    let screen = result.unwrap();
    assert!(screen.contains("closed"), "{screen}");
    server.stop().await;
}
