//! The dispatcher: a loop in every server process that claims due deliveries with
//! `FOR UPDATE SKIP LOCKED` (so several processes share the outbox without sending a message
//! twice), POSTs each signed with every secret in force, logs the attempt, and schedules the
//! next one on failure, following the Standard Webhooks example schedule: at once, then 5 s,
//! 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later (27½ hours in all), then `failed`. A 2xx answer
//! is delivered; a redirect is not followed and counts as a failure; `410 Gone` disables the
//! endpoint. The receiver's body is never read.
//!
//! `KILN_WEBHOOK_RETRY_SCALE` (a positive number, default 1) multiplies the schedule's delays,
//! read once at the first retry: tests and staging shorten a day of retries to moments.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

use super::{NOTIFY_CHANNEL, address, sign};
use crate::state::AppState;

/// The wait after each failed attempt, in order (the spec's example, trimmed to 27½ hours).
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Attempts a message gets on the schedule: the first and one per retry.
pub const MAX_ATTEMPTS: i32 = RETRY_SCHEDULE.len() as i32 + 1;

/// The spec recommends 15 to 30 s for a receiver to answer; 15 keeps slow receivers from holding
/// the dispatcher's slots.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Connecting takes far less than answering; a host that does not accept in 10 s is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a claim lasts: longer than an attempt can take (the request timeout plus DNS), so
/// only a dispatcher that died mid-attempt loses its claim, and its delivery is retried then.
const CLAIM_SECONDS: f64 = 60.0;

/// Deliveries one process sends at once: enough to keep up with bursts, few enough not to
/// exhaust the database pool (each attempt ends with one short transaction).
const MAX_IN_FLIGHT: usize = 32;

/// The longest the dispatcher sleeps without looking at the outbox, in case a notification was
/// lost (a reconnect) or another process scheduled a retry.
const POLL: Duration = Duration::from_secs(5);

/// The shortest sleep, so a delivery another process holds for a moment is not spun on.
const MIN_WAIT: Duration = Duration::from_millis(20);

/// Random extra delay on retries, as a fraction of the delay: spreads retries of many messages
/// to one recovering receiver (the spec recommends jitter).
const JITTER: f64 = 0.1;

/// The longest error text kept in the log of an attempt.
const MAX_ERROR_CHARS: usize = 500;

const USER_AGENT: &str = concat!("Kiln-Webhooks/", env!("CARGO_PKG_VERSION"));

static RETRY_SCALE: OnceLock<f64> = OnceLock::new();

/// The factor on the schedule's delays: `KILN_WEBHOOK_RETRY_SCALE`, or what
/// [`set_retry_scale`] set first.
pub fn retry_scale() -> f64 {
    *RETRY_SCALE.get_or_init(|| match std::env::var("KILN_WEBHOOK_RETRY_SCALE") {
        Err(_) => 1.0,
        Ok(text) => match text.parse::<f64>() {
            Ok(scale) if scale.is_finite() && scale > 0.0 => scale,
            _ => {
                tracing::warn!(value = text, "KILN_WEBHOOK_RETRY_SCALE is not a positive number; using 1");
                1.0
            }
        },
    })
}

/// Sets the factor on the schedule's delays for this process, before any retry reads it (for
/// tests that run the server in-process); false when it was already fixed.
pub fn set_retry_scale(scale: f64) -> bool {
    RETRY_SCALE.set(scale).is_ok()
}

/// Starts the dispatcher on the current Tokio runtime.
pub fn spawn(state: &AppState) {
    let db = state.db.clone();
    let allow_loopback = state.config.webhooks_allow_loopback;
    tokio::spawn(async move {
        match client(allow_loopback) {
            Ok(client) => run(db, client, allow_loopback).await,
            Err(error) => {
                tracing::error!(%error, "webhook delivery client could not be built; webhooks will not be sent")
            }
        }
    });
}

/// The delivery client: connections only to checked addresses, no redirects, no proxy from the
/// environment (a proxy would resolve names itself, past the check).
fn client(allow_loopback: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(address::CheckedResolver { allow_loopback })
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(USER_AGENT)
        .build()
}

