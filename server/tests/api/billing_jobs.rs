//! Jobs and credits against the real server and PostgreSQL (issue 14, "Must show"), with the
//! test playing the workers through the workers' HTTP API (lease, heartbeat, finish) and the
//! reaper expiring leases, without running the engine:
//! - 100 submissions in parallel against 37 credits: exactly 37 accepted, 63 refused with 402
//!   `insufficient_credits`, the balance never shown below zero, and the ledger equal to it;
//! - exactly once: a job whose worker vanished (lease expired, requeued) and that a second
//!   worker finished is charged once; a failed job, a canceled one (queued or running) and one
//!   whose workers were all lost (`worker_lost`) are released in full, once, visibly on the job
//!   and in the ledger, and late or repeated calls move nothing;
//! - test keys' jobs are quoted, never reserved or charged;
//! - a batch reserves against one balance, all or nothing;
//! - `POST /v1/quotes` answers what a job of the same photos, preset and priority is quoted.
//!
//! Every test ends by checking the ledger against what the API shows: each account's entries sum
//! to its balance and to `GET /v1/credits`, every ledger transaction balances, the whole ledger
//! sums to zero, no organisation account is past its bound, and the jobs' open reservations sum
//! to the reserved balance.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Options, TestServer, error_code};
use kiln_server::billing::ledger::{self, Account, Reason, Reference};
use kiln_server::billing::prices::{PresetPrice, PriceTable};
use kiln_server::config::BillingConfig;
use serde_json::{Value, json};
use support::{get, job, one_photo, photo_files, post, submit, upload, wait_for, worker_call};
use uuid::Uuid;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// Options with no signup credits (each test grants exact amounts) and `prices`.
fn billing_options(prices: PriceTable) -> Options {
    Options {
        billing: BillingConfig { signup_credits: 0, prices, ..BillingConfig::without_stripe() },
        ..Options::default()
    }
}

/// The default table with every preview job at exactly 1 credit, whatever its photos.
fn one_credit_previews() -> PriceTable {
    let mut prices = PriceTable::default();
    prices.presets.insert("preview".into(), PresetPrice { base: 1, per_100_photos: 0 });
    prices
}

/// Grants `credits` to `org_id` as an administrator's grant would (a ledger transaction).
async fn grant(server: &TestServer, org_id: Uuid, credits: i64) {
    let mut tx = server.db.begin().await.unwrap();
    let reference = Reference { note: Some("billing test grant".into()), ..Reference::default() };
    ledger::credit(&mut tx, org_id, Reason::Grant, Account::Grants, credits, &reference).await.unwrap();
    tx.commit().await.unwrap();
}

/// `GET /v1/credits`.
async fn credits(server: &TestServer, key: &str) -> Value {
    let response = get(server, key, "/v1/credits").await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn balances(available: i64, reserved: i64, debt: i64) -> Value {
    json!({"available": available, "reserved": reserved, "debt": debt})
}

fn job_credits(quoted: i64, reserved: i64, charged: i64, released: i64) -> Value {
    json!({"quoted": quoted, "reserved": reserved, "charged": charged, "released": released})
}

/// The ledger's lines for `job_id`, in order: (reason, account kind, amount).
async fn job_ledger(server: &TestServer, job_id: &str) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT t.reason, a.kind, e.amount FROM ledger_transactions t
         JOIN ledger_entries e ON e.transaction_id = t.id JOIN credit_accounts a ON a.id = e.account_id
         WHERE t.job_id = $1 ORDER BY t.created_at, t.id, e.id",
    )
    .bind(job_id.parse::<Uuid>().unwrap())
    .fetch_all(&server.db)
    .await
    .unwrap()
}

/// The ledger lines of a reservation of `q` followed by its capture or release.
fn reserved_then(q: i64, end: &str) -> Vec<(String, String, i64)> {
    let line = |reason: &str, kind: &str, amount: i64| (reason.to_string(), kind.to_string(), amount);
    let mut lines = vec![line("reserve", "available", -q), line("reserve", "reserved", q)];
    match end {
        "capture" => lines.extend([line("capture", "reserved", -q), line("capture", "spend", q)]),
        "release" => lines.extend([line("release", "reserved", -q), line("release", "available", q)]),
        _ => {}
    }
    lines
}

