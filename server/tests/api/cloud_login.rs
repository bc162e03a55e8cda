//! `kiln-cloud`'s desktop login against the real server: the test plays the browser (the login
//! page, the form with the user's password, the redirect to the client's loopback listener); the
//! tokens land in a real Secret Service (gnome-keyring under `dbus-run-session`, as
//! `scripts/test.sh` runs it) and are read back by another process (`secret-tool`, libsecret's
//! own client); the access token is refreshed after it expires and the rotated refresh token is
//! stored; logout revokes at the server and deletes the item. Without a keyring, the login goes
//! to a file only its owner can read, which another process finds by itself.
//!
//! Without a Secret Service on the session bus the keyring test prints SKIPPED, unless
//! `KILN_REQUIRE_KEYRING=1` (set by `scripts/test.sh`), where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use chrono::Utc;
use kiln_cloud::login::{self, CLI_CLIENT_ID, CredentialSource, LoginError, LoginOptions, Logout, Session};
use kiln_cloud::token_store::{KEYRING_SERVICE, StoreKind, StoredTokens, TokenStore};
use kiln_cloud::{Client, ClientConfig, ErrorKind};
use kiln_server::auth::jwt;
use serde_json::Value;
use url::Url;

use crate::common::TestServer;

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "a long enough password";

/// Set by the parent test for the child process that must find the fallback file by itself:
/// the server whose tokens it loads.
const CHILD_SERVER_ENV: &str = "KILN_TEST_LOGIN_CHILD_SERVER";

/// The keyring store, or None (after saying so) where no Secret Service answers and
/// `KILN_REQUIRE_KEYRING=1` is not set.
async fn keyring_store() -> Option<TokenStore> {
    let required = std::env::var("KILN_REQUIRE_KEYRING").is_ok_and(|v| v == "1");
    let secret_tool = Command::new("secret-tool").arg("--version").output().is_ok();
    match TokenStore::keyring().await {
        Ok(store) if secret_tool => Some(store),
        result if required => panic!(
            "KILN_REQUIRE_KEYRING=1 but no Secret Service ({:?}) or no secret-tool ({secret_tool}): run under \
             dbus-run-session with gnome-keyring-daemon unlocked, as scripts/test.sh does (Debian gnome-keyring, \
             libsecret-tools)",
            result.err()
        ),
        result => {
            eprintln!(
                "SKIPPED: no Secret Service or no secret-tool ({:?}); scripts/test.sh runs this test",
                result.err()
            );
            None
        }
    }
}

fn client(server: &TestServer) -> Client {
    Client::new(ClientConfig::new(Url::parse(&server.url).unwrap())).unwrap()
}

/// What the browser saw: the authorization URL it was handed, and the page the client's loopback
/// listener answered the redirect with.
struct BrowserVisit {
    authorize_url: Url,
    redirect: Url,
    final_status: u16,
    final_page: String,
}

/// The browser: loads the authorization URL, posts the sign-in form with the user's email and
/// password (and the form's cookie), then follows the server's redirect to the loopback URI.
async fn play_browser(authorize_url: Url) -> BrowserVisit {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(authorize_url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200, "the login page");
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let html = page.text().await.unwrap();
    assert!(html.contains("Kiln command line"), "the page names the app: {html}");
    let mut form = hidden_fields(&html);
    form.extend([("email", EMAIL), ("password", PASSWORD), ("decision", "approve")].map(|(n, v)| (n.into(), v.into())));
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let action = authorize_url.join("/oauth/authorize").unwrap();
    let approved = http
        .post(action)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status(), 303, "the approved form redirects");
    let redirect = Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
    let back = http.get(redirect.clone()).send().await.unwrap();
    let final_status = back.status().as_u16();
    BrowserVisit { authorize_url, redirect, final_status, final_page: back.text().await.unwrap() }
}

/// The form's hidden fields, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let unescape = |text: &str| {
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    };
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|part| {
            let (name, rest) = part.split_once("\" value=\"").unwrap();
            (name.to_string(), unescape(rest.split_once('"').unwrap().0))
        })
        .collect()
}

/// Signs in through the browser the test plays; the tokens and what the browser saw.
async fn browser_login(client: &Client) -> (StoredTokens, BrowserVisit) {
    let mut browser = None;
    let tokens = login::login(client, &LoginOptions::default(), |url| {
        browser = Some(tokio::spawn(play_browser(url.clone())));
    })
    .await
    .unwrap();
    let visit = browser.expect("the opener was called").await.unwrap();
    (tokens, visit)
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned())
}

/// The Secret Service item for `server`, read by libsecret's `secret-tool` (another process,
/// another implementation); None when there is none.
fn secret_tool_lookup(server: &str) -> Option<StoredTokens> {
    let output =
        Command::new("secret-tool").args(["lookup", "service", KEYRING_SERVICE, "username", server]).output().unwrap();
    if !output.status.success() || output.stdout.is_empty() {
        return None;
    }
    Some(serde_json::from_slice(&output.stdout).expect("the item is Kiln's token record"))
}

