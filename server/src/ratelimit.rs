//! Per-credential and per-client-address rate limits, answered with 429 `rate_limited` and
//! `Retry-After`.
//!
//! Each limit is a GCRA (generic cell rate algorithm, the token bucket written as one number):
//! per key the theoretical arrival time of the next request, which may run ahead of the clock by
//! `burst` requests' worth before requests are refused. Keys are a hash of the `Authorization`
//! header (an API key or an access token, never looked up: limiting costs no database round trip)
//! and the client's address (an IPv6 client by its /64, which one host usually holds whole).
//!
//! The buckets live in this process's memory: with N server processes behind a balancer a
//! client gets up to N times the configured rate. An exact global limit would need a shared
//! store (PostgreSQL or Redis); the per-process limit is there to stop floods, not to meter.
//!
//! `/healthz`, `/readyz` and `/metrics` are exempt (probes and scrapes must not be refused), and
//! so are the workers, which share the server's own `KILN_WORKER_TOKEN`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{OperationsConfig, RateLimit};
use crate::error::ApiError;

/// Paths no limit applies to.
const EXEMPT: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// Buckets kept at most: about 64 bytes each, so a few MiB. Past it the idle ones are swept at
/// once, and if a flood of distinct clients still fills it the map starts over (a moment of no
/// limit rather than unbounded memory).
const MAX_BUCKETS: usize = 100_000;

/// How often idle buckets (those whose arrival time the clock has passed, which are the same as
/// new ones) are dropped.
const SWEEP_SECONDS: f64 = 10.0;

/// One limit: requests arrive every `interval` seconds, and may run `tolerance` seconds ahead.
#[derive(Clone, Copy, Debug)]
struct Gcra {
    interval: f64,
    tolerance: f64,
}

impl Gcra {
    fn new(limit: RateLimit) -> Option<Gcra> {
        if limit.is_off() {
            return None;
        }
        let interval = 1.0 / limit.per_second;
        Some(Gcra { interval, tolerance: interval * f64::from(limit.burst.max(1) - 1) })
    }

