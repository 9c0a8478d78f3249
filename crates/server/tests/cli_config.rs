//! The binary's configuration errors and `check-config`, as a user meets them.

mod support;

use std::process::Command;

use support::binary;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A bad value exits non-zero before serving, with a message naming the key and its source.
#[test]
fn bad_values_exit_non_zero_naming_the_key() {
    let (code, _, err) = run(&["serve", "--set", "max_frame_bytes=lots"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("max_frame_bytes") && err.contains("whole number"), "{err}");

    let (code, _, err) = run(&["serve"], &[("SWITCHBOARD_DURABILITY", "sometimes")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("durability") && err.contains("SWITCHBOARD_DURABILITY") && err.contains("full, normal"),
        "{err}"
    );

    let (code, _, err) = run(&["serve", "--listen", "not-an-address"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("listen"), "{err}");
}

/// Unknown keys in a file are errors naming the key and the file.
#[test]
fn unknown_file_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9\"\nhibernate_aftr_ms = 5\n").unwrap();
    let (code, _, err) = run(&["check-config", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("hibernate_aftr_ms") && err.contains("switchboard.toml"),
        "{err}"
    );
}

/// `check-config` prints the effective configuration, secrets masked; the example file is valid.
#[test]
fn check_config_masks_secrets_and_accepts_the_example() {
    let (code, out, err) = run(
        &["check-config"],
        &[("SWITCHBOARD_AUTH_SECRET", "super-secret-value-42")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("auth_secret = \"********\""), "{out}");
    assert!(!out.contains("super-secret-value-42"));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../switchboard.example.toml");
    let (code, out, err) = run(&["check-config", "--config", example], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("listen = \"127.0.0.1:8787\""), "{out}");
}

/// Serving on an address already in use fails with a message naming the address.
#[test]
fn address_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(
        &["serve", "--listen", &addr, "--data-dir", dir.path().to_str().unwrap()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains(&addr), "{err}");
}

/// `switchboard token` signs with the server's key: the HS256 secret generated into the data
/// folder (the same one the server then uses), or, when the server verifies with a public key,
/// the matching private key given with `--key` — and says so when it is missing.
#[test]
fn token_signs_with_the_servers_key() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, out, err) = run(
        &[
            "token",
            "--sub",
            "ada",
            "--branch",
            "b1",
            "--role",
            "manager",
            "--ttl",
            "15m",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let secret = std::fs::read_to_string(dir.path().join("data/jwt_secret")).unwrap();
    let claims = decode::<serde_json::Value>(
        out.trim(),
        &DecodingKey::from_secret(secret.trim().as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .unwrap()
    .claims;
    assert_eq!(
        (
            claims["sub"].as_str(),
            claims["branchId"].as_str(),
            claims["role"].as_str()
        ),
        (Some("ada"), Some("b1"), Some("manager"))
    );
    let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(ttl, 900);

    let key = rcgen::KeyPair::generate().unwrap();
    let (public, private) = (dir.path().join("public.pem"), dir.path().join("private.pem"));
    std::fs::write(&public, key.public_key_pem()).unwrap();
    std::fs::write(&private, key.serialize_pem()).unwrap();
    let with_public = format!("jwt_public_key={}", public.display());
    let (code, _, err) = run(
        &["token", "--sub", "ada", "--set", &with_public, "--data-dir", data],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--key"), "{err}");
    let (code, out, err) = run(
        &[
            "token",
            "--sub",
            "ada",
            "--key",
            private.to_str().unwrap(),
            "--set",
            &with_public,
            "--data-dir",
            data,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let es = DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).unwrap();
    let claims = decode::<serde_json::Value>(out.trim(), &es, &Validation::new(Algorithm::ES256))
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "ada");
    let (code, _, err) = run(&["token", "--sub", "ada", "--ttl", "1w", "--data-dir", data], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unit"), "{err}");
}
