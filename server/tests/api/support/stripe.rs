//! Stripe without the internet: an in-process stub of the one Stripe endpoint Kiln calls
//! (`POST /v1/checkout/sessions`), answering in the shape Stripe documents and recording what it
//! was sent, and builders of the webhook events Stripe sends (Checkout Sessions, invoices,
//! refunded charges) with their `Stripe-Signature` headers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use uuid::Uuid;

/// The only secret key the stub accepts (`Authorization: Bearer …`).
pub const SECRET_KEY: &str = "sk_test_kiln_stub_4eC39HqLyjWDarjtT1zdp7dc";

/// The API version the stub's events carry: the one async-stripe 1.0.0-rc.10 is generated for.
pub const API_VERSION: &str = "2026-09-30.endive";

/// How long Stripe keeps a Checkout Session open: 24 hours, its default.
const SESSION_LIFETIME_SECONDS: i64 = 24 * 3600;

/// One request the stub received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The path without the query, e.g. `/v1/checkout/sessions`.
    pub path: String,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
    pub content_type: Option<String>,
    /// The form body's pairs in order, keys in Stripe's bracket notation
    /// (`line_items[0][price_data][unit_amount]`), percent-decoded.
    pub form: Vec<(String, String)>,
}

impl Recorded {
    /// The value of form field `key` (the first, should it repeat).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    requests: Vec<Recorded>,
    /// Idempotency-Key → the form it came with and the session answered.
    idempotent: HashMap<String, (Vec<(String, String)>, Value)>,
    sessions: Vec<Value>,
    /// Answer sessions with `url: null`, as Stripe does for embedded ones.
    without_url: bool,
}

/// A running stub; stops when dropped.
pub struct StripeStub {
    /// The base to give `StripePayments::new` (`http://127.0.0.1:PORT/`).
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StripeStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a stub on an ephemeral loopback port.
pub async fn start() -> StripeStub {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let app = Router::new()
        .route("/v1/checkout/sessions", post(create_session))
        .fallback(unknown_route)
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    StripeStub { url, shared, task }
}

impl StripeStub {
    /// Every request received so far, in order (refused ones included).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Every Checkout Session created so far (replays of an idempotent request not repeated).
    pub fn sessions(&self) -> Vec<Value> {
        self.shared.lock().unwrap().sessions.clone()
    }

    /// From now on, answers sessions with no `url` (Stripe's schema allows null).
    pub fn answer_without_url(&self) {
        self.shared.lock().unwrap().without_url = true;
    }

    /// The session created with id `id`.
    pub fn session(&self, id: &str) -> Option<Value> {
        self.sessions().into_iter().find(|session| session["id"] == id)
    }
}

/// What the handlers share.
type Stub = State<Arc<Mutex<Shared>>>;

async fn create_session(State(shared): Stub, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let recorded = record(&shared, &method, &uri, &headers, &body);
    if let Err(refusal) = authorize(recorded.authorization.as_deref()) {
        return refusal;
    }
    let mut shared = shared.lock().unwrap();
    if let Some(key) = &recorded.idempotency_key
        && let Some((form, session)) = shared.idempotent.get(key)
    {
        // Stripe compares parameters, not their order (async-stripe encodes metadata from a
        // HashMap, whose order changes between calls).
        let sorted = |pairs: &[(String, String)]| {
            let mut pairs = pairs.to_vec();
            pairs.sort();
            pairs
        };
        if sorted(form) != sorted(&recorded.form) {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                None,
                &format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used \
                     with. Try using a key other than '{key}' if you meant to execute a different request."
                ),
            );
        }
        let mut response = axum::Json(session.clone()).into_response();
        response.headers_mut().insert("idempotent-replayed", "true".parse().unwrap());
        return response;
    }
    let mut session = match new_session(&recorded.form) {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    if shared.without_url {
        session["url"] = Value::Null;
    }
    if let Some(key) = &recorded.idempotency_key {
        shared.idempotent.insert(key.clone(), (recorded.form.clone(), session.clone()));
    }
    shared.sessions.push(session.clone());
    axum::Json(session).into_response()
}

async fn unknown_route(State(shared): Stub, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    record(&shared, &method, &uri, &headers, &body);
    let message =
        format!("Unrecognized request URL ({method}: {}). The stub knows POST /v1/checkout/sessions.", uri.path());
    stripe_error(StatusCode::NOT_FOUND, "invalid_request_error", None, None, &message)
}

