//! The effect runner: performs the HTTP requests objects enqueue as durable effects.

use std::time::Duration;

use switchboard_runtime::{Attempt, Effect, EffectResponse, EffectRunner};

/// How long one attempt may take before it counts as failed (and is retried).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs [`Effect::Http`] with a shared connection pool; every request carries
/// `Idempotency-Key`. A non-2xx answer, a refusal or a timeout fails the attempt.
pub struct HttpEffects {
    client: reqwest::Client,
}

impl HttpEffects {
    pub fn new() -> Self {
        HttpEffects {
            client: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .build()
                .expect("an HTTP client with default settings builds"),
        }
    }
}

impl Default for HttpEffects {
    fn default() -> Self {
        Self::new()
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
