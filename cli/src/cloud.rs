//! The hosted service from the command line, thin over `kiln-cloud`: `kiln login`, `kiln logout`,
//! `kiln whoami`, `kiln credits [buy]`, `kiln keys create|list|revoke` and
//! `kiln cloud submit|status|list|cancel|download`, and the cloud half of
//! `kiln reconstruct --where cloud|auto`.
//!
//! The server is `--server URL`, else `KILN_SERVER`, else [`DEFAULT_SERVER`]. The credential is
//! the API key in `KILN_API_KEY` when it is set (no login needed: scripts, CI), else the login
//! `kiln login` stored (system keyring, or a private file where there is none), refreshed
//! transparently. No command ever prints a key or a token.
//!
//! Exit codes, beside `kiln`'s own (0 success, 1 other failure, 2 bad input, 3 model failed,
//! 130 interrupted): 2 also for a request the service refuses as invalid or a job id it does not
//! know, and for a quote that cannot be confirmed (no terminal and no `--yes`);
//! [`EXIT_LOGIN`] 4, [`EXIT_CREDITS`] 5, [`EXIT_NETWORK`] 6, [`EXIT_JOB_ENDED`] 7 and
//! [`EXIT_INTEGRITY`] 8 ([`exit_code`] maps `kiln_cloud::ErrorKind` to them).

mod account;
#[cfg(feature = "queue")]
pub mod batch;
mod jobs;
mod keys;
pub mod placement;
pub mod submit;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kiln_api::jobs::{Job, JobState};
use kiln_cloud::job::JobRecord;
use kiln_cloud::login::{API_KEY_ENV, LoginError, Session};
use kiln_cloud::token_store::TokenStore;
use kiln_cloud::{Client, ClientConfig, CloudError, ErrorKind, JobError};
use kiln_protocol::layout::CLOUD_JOB_FILE;
use url::Url;
use uuid::Uuid;

pub use account::{CreditsArgs, credits, login, logout, whoami};
pub use keys::{KeysCommand, run as keys};

/// The hosted API used when neither `--server` nor `KILN_SERVER` names one. Kiln's public
/// service has no final host name yet: this is the name its OpenAPI document uses, so a build
/// that should talk to another service says so with `--server` or `KILN_SERVER`.
pub const DEFAULT_SERVER: &str = "https://api.kiln.example";

/// Exit code: no credential, or one the service refused (expired, revoked): run `kiln login` or
/// set a valid `KILN_API_KEY`.
pub const EXIT_LOGIN: u8 = 4;
/// Exit code: the organisation has fewer credits than the job's quote (or a payment is pending).
pub const EXIT_CREDITS: u8 = 5;
/// Exit code: the service could not be reached (DNS, refused connection, TLS, timeout) after the
/// retries.
pub const EXIT_NETWORK: u8 = 6;
/// Exit code: the cloud job failed, was canceled (from anywhere) or expired.
pub const EXIT_JOB_ENDED: u8 = 7;
/// Exit code: a transferred file's SHA-256 is not the one the service declared (it was removed).
pub const EXIT_INTEGRITY: u8 = 8;

/// Exit codes of every cloud failure, for the help of the cloud commands.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 done, 1 other failure, 2 bad input (a path, a job id or settings the \
    service refuses; a quote not confirmed), 4 not logged in or credential refused (run `kiln login` or set \
    KILN_API_KEY), 5 insufficient credits, 6 the service is unreachable, 7 the cloud job failed or was canceled, \
    8 a download failed its integrity check.";

/// Where the hosted API is.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// The hosted API's URL [default: https://api.kiln.example].
    #[arg(long, env = "KILN_SERVER", default_value = DEFAULT_SERVER, hide_default_value = true)]
    pub server: Url,
}

/// `kiln cloud …`.
#[derive(clap::Subcommand)]
pub enum CloudCommand {
    /// Photos (a folder, a .zip, or a kiln.toml job spec beside them) to a cloud job: quote,
    /// confirm, upload (resumable), submit, and with --wait follow it and download its outputs
    /// into a local job folder.
    #[command(after_help = EXIT_CODES_HELP)]
    Submit(submit::SubmitArgs),
    /// A cloud job's state, progress, credits and outputs.
    #[command(after_help = EXIT_CODES_HELP)]
    Status(jobs::JobArgs),
    /// The organisation's recent cloud jobs, newest first.
    #[command(after_help = EXIT_CODES_HELP)]
    List(jobs::ListArgs),
    /// Cancels a cloud job (queued: at once; running: at its worker's next heartbeat).
    #[command(after_help = EXIT_CODES_HELP)]
    Cancel(jobs::JobArgs),
    /// A finished cloud job's outputs into a local job folder (resumed, verified, atomic).
    #[command(after_help = EXIT_CODES_HELP)]
    Download(jobs::DownloadArgs),
}

