//! The sessions in `docs/apps/*.md` are true: every `$` command of a `console` block runs
//! against a fresh server and prints what the doc shows (times compared by type only).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

/// Fields whose values change from run to run.
const VOLATILE: &[&str] = &[
    "timestamp",
    "createdAt",
    "updatedAt",
    "startedAt",
    "epoch",
    "connectionId",
    "connectedAt",
    "expiresAt",
    "lastActiveAt",
    "serverTime",
    "lastSeen",
    // A paging cursor: it carries a scan's time.
    "next",
];

/// `(command, expected stdout lines)` of every `console` block, in order.
fn sessions(markdown: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_console = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_console = !in_console && line.trim() == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        match line.strip_prefix("$ ") {
            Some(command) => out.push((command.to_string(), Vec::new())),
            None => out
                .last_mut()
                .expect("output before any command")
                .1
                .push(line.to_string()),
        }
    }
    out
}

/// Equal, except that volatile fields need only have the same JSON type.
fn same(expected: &Value, actual: &Value, key: Option<&str>) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            e.len() == a.len() && e.iter().all(|(k, v)| a.get(k).is_some_and(|av| same(v, av, Some(k))))
        }
        (Value::Array(e), Value::Array(a)) => e.len() == a.len() && e.iter().zip(a).all(|(e, a)| same(e, a, None)),
        (e, a) if key.is_some_and(|k| VOLATILE.contains(&k)) => std::mem::discriminant(e) == std::mem::discriminant(a),
        (e, a) => e == a,
    }
}

fn same_line(expected: &str, actual: &str) -> bool {
    match (
        serde_json::from_str::<Value>(expected),
        serde_json::from_str::<Value>(actual),
    ) {
        (Ok(e), Ok(a)) => same(&e, &a, None),
        _ => expected == actual,
    }
}

async fn check(doc: &str) {
    let markdown = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(doc)).unwrap();
    let sessions = sessions(&markdown);
    assert!(sessions.len() >= 5, "{doc} has too few sessions");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("switchboard-data");
    // As a user runs it: no configured secret, so the server generates the one the doc reads.
    let server = TestServer::start_in(&data, |c| c.auth_secret = None, vec![]).await;
    let bin_dir = Path::new(binary()).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    for (command, expected) in sessions {
        let command = command.replace("127.0.0.1:8787", &server.addr.to_string());
        let (cwd, path, shown) = (dir.path().to_owned(), path.clone(), command.clone());
        let output = tokio::task::spawn_blocking(move || {
            Command::new("sh")
                .arg("-c")
                .arg(&command)
                .current_dir(cwd)
                .env("PATH", path)
                .output()
        })
        .await
        .unwrap()
        .expect("run sh");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let actual: Vec<&str> = stdout.lines().collect();
        assert_eq!(actual.len(), expected.len(), "{doc}: `{shown}` printed:\n{stdout}");
        for (e, a) in expected.iter().zip(&actual) {
            assert!(
                same_line(e, a),
                "{doc}: `{shown}`\n  doc shows: {e}\n  server says: {a}"
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_doc_sessions_are_true() {
    check("docs/apps/counter.md").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_doc_sessions_are_true() {
    check("docs/apps/display.md").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_doc_sessions_are_true() {
    check("docs/apps/rooms.md").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_doc_sessions_are_true() {
    check("docs/apps/devices.md").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_doc_sessions_are_true() {
    check("docs/apps/kiosk.md").await;
}

/// The comparison is not vacuous: a changed value or a missing field is a mismatch.
#[test]
fn comparison_catches_differences() {
    assert!(same_line(r#"{"a":1,"timestamp":"x"}"#, r#"{"timestamp":"y","a":1}"#));
    assert!(!same_line(r#"{"a":1}"#, r#"{"a":2}"#));
    assert!(!same_line(r#"{"a":1,"timestamp":1}"#, r#"{"a":1,"timestamp":"1"}"#));
    assert!(!same_line(r#"{"a":1}"#, r#"{"a":1,"b":2}"#));
}