async fn run(db: PgPool, client: reqwest::Client, allow_loopback: bool) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Each finished attempt wakes the loop: its retry may be due before anything else.
    let attempted = Arc::new(Notify::new());
    let mut listener = listen(&db).await;
    loop {
        // Wait for a free slot before claiming, so nothing claimed waits on this process.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let room = in_flight.available_permits() + 1;
        drop(permit);
        match claim(&db, room).await {
            Ok(claimed) if claimed.is_empty() => wait(&db, &mut listener, &attempted).await,
            Ok(claimed) => {
                for delivery in claimed {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
                    let (db, client, attempted) = (db.clone(), client.clone(), attempted.clone());
                    tokio::spawn(async move {
                        let outcome = attempt(&client, allow_loopback, &delivery).await;
                        if let Err(error) = record(&db, &delivery, &outcome).await {
                            tracing::error!(%error, delivery_id = %delivery.id, "recording a webhook attempt failed; it is retried when its claim lapses");
                        }
                        drop(permit);
                        attempted.notify_one();
                    });
                }
            }
            Err(error) => {
                tracing::warn!(%error, "claiming webhook deliveries failed; retrying");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// A listener on the outbox's channel, or None (then the dispatcher polls).
async fn listen(db: &PgPool) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(db).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, "webhook dispatcher cannot listen for notifications; polling");
            return None;
        }
    };
    match listener.listen(NOTIFY_CHANNEL).await {
        Ok(()) => Some(listener),
        Err(error) => {
            tracing::warn!(%error, "webhook dispatcher cannot listen for notifications; polling");
            None
        }
    }
}

/// Sleeps until a new message is committed, an attempt of this process ends, the next retry is
/// due, or [`POLL`] has passed.
async fn wait(db: &PgPool, listener: &mut Option<PgListener>, attempted: &Notify) {
    let until_due = match next_due(db).await {
        Ok(until) => until.clamp(MIN_WAIT, POLL),
        Err(_) => POLL,
    };
    let notified = async {
        match listener {
            Some(listener) => listener.recv().await.map(|_| ()),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        received = notified => {
            if let Err(error) = received {
                // The listener reconnects on its next use; sleep so a database that is down is
                // not spun on.
                tracing::warn!(%error, "webhook notifications interrupted");
                tokio::time::sleep(until_due).await;
            }
        }
        () = attempted.notified() => {}
        () = tokio::time::sleep(until_due) => {}
    }
}

/// How long until the earliest pending delivery can be claimed ([`POLL`] when none is pending).
async fn next_due(db: &PgPool) -> Result<Duration, sqlx::Error> {
    let (seconds,): (Option<f64>,) = sqlx::query_as(
        "SELECT extract(epoch FROM min(greatest(next_attempt_at, coalesce(claimed_until, next_attempt_at))) - now())::float8
         FROM webhook_deliveries WHERE state = 'pending'",
    )
    .fetch_one(db)
    .await?;
    Ok(seconds.map_or(POLL, |s| Duration::from_secs_f64(s.clamp(0.0, POLL.as_secs_f64()))))
}

/// A delivery this process holds, with what it needs to send it. No `Debug`: it holds the
/// endpoint's secrets, which are never logged.
#[derive(sqlx::FromRow)]
struct Claimed {
    id: Uuid,
    org_id: Uuid,
    message_id: String,
    endpoint_id: Uuid,
    /// This attempt's number (counted at the claim).
    attempts: i32,
    max_attempts: i32,
    manual: bool,
    url: String,
    secret: String,
    /// The secret before a rotation, while it still signs.
    previous_secret: Option<String>,
    body: String,
}

/// Claims up to `limit` due deliveries for [`CLAIM_SECONDS`], counting the attempt.
async fn claim(db: &PgPool, limit: usize) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS (
             SELECT id FROM webhook_deliveries
             WHERE state = 'pending' AND next_attempt_at <= now() AND (claimed_until IS NULL OR claimed_until <= now())
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED),
         claimed AS (
             UPDATE webhook_deliveries d SET attempts = d.attempts + 1, claimed_until = now() + make_interval(secs => $1)
             FROM due WHERE d.id = due.id
             RETURNING d.id, d.org_id, d.message_id, d.endpoint_id, d.attempts, d.max_attempts, d.manual)
         SELECT c.id, c.org_id, c.message_id, c.endpoint_id, c.attempts, c.max_attempts, c.manual, e.url, e.secret,
                CASE WHEN e.previous_expires_at > now() THEN e.previous_secret END AS previous_secret, m.body
         FROM claimed c JOIN webhook_endpoints e ON e.id = c.endpoint_id JOIN webhook_messages m ON m.id = c.message_id",
    )
    .bind(CLAIM_SECONDS)
    .bind(i64::try_from(limit).unwrap_or(1))
    .fetch_all(db)
    .await
}

