//! The account side of the hosted API and of the real `kiln` binary (the binary as `cloud_cli`
//! finds it: `$KILN_BIN`, or `target/debug/kiln` from `cargo build -p kiln`):
//! - `GET /v1/me` for an access token and for an API key: the user, role, organisation, and the
//!   credential's kind, never a secret;
//! - `kiln keys create` prints a key once, which then works as `KILN_API_KEY` for `kiln whoami`;
//!   `kiln keys list` shows it without its secret; `kiln keys revoke <prefix>` and the key is
//!   refused (exit 4);
//! - `kiln whoami` with a login: the user, role and organisation's name;
//! - `kiln credits buy`: the CLI creates a Checkout Session (the Stripe stub of
//!   `billing_stripe`), "opens" it through `BROWSER` (a script that records the URL), and waits;
//!   the test plays Stripe and posts the signed `checkout.session.completed`; the CLI then prints
//!   the new balance. An unknown pack (2), an API key (4) and a payment that never comes (1, "may
//!   still land") fail clearly.
//!
//! The CLI logs in through a credentials file (the keyring's fallback, `XDG_CONFIG_HOME`), with
//! the session bus pointed nowhere so no keyring of the machine is used.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::cloud_cli::{COMMAND_TIMEOUT, Run, finish, kiln, kiln_bin, scratch, spawn_kiln};
use crate::common::{Account, Options, TestServer, error_code};
use crate::support::get;
use crate::support::stripe::{self as stub, StripeStub};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use kiln_cloud::login::{self, CLI_CLIENT_ID};
use kiln_cloud::token_store::{StoredTokens, TokenStore};
use kiln_cloud::{Client, ClientConfig};
use kiln_server::config::BillingConfig;
use serde_json::{Value, json};
use url::Url;

/// The Stripe webhook's signing secret in these tests.
const WEBHOOK_SECRET: &str = "whsec_kiln_cloud_account_0123456789abcdef";

/// The organisation's name, set in the database so `whoami` shows what the server holds, not the
/// signup's default (the email).
const ORG_NAME: &str = "Acme Scans";

/// A session bus address where nothing listens: the CLI finds no keyring and uses the file.
const NO_BUS: &str = "unix:path=/nonexistent/kiln-test-bus";

/// `pack_100` of the default price table: 100 credits for 10.00 EUR.
const PACK: &str = "pack_100";
const PACK_CREDITS: i64 = 100;
const PACK_CENTS: i64 = 1_000;

/// Signs up `email` and names its organisation [`ORG_NAME`].
async fn account(server: &TestServer, email: &str) -> Account {
    let account = server.signup(email).await;
    sqlx::query("UPDATE orgs SET name = $1 WHERE id = $2")
        .bind(ORG_NAME)
        .bind(account.org_id)
        .execute(&server.db)
        .await
        .unwrap();
    account
}

/// Stores `account`'s tokens as `kiln login` would have, in a credentials file under `dir`; the
/// env for a CLI that uses that login (its XDG_CONFIG_HOME there, and no session bus).
async fn logged_in(server: &TestServer, account: &Account, dir: &Path) -> Vec<(&'static str, String)> {
    let client = Client::new(ClientConfig::new(Url::parse(&server.url).unwrap())).unwrap();
    let tokens = StoredTokens {
        client_id: CLI_CLIENT_ID.into(),
        access_token: account.access_token.clone(),
        refresh_token: account.refresh_token.clone(),
        expires_at: Utc::now() + chrono::Duration::minutes(14),
        scope: "jobs:read jobs:write keys:manage webhooks:manage".into(),
    };
    let config = dir.join("config");
    let store = TokenStore::file(config.join("kiln").join("credentials.json"));
    store.save(&login::server_key(&client), &tokens).await.unwrap();
    vec![
        ("KILN_SERVER", server.url.clone()),
        ("XDG_CONFIG_HOME", config.display().to_string()),
        ("DBUS_SESSION_BUS_ADDRESS", NO_BUS.into()),
    ]
}

