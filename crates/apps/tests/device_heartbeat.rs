//! `heartbeat_timeout_ms` of a device, in paused time: heartbeats are answered without waking
//! the hibernated device and still count as its last-seen; silence past the timeout makes it
//! offline (the dashboard hears it once, with the last-seen) and closes its socket; a device
//! online when the server stopped goes offline after the restart by its stored alarm.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchboard_apps::App;
use switchboard_apps::device::{Device, DeviceConfig, Devices, Directory, DirectoryRequest, SINGLETON};
use switchboard_runtime::storage::memory::MemoryBackend;
use switchboard_runtime::{
    CloseReason, ConnectInfo, Frame, Object, ObjectSocket, QueueLimits, Runtime, RuntimeConfig, SocketConn,
};

/// What a socket was sent, frame by frame.
struct Received {
    conn: Arc<SocketConn>,
    frames: VecDeque<Frame>,
    close: Option<CloseReason>,
}

impl Received {
    fn new(conn: Arc<SocketConn>) -> Self {
        Received {
            conn,
            frames: VecDeque::new(),
            close: None,
        }
    }

    /// Takes what is queued now, without waiting.
    fn drain_now(&mut self) {
        while self.close.is_none()
            && let Some(batch) = ready_now(self.conn.next_batch())
        {
            self.frames.extend(batch.frames);
            self.close = batch.close;
        }
    }

    async fn next_json(&mut self) -> Value {
        while self.frames.is_empty() && self.close.is_none() {
            let batch = self.conn.next_batch().await;
            self.frames.extend(batch.frames);
            self.close = batch.close;
        }
        let frame = self.frames.pop_front().expect("a frame before the close");
        serde_json::from_str(frame.as_text().expect("text")).unwrap()
    }
}

/// The output of `future` if it is ready at once.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test(start_paused = true)]
async fn silence_past_the_heartbeat_timeout_is_offline_and_heartbeats_count() {
    let config = DeviceConfig::default();
    assert_eq!(config.heartbeat_timeout_ms, 90_000);
    let builder = Runtime::builder(RuntimeConfig::default(), Arc::new(MemoryBackend::new()));
    let runtime = Devices.register(&config, builder).start().await.unwrap();
    let start = runtime.now_ms();

    let (_dashboard, mut dashboard) = connect::<Directory>(&runtime, SINGLETON).await;

    let (device_socket, mut device) = connect::<Device>(&runtime, "gate-1").await;
    let online = dashboard.next_json().await;
    assert_eq!(online["type"], "device_status");
    assert_eq!(online["status"], "online");
    assert_eq!(online["lastSeen"], start);

    // A minute later the device has hibernated; its heartbeat is answered without waking it.
    tokio::time::advance(Duration::from_secs(60)).await;
    runtime
        .wait_for_stats(|s| s.hibernations >= 1 && s.live_objects <= 2)
        .await;
    let wakes = runtime.stats().wakes;
    device_socket
        .frame(Frame::text(r#"{"action":"heartbeat","timestamp":1699000000}"#))
        .await;
    let ack = device.next_json().await;
    assert_eq!(ack["action"], "heartbeat_ack");
    assert_eq!(ack["timestamp"], 1_699_000_000);
    assert_eq!(ack["serverTime"], start + 60_000);
    assert_eq!(runtime.stats().wakes, wakes, "a heartbeat does not wake the device");

    // At 90 s the alarm finds the heartbeat of 60 s: still online.
    tokio::time::advance(Duration::from_secs(40)).await;
    runtime.wait_for_stats(|s| s.alarms_fired >= 1).await;
    settle(&runtime).await;
    dashboard.drain_now();
    assert!(
        dashboard.frames.is_empty(),
        "no status change yet: {:?}",
        dashboard.frames
    );
    assert!(device.close.is_none());

    // 90 s after that heartbeat, with nothing since: offline, and the socket closed with 1001.
    tokio::time::advance(Duration::from_secs(31)).await;
    let offline = dashboard.next_json().await;
    assert_eq!(offline["type"], "device_status");
    assert_eq!(offline["deviceId"], "gate-1");
    assert_eq!(offline["status"], "offline");
    assert_eq!(offline["lastSeen"], start + 60_000, "last seen at its heartbeat");
    while device.close.is_none() {
        device.close = device.conn.next_batch().await.close;
    }
    assert_eq!(device.close.as_ref().unwrap().code, 1001);
    settle(&runtime).await;
    let listed = runtime
        .object::<Directory>(SINGLETON)
        .call(DirectoryRequest::List)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].online);
    assert_eq!(listed[0].last_seen, Some(start + 60_000));
    dashboard.drain_now();
    assert!(dashboard.frames.is_empty(), "one status change: {:?}", dashboard.frames);
    runtime.shutdown().await;
}

/// A socket accepted by object `name` of class `O`, and what it receives.
async fn connect<O: Object>(runtime: &Runtime, name: &str) -> (ObjectSocket, Received) {
    let conn = runtime.new_socket(QueueLimits::default());
    let socket = runtime
        .object::<O>(name)
        .connect(conn.clone(), ConnectInfo::default())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{name} accepts the socket"));
    (socket, Received::new(conn))
}

/// Waits until the device has handled everything before (a call is answered after the
/// earlier events' outputs are released).
async fn settle(runtime: &Runtime) {
    let _ = runtime
        .object::<Device>("gate-1")
        .call(switchboard_apps::device::DeviceRequest::CheckKey(String::new()))
        .await;
    let _ = runtime
        .object::<Directory>(SINGLETON)
        .call(DirectoryRequest::List)
        .await;
}

/// A device online when the server stopped is offline after the restart: its alarm, stored
/// with it, fires with no socket left, and the dashboard hears it with the last-seen it had.
#[tokio::test(start_paused = true)]
async fn a_device_online_at_a_restart_goes_offline_by_its_alarm() {
    let config = DeviceConfig::default();
    let backend = Arc::new(MemoryBackend::new());
    let start = |backend: Arc<MemoryBackend>| {
        let builder = Runtime::builder(RuntimeConfig::default(), backend);
        Devices.register(&config, builder).start()
    };
    let runtime = start(backend.clone()).await.unwrap();
    let connected_at = runtime.now_ms();
    let _ = connect::<Device>(&runtime, "gate-1").await;
    settle(&runtime).await;
    runtime.shutdown().await;

    let runtime = start(backend).await.unwrap();
    let (_dashboard, mut dashboard) = connect::<Directory>(&runtime, SINGLETON).await;
    tokio::time::advance(Duration::from_millis(config.heartbeat_timeout_ms + 1)).await;
    let offline = dashboard.next_json().await;
    assert_eq!(offline["type"], "device_status");
    assert_eq!(offline["status"], "offline");
    assert_eq!(offline["lastSeen"], connected_at);
    settle(&runtime).await;
    let listed = runtime
        .object::<Directory>(SINGLETON)
        .call(DirectoryRequest::List)
        .await
        .unwrap();
    assert!(!listed[0].online);
    runtime.shutdown().await;
}