pub fn run(command: &CloudCommand) -> Result<()> {
    match command {
        CloudCommand::Submit(args) => submit::run(args),
        CloudCommand::Status(args) => jobs::status(args),
        CloudCommand::List(args) => jobs::list(args),
        CloudCommand::Cancel(args) => jobs::cancel(args),
        CloudCommand::Download(args) => jobs::download(args),
    }
}

/// Runs `work` on a current-thread runtime: the CLI does one thing at a time, and the client's
/// parallel part uploads are concurrent futures, not threads.
fn block_on<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(work)
}

/// A client of `server` without a credential.
fn client(server: &Url) -> Result<Client> {
    Ok(Client::new(ClientConfig::new(server.clone()))?)
}

/// The session for `server`: `KILN_API_KEY` when set (the keyring is not even opened), else the
/// stored login.
async fn session(server: &Url) -> Result<Session> {
    let client = client(server)?;
    match std::env::var(API_KEY_ENV) {
        Ok(key) if !key.trim().is_empty() => Ok(Session::with_api_key(client, key.trim().to_string())),
        _ => {
            let store = TokenStore::open().await.map_err(LoginError::from)?;
            Ok(Session::resume(client, store).await?)
        }
    }
}

/// A job named on the command line: a job id, or a job folder with a `cloud-job.json` (whose
/// server then wins over `--server`).
struct Target {
    server: Url,
    job_id: Uuid,
    /// The job folder, when one was given.
    folder: Option<PathBuf>,
}

impl Target {
    fn resolve(text: &str, server: &Url) -> Result<Target> {
        let path = Path::new(text);
        if path.is_dir() {
            let record = JobRecord::read(path)?.ok_or_else(|| {
                BadArgument(format!("{} has no {CLOUD_JOB_FILE}: it is not the folder of a cloud job", path.display()))
            })?;
            let recorded: Url = record.server.parse().map_err(|e| {
                BadArgument(format!("{} names a bad server URL: {e}", path.join(CLOUD_JOB_FILE).display()))
            })?;
            return Ok(Target { server: recorded, job_id: record.job_id, folder: Some(path.to_path_buf()) });
        }
        let job_id = text
            .parse()
            .map_err(|_| BadArgument(format!("{text:?} is neither a job id nor the folder of a cloud job")))?;
        Ok(Target { server: server.clone(), job_id, folder: None })
    }
}

/// An argument that names nothing usable: no such job or job folder, an unreadable .zip, a folder
/// of another server (exit code 2).
#[derive(Debug)]
struct BadArgument(String);

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadArgument {}

/// A cloud job that ended other than `succeeded` (exit code [`EXIT_JOB_ENDED`]).
#[derive(Debug)]
pub struct JobEnded {
    pub job_id: Uuid,
    pub state: JobState,
    /// The job's error message, when it has one.
    pub reason: Option<String>,
}

