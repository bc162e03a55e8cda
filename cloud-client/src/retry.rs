//! When and how long to wait before trying a request again: capped exponential backoff with full
//! jitter (AWS's "Exponential Backoff And Jitter": a random wait between zero and the cap, so
//! clients that failed together do not come back together), a server's `Retry-After` taking the
//! place of the guess, and which statuses are worth another try.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

/// How many times a request is tried, and the backoff between tries.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1: never retried).
    pub attempts: u32,
    /// The cap on the wait after the first failure; it doubles with each further failure.
    pub base: Duration,
    /// The most any wait can be, `Retry-After` included.
    pub max: Duration,
}

/// Five tries: four waits whose caps are 0.5, 1, 2 and 4 s (7.5 s at most, about 4 s on
/// average), which rides over a server restart or a dropped connection while a person watching
/// the CLI waits seconds, not minutes.
const DEFAULT_ATTEMPTS: u32 = 5;
/// The first wait's cap: half a second, longer than a loopback or LAN round trip, short enough
/// that one lost connection costs little.
const DEFAULT_BASE: Duration = Duration::from_millis(500);
/// The longest wait: 30 s, what a rate-limited client is asked to wait in the worst case here
/// (the server's `Retry-After` counts whole seconds until its bucket refills); beyond that a
/// person would rather see the error.
const DEFAULT_MAX: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: DEFAULT_ATTEMPTS, base: DEFAULT_BASE, max: DEFAULT_MAX }
    }
}

impl RetryPolicy {
    /// The wait after try number `attempt` (1 for the first) failed: the server's `retry_after`
    /// when it gave one (at most `max`), otherwise a uniformly random wait in
    /// `[0, min(max, base × 2^(attempt−1))]`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max);
        }
        self.cap(attempt).mul_f64(random_fraction())
    }

    /// The ceiling of the wait after try number `attempt` failed.
    fn cap(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// Worth trying again: 429 (rate limited) and 5xx, except 501 (the server does not implement it
/// and never will on a retry).
pub fn retryable_status(status: u16) -> bool {
    status == 429 || ((500..=599).contains(&status) && status != 501)
}

/// A `Retry-After` value (RFC 9110 §10.2.3): whole seconds, or an HTTP date, taken relative to
/// `now` (a date already past: no wait). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    let now = DateTime::<Utc>::from(now);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// A uniformly random number in `[0, 1)`, from a version-4 UUID's random bits (the operating
/// system's generator, which `uuid` already uses for idempotency keys; no second RNG crate). Its
/// low 62 bits are random (the two above them are the variant's), of which 53 make the fraction.
fn random_fraction() -> f64 {
    let random = uuid::Uuid::new_v4().as_u128() as u64 & ((1 << 62) - 1);
    (random >> 9) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { attempts: 5, base: Duration::from_millis(100), max: Duration::from_secs(1) }
    }

    #[test]
    fn waits_stay_under_a_cap_that_doubles_up_to_max() {
        let policy = policy();
        for (attempt, cap_ms) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            assert_eq!(policy.cap(attempt), Duration::from_millis(cap_ms), "attempt {attempt}");
            let waits: Vec<Duration> = (0..200).map(|_| policy.delay(attempt, None)).collect();
            assert!(waits.iter().all(|w| *w <= Duration::from_millis(cap_ms)), "attempt {attempt}: {waits:?}");
            // Full jitter spreads the waits over the whole range, not around the cap.
            let below_half = waits.iter().filter(|w| **w < Duration::from_millis(cap_ms / 2)).count();
            assert!((40..=160).contains(&below_half), "attempt {attempt}: {below_half} of 200 below half the cap");
        }
    }

    #[test]
    fn retry_after_replaces_the_guess_up_to_max() {
        let policy = policy();
        assert_eq!(policy.delay(1, Some(Duration::from_millis(700))), Duration::from_millis(700));
        assert_eq!(policy.delay(3, Some(Duration::from_secs(120))), Duration::from_secs(1));
        assert_eq!(policy.delay(2, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:48:37 GMT", now), Some(Duration::ZERO), "past: no wait");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        for status in [429, 500, 502, 503, 504, 599] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 303, 400, 401, 402, 404, 409, 422, 501] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
