//! `kiln-server`: `serve`, `worker`, `migrate` and `admin`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln_server::config::Config;
use kiln_server::ops::Ops;
use kiln_server::state::AppState;
use kiln_server::storage::Storage;
use kiln_server::{app, db};

#[derive(Parser)]
#[command(name = "kiln-server", version, about = "Kiln's hosted API and its GPU workers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Applies the database migrations and creates the storage bucket.
    Migrate,
    /// Serves the HTTP API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: SocketAddr,
    },
    /// Runs a worker: leases jobs from the server and runs them (with KILN_WORKER_TOKEN).
    Worker {
        /// The server's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: url::Url,
        /// Where job folders are made (default: kiln-worker-<id> in the temporary folder).
        #[arg(long)]
        work_dir: Option<std::path::PathBuf>,
        /// What trains: cpu, gpu (needs the `gpu` feature) or auto (a hardware GPU, else the CPU).
        #[arg(long, default_value = "auto")]
        device: kiln_protocol::Device,
        /// Exit after one job.
        #[arg(long)]
        once: bool,
        /// This worker's name (default: the host name and process id).
        #[arg(long)]
        id: Option<String>,
    },
    /// Makes a user staff, or no longer (with DATABASE_URL): staff may look up any organisation
    /// and grant or revoke its credits (`/v1/admin/…`).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Makes the user with this email staff.
    Promote { email: String },
    /// Takes staff rights from the user with this email (at once: checked on every request).
    Demote { email: String },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // ring rather than aws-lc-rs: it builds in seconds without a C toolchain's CMake build, and
    // the server's only outgoing TLS is webhook delivery and storage, where its suites suffice.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    if provider.install_default().is_err() {
        anyhow::bail!("a TLS crypto provider was already installed");
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            let config = Config::from_env()?;
            let pool = db::connect(&config.database_url).await.context("connecting to the database")?;
            db::migrate(&pool).await.context("applying migrations")?;
            storage(&config)?.ensure_bucket().await.context("creating the storage bucket")?;
            tracing::info!("migrations applied, bucket present");
            Ok(())
        }
        Command::Serve { bind } => serve(bind).await,
        Command::Worker { server, work_dir, device, once, id } => {
            let token = std::env::var("KILN_WORKER_TOKEN").context("KILN_WORKER_TOKEN is not set")?;
            let id = id.unwrap_or_else(kiln_server::worker::default_id);
            let work_dir = work_dir.unwrap_or_else(|| std::env::temp_dir().join(format!("kiln-worker-{id}")));
            kiln_server::worker::run(kiln_server::worker::WorkerOptions { server, token, work_dir, device, once, id })
                .await
        }
        Command::Admin { action } => {
            let (email, admin) = match action {
                AdminAction::Promote { email } => (email, true),
                AdminAction::Demote { email } => (email, false),
            };
            let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
            let pool = db::connect(&url).await.context("connecting to the database")?;
            if !kiln_server::routes::admin::set_admin(&pool, &email, admin).await? {
                anyhow::bail!("no user has the email {email}");
            }
            tracing::info!(%email, admin, "staff flag set");
            Ok(())
        }
    }
}

fn storage(config: &Config) -> anyhow::Result<Storage> {
    Ok(Storage::new(&config.s3, Duration::from_secs(config.limits.presign_seconds))?)
}

async fn serve(bind: SocketAddr) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let pool = db::connect(&config.database_url).await.context("connecting to the database")?;
    let ops = Arc::new(Ops::new(&config.operations, &config.worker_token));
    let payments = kiln_server::state::payments(&config.billing)?;
    let state = AppState { db: pool, storage: storage(&config)?, ops, payments, config: Arc::new(config) };
    kiln_server::tasks::spawn(&state);
    let listener = tokio::net::TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
    tracing::info!(%bind, "serving");
    axum::serve(listener, app::app(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what container runtimes and systemd send): in-flight requests
/// then finish before the process exits.
async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server gracefully");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
