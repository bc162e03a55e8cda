//! The Stripe client against the in-process stub of Stripe's API (what async-stripe sends for a
//! credit pack and for a monthly plan, idempotency, a wrong key), and Stripe's own Python library
//! verifying a signature made by `payments::signature::sign`. No PostgreSQL needed.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use kiln_server::payments::stripe::StripePayments;
use kiln_server::payments::{CheckoutMode, CheckoutRequest, Payments, PaymentsError, Unconfigured, signature};
use serde_json::json;

use crate::support::stripe::{self as stub, Recorded, SECRET_KEY};

fn request(mode: CheckoutMode, idempotency_key: &str) -> CheckoutRequest {
    CheckoutRequest {
        mode,
        product_name: "Kiln credits: 100".into(),
        unit_amount: 2000,
        currency: "eur".into(),
        quantity: 3,
        metadata: BTreeMap::from([
            ("kiln_org".to_string(), "0190f2a4-5b7e-7c3d-9e1f-2a3b4c5d6e7f".to_string()),
            ("kiln_credits".to_string(), "300".to_string()),
        ]),
        client_reference_id: Some("org_0190f2a4".into()),
        customer_email: Some("buyer@example.com".into()),
        success_url: "https://kiln.example/credits?paid={CHECKOUT_SESSION_ID}".into(),
        cancel_url: "https://kiln.example/credits?canceled=1".into(),
        idempotency_key: idempotency_key.into(),
    }
}

