//! `kiln watch <dir> --out <dir>`: every new subfolder (or .zip) of `<dir>` becomes a job once
//! nothing in it changed for `--quiet-seconds`; the queue (`<out>/queue.sqlite`) survives
//! restarts, content already processed is skipped, a `kiln.toml` in a folder overrides its
//! settings. Decisions go to `<out>/watch.log` and stderr. Ctrl-C cancels the running job (it
//! resumes at the next start) and exits.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use kiln_queue::watch::{DEFAULT_BUSY_RETRY, LOG_FILE, WatchOptions, watch};

use crate::interrupt;
use crate::settings::SettingsArgs;

#[derive(clap::Args)]
pub struct WatchArgs {
    /// The folder to watch: each subfolder of photos (or .zip of them) copied into it is a job.
    pub dir: PathBuf,
    /// Output folder: jobs/, queue.sqlite, watch.log (created if missing; not inside <dir>'s inputs).
    #[arg(long)]
    pub out: PathBuf,
    /// Seconds an input must stay unchanged before it becomes a job.
    #[arg(long, default_value_t = 10.0)]
    pub quiet_seconds: f64,
    /// Exit once nothing is queued, running or waiting to settle (for scripts).
    #[arg(long, alias = "once")]
    pub exit_when_idle: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
}

pub fn run(args: &WatchArgs) -> Result<()> {
    let quiet = Duration::try_from_secs_f64(args.quiet_seconds)
        .map_err(|e| anyhow::anyhow!("--quiet-seconds {}: {e}", args.quiet_seconds))?;
    let options = WatchOptions {
        dir: args.dir.clone(),
        out: args.out.clone(),
        quiet,
        settings: args.settings.overrides()?,
        exit_when_idle: args.exit_when_idle,
        busy_retry: DEFAULT_BUSY_RETRY,
    };
    let stop = interrupt::cancel_on_ctrl_c();
    eprintln!("watching {} (log: {}); Ctrl-C to stop", args.dir.display(), args.out.join(LOG_FILE).display());
    let summary = watch(&options, &mut kiln_queue::run_real_job, &stop)?;
    eprintln!(
        "{} done, {} failed, {} interrupted (resume at the next start)",
        summary.done, summary.failed, summary.interrupted
    );
    Ok(())
}
