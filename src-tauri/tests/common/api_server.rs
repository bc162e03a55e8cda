//! The hosted API for the app's tests, as `scripts/lib/api_server.sh` runs it: the real
//! `kiln-server` binary (`$KILN_SERVER_BIN`, else `$CARGO_TARGET_DIR/debug/kiln-server`, else
//! `target/debug/kiln-server`: `cargo build -p kiln-server`) on a database of its own on the
//! services' PostgreSQL (`eval "$(scripts/services.sh env)"`: `DATABASE_URL` and `KILN_S3_*`,
//! inherited by the server), migrated, serving on a free loopback port; the database is dropped
//! and the server stopped when the [`ApiServer`] is dropped. [`play_browser`] is the person at the
//! browser during a sign-in.
//!
//! Without the services or the binary, [`ApiServer::start`] prints SKIPPED and gives `None`,
//! unless `KILN_REQUIRE_SERVICES=1` (set by `scripts/test.sh`), where it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The password of every account [`ApiServer::signup`] makes.
pub const PASSWORD: &str = "a long enough password";

/// Credits every account gets at signup (a ledger grant), so the balance shown is known.
pub const SIGNUP_CREDITS: i64 = 1000;

/// How long the server may take to answer `/healthz` after it was started (a debug build on a
/// loaded machine; it usually takes well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A browser's or the test's HTTP request: the server answers in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `kiln-server serve` on a database of its own.
/// The token the server's GPU workers present (the test's worker is on the same machine).
const WORKER_TOKEN: &str = "kiln-app-test-worker-token-0123456789abcdef";

/// A `kiln-server worker` process, stopped when dropped.
pub struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct ApiServer {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// Its scratch folder (`server.log` is its stderr).
    pub work: PathBuf,
    child: Child,
    admin_url: String,
    database: String,
    runtime: tokio::runtime::Runtime,
    pub http: reqwest::Client,
}

