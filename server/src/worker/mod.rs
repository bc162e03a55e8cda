//! `kiln-server worker`: leases queued jobs from the server over HTTP (the workers' API, with the
//! shared worker token), runs each with `kiln_job::run_job_from` (the same job runner as
//! `kiln reconstruct`) on its device, streams the engine's progress back in heartbeats, uploads
//! the outputs and finishes the job. Workers hold no database or storage credentials: only
//! presigned URLs.
//!
//! SIGTERM or Ctrl-C: no new job is taken; a job whose engine is running is stopped and handed
//! back to the queue (it resumes on another worker), one whose engine already finished is
//! uploaded and finished. A second signal exits at once (the lease then runs out).

mod client;
mod job;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kiln_protocol::Device;
use tokio::sync::watch;
use url::Url;

pub use client::{Backoff, CallError, Client, retry};

/// How long an idle worker waits before asking for work again: short enough that a new job
/// starts within a second or two, long enough that idle workers cost the server little.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What `kiln-server worker` is told.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The server's base URL.
    pub server: Url,
    /// `KILN_WORKER_TOKEN`.
    pub token: String,
    /// Where job folders are made (each removed once its job is done).
    pub work_dir: PathBuf,
    pub device: Device,
    /// Exit after one job.
    pub once: bool,
    /// This worker's name in the server's records.
    pub id: String,
}

/// The default worker id: the host's name and this process's id.
pub fn default_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(60).collect();
    let host = if host.is_empty() { "worker".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}

/// Runs the worker until a signal (or, with `once`, one job) ends it.
pub async fn run(options: WorkerOptions) -> anyhow::Result<()> {
    if options.device == Device::Gpu && !cfg!(feature = "gpu") {
        anyhow::bail!("--device gpu needs a kiln-server built with the `gpu` feature; use --device cpu or auto");
    }
    std::fs::create_dir_all(&options.work_dir).with_context(|| format!("creating {}", options.work_dir.display()))?;
    let client = Client::new(options.server.clone(), options.token.clone(), options.id.clone())?;
    let stop = stop_on_signals()?;
    tracing::info!(worker_id = %options.id, server = %options.server, device = options.device.name(), "worker started");
    let mut backoff = Backoff::default();
    while !*stop.borrow() {
        match client.lease(options.device.name()).await {
            Ok(Some(lease)) => {
                backoff = Backoff::default();
                job::run(&client, &options, lease, stop.clone()).await;
                if options.once {
                    break;
                }
            }
            Ok(None) => wait(IDLE_POLL, stop.clone()).await,
            Err(error) => {
                let pause = backoff.next_wait();
                tracing::warn!(error = %error, "asking for work failed; again in {:.1} s", pause.as_secs_f64());
                wait(pause, stop.clone()).await;
            }
        }
    }
    tracing::info!(worker_id = %options.id, "worker stopped");
    Ok(())
}

/// Sleeps `duration`, or less when a stop is asked for.
async fn wait(duration: Duration, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        _ = stop.wait_for(|stopping| *stopping) => {}
    }
}

/// A flag set by the first SIGTERM or SIGINT; the second exits the process.
fn stop_on_signals() -> anyhow::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        for count in 0.. {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            if count > 0 {
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            tracing::info!("signal received: finishing the current job's hand-over, taking no new work");
            let _ = sender.send(true);
        }
    });
    Ok(receiver)
}
