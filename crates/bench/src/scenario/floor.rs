//! `floor`: what the kernel charges to deliver one frame over loopback TCP, the cost no server
//! can go under. A sender thread (or several, `--senders`, each with its share of the sockets)
//! does nothing but one `write()` of the same small WebSocket frame per socket at the given
//! rate, over as many sockets as a fan-out run has, while this process's other threads drain
//! them. The senders' own CPU time (from `/proc/thread-self/stat`, which on loopback includes
//! the receiving side's TCP work done in their `write()`s) divided by the frames delivered is the
//! floor a fan-out row is compared with. The drain also times each frame from its scheduled
//! send to its arrival, as a fan-out does: the latency no server can beat at that shape on this
//! machine.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::client::Sources;
use crate::latency::{Recorder, Summary};
use crate::report::{self, Format, Report};
use crate::target::round3;

/// Flags of `floor`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct FloorArgs {
    /// Sockets written to (the fan-out's subscribers).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Frames per second to every socket (the fan-out's publish rate).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of each frame on the wire, header included (a display update is about 110).
    #[arg(long, default_value_t = 110)]
    pub frame: usize,
    /// Sender threads, each writing every burst to its share of the sockets: with more than
    /// one, the floor of a server that spreads one broadcast over that many cores.
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Output: one JSON line, or a table for people.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    #[serde(skip)]
    pub format: Format,
}

/// An unmasked WebSocket text frame of exactly `len` bytes (2 to 125 + 2).
fn frame(len: usize, seq: u64) -> Vec<u8> {
    let payload = len.clamp(2, 127) - 2;
    let mut text = format!("{{\"seq\":{seq}}}");
    text.truncate(payload);
    while text.len() < payload {
        text.push(' ');
    }
    let mut out = vec![0x81, payload as u8];
    out.extend_from_slice(text.as_bytes());
    out
}

/// The sequence number a frame of [`frame`] carries, if it was long enough to hold it.
fn seq_of(frame: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(frame.get(2..)?).ok()?;
    text.trim_end()
        .strip_prefix("{\"seq\":")?
        .strip_suffix('}')?
        .parse()
        .ok()
}

/// When burst `seq` is due: the schedule the senders keep and the drain times frames against.
fn due(started: Instant, seq: u64, rate: f64) -> Instant {
    started + Duration::from_secs_f64(seq as f64 / rate)
}

/// CPU seconds of the calling thread.
fn thread_cpu_s() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").context("cannot read /proc/thread-self/stat")?;
    let rest = &stat[stat.rfind(')').context("unexpected stat format")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(ticks as f64 / crate::probe::clock_ticks_per_second())
}

/// Accepts `n` sockets, then writes one frame to each at `rate` for `duration` from `started`
/// (set once every socket is accepted), on `senders` threads; returns their CPU seconds while
/// sending and how many frames they wrote.
fn send(listener: TcpListener, args: FloorArgs, started: Arc<OnceLock<Instant>>) -> anyhow::Result<(f64, u64)> {
    let mut sockets: Vec<TcpStream> = Vec::with_capacity(args.subscribers);
    for _ in 0..args.subscribers {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        sockets.push(s);
    }
    let started = *started.get_or_init(Instant::now);
    let share = sockets.len().div_ceil(args.senders);
    std::thread::scope(|scope| {
        let senders: Vec<_> = sockets
            .chunks_mut(share)
            .map(|part| scope.spawn(|| write_bursts(part, &args, started)))
            .collect();
        let mut total = (0.0, 0);
        for sender in senders {
            let (cpu_s, written) = sender
                .join()
                .map_err(|_| anyhow::anyhow!("a sender thread panicked"))??;
            total = (total.0 + cpu_s, total.1 + written);
        }
        Ok(total)
    })
}

/// One sender's loop: each burst, one write of the frame to every socket of its share.
fn write_bursts(sockets: &mut [TcpStream], args: &FloorArgs, started: Instant) -> anyhow::Result<(f64, u64)> {
    let ticks = (args.rate * args.duration).round() as u64;
    let cpu_before = thread_cpu_s()?;
    let mut written = 0;
    for seq in 0..ticks {
        if let Some(wait) = due(started, seq, args.rate).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let bytes = frame(args.frame, seq);
        for socket in sockets.iter_mut() {
            socket.write_all(&bytes)?;
            written += 1;
        }
    }
    Ok((thread_cpu_s()? - cpu_before, written))
}

/// Runs the floor: the sender threads, and this process draining every socket.
pub async fn run(args: FloorArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.subscribers > 0
            && args.rate > 0.0
            && args.duration > 0.0
            && (4..=127).contains(&args.frame)
            && (1..=args.subscribers).contains(&args.senders),
        "--subscribers, --rate and --duration must be positive, --frame 4 to 127 bytes, --senders 1 to --subscribers"
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr: SocketAddr = listener.local_addr()?;
    let started = Arc::new(OnceLock::new());
    let sender = {
        let (args, started) = (args.clone(), started.clone());
        std::thread::Builder::new()
            .name("floor-sender".into())
            .spawn(move || send(listener, args, started))?
    };
    let sources = Sources::new(args.subscribers as u64);
    let received = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Recorder::default());
    let bar = report::bar(args.subscribers as u64, "connecting");
    for i in 0..args.subscribers {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(sources.of(i as u64).into(), 0))?;
        let mut stream = socket.connect(addr).await.context("connecting to the sender")?;
        let (received, latency, started) = (received.clone(), latency.clone(), started.clone());
        let (frame_len, rate) = (args.frame, args.rate);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut filled = 0;
            while let Ok(n) = stream.read(&mut buf[filled..]).await {
                if n == 0 {
                    break;
                }
                filled += n;
                let whole = filled - filled % frame_len;
                for frame in buf[..whole].chunks_exact(frame_len) {
                    if let (Some(seq), Some(&started)) = (seq_of(frame), started.get()) {
                        latency.record(i, due(started, seq, rate).elapsed().as_micros() as u64);
                    }
                }
                buf.copy_within(whole..filled, 0);
                filled -= whole;
                // Counted once timed: the count tells the run when every frame is recorded.
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (cpu_s, written) = tokio::task::spawn_blocking(move || sender.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
    let expected_bytes = written * args.frame as u64;
    let drain = Instant::now();
    while received.load(Ordering::Relaxed) < expected_bytes && drain.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered = received.load(Ordering::Relaxed) / args.frame as u64;
    let result = json!({
        "server": "floor",
        "frames_written": written,
        "frames_delivered": delivered,
        "sender_cpu_s": round3(cpu_s),
        "us_per_delivery": round3(cpu_s * 1e6 / written.max(1) as f64),
        "deliveries_per_cpu_s": round3(written as f64 / cpu_s.max(1e-9)),
        "latency": Summary::of(&latency.take()),
    });
    Ok(Report::new("floor", &args, vec![result]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames have the asked length and a valid header.
    #[test]
    fn frames_are_exact() {
        for len in [4, 110, 127] {
            let f = frame(len, 12345);
            assert_eq!(f.len(), len);
            assert_eq!((f[0], f[1] as usize), (0x81, len - 2));
        }
        assert_eq!(seq_of(&frame(110, 12345)), Some(12345));
        assert_eq!(seq_of(&frame(4, 12345)), None);
    }
}