/// The server binary, if it was built.
pub fn server_bin() -> Option<PathBuf> {
    let built = |target: PathBuf| target.join("debug").join("kiln-server");
    let path = match (std::env::var_os("KILN_SERVER_BIN"), std::env::var_os("CARGO_TARGET_DIR")) {
        (Some(bin), _) => PathBuf::from(bin),
        (None, Some(target)) => built(PathBuf::from(target)),
        (None, None) => built(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")),
    };
    path.is_file().then_some(path)
}

/// A loopback port nobody listens on (bound, then let go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl ApiServer {
    /// Starts the server on a new database `kiln_app_<name>_<pid>`; `None` (after saying why)
    /// without the services or the binary, unless `KILN_REQUIRE_SERVICES=1`.
    pub fn start(name: &str) -> Option<ApiServer> {
        ApiServer::start_as(name, None)
    }

    /// [`ApiServer::start`], for clients that reach it at `public_url` (a proxy in front of it):
    /// the address its OAuth metadata and links name.
    pub fn start_as(name: &str, public_url: Option<&str>) -> Option<ApiServer> {
        let required = std::env::var("KILN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        let skip = |why: &str| {
            assert!(!required, "KILN_REQUIRE_SERVICES=1 but {why}");
            eprintln!("SKIPPED: {why}");
        };
        let (Ok(admin_url), Ok(_)) = (std::env::var("DATABASE_URL"), std::env::var("KILN_S3_ENDPOINT")) else {
            skip("DATABASE_URL or KILN_S3_* are not set: run eval \"$(scripts/services.sh env)\" first");
            return None;
        };
        let Some(bin) = server_bin() else {
            skip("no kiln-server binary: set KILN_SERVER_BIN, or run cargo build -p kiln-server");
            return None;
        };
        let database = format!("kiln_app_{name}_{}", std::process::id());
        psql(&admin_url, &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
        psql(&admin_url, &format!("CREATE DATABASE {database}"));
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let database_url = format!("{base}/{database}");
        let work = super::fresh_dir(&format!("api-server-{name}"));
        let url = format!("http://127.0.0.1:{}", free_port());
        let env = [
            ("DATABASE_URL", database_url.as_str()),
            ("KILN_PUBLIC_URL", public_url.unwrap_or(&url)),
            ("KILN_WORKER_TOKEN", WORKER_TOKEN),
            ("KILN_JWT_SECRET", "kiln-app-test-jwt-secret-0123456789abcdef0123"),
            ("KILN_SIGNUP_CREDITS", &SIGNUP_CREDITS.to_string()),
            ("RUST_LOG", "warn"),
        ];
        let migrated = Command::new(&bin).arg("migrate").envs(env).output().unwrap();
        assert!(migrated.status.success(), "kiln-server migrate: {}", String::from_utf8_lossy(&migrated.stderr));
        let log = std::fs::File::create(work.join("server.log")).unwrap();
        let bind = url.trim_start_matches("http://").to_string();
        let child = Command::new(&bin)
            .args(["serve", "--bind", &bind])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        // reqwest is built with `rustls-no-provider`: a client needs a provider even for HTTP
        // (ring, as the workspace's other clients; its lack of post-quantum suites is the
        // deprecation, and plain HTTP uses none).
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let http = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build().unwrap();
        let server = ApiServer { url, work, child, admin_url, database, runtime, http };
        server.wait_until_up();
        Some(server)
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let up = self.block_on(async { self.http.get(self.at("/healthz")).send().await });
            let up = up.is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            assert!(Instant::now() < deadline, "kiln-server did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Runs `work` on this server's runtime (the tests themselves are plain threads).
    pub fn block_on<T>(&self, work: impl Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    /// Signs `email` up (with [`PASSWORD`]); the answer (`access_token`, `refresh_token`, `org_id`).
    pub fn signup(&self, email: &str) -> Value {
        let body = json!({"email": email, "password": PASSWORD});
        self.block_on(async {
            let response = self.http.post(self.at("/v1/auth/signup")).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 201, "signup of {email}");
            response.json().await.unwrap()
        })
    }

    /// `GET path` with `Authorization: Bearer credential`: the status and the JSON body.
    pub fn get(&self, path: &str, credential: &str) -> (u16, Value) {
        self.block_on(async {
            let response = self.http.get(self.at(path)).bearer_auth(credential).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    /// The token endpoint's answer to a refresh with `refresh_token` for `client_id`: the status
    /// and the `error` (RFC 6749 §5.2) when refused.
    pub fn refresh(&self, refresh_token: &str, client_id: &str) -> (u16, String) {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)];
        let body = url_form(&form);
        self.block_on(async {
            let response = self
                .http
                .post(self.at("/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["error"].as_str().unwrap_or_default().to_string())
        })
    }

    /// The server's stderr so far.
    /// A GPU worker of this server, on the CPU (the engine the app runs), taking jobs until
    /// dropped; its log is `worker-<id>.log` in [`ApiServer::work`].
    pub fn spawn_worker(&self, id: &str) -> Worker {
        let bin = server_bin().unwrap();
        let log = std::fs::File::create(self.work.join(format!("worker-{id}.log"))).unwrap();
        let child = Command::new(bin)
            .args(["worker", "--server", &self.url, "--device", "cpu", "--id", id])
            .arg("--work-dir")
            .arg(self.work.join(format!("worker-{id}")))
            .env("KILN_WORKER_TOKEN", WORKER_TOKEN)
            .env("RUST_LOG", "warn,kiln_server=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Worker(child)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("server.log")).unwrap_or_default()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database));
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn psql(url: &str, sql: &str) {
    let output = Command::new("psql").args(["-q", url, "-c", sql]).output().expect("psql (Debian postgresql-client)");
    assert!(output.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
}

fn url_form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

/// What the browser saw during a sign-in.
pub struct BrowserVisit {
    /// The consent page's HTML (it names the app asking).
    pub login_page: String,
    /// The page the app's loopback listener answered the redirect with, and its status.
    pub final_status: u16,
    pub final_page: String,
}

/// The person at the browser: loads the authorization URL, posts the sign-in form with `email`
/// and [`PASSWORD`] (and the form's cookie), approves, then follows the server's redirect to the
/// app's loopback listener.
pub fn play_browser(server: &ApiServer, authorize_url: &str, email: &str) -> BrowserVisit {
    let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    server.block_on(async {
        let page = http.get(authorize_url).send().await.unwrap();
        assert_eq!(page.status(), 200, "the sign-in page");
        let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let login_page = page.text().await.unwrap();
        let mut form = hidden_fields(&login_page);
        form.extend(
            [("email", email), ("password", PASSWORD), ("decision", "approve")].map(|(n, v)| (n.into(), v.into())),
        );
        let pairs: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let approved = http
            .post(server.at("/oauth/authorize"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(url_form(&pairs))
            .send()
            .await
            .unwrap();
        assert_eq!(approved.status(), 303, "the approved form redirects");
        let redirect = approved.headers()["location"].to_str().unwrap().to_string();
        let back = http.get(redirect).send().await.unwrap();
        let final_status = back.status().as_u16();
        BrowserVisit { login_page, final_status, final_page: back.text().await.unwrap() }
    })
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
