//! The server's integration-test harness: a fresh database per test on the PostgreSQL that
//! `scripts/services.sh start` runs, the SeaweedFS bucket beside it, and the real application
//! served on an ephemeral loopback port, background loops included.
//!
//! Without `DATABASE_URL` (services not started) a test prints SKIPPED and passes, unless
//! `KILN_REQUIRE_SERVICES=1` (set by `scripts/test.sh`), where it fails.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kiln_server::config::{BillingConfig, Config, Limits, OperationsConfig, QueueConfig, S3Config};
use kiln_server::state::AppState;
use kiln_server::storage::Storage;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

pub struct TestServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    pub db: PgPool,
    pub state: AppState,
    pub http: reqwest::Client,
}

/// The services' environment, or None (after saying so) when they are not running.
pub fn services() -> Option<(String, S3Config)> {
    let required = std::env::var("KILN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
    match (std::env::var("DATABASE_URL"), S3Config::from_env()) {
        (Ok(url), Ok(s3)) => Some((url, s3)),
        _ if required => panic!(
            "KILN_REQUIRE_SERVICES=1 but DATABASE_URL or KILN_S3_* are not set: run eval \"$(scripts/services.sh start)\""
        ),
        _ => {
            eprintln!("SKIPPED: PostgreSQL and S3 are not configured (eval \"$(scripts/services.sh start)\" first)");
            None
        }
    }
}

/// Small limits so tests reach them with small files.
pub fn test_limits() -> Limits {
    Limits { part_bytes: 5 << 20, ..Limits::default() }
}

pub struct Options {
    pub limits: Limits,
    pub lease: Duration,
    pub max_attempts: i32,
    /// Rate limits (off unless a test sets them), trusted proxies, the `/metrics` token.
    pub operations: OperationsConfig,
    /// Prices and Stripe (none unless a test points it at the stub).
    pub billing: BillingConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: test_limits(),
            lease: Duration::from_secs(60),
            max_attempts: 3,
            operations: OperationsConfig::unlimited(),
            // Every account starts with credits, so tests about other things can run jobs; the
            // billing tests set 0 and move exact amounts.
            billing: BillingConfig { signup_credits: 100_000, ..BillingConfig::without_stripe() },
        }
    }
}

pub const WORKER_TOKEN: &str = "kiln-test-worker-token-0123456789";

impl TestServer {
    pub async fn start() -> Option<TestServer> {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Option<TestServer> {
        let _ = rustls_provider();
        let (admin_url, s3) = services()?;
        let admin = PgPool::connect(&admin_url).await.expect("connect to DATABASE_URL");
        let name = format!("kiln_test_{}", Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create database");
        let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL parses");
        url.set_path(&name);
        let config = Config {
            database_url: url.to_string(),
            s3: s3.clone(),
            jwt_secret: b"test-jwt-secret-of-at-least-32-bytes!!".to_vec(),
            worker_token: WORKER_TOKEN.into(),
            public_url: String::new(),
            webhooks_allow_loopback: true,
            cors_origins: vec!["https://app.example".into()],
            limits: options.limits,
            queue: QueueConfig { lease: options.lease, max_attempts: options.max_attempts },
            operations: options.operations,
            billing: options.billing,
        };
        let db = kiln_server::db::connect(&config.database_url).await.expect("connect to the test database");
        kiln_server::db::migrate(&db).await.expect("migrations apply");
        let storage = Storage::new(&s3, Duration::from_secs(config.limits.presign_seconds)).expect("storage");
        storage.ensure_bucket().await.expect("bucket");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let public_url = format!("http://{address}");
        let config = Config { public_url: public_url.clone(), ..config };
        let ops = Arc::new(kiln_server::ops::Ops::new(&config.operations, &config.worker_token));
        let payments = kiln_server::state::payments(&config.billing).expect("payments");
        let state = AppState { db: db.clone(), storage, ops, payments, config: Arc::new(config) };
        kiln_server::tasks::spawn(&state);
        let app = kiln_server::app::app(state.clone());
        tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            let _ = axum::serve(listener, service).await;
        });
        Some(TestServer { url: public_url, db, state, http: reqwest::Client::new() })
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Signs a new user up; returns (access token, org id, refresh token).
    pub async fn signup(&self, email: &str) -> Account {
        let response = self
            .http
            .post(self.at("/v1/auth/signup"))
            .json(&json!({"email": email, "password": "a long enough password"}))
            .send()
            .await
            .expect("signup");
        assert_eq!(response.status(), 201, "signup: {:?}", response.text().await);
        let body: Value = response.json().await.expect("signup json");
        Account {
            access_token: body["access_token"].as_str().expect("access_token").into(),
            refresh_token: body["refresh_token"].as_str().expect("refresh_token").into(),
            org_id: body["org_id"].as_str().expect("org_id").parse().expect("uuid"),
        }
    }

    /// Creates an API key with `scopes` in `mode` and returns its secret.
    pub async fn api_key(&self, account: &Account, scopes: &[&str], mode: &str) -> String {
        let response = self
            .http
            .post(self.at("/v1/api-keys"))
            .bearer_auth(&account.access_token)
            .json(&json!({"name": "test key", "scopes": scopes, "mode": mode}))
            .send()
            .await
            .expect("create key");
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("key json");
        body["key"].as_str().expect("key").into()
    }
}

pub struct Account {
    pub access_token: String,
    pub refresh_token: String,
    pub org_id: Uuid,
}

fn rustls_provider() -> bool {
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    provider.install_default().is_ok()
}

/// The `error.code` of a JSON error response.
pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("<no code>").to_string())
}
