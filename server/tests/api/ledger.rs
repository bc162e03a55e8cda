//! What a customer sees of their credits: the ledger (every movement of a grant, reservations,
//! a capture and a release, paged and filtered, summing to `GET /v1/credits`, with the
//! balances after each), usage per job in JSON and CSV (the same rows), purchases with their
//! receipts, and none of it visible to another organisation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support;

use chrono::{DateTime, Duration as TimeDelta, SecondsFormat, Utc};
use common::{Account, Options, TestServer, error_code};
use kiln_server::config::BillingConfig;
use serde_json::{Value, json};
use support::{get, one_photo, post, submit, upload, worker_call};
use uuid::Uuid;

const WRITE: [&str; 2] = ["jobs:read", "jobs:write"];

/// A server whose signups get no credits, so balances are exactly what the test moves.
pub async fn start_exact() -> Option<TestServer> {
    TestServer::start_with(Options {
        billing: BillingConfig { signup_credits: 0, ..BillingConfig::without_stripe() },
        ..Options::default()
    })
    .await
}

/// Signs `email` up and makes the user staff, as `kiln-server admin promote` does.
pub async fn staff(server: &TestServer, email: &str) -> Account {
    let account = server.signup(email).await;
    let promoted = sqlx::query("UPDATE users SET is_admin = true WHERE email = $1")
        .bind(email)
        .execute(&server.db)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(promoted, 1);
    account
}

/// Grants (or, negative, revokes) `credits` to `org` as `admin`; answers the balances.
pub async fn grant(server: &TestServer, admin: &Account, org: Uuid, credits: i64, reason: &str) -> Value {
    let body = json!({"credits": credits, "reason": reason});
    let response = post(server, &admin.access_token, &format!("/v1/admin/orgs/{org}/credits"), &body).await;
    assert_eq!(response.status(), 201, "grant: {:?}", response.text().await);
    response.json().await.unwrap()
}