async fn scalar(server: &TestServer, sql: &'static str, org_id: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(org_id).fetch_one(&server.db).await.unwrap()
}

/// Checks that `shown` (a `GET /v1/credits` answer for `org_id`) is what the ledger says, and
/// that the ledger holds together (see the module docs).
async fn assert_ledger_matches(server: &TestServer, org_id: Uuid, shown: &Value) {
    let accounts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT a.kind, a.balance, coalesce(sum(e.amount), 0)::bigint FROM credit_accounts a
         LEFT JOIN ledger_entries e ON e.account_id = a.id WHERE a.org_id = $1 GROUP BY a.id, a.kind, a.balance",
    )
    .bind(org_id)
    .fetch_all(&server.db)
    .await
    .unwrap();
    for (kind, balance, sum) in &accounts {
        assert_eq!(balance, sum, "the {kind} account's balance is the sum of its entries");
    }
    let sum_of = |kind: &str| accounts.iter().find(|(k, _, _)| k == kind).map_or(0, |(_, _, sum)| *sum);
    assert_eq!(*shown, balances(sum_of("available"), sum_of("reserved"), -sum_of("debt")), "shown = the ledger's sums");
    let unbalanced = scalar(
        server,
        "SELECT count(*) FROM (SELECT t.id FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
         WHERE t.org_id = $1 GROUP BY t.id HAVING sum(e.amount) <> 0 OR count(*) < 2) u",
        org_id,
    )
    .await;
    assert_eq!(unbalanced, 0, "every ledger transaction balances");
    let empty = scalar(
        server,
        "SELECT count(*) FROM ledger_transactions t WHERE t.org_id = $1
         AND NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id)",
        org_id,
    )
    .await;
    assert_eq!(empty, 0, "no ledger transaction without entries");
    let total: i64 = sqlx::query_scalar("SELECT coalesce(sum(amount), 0)::bigint FROM ledger_entries")
        .fetch_one(&server.db)
        .await
        .unwrap();
    assert_eq!(total, 0, "the whole ledger, system accounts included, sums to zero");
    let out_of_bounds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM credit_accounts
         WHERE (kind IN ('available', 'reserved') AND balance < 0) OR (kind = 'debt' AND balance > 0)",
    )
    .fetch_one(&server.db)
    .await
    .unwrap();
    assert_eq!(out_of_bounds, 0, "no account below zero (or debt above it)");
    let open = scalar(
        server,
        "SELECT coalesce(sum(credits_reserved - credits_charged - credits_released), 0)::bigint FROM jobs WHERE org_id = $1",
        org_id,
    )
    .await;
    assert_eq!(open, sum_of("reserved"), "the jobs' open reservations are the reserved balance");
    let charged =
        scalar(server, "SELECT coalesce(sum(credits_charged), 0)::bigint FROM jobs WHERE org_id = $1", org_id).await;
    let captured = scalar(
        server,
        "SELECT coalesce(sum(e.amount), 0)::bigint FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
         JOIN credit_accounts a ON a.id = e.account_id WHERE t.org_id = $1 AND t.reason = 'capture' AND a.kind = 'spend'",
        org_id,
    )
    .await;
    assert_eq!(charged, captured, "what the jobs show charged is what the ledger spent");
}

/// Leases the next queued job as `worker`: (job id, attempt).
async fn lease(server: &TestServer, worker: &str) -> (String, i64) {
    let response = worker_call(server, "/v1/worker/lease", &json!({"worker_id": worker, "device": "cpu"})).await;
    assert_eq!(response.status(), 200, "lease: {:?}", response.text().await);
    let lease: Value = response.json().await.unwrap();
    (lease["job_id"].as_str().unwrap().to_string(), lease["attempt"].as_i64().unwrap())
}

