//! Topics through the runtime: subscriptions that outlive their owner's hibernation, history
//! that survives a restart, recovery with and without a gap or with a stale epoch, presence,
//! and the three delivery classes under a slow consumer. Paused time: no real waits.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_runtime::storage::memory::MemoryBackend;
use switchboard_runtime::{
    ConnectInfo, Context, Delivery, Frame, HistoryLimits, HookResult, NewSocket, Object, Position, Publication,
    QueueLimits, Runtime, RuntimeConfig, SocketConn, Subscription, TopicOptions,
};

/// Subscribes every socket to `room:{name}`, recovering from `since`/`epoch` when given;
/// publishes what it is asked to.
struct Room;

#[derive(Serialize, Deserialize)]
struct Say(String);

impl Object for Room {
    const CLASS: &'static str = "room";
    type Request = Say;
    type Reply = ();

    async fn start(_ctx: &mut Context) -> HookResult<Self> {
        Ok(Room)
    }

    async fn on_request(&mut self, ctx: &mut Context, Say(text): Say) -> HookResult {
        let topic = format!("room:{}", ctx.name());
        ctx.publish(Publication::stamped(&[topic], move |stamp| {
            Frame::text(format!("{text}@{}", stamp.map_or(-1, |s| s.offset as i64)))
        }))?;
        Ok(())
    }

    async fn on_connect(&mut self, ctx: &mut Context, socket: NewSocket) -> HookResult {
        let since = match (socket.info.params.get("since"), socket.info.params.get("epoch")) {
            (Some(offset), Some(epoch)) => Some(Position {
                offset: offset.parse()?,
                epoch: epoch.clone(),
            }),
            _ => None,
        };
        let user = socket.info.params.get("user").cloned();
        let socket = ctx.accept(socket, &[])?;
        let subscription = Subscription {
            user,
            since,
            reply: Some(Box::new(|r| {
                Some(Frame::text(format!("recovered={} missed={}", r.recovered, r.missed)))
            })),
        };
        ctx.subscribe(socket.id(), &format!("room:{}", ctx.name()), subscription)?;
        Ok(())
    }
}

fn options() -> TopicOptions {
    TopicOptions {
        history: Some(HistoryLimits {
            max_entries: 5,
            max_age: Duration::from_secs(600),
        }),
        presence: Some(Arc::new(|change| {
            Frame::text(format!(
                "{}:{}",
                if change.joined { "join" } else { "leave" },
                change.user.unwrap_or("?")
            ))
        })),
    }
}

async fn runtime(backend: Arc<MemoryBackend>) -> Runtime {
    let config = RuntimeConfig {
        hibernate_after: Duration::from_secs(1),
        ..RuntimeConfig::default()
    };
    Runtime::builder(config, backend)
        .class::<Room>()
        .topics("room:*", options())
        .start()
        .await
        .unwrap()
}

async fn join(rt: &Runtime, room: &str, params: &[(&str, &str)], limits: QueueLimits) -> Arc<SocketConn> {
    let conn = rt.new_socket(limits);
    let info = ConnectInfo {
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    rt.object::<Room>(room)
        .connect(conn.clone(), info)
        .await
        .unwrap()
        .unwrap();
    conn
}

/// The next `n` frames the socket is sent, however they are batched.
async fn texts(conn: &SocketConn, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let batch = conn.next_batch().await;
        assert!(batch.close.is_none(), "closed after {seen:?}");
        seen.extend(batch.frames.iter().map(|f| f.as_text().unwrap().to_string()));
    }
    seen
}

/// A subscription outlives its owner's hibernation; a resubscription recovers exactly what it
/// missed, after a restart too, with the same epoch; a position the history no longer reaches,
/// or another epoch, is refused.
#[tokio::test(start_paused = true)]
async fn subscriptions_history_and_recovery() {
    let backend = Arc::new(MemoryBackend::new());
    let rt = runtime(backend.clone()).await;
    let ada = join(&rt, "r", &[("user", "ada")], QueueLimits::default()).await;
    assert_eq!(texts(&ada, 2).await, ["recovered=true missed=0", "join:ada"]);
    let room = rt.object::<Room>("r");
    room.call(Say("a".into())).await.unwrap();
    // The room hibernates; its socket's subscription stays.
    rt.wait_for_stats(|s| s.hibernations == 1 && s.live_objects == 0).await;
    room.call(Say("b".into())).await.unwrap();
    assert_eq!(texts(&ada, 2).await, ["a@1", "b@2"], "presence took offset 0");
    let (position, _) = rt.topic_history("room:r").unwrap();
    assert_eq!(position.offset, 2);
    let epoch = position.epoch.clone();
    rt.socket_ended(ada.id());
    for text in ["c", "d"] {
        room.call(Say(text.into())).await.unwrap();
    }
    rt.shutdown().await;

    // After a restart: the same epoch, and what came after offset 2 (the leave, c, d).
    let rt = runtime(backend).await;
    let back = join(
        &rt,
        "r",
        &[("since", "2"), ("epoch", &epoch), ("user", "ada")],
        QueueLimits::default(),
    )
    .await;
    assert_eq!(
        texts(&back, 5).await,
        ["recovered=true missed=3", "leave:ada", "c@4", "d@5", "join:ada"]
    );
    // Up to date: nothing missed. Too old (history keeps 5): refused. Another epoch: refused.
    let fresh = join(&rt, "r", &[("since", "6"), ("epoch", &epoch)], QueueLimits::default()).await;
    assert_eq!(texts(&fresh, 1).await[0], "recovered=true missed=0");
    let old = join(&rt, "r", &[("since", "0"), ("epoch", &epoch)], QueueLimits::default()).await;
    assert_eq!(texts(&old, 1).await[0], "recovered=false missed=0");
    let stale = join(
        &rt,
        "r",
        &[("since", "6"), ("epoch", "another")],
        QueueLimits::default(),
    )
    .await;
    assert_eq!(texts(&stale, 1).await[0], "recovered=false missed=0");
    rt.shutdown().await;
}

