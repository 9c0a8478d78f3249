//! What the server keeps on disk is private to its user.

mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use support::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The data folder is 0700 and the database with its WAL and shared-memory files 0600, even
/// where the folder was made readable by others before the server started.
#[tokio::test]
async fn data_folder_and_database_are_private() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}, vec![]).await;
    let (status, _) = post_json(&server.url("/rpc/counter.increment"), &json!({"name": "c"}), None).await;
    assert_eq!(status, 200);
    assert_eq!(mode(dir.path()), 0o700);
    for file in ["switchboard.db", "switchboard.db-wal", "switchboard.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    server.stop().await;
}