/// The token endpoint's answer to a refresh with `refresh_token`: (status, `error`).
async fn refresh_directly(server: &TestServer, refresh_token: &str) -> (u16, String) {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", CLI_CLIENT_ID)];
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let response = server
        .http
        .post(server.at("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_string())
}

/// An access token for the same user and grant as `token`, signed by the server's key, that
/// expired a minute ago.
fn expired_copy(server: &TestServer, token: &str) -> String {
    let secret = &server.state.config.jwt_secret;
    let now = Utc::now().timestamp();
    let claims = jwt::decode(token, secret, now).unwrap();
    jwt::encode(&jwt::Claims { iat: now - 1000, exp: now - 60, ..claims }, secret)
}

async fn api_keys(session: &Session) -> Result<Value, LoginError> {
    session.call(async |client| client.get::<Value>("/v1/api-keys").await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_tokens_in_the_secret_service_refreshes_them_and_logout_revokes() {
    let Some(server) = TestServer::start().await else { return };
    let Some(store) = keyring_store().await else { return };
    server.signup(EMAIL).await;
    let client = client(&server);
    let key = login::server_key(&client);
    assert_eq!(key, server.url);

    // The browser gets a PKCE S256 request for the CLI's client, redirecting to a loopback port.
    let (tokens, visit) = browser_login(&client).await;
    let authorize = &visit.authorize_url;
    assert_eq!(authorize.as_str().split('?').next(), Some(server.at("/oauth/authorize").as_str()));
    assert_eq!(query(authorize, "client_id").as_deref(), Some(CLI_CLIENT_ID));
    assert_eq!(query(authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(query(authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query(authorize, "code_challenge").map(|c| c.len()), Some(43));
    let redirect_uri = Url::parse(&query(authorize, "redirect_uri").unwrap()).unwrap();
    assert_eq!(redirect_uri.host_str(), Some("127.0.0.1"));
    assert_ne!(redirect_uri.port(), Some(0));
    assert_eq!(redirect_uri.path(), "/callback");
    assert_eq!(query(&visit.redirect, "state"), query(authorize, "state"));
    assert_eq!(visit.final_status, 200, "{}", visit.final_page);
    assert!(visit.final_page.contains("You can close this tab"), "{}", visit.final_page);
    assert_eq!(tokens.client_id, CLI_CLIENT_ID);
    assert!(tokens.refresh_token.starts_with("krt_"));
    assert_eq!(tokens.scope, "jobs:read jobs:write keys:manage webhooks:manage");
    let lifetime = (tokens.expires_at - Utc::now()).num_seconds();
    assert!((890..=900).contains(&lifetime), "{lifetime}");

    // Stored in the Secret Service, and read back by another process.
    store.save(&key, &tokens).await.unwrap();
    assert_eq!(store.kind(), &StoreKind::Keyring);
    assert_eq!(secret_tool_lookup(&key).as_ref(), Some(&tokens));

    // The stored login works.
    let session = Session::resume(client.clone(), store.clone()).await.unwrap();
    assert_eq!(session.source(), CredentialSource::Login(StoreKind::Keyring));
    api_keys(&session).await.unwrap();
    assert_eq!(session.access_token().await.unwrap(), tokens.access_token);

    // The access token expired (the store does not know yet): the server answers token_expired,
    // the session refreshes, the call goes through, and the rotated refresh token is stored.
    let expired = StoredTokens { access_token: expired_copy(&server, &tokens.access_token), ..tokens.clone() };
    store.save(&key, &expired).await.unwrap();
    let session = Session::resume(client.clone(), store.clone()).await.unwrap();
    let refused = server.http.get(server.at("/v1/api-keys")).bearer_auth(&expired.access_token).send().await.unwrap();
    assert_eq!(crate::common::error_code(refused).await, (401, "token_expired".into()));
    api_keys(&session).await.unwrap();
    let rotated = secret_tool_lookup(&key).expect("still stored");
    assert_ne!(rotated.refresh_token, tokens.refresh_token);
    assert_ne!(rotated.access_token, expired.access_token);
    assert_eq!(session.access_token().await.unwrap(), rotated.access_token);
    assert_eq!(rotated.scope, tokens.scope);

    // Shortly before expiry the session refreshes before sending anything.
    let due = StoredTokens { expires_at: Utc::now() + chrono::Duration::seconds(30), ..rotated.clone() };
    store.save(&key, &due).await.unwrap();
    let session = Session::resume(client.clone(), store.clone()).await.unwrap();
    let fresh = session.access_token().await.unwrap();
    let again = secret_tool_lookup(&key).expect("still stored");
    assert_ne!(again.refresh_token, rotated.refresh_token);
    assert_eq!(again.access_token, fresh);
    assert!((again.expires_at - Utc::now()).num_seconds() > 800);
    api_keys(&session).await.unwrap();

    // A refresh on demand rotates again.
    session.refresh().await.unwrap();
    let before = again.refresh_token;
    let again = secret_tool_lookup(&key).expect("still stored");
    assert_ne!(again.refresh_token, before);
    assert_eq!(session.access_token().await.unwrap(), again.access_token);
    api_keys(&session).await.unwrap();

    // Logout revokes the refresh token at the server and deletes the item.
    assert_eq!(login::logout(&client, &store).await.unwrap(), Logout::Revoked(StoreKind::Keyring));
    assert_eq!(secret_tool_lookup(&key), None);
    assert_eq!(refresh_directly(&server, &again.refresh_token).await, (400, "invalid_grant".into()));
    assert_eq!(login::logout(&client, &store).await.unwrap(), Logout::NotLoggedIn);
    let gone = Session::resume(client.clone(), store.clone()).await.unwrap_err();
    assert!(matches!(gone, LoginError::NotLoggedIn { .. }), "{gone}");
    assert!(gone.to_string().contains("run `kiln login`") && gone.to_string().contains("KILN_API_KEY"), "{gone}");
    assert_eq!(gone.kind(), ErrorKind::Unauthorized);

    // An expired access token with a revoked refresh token: a clear "log in again".
    let stale = StoredTokens { expires_at: Utc::now() - chrono::Duration::seconds(1), ..again.clone() };
    store.save(&key, &stale).await.unwrap();
    let session = Session::resume(client.clone(), store.clone()).await.unwrap();
    let error = api_keys(&session).await.unwrap_err();
    assert!(matches!(error, LoginError::LoginAgain { .. }), "{error}");
    assert_eq!(error.kind(), ErrorKind::Unauthorized);
    assert!(error.to_string().contains("run `kiln login` again"), "{error}");
    assert!(store.delete(&key).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keyring_the_login_goes_to_a_private_file_and_an_api_key_overrides_it() {
    let Some(server) = TestServer::start().await else { return };
    let account = server.signup(EMAIL).await;
    let client = client(&server);
    let config_home = std::env::temp_dir().join(format!("kiln-login-{}", uuid::Uuid::new_v4().simple()));
    let path = config_home.join("kiln").join("credentials.json");
    let store = TokenStore::file(path.clone());

    let (tokens, visit) = browser_login(&client).await;
    assert_eq!(visit.final_status, 200);
    store.save(&login::server_key(&client), &tokens).await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    // Another process, with no session bus to find a keyring on, picks the same file by itself
    // (from XDG_CONFIG_HOME), says so, and calls the API with the login it finds there.
    let child = child(&server, &config_home, None);
    assert!(child.contains(&format!("CHILD store={}", StoreKind::File(path.clone()))), "{child}");
    assert!(child.contains("CHILD fallback_reason=true"), "{child}");
    assert!(child.contains(&format!("CHILD refresh_sha256={}", sha256(&tokens.refresh_token))), "{child}");
    assert!(child.contains(&format!("CHILD source={}", CredentialSource::Login(StoreKind::File(path.clone())))));
    assert!(child.contains("CHILD call=ok"), "{child}");

    // KILN_API_KEY wins over the stored login.
    let key = server.api_key(&account, &["jobs:read"], "live").await;
    let child = self::child(&server, &config_home, Some(&key));
    assert!(child.contains(&format!("CHILD source={}", CredentialSource::ApiKeyFromEnv)), "{child}");
    assert!(child.contains("CHILD call=ok"), "{child}");

    // Logout revokes the file's login and leaves the file empty.
    assert_eq!(login::logout(&client, &store).await.unwrap(), Logout::Revoked(StoreKind::File(path.clone())));
    assert_eq!(refresh_directly(&server, &tokens.refresh_token).await, (400, "invalid_grant".into()));
    let left: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(left, serde_json::json!({}));
    std::fs::remove_dir_all(&config_home).unwrap();
}

/// Runs [`child_opens_the_store_without_a_keyring`] in another process of this test binary, with
/// no reachable session bus, `config_home` as XDG_CONFIG_HOME and `api_key` as KILN_API_KEY;
/// its output.
fn child(server: &TestServer, config_home: &Path, api_key: Option<&str>) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["cloud_login::child_opens_the_store_without_a_keyring", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_SERVER_ENV, &server.url)
        .env("XDG_CONFIG_HOME", config_home)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/kiln-test-bus")
        .env_remove(login::API_KEY_ENV);
    if let Some(key) = api_key {
        command.env(login::API_KEY_ENV, key);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The child process of the test above (returns at once in a normal run): opens the default
/// store and a session as `kiln` would, and says what it found.
#[tokio::test]
async fn child_opens_the_store_without_a_keyring() {
    let Ok(server) = std::env::var(CHILD_SERVER_ENV) else { return };
    let store = TokenStore::open().await.unwrap();
    println!("CHILD store={}", store.kind());
    println!("CHILD fallback_reason={}", store.fallback_reason().is_some());
    if let Some(tokens) = store.load(&server).await.unwrap() {
        println!("CHILD refresh_sha256={}", sha256(&tokens.refresh_token));
    }
    let client = Client::new(ClientConfig::new(Url::parse(&server).unwrap())).unwrap();
    let session = Session::open(client, store).await.unwrap();
    println!("CHILD source={}", session.source());
    let jobs: Value = session.call(async |client| client.get("/v1/jobs").await).await.unwrap();
    println!("CHILD call={}", if jobs.is_object() { "ok" } else { "unexpected" });
}
