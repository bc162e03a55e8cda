//! The cloud account pane's commands: the app's sign-in to the hosted service and what the account
//! holds (credits, the ledger, credit packs, API keys), over `kiln-cloud`.
//!
//! The login is the one the CLI keeps: the same [`TokenStore`] (the system keyring, or a file only
//! the user can read where there is none) under the same key ([`login::server_key`]), so a
//! `kiln login` shows here and a sign-in here serves `kiln`. The server is the settings'
//! `cloud_url`. The app signs in as [`DESKTOP_CLIENT_ID`] through the system browser
//! (`BROWSER` first, as the CLI). `KILN_API_KEY` is not used here: the pane is about a person's
//! login (buying credits and managing keys need one), and the CLI keeps that variable for scripts.
//!
//! Every command is async, on Tauri's runtime, never on the UI thread; every call to the server
//! has a bounded timeout and few retries ([`CALL_TIMEOUT`], [`CALL_ATTEMPTS`]), so an unreachable
//! server is an error within seconds, not a hang. Errors become [`AppError`]s that say what to do.
//! No token or API key secret is ever logged; a new key's secret is handed to the UI once and
//! not kept.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_api::credits::{Balances, LedgerQuery, LedgerTransaction, Reason};
use kiln_api::keys::{ApiKey, CreateKey, Mode, Scope};
use kiln_api::prices::Priority;
use kiln_cloud::job;
use kiln_cloud::login::{self, DEFAULT_LOGIN_TIMEOUT, DESKTOP_CLIENT_ID, LoginError, LoginOptions, Session};
use kiln_cloud::token_store::{StoreError, TokenStore};
use kiln_cloud::{Client, ClientConfig, CloudError, ErrorKind, JobError, RetryPolicy};
use kiln_job::JobSettings;
use kiln_protocol::ErrorClass;
use kiln_protocol::app::{
    AppError, CloudAccount, CloudBalance, CloudCheckout, CloudCreatedKey, CloudKey, CloudLedgerEntry, CloudLedgerPage,
    CloudPack, CloudStatus,
};
use tauri::{Manager, Runtime};
use url::Url;

use crate::error::{CommandResult, bad_input, internal, lock};
use crate::events::Emitter;
use crate::state::Shared;

/// One try of a call to the server: its answers come in well under a second; 10 s covers a slow
/// link, and a person looking at the pane sees an unreachable server's error soon.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Tries of a call in all: rides over a dropped connection or a restarting server (waits of at
/// most 0.5 and 1 s between them), short of the CLI's five, because a person waits on the pane.
pub const CALL_ATTEMPTS: u32 = 3;

/// How often a started purchase is looked for in the ledger: Stripe's webhook usually comes
/// seconds after the payment, and one small read every 2 s is nothing to the API (the CLI's pace).
const PURCHASE_POLL: Duration = Duration::from_secs(2);

/// How long a started purchase is waited for: a person paying at Checkout, as `kiln credits buy`
/// waits by default. A later payment still lands; the pane's Refresh shows it.
const PURCHASE_WAIT: Duration = Duration::from_secs(15 * 60);

/// How many recent purchases each poll reads: the new one is the newest unless that many others
/// land at the same moment.
const PURCHASES_PER_POLL: i64 = 20;

/// The cloud pane's state: the app's settings (the server) and the token store, opened once.
pub struct Cloud {
    app: Arc<Shared>,
    store: Mutex<Option<TokenStore>>,
    emitter: Emitter,
}

/// The state Tauri manages for the cloud commands.
pub struct CloudState(Arc<Cloud>);

/// Hands the cloud commands their state, and answers it for the runner's cloud jobs.
pub fn start<R: Runtime>(app: &tauri::AppHandle<R>, shared: Arc<Shared>) -> Arc<Cloud> {
    let cloud = Arc::new(Cloud { app: shared, store: Mutex::new(None), emitter: Emitter::new(app.clone()) });
    app.manage(CloudState(Arc::clone(&cloud)));
    cloud
}