/// With a full queue: a reliable frame closes the socket (1008); a volatile one is dropped for
/// it alone; `latest` keeps only the newest per key.
#[tokio::test(start_paused = true)]
async fn delivery_classes_under_a_slow_consumer() {
    let rt = runtime(Arc::new(MemoryBackend::new())).await;
    let small = QueueLimits {
        max_frames: 2,
        max_bytes: 1 << 20,
    };
    let slow = rt.new_socket(small);
    let fast = rt.new_socket(QueueLimits::default());
    for conn in [&slow, &fast] {
        rt.subscribe(conn.id(), "plain", Subscription::default()).unwrap();
    }
    let publish =
        |text: &str, delivery: Delivery| rt.publish(Publication::new(&["plain"], Frame::text(text)).delivery(delivery));
    publish("s1", Delivery::Latest("status".into())).await.unwrap();
    publish("v1", Delivery::Volatile).await.unwrap();
    publish("s2", Delivery::Latest("status".into())).await.unwrap();
    publish("v2", Delivery::Volatile).await.unwrap();
    assert!(!slow.is_closing(), "volatile and latest frames never close a socket");
    assert_eq!(texts(&slow, 2).await, ["s2", "v1"]);
    assert_eq!(texts(&fast, 3).await, ["s2", "v1", "v2"]);
    for text in ["r1", "r2", "r3"] {
        publish(text, Delivery::Reliable).await.unwrap();
    }
    let batch = slow.next_batch().await;
    assert_eq!(batch.close.map(|c| c.code), Some(1008));
    assert_eq!(texts(&fast, 3).await, ["r1", "r2", "r3"]);
    rt.shutdown().await;
}

/// A publish to several topics reaches a socket in more than one of them once; presence lists
/// the subscribers' users.
#[tokio::test(start_paused = true)]
async fn once_per_socket_and_presence() {
    let rt = runtime(Arc::new(MemoryBackend::new())).await;
    let both = rt.new_socket(QueueLimits::default());
    let one = rt.new_socket(QueueLimits::default());
    for (conn, topic, user) in [(&both, "x", "u1"), (&both, "y", "u1"), (&one, "y", "u2")] {
        let subscription = Subscription {
            user: Some(user.into()),
            ..Default::default()
        };
        rt.subscribe(conn.id(), topic, subscription).unwrap();
    }
    let reached = rt
        .publish(Publication::new(&["x", "y"], Frame::text("m")))
        .await
        .unwrap();
    assert_eq!(reached, 2);
    assert_eq!(texts(&both, 1).await, ["m"]);
    let presence = rt.presence("y");
    assert_eq!(
        (presence.count, presence.users),
        (2, vec!["u1".to_string(), "u2".to_string()])
    );
    rt.shutdown().await;
}

/// A socket put in a topic without recovery (a room a client is joined to when it connects)
/// can still recover when its client resubscribes with the position it had, as long as nothing
/// reached it live in between; after a live frame, older frames could only come out of order,
/// so the answer is `recovered: false`.
#[tokio::test(start_paused = true)]
async fn resubscribing_an_automatic_subscription() {
    let history = TopicOptions {
        history: Some(HistoryLimits {
            max_entries: 100,
            max_age: Duration::from_secs(600),
        }),
        presence: None,
    };
    let rt = Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()))
        .topics("quiet:*", history)
        .start()
        .await
        .unwrap();
    let publish = |text: &'static str| {
        let rt = rt.clone();
        async move {
            rt.publish(Publication::stamped(&["quiet:x"], move |s| {
                Frame::text(format!("{text}@{}", s.unwrap().offset))
            }))
            .await
            .unwrap()
        }
    };
    for text in ["a", "b", "c"] {
        publish(text).await;
    }
    let epoch = rt.topic_history("quiet:x").unwrap().0.epoch;
    let since = |offset| Subscription {
        since: Some(Position {
            offset,
            epoch: epoch.clone(),
        }),
        reply: Some(Box::new(|r: &switchboard_runtime::Recovery| {
            Some(Frame::text(format!("recovered={} missed={}", r.recovered, r.missed)))
        })),
        ..Default::default()
    };

    let conn = rt.new_socket(QueueLimits::default());
    rt.subscribe(conn.id(), "quiet:x", Subscription::default()).unwrap();
    let recovery = rt.subscribe(conn.id(), "quiet:x", since(0)).unwrap();
    assert!(recovery.recovered);
    assert_eq!(texts(&conn, 3).await, ["recovered=true missed=2", "b@1", "c@2"]);
    assert_eq!(publish("d").await, 1, "still subscribed once");
    assert_eq!(texts(&conn, 1).await, ["d@3"]);
    // A live frame has gone out since it joined: no recovery from an older position.
    rt.subscribe(conn.id(), "quiet:x", since(2)).unwrap();
    assert_eq!(texts(&conn, 1).await, ["recovered=false missed=0"]);
    assert_eq!(rt.presence("quiet:x").count, 1);
}
