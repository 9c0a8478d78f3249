//! A bounded random-frame run against the live server: a few hundred frames of garbage, near
//! misses and real operations on counter and display sockets. Every frame is answered, no
//! socket closes, the server stays healthy, and the counter holds exactly the sum of the
//! increments it acknowledged.

mod support;

use serde_json::{Value, json};
use support::*;

/// xorshift64: the run is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One random frame: a real operation, a near miss, or garbage.
fn frame(rng: &mut Rng) -> String {
    let amount = rng.below(2001) as i64 - 1000;
    match rng.below(9) {
        0 => json!({"type": "increment", "amount": amount, "id": rng.next()}).to_string(),
        1 => json!({"type": "decrement", "amount": amount, "id": 1}).to_string(),
        2 => json!({"type": "getValue", "id": 2}).to_string(),
        3 => json!({"type": "increment", "amount": "lots"}).to_string(),
        4 => json!({"type": "explode"}).to_string(),
        5 => "{\"type\": \"increment\", \"amount\":".to_string(),
        6 => json!([1, 2, {"type": "increment"}]).to_string(),
        7 => {
            let len = rng.below(300) as usize;
            (0..len)
                .map(|_| char::from_u32(rng.below(0xD7FF) as u32 + 1).unwrap_or('?'))
                .collect()
        }
        _ => json!({"type": "increment", "amount": i64::MAX}).to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_are_answered_and_lose_nothing() {
    let server = TestServer::start().await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut counter = ws(&server.ws_url("/ws/counter/random")).await;
    let mut display = ws(&server.ws_url("/session/random/display")).await;
    assert_eq!(next_json(&mut display).await["type"], "initial_state");
    let mut expected: i64 = 0;
    for _ in 0..400 {
        let text = frame(&mut rng);
        send(&mut counter, &text).await;
        let reply = next_json(&mut counter).await;
        match reply["type"].as_str() {
            Some("result") => {
                if let Some(previous) = reply["previousValue"].as_i64() {
                    expected += reply["value"].as_i64().unwrap() - previous;
                }
            }
            Some("error") => assert!(reply["message"].is_string(), "{reply}"),
            _ => {
                // An increment's broadcast reaches this socket too, before the result.
                assert_eq!(
                    reply["type"].as_str().map(|t| t == "increment" || t == "decrement"),
                    Some(true),
                    "{reply}"
                );
                let result = next_json(&mut counter).await;
                assert_eq!(result["type"], "result", "{result}");
                expected += result["value"].as_i64().unwrap() - result["previousValue"].as_i64().unwrap();
            }
        }
        // The display only listens: anything but a ping is answered with an error frame.
        let junk = frame(&mut rng);
        send(&mut display, &junk).await;
        let answer: Value = next_json(&mut display).await;
        assert!(answer["type"] == "error" || answer["type"] == "pong", "{answer}");
    }
    let (status, value) = post_json(&server.url("/rpc/counter.getValue"), &json!({"name": "random"}), None).await;
    assert_eq!((status, value["value"].as_i64()), (200, Some(expected)));
    let (status, _) = get_json(&server.url("/healthz")).await;
    assert_eq!(status, 200);
    server.stop().await;
}
