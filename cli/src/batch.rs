//! `kiln batch`: many inputs (a CSV manifest, a folder of photo folders or a ZIP of them), each
//! its own job in its own folder; a failing item does not stop the others. Prints a summary table
//! and writes `batch-report.json` into the output folder. Exit code 0 when every item succeeded,
//! 2 when the only failures were bad inputs, 1 otherwise. Ctrl-C cancels the running item (its
//! folder stays resumable) and starts no other.
//!
//! With `--cloud` the same items go to the hosted service as one batch ([`crate::cloud::batch`]):
//! the batch's quote confirmed, the photos uploaded, and with `--wait` each job's outputs
//! downloaded into its own job folder (the cloud commands' exit codes apply).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use kiln_job::CancelFlag;
use kiln_queue::batch::{BatchReport, ItemResult, ItemStatus, plan_batch, run_batch, write_batch_report};
use kiln_queue::{QueueError, run_real_job};

use crate::cloud::submit::CloudJobArgs;
use crate::interrupt;
use crate::settings::SettingsArgs;

#[derive(clap::Args)]
pub struct BatchArgs {
    /// A CSV manifest, a folder of photo folders, or a .zip of photo folders. The CSV's header
    /// names an `input` column, optionally `output`, and any setting by its kiln.toml name
    /// (preset, formats as `glb;usdz`, max_side, train_steps, seed, size_mm, until, ...); paths
    /// are relative to the CSV.
    pub source: PathBuf,
    /// Folder for the job folders (items without an `output`) and batch-report.json
    /// (default: `<source name>-jobs` beside the source).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Run the items on the hosted service as one batch (quote for the whole batch, confirmed;
    /// photos uploaded; see `kiln cloud submit`) instead of on this machine.
    #[arg(long)]
    pub cloud: bool,
    /// With --cloud: follow the batch until every job has ended and download each job's outputs
    /// into its own job folder.
    #[arg(long, requires = "cloud")]
    pub wait: bool,
    #[command(flatten)]
    pub cloud_job: CloudJobArgs,
}

pub fn run(args: &BatchArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.source));
    let items = plan_batch(&args.source, &out, &args.settings.overrides()?)?;
    eprintln!("{} item(s) from {}; results in {}", items.len(), args.source.display(), out.display());
    if args.cloud {
        return crate::cloud::batch::run(&items, &out, &args.cloud_job, args.wait);
    }
    let cancel = interrupt::cancel_on_ctrl_c();
    let mut runner = run_real_job;
    let count = items.len();
    let report = run_batch(&args.source, &items, &mut runner, &cancel, &mut |index, result| {
        eprintln!("[{}/{count}] {} {}", index + 1, status_name(result.status), result.input.display());
    });
    let path = write_batch_report(&out, &report)?;
    print_table(&report);
    println!("wrote {}", path.display());
    outcome(&report, &cancel)
}

/// `<source stem>-jobs` beside the source.
fn default_out(source: &Path) -> PathBuf {
    let stem = source.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "batch".into());
    source.with_file_name(format!("{stem}-jobs"))
}

fn outcome(report: &BatchReport, cancel: &CancelFlag) -> Result<()> {
    if cancel.is_cancelled() {
        let done = report.items.len();
        return Err(interrupt::Interrupted(format!(
            "interrupted after {done} of the items; run the same command again to resume"
        ))
        .into());
    }
    let failed: Vec<&ItemResult> = report.items.iter().filter(|i| i.status != ItemStatus::Done).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let summary = format!("{} of {} item(s) failed (see batch-report.json)", failed.len(), report.items.len());
    if failed.iter().all(|i| i.status == ItemStatus::BadInput) {
        return Err(QueueError::BadInput { path: report.source.clone(), problem: summary }.into());
    }
    bail!(summary)
}

fn status_name(status: ItemStatus) -> &'static str {
    match status {
        ItemStatus::Done => "done",
        ItemStatus::BadInput => "bad input",
        ItemStatus::Failed => "failed",
        ItemStatus::Cancelled => "cancelled",
    }
}

fn print_table(report: &BatchReport) {
    println!(
        "{:<4} {:<10} {:>8} {:>11} {:>8} {:>10}  input / error",
        "#", "status", "seconds", "registered", "PSNR", "triangles"
    );
    for (index, item) in report.items.iter().enumerate() {
        let metrics = item.metrics.clone().unwrap_or_default();
        let registered = match (metrics.registered_images, metrics.photos) {
            (Some(r), Some(p)) => format!("{r}/{p}"),
            _ => "-".into(),
        };
        let psnr = metrics.psnr.map_or_else(|| "-".into(), |p| format!("{p:.2}"));
        let triangles = metrics.triangles.map_or_else(|| "-".into(), |t| t.to_string());
        // Errors name their input already.
        let detail = item.error.clone().unwrap_or_else(|| item.input.display().to_string());
        println!(
            "{:<4} {:<10} {:>8.1} {:>11} {:>8} {:>10}  {detail}",
            index + 1,
            status_name(item.status),
            item.seconds,
            registered,
            psnr,
            triangles
        );
    }
    println!("{} done, {} failed in {:.1} s", report.done, report.failed, report.seconds);
}

/// Whether `cause` is a queue error about the input given.
pub fn is_bad_input(cause: &(dyn std::error::Error + 'static)) -> bool {
    cause.downcast_ref::<QueueError>().is_some_and(QueueError::is_bad_input)
}
