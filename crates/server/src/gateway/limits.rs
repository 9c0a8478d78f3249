//! Limits a client meets before its request reaches a route: connections and the request and
//! frame rate per client address, the time to send a request body, and the drain that lets a
//! refused body's sender read its answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use switchboard_apps::http::ApiError;

/// Open connections per client address, bounded.
#[derive(Clone)]
pub struct PerIp {
    max: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    pub fn new(max: usize) -> Self {
        PerIp {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `ip`, or `None` if it already holds the maximum.
    pub fn admit(&self, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().expect("per-ip table lock");
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

/// One connection's place in its address's count, given back when dropped. It travels with the
/// connection's stream, so a connection that became a WebSocket keeps holding it.
pub struct IpSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("per-ip table lock");
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            // Entries of departed clients would otherwise pile up for the life of the process.
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Addresses whose buckets are kept before full (idle) ones are forgotten.
const RATE_ADDRESSES: usize = 65_536;

/// Requests and socket frames per client address: a token bucket each, shared by all of that
/// address's connections.
pub struct IpRates {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl IpRates {
    /// `None` when `per_second` is 0 (no limit); a `burst` of 0 is twice the rate.
    pub fn new(per_second: u32, burst: u32) -> Option<Arc<Self>> {
        (per_second > 0).then(|| {
            let burst = if burst == 0 {
                per_second.saturating_mul(2)
            } else {
                burst
            };
            Arc::new(IpRates {
                per_second: f64::from(per_second),
                burst: f64::from(burst),
                buckets: Mutex::default(),
            })
        })
    }

    /// The most an address may send at once.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    /// Takes a token from `ip`'s bucket; false when it is empty.
    pub fn take(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate table lock");
        if buckets.len() >= RATE_ADDRESSES && !buckets.contains_key(&ip) {
            // An address whose bucket has refilled is the same as one never seen.
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + (now - *at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + (now - *at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Answers 429 to a request whose address is over its rate (`ip_rate_per_second`).
pub async fn limit_rate(State(rates): State<Arc<IpRates>>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<switchboard_apps::PeerAddr>().map(|p| p.0.ip());
    if let Some(ip) = ip
        && !rates.take(ip)
    {
        metrics::counter!("switchboard_requests_refused_total", "reason" => "ip_rate").increment(1);
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many requests from this address: at most {} per second",
                rates.per_second
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    next.run(req).await
}

/// Most bytes of a refused request's body read and thrown away so that its sender, which may
/// write the whole body before it reads, gets to read the answer (nginx's lingering close).
pub const DRAIN_BYTES: u64 = 16 << 20;

/// Bounds every request body to `timeout` from the moment its headers are in: a body still
/// unfinished then is answered 408 and the connection closed. When a route answers an error
/// without reading the whole body (413, 415, 401…), the rest is drained, within the same
/// deadline and [`DRAIN_BYTES`], before the answer goes out.
pub async fn bound_body(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let deadline = Instant::now() + timeout;
    let timed_out = Arc::new(AtomicBool::new(false));
    let (give_back, mut unread) = oneshot::channel();
    let req = req.map(|body| {
        Body::new(DeadlineBody {
            inner: Some(body),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timed_out: timed_out.clone(),
            give_back: Some(give_back),
        })
    });
    let mut response = next.run(req).await;
    if timed_out.load(Ordering::Relaxed) {
        let mut response = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} ms", timeout.as_millis()),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let is_error = response.status().is_client_error() || response.status().is_server_error();
    // By now the route has dropped the body (or holds it elsewhere, and then it is not ours).
    if let (true, Ok(rest)) = (is_error, unread.try_recv())
        && !drain(rest, deadline).await
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads and discards `body` until it ends, [`DRAIN_BYTES`] were read, or `deadline`; true if it
/// ended, so the connection can serve another request.
async fn drain(mut body: Body, deadline: Instant) -> bool {
    let mut read = 0u64;
    let until_end = async {
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
                if read > DRAIN_BYTES {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout_at(deadline, until_end).await.unwrap_or(false)
}

/// A request body that fails once its deadline passes, and hands what is left of itself back
/// to [`bound_body`] when the route drops it unfinished.
struct DeadlineBody {
    /// `None` only once given back.
    inner: Option<Body>,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
    give_back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new("request body timed out"))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for DeadlineBody {
    fn drop(&mut self) {
        if let (Some(body), Some(give_back)) = (self.inner.take(), self.give_back.take())
            && !body.is_end_stream()
            && !self.timed_out.load(Ordering::Relaxed)
        {
            let _ = give_back.send(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots count per address and come back when dropped; a full address does not block another.
    #[test]
    fn slots_per_address() {
        let limit = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.admit(a).unwrap();
        let _second = limit.admit(a).unwrap();
        assert!(limit.admit(a).is_none());
        assert!(limit.admit(b).is_some());
        drop(first);
        assert!(limit.admit(a).is_some());
    }

    /// An address's bucket holds its burst, refills at its rate, and is its own.
    #[tokio::test(start_paused = true)]
    async fn rates_per_address() {
        let rates = IpRates::new(10, 3).unwrap();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| rates.take(a)));
        assert!(!rates.take(a));
        assert!(rates.take(b));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(rates.take(a));
        assert!(!rates.take(a));
        assert!(IpRates::new(0, 5).is_none());
        assert_eq!(IpRates::new(7, 0).unwrap().burst(), 14);
    }
}