/// A worker's `finish` call for `id` with `outcome` (a failure says `model_failed`).
async fn finish(server: &TestServer, id: &str, worker: &str, attempt: i64, outcome: &str) -> reqwest::Response {
    let mut body = json!({"worker_id": worker, "attempt": attempt, "outcome": outcome, "device_seconds": 2.5});
    if outcome == "failed" {
        body["error"] = json!({"code": "model_failed", "message": "training diverged", "class": "internal"});
    }
    worker_call(server, &format!("/v1/worker/jobs/{id}/finish"), &body).await
}

/// Signs up `email` with a live and a test key and one complete upload of one photo:
/// (org id, live key, test key, upload id).
async fn customer(server: &TestServer, email: &str) -> (Uuid, String, String, Uuid) {
    let account = server.signup(email).await;
    let live = server.api_key(&account, &WRITE, "live").await;
    let test = server.api_key(&account, &WRITE, "test").await;
    let upload_id = upload(server, &live, &one_photo()).await;
    (account.org_id, live, test, upload_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_hundred_parallel_submissions_against_37_credits_accept_exactly_37() {
    let Some(server) = TestServer::start_with(billing_options(one_credit_previews())).await else { return };
    let (org_id, key, _, upload_id) = customer(&server, "billing-race@example.com").await;
    assert_eq!(credits(&server, &key).await, balances(0, 0, 0), "no signup credits");
    grant(&server, org_id, 37).await;
    assert_eq!(credits(&server, &key).await, balances(37, 0, 0));
    let quote: Value =
        post(&server, &key, "/v1/quotes", &json!({"photos": 1, "preset": "preview"})).await.json().await.unwrap();
    assert_eq!(quote["credits"], 1, "each submission costs one credit");

    // The 100 submissions start together, with a reader of the balance that reads once before
    // and on until the last answer.
    let server = Arc::new(server);
    let start = Arc::new(tokio::sync::Barrier::new(101));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (server, key, start, done) = (server.clone(), key.clone(), start.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = vec![credits(&server, &key).await];
            start.wait().await;
            while !done.load(Ordering::SeqCst) {
                seen.push(credits(&server, &key).await);
            }
            seen
        })
    };
    let mut submissions = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (server, key, start) = (server.clone(), key.clone(), start.clone());
        submissions.spawn(async move {
            start.wait().await;
            let body = json!({"upload_id": upload_id, "settings": {"preset": "preview"}});
            let response = post(&server, &key, "/v1/jobs", &body).await;
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        });
    }
    let answers: Vec<(u16, Value)> = submissions.join_all().await;
    done.store(true, Ordering::SeqCst);
    let seen = watcher.await.unwrap();

    let statuses: std::collections::BTreeMap<u16, usize> =
        answers.iter().fold(Default::default(), |mut counts, (status, _)| {
            *counts.entry(*status).or_default() += 1;
            counts
        });
    let odd: Vec<&(u16, Value)> = answers.iter().filter(|(status, _)| ![201, 402].contains(status)).collect();
    assert_eq!(statuses, [(201, 37), (402, 63)].into(), "answers by status; others: {odd:?}");
    let mut accepted = std::collections::BTreeSet::new();
    for (status, body) in &answers {
        if *status == 201 {
            assert_eq!((body["state"].as_str(), body["photos"].as_i64()), (Some("queued"), Some(1)));
            assert_eq!(body["credits"], job_credits(1, 1, 0, 0));
            accepted.insert(body["id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(body["error"]["code"], "insufficient_credits", "{body}");
        }
    }
    assert_eq!(accepted.len(), 37, "37 different jobs");

    let after = credits(&server, &key).await;
    assert_eq!(after, balances(0, 37, 0));
    assert_ledger_matches(&server, org_id, &after).await;
    assert_eq!(seen[0], balances(37, 0, 0), "read before the race");
    for shown in &seen {
        let (available, reserved) = (shown["available"].as_i64().unwrap(), shown["reserved"].as_i64().unwrap());
        assert!(available >= 0 && available + reserved == 37 && shown["debt"] == 0, "shown mid-race: {shown}");
    }
    // What the database holds: the 37 jobs, each reserving one credit once; the refusals wrote
    // nothing (no job, no event, no ledger line).
    let reserved: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT id, credits_quoted, credits_reserved FROM jobs WHERE org_id = $1 AND state = 'queued' ORDER BY id",
    )
    .bind(org_id)
    .fetch_all(&server.db)
    .await
    .unwrap();
    assert_eq!(reserved.len(), 37);
    assert!(reserved.iter().all(|(id, quoted, held)| accepted.contains(&id.to_string()) && *quoted == 1 && *held == 1));
    assert_eq!(scalar(&server, "SELECT count(*) FROM jobs WHERE org_id = $1", org_id).await, 37);
    assert_eq!(scalar(&server, "SELECT count(*) FROM job_events WHERE org_id = $1", org_id).await, 37);
    let reservations: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reason, count(DISTINCT job_id) FROM ledger_transactions WHERE org_id = $1 GROUP BY reason ORDER BY reason",
    )
    .bind(org_id)
    .fetch_all(&server.db)
    .await
    .unwrap();
    assert_eq!(reservations, [("grant".to_string(), 0), ("reserve".to_string(), 37)]);
    assert_eq!(scalar(&server, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1", org_id).await, 38);

    // The database itself refuses to take available below zero, whatever the code does.
    let mut tx = server.db.begin().await.unwrap();
    let transaction = Uuid::now_v7();
    sqlx::query("INSERT INTO ledger_transactions (id, org_id, reason, note) VALUES ($1, $2, 'revoke', 'overdraw')")
        .bind(transaction)
        .bind(org_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let overdrawn = sqlx::query(
        "INSERT INTO ledger_entries (transaction_id, account_id, amount)
         SELECT $1, id, -1 FROM credit_accounts WHERE org_id = $2 AND kind = 'available'",
    )
    .bind(transaction)
    .bind(org_id)
    .execute(&mut *tx)
    .await;
    assert!(overdrawn.is_err_and(|e| e.to_string().contains("available_not_negative")));
    drop(tx);
    assert_eq!(credits(&server, &key).await, balances(0, 37, 0));
}

#[tokio::test]
async fn a_job_whose_worker_vanished_and_another_finished_is_charged_once() {
    let options = Options { lease: Duration::from_secs(2), ..billing_options(PriceTable::default()) };
    let Some(server) = TestServer::start_with(options).await else { return };
    let (org_id, key, _, upload_id) = customer(&server, "billing-once@example.com").await;
    grant(&server, org_id, 20).await;
    // Medium, one photo, default table: 5 + ⌈5/100⌉ = 6.
    let quote: Value =
        post(&server, &key, "/v1/quotes", &json!({"photos": 1, "preset": "medium"})).await.json().await.unwrap();
    assert_eq!(quote["credits"], 6);
    let submitted = submit(&server, &key, upload_id, json!({"preset": "medium"}), "standard").await;
    let id = submitted["id"].as_str().unwrap();
    assert_eq!(submitted["credits"], job_credits(6, 6, 0, 0));
    assert_eq!(credits(&server, &key).await, balances(14, 6, 0));

    // The first worker takes the job, beats once, and is never heard of again.
    assert_eq!(lease(&server, "vanished").await, (id.to_string(), 1));
    let beat = json!({"worker_id": "vanished", "attempt": 1, "events": []});
    assert_eq!(worker_call(&server, &format!("/v1/worker/jobs/{id}/heartbeat"), &beat).await.status(), 200);
    let requeued = wait_for(&server, &key, id, Duration::from_secs(15), |j| j["state"] != "running").await;
    assert_eq!((requeued["state"].as_str(), requeued["attempts"].as_i64()), (Some("queued"), Some(1)));
    assert_eq!(requeued["credits"], job_credits(6, 6, 0, 0), "requeued: still reserved, nothing settled");
    assert_eq!(credits(&server, &key).await, balances(14, 6, 0));
    assert_eq!(job_ledger(&server, id).await, reserved_then(6, "reserve only"));

    // A second worker finishes it.
    assert_eq!(lease(&server, "heir").await, (id.to_string(), 2));
    let response = finish(&server, id, "heir", 2, "succeeded").await;
    assert_eq!(response.status(), 200);
    let done = job(&server, &key, id).await;
    assert_eq!((done["state"].as_str(), done["attempts"].as_i64()), (Some("succeeded"), Some(2)));
    assert_eq!(done["credits"], job_credits(6, 6, 6, 0));
    // The vanished worker comes back and finishes too (refused); the heir retries its finish
    // (answered, nothing moves).
    assert_eq!(error_code(finish(&server, id, "vanished", 1, "succeeded").await).await, (409, "lease_lost".into()));
    let replay = finish(&server, id, "heir", 2, "succeeded").await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.json::<Value>().await.unwrap()["state"], "succeeded");
    assert_eq!(
        error_code(post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await).await,
        (409, "job_final".into())
    );

    assert_eq!(job(&server, &key, id).await["credits"], job_credits(6, 6, 6, 0));
    assert_eq!(job_ledger(&server, id).await, reserved_then(6, "capture"), "one reserve, one capture");
    let after = credits(&server, &key).await;
    assert_eq!(after, balances(14, 0, 0));
    assert_ledger_matches(&server, org_id, &after).await;
}

#[tokio::test]
async fn a_failed_job_is_released_on_the_job_and_in_the_ledger() {
    let Some(server) = TestServer::start_with(billing_options(PriceTable::default())).await else { return };
    let (org_id, key, _, upload_id) = customer(&server, "billing-failed@example.com").await;
    grant(&server, org_id, 20).await;
    // Full, one photo: 15 + ⌈10/100⌉ = 16.
    let submitted = submit(&server, &key, upload_id, json!({"preset": "full"}), "standard").await;
    let id = submitted["id"].as_str().unwrap();
    assert_eq!(submitted["credits"], job_credits(16, 16, 0, 0));
    assert_eq!(credits(&server, &key).await, balances(4, 16, 0));
    // Another 16 is not there while the first holds its reservation.
    let response =
        post(&server, &key, "/v1/jobs", &json!({"upload_id": upload_id, "settings": {"preset": "full"}})).await;
    assert_eq!(error_code(response).await, (402, "insufficient_credits".into()));

    assert_eq!(lease(&server, "failing").await, (id.to_string(), 1));
    assert_eq!(finish(&server, id, "failing", 1, "failed").await.status(), 200);
    let failed = job(&server, &key, id).await;
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("model_failed")));
    assert_eq!(failed["credits"], job_credits(16, 16, 0, 16));
    // The same finish again is answered and releases nothing more.
    assert_eq!(finish(&server, id, "failing", 1, "failed").await.status(), 200);
    assert_eq!(job_ledger(&server, id).await, reserved_then(16, "release"));
    let after = credits(&server, &key).await;
    assert_eq!(after, balances(20, 0, 0), "back to the start");
    assert_ledger_matches(&server, org_id, &after).await;
    // The released credits pay for the next job.
    let again = submit(&server, &key, upload_id, json!({"preset": "full"}), "standard").await;
    assert_eq!(again["credits"], job_credits(16, 16, 0, 0));
    assert_ledger_matches(&server, org_id, &balances(4, 16, 0)).await;
}

