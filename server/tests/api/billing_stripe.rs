//! Buying credits through Stripe, end to end against the real PostgreSQL: the real async-stripe
//! client sends Checkout Sessions to the in-process Stripe stub (what it was sent is asserted
//! field by field), and Stripe's events come back to `POST /v1/stripe/webhook` signed exactly as
//! Stripe signs them. Every scenario ends by checking the ledger: the balances shown equal the
//! sums of the entries, and every transaction balances.
//!
//! - credit packs: granted once per Checkout Session, whatever is delivered twice or in which
//!   order (`completed`, `async_payment_succeeded`);
//! - signatures: forged, changed after signing, too old, missing → 400 and nothing changes;
//!   several `v1` values and several configured secrets during a rotation;
//! - refunds: a full refund of a half-spent pack leaves debt, which the next purchase settles; a
//!   partial refund takes back its share; a refund before its purchase is applied when it comes;
//! - monthly plans: each paid invoice once, in any order with the Checkout Session;
//! - Studio: no account, pay, upload with the claim token, one job run by a real worker, its
//!   GLB downloaded with the token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Account, Options, TestServer, error_code};
use kiln_server::billing::prices::{PresetPrice, PriceTable};
use kiln_server::config::BillingConfig;
use serde_json::{Value, json};
use support::stripe::{self as stub, StripeStub};
use support::{get, one_photo, post, upload, worker_call};
use uuid::Uuid;

/// The webhook endpoint's signing secret in these tests.
const SECRET: &str = "whsec_kiln_billing_test_0123456789abcdef";

/// A secret the server does not know: what a forger would sign with.
const FORGED: &str = "whsec_kiln_forged_secret_fedcba9876543210";

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// A server with no signup credits, Stripe pointed at the stub, and a stub beside it.
struct Billing {
    server: TestServer,
    stripe: StripeStub,
}

async fn start_with(prices: PriceTable, secrets: &[&str]) -> Option<Billing> {
    let stripe = stub::start().await;
    // Field by field over the defaults, so fields added later keep their defaults here.
    let mut billing = BillingConfig::without_stripe();
    billing.prices = prices;
    billing.signup_credits = 0;
    billing.stripe_secret_key = Some(stub::SECRET_KEY.into());
    billing.stripe_webhook_secrets = secrets.iter().map(|s| s.to_string()).collect();
    billing.stripe_api_base = stripe.url.clone();
    let server = TestServer::start_with(Options { billing, ..Options::default() }).await?;
    Some(Billing { server, stripe })
}

async fn start() -> Option<Billing> {
    start_with(PriceTable::default(), &[SECRET]).await
}

/// Posts `body` raw to the webhook endpoint with `signature` as `Stripe-Signature` (none: no header).
async fn deliver(server: &TestServer, body: &str, signature: Option<&str>) -> reqwest::Response {
    let mut request = server
        .http
        .post(server.at("/v1/stripe/webhook"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.unwrap()
}

/// Delivers `body` signed now with `secret`; answers the outcome of a 200.
async fn deliver_signed(server: &TestServer, body: &str, secret: &str) -> String {
    let response = deliver(server, body, Some(&stub::signed(body, secret))).await;
    assert_eq!(response.status(), 200, "webhook: {:?}", response.text().await);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["received"], true);
    reply["outcome"].as_str().unwrap().to_string()
}

/// Delivers `event` signed with [`SECRET`]; answers its outcome.
async fn send(server: &TestServer, event: &Value) -> String {
    deliver_signed(server, &event.to_string(), SECRET).await
}

/// `GET /v1/credits` as `token`: [available, reserved, debt].
async fn balances(server: &TestServer, token: &str) -> [i64; 3] {
    let response = get(server, token, "/v1/credits").await;
    assert_eq!(response.status(), 200, "credits: {:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    ["available", "reserved", "debt"].map(|field| body[field].as_i64().unwrap())
}

/// (stripe_events, purchases, ledger_transactions) rows: what a refused delivery must not move.
async fn counts(server: &TestServer) -> [i64; 3] {
    let queries = [
        "SELECT count(*) FROM stripe_events",
        "SELECT count(*) FROM purchases",
        "SELECT count(*) FROM ledger_transactions",
    ];
    let mut out = [0; 3];
    for (slot, query) in out.iter_mut().zip(queries) {
        *slot = sqlx::query_scalar(query).fetch_one(&server.db).await.unwrap();
    }
    out
}

/// The contract's invariant: the organisation's balances shown (`token`) equal the sums of its
/// accounts' entries (and the stored balances); every transaction sums to zero, and so does the
/// whole ledger, system accounts included.
async fn assert_ledger(server: &TestServer, org_id: Uuid, token: &str) {
    let shown = balances(server, token).await;
    let sums: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.kind, coalesce(sum(e.amount), 0)::bigint, a.balance
         FROM credit_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
         WHERE a.org_id = $1 GROUP BY a.id, a.kind, a.balance",
    )
    .bind(org_id)
    .fetch_all(&server.db)
    .await
    .unwrap();
    let sum = |kind: &str| sums.iter().find(|(k, _, _)| k == kind).map_or(0, |(_, s, _)| *s);
    assert_eq!(shown, [sum("available"), sum("reserved"), -sum("debt")], "GET /v1/credits = the ledger's sums");
    for (kind, entries, stored) in &sums {
        assert_eq!(entries, stored, "the stored {kind} balance equals its entries");
    }
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries GROUP BY transaction_id
                               HAVING sum(amount) <> 0) t",
    )
    .fetch_one(&server.db)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "every ledger transaction balances");
    let empty: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transactions t
         WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id)",
    )
    .fetch_one(&server.db)
    .await
    .unwrap();
    assert_eq!(empty, 0, "no transaction without entries");
    let total: i64 = sqlx::query_scalar("SELECT coalesce(sum(amount), 0)::bigint FROM ledger_entries")
        .fetch_one(&server.db)
        .await
        .unwrap();
    assert_eq!(total, 0, "system and organisation accounts sum to zero");
}

