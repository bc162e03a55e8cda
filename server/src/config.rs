//! The server's configuration, read once from the environment (what `scripts/services.sh start`
//! prints, plus secrets and limits).

use std::time::Duration;

use crate::billing::prices::PriceTable;
use crate::payments::stripe::STRIPE_API_BASE;
pub use kiln_api::limits::Limits;

/// Everything `serve` reads at start-up. Secrets are held here and never logged: `Debug` is
/// written by hand to leave them out.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub s3: S3Config,
    /// Signs access tokens (HS256). Production sets `KILN_JWT_SECRET`; without it a random
    /// secret is drawn at start, which logs every user out on restart.
    pub jwt_secret: Vec<u8>,
    /// Shared by the server and its workers (`KILN_WORKER_TOKEN`).
    pub worker_token: String,
    /// The address clients reach the API at, for links in pages and webhooks.
    pub public_url: String,
    /// Lets webhook endpoints be `http://` on loopback (tests, local development only).
    pub webhooks_allow_loopback: bool,
    /// Browser origins allowed to call the API (`KILN_CORS_ORIGINS`, comma-separated).
    pub cors_origins: Vec<String>,
    pub limits: Limits,
    pub queue: QueueConfig,
    /// Rate limits, trusted proxies and the `/metrics` token.
    pub operations: OperationsConfig,
    /// Prices and Stripe.
    pub billing: BillingConfig,
}

/// Prices, and how the server reaches Stripe.
#[derive(Clone)]
pub struct BillingConfig {
    pub prices: PriceTable,
    /// `KILN_STRIPE_SECRET_KEY`; without it Checkout answers 503 `payments_unavailable`.
    pub stripe_secret_key: Option<String>,
    /// `KILN_STRIPE_WEBHOOK_SECRET`: the endpoint's signing secret (`whsec_…`), or several
    /// separated by commas while one is rolled over. Without one, webhooks are refused.
    pub stripe_webhook_secrets: Vec<String>,
    /// `KILN_STRIPE_API_BASE`: Stripe's API (tests point it at a stub).
    pub stripe_api_base: String,
    /// `KILN_SIGNUP_CREDITS`: credits every new account is granted (a ledger grant), to try the
    /// service on. Default 0.
    pub signup_credits: i64,
}

impl BillingConfig {
    /// The default price table, no Stripe: for tests and tools that build a [`Config`] by hand.
    pub fn without_stripe() -> Self {
        BillingConfig {
            prices: PriceTable::default(),
            stripe_secret_key: None,
            stripe_webhook_secrets: Vec::new(),
            stripe_api_base: STRIPE_API_BASE.to_string(),
            signup_credits: 0,
        }
    }

    /// Reads `KILN_PRICES` (a JSON file of the price table; default: [`PriceTable::default`]) and
    /// the Stripe variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let prices = match std::env::var("KILN_PRICES") {
            Ok(path) => {
                let invalid = |problem: String| ConfigError::Invalid { name: "KILN_PRICES", problem };
                let text = std::fs::read_to_string(&path).map_err(|e| invalid(format!("{e} (reading {path})")))?;
                let table: PriceTable = serde_json::from_str(&text).map_err(|e| invalid(format!("{e} (in {path})")))?;
                table.validate().map_err(|e| invalid(format!("{e} (in {path})")))?;
                table
            }
            Err(_) => PriceTable::default(),
        };
        Ok(BillingConfig {
            prices,
            stripe_secret_key: std::env::var("KILN_STRIPE_SECRET_KEY").ok().filter(|k| !k.is_empty()),
            stripe_webhook_secrets: var_or("KILN_STRIPE_WEBHOOK_SECRET", String::new())?
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            stripe_api_base: var_or("KILN_STRIPE_API_BASE", STRIPE_API_BASE.to_string())?,
            signup_credits: match var_or("KILN_SIGNUP_CREDITS", 0_i64)? {
                n if n >= 0 => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "KILN_SIGNUP_CREDITS",
                        problem: "must not be negative".into(),
                    });
                }
            },
        })
    }
}

impl std::fmt::Debug for BillingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BillingConfig")
            .field("prices", &self.prices)
            .field("stripe_secret_key", &self.stripe_secret_key.as_ref().map(|_| "<set>"))
            .field("stripe_webhook_secrets", &self.stripe_webhook_secrets.len())
            .field("stripe_api_base", &self.stripe_api_base)
            .field("signup_credits", &self.signup_credits)
            .finish()
    }
}

