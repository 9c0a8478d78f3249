//! The built-in console over HTTP: the sign-in page for strangers, the admin key opening an
//! HttpOnly, SameSite=Strict session, that session standing in for the key on every admin API,
//! sign-out ending it, and the embedded files served with their types and a strict policy.

mod support;

use reqwest::header;
use serde_json::{Value, json};
use support::*;

fn cookie_of(response: &reqwest::Response) -> String {
    let set = response.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn sign_in_session_and_sign_out() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let page = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("data-page=\"signin\"") && html.contains("Admin key"),
        "{html}"
    );

    let wrong = client
        .post(server.url("/console/session"))
        .json(&json!({"key": "not-the-key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());

    let right = client
        .post(server.url("/console/session"))
        .json(&json!({"key": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let set = right.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains(SECRET), "the key itself never goes in the cookie");
    let cookie = cookie_of(&right);

    let console = client
        .get(server.url("/"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(console.text().await.unwrap().contains("data-page=\"console\""));
    // The session stands in for the key: an admin API, the topics, the object status.
    for path in ["/api/connections", "/console/api/topics", "/api/objects/counter/x"] {
        let with = client
            .get(server.url(path))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(with.status(), 200, "{path}");
        let without = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(without.status(), 401, "{path}");
    }
    let forged = client
        .get(server.url("/api/connections"))
        .header(header::COOKIE, "switchboard_console=0000")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let out = client
        .delete(server.url("/console/session"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert!(
        out.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = client
        .get(server.url("/api/connections"))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401, "the session ended on the server");
    server.stop().await;
}

#[tokio::test]
async fn embedded_files_and_topics() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    for (file, kind) in [("app.js", "text/javascript"), ("style.css", "text/css")] {
        let response = client
            .get(server.url(&format!("/console/{file}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(response.text().await.unwrap().len() > 500);
    }
    assert_eq!(
        client
            .get(server.url("/console/nope.js"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let topics: Value = get_json_bearer(&server.url("/console/api/topics"), SECRET).await.1;
    assert!(topics["topics"].is_array(), "{topics}");
    server.stop().await;
}

/// An object's page shows its sockets with their tags and topics, its stored keys, its alarm
/// and its outbox — without waking it; an unknown class is 404.
#[tokio::test]
async fn object_detail() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let _socket = ws(&server.ws_url("/ws/counter/seen")).await;
    server.wait_for_stats("the socket accepted", |s| s.sockets == 1).await;
    let (status, _) = post_json(&server.url("/rpc/counter.increment"), &json!({"name": "seen"}), None).await;
    assert_eq!(status, 200);
    let detail: Value = get_json_bearer(&server.url("/console/api/objects/counter/seen"), SECRET)
        .await
        .1;
    assert_eq!(detail["class"], "counter");
    assert_eq!(detail["sockets"].as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(detail["sockets"][0]["id"].as_str().unwrap().len(), 16);
    let keys = detail["keys"].as_array().unwrap();
    assert!(!keys.is_empty() && detail["moreKeys"] == false, "{detail}");
    assert_eq!(detail["outbox"]["depth"], 0);
    let missing = client
        .get(server.url("/console/api/objects/nosuch/x"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}
