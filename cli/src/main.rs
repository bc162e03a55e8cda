//! `kiln`: the command line over the engine.
//!
//! Exit codes: 0 success, 2 bad input (a dataset or file Kiln cannot use), 3 a job whose model
//! failed its own verdict (kept as `model.failed.*`), 130 interrupted, 1 any other failure; the
//! hosted service's commands add 4 not logged in (or the credential was refused), 5 insufficient
//! credits, 6 the service is unreachable, 7 the cloud job failed or was canceled, 8 a download
//! failed its integrity check (see [`cloud`]).

#[cfg(feature = "queue")]
mod batch;
mod bench;
mod check;
mod cloud;
mod export;
mod interrupt;
mod mat;
mod mesh;
mod poses;
mod progress;
mod reconstruct;
#[cfg(feature = "gpu")]
mod render;
mod settings;
mod train;
mod view;
#[cfg(feature = "queue")]
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiln_protocol::ErrorClass;

#[derive(Parser)]
#[command(name = "kiln", version, about = "Photos to 3D models: Gaussian splats, meshes, GLB/USDZ")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level filter for diagnostics on stderr (e.g. `debug`, `kiln_engine=trace`).
    #[arg(long, global = true, default_value = "warn", env = "KILN_LOG")]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Capture check of a folder of photos: per-photo verdicts, overlap, predicted outcome, advice.
    Check(check::CheckArgs),
    /// Camera poses from a folder of photos: COLMAP model, transforms.json, poses-report.json.
    Poses(poses::PosesArgs),
    /// Train Gaussian splats on a posed dataset (transforms.json or COLMAP).
    Train(train::TrainArgs),
    /// Textured mesh from trained splats: mesh.ply, basecolor.png, mesh.json (metres, +Y up).
    Mesh(mesh::MeshArgs),
    /// GLB, USDZ, OBJ or PLY files from a mesh folder.
    Export(export::ExportArgs),
    /// The printable calibration mat (PDF, optionally PNG): photographed under the object, it
    /// gives the model its metric scale and ground plane.
    Mat(mat::MatArgs),
    /// Headless render of a model or job folder to PNG (a dataset or orbit camera, turntables).
    #[cfg(feature = "gpu")]
    Render(render::RenderArgs),
    /// Photos (folder, .zip or kiln.toml job spec) to validated model in one resumable job: check,
    /// poses, train, mesh, export.
    Reconstruct(reconstruct::ReconstructArgs),
    /// Benchmarks on the shared datasets.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Many jobs: a CSV manifest, a folder of photo folders or a ZIP of them; writes batch-report.json.
    #[cfg(feature = "queue")]
    Batch(batch::BatchArgs),
    /// Watches a folder: each new photo subfolder or ZIP becomes a job once quiet (durable queue).
    #[cfg(feature = "queue")]
    Watch(watch::WatchArgs),
    /// Opens a window on a model or job folder: splats, mesh, input cameras and their photos.
    #[cfg(feature = "window")]
    View(view::ViewArgs),
    /// Signs in to the hosted service through the browser; the tokens go to the system keyring
    /// (or a private file where there is none).
    #[command(after_help = cloud::EXIT_CODES_HELP)]
    Login(cloud::ServerArgs),
    /// Signs out of the hosted service: revokes the stored login and forgets it.
    #[command(after_help = cloud::EXIT_CODES_HELP)]
    Logout(cloud::ServerArgs),
    /// Who you are on the hosted service: user, organisation, role, the credential's kind, balance.
    #[command(after_help = cloud::EXIT_CODES_HELP)]
    Whoami(cloud::ServerArgs),
    /// The organisation's credits on the hosted service; --ledger lists recent transactions;
    /// `buy <pack>` buys a pack through Stripe Checkout.
    Credits(cloud::CreditsArgs),
    /// API keys of the organisation on the hosted service, for scripts and CI (KILN_API_KEY).
    #[command(subcommand)]
    Keys(cloud::KeysCommand),
    /// Jobs on the hosted service: submit, status, list, cancel, download.
    #[command(subcommand)]
    Cloud(cloud::CloudCommand),
}

/// Exit code for input Kiln cannot use (as opposed to a failure while working).
const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for a job that finished with a model its own verdict failed (kept as `model.failed.*`).
const EXIT_MODEL_FAILED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Poses(args) => poses::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Mesh(args) => mesh::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Mat(args) => mat::run(&args),
        #[cfg(feature = "gpu")]
        Command::Render(args) => render::run(&args),
        Command::Reconstruct(args) => reconstruct::run(&args),
        Command::Bench(command) => bench::run(&command),
        #[cfg(feature = "queue")]
        Command::Batch(args) => batch::run(&args),
        #[cfg(feature = "queue")]
        Command::Watch(args) => watch::run(&args),
        #[cfg(feature = "window")]
        Command::View(args) => view::run(&args),
        Command::Login(args) => cloud::login(&args),
        Command::Logout(args) => cloud::logout(&args),
        Command::Whoami(args) => cloud::whoami(&args),
        Command::Credits(args) => cloud::credits(&args),
        Command::Keys(command) => cloud::keys(&command),
        Command::Cloud(command) => cloud::run(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", kiln_core::error_text::chain_text(error.as_ref()));
            if interrupt::was_interrupted(&error) {
                ExitCode::from(interrupt::EXIT_INTERRUPTED)
            } else if error.is::<reconstruct::ModelFailed>() {
                ExitCode::from(EXIT_MODEL_FAILED)
            } else if let Some(code) = cloud::exit_code(&error) {
                ExitCode::from(code)
            } else if is_bad_input(&error) {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Whether the error comes from input Kiln was given rather than from Kiln or the machine: the
/// engine's own classes ([`kiln_job::classify`]) first, then a bad job spec, the queue's and the
/// viewer's.
fn is_bad_input(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        kiln_job::classify(cause) == Some(ErrorClass::BadInput)
            || cause.is::<settings::BadSpec>()
            || queue_bad_input(cause)
            || view::is_bad_input(cause)
            || render_bad_input(cause)
    })
}

#[cfg(feature = "queue")]
use batch::is_bad_input as queue_bad_input;

#[cfg(not(feature = "queue"))]
fn queue_bad_input(_: &(dyn std::error::Error + 'static)) -> bool {
    false
}

#[cfg(feature = "gpu")]
use render::is_bad_input as render_bad_input;

#[cfg(not(feature = "gpu"))]
fn render_bad_input(_: &(dyn std::error::Error + 'static)) -> bool {
    false
}
