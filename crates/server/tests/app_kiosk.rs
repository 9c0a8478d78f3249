//! The NFC kiosk from Rust: `switchboard nfc simulate` against a real server, and the kiosk
//! object's answers to it. (Its Socket.IO side is tested with the real socket.io-client, in
//! `tests/js/`.)

mod support;

use std::process::Command;

use support::*;

fn nfc(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(["nfc", "simulate"])
        .args(args)
        .env_remove("SWITCHBOARD_AUTH_SECRET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `switchboard nfc simulate UID` prints the server's answer: accepted, then debounced for the
/// same uid; the secret comes from the flag, the environment or the data folder; a bad uid or a
/// wrong secret is exit code 1 with the server's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_from_the_command_line() {
    let server = TestServer::start().await;
    let url = server.url("");
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::write(data_dir.path().join("auth_secret"), format!("{SECRET}\n")).unwrap();
    let dir = data_dir.path().to_str().unwrap().to_string();
    let results = tokio::task::spawn_blocking(move || {
        [
            nfc(&["04:11:5D:22", "--url", &url, "--secret", SECRET], &[]),
            nfc(&["04115d22", "--url", &url], &[("SWITCHBOARD_AUTH_SECRET", SECRET)]),
            nfc(&["04:11:5D:23", "--url", &url, "--data-dir", &dir], &[]),
            nfc(&["nope", "--url", &url, "--secret", SECRET], &[]),
            nfc(&["04:11:5D:24", "--url", &url, "--secret", "wrong"], &[]),
        ]
    })
    .await
    .unwrap();
    assert_eq!(results[0], (0, r#"{"accepted":true}"#.into(), String::new()));
    assert_eq!(
        results[1].1, r#"{"accepted":false,"reason":"debounced"}"#,
        "the same uid, written another way"
    );
    assert_eq!(results[2].1, r#"{"accepted":true}"#, "secret read from the data folder");
    assert_eq!(results[3].0, 1);
    assert!(
        results[3].2.contains("400") && results[3].2.contains("4 to 10 bytes of hex"),
        "{}",
        results[3].2
    );
    assert_eq!(results[4].0, 1);
    assert!(results[4].2.contains("401"), "{}", results[4].2);
    server.stop().await;
}