/// The server's `path` with `query` encoded.
fn url(server: &TestServer, path: &str, query: &[(&str, String)]) -> url::Url {
    let mut url = url::Url::parse(&server.at(path)).unwrap();
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// `GET path?query` as `key`, answering (status, JSON body).
async fn get_query(server: &TestServer, key: &str, path: &str, query: &[(&str, String)]) -> (u16, Value) {
    let response = server.http.get(url(server, path, query)).bearer_auth(key).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn ledger(server: &TestServer, key: &str, query: &[(&str, String)]) -> Vec<Value> {
    let (status, body) = get_query(server, key, "/v1/credits/ledger", query).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().unwrap().clone()
}

fn i(value: &Value) -> i64 {
    value.as_i64().unwrap_or_else(|| panic!("not an integer: {value}"))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One organisation's history: 1000 credits granted; job A (preview) canceled while queued
/// (released), job B (rush) leased and succeeded (captured, 12.5 GPU-seconds), job C (no preset:
/// medium) still queued (reserved), job T with a test key (never charged).
struct Scenario {
    server: TestServer,
    account: Account,
    key: String,
    a: Value,
    b: Value,
    c: Value,
    t: Value,
}

async fn scenario(email: &str) -> Option<Scenario> {
    let server = start_exact().await?;
    let admin = staff(&server, &format!("staff-{email}")).await;
    let account = server.signup(email).await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let test_key = server.api_key(&account, &WRITE, "test").await;
    grant(&server, &admin, account.org_id, 1000, "welcome pack").await;
    let upload_id = upload(&server, &key, &one_photo()).await;

    let a = submit(&server, &key, upload_id, json!({"preset": "preview"}), "standard").await;
    let b = submit(&server, &key, upload_id, json!({"preset": "preview"}), "rush").await;
    let c = submit(&server, &key, upload_id, json!({}), "standard").await;
    let a_id = a["id"].as_str().unwrap();
    let response = post(&server, &key, &format!("/v1/jobs/{a_id}/cancel"), &json!({})).await;
    assert_eq!(response.status(), 200);
    // Rush goes first: the worker gets B.
    let lease = worker_call(&server, "/v1/worker/lease", &json!({"worker_id": "ledger-worker", "device": "cpu"})).await;
    assert_eq!(lease.status(), 200);
    let leased: Value = lease.json().await.unwrap();
    let b_id = b["id"].as_str().unwrap();
    assert_eq!(leased["job_id"].as_str(), Some(b_id));
    let finish = json!({"worker_id": "ledger-worker", "attempt": 1, "outcome": "succeeded", "device_seconds": 12.5});
    let response = worker_call(&server, &format!("/v1/worker/jobs/{b_id}/finish"), &finish).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let t = submit(&server, &test_key, upload_id, json!({}), "standard").await;

    let a = support::job(&server, &key, a_id).await;
    let b = support::job(&server, &key, b_id).await;
    assert_eq!(
        (a["state"].as_str(), b["state"].as_str(), c["state"].as_str()),
        (Some("canceled"), Some("succeeded"), Some("queued"))
    );
    for job in [&a, &b, &c] {
        assert!(i(&job["credits"]["quoted"]) > 0, "{job}");
    }
    assert_eq!(i(&a["credits"]["released"]), i(&a["credits"]["quoted"]));
    assert_eq!(i(&b["credits"]["charged"]), i(&b["credits"]["quoted"]));
    assert_eq!(i(&t["credits"]["reserved"]), 0, "test-mode jobs reserve nothing");
    Some(Scenario { server, account, key, a, b, c, t })
}

#[tokio::test]
async fn the_ledger_shows_every_movement_and_sums_to_the_balance() {
    let Some(Scenario { server, account, key, a, b, c, t }) = scenario("ledger-sums@example.com").await else {
        return;
    };
    let (qa, qb, qc) = (i(&a["credits"]["quoted"]), i(&b["credits"]["quoted"]), i(&c["credits"]["quoted"]));
    let (status, credits) = get_query(&server, &key, "/v1/credits", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(credits, json!({"available": 1000 - qb - qc, "reserved": qc, "debt": 0}));

    let all = ledger(&server, &key, &[("limit", "100".into())]).await;
    let reasons: Vec<&str> = all.iter().map(|t| t["reason"].as_str().unwrap()).collect();
    // Newest first: B's capture, A's release, C's, B's and A's reservations, the grant.
    assert_eq!(reasons, ["capture", "release", "reserve", "reserve", "reserve", "grant"]);
    let ids: Vec<Uuid> = all.iter().map(|t| t["id"].as_str().unwrap().parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "ordered by id, newest first");
    let job_of = |t: &Value| t["job_id"].as_str().map(String::from);
    let expected_jobs = [&b, &a, &c, &b, &a].map(|j| j["id"].as_str().map(String::from));
    assert_eq!(all[..5].iter().map(job_of).collect::<Vec<_>>(), expected_jobs);
    let grant_tx = &all[5];
    assert_eq!(grant_tx["note"], "welcome pack");
    assert_eq!((i(&grant_tx["available"]), i(&grant_tx["reserved"]), i(&grant_tx["debt"])), (1000, 0, 0));
    assert!(grant_tx["job_id"].is_null() && grant_tx["stripe_ref"].is_null());
    let moves = |t: &Value| (i(&t["available"]), i(&t["reserved"]), i(&t["debt"]));
    assert_eq!(moves(&all[0]), (0, -qb, 0), "a capture spends the reservation");
    assert_eq!(moves(&all[1]), (qa, -qa, 0), "a release gives it back");
    assert_eq!(moves(&all[2]), (-qc, qc, 0), "a reservation holds the quote");
    // The movements sum to the balances shown, and each balance_after is the running sum.
    let sum = |field: &str| all.iter().map(|t| i(&t[field])).sum::<i64>();
    assert_eq!(json!({"available": sum("available"), "reserved": sum("reserved"), "debt": sum("debt")}), credits);
    assert_eq!(all[0]["balance_after"], credits);
    let mut running = (0, 0, 0);
    for t in all.iter().rev() {
        let (available, reserved, debt) = moves(t);
        running = (running.0 + available, running.1 + reserved, running.2 + debt);
        assert_eq!(t["balance_after"], json!({"available": running.0, "reserved": running.1, "debt": running.2}));
    }
    // The test-mode job moved nothing.
    let t_id = t["id"].as_str().unwrap().to_string();
    assert!(ledger(&server, &key, &[("job_id", t_id)]).await.is_empty());

    // Filters.
    let released = ledger(&server, &key, &[("reason", "release".into())]).await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0], all[1], "a filtered page shows the same transaction, balance_after included");
    let of_a = ledger(&server, &key, &[("job_id", a["id"].as_str().unwrap().into())]).await;
    assert_eq!(of_a.iter().map(|t| t["reason"].as_str().unwrap()).collect::<Vec<_>>(), ["release", "reserve"]);
    let created = |t: &Value| t["created_at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let oldest = created(&all[5]);
    let newest = created(&all[0]);
    assert_eq!(ledger(&server, &key, &[("since", rfc3339(oldest))]).await.len(), 6, "since is inclusive");
    assert_eq!(ledger(&server, &key, &[("until", rfc3339(oldest))]).await.len(), 0, "until is exclusive");
    let later = rfc3339(newest + TimeDelta::seconds(1));
    assert!(ledger(&server, &key, &[("since", later.clone())]).await.is_empty());
    assert_eq!(ledger(&server, &key, &[("until", later)]).await.len(), 6);
    let grants = ledger(&server, &key, &[("reason", "grant".into()), ("until", rfc3339(newest))]).await;
    assert_eq!(grants[..], all[5..], "filters combine");
    let unknown = Uuid::now_v7().to_string();
    for (name, value, code) in [
        ("reason", "bonus", "invalid_query"),
        ("since", "yesterday", "invalid_query"),
        ("job_id", "not-a-uuid", "invalid_query"),
        ("limit", "0", "invalid_query"),
        ("limit", "101", "invalid_query"),
        ("after", unknown.as_str(), "invalid_cursor"),
    ] {
        let query = [(name, value.to_string())];
        let response = server.http.get(url(&server, "/v1/credits/ledger", &query)).bearer_auth(&key).send().await;
        assert_eq!(error_code(response.unwrap()).await, (400, code.to_string()), "{name}={value}");
    }

    // Pages of 4: the same transactions, in the same order, then no next.
    let (status, first) = get_query(&server, &key, "/v1/credits/ledger", &[("limit", "4".into())]).await;
    assert_eq!(status, 200);
    assert_eq!(first["data"].as_array().unwrap()[..], all[..4]);
    assert_eq!(first["next"], all[3]["id"]);
    let after = first["next"].as_str().unwrap().to_string();
    let (_, second) = get_query(&server, &key, "/v1/credits/ledger", &[("limit", "4".into()), ("after", after)]).await;
    assert_eq!(second["data"].as_array().unwrap()[..], all[4..], "balance_after is the same on every page");
    assert!(second["next"].is_null());

    // Another organisation sees none of it, and cannot page from it.
    let other = server.signup("ledger-sums-other@example.com").await;
    let other_key = server.api_key(&other, &WRITE, "live").await;
    assert!(ledger(&server, &other_key, &[]).await.is_empty());
    assert!(ledger(&server, &other_key, &[("job_id", a["id"].as_str().unwrap().into())]).await.is_empty());
    let (status, body) =
        get_query(&server, &other_key, "/v1/credits/ledger", &[("after", all[0]["id"].as_str().unwrap().into())]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_cursor")));
    let (_, other_credits) = get_query(&server, &other_key, "/v1/credits", &[]).await;
    assert_eq!(other_credits, json!({"available": 0, "reserved": 0, "debt": 0}));
    // The ledger needs jobs:read.
    let no_read = server.api_key(&account, &["keys:manage"], "live").await;
    let response = get(&server, &no_read, "/v1/credits/ledger").await;
    assert_eq!(error_code(response).await, (403, "missing_scope".into()));
    let response = server.http.get(server.at("/v1/credits/ledger")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

/// The CSV's columns, in order.
const USAGE_COLUMNS: [&str; 12] = [
    "job_id",
    "created_at",
    "finished_at",
    "state",
    "mode",
    "photos",
    "preset",
    "priority",
    "gpu_seconds",
    "credits_quoted",
    "credits_charged",
    "credits_released",
];

/// A CSV field as the JSON value it stands for, by column.
fn csv_value(column: &str, text: &str) -> Value {
    match column {
        _ if text.is_empty() => Value::Null,
        "photos" | "credits_quoted" | "credits_charged" | "credits_released" => json!(text.parse::<i64>().unwrap()),
        "gpu_seconds" => json!(text.parse::<f64>().unwrap()),
        "created_at" | "finished_at" => json!(rfc3339(text.parse::<DateTime<Utc>>().unwrap())),
        _ => json!(text),
    }
}

/// A JSON usage row in the same form (timestamps normalised).
fn json_value(column: &str, value: &Value) -> Value {
    match (column, value.as_str()) {
        ("created_at" | "finished_at", Some(text)) => json!(rfc3339(text.parse::<DateTime<Utc>>().unwrap())),
        _ => value.clone(),
    }
}

#[tokio::test]
async fn usage_lists_each_job_in_json_and_csv() {
    let Some(Scenario { server, account: _, key, a, b, c, t }) = scenario("ledger-usage@example.com").await else {
        return;
    };
    let (status, report) = get_query(&server, &key, "/v1/usage", &[]).await;
    assert_eq!(status, 200, "{report}");
    let rows = report["data"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["job_id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = [&t, &c, &b, &a].iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected, "newest first");
    let pick = |row: &Value| {
        (
            row["state"].as_str().unwrap().to_string(),
            row["mode"].as_str().unwrap().to_string(),
            row["preset"].as_str().unwrap().to_string(),
            row["priority"].as_str().unwrap().to_string(),
            i(&row["photos"]),
        )
    };
    let owned = |s: &str, m: &str, p: &str, r: &str| (s.to_string(), m.to_string(), p.to_string(), r.to_string(), 1);
    assert_eq!(pick(&rows[0]), owned("queued", "test", "preview", "standard"));
    assert_eq!(pick(&rows[1]), owned("queued", "live", "medium", "standard"), "no preset: medium, the default");
    assert_eq!(pick(&rows[2]), owned("succeeded", "live", "preview", "rush"));
    assert_eq!(pick(&rows[3]), owned("canceled", "live", "preview", "standard"));
    let credits = |row: &Value| {
        (i(&row["credits_quoted"]), i(&row["credits_charged"]), i(&row["credits_released"]), row["gpu_seconds"].clone())
    };
    let (qa, qb, qc) = (i(&a["credits"]["quoted"]), i(&b["credits"]["quoted"]), i(&c["credits"]["quoted"]));
    assert_eq!(credits(&rows[0]), (i(&t["credits"]["quoted"]), 0, 0, json!(0.0)), "test mode: quoted, never charged");
    assert_eq!(credits(&rows[1]), (qc, 0, 0, json!(0.0)));
    assert_eq!(credits(&rows[2]), (qb, qb, 0, json!(12.5)));
    assert_eq!(credits(&rows[3]), (qa, 0, qa, json!(0.0)));
    assert!(rows[1]["finished_at"].is_null() && rows[2]["finished_at"].is_string());
    assert_eq!(report["totals"], json!({"jobs": 4, "photos": 4, "gpu_seconds": 12.5, "credits_charged": qb}));
    // Totals cover the period, not only the rows listed.
    let (_, one) = get_query(&server, &key, "/v1/usage", &[("limit", "1".into())]).await;
    assert_eq!(one["data"].as_array().unwrap()[..], rows[..1]);
    assert_eq!(one["totals"], report["totals"]);
    let b_created: DateTime<Utc> = b["created_at"].as_str().unwrap().parse().unwrap();
    let (_, since_b) = get_query(&server, &key, "/v1/usage", &[("since", rfc3339(b_created))]).await;
    assert_eq!(since_b["data"].as_array().unwrap()[..], rows[..3]);
    assert_eq!(i(&since_b["totals"]["jobs"]), 3);
    let (_, until_b) = get_query(&server, &key, "/v1/usage", &[("until", rfc3339(b_created))]).await;
    assert_eq!(until_b["data"].as_array().unwrap()[..], rows[3..]);
    assert_eq!(until_b["totals"], json!({"jobs": 1, "photos": 1, "gpu_seconds": 0.0, "credits_charged": 0}));

    // CSV, by query or by Accept: a header row, then the same rows.
    let by_query = server.http.get(server.at("/v1/usage?format=csv")).bearer_auth(&key).send().await.unwrap();
    let by_accept =
        server.http.get(server.at("/v1/usage")).bearer_auth(&key).header("Accept", "text/csv").send().await.unwrap();
    let mut bodies = Vec::new();
    for response in [by_query, by_accept] {
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
        bodies.push(response.text().await.unwrap());
    }
    assert_eq!(bodies[0], bodies[1]);
    let mut reader = csv::Reader::from_reader(bodies[0].as_bytes());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), USAGE_COLUMNS);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows.len());
    for (record, row) in records.iter().zip(rows) {
        assert_eq!(row.as_object().unwrap().len(), USAGE_COLUMNS.len(), "the JSON row has the CSV's columns");
        for (column, field) in USAGE_COLUMNS.iter().zip(record) {
            assert_eq!(csv_value(column, field), json_value(column, &row[*column]), "{column}");
        }
    }
    // format=json wins over Accept; bad parameters are refused.
    let response = server
        .http
        .get(server.at("/v1/usage?format=json"))
        .bearer_auth(&key)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    for query in ["format=xml", "limit=0", "limit=1001", "since=soon", "colour=red"] {
        let response = get(&server, &key, &format!("/v1/usage?{query}")).await;
        assert_eq!(error_code(response).await, (400, "invalid_query".into()), "{query}");
    }

    // Another organisation: no rows, a CSV of the header alone.
    let other = server.signup("ledger-usage-other@example.com").await;
    let other_key = server.api_key(&other, &WRITE, "live").await;
    let (_, empty) = get_query(&server, &other_key, "/v1/usage", &[]).await;
    assert_eq!(
        empty,
        json!({"data": [], "totals": {"jobs": 0, "photos": 0, "gpu_seconds": 0.0, "credits_charged": 0}})
    );
    let response = get(&server, &other_key, "/v1/usage?format=csv").await;
    assert_eq!(response.text().await.unwrap(), format!("{}\n", USAGE_COLUMNS.join(",")));
}

#[tokio::test]
async fn purchases_show_their_receipts_and_stay_in_their_organisation() {
    let Some(server) = start_exact().await else { return };
    let account = server.signup("ledger-purchases@example.com").await;
    let key = server.api_key(&account, &WRITE, "live").await;
    let (status, empty) = get_query(&server, &key, "/v1/purchases", &[]).await;
    assert_eq!((status, empty), (200, json!({"data": [], "next": null})));

    // Purchases as the Stripe events write them (their own tests cover that): a pack whose
    // charge Stripe reported, and a plan's invoice whose charge has not arrived yet.
    let org = account.org_id;
    sqlx::query(
        "INSERT INTO checkout_sessions (id, org_id, kind, product, credits, amount, currency)
         VALUES ('cs_test_pack', $1, 'pack', 'pack_100', 100, 1000, 'eur')",
    )
    .bind(org)
    .execute(&server.db)
    .await
    .unwrap();
    let (pack_id, plan_id) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "INSERT INTO purchases (id, org_id, kind, product, checkout_session_id, invoice_id, payment_intent, credits,
                                amount, currency, credits_refunded, amount_refunded, created_at)
         VALUES ($1, $3, 'pack', 'pack_100', 'cs_test_pack', NULL, 'pi_pack', 100, 1000, 'eur', 40, 400,
                 now() - interval '1 hour'),
                ($2, $3, 'plan', 'monthly_500', NULL, 'in_plan', 'pi_plan', 500, 4000, 'eur', 0, 0, now())",
    )
    .bind(pack_id)
    .bind(plan_id)
    .bind(org)
    .execute(&server.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO stripe_charges (payment_intent, charge_id, receipt_url, amount_refunded)
         VALUES ('pi_pack', 'ch_pack', 'https://pay.stripe.com/receipts/pack', 400)",
    )
    .execute(&server.db)
    .await
    .unwrap();

    let (status, page) = get_query(&server, &key, "/v1/purchases", &[]).await;
    assert_eq!(status, 200);
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], json!(plan_id), "newest first");
    assert_eq!(data[0]["kind"], "plan");
    assert_eq!(data[0]["invoice_id"], "in_plan");
    assert!(data[0]["receipt_url"].is_null() && data[0]["checkout_session_id"].is_null());
    let pack = &data[1];
    assert_eq!(pack["receipt_url"], "https://pay.stripe.com/receipts/pack");
    assert_eq!(pack["checkout_session_id"], "cs_test_pack");
    let figures = ["credits", "amount", "credits_refunded", "amount_refunded"].map(|f| i(&pack[f]));
    assert_eq!(
        (figures, pack["currency"].as_str(), pack["product"].as_str()),
        ([100, 1000, 40, 400], Some("eur"), Some("pack_100"))
    );
    assert!(page["next"].is_null());
    // Pages of one.
    let (_, first) = get_query(&server, &key, "/v1/purchases", &[("limit", "1".into())]).await;
    assert_eq!(first["data"].as_array().unwrap()[..], data[..1]);
    let after = first["next"].as_str().unwrap().to_string();
    let (_, second) = get_query(&server, &key, "/v1/purchases", &[("limit", "1".into()), ("after", after)]).await;
    assert_eq!(second["data"].as_array().unwrap()[..], data[1..]);

    // Another organisation sees none, and cannot page from them.
    let other = server.signup("ledger-purchases-other@example.com").await;
    let other_key = server.api_key(&other, &WRITE, "live").await;
    let (_, none) = get_query(&server, &other_key, "/v1/purchases", &[]).await;
    assert_eq!(none, json!({"data": [], "next": null}));
    let response = get(&server, &other_key, &format!("/v1/purchases?after={pack_id}")).await;
    assert_eq!(error_code(response).await, (400, "invalid_cursor".into()));
    let response = get(&server, &key, "/v1/purchases?limit=101").await;
    assert_eq!(error_code(response).await, (400, "invalid_query".into()));
}