fn record(shared: &Mutex<Shared>, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Recorded {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
        content_type: header("content-type"),
        form: url::form_urlencoded::parse(body).into_owned().collect(),
    };
    shared.lock().unwrap().requests.push(recorded.clone());
    recorded
}

/// Stripe's answers to a missing or wrong secret key (the key shown redacted, as Stripe does).
fn authorize(authorization: Option<&str>) -> Result<(), Response> {
    let key = authorization.and_then(|value| value.strip_prefix("Bearer "));
    match key {
        Some(SECRET_KEY) => Ok(()),
        None | Some("") => Err(stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            None,
            "You did not provide an API key. You need to provide your API key in the Authorization header, using \
             Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication \
             for details, or we can help at https://support.stripe.com/.",
        )),
        Some(other) => {
            let tail: String = other.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
            let prefix: String = other.split_inclusive('_').take(2).collect();
            Err(stripe_error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                None,
                &format!("Invalid API Key provided: {prefix}{}{tail}", "*".repeat(20)),
            ))
        }
    }
}

/// `{"error": {...}}`, Stripe's error shape.
fn stripe_error(status: StatusCode, kind: &str, code: Option<&str>, param: Option<&str>, message: &str) -> Response {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
        error["doc_url"] = json!(format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")));
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    error["request_log_url"] = json!(format!("https://dashboard.stripe.com/test/logs/{}", request_id()));
    (status, axum::Json(json!({ "error": error }))).into_response()
}

fn missing(param: &str) -> Response {
    stripe_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_missing"),
        Some(param),
        &format!("Missing required param: {param}."),
    )
}

fn invalid(param: &str, message: &str) -> Response {
    stripe_error(StatusCode::BAD_REQUEST, "invalid_request_error", Some("parameter_invalid"), Some(param), message)
}

/// One line item read from the form: Stripe's checks on inline prices, then its amount.
struct LineItem {
    currency: String,
    amount: i64,
    recurring: bool,
}

fn line_items(form: &BTreeMap<&str, &str>) -> Result<Vec<LineItem>, Response> {
    let mut items = Vec::new();
    for index in 0.. {
        let prefix = format!("line_items[{index}]");
        if !form.keys().any(|key| key.starts_with(&format!("{prefix}["))) {
            break;
        }
        let field = |name: &str| {
            let param = format!("{prefix}{name}");
            form.get(param.as_str()).map(|v| v.to_string()).ok_or_else(|| missing(&param))
        };
        let currency = field("[price_data][currency]")?;
        field("[price_data][product_data][name]")?;
        let unit_amount = field("[price_data][unit_amount]")?;
        let unit_amount: i64 =
            unit_amount.parse().ok().filter(|amount| *amount >= 0).ok_or_else(|| {
                invalid(&format!("{prefix}[price_data][unit_amount]"), "Invalid non-negative integer")
            })?;
        let quantity: i64 = field("[quantity]")?
            .parse()
            .ok()
            .filter(|quantity| *quantity > 0)
            .ok_or_else(|| invalid(&format!("{prefix}[quantity]"), "Invalid positive integer"))?;
        let recurring = match form.get(format!("{prefix}[price_data][recurring][interval]").as_str()) {
            None => false,
            Some(&("day" | "week" | "month" | "year")) => true,
            Some(_) => return Err(invalid(&format!("{prefix}[price_data][recurring][interval]"), "Invalid interval")),
        };
        items.push(LineItem { currency, amount: unit_amount * quantity, recurring });
    }
    Ok(items)
}

