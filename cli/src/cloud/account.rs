//! `kiln login`, `kiln logout`, `kiln whoami`, `kiln credits` and `kiln credits buy`: the sign-in
//! to the hosted service, who the credential is (`GET /v1/me`), the organisation's balance, and
//! buying a credit pack through Stripe Checkout in the browser.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use kiln_api::accounts::{CredentialInfo, Me};
use kiln_api::credits::{Balances, LedgerQuery, Reason};
use kiln_api::keys::Scope;
use kiln_api::prices::Pack;
use kiln_cloud::login::{self, API_KEY_ENV, CredentialSource, LoginOptions, Logout, Session};
use kiln_cloud::token_store::TokenStore;
use url::Url;

use super::{BadArgument, EXIT_CODES_HELP, ServerArgs, block_on, client, session};

/// How often `kiln credits buy` asks whether the payment landed: Stripe's webhook usually comes
/// seconds after the customer pays, and one small read every 2 s is nothing to the API.
const PURCHASE_POLL: Duration = Duration::from_secs(2);

/// How many recent purchases each poll reads: the new one is the newest unless that many others
/// land at the same moment.
const PURCHASES_PER_POLL: i64 = 20;

/// Currencies Stripe counts in whole units (no cents), so their `amount` is not divided by 100
/// (Stripe's "zero-decimal currencies").
const ZERO_DECIMAL_CURRENCIES: [&str; 16] =
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"];

/// `kiln credits` arguments.
#[derive(clap::Args)]
#[command(after_help = EXIT_CODES_HELP, args_conflicts_with_subcommands = true)]
pub struct CreditsArgs {
    #[command(subcommand)]
    pub action: Option<CreditsAction>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Also list the most recent ledger transactions (grants, purchases, job reservations, …).
    #[arg(long)]
    pub ledger: bool,
    /// How many ledger transactions to list.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Print JSON on stdout: {"balances": …, "ledger": [...]}.
    #[arg(long)]
    pub json: bool,
}

/// `kiln credits …`.
#[derive(clap::Subcommand)]
pub enum CreditsAction {
    /// Buys a credit pack: opens Stripe Checkout in the browser, then waits until the payment
    /// lands and shows the new balance. Needs a login (`kiln login`), not an API key.
    #[command(after_help = EXIT_CODES_HELP)]
    Buy(BuyArgs),
}

#[derive(clap::Args)]
pub struct BuyArgs {
    /// The pack's id, as `GET /v1/prices` lists it (e.g. pack_100).
    pub pack: String,
    /// Open the Checkout page and return at once, without waiting for the payment.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the payment before giving up (it may still land later).
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub timeout: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Buying credits is a person's decision: the service refuses API keys (exit code 4).
#[derive(Debug)]
pub struct NeedsLogin;

impl std::fmt::Display for NeedsLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "buying credits needs a person's login, not an API key: unset {API_KEY_ENV} and run `kiln login`")
    }
}

impl std::error::Error for NeedsLogin {}

/// Signs in through the browser and stores the tokens.
pub fn login(server: &ServerArgs) -> Result<()> {
    block_on(async {
        let client = client(&server.server)?;
        let store = TokenStore::open().await.map_err(login::LoginError::from)?;
        if let Some(reason) = store.fallback_reason() {
            eprintln!("no system keyring ({reason}): the login will be kept in {}", store.kind());
        }
        if std::env::var(API_KEY_ENV).is_ok_and(|k| !k.trim().is_empty()) {
            eprintln!("note: {API_KEY_ENV} is set, and commands use it instead of this login while it is");
        }
        let tokens = login::login(&client, &LoginOptions::default(), |url| {
            eprintln!("Opening your browser to sign in to {}. If it does not open, visit:\n  {url}", client.server());
            open_in_browser(url);
        })
        .await?;
        store.save(&login::server_key(&client), &tokens).await.map_err(login::LoginError::from)?;
        println!("Logged in to {}; the tokens are kept in {}.", login::server_key(&client), store.kind());
        Ok(())
    })
}

/// Revokes the stored login at the server and forgets it.
pub fn logout(server: &ServerArgs) -> Result<()> {
    block_on(async {
        let client = client(&server.server)?;
        let store = TokenStore::open().await.map_err(login::LoginError::from)?;
        match login::logout(&client, &store).await? {
            Logout::Revoked(kind) => {
                println!("Logged out of {}: the login was revoked and removed from {kind}.", login::server_key(&client))
            }
            Logout::NotLoggedIn => println!("Not logged in to {}: nothing to do.", login::server_key(&client)),
        }
        Ok(())
    })
}

/// The server, who the credential is (`GET /v1/me`: the user and their role, the organisation,
/// the credential's kind, never its secret) and, when it may read them, the balances.
pub fn whoami(server: &ServerArgs) -> Result<()> {
    block_on(async {
        let session = session(&server.server).await?;
        let me = session.call(async |client| client.me().await).await?;
        let balances = if me.scopes.contains(&Scope::JobsRead) {
            Some(session.call(async |client| client.credits().await).await?)
        } else {
            None
        };
        print!("{}", whoami_text(session.client().server(), &session.source(), &me, balances));
        Ok(())
    })
}

