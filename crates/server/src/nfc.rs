//! `switchboard nfc simulate UID`: presents a tag to a running kiosk, as its reader would,
//! through `POST /api/nfc/simulate`.
//!
//! Prints the server's answer (`{"accepted":true}`, or `{"accepted":false,"reason":"debounced"}`)
//! and exits 0; an error answer is printed to stderr with exit code 1.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::secret::AUTH_SECRET_FILE;

/// Flags of `switchboard nfc`.
#[derive(Args, Debug, Clone)]
pub struct NfcArgs {
    #[command(subcommand)]
    pub command: NfcCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum NfcCommand {
    /// Present a tag to the kiosk (the mock reader's way in).
    Simulate(SimulateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SimulateArgs {
    /// The tag's uid: 4 to 10 bytes of hex, with or without colons (04:11:5D:22:2C:65:80).
    pub uid: String,
    /// The server's address.
    #[arg(long, default_value = "http://127.0.0.1:8787", value_name = "URL")]
    pub url: String,
    /// The server's API secret [env: SWITCHBOARD_AUTH_SECRET]; by default read from the data
    /// folder, where the server keeps the one it generated.
    #[arg(long, env = "SWITCHBOARD_AUTH_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub secret: Option<String>,
    /// The server's data folder, to read its secret from [env: SWITCHBOARD_DATA_DIR].
    #[arg(
        long,
        env = "SWITCHBOARD_DATA_DIR",
        default_value = "./switchboard-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

/// Runs `switchboard nfc …`; returns the answer's body.
pub async fn run(args: NfcArgs) -> anyhow::Result<String> {
    let NfcCommand::Simulate(args) = args.command;
    let secret = match args.secret {
        Some(secret) => secret,
        None => {
            let path = args.data_dir.join(AUTH_SECRET_FILE);
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "no secret given (--secret or SWITCHBOARD_AUTH_SECRET) and none readable at {}",
                        path.display()
                    )
                })?
                .trim()
                .to_string()
        }
    };
    let url = format!("{}/api/nfc/simulate", args.url.trim_end_matches('/'));
    let answer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(secret)
        .json(&serde_json::json!({ "uid": args.uid }))
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = answer.status();
    let body = answer.text().await.context("cannot read the answer")?;
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}