/// The Checkout Session Stripe creates for `form` (an open, unpaid session), or Stripe's refusal.
fn new_session(pairs: &[(String, String)]) -> Result<Value, Response> {
    let form: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mode = *form.get("mode").ok_or_else(|| missing("mode"))?;
    if !matches!(mode, "payment" | "subscription" | "setup") {
        return Err(invalid("mode", &format!("Invalid mode: must be one of payment, setup, or subscription ({mode})")));
    }
    let items = line_items(&form)?;
    if items.is_empty() {
        return Err(missing("line_items"));
    }
    let currency = items[0].currency.clone();
    if items.iter().any(|item| item.currency != currency) {
        return Err(invalid("line_items", "All prices on a Checkout Session must have the same currency."));
    }
    match (mode, items.iter().any(|item| item.recurring)) {
        ("subscription", false) => {
            return Err(invalid(
                "line_items",
                "You must provide at least one recurring price in `subscription` mode when using prices.",
            ));
        }
        ("payment", true) => {
            return Err(invalid(
                "line_items",
                "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or \
                 use only one-time prices.",
            ));
        }
        _ => {}
    }
    let id = format!("cs_test_a1{}{}", Uuid::new_v4().simple(), &Uuid::new_v4().simple().to_string()[..16]);
    let total: i64 = items.iter().map(|item| item.amount).sum();
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((name.to_string(), json!(value)))
        })
        .collect();
    let mut session = session_object(&id, mode, "unpaid", total, &currency, Value::Object(metadata));
    session["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}#fidkdWxOYHwnPyd1blpxYHZxWjA0"));
    session["success_url"] = json!(form.get("success_url"));
    session["cancel_url"] = json!(form.get("cancel_url"));
    session["client_reference_id"] = json!(form.get("client_reference_id"));
    session["customer_email"] = json!(form.get("customer_email"));
    Ok(session)
}

/// A Checkout Session object with every field Stripe documents (and async-stripe requires).
fn session_object(
    id: &str,
    mode: &str,
    payment_status: &str,
    amount_total: i64,
    currency: &str,
    metadata: Value,
) -> Value {
    let created = now();
    // Two halves: one `json!` of some 70 fields passes serde_json's macro recursion limit.
    let mut session = json!({
        "id": id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": false},
        "after_expiration": null,
        "allow_promotion_codes": null,
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
        "billing_address_collection": null,
        "cancel_url": null,
        "client_reference_id": null,
        "client_secret": null,
        "collected_information": null,
        "consent": null,
        "consent_collection": null,
        "created": created,
        "currency": currency,
        "currency_conversion": null,
        "custom_fields": [],
        "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
        "customer": null,
        "customer_creation": if mode == "payment" { json!("if_required") } else { Value::Null },
        "customer_details": null,
        "customer_email": null,
        "discounts": [],
        "expires_at": created + SESSION_LIFETIME_SECONDS,
        "invoice": null,
        "invoice_creation": null,
    });
    let rest = json!({
        "livemode": false,
        "locale": null,
        "metadata": metadata,
        "mode": mode,
        "payment_intent": null,
        "payment_link": null,
        "payment_method_collection": if mode == "subscription" { "always" } else { "if_required" },
        "payment_method_configuration_details": null,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": payment_status,
        "phone_number_collection": {"enabled": false},
        "recovered_from": null,
        "saved_payment_method_options": null,
        "setup_intent": null,
        "shipping_address_collection": null,
        "shipping_cost": null,
        "shipping_options": [],
        "status": "open",
        "submit_type": null,
        "subscription": null,
        "success_url": null,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page",
        "url": null,
        "wallet_options": null,
    });
    if let (Some(session), Value::Object(rest)) = (session.as_object_mut(), rest) {
        session.extend(rest);
    }
    session
}

/// An Event as Stripe delivers it to a webhook endpoint, wrapping `object` (not triggered by an
/// API request of ours, so `request` is empty, as for a customer paying on Checkout).
pub fn event(event_type: &str, object: Value) -> Value {
    json!({
        "id": format!("evt_{}", random_id()),
        "object": "event",
        "api_version": API_VERSION,
        "created": now(),
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
    })
}

/// A completed Checkout Session (`mode` "payment" or "subscription", `payment_status` "paid",
/// "unpaid" (an async payment method still pending) or "no_payment_required"), as the
/// `checkout.session.*` events carry it.
#[allow(clippy::too_many_arguments)]
pub fn checkout_session_object(
    session_id: &str,
    mode: &str,
    payment_status: &str,
    amount_total: i64,
    currency: &str,
    metadata: Value,
    payment_intent: Option<&str>,
    subscription: Option<&str>,
) -> Value {
    let mut session = session_object(session_id, mode, payment_status, amount_total, currency, metadata);
    session["status"] = json!("complete");
    session["customer"] = json!(format!("cus_{}", random_id()));
    session["customer_details"] = json!({
        "address": {"city": null, "country": "FR", "line1": null, "line2": null, "postal_code": null, "state": null},
        "email": "buyer@example.com",
        "name": "Test Buyer",
        "phone": null,
        "tax_exempt": "none",
        "tax_ids": [],
    });
    session["payment_intent"] = json!(payment_intent);
    session["subscription"] = json!(subscription);
    if mode == "subscription" {
        session["invoice"] = json!(format!("in_{}", random_id()));
    }
    session["success_url"] = json!("https://kiln.example/checkout/success");
    session
}