/// One ledger transaction of an organisation: its reason, Stripe reference, job, and entries by
/// account kind.
#[derive(Debug)]
struct Posting {
    reason: String,
    stripe_ref: Option<String>,
    job_id: Option<Uuid>,
    entries: BTreeMap<String, i64>,
}

/// One entry with its transaction: (transaction, reason, stripe_ref, job, account kind, amount).
type EntryRow = (Uuid, String, Option<String>, Option<Uuid>, String, i64);

/// The organisation's ledger transactions, oldest first.
async fn postings(server: &TestServer, org_id: Uuid) -> Vec<Posting> {
    let rows: Vec<EntryRow> = sqlx::query_as(
        "SELECT t.id, t.reason, t.stripe_ref, t.job_id, a.kind, e.amount
         FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
         JOIN credit_accounts a ON a.id = e.account_id
         WHERE t.org_id = $1 ORDER BY t.created_at, t.id, e.id",
    )
    .bind(org_id)
    .fetch_all(&server.db)
    .await
    .unwrap();
    let mut out: Vec<(Uuid, Posting)> = Vec::new();
    for (id, reason, stripe_ref, job_id, kind, amount) in rows {
        if out.last().is_none_or(|(last, _)| *last != id) {
            out.push((id, Posting { reason, stripe_ref, job_id, entries: BTreeMap::new() }));
        }
        out.last_mut().unwrap().1.entries.insert(kind, amount);
    }
    out.into_iter().map(|(_, posting)| posting).collect()
}

fn entries(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
    list.iter().map(|(kind, amount)| (kind.to_string(), *amount)).collect()
}

/// `POST /v1/credits/checkout` for `pack` as the account's user: the Checkout Session's id.
async fn buy_pack(server: &TestServer, account: &Account, pack: &str) -> String {
    let response = post(server, &account.access_token, "/v1/credits/checkout", &json!({"pack": pack})).await;
    assert_eq!(response.status(), 201, "checkout: {:?}", response.text().await);
    let body: Value = response.json().await.unwrap();
    body["session_id"].as_str().unwrap().to_string()
}

/// A `checkout.session.*` event of a payment-mode session of `org_id` for `amount` cents.
fn session_event(
    kind: &str,
    session: &str,
    payment_status: &str,
    amount: i64,
    org_id: Uuid,
    payment_intent: &str,
) -> Value {
    let object = stub::checkout_session_object(
        session,
        "payment",
        payment_status,
        amount,
        "eur",
        json!({"kiln_org": org_id.to_string()}),
        Some(payment_intent),
        None,
    );
    stub::event(kind, object)
}

/// `checkout.session.completed`, paid at once, of a pack_100 session.
fn paid(session: &str, org_id: Uuid, payment_intent: &str) -> Value {
    session_event("checkout.session.completed", session, "paid", 1_000, org_id, payment_intent)
}

/// `charge.refunded` of `payment_intent`'s charge: `refunded` of `amount` cents so far.
fn refunded(charge: &str, payment_intent: &str, amount: i64, refunded: i64) -> Value {
    let receipt = format!("https://pay.stripe.com/receipts/payment/{charge}");
    stub::event(
        "charge.refunded",
        stub::charge_refunded_object(charge, payment_intent, amount, refunded, "eur", &receipt),
    )
}

fn pi() -> String {
    format!("pi_{}", &Uuid::new_v4().simple().to_string()[..24])
}