/// What every Checkout Session request carries, whatever its mode.
fn assert_common(sent: &Recorded, mode: &str, key: &str) {
    assert_eq!((sent.method.as_str(), sent.path.as_str()), ("POST", "/v1/checkout/sessions"));
    assert_eq!(sent.authorization.as_deref(), Some(format!("Bearer {SECRET_KEY}").as_str()));
    assert_eq!(sent.idempotency_key.as_deref(), Some(key));
    assert_eq!(sent.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert!(sent.stripe_version.is_some(), "async-stripe pins its API version");
    let fields = [
        ("mode", mode),
        ("line_items[0][price_data][unit_amount]", "2000"),
        ("line_items[0][price_data][currency]", "eur"),
        ("line_items[0][price_data][product_data][name]", "Kiln credits: 100"),
        ("line_items[0][quantity]", "3"),
        ("metadata[kiln_org]", "0190f2a4-5b7e-7c3d-9e1f-2a3b4c5d6e7f"),
        ("metadata[kiln_credits]", "300"),
        ("client_reference_id", "org_0190f2a4"),
        ("customer_email", "buyer@example.com"),
        ("success_url", "https://kiln.example/credits?paid={CHECKOUT_SESSION_ID}"),
        ("cancel_url", "https://kiln.example/credits?canceled=1"),
    ];
    for (key, value) in fields {
        assert_eq!(sent.field(key), Some(value), "{key} in {:?}", sent.form);
    }
}

#[tokio::test]
async fn a_credit_pack_is_a_one_off_payment_session() {
    let stripe = stub::start().await;
    let payments = StripePayments::new(SECRET_KEY, &stripe.url).unwrap();
    let session = payments.create_checkout(&request(CheckoutMode::Payment, "pack-1")).await.unwrap();

    let sent = stripe.requests();
    assert_eq!(sent.len(), 1);
    assert_common(&sent[0], "payment", "pack-1");
    assert_eq!(sent[0].field("payment_intent_data[metadata][kiln_org]"), Some("0190f2a4-5b7e-7c3d-9e1f-2a3b4c5d6e7f"));
    assert_eq!(sent[0].field("payment_intent_data[metadata][kiln_credits]"), Some("300"));
    assert!(sent[0].form.iter().all(|(key, _)| !key.contains("recurring") && !key.starts_with("subscription_data")));

    let created = stripe.session(&session.id).unwrap();
    assert!(session.id.starts_with("cs_test_"), "{}", session.id);
    assert_eq!(created["url"], json!(session.url));
    assert!(session.url.starts_with("https://checkout.stripe.com/c/pay/cs_test_"), "{}", session.url);
    assert_eq!((created["mode"].as_str(), created["amount_total"].as_i64()), (Some("payment"), Some(6000)));
    assert_eq!(created["metadata"], json!({"kiln_org": "0190f2a4-5b7e-7c3d-9e1f-2a3b4c5d6e7f", "kiln_credits": "300"}));
}

#[tokio::test]
async fn a_plan_is_a_monthly_subscription_whose_invoices_carry_the_metadata() {
    let stripe = stub::start().await;
    let payments = StripePayments::new(SECRET_KEY, stripe.url.trim_end_matches('/')).unwrap();
    let session = payments.create_checkout(&request(CheckoutMode::Subscription, "plan-1")).await.unwrap();

    let sent = stripe.requests();
    assert_eq!(sent.len(), 1);
    assert_common(&sent[0], "subscription", "plan-1");
    assert_eq!(sent[0].field("line_items[0][price_data][recurring][interval]"), Some("month"));
    assert_eq!(sent[0].field("subscription_data[metadata][kiln_org]"), Some("0190f2a4-5b7e-7c3d-9e1f-2a3b4c5d6e7f"));
    assert_eq!(sent[0].field("subscription_data[metadata][kiln_credits]"), Some("300"));
    assert!(sent[0].form.iter().all(|(key, _)| !key.starts_with("payment_intent_data")));

    let created = stripe.session(&session.id).unwrap();
    assert_eq!(created["url"], json!(session.url));
    assert_eq!(created["mode"], "subscription");
}

#[tokio::test]
async fn a_retried_request_gets_the_same_session() {
    let stripe = stub::start().await;
    let payments = StripePayments::new(SECRET_KEY, &stripe.url).unwrap();
    let first = payments.create_checkout(&request(CheckoutMode::Payment, "retry-1")).await.unwrap();
    let again = payments.create_checkout(&request(CheckoutMode::Payment, "retry-1")).await.unwrap();
    let other = payments.create_checkout(&request(CheckoutMode::Payment, "retry-2")).await.unwrap();
    assert_eq!(first, again);
    assert_ne!(first.id, other.id);
    assert_eq!((stripe.requests().len(), stripe.sessions().len()), (3, 2));

    // The same key with other parameters is Stripe's idempotency_error, not a second session.
    let changed = CheckoutRequest { quantity: 4, ..request(CheckoutMode::Payment, "retry-1") };
    let Err(PaymentsError::Stripe(message)) = payments.create_checkout(&changed).await else {
        panic!("a reused idempotency key with other parameters was accepted")
    };
    assert!(message.contains("400") && message.contains("idempotency_error"), "{message}");
    assert_eq!(stripe.sessions().len(), 2);
}

#[tokio::test]
async fn a_wrong_key_is_a_stripe_error_that_does_not_show_the_key() {
    let stripe = stub::start().await;
    let wrong = "sk_test_not_the_stub_key_0000";
    let payments = StripePayments::new(wrong, &stripe.url).unwrap();
    let Err(PaymentsError::Stripe(message)) = payments.create_checkout(&request(CheckoutMode::Payment, "k")).await
    else {
        panic!("a wrong key was accepted")
    };
    assert!(message.contains("401") && message.contains("Invalid API Key"), "{message}");
    assert!(!message.contains(wrong), "{message}");
    assert_eq!(stripe.requests().len(), 1);
    assert!(stripe.sessions().is_empty());

    let Err(error) = Unconfigured.create_checkout(&request(CheckoutMode::Payment, "k")).await else {
        panic!("unconfigured payments created a session")
    };
    assert!(matches!(error, PaymentsError::NotConfigured), "{error}");
}

#[tokio::test]
async fn a_session_without_a_url_is_an_error() {
    let stripe = stub::start().await;
    stripe.answer_without_url();
    let payments = StripePayments::new(SECRET_KEY, &stripe.url).unwrap();
    let Err(PaymentsError::Stripe(message)) = payments.create_checkout(&request(CheckoutMode::Payment, "k")).await
    else {
        panic!("a session with no url was taken for one")
    };
    assert!(message.contains("no url"), "{message}");
}

/// Runs scripts/stripe_verify.py (Stripe's Python library) on `body` and `header`; its success.
fn stripe_library_accepts(python: &str, body: &str, header: &str, secret: &str) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stripe_verify.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(header)
        .env("STRIPE_WEBHOOK_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("running {python} {script}: {error}"));
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    println!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_ne!(output.status.code(), Some(2), "stripe_verify.py usage error");
    output.status.success()
}

#[test]
fn stripes_own_library_verifies_our_signatures() {
    let Ok(python) = std::env::var("KILN_STRIPE_PYTHON") else {
        let required = std::env::var("KILN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "KILN_STRIPE_PYTHON is not set: scripts/test.sh sets it to a virtual environment's python with PyPI \
             `stripe` installed (python3 -m venv V && V/bin/pip install stripe; KILN_STRIPE_PYTHON=V/bin/python)"
        );
        println!("SKIPPED: KILN_STRIPE_PYTHON is not set; signatures not checked with Stripe's library");
        return;
    };
    let secret = "whsec_kiln_independent_check_5f2b";
    let session = stub::checkout_session_object(
        "cs_test_a1independent",
        "payment",
        "paid",
        6000,
        "eur",
        json!({"kiln_org": "0190f2a4", "kiln_credits": "300"}),
        Some("pi_3independent"),
        None,
    );
    let body = serde_json::to_string(&stub::event("checkout.session.completed", session)).unwrap();
    let header = signature::sign(body.as_bytes(), secret, stub::now());
    assert!(stripe_library_accepts(&python, &body, &header, secret), "Stripe's library refused {header}");
    // The check can fail: a changed body, another secret, an expired timestamp are refused.
    let tampered = body.replace("6000", "6001");
    assert!(!stripe_library_accepts(&python, &tampered, &header, secret), "a tampered body was accepted");
    assert!(!stripe_library_accepts(&python, &body, &header, "whsec_other"), "another secret was accepted");
    let stale = signature::sign(body.as_bytes(), secret, stub::now() - signature::TOLERANCE_SECONDS - 60);
    assert!(!stripe_library_accepts(&python, &body, &stale, secret), "an old signature was accepted");
}
