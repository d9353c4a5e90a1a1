//! The deliverer: every server process claims due deliveries from the queue (woken by
//! `ocaas_webhooks`, and every second), sends each signed as Standard Webhooks asks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature` with HMAC-SHA256 over
//! `id.timestamp.body`, through the `standardwebhooks` crate), and records the attempt. A 2xx
//! answer delivers; anything else (a redirect included: none is followed) is retried on a fixed
//! backoff, and given up after the last step. The receiver's answer is never read: only its
//! status line decides, so a receiver cannot make the server hold its body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::repo::{self, Claimed, Outcome};
use crate::secrets::SecretKey;

/// Waits before the 2nd, 3rd, … attempt; after the last, the delivery is given up (≈ 16.6 h).
const BACKOFF_SECS: [i64; 12] = [5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14_400, 28_800];
/// Longest one attempt may take, whatever the receiver does (connect, send, status line).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a claim holds a delivery: past any attempt, so a dead process's claims come due.
const CLAIM_SECS: f64 = 60.0;
/// Attempts in flight per process.
const CONCURRENCY: usize = 16;
/// Ended deliveries are kept this many days (the delivery log).
const KEEP_DAYS: i32 = 30;

/// What the deliverer needs: the queue, the secrets' key, the two clients.
#[derive(Clone)]
pub struct Deliverer {
    pub db: sqlx::PgPool,
    pub secret_key: SecretKey,
    /// Connects only to public addresses (`runtime::outbound::PublicOnly`), unless the operator
    /// allows private receivers.
    pub client: reqwest::Client,
    pub allow_private: bool,
}

/// When to try again after `attempts` failed ones; `None`: give up.
pub fn retry_at(attempts: i32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let wait = BACKOFF_SECS.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    Some(now + chrono::Duration::seconds(*wait))
}

/// Runs until `shutdown`: claims, sends, records.
pub fn spawn(deliverer: Deliverer, wake: Arc<Notify>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        let mut pruned = Instant::now() - Duration::from_secs(3600);
        loop {
            if pruned.elapsed() >= Duration::from_secs(3600) {
                pruned = Instant::now();
                if let Err(error) = repo::prune(&deliverer.db, KEEP_DAYS).await {
                    tracing::warn!(%error, "pruning the webhook delivery log failed");
                }
            }
            let free = slots.available_permits();
            let claimed = if free == 0 { Ok(Vec::new()) } else { repo::claim(&deliverer.db, free as i64, CLAIM_SECS).await };
            match claimed {
                Ok(claimed) => {
                    for delivery in claimed {
                        let Ok(slot) = slots.clone().acquire_owned().await else { return };
                        let deliverer = deliverer.clone();
                        tokio::spawn(async move {
                            deliverer.attempt(&delivery).await;
                            drop(slot);
                        });
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming webhook deliveries failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

impl Deliverer {
    async fn attempt(&self, delivery: &Claimed) {
        let started = Instant::now();
        let sent = self.send(delivery).await;
        let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let (status_code, error) = match &sent {
            Ok(code) if (200..300).contains(code) => (Some(i32::from(*code)), None),
            Ok(code) if (300..400).contains(code) => {
                (Some(i32::from(*code)), Some("the receiver answered a redirect, which is not followed".to_owned()))
            }
            Ok(code) => (Some(i32::from(*code)), Some(format!("the receiver answered {code}"))),
            Err(why) => (None, Some(why.clone())),
        };
        let retry = if error.is_none() { None } else { Some(retry_at(delivery.attempts, Utc::now())) };
        let outcome = Outcome { status_code, error: error.as_deref(), duration_ms, retry_at: retry };
        if let Err(error) = repo::finish(&self.db, delivery, &outcome).await {
            // The claim runs out and the delivery is tried again: at least once.
            tracing::warn!(%error, delivery = %delivery.id, "recording a webhook attempt failed");
        }
    }

    /// The receiver's status code, or why there is none.
    async fn send(&self, delivery: &Claimed) -> Result<u16, String> {
        // A name is checked as the client connects; a literal address is never resolved.
        if !self.allow_private
            && let Some(host) = crate::runtime::outbound::private_literal(&delivery.url)
        {
            return Err(format!("`{host}` is not a public address"));
        }
        let timestamp = Utc::now().timestamp();
        let signature = self.signature(delivery, timestamp)?;
        let request = self
            .client
            .post(&delivery.url)
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::USER_AGENT, concat!("ocaas-webhooks/", env!("CARGO_PKG_VERSION")))
            .body(delivery.payload.clone())
            .timeout(ATTEMPT_TIMEOUT);
        match request.send().await {
            Ok(answer) => Ok(answer.status().as_u16()),
            Err(error) => Err(describe(&error)),
        }
    }

    /// `v1,<sig>` with the current secret, and a second one with the previous secret while a
    /// rotation's overlap lasts.
    fn signature(&self, delivery: &Claimed, timestamp: i64) -> Result<String, String> {
        let mut secrets = vec![delivery.secret_sealed.as_slice()];
        if let (Some(previous), Some(until)) = (&delivery.previous_secret_sealed, delivery.previous_until)
            && until > Utc::now()
        {
            secrets.push(previous);
        }
        let signatures = secrets
            .into_iter()
            .map(|sealed| {
                let secret = self.secret_key.open(sealed).and_then(|s| String::from_utf8(s).ok()).ok_or("the endpoint's secret cannot be read")?;
                let webhook = standardwebhooks::Webhook::new(&secret).map_err(|_| "the endpoint's secret is malformed")?;
                webhook.sign(&delivery.message_id, timestamp, delivery.payload.as_bytes()).map_err(|_| "the event cannot be signed")
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(signatures.join(" "))
    }
}

/// Why a request got no answer, without the URL (the log shows it once, on the endpoint).
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        "no answer within 10 s"
    } else if error.is_connect() {
        "the receiver could not be reached"
    } else {
        "the request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut cause = String::new();
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() { what.to_owned() } else { format!("{what}: {cause}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_end() {
        let now = Utc::now();
        assert_eq!(retry_at(1, now), Some(now + chrono::Duration::seconds(5)));
        assert_eq!(retry_at(2, now), Some(now + chrono::Duration::seconds(15)));
        assert_eq!(retry_at(12, now), Some(now + chrono::Duration::seconds(28_800)));
        assert_eq!(retry_at(13, now), None, "given up after the last step");
        assert_eq!(retry_at(0, now), None);
    }
}