#[tokio::test]
async fn a_pack_is_bought_through_checkout_and_granted_once() {
    let Some(Billing { server, stripe }) = start().await else { return };
    let account = server.signup("billing-pack@example.com").await;
    let token = account.access_token.clone();
    assert_eq!(balances(&server, &token).await, [0, 0, 0]);

    let response = post(&server, &token, "/v1/credits/checkout", &json!({"pack": "pack_100"})).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let created: Value = response.json().await.unwrap();
    let session = created["session_id"].as_str().unwrap().to_string();
    let sent = stripe.requests();
    assert_eq!(sent.len(), 1, "one request to Stripe");
    let sent = &sent[0];
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/checkout/sessions"));
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {}", stub::SECRET_KEY).as_str()));
    assert!(sent.idempotency_key.as_deref().is_some_and(|k| !k.is_empty()), "sent with an idempotency key");
    let org = account.org_id.to_string();
    let success = format!("{}/checkout/return?result=paid&session_id={{CHECKOUT_SESSION_ID}}", server.url);
    let cancel = format!("{}/checkout/return?result=canceled", server.url);
    let expected = [
        ("mode", "payment"),
        ("line_items[0][price_data][unit_amount]", "1000"),
        ("line_items[0][price_data][currency]", "eur"),
        ("line_items[0][price_data][product_data][name]", "Kiln credits: 100"),
        ("line_items[0][quantity]", "1"),
        ("metadata[kiln_org]", org.as_str()),
        ("payment_intent_data[metadata][kiln_org]", org.as_str()),
        ("client_reference_id", org.as_str()),
        ("customer_email", "billing-pack@example.com"),
        ("success_url", success.as_str()),
        ("cancel_url", cancel.as_str()),
    ];
    for (key, value) in expected {
        assert_eq!(sent.field(key), Some(value), "{key} in {:?}", sent.form);
    }
    assert!(sent.form.iter().all(|(k, _)| !k.contains("recurring") && !k.starts_with("subscription_data")));
    let made = stripe.session(&session).expect("the stub created the session");
    assert_eq!(created["checkout_url"], made["url"]);
    assert_eq!((made["amount_total"].as_i64(), made["mode"].as_str()), (Some(1_000), Some("payment")));
    let recorded: (Uuid, String, String, i64, i64, String) =
        sqlx::query_as("SELECT org_id, kind, product, credits, amount, currency FROM checkout_sessions WHERE id = $1")
            .bind(&session)
            .fetch_one(&server.db)
            .await
            .unwrap();
    assert_eq!(recorded, (account.org_id, "pack".into(), "pack_100".into(), 100, 1_000, "eur".into()));
    let page = server.http.get(server.at("/checkout/return?result=paid&session_id=x")).send().await.unwrap();
    assert_eq!(page.status(), 200);

    // Only a person buys; an unknown pack is refused; neither reaches Stripe.
    let key = server.api_key(&account, &WRITE, "live").await;
    let response = post(&server, &key, "/v1/credits/checkout", &json!({"pack": "pack_100"})).await;
    assert_eq!(error_code(response).await, (403, "user_required".into()));
    let response = post(&server, &token, "/v1/credits/checkout", &json!({"pack": "pack_1"})).await;
    assert_eq!(error_code(response).await, (400, "unknown_pack".into()));
    assert_eq!(stripe.requests().len(), 1);
    assert_eq!(balances(&server, &token).await, [0, 0, 0], "nothing before Stripe says paid");

    // Paid: granted. The same event again: once.
    let event = paid(&session, account.org_id, &pi()).to_string();
    assert_eq!(deliver_signed(&server, &event, SECRET).await, "applied");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);
    assert_eq!(balances(&server, &key).await, [100, 0, 0], "one balance for users and API keys");
    assert_eq!(deliver_signed(&server, &event, SECRET).await, "duplicate");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);
    // Another event of the same session (async_payment_succeeded after completed): still once.
    let payment_intent = pi();
    let later = session_event(
        "checkout.session.async_payment_succeeded",
        &session,
        "paid",
        1_000,
        account.org_id,
        &payment_intent,
    );
    assert_eq!(send(&server, &later).await, "duplicate");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);
    // A paid session Kiln never created grants nothing, whatever its metadata says.
    let stranger = paid("cs_test_not_kilns_session", account.org_id, &pi());
    assert_eq!(send(&server, &stranger).await, "ignored");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);

    assert_eq!(counts(&server).await, [3, 1, 1], "3 events recorded once each, 1 purchase, 1 transaction");
    let ledger = postings(&server, account.org_id).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].reason.as_str(), ledger[0].stripe_ref.as_deref()), ("purchase", Some(session.as_str())));
    assert_eq!(ledger[0].entries, entries(&[("stripe", -100), ("available", 100)]));
    assert_ledger(&server, account.org_id, &token).await;
}

#[tokio::test]
async fn async_payment_succeeded_and_completed_grant_once_in_either_order() {
    let Some(Billing { server, stripe: _stripe }) = start().await else { return };
    let account = server.signup("billing-async@example.com").await;
    let (token, org) = (account.access_token.clone(), account.org_id);

    // async_payment_succeeded first, then completed (unpaid, as Stripe sends it for delayed
    // methods, then a paid one): granted at the first, once.
    let first = buy_pack(&server, &account, "pack_100").await;
    let payment_intent = pi();
    let succeeded =
        session_event("checkout.session.async_payment_succeeded", &first, "paid", 1_000, org, &payment_intent);
    assert_eq!(send(&server, &succeeded).await, "applied");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);
    let completed_unpaid = session_event("checkout.session.completed", &first, "unpaid", 1_000, org, &payment_intent);
    assert_eq!(send(&server, &completed_unpaid).await, "ignored");
    let completed_paid = session_event("checkout.session.completed", &first, "paid", 1_000, org, &payment_intent);
    assert_eq!(send(&server, &completed_paid).await, "duplicate");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);

    // completed unpaid first: nothing yet; granted at async_payment_succeeded, once.
    let second = buy_pack(&server, &account, "pack_100").await;
    let payment_intent = pi();
    let completed = session_event("checkout.session.completed", &second, "unpaid", 1_000, org, &payment_intent);
    assert_eq!(send(&server, &completed).await, "ignored");
    assert_eq!(balances(&server, &token).await, [100, 0, 0], "an unpaid session grants nothing");
    let succeeded =
        session_event("checkout.session.async_payment_succeeded", &second, "paid", 1_000, org, &payment_intent)
            .to_string();
    assert_eq!(deliver_signed(&server, &succeeded, SECRET).await, "applied");
    assert_eq!(balances(&server, &token).await, [200, 0, 0]);
    assert_eq!(deliver_signed(&server, &succeeded, SECRET).await, "duplicate");
    // A failed async payment grants nothing either.
    let failed = session_event("checkout.session.async_payment_failed", &second, "unpaid", 1_000, org, &payment_intent);
    assert_eq!(send(&server, &failed).await, "ignored");
    assert_eq!(balances(&server, &token).await, [200, 0, 0]);

    let purchases: Vec<(String, i64)> =
        sqlx::query_as("SELECT checkout_session_id, credits FROM purchases WHERE org_id = $1 ORDER BY created_at")
            .bind(org)
            .fetch_all(&server.db)
            .await
            .unwrap();
    assert_eq!(purchases, [(first.clone(), 100), (second.clone(), 100)]);
    let ledger = postings(&server, org).await;
    let refs: Vec<(&str, Option<&str>)> = ledger.iter().map(|p| (p.reason.as_str(), p.stripe_ref.as_deref())).collect();
    assert_eq!(refs, [("purchase", Some(first.as_str())), ("purchase", Some(second.as_str()))]);
    assert_ledger(&server, org, &token).await;
}