impl CloudState {
    /// Whether a login to the settings' server is stored (no network): what `AppInfo.offline`
    /// reports the other way round. A store that cannot be read counts as signed out (logged).
    pub async fn signed_in(&self) -> bool {
        let cloud = Arc::clone(&self.0);
        let found = answered(move || async move {
            let server = login::server_key(&cloud.client()?);
            let store = cloud.store().await?;
            Ok(store.load(&server).await.map_err(store_error)?.is_some())
        });
        match found.await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "cannot tell whether the app is signed in to the cloud");
                false
            }
        }
    }

    /// The quote for a cloud job of the photos in `input` with `settings`, and the balance it is
    /// checked against: what Start asks before a job goes to the cloud, and the draft's estimate.
    pub async fn estimate(&self, input: PathBuf, settings: JobSettings) -> CommandResult<job::Estimate> {
        self.run(async move |cloud| {
            let session = cloud.signed_in_session().await?;
            let overrides = job::cloud_overrides(&settings);
            job::estimate(&session, &input, &overrides, Priority::Standard).await.map_err(job_error)
        })
        .await
    }

    /// Runs `work` on the cloud state, on a runtime of its own ([`answered`]).
    async fn run<T, Fut>(&self, work: impl FnOnce(Arc<Cloud>) -> Fut + Send + 'static) -> CommandResult<T>
    where
        T: Send + 'static,
        Fut: Future<Output = CommandResult<T>>,
    {
        let cloud = Arc::clone(&self.0);
        answered(move || work(cloud)).await
    }
}

