//! The LED strip: the [`LedStrip`] trait, the patterns drawn as frames, the driver that writes
//! them at most `fps` times a second (coalesced: the newest state wins), and the frame log that
//! keeps the last frames written, whatever the strip, for the console and the tests.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use switchboard_proto::kiosk::{Color, LedState, Pattern};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A strip of RGB LEDs.
pub trait LedStrip: Send + 'static {
    /// Its name in `status` and logs (`mock`, `ws281x`).
    fn driver(&self) -> &'static str;
    /// Number of LEDs.
    fn leds(&self) -> usize;
    /// Shows one frame, one colour per LED. Must return quickly: a hardware strip hands the
    /// frame to a thread of its own.
    fn show(&mut self, pixels: &[Color]) -> Result<(), LedError>;
}

/// A strip that failed to show a frame.
#[derive(Debug, thiserror::Error)]
#[error("LED strip: {0}")]
pub struct LedError(pub String);

/// A strip that shows nothing: its frames are read from the [`FrameLog`].
pub struct MockStrip {
    pub leds: usize,
}

impl LedStrip for MockStrip {
    fn driver(&self) -> &'static str {
        "mock"
    }

    fn leds(&self) -> usize {
        self.leds
    }

    fn show(&mut self, _pixels: &[Color]) -> Result<(), LedError> {
        Ok(())
    }
}

/// One frame written to the strip.
#[derive(Clone, Debug)]
pub struct Written {
    pub at: Instant,
    pub state: LedState,
    pub pixels: Vec<Color>,
}

/// The last frames written to the strip.
pub struct FrameLog {
    capacity: usize,
    frames: Mutex<VecDeque<Written>>,
    written: AtomicU64,
}

/// A frame as `GET /api/nfc/led` shows it.
#[derive(Serialize)]
pub struct FrameView {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub pattern: Pattern,
    pub pixels: Vec<Color>,
}

impl FrameLog {
    pub fn new(capacity: usize) -> Self {
        FrameLog {
            capacity,
            frames: Mutex::new(VecDeque::with_capacity(capacity)),
            written: AtomicU64::new(0),
        }
    }

    fn record(&self, frame: Written) {
        let mut frames = self.frames.lock().expect("frame log lock");
        if frames.len() == self.capacity {
            frames.pop_front();
        }
        frames.push_back(frame);
        self.written.fetch_add(1, Ordering::Relaxed);
    }

    /// The frames kept, oldest first.
    pub fn frames(&self) -> Vec<Written> {
        self.frames.lock().expect("frame log lock").iter().cloned().collect()
    }

    /// Frames written since start.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The last `limit` frames with wall-clock times (`now_ms` is now).
    pub fn view(&self, now_ms: i64, limit: usize) -> Vec<FrameView> {
        let now = Instant::now();
        let frames = self.frames.lock().expect("frame log lock");
        frames
            .iter()
            .skip(frames.len().saturating_sub(limit))
            .map(|f| FrameView {
                at: now_ms - now.duration_since(f.at).as_millis() as i64,
                pattern: f.state.pattern,
                pixels: f.pixels.clone(),
            })
            .collect()
    }
}

/// The frame `state` shows `elapsed` after it began.
pub fn render(state: LedState, leds: usize, elapsed: Duration) -> Vec<Color> {
    let scale = |c: Color, level: f32| Color(c.0.map(|v| (v as f32 * level).round() as u8));
    let t = elapsed.as_secs_f32();
    match state.pattern {
        Pattern::Off => vec![Color::BLACK; leds],
        Pattern::Solid => vec![state.color; leds],
        // On for half of each second.
        Pattern::Blink => {
            let on = t.fract() < 0.5;
            vec![if on { state.color } else { Color::BLACK }; leds]
        }
        // Brightness follows a 2 s sine.
        Pattern::Pulse => {
            let level = 0.5 - 0.5 * (t * std::f32::consts::PI).cos();
            vec![scale(state.color, level); leds]
        }
        // The colour wheel across the strip, turning once every 3 s.
        Pattern::Rainbow => (0..leds)
            .map(|i| wheel(i as f32 / leds.max(1) as f32 + t / 3.0))
            .collect(),
    }
}

/// A fully saturated colour at `turn` (0…1, wrapping) around the wheel.
fn wheel(turn: f32) -> Color {
    let h = turn.rem_euclid(1.0) * 6.0;
    let x = ((1.0 - (h % 2.0 - 1.0).abs()) * 255.0).round() as u8;
    match h as u8 {
        0 => Color([255, x, 0]),
        1 => Color([x, 255, 0]),
        2 => Color([0, 255, x]),
        3 => Color([0, x, 255]),
        4 => Color([x, 0, 255]),
        _ => Color([255, 0, x]),
    }
}

