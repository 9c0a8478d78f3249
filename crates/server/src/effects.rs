//! The effect runner: performs the HTTP requests objects enqueue as durable effects.

use std::time::Duration;

use switchboard_runtime::{Attempt, Effect, EffectResponse, EffectRunner};

/// Runs [`Effect::Http`] with a shared connection pool; every request carries
/// `Idempotency-Key`. A non-2xx answer, a refusal or a timeout fails the attempt.
pub struct HttpEffects {
    client: reqwest::Client,
}

impl HttpEffects {
    /// Each attempt may take `timeout` (the `effect_timeout_ms` setting) before it fails.
    pub fn new(timeout: Duration) -> Self {
        HttpEffects {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client with default settings builds"),
        }
    }
}

impl Default for HttpEffects {
    /// Attempts of 10 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl EffectRunner for HttpEffects {
    fn run(&self, effect: &Effect, key: &str) -> Attempt {
        let Effect::Http(request) = effect;
        let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                let error = format!("{:?} is not an HTTP method", request.method);
                return Box::pin(std::future::ready(Err(error)));
            }
        };
        let mut builder = self
            .client
            .request(method, &request.url)
            .header("idempotency-key", key)
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        Box::pin(async move {
            let response = builder.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body = response.text().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(EffectResponse {
                    status: status.as_u16(),
                    body,
                })
            } else {
                Err(format!("the backend answered {status}"))
            }
        })
    }
}