/// A paid subscription Invoice, as `invoice.paid` carries it (billing reason
/// `subscription_cycle`; the first invoice of a subscription says `subscription_create`). The
/// subscription's metadata is where current API versions put it,
/// `parent.subscription_details.metadata`, and where versions before 2025-03-31 did,
/// `subscription_details.metadata` (with `subscription` at the top level).
pub fn invoice_paid_object(
    invoice_id: &str,
    subscription_id: &str,
    amount_paid: i64,
    currency: &str,
    metadata: Value,
) -> Value {
    let created = now();
    let period_end = created;
    let period_start = created - 30 * 24 * 3600;
    json!({
        "id": invoice_id,
        "object": "invoice",
        "account_country": "FR",
        "amount_due": amount_paid,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": true,
        "auto_advance": false,
        "billing_reason": "subscription_cycle",
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "customer": format!("cus_{}", random_id()),
        "customer_email": "buyer@example.com",
        "hosted_invoice_url": format!("https://invoice.stripe.com/i/acct_test/{invoice_id}"),
        "invoice_pdf": format!("https://pay.stripe.com/invoice/acct_test/{invoice_id}/pdf"),
        "lines": {
            "object": "list",
            "data": [{
                "id": format!("il_{}", random_id()),
                "object": "line_item",
                "amount": amount_paid,
                "currency": currency,
                "description": "1 × Kiln plan (at monthly price)",
                "metadata": metadata.clone(),
                "period": {"start": period_start, "end": period_end},
                "quantity": 1,
            }],
            "has_more": false,
            "url": format!("/v1/invoices/{invoice_id}/lines"),
        },
        "livemode": false,
        "metadata": {},
        "number": format!("KILN-{}", &random_id()[..8]),
        "parent": {
            "type": "subscription_details",
            "quote_details": null,
            "subscription_details": {
                "metadata": metadata.clone(),
                "subscription": subscription_id,
                "subscription_proration_date": null,
            },
        },
        "period_end": period_end,
        "period_start": period_start,
        "status": "paid",
        "status_transitions": {"finalized_at": created, "marked_uncollectible_at": null, "paid_at": created, "voided_at": null},
        "subscription": subscription_id,
        "subscription_details": {"metadata": metadata},
        "subtotal": amount_paid,
        "total": amount_paid,
    })
}

/// A Charge after a (partial or full) refund, as `charge.refunded` carries it.
pub fn charge_refunded_object(
    charge_id: &str,
    payment_intent: &str,
    amount: i64,
    amount_refunded: i64,
    currency: &str,
    receipt_url: &str,
) -> Value {
    json!({
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "balance_transaction": format!("txn_{}", random_id()),
        "billing_details": {"address": null, "email": "buyer@example.com", "name": "Test Buyer", "phone": null},
        "captured": true,
        "created": now(),
        "currency": currency,
        "customer": null,
        "description": null,
        "disputed": false,
        "failure_code": null,
        "failure_message": null,
        "livemode": false,
        "metadata": {},
        "paid": true,
        "payment_intent": payment_intent,
        "payment_method": format!("pm_{}", random_id()),
        "receipt_email": "buyer@example.com",
        "receipt_url": receipt_url,
        "refunded": amount_refunded >= amount,
        "status": "succeeded",
    })
}

/// The `Stripe-Signature` header for `body` signed with `secret` now.
pub fn signed(body: &str, secret: &str) -> String {
    signed_at(body, secret, now())
}

/// The `Stripe-Signature` header for `body` signed with `secret` at `timestamp` (Unix seconds).
pub fn signed_at(body: &str, secret: &str, timestamp: i64) -> String {
    kiln_server::payments::signature::sign(body.as_bytes(), secret, timestamp)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// 24 random alphanumerics, the length of the ids after Stripe's prefixes.
fn random_id() -> String {
    Uuid::new_v4().simple().to_string()[..24].to_string()
}

fn request_id() -> String {
    format!("req_{}", &random_id()[..14])
}