fn whoami_text(server: &Url, source: &CredentialSource, me: &Me, balances: Option<Balances>) -> String {
    let user = match (&me.user, me.role) {
        (Some(user), Some(role)) => format!("{} ({role})", user.email),
        (Some(user), None) => user.email.clone(),
        (None, _) => "none: this credential acts for the organisation".into(),
    };
    let credential = match &me.credential {
        CredentialInfo::AccessToken => format!("an access token, from {source}"),
        CredentialInfo::ApiKey { name, prefix, expires_at, .. } => {
            let expires = expires_at.map(|at| format!(", expires {}", at.format("%Y-%m-%d"))).unwrap_or_default();
            format!("the {} API key '{name}' ({prefix}…{expires}), from {source}", me.mode)
        }
        CredentialInfo::StudioClaim { id } => format!("a Studio claim ({id})"),
    };
    let credits = match balances {
        Some(b) => format!(
            "{} available, {} reserved{}",
            b.available,
            b.reserved,
            if b.debt > 0 { format!(", {} owed", b.debt) } else { String::new() }
        ),
        None => "not shown (the credential lacks jobs:read)".into(),
    };
    format!(
        "server:        {server}\nuser:          {user}\norganisation:  {} ({})\ncredential:    {credential}\nscopes:        {}\ncredits:       {credits}\n",
        me.organisation.name,
        me.organisation.id,
        Scope::join(&me.scopes),
    )
}