/// What one attempt gave.
#[derive(Debug, PartialEq)]
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
    duration_ms: i32,
    /// The receiver's `Retry-After`, in seconds.
    retry_after: Option<Duration>,
}

impl Outcome {
    fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The receiver wants no more webhooks (410 Gone).
    fn gone(&self) -> bool {
        self.status == Some(410)
    }
}

async fn attempt(client: &reqwest::Client, allow_loopback: bool, delivery: &Claimed) -> Outcome {
    let start = Instant::now();
    let result = send(client, allow_loopback, delivery).await;
    let duration_ms = i32::try_from(start.elapsed().as_millis()).unwrap_or(i32::MAX);
    match result {
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let error = (!status.is_success()).then(|| format!("the endpoint answered {status}"));
            Outcome { status: Some(status.as_u16()), error, duration_ms, retry_after }
        }
        Err(error) => Outcome { status: None, error: Some(error), duration_ms, retry_after: None },
    }
}

/// POSTs the message, signed now; the error says why nothing was answered.
async fn send(client: &reqwest::Client, allow_loopback: bool, delivery: &Claimed) -> Result<reqwest::Response, String> {
    // Again at each attempt: the rules may have tightened since the endpoint was created, and an
    // IP-literal host never reaches the resolver's check.
    let url = address::check_url(&delivery.url, allow_loopback).map_err(|e| e.to_string())?;
    let timestamp = Utc::now().timestamp();
    let mut secrets = vec![delivery.secret.as_str()];
    secrets.extend(delivery.previous_secret.as_deref());
    let signature =
        sign::signature_header(&secrets, &delivery.message_id, timestamp, &delivery.body).map_err(|e| e.to_string())?;
    client
        .post(url)
        .header("webhook-id", &delivery.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header(CONTENT_TYPE, "application/json")
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|error| describe(&error))
}

/// An error with its causes (reqwest's own message hides the resolver's refusal in its source).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// Where a delivery goes after an attempt.
#[derive(Debug, PartialEq)]
enum Next {
    Delivered,
    Failed,
    RetryIn(Duration),
}

fn next_step(attempts: i32, max_attempts: i32, outcome: &Outcome) -> Next {
    if outcome.delivered() {
        Next::Delivered
    } else if outcome.gone() || attempts >= max_attempts {
        Next::Failed
    } else {
        Next::RetryIn(retry_delay(attempts, outcome.retry_after))
    }
}

/// The wait after failed attempt number `attempts` (1 for the first): the schedule's, scaled,
/// with jitter, or longer when the receiver asked for it (up to the schedule's longest wait).
fn retry_delay(attempts: i32, retry_after: Option<Duration>) -> Duration {
    let index = usize::try_from(attempts - 1).unwrap_or(0).min(RETRY_SCHEDULE.len() - 1);
    let jitter = f64::from(u16::from_le_bytes(crate::auth::secret::random_bytes::<2>())) / f64::from(u16::MAX) * JITTER;
    let scheduled = RETRY_SCHEDULE[index].mul_f64(retry_scale() * (1.0 + jitter));
    let longest = RETRY_SCHEDULE[RETRY_SCHEDULE.len() - 1];
    retry_after.map_or(scheduled, |asked| scheduled.max(asked.min(longest)))
}

