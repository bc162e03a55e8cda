//! `kiln keys create|list|revoke`: the organisation's API keys, for scripts and CI (`KILN_API_KEY`).
//! A new key's secret is printed once, alone on stdout, so `KEY=$(kiln keys create --name ci)`
//! captures it; listings show only a key's prefix.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use kiln_api::keys::{ApiKey, CreateKey, Mode, Scope};
use uuid::Uuid;

use super::{BadArgument, EXIT_CODES_HELP, ServerArgs, block_on, session};

/// Seconds in a day, for `--expires-in-days`.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// How the table shows a time (UTC).
const STAMP: &str = "%Y-%m-%d %H:%M";

/// The scopes of a key created without `--scope`: what a script needs to submit and follow jobs,
/// and no more (managing keys and webhooks stays with people).
const DEFAULT_SCOPES: [Scope; 2] = [Scope::JobsRead, Scope::JobsWrite];

/// `kiln keys …`.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Creates a key and prints its secret, once: it is never shown again.
    #[command(after_help = EXIT_CODES_HELP)]
    Create(CreateArgs),
    /// The organisation's keys, newest first (prefixes only, never secrets).
    #[command(after_help = EXIT_CODES_HELP)]
    List(ListArgs),
    /// Revokes a key at once, named by its id or its prefix (as `kiln keys list` shows it).
    #[command(after_help = EXIT_CODES_HELP)]
    Revoke(RevokeArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// A name to tell the key apart (1 to 100 characters).
    #[arg(long)]
    pub name: String,
    /// A scope to grant (repeatable): jobs:read, jobs:write, keys:manage, webhooks:manage
    /// [default: jobs:read and jobs:write].
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    pub scopes: Vec<Scope>,
    /// The key stops working after this many days [default: never, until revoked].
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub expires_in_days: Option<u32>,
    /// A test key (`kiln_test_…`): jobs run at `preview` at most and are never charged.
    #[arg(long)]
    pub test: bool,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the created key as JSON on stdout, its secret included.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the keys as a JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct RevokeArgs {
    /// The key's id, or its prefix (`kiln_live_Xk2b`, or enough of it to name one active key).
    pub key: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(command: &KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Create(args) => create(args),
        KeysCommand::List(args) => list(args),
        KeysCommand::Revoke(args) => revoke(args),
    }
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| format!("unknown scope; the scopes are {}", Scope::join(&Scope::ALL)))
}

fn create(args: &CreateArgs) -> Result<()> {
    let scopes = if args.scopes.is_empty() { DEFAULT_SCOPES.to_vec() } else { args.scopes.clone() };
    let request = CreateKey {
        name: args.name.clone(),
        scopes,
        mode: if args.test { Mode::Test } else { Mode::Live },
        expires_at: args.expires_in_days.map(|days| (SystemTime::now() + DAY * days).into()),
    };
    block_on(async {
        let session = session(&args.server.server).await?;
        let created = session.call(async |client| client.create_key(&request).await).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&created)?);
        } else {
            eprintln!("Created {}.", describe(&created.api_key));
            println!("{}", created.key);
        }
        eprintln!("This is the only time the key is shown: store it now (it cannot be shown again).");
        Ok(())
    })
}

fn list(args: &ListArgs) -> Result<()> {
    block_on(async {
        let session = session(&args.server.server).await?;
        let keys = session.call(async |client| client.keys().await).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&keys)?);
        } else if keys.is_empty() {
            println!("no API keys");
        } else {
            print!("{}", table(&keys, SystemTime::now()));
        }
        Ok(())
    })
}

fn revoke(args: &RevokeArgs) -> Result<()> {
    block_on(async {
        let session = session(&args.server.server).await?;
        let id = match args.key.parse::<Uuid>() {
            Ok(id) => id,
            Err(_) => {
                let keys = session.call(async |client| client.keys().await).await?;
                by_prefix(&keys, &args.key, SystemTime::now())?.id
            }
        };
        let key = session.call(async |client| client.revoke_key(id).await).await?;
        println!("Revoked {}.", describe(&key));
        Ok(())
    })
}