/// `env` with `KILN_API_KEY` set to `key`.
fn with_key(env: &[(&'static str, String)], key: &str) -> Vec<(&'static str, String)> {
    let mut env = env.to_vec();
    env.push(("KILN_API_KEY", key.to_string()));
    env
}

/// Runs `kiln args…` with its own log folder under `dir` (one per run, so outputs do not mix).
async fn run(bin: &Path, dir: &Path, name: &str, args: &[&str], env: &[(&str, String)]) -> Run {
    kiln(bin, args, env, &dir.join(name), COMMAND_TIMEOUT).await
}

fn assert_code(run: &Run, code: i32) {
    assert_eq!(run.code, Some(code), "{}", run.describe());
}

#[tokio::test]
async fn me_names_the_user_or_the_key_and_the_organisation() {
    let Some(server) = TestServer::start().await else { return };
    let owner = account(&server, "me-owner@example.com").await;
    let response = get(&server, &owner.access_token, "/v1/me").await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["user"]["email"], "me-owner@example.com");
    assert_eq!(me["role"], "owner");
    assert_eq!(me["organisation"], json!({"id": owner.org_id, "name": ORG_NAME}));
    assert_eq!(me["credential"], json!({"kind": "access_token"}));
    assert_eq!(me["mode"], "live");
    assert_eq!(me["scopes"], json!(["jobs:read", "jobs:write", "keys:manage", "webhooks:manage"]));

    let key = server.api_key(&owner, &["jobs:read"], "test").await;
    let response = get(&server, &key, "/v1/me").await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!((&me["user"], &me["role"]), (&Value::Null, &Value::Null), "a key acts for the organisation");
    assert_eq!(me["organisation"]["name"], ORG_NAME);
    assert_eq!(me["credential"]["kind"], "api_key");
    assert_eq!(me["credential"]["name"], "test key");
    let prefix = me["credential"]["prefix"].as_str().unwrap();
    assert!(key.starts_with(prefix) && prefix.len() < key.len(), "a prefix of the key, not the key: {prefix}");
    assert!(!me.to_string().contains(&key), "the secret is never shown");
    assert_eq!((me["mode"].as_str(), &me["scopes"]), (Some("test"), &json!(["jobs:read"])));

    // Another organisation's caller sees its own organisation only.
    let other = server.signup("me-other@example.com").await;
    let me: Value = get(&server, &other.access_token, "/v1/me").await.json().await.unwrap();
    assert_eq!(me["organisation"], json!({"id": other.org_id, "name": "me-other@example.com"}));
    let response = server.http.get(server.at("/v1/me")).send().await.unwrap();
    assert_eq!(error_code(response).await, (401, "unauthorized".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_by_the_cli_works_lists_without_its_secret_and_is_refused_once_revoked() {
    let Some(bin) = kiln_bin() else { return };
    let Some(server) = TestServer::start().await else { return };
    let owner = account(&server, "keys-cli@example.com").await;
    let dir = scratch("account-keys");
    let env = logged_in(&server, &owner, &dir).await;

    // A login: whoami names the person, the role and the organisation.
    let who = run(&bin, &dir, "whoami-login", &["whoami"], &env).await;
    assert_code(&who, 0);
    assert!(who.stdout.contains("user:          keys-cli@example.com (owner)"), "{}", who.describe());
    assert!(who.stdout.contains(&format!("organisation:  {ORG_NAME} ({})", owner.org_id)), "{}", who.describe());
    assert!(who.stdout.contains("credential:    an access token, from a login kept in the file"), "{}", who.describe());
    assert!(!who.stdout.contains(&owner.access_token) && !who.stderr.contains(&owner.access_token));

    let args =
        ["keys", "create", "--name", "ci", "--scope", "jobs:read", "--scope", "jobs:write", "--expires-in-days", "30"];
    let created = run(&bin, &dir, "create", &args, &env).await;
    assert_code(&created, 0);
    let key = created.stdout.trim().to_string();
    assert!(key.starts_with("kiln_live_") && !key.contains(char::is_whitespace), "{}", created.describe());
    assert!(created.stderr.contains("only time the key is shown"), "{}", created.describe());

    // The printed key is a working KILN_API_KEY.
    let who = run(&bin, &dir, "whoami-key", &["whoami"], &with_key(&env, &key)).await;
    assert_code(&who, 0);
    assert!(who.stdout.contains(&format!("organisation:  {ORG_NAME}")), "{}", who.describe());
    assert!(who.stdout.contains("the live API key 'ci' (kiln_live_"), "{}", who.describe());
    assert!(who.stdout.contains("scopes:        jobs:read jobs:write"), "{}", who.describe());
    assert!(who.stdout.contains("user:          none"), "{}", who.describe());
    assert!(!who.stdout.contains(&key) && !who.stderr.contains(&key), "whoami never prints the key");

    // Listed, never with its secret.
    let listed = run(&bin, &dir, "list", &["keys", "list"], &env).await;
    assert_code(&listed, 0);
    assert!(!listed.stdout.contains(&key), "{}", listed.describe());
    let prefix = key[.."kiln_live_".len() + 4].to_string();
    let line =
        listed.stdout.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{}", listed.describe()));
    assert!(line.contains(" ci ") && line.contains("jobs:read jobs:write") && line.contains("active"), "{line}");
    let listed = run(&bin, &dir, "list-json", &["keys", "list", "--json"], &env).await;
    assert_code(&listed, 0);
    let keys = listed.json();
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    let listed_key = &keys[0];
    assert_eq!((listed_key["name"].as_str(), listed_key["prefix"].as_str()), (Some("ci"), Some(prefix.as_str())));
    assert!(listed_key.get("key").is_none() && !listed.stdout.contains(&key));
    let expires: chrono::DateTime<Utc> = listed_key["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.0).contains(&days), "expires in 30 days: {expires}");

    // A prefix that names no key is bad input; then the key's own prefix revokes it.
    let missing = run(&bin, &dir, "revoke-missing", &["keys", "revoke", "kiln_live_nope"], &env).await;
    assert_code(&missing, 2);
    let revoked = run(&bin, &dir, "revoke", &["keys", "revoke", &prefix], &env).await;
    assert_code(&revoked, 0);
    assert!(revoked.stdout.contains("Revoked key 'ci'"), "{}", revoked.describe());

    let refused = run(&bin, &dir, "whoami-revoked", &["whoami"], &with_key(&env, &key)).await;
    assert_code(&refused, 4);
    assert!(
        refused.stderr.contains("revoked") && refused.stderr.contains("invalid_api_key"),
        "a clear message: {}",
        refused.describe()
    );
    assert!(!refused.stderr.contains(&key));
    let listed = run(&bin, &dir, "list-after", &["keys", "list"], &env).await;
    assert!(listed.stdout.lines().any(|l| l.starts_with(&prefix) && l.contains("revoked")), "{}", listed.describe());

    // A test key, as JSON for scripts.
    let created =
        run(&bin, &dir, "create-test", &["keys", "create", "--name", "sandbox", "--test", "--json"], &env).await;
    assert_code(&created, 0);
    let body = created.json();
    assert!(body["key"].as_str().unwrap().starts_with("kiln_test_"), "{body}");
    assert_eq!((body["mode"].as_str(), &body["scopes"]), (Some("test"), &json!(["jobs:read", "jobs:write"])));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server whose Stripe is the stub, with no signup credits.
async fn billing_server() -> Option<(TestServer, StripeStub)> {
    let stripe = stub::start().await;
    let mut billing = BillingConfig::without_stripe();
    billing.signup_credits = 0;
    billing.stripe_secret_key = Some(stub::SECRET_KEY.into());
    billing.stripe_webhook_secrets = vec![WEBHOOK_SECRET.into()];
    billing.stripe_api_base = stripe.url.clone();
    let server = TestServer::start_with(Options { billing, ..Options::default() }).await?;
    Some((server, stripe))
}

/// A `BROWSER` that records the URL it is given in `dir/opened` and opens nothing.
fn recording_browser(dir: &Path) -> (String, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("browser.sh");
    let opened = dir.join("opened");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}.tmp' && mv '{0}.tmp' '{0}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script.display().to_string(), opened)
}

/// Waits for the stub's first Checkout Session.
async fn first_session(stripe: &StripeStub) -> Value {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if let Some(session) = stripe.sessions().into_iter().next() {
            return session;
        }
        assert!(Instant::now() < deadline, "the CLI created no Checkout Session");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts Stripe's signed `checkout.session.completed` (paid) for `session` of `org`.
async fn pay(server: &TestServer, session: &str, org: uuid::Uuid) {
    let object = stub::checkout_session_object(
        session,
        "payment",
        "paid",
        PACK_CENTS,
        "eur",
        json!({"kiln_org": org.to_string()}),
        Some("pi_cloudaccount0000000000001"),
        None,
    );
    let body = stub::event("checkout.session.completed", object).to_string();
    let response = server
        .http
        .post(server.at("/v1/stripe/webhook"))
        .header("content-type", "application/json; charset=utf-8")
        .header("Stripe-Signature", stub::signed(&body, WEBHOOK_SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "webhook: {:?}", response.text().await);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["outcome"], "applied");
}

async fn available(server: &TestServer, token: &str) -> i64 {
    let balances: Value = get(server, token, "/v1/credits").await.json().await.unwrap();
    balances["available"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_buy_opens_checkout_and_waits_for_stripe_to_confirm_the_payment() {
    let Some(bin) = kiln_bin() else { return };
    let Some((server, stripe)) = billing_server().await else { return };
    let buyer = account(&server, "buyer@example.com").await;
    let dir = scratch("account-buy");
    let env = logged_in(&server, &buyer, &dir).await;
    let (browser, opened) = recording_browser(&dir);
    let mut env_browser = env.clone();
    env_browser.push(("BROWSER", browser));

    // Bad input first: nothing reaches Stripe.
    let unknown = run(&bin, &dir, "unknown", &["credits", "buy", "pack_1"], &env_browser).await;
    assert_code(&unknown, 2);
    assert!(unknown.stderr.contains("\"pack_1\"") && unknown.stderr.contains("pack_100 (100 credits for 10.00 EUR)"));
    let key = server.api_key(&buyer, &["jobs:read"], "live").await;
    let by_key = run(&bin, &dir, "by-key", &["credits", "buy", PACK], &with_key(&env_browser, &key)).await;
    assert_code(&by_key, 4);
    assert!(by_key.stderr.contains("needs a person's login"), "{}", by_key.describe());
    assert!(stripe.requests().is_empty() && !opened.exists());

    // The purchase: the CLI creates the session, opens its URL, and waits for Stripe.
    let logs_buy = dir.join("buy");
    std::fs::create_dir_all(&logs_buy).unwrap();
    let mut child = spawn_kiln(&bin, &["credits", "buy", PACK, "--timeout", "120"], &env_browser, &logs_buy);
    let session = first_session(&stripe).await;
    let session_id = session["id"].as_str().unwrap();
    let url = session["url"].as_str().unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while !opened.exists() {
        assert!(Instant::now() < deadline, "the browser was not opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_to_string(&opened).unwrap(), url, "the browser opens the Checkout URL");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(available(&server, &buyer.access_token).await, 0, "nothing before Stripe says paid");
    assert!(child.try_wait().unwrap().is_none(), "the CLI waits for the payment");
    pay(&server, session_id, buyer.org_id).await;
    let bought = finish(child, &logs_buy, COMMAND_TIMEOUT).await;
    assert_code(&bought, 0);
    assert!(bought.stdout.contains(url), "the URL is printed too: {}", bought.describe());
    let expected =
        format!("Payment received: {PACK_CREDITS} credits added. Balance: {PACK_CREDITS} available, 0 reserved.");
    assert!(bought.stdout.contains(&expected), "{}", bought.describe());
    assert_eq!(available(&server, &buyer.access_token).await, PACK_CREDITS);
    assert!(!bought.stdout.contains(&buyer.access_token) && !bought.stderr.contains(&buyer.access_token));

    // A payment that never comes: the CLI gives up, says it may still land, and fails.
    let unpaid = run(&bin, &dir, "timeout", &["credits", "buy", PACK, "--timeout", "1"], &env_browser).await;
    assert_code(&unpaid, 1);
    assert!(unpaid.stderr.contains("may still land"), "{}", unpaid.describe());
    // --no-wait: the session and its URL, at once.
    let no_wait = run(&bin, &dir, "no-wait", &["credits", "buy", PACK, "--no-wait"], &env_browser).await;
    assert_code(&no_wait, 0);
    assert_eq!(stripe.sessions().len(), 3, "one session per purchase started");
    let last = stripe.sessions().pop().unwrap();
    assert!(no_wait.stdout.contains(last["url"].as_str().unwrap()), "{}", no_wait.describe());
    assert_eq!(available(&server, &buyer.access_token).await, PACK_CREDITS, "unpaid sessions grant nothing");
    std::fs::remove_dir_all(&dir).unwrap();
}