/// Logs the attempt and moves the delivery on, in one transaction (nothing, when the endpoint
/// was deleted meanwhile). A 410 disables the endpoint and fails its other pending deliveries.
async fn record(db: &PgPool, delivery: &Claimed, outcome: &Outcome) -> Result<(), sqlx::Error> {
    let next = next_step(delivery.attempts, delivery.max_attempts, outcome);
    let (state, delay) = match &next {
        Next::Delivered => ("delivered", 0.0),
        Next::Failed => ("failed", 0.0),
        Next::RetryIn(delay) => ("pending", delay.as_secs_f64()),
    };
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, org_id, endpoint_id, message_id, attempt, manual, status_code, error, duration_ms)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1)",
    )
    .bind(delivery.id)
    .bind(delivery.org_id)
    .bind(delivery.endpoint_id)
    .bind(&delivery.message_id)
    .bind(delivery.attempts)
    .bind(delivery.manual)
    .bind(outcome.status.map(i32::from))
    .bind(&outcome.error)
    .bind(outcome.duration_ms)
    .execute(&mut *tx)
    .await?;
    // `attempts = $4`: only while this process still holds the claim.
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $2, next_attempt_at = now() + make_interval(secs => $3),
             claimed_until = NULL, manual = false
         WHERE id = $1 AND attempts = $4",
    )
    .bind(delivery.id)
    .bind(state)
    .bind(delay)
    .bind(delivery.attempts)
    .execute(&mut *tx)
    .await?;
    if outcome.gone() {
        sqlx::query("UPDATE webhook_endpoints SET enabled = false WHERE id = $1")
            .bind(delivery.endpoint_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE webhook_deliveries SET state = 'failed' WHERE endpoint_id = $1 AND state = 'pending'")
            .bind(delivery.endpoint_id)
            .execute(&mut *tx)
            .await?;
        tracing::info!(endpoint_id = %delivery.endpoint_id, "webhook endpoint answered 410 Gone; disabled");
    }
    tx.commit().await?;
    tracing::debug!(delivery_id = %delivery.id, message_id = delivery.message_id, attempt = delivery.attempts, ?next, "webhook attempt");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Outcome {
        Outcome { status: Some(status), error: None, duration_ms: 1, retry_after: None }
    }

    #[test]
    fn the_schedule_spans_more_than_a_day() {
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert!(total > Duration::from_secs(24 * 3600), "{total:?}");
        assert_eq!(MAX_ATTEMPTS, 8);
    }

    #[test]
    fn only_2xx_delivers_and_the_last_attempt_fails() {
        assert_eq!(next_step(1, MAX_ATTEMPTS, &answered(204)), Next::Delivered);
        assert!(matches!(next_step(1, MAX_ATTEMPTS, &answered(500)), Next::RetryIn(_)));
        assert!(matches!(next_step(1, MAX_ATTEMPTS, &answered(301)), Next::RetryIn(_)));
        let unreachable = Outcome { status: None, error: Some("refused".into()), duration_ms: 1, retry_after: None };
        assert!(matches!(next_step(3, MAX_ATTEMPTS, &unreachable), Next::RetryIn(_)));
        assert_eq!(next_step(MAX_ATTEMPTS, MAX_ATTEMPTS, &answered(500)), Next::Failed);
        assert_eq!(next_step(1, MAX_ATTEMPTS, &answered(410)), Next::Failed);
    }

    #[test]
    fn retries_follow_the_schedule_with_a_little_jitter() {
        let scale = retry_scale();
        for (attempt, expected) in (1..).zip(RETRY_SCHEDULE) {
            let delay = retry_delay(attempt, None).as_secs_f64();
            let base = expected.as_secs_f64() * scale;
            assert!(delay >= base && delay <= base * (1.0 + JITTER) + 1e-9, "attempt {attempt}: {delay} vs {base}");
        }
        let asked = retry_delay(1, Some(Duration::from_secs(3600)));
        assert!(asked >= Duration::from_secs(3600).min(RETRY_SCHEDULE[6]));
    }
}
