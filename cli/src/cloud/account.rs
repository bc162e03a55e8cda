//! `kiln login`, `kiln logout`, `kiln whoami` and `kiln credits`: the sign-in to the hosted
//! service and the organisation's balance, over `kiln_cloud::login` and the credits routes.

use anyhow::Result;
use kiln_api::credits::LedgerQuery;
use kiln_cloud::login::{self, API_KEY_ENV, CredentialSource, LoginOptions, Logout};
use kiln_cloud::token_store::TokenStore;

use super::{EXIT_CODES_HELP, ServerArgs, block_on, client, session};

/// `kiln credits` arguments.
#[derive(clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct CreditsArgs {
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
            if let Err(error) = login::open_browser(url) {
                eprintln!("(could not open a browser: {error})");
            }
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

/// The server, how this command authenticates, and what the credential can see.
///
/// The API has no "who am I" route (`/v1/me`), so this shows what the credential itself tells
/// (an API key's mode from its prefix, or the login's store) and proves it works with
/// `GET /v1/credits`: the balances of the organisation it belongs to.
pub fn whoami(server: &ServerArgs) -> Result<()> {
    block_on(async {
        let session = session(&server.server).await?;
        let how = match session.source() {
            CredentialSource::ApiKeyFromEnv => {
                let key = session.access_token().await?;
                format!("{} ({} key)", CredentialSource::ApiKeyFromEnv, key_mode(&key))
            }
            source => source.to_string(),
        };
        let balances = session.call(async |client| client.credits().await).await?;
        println!("server:        {}", session.client().server());
        println!("authenticated: with {how}");
        println!(
            "organisation:  {} credits available, {} reserved{}",
            balances.available,
            balances.reserved,
            if balances.debt > 0 { format!(", {} owed", balances.debt) } else { String::new() }
        );
        Ok(())
    })
}

/// `live`, `test`, or `unknown`, from an API key's prefix (never more of the key).
fn key_mode(key: &str) -> &'static str {
    if key.starts_with("kiln_live_") {
        "live"
    } else if key.starts_with("kiln_test_") {
        "test"
    } else {
        "unrecognised"
    }
}

/// The balances, and with `--ledger` the recent transactions.
pub fn credits(args: &CreditsArgs) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_shows_only_its_mode() {
        assert_eq!(key_mode("kiln_live_abc"), "live");
        assert_eq!(key_mode("kiln_test_abc"), "test");
        assert_eq!(key_mode("something"), "unrecognised");
    }
}