    /// The bucket's next arrival time if a request at `now` conforms, else the seconds to wait.
    fn admit(self, arrival: Option<f64>, now: f64) -> Result<f64, f64> {
        let arrival = arrival.unwrap_or(now).max(now);
        let wait = arrival - now - self.tolerance;
        if wait > 0.0 { Err(wait) } else { Ok(arrival + self.interval) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    Credential(u64),
    Address(IpAddr),
}

struct Buckets {
    arrivals: HashMap<Bucket, f64>,
    last_sweep: f64,
}

/// Both limits and their buckets.
pub struct RateLimiter {
    per_key: Option<Gcra>,
    per_ip: Option<Gcra>,
    trusted_proxies: Vec<IpAddr>,
    buckets: Mutex<Buckets>,
    /// Seeds the credential hashes, so bucket keys cannot be aimed at from outside.
    hasher: RandomState,
    /// Workers are the service's own machines: their calls are never limited.
    worker_token: String,
    epoch: Instant,
}

impl RateLimiter {
    pub fn new(config: &OperationsConfig, worker_token: &str) -> RateLimiter {
        RateLimiter {
            worker_token: worker_token.to_owned(),
            per_key: Gcra::new(config.per_key),
            per_ip: Gcra::new(config.per_ip),
            trusted_proxies: config.trusted_proxies.clone(),
            buckets: Mutex::new(Buckets { arrivals: HashMap::new(), last_sweep: 0.0 }),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Admits a request from `credential` (the `Authorization` header's bytes) and `address`,
    /// or answers the whole seconds to wait. A refused request uses up neither bucket.
    pub fn check(&self, credential: Option<&[u8]>, address: Option<IpAddr>) -> Result<(), u64> {
        let now = self.epoch.elapsed().as_secs_f64();
        let checks = [
            self.per_key.zip(credential.map(|c| Bucket::Credential(self.hasher.hash_one(c)))),
            self.per_ip.zip(address.map(|a| Bucket::Address(bucket_address(a)))),
        ];
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets.sweep(now);
        let mut admitted = [None, None];
        for (slot, (gcra, bucket)) in admitted.iter_mut().zip(checks.into_iter().flatten()) {
            let next = gcra.admit(buckets.arrivals.get(&bucket).copied(), now).map_err(retry_after)?;
            *slot = Some((bucket, next));
        }
        buckets.arrivals.extend(admitted.into_iter().flatten());
        Ok(())
    }

    /// The client's address: the connection's peer, or when that peer is a trusted proxy the
    /// right-most `X-Forwarded-For` entry that is not one (each proxy appends the address it saw;
    /// entries further left are whatever the client sent).
    pub fn client_address(&self, request: &Request) -> Option<IpAddr> {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>()?.0.ip().to_canonical();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for hop in forwarded.iter().rev() {
            let Ok(address) = hop.trim().parse::<IpAddr>() else { break };
            client = address.to_canonical();
            if !self.trusted_proxies.contains(&client) {
                break;
            }
        }
        Some(client)
    }
}

impl Buckets {
    fn sweep(&mut self, now: f64) {
        if now - self.last_sweep < SWEEP_SECONDS && self.arrivals.len() < MAX_BUCKETS {
            return;
        }
        self.last_sweep = now;
        self.arrivals.retain(|_, arrival| *arrival > now);
        if self.arrivals.len() >= MAX_BUCKETS {
            tracing::warn!(buckets = self.arrivals.len(), "rate limiter full of active clients: starting over");
            self.arrivals.clear();
        }
    }
}

/// Whole seconds for `Retry-After`, at least 1 (0 would invite an immediate retry).
fn retry_after(wait: f64) -> u64 {
    (wait.ceil() as u64).max(1)
}

/// IPv6 clients by their /64: one host is usually given a whole /64 and could otherwise rotate
/// through it.
fn bucket_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

/// The middleware: refuses with 429 `rate_limited` and `Retry-After` over either limit.
pub async fn limit(State(limiter): State<Arc<RateLimiter>>, request: Request, next: Next) -> Response {
    if EXEMPT.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    if crate::auth::bearer_token(request.headers())
        .is_some_and(|t| crate::auth::secret::matches(t, &limiter.worker_token))
    {
        return next.run(request).await;
    }
    let credential = request.headers().get(AUTHORIZATION).map(|value| value.as_bytes());
    match limiter.check(credential, limiter.client_address(&request)) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => ApiError::RateLimited { retry_after }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_key: RateLimit, per_ip: RateLimit) -> RateLimiter {
        RateLimiter::new(&OperationsConfig { per_key, per_ip, ..OperationsConfig::unlimited() }, "worker")
    }

    #[test]
    fn a_burst_passes_then_requests_wait_one_interval() {
        let gcra = Gcra::new(RateLimit { per_second: 2.0, burst: 3 }).unwrap();
        let mut arrival = None;
        for _ in 0..3 {
            arrival = Some(gcra.admit(arrival, 10.0).unwrap());
        }
        let wait = gcra.admit(arrival, 10.0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        assert!(gcra.admit(arrival, 10.5).is_ok());
        assert_eq!(retry_after(0.5), 1);
        assert_eq!(retry_after(2.1), 3);
    }

    #[test]
    fn keys_and_addresses_are_limited_separately_and_a_refusal_costs_nothing() {
        let limiter = limiter(RateLimit { per_second: 0.001, burst: 2 }, RateLimit { per_second: 0.001, burst: 3 });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.check(Some(b"Bearer a"), Some(ip)).is_ok());
        assert!(limiter.check(Some(b"Bearer a"), Some(ip)).is_ok());
        // Key `a` is spent; its refusal must not use up the address's third request.
        assert!(limiter.check(Some(b"Bearer a"), Some(ip)).unwrap_err() > 100);
        assert!(limiter.check(Some(b"Bearer b"), Some(ip)).is_ok());
        assert!(limiter.check(None, Some(ip)).is_err());
        assert!(limiter.check(None, Some("192.0.2.2".parse().unwrap())).is_ok());
    }

    #[test]
    fn off_limits_admit_everything() {
        let limiter = limiter(RateLimit::OFF, RateLimit::OFF);
        for _ in 0..1000 {
            assert!(limiter.check(Some(b"Bearer a"), Some("192.0.2.1".parse().unwrap())).is_ok());
        }
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = bucket_address("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = bucket_address("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, bucket_address("2001:db8:1:3::1".parse().unwrap()));
    }

    fn request(peer: &str, forwarded: Option<&str>) -> Request {
        let mut request = Request::new(axum::body::Body::empty());
        request.extensions_mut().insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 4000)));
        if let Some(forwarded) = forwarded {
            request.headers_mut().insert("x-forwarded-for", forwarded.parse().unwrap());
        }
        request
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let untrusting = limiter(RateLimit::OFF, RateLimit::OFF);
        let spoofed = request("198.51.100.7", Some("203.0.113.1"));
        assert_eq!(untrusting.client_address(&spoofed), Some("198.51.100.7".parse().unwrap()));

        let proxies = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let trusting =
            RateLimiter::new(&OperationsConfig { trusted_proxies: proxies, ..OperationsConfig::unlimited() }, "worker");
        // The client forged the left-most entry; the proxies appended the real one and each other.
        let chained = request("10.0.0.1", Some("6.6.6.6, 203.0.113.9, 10.0.0.2"));
        assert_eq!(trusting.client_address(&chained), Some("203.0.113.9".parse().unwrap()));
        let direct = request("198.51.100.7", Some("203.0.113.1"));
        assert_eq!(trusting.client_address(&direct), Some("198.51.100.7".parse().unwrap()));
        let mapped = request("::ffff:198.51.100.7", None);
        assert_eq!(untrusting.client_address(&mapped), Some("198.51.100.7".parse().unwrap()));
    }
}