#[tokio::test]
async fn canceled_jobs_are_released_in_full_once() {
    let Some(server) = TestServer::start_with(billing_options(PriceTable::default())).await else { return };
    let (org_id, key, _, upload_id) = customer(&server, "billing-cancel@example.com").await;
    grant(&server, org_id, 10).await;
    // Preview, one photo: 1 + ⌈2/100⌉ = 2; rush 200 %: 4.
    let queued = submit(&server, &key, upload_id, json!({"preset": "preview"}), "standard").await;
    let id = queued["id"].as_str().unwrap();
    assert_eq!(queued["credits"], job_credits(2, 2, 0, 0));
    assert_eq!(credits(&server, &key).await, balances(8, 2, 0));

    // Queued: canceled at once, released in full.
    let response = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(response.status(), 200);
    let canceled: Value = response.json().await.unwrap();
    assert_eq!(canceled["state"], "canceled");
    assert_eq!(canceled["credits"], job_credits(2, 2, 0, 2));
    assert_eq!(credits(&server, &key).await, balances(10, 0, 0));
    let response = post(&server, &key, &format!("/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(error_code(response).await, (409, "job_final".into()));
    assert_eq!(job(&server, &key, id).await["credits"], job_credits(2, 2, 0, 2));
    assert_eq!(job_ledger(&server, id).await, reserved_then(2, "release"), "one release, after the second cancel too");

    // Running: flagged, still reserved until its worker stops; then released in full.
    let rush = submit(&server, &key, upload_id, json!({"preset": "preview"}), "rush").await;
    let rush_id = rush["id"].as_str().unwrap();
    assert_eq!(rush["credits"], job_credits(4, 4, 0, 0));
    assert_eq!(lease(&server, "stopping").await, (rush_id.to_string(), 1));
    let flagged: Value =
        post(&server, &key, &format!("/v1/jobs/{rush_id}/cancel"), &json!({})).await.json().await.unwrap();
    assert_eq!((flagged["state"].as_str(), flagged["cancel_requested"].as_bool()), (Some("running"), Some(true)));
    assert_eq!(flagged["credits"], job_credits(4, 4, 0, 0));
    assert_eq!(credits(&server, &key).await, balances(6, 4, 0));
    assert_eq!(finish(&server, rush_id, "stopping", 1, "canceled").await.status(), 200);
    let stopped = job(&server, &key, rush_id).await;
    assert_eq!((stopped["state"].as_str(), stopped["credits"].clone()), (Some("canceled"), job_credits(4, 4, 0, 4)));
    assert_eq!(job_ledger(&server, rush_id).await, reserved_then(4, "release"));
    let after = credits(&server, &key).await;
    assert_eq!(after, balances(10, 0, 0));
    assert_ledger_matches(&server, org_id, &after).await;
}

#[tokio::test]
async fn a_job_whose_workers_are_all_lost_is_released_once() {
    let options = Options { lease: Duration::from_secs(2), max_attempts: 2, ..billing_options(PriceTable::default()) };
    let Some(server) = TestServer::start_with(options).await else { return };
    let (org_id, key, _, upload_id) = customer(&server, "billing-lost@example.com").await;
    grant(&server, org_id, 5).await;
    let submitted = submit(&server, &key, upload_id, json!({"preset": "preview"}), "standard").await;
    let id = submitted["id"].as_str().unwrap();
    assert_eq!(submitted["credits"], job_credits(2, 2, 0, 0));

    assert_eq!(lease(&server, "lost-1").await, (id.to_string(), 1));
    let requeued = wait_for(&server, &key, id, Duration::from_secs(15), |j| j["state"] != "running").await;
    assert_eq!(requeued["state"], "queued");
    assert_eq!(requeued["credits"], job_credits(2, 2, 0, 0));
    assert_eq!(credits(&server, &key).await, balances(3, 2, 0));
    assert_eq!(lease(&server, "lost-2").await, (id.to_string(), 2));
    let failed = wait_for(&server, &key, id, Duration::from_secs(15), |j| j["state"] != "running").await;
    assert_eq!((failed["state"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("worker_lost")));
    assert_eq!(failed["credits"], job_credits(2, 2, 0, 2));
    // The last worker's late success is refused (the reaper's ending forgot the worker, so this
    // is no retry of an accepted finish), and nothing is captured after the release.
    let late = finish(&server, id, "lost-2", 2, "succeeded").await;
    assert_eq!(error_code(late).await, (409, "lease_lost".into()));
    assert_eq!(job(&server, &key, id).await["credits"], job_credits(2, 2, 0, 2));
    assert_eq!(job_ledger(&server, id).await, reserved_then(2, "release"));
    let after = credits(&server, &key).await;
    assert_eq!(after, balances(5, 0, 0));
    assert_ledger_matches(&server, org_id, &after).await;
}

#[tokio::test]
async fn test_keys_jobs_are_quoted_and_never_charged() {
    let Some(server) = TestServer::start_with(billing_options(PriceTable::default())).await else { return };
    let (org_id, live, test, upload_id) = customer(&server, "billing-test-keys@example.com").await;
    // No credits at all: a live job is refused, a test job is not.
    let response = post(&server, &live, "/v1/jobs", &json!({"upload_id": upload_id})).await;
    assert_eq!(error_code(response).await, (402, "insufficient_credits".into()));
    let first = submit(&server, &test, upload_id, json!({}), "standard").await;
    assert_eq!((first["mode"].as_str(), first["settings"]["preset"].as_str()), (Some("test"), Some("preview")));
    assert_eq!(first["credits"], job_credits(2, 0, 0, 0), "quoted as a preview of one photo, nothing reserved");
    assert_eq!(credits(&server, &test).await, balances(0, 0, 0));

    grant(&server, org_id, 5).await;
    let first_id = first["id"].as_str().unwrap();
    assert_eq!(lease(&server, "free").await, (first_id.to_string(), 1));
    assert_eq!(finish(&server, first_id, "free", 1, "succeeded").await.status(), 200);
    let succeeded = job(&server, &test, first_id).await;
    assert_eq!(
        (succeeded["state"].as_str(), succeeded["credits"].clone()),
        (Some("succeeded"), job_credits(2, 0, 0, 0))
    );
    let second = submit(&server, &test, upload_id, json!({"preset": "preview"}), "standard").await;
    let second_id = second["id"].as_str().unwrap();
    let canceled: Value =
        post(&server, &test, &format!("/v1/jobs/{second_id}/cancel"), &json!({})).await.json().await.unwrap();
    assert_eq!((canceled["state"].as_str(), canceled["credits"].clone()), (Some("canceled"), job_credits(2, 0, 0, 0)));
    let third = submit(&server, &test, upload_id, json!({}), "standard").await;
    let third_id = third["id"].as_str().unwrap();
    assert_eq!(lease(&server, "free").await, (third_id.to_string(), 1));
    assert_eq!(finish(&server, third_id, "free", 1, "failed").await.status(), 200);
    assert_eq!(job(&server, &test, third_id).await["credits"], job_credits(2, 0, 0, 0));

    let after = credits(&server, &live).await;
    assert_eq!(after, balances(5, 0, 0), "the grant, untouched");
    assert_eq!(scalar(&server, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1", org_id).await, 1);
    assert_eq!(
        scalar(&server, "SELECT count(*) FROM ledger_transactions WHERE job_id IS NOT NULL AND org_id = $1", org_id)
            .await,
        0
    );
    assert_ledger_matches(&server, org_id, &after).await;
}

#[tokio::test]
async fn a_batch_reserves_against_one_balance_all_or_nothing() {
    let Some(server) = TestServer::start_with(billing_options(one_credit_previews())).await else { return };
    let (org_id, key, _, upload_id) = customer(&server, "billing-batch@example.com").await;
    grant(&server, org_id, 5).await;
    let items =
        |n: usize| json!({"items": vec![json!({"upload_id": upload_id}); n], "settings": {"preset": "preview"}});

    let response = post(&server, &key, "/v1/batches", &items(6)).await;
    assert_eq!(response.status(), 402);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"]["code"], "insufficient_credits");
    assert!(refused["error"]["message"].as_str().unwrap().starts_with("items[5]: "), "{refused}");
    for table in ["batches", "jobs", "job_events"] {
        let sql = match table {
            "batches" => "SELECT count(*) FROM batches WHERE org_id = $1",
            "jobs" => "SELECT count(*) FROM jobs WHERE org_id = $1",
            _ => "SELECT count(*) FROM job_events WHERE org_id = $1",
        };
        assert_eq!(scalar(&server, sql, org_id).await, 0, "nothing written in {table}");
    }
    assert_eq!(scalar(&server, "SELECT count(*) FROM ledger_transactions WHERE org_id = $1", org_id).await, 1);
    assert_eq!(credits(&server, &key).await, balances(5, 0, 0));

    let response = post(&server, &key, "/v1/batches", &items(5)).await;
    assert_eq!(response.status(), 201);
    let batch: Value = response.json().await.unwrap();
    assert_eq!(batch["counts"]["queued"], 5);
    for item in batch["items"].as_array().unwrap() {
        let id = item["job_id"].as_str().unwrap();
        assert_eq!(job(&server, &key, id).await["credits"], job_credits(1, 1, 0, 0));
        assert_eq!(job_ledger(&server, id).await, reserved_then(1, "reserve only"));
    }
    let after = credits(&server, &key).await;
    assert_eq!(after, balances(0, 5, 0));
    assert_ledger_matches(&server, org_id, &after).await;
    let response = post(&server, &key, "/v1/batches", &items(1)).await;
    assert_eq!(error_code(response).await, (402, "insufficient_credits".into()));
}

#[tokio::test]
async fn a_quote_is_what_the_job_is_quoted_and_rush_costs_more() {
    // Prices that depend on the photos: three photos, per-photo rates that round up.
    let mut prices = PriceTable { rush_percent: 150, ..PriceTable::default() };
    for (preset, base, per_100_photos) in [("preview", 1, 50), ("medium", 5, 40), ("full", 15, 100)] {
        prices.presets.insert(preset.into(), PresetPrice { base, per_100_photos });
    }
    let Some(server) = TestServer::start_with(billing_options(prices.clone())).await else { return };
    let account = server.signup("billing-quotes@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let test = server.api_key(&account, &WRITE, "test").await;
    let images = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/fixtures/bunny-mini/images");
    let photos: Vec<(String, Vec<u8>)> = photo_files(&images).into_iter().take(3).collect();
    let upload_id = upload(&server, &key, &photos).await;
    grant(&server, account.org_id, 1000).await;
    let published: Value = server.http.get(server.at("/v1/prices")).send().await.unwrap().json().await.unwrap();
    assert_eq!(published, serde_json::to_value(&prices).unwrap(), "the table in force is published");

    // (preset, priority, credits): preview 1 + ⌈150/100⌉ = 3, rush ⌈4.5⌉ = 5; medium (the
    // default) 5 + ⌈120/100⌉ = 7, rush ⌈10.5⌉ = 11; full 15 + 3 = 18, rush 27.
    let cases = [
        (Some("preview"), "standard", 3),
        (Some("preview"), "rush", 5),
        (None, "standard", 7),
        (Some("medium"), "rush", 11),
        (Some("full"), "standard", 18),
        (Some("full"), "rush", 27),
    ];
    let mut reserved = 0;
    for (preset, priority, expected) in cases {
        let mut ask = json!({"photos": 3, "priority": priority});
        let mut settings = json!({});
        if let Some(preset) = preset {
            ask["preset"] = json!(preset);
            settings["preset"] = json!(preset);
        }
        let quote: Value = post(&server, &key, "/v1/quotes", &ask).await.json().await.unwrap();
        assert_eq!(quote["credits"], expected, "{ask}");
        assert_eq!(quote["priority"], priority);
        let standard = quote["standard_credits"].as_i64().unwrap();
        if priority == "rush" {
            assert!(expected > standard, "rush costs more: {quote}");
        } else {
            assert_eq!(expected, standard);
        }
        let submitted = submit(&server, &key, upload_id, settings, priority).await;
        assert_eq!(submitted["photos"], 3);
        assert_eq!(submitted["credits"], job_credits(expected, expected, 0, 0), "{ask}");
        reserved += expected;
    }
    // A test key's job is quoted the same, and reserves nothing.
    let quote: Value =
        post(&server, &key, "/v1/quotes", &json!({"photos": 3, "preset": "preview"})).await.json().await.unwrap();
    let free = submit(&server, &test, upload_id, json!({}), "standard").await;
    assert_eq!(free["credits"], job_credits(quote["credits"].as_i64().unwrap(), 0, 0, 0));
    let after = credits(&server, &key).await;
    assert_eq!(after, balances(1000 - reserved, reserved, 0));
    assert_eq!(reserved, 71);
    assert_ledger_matches(&server, account.org_id, &after).await;
}