#[tokio::test]
async fn bad_signatures_are_refused_and_change_nothing() {
    let Some(Billing { server, stripe: _stripe }) = start().await else { return };
    let account = server.signup("billing-signatures@example.com").await;
    let (token, org) = (account.access_token.clone(), account.org_id);
    let session = buy_pack(&server, &account, "pack_100").await;
    let event = paid(&session, org, &pi());
    let body = event.to_string();
    let before = counts(&server).await;
    assert_eq!(before, [0, 0, 0]);

    let now = stub::now();
    let event_id = event["id"].as_str().unwrap();
    let changed = body.replacen(event_id, "evt_changed_after_signing", 1);
    assert_ne!(changed, body);
    let refusals: [(&str, &str, Option<String>); 7] = [
        ("forged (another secret)", &body, Some(stub::signed(&body, FORGED))),
        ("body changed after signing", &changed, Some(stub::signed(&body, SECRET))),
        ("older than 300 s", &body, Some(stub::signed_at(&body, SECRET, now - 301))),
        ("more than 300 s ahead", &body, Some(stub::signed_at(&body, SECRET, now + 400))),
        ("no header", &body, None),
        ("a header without v1", &body, Some(format!("t={now}"))),
        ("garbage header", &body, Some("garbage".into())),
    ];
    for (what, sent, header) in refusals {
        let response = deliver(&server, sent, header.as_deref()).await;
        assert_eq!(error_code(response).await, (400, "invalid_signature".into()), "{what}");
        assert_eq!(counts(&server).await, before, "{what}: nothing recorded");
        assert_eq!(balances(&server, &token).await, [0, 0, 0], "{what}: no credits");
    }

    // Rotation: two v1 values, only the second made with the endpoint's secret.
    let forged = stub::signed_at(&body, FORGED, now);
    let good = stub::signed_at(&body, SECRET, now);
    let v1 = |header: &str| header.split_once(",v1=").unwrap().1.to_string();
    let both = format!("t={now},v1={},v1={}", v1(&forged), v1(&good));
    let response = deliver(&server, &body, Some(&both)).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["outcome"], "applied", "the refused deliveries did not use the event up");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);
    assert_eq!(counts(&server).await, [1, 1, 1]);
    assert_ledger(&server, org, &token).await;
}

#[tokio::test]
async fn either_configured_secret_is_accepted_during_a_rotation() {
    const OLD: &str = "whsec_kiln_rotation_old_000000000000";
    const NEW: &str = "whsec_kiln_rotation_new_111111111111";
    let Some(Billing { server, stripe: _stripe }) = start_with(PriceTable::default(), &[OLD, NEW]).await else {
        return;
    };
    let account = server.signup("billing-rotation@example.com").await;
    let (token, org) = (account.access_token.clone(), account.org_id);
    let first = buy_pack(&server, &account, "pack_100").await;
    let second = buy_pack(&server, &account, "pack_500").await;
    let third = buy_pack(&server, &account, "pack_100").await;

    assert_eq!(deliver_signed(&server, &paid(&first, org, &pi()).to_string(), OLD).await, "applied");
    let pack_500 = session_event("checkout.session.completed", &second, "paid", 4_500, org, &pi());
    assert_eq!(deliver_signed(&server, &pack_500.to_string(), NEW).await, "applied");
    assert_eq!(balances(&server, &token).await, [600, 0, 0]);
    // A secret no longer configured (nor the test's usual one) is refused.
    for retired in [SECRET, FORGED] {
        let body = paid(&third, org, &pi()).to_string();
        let response = deliver(&server, &body, Some(&stub::signed(&body, retired))).await;
        assert_eq!(error_code(response).await, (400, "invalid_signature".into()));
    }
    assert_eq!(balances(&server, &token).await, [600, 0, 0]);
    assert_eq!(counts(&server).await, [2, 2, 2]);
    assert_ledger(&server, org, &token).await;
}

/// Prices where one preview job costs exactly 50 credits, whatever its photos.
fn fifty_credit_previews() -> PriceTable {
    let mut prices = PriceTable::default();
    prices.presets.insert("preview".into(), PresetPrice { base: 50, per_100_photos: 0 });
    prices
}

/// Runs the queued job `id` to success as a worker would (lease, finish), so its reservation is
/// captured.
async fn succeed(server: &TestServer, id: &str) {
    let response =
        worker_call(server, "/v1/worker/lease", &json!({"worker_id": "billing-worker", "device": "cpu"})).await;
    assert_eq!(response.status(), 200, "lease: {:?}", response.text().await);
    let lease: Value = response.json().await.unwrap();
    assert_eq!(lease["job_id"].as_str(), Some(id));
    let finish = json!({"worker_id": "billing-worker", "attempt": lease["attempt"], "outcome": "succeeded",
                        "report": {"status": "finished"}, "device_seconds": 2.0});
    let response = worker_call(server, &format!("/v1/worker/jobs/{id}/finish"), &finish).await;
    assert_eq!(response.status(), 200, "finish: {:?}", response.text().await);
}