#[derive(Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// How long a lease lasts without a heartbeat before the job goes back to the queue.
    pub lease: Duration,
    /// Attempts before a job whose workers keep vanishing fails with `worker_lost`.
    pub max_attempts: i32,
}

/// The operations layer's knobs: rate limits, the addresses of trusted proxies and the token
/// `/metrics` asks for.
#[derive(Clone)]
pub struct OperationsConfig {
    /// Per credential (API key, access token): `KILN_RATE_PER_KEY`, `KILN_BURST_PER_KEY`.
    pub per_key: RateLimit,
    /// Per client address: `KILN_RATE_PER_IP`, `KILN_BURST_PER_IP`.
    pub per_ip: RateLimit,
    /// Proxies whose `X-Forwarded-For` is believed (`KILN_TRUSTED_PROXY`, comma-separated
    /// addresses). Empty: the connection's peer is the client, whatever the header says.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A bearer token `/metrics` requires (`KILN_METRICS_TOKEN`). Without one `/metrics` is open,
    /// so keep it off the public network.
    pub metrics_token: Option<String>,
}

/// A sustained rate with a burst: `burst` requests at once, then one every `1 / per_second`
/// seconds. A rate of 0 turns the limit off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit { per_second: 0.0, burst: 0 };

    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }
}

impl std::fmt::Debug for OperationsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationsConfig")
            .field("per_key", &self.per_key)
            .field("per_ip", &self.per_ip)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl OperationsConfig {
    /// Limits off, no proxy trusted, `/metrics` open: for tests and tools that build a
    /// [`Config`] by hand.
    pub fn unlimited() -> Self {
        OperationsConfig {
            per_key: RateLimit::OFF,
            per_ip: RateLimit::OFF,
            trusted_proxies: Vec::new(),
            metrics_token: None,
        }
    }

    /// Reads `KILN_RATE_PER_KEY` / `KILN_BURST_PER_KEY` (default 20 requests a second, bursts of
    /// 40: a client polling jobs or submitting a batch stays well under it),
    /// `KILN_RATE_PER_IP` / `KILN_BURST_PER_IP` (default 50 and 100: several users behind one
    /// NAT), `KILN_TRUSTED_PROXY` and `KILN_METRICS_TOKEN`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let trusted_proxies = var_or("KILN_TRUSTED_PROXY", String::new())?
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse().map_err(|_| ConfigError::Invalid {
                    name: "KILN_TRUSTED_PROXY",
                    problem: format!("{a} is not an IP address"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(OperationsConfig {
            per_key: rate_limit("KILN_RATE_PER_KEY", "KILN_BURST_PER_KEY", 20.0)?,
            per_ip: rate_limit("KILN_RATE_PER_IP", "KILN_BURST_PER_IP", 50.0)?,
            trusted_proxies,
            metrics_token: std::env::var("KILN_METRICS_TOKEN").ok().filter(|t| !t.is_empty()),
        })
    }
}

/// A rate from `rate_name` (requests a second, 0 for none) and its burst from `burst_name`
/// (default: two seconds' worth).
fn rate_limit(rate_name: &'static str, burst_name: &'static str, default: f64) -> Result<RateLimit, ConfigError> {
    let per_second: f64 = var_or(rate_name, default)?;
    if !per_second.is_finite() || per_second < 0.0 {
        return Err(ConfigError::Invalid {
            name: rate_name,
            problem: "must be a number of requests a second, 0 or more".into(),
        });
    }
    if per_second == 0.0 {
        return Ok(RateLimit::OFF);
    }
    let burst: u32 = var_or(burst_name, (per_second * 2.0).ceil().min(f64::from(u32::MAX)) as u32)?;
    if burst == 0 {
        return Err(ConfigError::Invalid { name: burst_name, problem: "must be at least 1".into() });
    }
    Ok(RateLimit { per_second, burst })
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("s3_endpoint", &self.s3.endpoint)
            .field("s3_bucket", &self.s3.bucket)
            .field("public_url", &self.public_url)
            .field("webhooks_allow_loopback", &self.webhooks_allow_loopback)
            .field("cors_origins", &self.cors_origins)
            .field("limits", &self.limits)
            .field("queue", &self.queue)
            .field("operations", &self.operations)
            .field("billing", &self.billing)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is not valid: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// Shortest shared secret accepted (the worker token, the JWT key): 256 bits, as hex or text.
const MIN_SECRET_BYTES: usize = 32;

/// S3 refuses parts under 5 MiB (except a file's last).
const MIN_PART_BYTES: u64 = 5 << 20;

fn at_least(name: &'static str, value: u64, least: u64, unit: &str) -> Result<(), ConfigError> {
    if value >= least {
        Ok(())
    } else {
        Err(ConfigError::Invalid { name, problem: format!("{value} is under the least allowed, {least} {unit}") })
    }
}

fn var(name: &'static str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| ConfigError::Missing(name))
}

fn var_or<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text.parse().map_err(|e: T::Err| ConfigError::Invalid { name, problem: e.to_string() }),
        Err(_) => Ok(default),
    }
}

impl S3Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(S3Config {
            endpoint: var("KILN_S3_ENDPOINT")?,
            bucket: var("KILN_S3_BUCKET")?,
            region: var_or("KILN_S3_REGION", "us-east-1".to_string())?,
            access_key: var("KILN_S3_ACCESS_KEY")?,
            secret_key: var("KILN_S3_SECRET_KEY")?,
        })
    }
}