impl std::fmt::Display for JobEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the cloud job {} ended {}", self.job_id, self.state.as_str())?;
        match &self.reason {
            Some(reason) => write!(f, ": {reason}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for JobEnded {}

/// The exit code of a cloud failure anywhere in `error`'s chain, or `None` when it is not one.
pub fn exit_code(error: &anyhow::Error) -> Option<u8> {
    error.chain().find_map(|cause| {
        if let Some(login) = cause.downcast_ref::<LoginError>() {
            return kind_code(login.kind());
        }
        if let Some(cloud) = cause.downcast_ref::<CloudError>() {
            return cloud_code(cloud);
        }
        if let Some(job) = cause.downcast_ref::<JobError>() {
            return job_code(job);
        }
        if cause.is::<JobEnded>() || batch_ended(cause) {
            return Some(EXIT_JOB_ENDED);
        }
        if cause.is::<account::NeedsLogin>() {
            return Some(EXIT_LOGIN);
        }
        if cause.is::<submit::NotConfirmed>() || cause.is::<BadArgument>() {
            return Some(crate::EXIT_BAD_INPUT);
        }
        None
    })
}

/// Whether `cause` says some of a cloud batch's jobs did not succeed.
#[cfg(feature = "queue")]
fn batch_ended(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.is::<batch::NotAllSucceeded>()
}

#[cfg(not(feature = "queue"))]
fn batch_ended(_: &(dyn std::error::Error + 'static)) -> bool {
    false
}

fn cloud_code(error: &CloudError) -> Option<u8> {
    match error {
        // A path that is missing or not photos: the input is bad, not the disk.
        CloudError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput) =>
        {
            Some(crate::EXIT_BAD_INPUT)
        }
        other => kind_code(other.kind()),
    }
}

fn job_code(error: &JobError) -> Option<u8> {
    match error {
        JobError::Cloud(cloud) => cloud_code(cloud),
        JobError::NoPhotos(_) | JobError::TooManyPhotos(_) | JobError::BadZip { .. } => Some(crate::EXIT_BAD_INPUT),
        other => kind_code(other.kind()),
    }
}

fn kind_code(kind: ErrorKind) -> Option<u8> {
    match kind {
        ErrorKind::Unauthorized => Some(EXIT_LOGIN),
        ErrorKind::PaymentRequired => Some(EXIT_CREDITS),
        ErrorKind::Network => Some(EXIT_NETWORK),
        ErrorKind::Integrity => Some(EXIT_INTEGRITY),
        ErrorKind::Invalid | ErrorKind::NotFound => Some(crate::EXIT_BAD_INPUT),
        ErrorKind::Conflict | ErrorKind::Server | ErrorKind::Io | ErrorKind::Protocol => None,
    }
}

/// `1.2 MB`.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A job's error message, or a note that it is not done yet.
fn job_reason(job: &Job) -> Option<String> {
    match (&job.error, job.state.is_final()) {
        (Some(error), _) => Some(format!("{} ({})", error.message, error.code)),
        (None, false) => Some("it has not finished yet".into()),
        (None, true) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_kind_has_its_exit_code() {
        let api = |status: u16, code: &str| {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
            anyhow::Error::from(CloudError::from_response(status, None, body.as_bytes()))
        };
        assert_eq!(exit_code(&api(401, "invalid_credential")), Some(EXIT_LOGIN));
        assert_eq!(exit_code(&api(402, "insufficient_credits")), Some(EXIT_CREDITS));
        assert_eq!(exit_code(&api(404, "not_found")), Some(crate::EXIT_BAD_INPUT));
        assert_eq!(exit_code(&api(503, "unavailable")), None);
        let network = CloudError::Network { url_host: "127.0.0.1:9".into(), detail: "refused".into() };
        assert_eq!(exit_code(&anyhow::Error::from(network).context("submitting")), Some(EXIT_NETWORK));
        let integrity = CloudError::Integrity { file: "model.glb".into(), expected: "a".into(), actual: "b".into() };
        assert_eq!(exit_code(&integrity.into()), Some(EXIT_INTEGRITY));
        let ended = JobEnded { job_id: Uuid::nil(), state: JobState::Canceled, reason: None };
        assert_eq!(exit_code(&ended.into()), Some(EXIT_JOB_ENDED));
        let login = LoginError::NotLoggedIn { server: "https://a".into() };
        assert_eq!(exit_code(&login.into()), Some(EXIT_LOGIN));
        let credits = JobError::NotEnoughCredits { needed: 6, available: 2 };
        assert_eq!(exit_code(&credits.into()), Some(EXIT_CREDITS));
        assert_eq!(exit_code(&JobError::NoPhotos("empty".into()).into()), Some(crate::EXIT_BAD_INPUT));
        let missing = CloudError::Io { path: "gone".into(), source: std::io::ErrorKind::NotFound.into() };
        assert_eq!(exit_code(&JobError::from(missing).into()), Some(crate::EXIT_BAD_INPUT));
        let expired = JobError::from(LoginError::LoginAgain { server: "https://a".into() });
        assert_eq!(exit_code(&expired.into()), Some(EXIT_LOGIN));
        assert_eq!(exit_code(&anyhow::anyhow!("something else")), None);
        let codes = [EXIT_LOGIN, EXIT_CREDITS, EXIT_NETWORK, EXIT_JOB_ENDED, EXIT_INTEGRITY];
        for code in codes {
            assert!(![0, 1, crate::EXIT_BAD_INPUT, crate::EXIT_MODEL_FAILED, 130].contains(&code));
        }
    }

    #[test]
    fn a_job_folder_names_its_server_and_job() {
        let dir = std::env::temp_dir().join(format!("kiln-cli-cloud-record-{}", std::process::id()));
        let record = JobRecord {
            server: "http://127.0.0.1:9/".into(),
            job_id: Uuid::from_u128(7),
            upload_id: Uuid::from_u128(8),
        };
        record.write(&dir).unwrap();
        let fallback: Url = "https://other.example".parse().unwrap();
        let target = Target::resolve(dir.to_str().unwrap(), &fallback).unwrap();
        assert_eq!((target.server.as_str(), target.job_id), ("http://127.0.0.1:9/", Uuid::from_u128(7)));
        let by_id = Target::resolve(&Uuid::from_u128(9).to_string(), &fallback).unwrap();
        assert_eq!((by_id.server, by_id.job_id), (fallback.clone(), Uuid::from_u128(9)));
        assert!(Target::resolve("not-a-job", &fallback).is_err_and(|e| e.is::<BadArgument>()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