/// The one active key whose prefix starts with `text`. The argument is never repeated in the
/// error: it might be a whole secret pasted by mistake.
fn by_prefix<'a>(keys: &'a [ApiKey], text: &str, now: SystemTime) -> Result<&'a ApiKey, BadArgument> {
    let matches: Vec<&ApiKey> =
        keys.iter().filter(|key| key.is_active(now.into()) && key.prefix.starts_with(text)).collect();
    match matches.as_slice() {
        [key] => Ok(key),
        [] => Err(BadArgument(
            "no active API key has that id or prefix (`kiln keys list` shows them; a prefix looks like kiln_live_Xk2b)"
                .into(),
        )),
        several => Err(BadArgument(format!(
            "{} active keys have that prefix ({}): give more of it, or the key's id",
            several.len(),
            several.iter().map(|key| key.prefix.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `key 'ci' (kiln_live_Xk2b…, live, jobs:read jobs:write, expires 2027-01-01)`.
fn describe(key: &ApiKey) -> String {
    let expires = key.expires_at.map_or("never expires".to_string(), |at| format!("expires {}", at.format("%Y-%m-%d")));
    format!("key '{}' ({}…, {}, {}, {expires})", key.name, key.prefix, key.mode, Scope::join(&key.scopes))
}

/// The keys as an aligned table, one line each.
fn table(keys: &[ApiKey], now: SystemTime) -> String {
    let header = ["PREFIX", "NAME", "MODE", "SCOPES", "CREATED", "LAST USED", "STATUS", "ID"].map(str::to_string);
    let rows: Vec<[String; 8]> = keys
        .iter()
        .map(|key| {
            [
                key.prefix.clone(),
                key.name.clone(),
                key.mode.to_string(),
                Scope::join(&key.scopes),
                key.created_at.format(STAMP).to_string(),
                key.last_used_at.map_or("-".to_string(), |at| at.format(STAMP).to_string()),
                status(key, now),
                key.id.to_string(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `active`, `revoked`, or `expired`.
fn status(key: &ApiKey, now: SystemTime) -> String {
    if key.revoked_at.is_some() {
        "revoked".into()
    } else if key.is_active(now.into()) {
        "active".into()
    } else {
        "expired".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str, name: &str, revoked: bool) -> ApiKey {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        ApiKey {
            id: Uuid::new_v4(),
            name: name.into(),
            prefix: prefix.into(),
            scopes: DEFAULT_SCOPES.to_vec(),
            mode: Mode::Live,
            created_at: created.into(),
            expires_at: None,
            last_used_at: None,
            revoked_at: revoked.then(|| created.into()),
        }
    }

    #[test]
    fn a_prefix_names_one_active_key_and_the_argument_is_never_echoed() {
        let keys = [
            key("kiln_live_Ab12", "ci", false),
            key("kiln_live_Ab34", "shop", false),
            key("kiln_live_Zz99", "old", true),
        ];
        let now = SystemTime::now();
        assert_eq!(by_prefix(&keys, "kiln_live_Ab12", now).unwrap().name, "ci");
        assert_eq!(by_prefix(&keys, "kiln_live_Ab3", now).unwrap().name, "shop");
        let several = by_prefix(&keys, "kiln_live_Ab", now).unwrap_err().to_string();
        assert!(several.contains("2 active keys") && several.contains("kiln_live_Ab12, kiln_live_Ab34"), "{several}");
        let pasted_secret = "kiln_live_Zz99SECRETSECRET";
        assert!(by_prefix(&keys, "kiln_live_Zz99", now).is_err(), "revoked keys are not candidates");
        assert!(!by_prefix(&keys, pasted_secret, now).unwrap_err().to_string().contains("SECRET"));
    }

    #[test]
    fn the_table_aligns_its_columns_and_says_which_keys_work() {
        let text = table(
            &[key("kiln_live_Ab12", "continuous integration", false), key("kiln_live_Zz99", "old", true)],
            SystemTime::now(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("PREFIX          NAME"), "{text}");
        let column = lines[0].find("MODE").unwrap();
        assert!(lines.iter().skip(1).all(|line| line[column..].starts_with("live")), "{text}");
        assert!(lines[1].contains("active") && lines[2].contains("revoked"), "{text}");
        assert!(lines[1].contains("jobs:read jobs:write") && lines[1].contains(" - "), "never used: {text}");
    }
}