impl Config {
    /// Reads the environment. `KILN_LIMIT_*` variables override the published limits (tests use
    /// small ones).
    pub fn from_env() -> Result<Self, ConfigError> {
        let jwt_secret = match std::env::var("KILN_JWT_SECRET") {
            Ok(secret) if secret.len() >= MIN_SECRET_BYTES => secret.into_bytes(),
            Ok(_) => {
                return Err(ConfigError::Invalid { name: "KILN_JWT_SECRET", problem: "shorter than 32 bytes".into() });
            }
            Err(_) => {
                tracing::warn!("KILN_JWT_SECRET is not set: access tokens will not survive a restart");
                let mut secret = vec![0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| ConfigError::Invalid {
                    name: "KILN_JWT_SECRET",
                    problem: format!("no random secret could be drawn: {e}"),
                })?;
                secret
            }
        };
        let defaults = Limits::default();
        let worker_token = var("KILN_WORKER_TOKEN")?;
        at_least("KILN_WORKER_TOKEN", worker_token.len() as u64, MIN_SECRET_BYTES as u64, "bytes long")?;
        let part_bytes = var_or("KILN_LIMIT_PART_BYTES", defaults.part_bytes)?;
        at_least("KILN_LIMIT_PART_BYTES", part_bytes, MIN_PART_BYTES, "bytes (S3's smallest part)")?;
        let lease_seconds = var_or("KILN_LEASE_SECONDS", 60)?;
        at_least("KILN_LEASE_SECONDS", lease_seconds, 1, "second")?;
        let max_attempts: i32 = var_or("KILN_MAX_ATTEMPTS", 3)?;
        at_least("KILN_MAX_ATTEMPTS", u64::try_from(max_attempts).unwrap_or(0), 1, "attempt")?;
        Ok(Config {
            database_url: var("DATABASE_URL")?,
            s3: S3Config::from_env()?,
            jwt_secret,
            worker_token,
            public_url: var_or("KILN_PUBLIC_URL", "http://127.0.0.1:8080".to_string())?,
            webhooks_allow_loopback: var_or("KILN_WEBHOOKS_ALLOW_LOOPBACK", false)?,
            cors_origins: var_or("KILN_CORS_ORIGINS", String::new())?
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(String::from)
                .collect(),
            limits: Limits {
                max_files: var_or("KILN_LIMIT_MAX_FILES", defaults.max_files)?,
                max_file_bytes: var_or("KILN_LIMIT_MAX_FILE_BYTES", defaults.max_file_bytes)?,
                max_upload_bytes: var_or("KILN_LIMIT_MAX_UPLOAD_BYTES", defaults.max_upload_bytes)?,
                part_bytes,
                ..defaults
            },
            queue: QueueConfig { lease: Duration::from_secs(lease_seconds), max_attempts },
            operations: OperationsConfig::from_env()?,
            billing: BillingConfig::from_env()?,
        })
    }
}
