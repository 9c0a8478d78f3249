//! `switchboard connect`: a WebSocket client for people and scripts, like `wscat`.
//!
//! Frames received go to stdout, one per line (binary frames as hex); status goes to stderr.
//! On a terminal, received frames are prefixed `< ` and each line typed is sent as a text frame.
//! With `--send`, the given frames are sent in order and the client closes after `--count`
//! frames or `--wait` seconds. Exit codes: 0 closed normally, 1 could not connect, 3 closed by
//! the server with a code other than 1000.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Flags of `switchboard connect`.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// WebSocket URL (ws://…, or http://… which is taken as ws://…).
    pub url: String,
    /// Extra request header, as "Name: value" (repeatable), e.g. "Authorization: Bearer …".
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Text frame to send after connecting (repeatable, sent in order). Standard input is not
    /// read when this is given.
    #[arg(short, long, value_name = "TEXT")]
    pub send: Vec<String>,
    /// Close after receiving this many frames.
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<usize>,
    /// With --send: close after this many seconds without reaching --count.
    #[arg(short, long, value_name = "SECONDS", default_value_t = 2.0)]
    pub wait: f64,
}

/// Why the session ended, as the process exit code.
pub enum Ended {
    Normally,
    ClosedByServer(u16),
}

impl Ended {
    pub fn exit_code(&self) -> u8 {
        match self {
            Ended::Normally => 0,
            Ended::ClosedByServer(1000) => 0,
            Ended::ClosedByServer(_) => 3,
        }
    }
}

/// Runs a session until it ends. An error means the connection could not be made.
pub async fn run(args: ConnectArgs) -> anyhow::Result<Ended> {
    let url = match args.url.strip_prefix("http") {
        Some(rest) if !args.url.starts_with("ws") => format!("ws{rest}"),
        _ => args.url.clone(),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("not a WebSocket URL: {url}"))?;
    for header in &args.headers {
        let Some((name, value)) = header.split_once(':') else {
            bail!("header {header:?} is not \"Name: value\"");
        };
        let name: tokio_tungstenite::tungstenite::http::HeaderName = name
            .trim()
            .parse()
            .with_context(|| format!("bad header name in {header:?}"))?;
        request.headers_mut().insert(name, HeaderValue::from_str(value.trim())?);
    }
    let (ws, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(pair) => pair,
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            bail!(
                "the server refused the upgrade: HTTP {} {}",
                response.status(),
                body.trim()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {url}")),
    };
    let interactive = args.send.is_empty() && std::io::stdin().is_terminal();
    let prefix = if std::io::stdout().is_terminal() { "< " } else { "" };
    eprintln!(
        "connected to {url}{}",
        if interactive {
            " (type a line to send it; Ctrl-D to close)"
        } else {
            ""
        }
    );
    let (mut sink, mut stream) = ws.split();
    for text in &args.send {
        sink.send(Message::text(text.clone())).await?;
    }
    let mut stdin = (args.send.is_empty()).then(|| tokio::io::BufReader::new(tokio::io::stdin()).lines());
    let deadline =
        (!args.send.is_empty()).then(|| tokio::time::Instant::now() + Duration::from_secs_f64(args.wait.max(0.0)));
    let mut received = 0usize;
    loop {
        let until_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let line = async {
            match stdin.as_mut() {
                Some(lines) => lines.next_line().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    println!("{prefix}{text}");
                    received += 1;
                }
                Some(Ok(Message::Binary(data))) => {
                    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                    println!("{prefix}[binary {} bytes] {hex}", data.len());
                    received += 1;
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
                    eprintln!("closed by server: {code} {reason}");
                    return Ok(Ended::ClosedByServer(code));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    eprintln!("connection lost: {e}");
                    return Ok(Ended::ClosedByServer(1006));
                }
                None => {
                    eprintln!("connection lost");
                    return Ok(Ended::ClosedByServer(1006));
                }
            },
            line = line => match line {
                Ok(Some(line)) => sink.send(Message::text(line)).await?,
                _ => break, // End of input: close.
            },
            _ = until_deadline => break,
        }
        if args.count.is_some_and(|n| received >= n) {
            break;
        }
    }
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
    // Give the server a moment to answer the close.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    eprintln!("closed");
    Ok(Ended::Normally)
}
