//! The `examples/chat_room.rs` class, served by the real server: what the example promises works.

mod support;

#[allow(dead_code)] // The example's `main` is not used here.
#[path = "../../../examples/chat_room.rs"]
mod chat_room;

use support::*;

/// Members hear each other, a newcomer gets the backlog, and `ping` is auto-answered.
#[tokio::test]
async fn members_talk_and_newcomers_get_the_backlog() {
    let server = TestServer::start_with(|_| {}, chat_room::apps()).await;
    let mut ada = ws(&server.ws_url("/chat/lobby?name=ada")).await;
    let mut bob = ws(&server.ws_url("/chat/lobby?name=bob")).await;
    send(&mut ada, "hello bob").await;
    for socket in [&mut ada, &mut bob] {
        let said = next_json(socket).await;
        assert_eq!(
            (said["from"].as_str(), said["text"].as_str()),
            (Some("ada"), Some("hello bob"))
        );
    }
    send(&mut bob, "ping").await;
    assert_eq!(next_text(&mut bob).await, "pong");
    let mut cy = ws(&server.ws_url("/chat/lobby?name=cy")).await;
    assert_eq!(next_json(&mut cy).await["text"], "hello bob");
    server.stop().await;
}