/// Runs the future `make` makes on a thread with a current-thread runtime of its own, and awaits
/// its answer. kiln-cloud's calls (retrying closures, `Session::call`'s async closures) make
/// futures rustc cannot show `Send` for every lifetime (its higher-ranked lifetime limitation), so
/// they cannot run as Tauri's tasks; only the closure that makes them crosses threads. The UI
/// thread is never blocked; cloud calls are few and seconds long, so a thread each is cheap.
async fn answered<T, Fut>(make: impl FnOnce() -> Fut + Send + 'static) -> CommandResult<T>
where
    T: Send + 'static,
    Fut: Future<Output = CommandResult<T>>,
{
    let (answer, answered) = tokio::sync::oneshot::channel();
    on_own_runtime(move || async move {
        // The command may have been dropped (the window closed): nobody to answer.
        let _ = answer.send(make().await);
    })?;
    answered.await.map_err(|_| internal("the cloud call's thread stopped before answering"))?
}

/// Runs the future `make` makes to its end on a new thread with its own runtime.
fn on_own_runtime<Fut: Future<Output = ()>>(make: impl FnOnce() -> Fut + Send + 'static) -> CommandResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| internal(format!("cannot start a thread for the cloud: {e}")))?;
    std::thread::Builder::new()
        .name("kiln-cloud".into())
        .spawn(move || runtime.block_on(make()))
        .map_err(|e| internal(format!("cannot start a thread for the cloud: {e}")))?;
    Ok(())
}

impl Cloud {
    /// Tells the pane the account changed (a cloud job reserved credits).
    pub(crate) fn account_changed(&self) {
        self.emitter.cloud_changed();
    }

    /// The token store, opened on first use (probing the keyring is a D-Bus round trip).
    async fn store(&self) -> CommandResult<TokenStore> {
        if let Some(store) = lock(&self.store)?.clone() {
            return Ok(store);
        }
        let store = TokenStore::open().await.map_err(store_error)?;
        *lock(&self.store)? = Some(store.clone());
        Ok(store)
    }

    /// A client of the settings' server, with no credential.
    fn client(&self) -> CommandResult<Client> {
        let url = lock(&self.app.settings)?.cloud_url.clone();
        let server = Url::parse(url.trim()).map_err(|e| {
            bad_input(format!("the cloud server in Settings is not a URL ({e}): {url}; set it in Settings"))
        })?;
        let retry = RetryPolicy { attempts: CALL_ATTEMPTS, ..RetryPolicy::default() };
        let config = ClientConfig { timeout: CALL_TIMEOUT, retry, ..ClientConfig::new(server) };
        Client::new(config).map_err(cloud_error)
    }

    /// The stored login's session for the settings' server; `None` when signed out.
    async fn session(&self) -> CommandResult<Option<Session>> {
        match Session::resume(self.client()?, self.store().await?).await {
            Ok(session) => Ok(Some(session)),
            Err(LoginError::NotLoggedIn { .. }) => Ok(None),
            Err(error) => Err(login_error(error)),
        }
    }

    /// The session, or the error that says to sign in.
    pub(crate) async fn signed_in_session(&self) -> CommandResult<Session> {
        let server = login::server_key(&self.client()?);
        self.session().await?.ok_or_else(|| login_error(LoginError::NotLoggedIn { server }))
    }

    async fn status(&self) -> CommandResult<CloudStatus> {
        let store = self.store().await?;
        let mut status = CloudStatus {
            server: login::server_key(&self.client()?),
            account: None,
            kept_in: store.kind().to_string(),
            keyring_problem: store.fallback_reason().map(str::to_string),
        };
        let Some(session) = self.session().await? else { return Ok(status) };
        match account(&session).await {
            Ok(account) => status.account = Some(account),
            // The refresh token was refused (revoked elsewhere, expired): signed out, in effect.
            Err(LoginError::LoginAgain { server }) => tracing::info!(%server, "the stored cloud login was refused"),
            Err(error) => return Err(login_error(error)),
        }
        Ok(status)
    }
}

impl Cloud {
    async fn login(&self) -> CommandResult<CloudStatus> {
        let store = self.store().await?;
        let client = self.client()?;
        let options = LoginOptions { client_id: DESKTOP_CLIENT_ID, timeout: DEFAULT_LOGIN_TIMEOUT };
        let tokens = login::login(&client, &options, |url| {
            self.emitter.cloud_login_url(url.as_str());
            if let Err(error) = login::open_in_browser(url) {
                tracing::warn!(%error, "could not open a browser for the cloud sign-in");
            }
        })
        .await
        .map_err(login_error)?;
        let server = login::server_key(&client);
        store.save(&server, &tokens).await.map_err(store_error)?;
        tracing::info!(%server, kept_in = %store.kind(), "signed in to the cloud");
        self.emitter.cloud_changed();
        self.status().await
    }

    async fn logout(&self) -> CommandResult<CloudStatus> {
        let store = self.store().await?;
        let client = self.client()?;
        login::logout(&client, &store).await.map_err(|error| {
            let error = login_error(error);
            AppError::new(error.class, format!("{}. You are still signed in: try again to sign out", error.message))
        })?;
        self.emitter.cloud_changed();
        self.status().await
    }

    /// Starts a Checkout for `pack` and opens it in the browser; the session that bought it, to
    /// watch for the payment.
    async fn checkout(&self, pack: &str) -> CommandResult<(Session, CloudCheckout)> {
        let session = self.signed_in_session().await?;
        let checkout = session.call(async |client| client.buy_pack(pack).await).await.map_err(login_error)?;
        let url = Url::parse(&checkout.checkout_url)
            .map_err(|e| internal(format!("the service answered a Checkout address that is not a URL: {e}")))?;
        if let Err(error) = login::open_in_browser(&url) {
            tracing::warn!(%error, "could not open a browser for Stripe Checkout");
        }
        Ok((session, CloudCheckout { session_id: checkout.session_id, url: checkout.checkout_url }))
    }
}

/// Who the session is and the organisation's balance (when the login may read it).
async fn account(session: &Session) -> Result<CloudAccount, LoginError> {
    let me = session.call(async |client| client.me().await).await?;
    let balance = if me.scopes.contains(&Scope::JobsRead) {
        Some(balance(session.call(async |client| client.credits().await).await?))
    } else {
        None
    };
    Ok(CloudAccount {
        email: me.user.map(|user| user.email),
        role: me.role.map(|role| role.as_str().to_string()),
        organisation: me.organisation.name,
        organisation_id: me.organisation.id.to_string(),
        scopes: Scope::to_strings(&me.scopes),
        balance,
    })
}

/// Signed in or not, the server, who, where the login is kept, and the balance.
#[tauri::command]
pub async fn cloud_status(state: tauri::State<'_, CloudState>) -> CommandResult<CloudStatus> {
    state.run(async move |cloud| cloud.status().await).await
}

/// Signs in through the system browser (OAuth with PKCE, a loopback redirect) and stores the
/// login where the CLI finds it. Resolves once the browser brought the answer (or after
/// [`DEFAULT_LOGIN_TIMEOUT`]); `cloud-login-url` carries the page's address for the UI to show in
/// case no browser opens, `cloud-changed` says the sign-in changed.
#[tauri::command]
pub async fn cloud_login(state: tauri::State<'_, CloudState>) -> CommandResult<CloudStatus> {
    state.run(async move |cloud| cloud.login().await).await
}

/// Signs out: the login is revoked at the server, then forgotten (if the server cannot be reached
/// it stays stored, and the error says so, so a live login is never just forgotten).
#[tauri::command]
pub async fn cloud_logout(state: tauri::State<'_, CloudState>) -> CommandResult<CloudStatus> {
    state.run(async move |cloud| cloud.logout().await).await
}

/// One page of the organisation's credit ledger, newest first; `after` is the previous page's
/// `next`, `limit` 1 to 100 (the server's default 20 when not given).
#[tauri::command]
pub async fn cloud_ledger(
    state: tauri::State<'_, CloudState>,
    after: Option<String>,
    limit: Option<i64>,
) -> CommandResult<CloudLedgerPage> {
    let after = after.map(|id| id.parse().map_err(|_| bad_input(format!("not a ledger page: {id}")))).transpose()?;
    let query = LedgerQuery { limit, after, ..LedgerQuery::default() };
    state
        .run(async move |cloud| {
            let session = cloud.signed_in_session().await?;
            let page = session.call(async |client| client.ledger(&query).await).await.map_err(login_error)?;
            Ok(CloudLedgerPage {
                entries: page.data.into_iter().map(ledger_entry).collect(),
                next: page.next.map(|id| id.to_string()),
            })
        })
        .await
}

/// The credit packs on sale (the published price table: no sign-in needed).
#[tauri::command]
pub async fn cloud_packs(state: tauri::State<'_, CloudState>) -> CommandResult<Vec<CloudPack>> {
    state
        .run(async move |cloud| {
            let prices = cloud.client()?.prices().await.map_err(cloud_error)?;
            Ok(prices
                .packs
                .into_iter()
                .map(|pack| CloudPack {
                    id: pack.id,
                    credits: pack.credits,
                    amount: pack.amount,
                    currency: pack.currency,
                })
                .collect())
        })
        .await
}

/// Buys the pack `pack`: opens Stripe Checkout in the browser and returns its session. The app
/// then looks for the purchase in the ledger (on the same thread, after answering) and sends
/// `cloud-changed` once it landed.
#[tauri::command]
pub async fn cloud_buy(state: tauri::State<'_, CloudState>, pack: String) -> CommandResult<CloudCheckout> {
    let cloud = Arc::clone(&state.0);
    let (answer, answered) = tokio::sync::oneshot::channel();
    on_own_runtime(move || async move {
        match cloud.checkout(&pack).await {
            Ok((session, checkout)) => {
                let session_id = checkout.session_id.clone();
                let _ = answer.send(Ok(checkout));
                wait_for_purchase(&session, &session_id, &cloud.emitter).await;
            }
            Err(error) => {
                let _ = answer.send(Err(error));
            }
        }
    })?;
    answered.await.map_err(|_| internal("the cloud call's thread stopped before answering"))?
}

/// Polls the ledger's purchases until one is the Checkout Session `session_id`'s (a rise of the
/// balance alone could be a released reservation), then sends `cloud-changed`; gives up after
/// [`PURCHASE_WAIT`].
async fn wait_for_purchase(session: &Session, session_id: &str, emitter: &Emitter) {
    let deadline = Instant::now() + PURCHASE_WAIT;
    let query =
        LedgerQuery { limit: Some(PURCHASES_PER_POLL), reason: Some(Reason::Purchase), ..LedgerQuery::default() };
    while Instant::now() < deadline {
        tokio::time::sleep(PURCHASE_POLL).await;
        match session.call(async |client| client.ledger(&query).await).await {
            Ok(page) if page.data.iter().any(|t| t.stripe_ref.as_deref() == Some(session_id)) => {
                tracing::info!("the credit purchase landed");
                emitter.cloud_changed();
                return;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not look for the credit purchase; trying again"),
        }
    }
    tracing::info!("no payment confirmed within {} s; it may still land", PURCHASE_WAIT.as_secs());
}

/// The organisation's API keys, newest first, never their secrets.
#[tauri::command]
pub async fn cloud_keys(state: tauri::State<'_, CloudState>) -> CommandResult<Vec<CloudKey>> {
    state
        .run(async move |cloud| {
            let session = cloud.signed_in_session().await?;
            let keys = session.call(async |client| client.keys().await).await.map_err(login_error)?;
            Ok(keys.iter().map(cloud_key).collect())
        })
        .await
}

/// Creates a live API key named `name` with `scopes`, lasting until revoked; its secret is in the
/// answer, this once, and nowhere else.
#[tauri::command]
pub async fn cloud_key_create(
    state: tauri::State<'_, CloudState>,
    name: String,
    scopes: Vec<String>,
) -> CommandResult<CloudCreatedKey> {
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err(bad_input("give the key a name, to tell it apart later"));
    }
    let scopes = Scope::parse_list(&scopes.join(" ")).map_err(bad_input)?;
    if scopes.is_empty() {
        return Err(bad_input("choose at least one thing the key may do"));
    }
    let request = CreateKey { name, scopes, mode: Mode::Live, expires_at: None };
    state
        .run(async move |cloud| {
            let session = cloud.signed_in_session().await?;
            let created = session.call(async |client| client.create_key(&request).await).await.map_err(login_error)?;
            tracing::info!(prefix = %created.api_key.prefix, "API key created");
            Ok(CloudCreatedKey { key: cloud_key(&created.api_key), secret: created.key })
        })
        .await
}

/// Revokes the key `id` at once (revoking twice is no error).
#[tauri::command]
pub async fn cloud_key_revoke(state: tauri::State<'_, CloudState>, id: String) -> CommandResult<CloudKey> {
    let key_id = id.parse().map_err(|_| bad_input(format!("not an API key's id: {id}")))?;
    state
        .run(async move |cloud| {
            let session = cloud.signed_in_session().await?;
            let key = session.call(async |client| client.revoke_key(key_id).await).await.map_err(login_error)?;
            tracing::info!(prefix = %key.prefix, "API key revoked");
            Ok(cloud_key(&key))
        })
        .await
}

fn balance(balances: Balances) -> CloudBalance {
    CloudBalance { available: balances.available, reserved: balances.reserved, debt: balances.debt }
}

fn ledger_entry(entry: LedgerTransaction) -> CloudLedgerEntry {
    CloudLedgerEntry {
        id: entry.id.to_string(),
        created_at: entry.created_at.to_rfc3339(),
        reason: entry.reason.as_str().to_string(),
        job_id: entry.job_id.map(|id| id.to_string()),
        note: entry.note,
        available: entry.available,
        reserved: entry.reserved,
        debt: entry.debt,
        balance_after: balance(entry.balance_after),
    }
}

fn cloud_key(key: &ApiKey) -> CloudKey {
    CloudKey {
        id: key.id.to_string(),
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        scopes: Scope::to_strings(&key.scopes),
        mode: key.mode.as_str().to_string(),
        created_at: key.created_at.to_rfc3339(),
        expires_at: key.expires_at.map(|at| at.to_rfc3339()),
        last_used_at: key.last_used_at.map(|at| at.to_rfc3339()),
        revoked_at: key.revoked_at.map(|at| at.to_rfc3339()),
        active: key.is_active(std::time::SystemTime::now().into()),
    }
}

/// A sign-in failure in the pane's words: what happened and what to do.
fn login_error(error: LoginError) -> AppError {
    match error {
        LoginError::NotLoggedIn { server } => bad_input(format!("not signed in to {server}: press Sign in")),
        LoginError::LoginAgain { server } => {
            bad_input(format!("the sign-in to {server} has expired or was revoked: sign in again"))
        }
        LoginError::Denied { .. } | LoginError::OAuth { .. } => {
            bad_input(format!("{error}. Press Sign in to try again"))
        }
        LoginError::TimedOut(_) => {
            AppError::new(ErrorClass::Busy, "no answer from the browser in time: press Sign in to try again")
        }
        LoginError::Listener(_) => internal(error.to_string()),
        LoginError::Cloud(error) => cloud_error(error),
        LoginError::Store(error) => store_error(error),
    }
}

/// A cloud job's step that failed, in the queue's words.
pub(crate) fn job_error(error: JobError) -> AppError {
    match error {
        JobError::Cloud(error) => cloud_error(error),
        JobError::Login(error) => login_error(error),
        JobError::NotEnoughCredits { .. } => bad_input(format!("{error}. Buy credits in the Cloud pane")),
        JobError::NoPhotos(_) | JobError::TooManyPhotos(_) | JobError::BadZip { .. } => bad_input(error.to_string()),
        JobError::BadRecord { .. } | JobError::Settings(_) => internal(error.to_string()),
    }
}

/// A failed call in the pane's words, classed by what the user can do about it.
fn cloud_error(error: CloudError) -> AppError {
    match error.kind() {
        ErrorKind::Network => AppError::new(
            ErrorClass::Busy,
            format!("{error}. Check the network connection, or the cloud server in Settings"),
        ),
        ErrorKind::Server => AppError::new(
            ErrorClass::Busy,
            format!("{error}. The service cannot do this now: try again in a few minutes"),
        ),
        ErrorKind::Unauthorized => bad_input(format!("{error}. Sign in again")),
        ErrorKind::PaymentRequired => bad_input(format!("{error}. Buy credits below")),
        ErrorKind::NotFound | ErrorKind::Conflict | ErrorKind::Invalid => bad_input(error.to_string()),
        ErrorKind::Io | ErrorKind::Integrity | ErrorKind::Protocol => internal(error.to_string()),
    }
}

/// The credential store failed: the keyring, or the file (whose message names it and the fix).
fn store_error(error: StoreError) -> AppError {
    internal(format!("the cloud login cannot be read or kept: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_to_do_and_are_classed_by_it() {
        let network = cloud_error(CloudError::Network { url_host: "127.0.0.1:9".into(), detail: "refused".into() });
        assert_eq!(network.class, ErrorClass::Busy);
        assert!(network.message.contains("cannot reach 127.0.0.1:9") && network.message.contains("Settings"));
        let credits = cloud_error(CloudError::from_response(
            402,
            None,
            br#"{"error":{"code":"insufficient_credits","message":"6 credits needed, 2 available"}}"#,
        ));
        assert_eq!(credits.class, ErrorClass::BadInput);
        assert!(credits.message.starts_with("6 credits needed") && credits.message.ends_with("Buy credits below"));
        let again = login_error(LoginError::LoginAgain { server: "https://a.example".into() });
        assert_eq!(again.class, ErrorClass::BadInput);
        assert!(again.message.contains("sign in again") && !again.message.contains("kiln login"), "{again}");
        let busy = cloud_error(CloudError::from_response(503, None, b""));
        assert_eq!(busy.class, ErrorClass::Busy);
        assert!(busy.message.contains("try again in a few minutes"), "{busy}");
    }
}
