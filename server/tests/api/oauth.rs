//! The OAuth 2.0 authorization server against the real PostgreSQL: the test plays the browser
//! (no redirects followed) and the native app (PKCE S256, a loopback redirect URI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{TestServer, error_code};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

const PASSWORD: &str = "a long enough password";
const REDIRECT: &str = "http://127.0.0.1:53121/callback";
/// A state with every character the page must escape.
const STATE: &str = r#"st<"&'>ate"#;

/// RFC 7636 §4.2, written here apart from the server's.
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn new_verifier() -> String {
    format!("{}-{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The browser: follows no redirects, keeps the form cookie by hand.
struct Browser<'a> {
    server: &'a TestServer,
    http: reqwest::Client,
}

/// A consent page as the browser holds it.
struct Page {
    html: String,
    cookie: Option<String>,
}

impl Page {
    /// The form's hidden fields, unescaped.
    fn hidden(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for part in self.html.split("<input type=\"hidden\" name=\"").skip(1) {
            let (name, rest) = part.split_once("\" value=\"").unwrap();
            let (value, _) = rest.split_once('"').unwrap();
            fields.push((name.to_string(), unescape(value)));
        }
        fields
    }

    fn field(&self, name: &str) -> Option<String> {
        self.hidden().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

fn form_body(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn location(response: &reqwest::Response) -> Url {
    let location = response.headers().get("location").expect("a Location header").to_str().unwrap();
    Url::parse(location).unwrap()
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { server, http }
    }

    async fn get(&self, params: &[(&str, &str)]) -> reqwest::Response {
        let url = Url::parse_with_params(&self.server.at("/oauth/authorize"), params).unwrap();
        self.http.get(url).send().await.unwrap()
    }

    /// The consent page for a request with `challenge` and `extra` parameters.
    async fn page(&self, challenge: &str, extra: &[(&str, &str)]) -> Page {
        let mut params = vec![
            ("client_id", "kiln-desktop"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("state", STATE),
        ];
        params.extend_from_slice(extra);
        let response = self.get(&params).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let cookie =
            response.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        Page { html: response.text().await.unwrap(), cookie }
    }

    /// Submits the page's form with `fields` added (or replacing hidden ones).
    async fn submit(&self, page: &Page, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut pairs = page.hidden();
        for (name, value) in fields {
            pairs.retain(|(n, _)| n != name);
            pairs.push((name.to_string(), value.to_string()));
        }
        let mut request = self
            .http
            .post(self.server.at("/oauth/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&pairs));
        if let Some(cookie) = &page.cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    async fn approve(&self, page: &Page, email: &str) -> reqwest::Response {
        self.submit(page, &[("email", email), ("password", PASSWORD), ("decision", "approve")]).await
    }

    /// The whole browser part: page, approve, the code off the redirect.
    async fn code(&self, email: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
        let page = self.page(challenge, extra).await;
        let response = self.approve(&page, email).await;
        assert_eq!(response.status(), 303, "{:?}", response.text().await);
        query(&location(&response), "code").expect("a code")
    }

    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        self.http
            .post(self.server.at(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&pairs))
            .send()
            .await
            .unwrap()
    }

    async fn exchange(&self, code: &str, verifier: &str) -> reqwest::Response {
        let pairs = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", "kiln-desktop"),
            ("code_verifier", verifier),
        ];
        self.post("/oauth/token", &pairs).await
    }

    async fn refresh(&self, refresh_token: &str, client_id: &str) -> reqwest::Response {
        self.post(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)],
        )
        .await
    }

    async fn codes_stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM oauth_codes").fetch_one(&self.server.db).await.unwrap()
    }
}

/// The RFC 6749 §5.2 error of a response: (status, `error`).
async fn oauth_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert!(header(&response, "content-type").starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap_or("<none>").to_string();
    if status == 400 {
        assert!(body["error_description"].is_string(), "{body}");
    }
    (status, error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_flow_with_pkce_gives_tokens_that_work_rotate_and_revoke() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup("ada@example.com").await;
    let browser = Browser::new(&server);
    // The test's S256 reproduces RFC 7636 Appendix B.
    assert_eq!(challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");

    let metadata: Value = browser
        .http
        .get(server.at("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["token_endpoint"], server.at("/oauth/token"));
    assert_eq!(metadata["authorization_endpoint"], server.at("/oauth/authorize"));
    assert_eq!(metadata["revocation_endpoint"], server.at("/oauth/revoke"));
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    let openapi: Value = browser.http.get(server.at("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, method) in [
        ("/oauth/authorize", "get"),
        ("/oauth/authorize", "post"),
        ("/oauth/token", "post"),
        ("/oauth/revoke", "post"),
        ("/.well-known/oauth-authorization-server", "get"),
    ] {
        assert!(openapi["paths"][path][method].is_object(), "{method} {path} is not in the OpenAPI document");
    }

    // The page: the app, its scopes, the form; locked down; every echo escaped.
    let verifier = new_verifier();
    let code_challenge = challenge(&verifier);
    let response = browser
        .get(&[
            ("client_id", "kiln-desktop"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("code_challenge", code_challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", STATE),
        ])
        .await;
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/html"));
    let csp = header(&response, "content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self' http://127.0.0.1:53121"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&response, "x-frame-options"), "DENY");
    let cookie = header(&response, "set-cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let page =
        Page { cookie: Some(cookie.split(';').next().unwrap().to_string()), html: response.text().await.unwrap() };
    assert!(page.html.contains("<form method=\"post\" action=\"/oauth/authorize\">"), "{}", page.html);
    assert!(page.html.contains("Kiln desktop app") && page.html.contains("keys:manage"));
    assert!(page.html.contains("name=\"password\"") && page.html.contains("value=\"deny\""));
    assert!(!page.html.contains(STATE), "the state is echoed unescaped");
    assert_eq!(page.field("state").as_deref(), Some(STATE));
    assert_eq!(page.field("redirect_uri").as_deref(), Some(REDIRECT));

    // Approve: 303 back to the loopback URI with a code and the same state.
    let response = browser.approve(&page, "ADA@example.com").await;
    assert_eq!(response.status(), 303);
    let back = location(&response);
    assert_eq!(
        format!("{}://{}:{}{}", back.scheme(), back.host_str().unwrap(), back.port().unwrap(), back.path()),
        REDIRECT
    );
    assert_eq!(query(&back, "state").as_deref(), Some(STATE));
    let code = query(&back, "code").expect("code");
    // Only the code's hash is stored.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_codes WHERE code_hash = sha256($1::bytea)")
        .bind(code.as_bytes())
        .fetch_one(&server.db)
        .await
        .unwrap();
    assert_eq!(stored, 1);

    // The app trades the code for tokens.
    let response = browser.exchange(&code, &verifier).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["scope"], "jobs:read jobs:write keys:manage webhooks:manage");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let keys = browser.http.get(server.at("/v1/api-keys")).bearer_auth(access).send().await.unwrap();
    assert_eq!(keys.status(), 200);

    // Rotation: a new pair; the refresh token is bound to its client.
    let refused = browser.refresh(refresh, "kiln-cli").await;
    assert_eq!(oauth_error(refused).await, (400, "invalid_grant".into()));
    let rotated = browser.refresh(refresh, "kiln-desktop").await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let newest = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(newest, refresh);
    let keys = browser
        .http
        .get(server.at("/v1/api-keys"))
        .bearer_auth(rotated["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);

    // Revocation (RFC 7009): the session ends; unknown tokens are not an error; another
    // client's (here a password login's) token is refused and keeps working.
    let revoked = browser.post("/oauth/revoke", &[("token", newest), ("client_id", "kiln-desktop")]).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(oauth_error(browser.refresh(newest, "kiln-desktop").await).await, (400, "invalid_grant".into()));
    let unknown = browser.post("/oauth/revoke", &[("token", "krt_not-a-token"), ("client_id", "kiln-desktop")]).await;
    assert_eq!(unknown.status(), 200);
    let foreign =
        browser.post("/oauth/revoke", &[("token", account.refresh_token.as_str()), ("client_id", "kiln-cli")]).await;
    assert_eq!(oauth_error(foreign).await, (400, "invalid_client".into()));
    let login = server
        .http
        .post(server.at("/v1/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": account.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_refuses_wrong_verifiers_reused_expired_and_mismatched_codes() {
    let Some(server) = TestServer::start().await else { return };
    server.signup("ada@example.com").await;
    let browser = Browser::new(&server);
    let verifier = new_verifier();
    let code = browser.code("ada@example.com", &challenge(&verifier), &[]).await;

    // A wrong verifier, another redirect_uri than the one authorized, another client: each
    // invalid_grant, and none spends the code.
    let wrong = browser.exchange(&code, &new_verifier()).await;
    assert_eq!(oauth_error(wrong).await, (400, "invalid_grant".into()));
    let other_redirect = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:53122/callback"),
        ("client_id", "kiln-desktop"),
        ("code_verifier", verifier.as_str()),
    ];
    assert_eq!(oauth_error(browser.post("/oauth/token", &other_redirect).await).await, (400, "invalid_grant".into()));
    let other_client = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "kiln-cli"),
        ("code_verifier", verifier.as_str()),
    ];
    assert_eq!(oauth_error(browser.post("/oauth/token", &other_client).await).await, (400, "invalid_grant".into()));

    // The right one works once. Presented again, the code is refused and the tokens of its
    // first use are revoked.
    let first = browser.exchange(&code, &verifier).await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let reused = browser.exchange(&code, &verifier).await;
    assert_eq!(oauth_error(reused).await, (400, "invalid_grant".into()));
    let after = browser.refresh(first["refresh_token"].as_str().unwrap(), "kiln-desktop").await;
    assert_eq!(oauth_error(after).await, (400, "invalid_grant".into()));

    // An expired code.
    let verifier = new_verifier();
    let code = browser.code("ada@example.com", &challenge(&verifier), &[]).await;
    sqlx::query("UPDATE oauth_codes SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
        .execute(&server.db)
        .await
        .unwrap();
    assert_eq!(oauth_error(browser.exchange(&code, &verifier).await).await, (400, "invalid_grant".into()));

    // Malformed requests, in RFC 6749 §5.2's words.
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("grant_type", "password"), ("client_id", "kiln-cli")], "unsupported_grant_type"),
        (&[("client_id", "kiln-cli")], "invalid_request"),
        (&[("grant_type", "authorization_code"), ("client_id", "evil-app"), ("code", "x")], "invalid_client"),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "kiln-desktop"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
            ],
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "kiln-desktop"),
                ("code", "unknown"),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier.as_str()),
            ],
            "invalid_grant",
        ),
        (&[("grant_type", "refresh_token"), ("client_id", "kiln-desktop")], "invalid_request"),
    ];
    for (pairs, expected) in cases {
        assert_eq!(
            oauth_error(browser.post("/oauth/token", pairs).await).await,
            (400, expected.to_string()),
            "{pairs:?}"
        );
    }
    let json = browser
        .http
        .post(server.at("/oauth/token"))
        .json(&serde_json::json!({"grant_type": "refresh_token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(oauth_error(json).await, (400, "invalid_request".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_redirects_get_a_page_and_bad_requests_go_back_to_the_app() {
    let Some(server) = TestServer::start().await else { return };
    let browser = Browser::new(&server);
    let challenge = challenge(&new_verifier());
    let request = |client_id: &'static str, redirect: &'static str| {
        [
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "s1"),
        ]
    };

    // No redirect to anything but a known client's loopback URI: an HTML page instead.
    let untrusted = [
        ("kiln-cli", "https://evil.example/cb", "loopback"),
        ("kiln-cli", "http://localhost:53121/callback", "localhost"),
        ("kiln-cli", "http://10.0.0.1:53121/callback", "loopback"),
        ("kiln-cli", "com.kiln.app:/callback", "loopback"),
        ("kiln-cli", "http://127.0.0.1:53121/callback#x", "fragment"),
        ("evil-app", REDIRECT, "does not know"),
    ];
    for (client_id, redirect, says) in untrusted {
        let response = browser.get(&request(client_id, redirect)).await;
        assert_eq!(response.status(), 400, "{redirect}");
        assert!(response.headers().get("location").is_none(), "{redirect}");
        assert!(header(&response, "content-type").starts_with("text/html"));
        assert!(header(&response, "content-security-policy").contains("default-src 'none'"));
        let html = response.text().await.unwrap();
        assert!(html.contains(says), "{redirect}: {html}");
    }

    // A trusted redirect URI with a bad request: the error goes back to the app, with the state.
    let cases = [
        ("code_challenge_method", "plain", "invalid_request"),
        ("code_challenge_method", "", "invalid_request"),
        ("code_challenge", "too-short", "invalid_request"),
        ("response_type", "token", "unsupported_response_type"),
        ("scope", "jobs:read admin", "invalid_scope"),
    ];
    for (name, value, error) in cases {
        let mut params: Vec<(&str, &str)> =
            request("kiln-cli", REDIRECT).into_iter().filter(|(n, _)| *n != name).collect();
        if !value.is_empty() {
            params.push((name, value));
        }
        let response = browser.get(&params).await;
        assert_eq!(response.status(), 303, "{name}={value}");
        let back = location(&response);
        assert!(back.as_str().starts_with(REDIRECT), "{back}");
        assert_eq!(query(&back, "error").as_deref(), Some(error), "{name}={value}");
        assert_eq!(query(&back, "state").as_deref(), Some("s1"));
        assert!(query(&back, "code").is_none());
    }
    assert_eq!(browser.codes_stored().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_form_refuses_wrong_passwords_forged_posts_and_honours_deny_and_scopes() {
    let Some(server) = TestServer::start().await else { return };
    server.signup("ada@example.com").await;
    let browser = Browser::new(&server);
    let verifier = new_verifier();
    let page = browser.page(&challenge(&verifier), &[]).await;

    // A wrong password: the form again with an error, no redirect, no code.
    let wrong = browser
        .submit(&page, &[("email", "ada@example.com"), ("password", "not the password"), ("decision", "approve")])
        .await;
    assert_eq!(wrong.status(), 400);
    assert!(wrong.headers().get("location").is_none());
    let again = Page { html: wrong.text().await.unwrap(), cookie: page.cookie.clone() };
    assert!(
        again.html.contains("The email or the password is wrong.") && again.html.contains("<form"),
        "{}",
        again.html
    );
    assert!(again.html.contains("value=\"ada@example.com\""));
    assert_eq!(browser.codes_stored().await, 0);

    // A post without the page's cookie (what another site's form sends), or with a hidden field
    // changed, is refused with a page.
    let forged = Page { html: again.html.clone(), cookie: None };
    let response = browser.approve(&forged, "ada@example.com").await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("expired or was not sent from this page"));
    let tampered = browser
        .submit(
            &again,
            &[("scope", "jobs:read"), ("email", "ada@example.com"), ("password", PASSWORD), ("decision", "approve")],
        )
        .await;
    assert_eq!(tampered.status(), 400);
    assert!(tampered.headers().get("location").is_none());
    assert_eq!(browser.codes_stored().await, 0);

    // Deny: back to the app with access_denied and the state, no code.
    let denied = browser.submit(&again, &[("decision", "deny")]).await;
    assert_eq!(denied.status(), 303);
    let back = location(&denied);
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some(STATE));
    assert!(query(&back, "code").is_none());
    assert_eq!(browser.codes_stored().await, 0);

    // The re-rendered form still works with the right password.
    let response = browser.approve(&again, "ada@example.com").await;
    assert_eq!(response.status(), 303);
    assert!(query(&location(&response), "code").is_some());

    // Asked-for scopes bind the token: jobs:read cannot manage keys.
    let verifier = new_verifier();
    let code = browser.code("ada@example.com", &challenge(&verifier), &[("scope", "jobs:read")]).await;
    let tokens: Value = browser.exchange(&code, &verifier).await.json().await.unwrap();
    assert_eq!(tokens["scope"], "jobs:read");
    let keys = browser
        .http
        .get(server.at("/v1/api-keys"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(keys).await, (403, "missing_scope".into()));
}
