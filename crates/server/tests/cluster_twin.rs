//! Three nodes in one process over the in-memory cluster twin, with real servers and real
//! sockets: calls reach the node that owns an object, a socket connected to one node talks to an
//! object on another, and a publish on any node reaches every subscriber once.

mod support;

use std::sync::Arc;

use serde_json::json;
use support::*;
use switchboard_runtime::Address;
use switchboard_runtime::cluster::twin::TwinNetwork;
use switchboard_server::Serving;

async fn cluster(n: usize) -> (Arc<TwinNetwork>, Vec<TestServer>, Vec<tempfile::TempDir>) {
    let net = TwinNetwork::new(n);
    let mut servers = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let mut apps = switchboard_apps::builtin();
        apps.extend(board::app());
        let serving = Serving {
            apps,
            cluster: Some(net.node(i)),
        };
        servers.push(TestServer::serve_in(dir.path(), |_| {}, serving).await);
        dirs.push(dir);
    }
    (net, servers, dirs)
}

/// A name of class `class` that node `node` owns.
fn owned_by(net: &TwinNetwork, class: &str, node: usize) -> String {
    (0..)
        .map(|i| format!("{class}-{i}"))
        .find(|name| net.owner_index(&Address::new(class, name)) == node)
        .unwrap()
}

/// A call made on node A runs on B, the owner, and a read on C sees it; a socket on A hears
/// B's object, and its pings are answered on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_sockets_reach_the_owner() {
    let (net, servers, _dirs) = cluster(3).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);
    let name = owned_by(&net, "counter", 1);
    let mut watcher = ws(&a.ws_url(&format!("/ws/counter/{name}"))).await;
    let (status, reply) = post_json(&a.url("/rpc/counter.increment"), &json!({"name": name}), None).await;
    assert_eq!((status, reply["value"].clone()), (200, json!(1)));
    let (_, read) = post_json(&c.url("/rpc/counter.getValue"), &json!({"name": name}), None).await;
    assert_eq!(read["value"], 1);
    assert_eq!(a.runtime().stats().wakes, 0, "node A ran no object");
    assert_eq!(c.runtime().stats().wakes, 0, "node C ran no object");
    assert_eq!(b.runtime().stats().wakes, 1, "the owner ran it");
    let update = next_json(&mut watcher).await;
    assert_eq!(
        (update["type"].as_str(), update["value"].as_i64()),
        (Some("increment"), Some(1))
    );
    send(&mut watcher, r#"{"type":"ping"}"#).await;
    assert_eq!(next_json(&mut watcher).await["type"], "pong");
    assert_eq!(a.runtime().stats().auto_responses, 1, "answered where the socket is");
    for server in servers {
        server.stop().await;
    }
}

/// A publish on node C reaches the subscribers on A and B exactly once, whichever node owns
/// the objects that accepted their sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_every_node_once() {
    let (net, servers, _dirs) = cluster(3).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);
    let on_a = ws(&a.ws_url(&format!("/board/{}/ws?topics=t1,t2", owned_by(&net, "board", 1)))).await;
    let on_b = ws(&b.ws_url(&format!("/board/{}/ws?topics=t1", owned_by(&net, "board", 0)))).await;
    let mut sockets = [on_a, on_b];
    for socket in &mut sockets {
        assert_eq!(next_text(socket).await, "subscribed");
    }
    let publish = |text: &'static str| async move {
        reqwest::Client::new()
            .post(c.url("/publish?topics=t1,t2"))
            .bearer_auth(SECRET)
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    assert_eq!(
        publish("\"one\"").await["delivered"],
        0,
        "node C has no subscriber of its own"
    );
    publish("\"two\"").await;
    for socket in &mut sockets {
        assert_eq!(next_text(socket).await, "\"one\"");
        assert_eq!(next_text(socket).await, "\"two\"", "no duplicate between them");
    }
    for server in servers {
        server.stop().await;
    }
}
