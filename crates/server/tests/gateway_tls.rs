//! TLS: with `--tls-cert`/`--tls-key` the server speaks HTTPS and `wss://`; on SIGHUP it reads
//! the files again and serves the new certificate without a restart, and keeps the old one if
//! the new files are broken.

mod support;

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for 127.0.0.1: (certificate PEM, key PEM, certificate DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (made.cert.pem(), made.key_pair.serialize_pem(), made.cert.der().clone())
}

/// A TLS connection to the server trusting `trusted`; returns it and the certificate it served.
async fn connect(
    server: &ProcessServer,
    trusted: &[&CertificateDer<'static>],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    CertificateDer<'static>,
) {
    let mut roots = RootCertStore::empty();
    for root in trusted {
        roots.add((*root).clone()).unwrap();
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    (tls, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_wss_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (cert_a, key_a, der_a) = certificate();
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let data = dir.path().join("data");
    let sets = [
        format!("tls_cert={}", cert_path.display()),
        format!("tls_key={}", key_path.display()),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut server = ProcessServer::spawn(&data, &sets);

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_a.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = client
        .get(format!("https://127.0.0.1:{}/healthz", server.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let (tls, served) = connect(&server, &[&der_a]).await;
    assert_eq!(served, der_a);
    let url = format!("wss://127.0.0.1:{}/ws/echo", server.addr.port());
    let (mut socket, _) = tokio_tungstenite::client_async(url.as_str(), tls).await.unwrap();
    socket.send(Message::text("over tls")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap().into_text().unwrap(), "over tls");
    socket.close(None).await.unwrap();

    // A renewed certificate, read again on SIGHUP; each check is a new handshake, not a sleep.
    let (cert_b, key_b, der_b) = certificate();
    std::fs::write(&cert_path, &cert_b).unwrap();
    std::fs::write(&key_path, &key_b).unwrap();
    server.signal(1);
    let started = std::time::Instant::now();
    while connect(&server, &[&der_a, &der_b]).await.1 != der_b {
        assert!(started.elapsed() < WAIT, "the new certificate was not served");
    }

    // Broken files: the reload is refused and the certificate in use stays (`tls.rs` tests the
    // refusal itself).
    std::fs::write(&key_path, "not a key").unwrap();
    server.signal(1);
    for _ in 0..3 {
        let (_, still) = connect(&server, &[&der_a, &der_b]).await;
        assert_eq!(still, der_b);
    }
    server.signal(15);
    server.wait_exit(WAIT);
}