/// Writes what `states` says to `strip` until `shutdown`: a frame when the state changes and,
/// for animated patterns, at `fps`; never two frames less than `1/fps` apart. States that come
/// faster are coalesced: the strip shows the newest.
pub async fn drive(
    mut strip: Box<dyn LedStrip>,
    log: std::sync::Arc<FrameLog>,
    mut states: watch::Receiver<LedState>,
    fps: u32,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_secs(1) / fps.max(1);
    let leds = strip.leds();
    let mut shown = *states.borrow_and_update();
    let mut began = Instant::now();
    let mut next = Instant::now();
    let mut dirty = true;
    loop {
        // `dirty`: a frame is owed (a new state, or the next frame of an animation).
        if dirty {
            // Changes that arrive while waiting for the next slot replace each other.
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.cancelled() => return,
            }
            let state = *states.borrow_and_update();
            let now = Instant::now();
            if state != shown {
                shown = state;
                began = now;
            }
            let pixels = render(state, leds, now - began);
            if let Err(e) = strip.show(&pixels) {
                tracing::warn!(error = %e, "kiosk: a LED frame was not shown");
            }
            log.record(Written { at: now, state, pixels });
            next = now + interval;
        }
        dirty = tokio::select! {
            changed = states.changed() => match changed {
                Ok(()) => true,
                Err(_) => return,
            },
            _ = tokio::time::sleep_until(next), if shown.pattern.animated() => true,
            _ = shutdown.cancelled() => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn solid(level: u8) -> LedState {
        LedState {
            pattern: Pattern::Solid,
            color: Color([level, 0, 0]),
        }
    }

    fn start(fps: u32) -> (watch::Sender<LedState>, Arc<FrameLog>, CancellationToken) {
        let (tx, rx) = watch::channel(LedState::default());
        let log = Arc::new(FrameLog::new(1000));
        let shutdown = CancellationToken::new();
        tokio::spawn(drive(
            Box::new(MockStrip { leds: 8 }),
            log.clone(),
            rx,
            fps,
            shutdown.clone(),
        ));
        (tx, log, shutdown)
    }

    /// Lets the driver run until it waits on a timer or a change.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// A burst of 200 states over one second reaches the strip as at most 30 frames, at least
    /// 1/30 s apart, and the strip ends on the newest state.
    #[tokio::test(start_paused = true)]
    async fn bursts_are_throttled_and_coalesced() {
        let (tx, log, shutdown) = start(30);
        settle().await;
        let t0 = Instant::now();
        for i in 0..200u32 {
            tx.send(solid(i as u8 + 1)).unwrap();
            settle().await;
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
        let frames: Vec<Written> = log.frames().into_iter().filter(|f| f.at >= t0).collect();
        let in_first_second = frames.iter().filter(|f| f.at < t0 + Duration::from_secs(1)).count();
        assert!(in_first_second <= 30, "{in_first_second} frames in one second");
        assert!(
            in_first_second >= 25,
            "the throttle must not starve the strip: {in_first_second}"
        );
        for pair in frames.windows(2) {
            assert!(
                pair[1].at - pair[0].at >= Duration::from_secs(1) / 30,
                "frames too close"
            );
        }
        assert_eq!(frames.last().unwrap().state, solid(200), "newest state shown");
        shutdown.cancel();
    }

    /// A static pattern is one frame; an animated one is redrawn at the frame rate.
    #[tokio::test(start_paused = true)]
    async fn animation_runs_at_the_frame_rate() {
        let (tx, log, shutdown) = start(30);
        settle().await;
        tx.send(solid(9)).unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        let before = log.written();
        assert_eq!(before, 2, "the start frame and the solid one");
        tx.send(LedState {
            pattern: Pattern::Rainbow,
            color: Color::WHITE,
        })
        .unwrap();
        // Paused time jumps from timer to timer: the driver's frames come exactly when due.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let animated = log.written() - before;
        assert!((29..=31).contains(&animated), "{animated} frames in one second");
        shutdown.cancel();
    }

    #[test]
    fn patterns_draw() {
        let red = Color([200, 0, 0]);
        let at = |pattern, secs: f32| render(LedState { pattern, color: red }, 4, Duration::from_secs_f32(secs));
        assert_eq!(at(Pattern::Solid, 0.0), vec![red; 4]);
        assert_eq!(at(Pattern::Off, 0.0), vec![Color::BLACK; 4]);
        assert_eq!(at(Pattern::Blink, 0.2), vec![red; 4]);
        assert_eq!(at(Pattern::Blink, 0.7), vec![Color::BLACK; 4]);
        assert_eq!(at(Pattern::Pulse, 1.0), vec![red; 4]);
        assert_eq!(at(Pattern::Pulse, 0.0), vec![Color::BLACK; 4]);
        let rainbow = at(Pattern::Rainbow, 0.0);
        assert_eq!(rainbow[0], Color([255, 0, 0]));
        assert_ne!(rainbow[1], rainbow[2]);
    }
}