#[tokio::test]
async fn a_refund_of_a_half_spent_pack_leaves_debt_that_the_next_purchase_settles() {
    let Some(Billing { server, stripe: _stripe }) = start_with(fifty_credit_previews(), &[SECRET]).await else {
        return;
    };
    let account = server.signup("billing-refund@example.com").await;
    let (token, org) = (account.access_token.clone(), account.org_id);
    let key = server.api_key(&account, &WRITE, "live").await;
    let session = buy_pack(&server, &account, "pack_100").await;
    let payment_intent = pi();
    assert_eq!(send(&server, &paid(&session, org, &payment_intent)).await, "applied");
    assert_eq!(balances(&server, &token).await, [100, 0, 0]);

    // Spend 50: a preview job reserved, then run to success (captured).
    let upload_id = upload(&server, &key, &one_photo()).await;
    let job = support::submit(&server, &key, upload_id, json!({"preset": "preview"}), "standard").await;
    assert_eq!(job["credits"], json!({"quoted": 50, "reserved": 50, "charged": 0, "released": 0}));
    assert_eq!(balances(&server, &token).await, [50, 50, 0]);
    let id = job["id"].as_str().unwrap();
    succeed(&server, id).await;
    let done = support::job(&server, &key, id).await;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["credits"], json!({"quoted": 50, "reserved": 50, "charged": 50, "released": 0}));
    assert_eq!(balances(&server, &token).await, [50, 0, 0]);

    // The whole payment refunded in Stripe's dashboard: the 50 left go back, the 50 spent are owed.
    let charge = "ch_billing_refund_full";
    let refund = refunded(charge, &payment_intent, 1_000, 1_000).to_string();
    assert_eq!(deliver_signed(&server, &refund, SECRET).await, "applied");
    assert_eq!(balances(&server, &token).await, [0, 0, 50]);
    let response = get(&server, &key, "/v1/credits").await;
    let shown: Value = response.json().await.unwrap();
    assert_eq!(shown, json!({"available": 0, "reserved": 0, "debt": 50}));
    // Delivered again, or re-announced by another event with the same total: nothing more.
    let before = counts(&server).await;
    assert_eq!(deliver_signed(&server, &refund, SECRET).await, "duplicate");
    let updated = stub::event(
        "charge.updated",
        stub::charge_refunded_object(charge, &payment_intent, 1_000, 1_000, "eur", "https://pay.stripe.com/receipts/x"),
    );
    assert_eq!(send(&server, &updated).await, "applied");
    assert_eq!(balances(&server, &token).await, [0, 0, 50]);
    let after = counts(&server).await;
    assert_eq!([after[1], after[2]], [before[1], before[2]], "no purchase nor transaction added");
    let refunded_row: (i64, i64) =
        sqlx::query_as("SELECT credits_refunded, amount_refunded FROM purchases WHERE checkout_session_id = $1")
            .bind(&session)
            .fetch_one(&server.db)
            .await
            .unwrap();
    assert_eq!(refunded_row, (100, 1_000));
    let receipt: Option<String> =
        sqlx::query_scalar("SELECT receipt_url FROM stripe_charges WHERE payment_intent = $1")
            .bind(&payment_intent)
            .fetch_one(&server.db)
            .await
            .unwrap();
    assert_eq!(receipt.as_deref(), Some("https://pay.stripe.com/receipts/x"), "the latest receipt is kept");
    // What the customer sees: the refund in the ledger, the receipt and refund on the purchase.
    let page: Value = get(&server, &token, "/v1/credits/ledger?reason=refund").await.json().await.unwrap();
    let shown = page["data"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{page:#}");
    assert_eq!((shown[0]["reason"].as_str(), shown[0]["stripe_ref"].as_str()), (Some("refund"), Some(charge)));
    assert_eq!(
        (&shown[0]["available"], &shown[0]["reserved"], &shown[0]["debt"]),
        (&json!(-50), &json!(0), &json!(50))
    );
    assert_eq!(shown[0]["balance_after"], json!({"available": 0, "reserved": 0, "debt": 50}));
    let bought: Value = get(&server, &token, "/v1/purchases").await.json().await.unwrap();
    let purchase = &bought["data"][0];
    assert_eq!(purchase["checkout_session_id"].as_str(), Some(session.as_str()), "{bought:#}");
    assert_eq!((&purchase["credits_refunded"], &purchase["amount_refunded"]), (&json!(100), &json!(1_000)));
    assert_eq!(purchase["receipt_url"], "https://pay.stripe.com/receipts/x");
    // Nothing to spend while in debt.
    let response =
        post(&server, &key, "/v1/jobs", &json!({"upload_id": upload_id, "settings": {"preset": "preview"}})).await;
    assert_eq!(error_code(response).await, (402, "insufficient_credits".into()));
    assert_ledger(&server, org, &token).await;

    // The next purchase settles the debt first.
    let next = buy_pack(&server, &account, "pack_100").await;
    assert_eq!(send(&server, &paid(&next, org, &pi())).await, "applied");
    assert_eq!(balances(&server, &token).await, [50, 0, 0]);

    let ledger = postings(&server, org).await;
    let summary: Vec<(&str, Option<&str>)> =
        ledger.iter().map(|p| (p.reason.as_str(), p.stripe_ref.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("purchase", Some(session.as_str())),
            ("reserve", None),
            ("capture", None),
            ("refund", Some(charge)),
            ("purchase", Some(next.as_str())),
        ]
    );
    let job_id: Uuid = id.parse().unwrap();
    assert_eq!((ledger[1].job_id, ledger[2].job_id), (Some(job_id), Some(job_id)));
    assert_eq!(ledger[1].entries, entries(&[("available", -50), ("reserved", 50)]));
    assert_eq!(ledger[2].entries, entries(&[("reserved", -50), ("spend", 50)]));
    assert_eq!(ledger[3].entries, entries(&[("available", -50), ("debt", -50), ("refunds", 100)]));
    assert_eq!(ledger[4].entries, entries(&[("stripe", -100), ("debt", 50), ("available", 50)]));
    assert_ledger(&server, org, &token).await;
}

#[tokio::test]
async fn a_partial_refund_takes_back_its_share_once() {
    let Some(Billing { server, stripe: _stripe }) = start().await else { return };
    let account = server.signup("billing-partial@example.com").await;
    let (token, org) = (account.access_token.clone(), account.org_id);
    let session = buy_pack(&server, &account, "pack_100").await;
    let payment_intent = pi();
    assert_eq!(send(&server, &paid(&session, org, &payment_intent)).await, "applied");

    // Half the money back: half the credits.
    let half = refunded("ch_billing_partial", &payment_intent, 1_000, 500).to_string();
    assert_eq!(deliver_signed(&server, &half, SECRET).await, "applied");
    assert_eq!(balances(&server, &token).await, [50, 0, 0]);
    assert_eq!(deliver_signed(&server, &half, SECRET).await, "duplicate");
    assert_eq!(balances(&server, &token).await, [50, 0, 0]);
    // Stripe's figure is cumulative: the rest refunded later takes the other half, not 100 more.
    assert_eq!(send(&server, &refunded("ch_billing_partial", &payment_intent, 1_000, 1_000)).await, "applied");
    assert_eq!(balances(&server, &token).await, [0, 0, 0]);
    // An older, smaller total arriving late changes nothing.
    assert_eq!(send(&server, &refunded("ch_billing_partial", &payment_intent, 1_000, 500)).await, "applied");
    assert_eq!(balances(&server, &token).await, [0, 0, 0]);

    let ledger = postings(&server, org).await;
    let refunds: Vec<&BTreeMap<String, i64>> =
        ledger.iter().filter(|p| p.reason == "refund").map(|p| &p.entries).collect();
    assert_eq!(
        refunds,
        [&entries(&[("available", -50), ("refunds", 50)]), &entries(&[("available", -50), ("refunds", 50)])]
    );
    assert_ledger(&server, org, &token).await;
}

#[tokio::test]
async fn a_refund_before_its_purchase_is_applied_when_the_purchase_arrives() {
    let Some(Billing { server, stripe: _stripe }) = start().await else { return };
    let account = server.signup("billing-refund-early@example.com").await;
    let (token, org) = (account.access_token.clone(), account.org_id);

    // Half refunded, announced before the payment's completed event.
    let session = buy_pack(&server, &account, "pack_100").await;
    let payment_intent = pi();
    assert_eq!(send(&server, &refunded("ch_billing_early", &payment_intent, 1_000, 500)).await, "applied");
    assert_eq!(balances(&server, &token).await, [0, 0, 0], "nothing to take back yet");
    assert_eq!(counts(&server).await[2], 0, "no ledger transaction yet");
    assert_eq!(send(&server, &paid(&session, org, &payment_intent)).await, "applied");
    assert_eq!(balances(&server, &token).await, [50, 0, 0], "granted 100, 50 taken back at once");

    // Fully refunded before its purchase: granted and taken back whole.
    let other = buy_pack(&server, &account, "pack_100").await;
    let other_intent = pi();
    assert_eq!(send(&server, &refunded("ch_billing_early_2", &other_intent, 1_000, 1_000)).await, "applied");
    assert_eq!(send(&server, &paid(&other, org, &other_intent)).await, "applied");
    assert_eq!(balances(&server, &token).await, [50, 0, 0]);

    let ledger = postings(&server, org).await;
    let summary: Vec<(&str, Option<&str>)> =
        ledger.iter().map(|p| (p.reason.as_str(), p.stripe_ref.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("purchase", Some(session.as_str())),
            ("refund", Some("ch_billing_early")),
            ("purchase", Some(other.as_str())),
            ("refund", Some("ch_billing_early_2")),
        ]
    );
    assert_eq!(ledger[1].entries, entries(&[("available", -50), ("refunds", 50)]));
    assert_eq!(ledger[3].entries, entries(&[("available", -100), ("refunds", 100)]));
    assert_ledger(&server, org, &token).await;
}

#[tokio::test]
async fn a_monthly_plan_grants_each_paid_invoice_once() {
    let Some(Billing { server, stripe }) = start().await else { return };
    let account = server.signup("billing-plan@example.com").await;
    let (token, org) = (account.access_token.clone(), account.org_id);

    let response = post(&server, &token, "/v1/plans/checkout", &json!({"plan": "monthly_500"})).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let created: Value = response.json().await.unwrap();
    let session = created["session_id"].as_str().unwrap().to_string();
    let sent = stripe.requests();
    assert_eq!(sent.len(), 1);
    let org_text = org.to_string();
    let expected = [
        ("mode", "subscription"),
        ("line_items[0][price_data][unit_amount]", "3900"),
        ("line_items[0][price_data][currency]", "eur"),
        ("line_items[0][price_data][recurring][interval]", "month"),
        ("line_items[0][price_data][product_data][name]", "Kiln monthly plan: 500 credits a month"),
        ("line_items[0][quantity]", "1"),
        ("metadata[kiln_org]", org_text.as_str()),
        ("metadata[kiln_plan]", "monthly_500"),
        ("subscription_data[metadata][kiln_org]", org_text.as_str()),
        ("subscription_data[metadata][kiln_plan]", "monthly_500"),
    ];
    for (key, value) in expected {
        assert_eq!(sent[0].field(key), Some(value), "{key} in {:?}", sent[0].form);
    }
    assert!(sent[0].form.iter().all(|(k, _)| !k.starts_with("payment_intent_data")));
    assert_eq!(stripe.session(&session).unwrap()["url"], created["checkout_url"]);
    let response = post(&server, &token, "/v1/plans/checkout", &json!({"plan": "yearly_9000"})).await;
    assert_eq!(error_code(response).await, (400, "unknown_plan".into()));
    let key = server.api_key(&account, &WRITE, "live").await;
    let response = post(&server, &key, "/v1/plans/checkout", &json!({"plan": "monthly_500"})).await;
    assert_eq!(error_code(response).await, (403, "user_required".into()));
    assert_eq!(stripe.requests().len(), 1);

    // The first invoice before the session's completed event: granted; completed grants nothing.
    let metadata = json!({"kiln_org": org_text, "kiln_plan": "monthly_500"});
    let invoice = |id: &str| {
        stub::event("invoice.paid", stub::invoice_paid_object(id, "sub_billing_plan", 3_900, "eur", metadata.clone()))
    };
    let first = invoice("in_billing_first").to_string();
    assert_eq!(deliver_signed(&server, &first, SECRET).await, "applied");
    assert_eq!(balances(&server, &token).await, [500, 0, 0]);
    let completed = stub::event(
        "checkout.session.completed",
        stub::checkout_session_object(
            &session,
            "subscription",
            "paid",
            3_900,
            "eur",
            metadata.clone(),
            None,
            Some("sub_billing_plan"),
        ),
    );
    assert_eq!(send(&server, &completed).await, "ignored");
    assert_eq!(balances(&server, &token).await, [500, 0, 0]);
    // The same invoice again (the same event, or another event of it): once.
    assert_eq!(deliver_signed(&server, &first, SECRET).await, "duplicate");
    assert_eq!(send(&server, &invoice("in_billing_first")).await, "duplicate");
    assert_eq!(balances(&server, &token).await, [500, 0, 0]);
    // Next month's invoice.
    assert_eq!(send(&server, &invoice("in_billing_second")).await, "applied");
    assert_eq!(balances(&server, &token).await, [1_000, 0, 0]);

    // Invoices that are not this organisation's plan grant nothing: an organisation that never
    // checked out a plan, an unknown plan, an organisation that does not exist, no metadata.
    let stranger = server.signup("billing-plan-stranger@example.com").await;
    let not_kiln = [
        json!({"kiln_org": stranger.org_id.to_string(), "kiln_plan": "monthly_500"}),
        json!({"kiln_org": org_text, "kiln_plan": "monthly_9000"}),
        json!({"kiln_org": Uuid::now_v7().to_string(), "kiln_plan": "monthly_500"}),
        json!({}),
    ];
    for (n, metadata) in not_kiln.into_iter().enumerate() {
        let object = stub::invoice_paid_object(&format!("in_billing_other_{n}"), "sub_other", 3_900, "eur", metadata);
        assert_eq!(send(&server, &stub::event("invoice.paid", object)).await, "ignored", "invoice {n}");
    }
    assert_eq!(balances(&server, &stranger.access_token).await, [0, 0, 0]);
    assert_eq!(balances(&server, &token).await, [1_000, 0, 0]);

    let purchases: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT kind, invoice_id, credits, amount FROM purchases ORDER BY created_at")
            .fetch_all(&server.db)
            .await
            .unwrap();
    assert_eq!(
        purchases,
        [
            ("plan".to_string(), "in_billing_first".to_string(), 500, 3_900),
            ("plan".to_string(), "in_billing_second".to_string(), 500, 3_900)
        ]
    );
    let ledger = postings(&server, org).await;
    let summary: Vec<(&str, Option<&str>)> =
        ledger.iter().map(|p| (p.reason.as_str(), p.stripe_ref.as_deref())).collect();
    assert_eq!(summary, [("subscription", Some("in_billing_first")), ("subscription", Some("in_billing_second"))]);
    assert_eq!(ledger[1].entries, entries(&[("stripe", -500), ("available", 500)]));
    assert_ledger(&server, org, &token).await;
    assert_ledger(&server, stranger.org_id, &stranger.access_token).await;
}

/// `GET /v1/studio/claim` with the claim token.
async fn claim_of(server: &TestServer, token: &str) -> Value {
    let response = get(server, token, "/v1/studio/claim").await;
    assert_eq!(response.status(), 200, "claim: {:?}", response.text().await);
    response.json().await.unwrap()
}

/// A whole job in a minute or two (as in tests/api/worker.rs): preview, 100-px views, GLB only.
fn ci_settings() -> Value {
    json!({"preset": "preview", "max_side": 100, "train_steps": 400, "formats": ["glb"]})
}

/// How long the Studio job may take on a busy 2-core machine.
const JOB_TIMEOUT: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn studio_without_an_account_pays_uploads_runs_one_job_and_downloads_its_glb() {
    let Some(Billing { server, stripe }) = start().await else { return };
    let Some(photos) = support::bunny_subset() else { return };

    // No account: a Checkout Session for Studio's price and a claim token.
    let response = server.http.post(server.at("/v1/studio/checkout")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let bought: Value = response.json().await.unwrap();
    let claim = bought["claim_token"].as_str().unwrap().to_string();
    assert!(claim.starts_with("kiln_claim_"), "{claim}");
    let session = bought["session_id"].as_str().unwrap().to_string();
    let claim_id: Uuid = bought["claim_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        (&bought["amount"], &bought["currency"], &bought["preset"], &bought["max_photos"], &bought["credits"]),
        (&json!(900), &json!("eur"), &json!("full"), &json!(300), &json!(45))
    );
    let org: Uuid = sqlx::query_scalar("SELECT org_id FROM studio_claims WHERE id = $1")
        .bind(claim_id)
        .fetch_one(&server.db)
        .await
        .unwrap();
    let sent = stripe.requests();
    assert_eq!(sent.len(), 1);
    let org_text = org.to_string();
    for (key, value) in [
        ("mode", "payment"),
        ("line_items[0][price_data][unit_amount]", "900"),
        ("line_items[0][price_data][currency]", "eur"),
        ("line_items[0][quantity]", "1"),
        ("metadata[kiln_org]", org_text.as_str()),
    ] {
        assert_eq!(sent[0].field(key), Some(value), "{key} in {:?}", sent[0].form);
    }
    assert_eq!(stripe.session(&session).unwrap()["url"], bought["checkout_url"]);

    // Not paid yet: the token shows its claim and does nothing else.
    assert_eq!(claim_of(&server, &claim).await["state"], "pending");
    let declared: Vec<Value> = photos
        .iter()
        .map(|(name, bytes)| {
            json!({"name": name, "size": bytes.len(), "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))})
        })
        .collect();
    let response = post(&server, &claim, "/v1/uploads", &json!({"files": declared})).await;
    assert_eq!(error_code(response).await, (402, "payment_pending".into()));
    assert_eq!(error_code(get(&server, &claim, "/v1/credits").await).await, (402, "payment_pending".into()));

    // Paid (signed webhook): the claim is paid, its organisation holds Studio's credits.
    let event = stub::event(
        "checkout.session.completed",
        stub::checkout_session_object(
            &session,
            "payment",
            "paid",
            900,
            "eur",
            json!({"kiln_org": org_text}),
            Some(&pi()),
            None,
        ),
    );
    assert_eq!(send(&server, &event).await, "applied");
    assert_eq!(claim_of(&server, &claim).await["state"], "paid");
    assert_eq!(balances(&server, &claim).await, [45, 0, 0]);

    // One upload.
    let upload_id = upload(&server, &claim, &photos).await;
    let response = post(&server, &claim, "/v1/uploads", &json!({"files": declared})).await;
    assert_eq!(error_code(response).await, (409, "claim_used".into()));
    assert_eq!(claim_of(&server, &claim).await["upload_id"], json!(upload_id));
    // What a claim may not do.
    let batch = json!({"items": [{"upload_id": upload_id}]});
    assert_eq!(error_code(post(&server, &claim, "/v1/batches", &batch).await).await, (403, "claim_scope".into()));
    let new_key = json!({"name": "k", "scopes": ["jobs:read"], "mode": "live"});
    let response = post(&server, &claim, "/v1/api-keys", &new_key).await;
    assert_eq!(response.status(), 403, "{:?}", response.text().await);

    // One job, reserved at its quote.
    let quote: Value = server
        .http
        .post(server.at("/v1/quotes"))
        .json(&json!({"photos": photos.len(), "preset": "preview"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((photos.len(), quote["credits"].as_i64()), (20, Some(2)), "preview of 20 photos: 1 + ⌈20 × 2 / 100⌉");
    let job = support::submit(&server, &claim, upload_id, ci_settings(), "standard").await;
    assert_eq!(job["credits"], json!({"quoted": 2, "reserved": 2, "charged": 0, "released": 0}));
    let id = job["id"].as_str().unwrap().to_string();
    let again = json!({"upload_id": upload_id, "settings": ci_settings()});
    assert_eq!(error_code(post(&server, &claim, "/v1/jobs", &again).await).await, (409, "claim_used".into()));
    assert_eq!(balances(&server, &claim).await, [43, 2, 0], "the refused second job reserved nothing");
    assert_eq!(claim_of(&server, &claim).await["job_id"], json!(id));

    // A real worker runs it; the claim token downloads the GLB.
    let started = std::time::Instant::now();
    let mut worker = support::spawn_worker(&server, "studio", true);
    let done =
        support::wait_for(&server, &claim, &id, JOB_TIMEOUT, |j| j["state"] != "queued" && j["state"] != "running")
            .await;
    println!("the Studio job ran in {:.0?}", started.elapsed());
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert!(support::wait_exit(&mut worker, Duration::from_secs(60)).await.success());
    assert_eq!(done["credits"], json!({"quoted": 2, "reserved": 2, "charged": 2, "released": 0}));
    let output = done["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "model.glb").expect("a GLB").clone();
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = no_redirects
        .get(server.at(&format!("/v1/jobs/{id}/outputs/model.glb")))
        .bearer_auth(&claim)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let glb = server.http.get(&location).send().await.unwrap().bytes().await.unwrap();
    assert!(glb.starts_with(b"glTF"), "a binary glTF");
    assert_eq!(glb.len() as u64, output["size"].as_u64().unwrap());
    assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&glb)), output["sha256"].as_str().unwrap());
    // The job's credits were spent; the claim still cannot start another.
    assert_eq!(balances(&server, &claim).await, [43, 0, 0]);
    assert_eq!(error_code(post(&server, &claim, "/v1/jobs", &again).await).await, (409, "claim_used".into()));
    let ledger = postings(&server, org).await;
    let reasons: Vec<&str> = ledger.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons, ["studio", "reserve", "capture"]);
    assert_eq!(ledger[0].entries, entries(&[("stripe", -45), ("available", 45)]));
    assert_eq!(ledger[2].entries, entries(&[("reserved", -2), ("spend", 2)]));
    assert_ledger(&server, org, &claim).await;
    std::fs::remove_dir_all(support::work_dir("studio")).unwrap();
}

/// Studio sells one job at its preset "or a smaller one" (`StudioPurchase::preset`): a claim's
/// job above it (`raw` over `full`) is refused and reserves nothing, even when the claim's
/// credits would cover it.
#[tokio::test]
async fn a_studio_claim_cannot_run_a_preset_above_the_one_it_bought() {
    let Some(Billing { server, stripe: _stripe }) = start().await else { return };
    let response = server.http.post(server.at("/v1/studio/checkout")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let bought: Value = response.json().await.unwrap();
    assert_eq!(bought["preset"], "full");
    let claim = bought["claim_token"].as_str().unwrap().to_string();
    let session = bought["session_id"].as_str().unwrap();
    let event = session_event("checkout.session.completed", session, "paid", 900, Uuid::nil(), &pi());
    assert_eq!(send(&server, &event).await, "applied");
    assert_eq!(balances(&server, &claim).await, [45, 0, 0]);
    let upload_id = upload(&server, &claim, &one_photo()).await;
    let quote: Value = server
        .http
        .post(server.at("/v1/quotes"))
        .json(&json!({"photos": 1, "preset": "raw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(quote["credits"], 21, "the credits alone would cover it");

    let response =
        post(&server, &claim, "/v1/jobs", &json!({"upload_id": upload_id, "settings": {"preset": "raw"}})).await;
    let status = response.status();
    assert!(status.is_client_error(), "a raw job on a full Studio claim: {status} {:?}", response.text().await);
    assert_eq!(balances(&server, &claim).await, [45, 0, 0], "nothing reserved");
    assert!(claim_of(&server, &claim).await["job_id"].is_null(), "the claim's one job is not used up");
}