/// The balances, and with `--ledger` the recent transactions; or `kiln credits buy`.
pub fn credits(args: &CreditsArgs) -> Result<()> {
    if let Some(CreditsAction::Buy(buy_args)) = &args.action {
        return buy(buy_args);
    }
    block_on(async {
        let session = session(&args.server.server).await?;
        let balances = session.call(async |client| client.credits().await).await?;
        let ledger = if args.ledger {
            let query = LedgerQuery { limit: Some(args.limit), ..LedgerQuery::default() };
            Some(session.call(async |client| client.ledger(&query).await).await?.data)
        } else {
            None
        };
        if args.json {
            let value = serde_json::json!({"balances": balances, "ledger": ledger});
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        println!("available: {}\nreserved:  {}\ndebt:      {}", balances.available, balances.reserved, balances.debt);
        for entry in ledger.iter().flatten() {
            let job = entry.job_id.map(|id| format!(" job {id}")).unwrap_or_default();
            let note = entry.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            println!(
                "{}  {:<12} {:>+8} available {:>+8} reserved{job}{note}",
                entry.created_at.format("%Y-%m-%d %H:%M"),
                entry.reason.as_str(),
                entry.available,
                entry.reserved
            );
        }
        Ok(())
    })
}

/// Starts a Checkout for the pack, opens it in the browser (and prints its URL), then, unless
/// `--no-wait`, waits for the purchase to land and prints the new balance.
///
/// The purchase is recognised exactly: a `purchase` in the ledger whose `stripe_ref` is this
/// Checkout Session (a rise of `available` alone could be a job's released reservation).
fn buy(args: &BuyArgs) -> Result<()> {
    block_on(async {
        let session = session(&args.server.server).await?;
        if session.source() == CredentialSource::ApiKeyFromEnv {
            return Err(NeedsLogin.into());
        }
        let prices = session.call(async |client| client.prices().await).await?;
        let pack =
            prices.packs.iter().find(|p| p.id == args.pack).ok_or_else(|| unknown_pack(&args.pack, &prices.packs))?;
        let checkout = session.call(async |client| client.buy_pack(&pack.id).await).await?;
        let url = Url::parse(&checkout.checkout_url)
            .map_err(|e| anyhow!("the service answered a Checkout URL that is not a URL: {e}"))?;
        eprintln!("Opening Stripe Checkout for {} in your browser. If it does not open, visit:", describe_pack(pack));
        println!("{url}");
        open_in_browser(&url);
        if args.no_wait {
            eprintln!("Not waiting: the credits arrive once Stripe confirms the payment (`kiln credits` shows them).");
            return Ok(());
        }
        eprintln!("Waiting for the payment (up to {} s; Ctrl-C stops waiting, not the purchase)…", args.timeout);
        wait_for_purchase(&session, &checkout.session_id, Duration::from_secs(args.timeout)).await?;
        let balances = session.call(async |client| client.credits().await).await?;
        println!(
            "Payment received: {} credits added. Balance: {} available, {} reserved{}.",
            pack.credits,
            balances.available,
            balances.reserved,
            if balances.debt > 0 { format!(", {} owed", balances.debt) } else { String::new() }
        );
        Ok(())
    })
}

/// Polls the ledger's purchases until one is the Checkout Session `session_id`'s, or `timeout`.
async fn wait_for_purchase(session: &Session, session_id: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let query =
        LedgerQuery { limit: Some(PURCHASES_PER_POLL), reason: Some(Reason::Purchase), ..LedgerQuery::default() };
    loop {
        let page = session.call(async |client| client.ledger(&query).await).await?;
        if page.data.iter().any(|t| t.stripe_ref.as_deref() == Some(session_id)) {
            return Ok(());
        }
        if Instant::now() + PURCHASE_POLL > deadline {
            return Err(anyhow!(
                "no payment confirmed within {} s. The purchase may still land (Stripe confirms some payment \
                 methods later): `kiln credits` shows the balance once it does",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(PURCHASE_POLL).await;
    }
}

fn unknown_pack(pack: &str, packs: &[Pack]) -> BadArgument {
    let known = if packs.is_empty() {
        "none are on sale".to_string()
    } else {
        packs.iter().map(describe_pack).collect::<Vec<_>>().join(", ")
    };
    BadArgument(format!("there is no credit pack {pack:?}; the packs: {known}"))
}

/// `pack_100 (100 credits for 10.00 EUR)`.
fn describe_pack(pack: &Pack) -> String {
    format!("{} ({} credits for {})", pack.id, pack.credits, money(pack.amount, &pack.currency))
}

/// `amount` minor units of `currency` as people read it: `10.00 EUR`, `1000 JPY`.
fn money(amount: i64, currency: &str) -> String {
    let code = currency.to_uppercase();
    if ZERO_DECIMAL_CURRENCIES.contains(&currency.to_lowercase().as_str()) {
        format!("{amount} {code}")
    } else {
        let sign = if amount < 0 { "-" } else { "" };
        format!("{sign}{}.{:02} {code}", amount.unsigned_abs() / 100, amount.unsigned_abs() % 100)
    }
}

/// Opens `url` in the browser without waiting for it (`BROWSER` first, as
/// `kiln_cloud::login::open_in_browser` does). A failure is only said: the caller always prints
/// the URL too.
fn open_in_browser(url: &Url) {
    if let Err(error) = login::open_in_browser(url) {
        eprintln!("(could not open a browser: {error})");
    }
}

#[cfg(test)]
mod tests {
    use kiln_api::accounts::{Organisation, Role, User};
    use kiln_api::keys::Mode;
    use kiln_cloud::token_store::StoreKind;
    use uuid::Uuid;

    use super::*;

    fn me(user: Option<User>, role: Option<Role>, credential: CredentialInfo) -> Me {
        Me {
            user,
            role,
            organisation: Organisation { id: Uuid::from_u128(1), name: "Acme Scans".into() },
            scopes: vec![Scope::JobsRead, Scope::JobsWrite],
            mode: Mode::Live,
            credential,
        }
    }

    #[test]
    fn whoami_names_the_user_the_organisation_and_the_credential_never_its_secret() {
        let server = Url::parse("http://127.0.0.1:9/").unwrap();
        let user = User { id: Uuid::from_u128(2), email: "ada@example.com".into() };
        let login = CredentialSource::Login(StoreKind::File("/home/ada/.config/kiln/credentials.json".into()));
        let balances = Balances { available: 90, reserved: 10, debt: 0 };
        let text = whoami_text(
            &server,
            &login,
            &me(Some(user), Some(Role::Owner), CredentialInfo::AccessToken),
            Some(balances),
        );
        assert!(text.contains("user:          ada@example.com (owner)"), "{text}");
        assert!(text.contains(&format!("organisation:  Acme Scans ({})", Uuid::from_u128(1))), "{text}");
        assert!(text.contains("an access token, from a login kept in the file"), "{text}");
        assert!(text.contains("credits:       90 available, 10 reserved\n"), "{text}");

        let key = CredentialInfo::ApiKey {
            id: Uuid::from_u128(3),
            name: "ci".into(),
            prefix: "kiln_live_Xk2b".into(),
            expires_at: None,
        };
        let text = whoami_text(&server, &CredentialSource::ApiKeyFromEnv, &me(None, None, key), None);
        assert!(text.contains("user:          none"), "{text}");
        assert!(text.contains("the live API key 'ci' (kiln_live_Xk2b…), from the API key in KILN_API_KEY"), "{text}");
        assert!(text.contains("credits:       not shown"), "{text}");
    }

    #[test]
    fn money_reads_as_people_write_it() {
        assert_eq!(money(1_000, "eur"), "10.00 EUR");
        assert_eq!(money(1_999, "usd"), "19.99 USD");
        assert_eq!(money(1_000, "jpy"), "1000 JPY");
        let pack = Pack { id: "pack_100".into(), credits: 100, amount: 1_000, currency: "eur".into() };
        let error = unknown_pack("pack_1", std::slice::from_ref(&pack)).to_string();
        assert!(error.contains("\"pack_1\"") && error.contains("pack_100 (100 credits for 10.00 EUR)"), "{error}");
    }
}
