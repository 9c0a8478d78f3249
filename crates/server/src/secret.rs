//! The server's secrets (the API secret, the client-token secret): configured, or generated
//! once and kept in the data folder.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Secret;

/// File name of the generated API secret inside the data folder.
pub const AUTH_SECRET_FILE: &str = "auth_secret";
/// File name of the generated HS256 secret for client tokens, used when no JWT key is
/// configured.
pub const JWT_SECRET_FILE: &str = "jwt_secret";

/// Where the secret came from.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    /// Read from, or freshly generated into, this file.
    File {
        path: PathBuf,
        generated: bool,
    },
}

/// The configured secret, else the one in `<data_dir>/<file>`, else a new random one written
/// there with mode 0600.
pub fn load_or_create(
    configured: Option<&Secret>,
    data_dir: &Path,
    file: &str,
) -> std::io::Result<(Secret, SecretSource)> {
    if let Some(secret) = configured {
        return Ok((secret.clone(), SecretSource::Configured));
    }
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            return Ok((Secret::new(text.trim()), SecretSource::File { path, generated: false }));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(value.as_bytes())?;
    file.sync_all()?;
    Ok((Secret::new(value), SecretSource::File { path, generated: true }))
}

/// File name of the node's generated cluster name inside the data folder.
pub const NODE_ID_FILE: &str = "node_id";

/// The node id kept in `<data_dir>/node_id`, else a new one (`node-` and 12 hex digits)
/// written there, so a restarted node finds its own records again.
pub fn load_or_create_node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let id = format!("node-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
    std::fs::write(&path, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A generated secret is 64 hex characters, private to the owner, and stable across starts.
    #[test]
    fn generated_once_with_0600() {
        let dir = std::env::temp_dir().join(format!("sb-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (first, source) = load_or_create(None, &dir, AUTH_SECRET_FILE).unwrap();
        assert!(matches!(source, SecretSource::File { generated: true, .. }));
        assert_eq!(first.expose().len(), 64);
        let mode = std::fs::metadata(dir.join(AUTH_SECRET_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (second, source) = load_or_create(None, &dir, AUTH_SECRET_FILE).unwrap();
        assert_eq!(first, second);
        assert!(matches!(source, SecretSource::File { generated: false, .. }));
    }
}
