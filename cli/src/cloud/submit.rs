//! `kiln cloud submit` and the cloud half of `kiln reconstruct --where cloud`: photos to a cloud
//! job, then (with `--wait`) its outputs in a local job folder.
//!
//! The input and its settings are what `kiln reconstruct` takes ([`crate::settings::JobInput`]): a
//! folder of photos (with its `kiln.toml` job spec, when it has one), a `.zip`, or a `kiln.toml`
//! beside its photos; the flags given override the spec, and the job is created with the result,
//! so it runs in the cloud as it would here.
//!
//! The steps are `kiln_cloud::job`'s, the app's too; this module adds the prompt, the bars and
//! the lines printed. In order: the photos counted and the job quoted against the balance, the
//! quote confirmed (a prompt on a terminal; `--yes` otherwise), the photos uploaded with a
//! progress bar (resumable: the upload's state is in `<out>/cloud-upload.json`, so the same
//! command after a kill sends only the missing parts), the job created and recorded in
//! `<out>/cloud-job.json`, then the remote stages followed live and the outputs downloaded into
//! `<out>` where a local run writes them. Run again on a folder that already records a job, the
//! command follows (and downloads) that job instead of submitting another. A job that fails or
//! is canceled after some stages still has their files downloaded: `kiln reconstruct` of the same
//! photos into the folder goes on locally from there.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_api::jobs::{Job, JobState};
use kiln_api::prices::{Priority, Quote};
use kiln_cloud::JobStreamEvent;
use kiln_cloud::job::{self, JobRecord, JobUpdate, UploadSummary};
use kiln_cloud::login::Session;
use kiln_protocol::layout::CLOUD_JOB_FILE;
use serde::Serialize;
use uuid::Uuid;

use super::{BadArgument, EXIT_CODES_HELP, JobEnded, ServerArgs, block_on, job_reason, session};
use crate::settings::{JobInput, SettingsArgs};

/// Resolution of the remote job's progress bar (the job fraction is drawn in thousandths).
const BAR_UNITS: u64 = 1000;

/// What the cloud needs besides the photos and the settings: where, how urgent, confirmed or not.
#[derive(clap::Args, Clone, Debug)]
pub struct CloudJobArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Rush priority: leased before every standard job, at the rush price.
    #[arg(long)]
    pub rush: bool,
    /// Accept the quote without asking (required where stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

/// `kiln cloud submit` arguments.
#[derive(clap::Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct SubmitArgs {
    /// A folder of photos (.jpg, .jpeg, .png directly in it; its kiln.toml, when there is one,
    /// gives the job's settings), a .zip of them, or a kiln.toml job spec (the photos are in its
    /// folder). Flags given override the spec. Only read.
    pub input: PathBuf,
    /// The local job folder: the upload's resume state, cloud-job.json and, with --wait, the
    /// outputs [default: ./<photos folder or .zip name>-cloud].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub cloud: CloudJobArgs,
    /// Follow the job to its end and download its outputs into the job folder.
    #[arg(long)]
    pub wait: bool,
    /// Print a summary as JSON on stdout (job, quote, parts uploaded, files downloaded).
    #[arg(long)]
    pub json: bool,
}

/// One submission.
pub struct Request<'a> {
    /// The photos, their job spec and the settings.
    pub job: &'a JobInput,
    pub out: &'a Path,
    pub cloud: &'a CloudJobArgs,
    pub wait: bool,
}

/// What a submission did (`--json`).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub server: String,
    pub job_id: Uuid,
    pub upload_id: Uuid,
    pub state: JobState,
    /// The `kiln.toml` job spec the settings came from (the flags given over it); absent without
    /// one, and when the folder already recorded the job.
    pub settings_from: Option<PathBuf>,
    /// The quote confirmed; absent when the folder already recorded the job.
    pub quote: Option<Quote>,
    /// The upload; absent when the folder already recorded the job.
    pub upload: Option<UploadSummary>,
    /// Files written into the job folder.
    pub outputs: Vec<PathBuf>,
}

/// The quote was not accepted: no terminal to ask on and no `--yes` (exit code 2).
#[derive(Debug)]
pub struct NotConfirmed;

impl std::fmt::Display for NotConfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the quote needs a confirmation, and stdin is not a terminal to ask on: pass --yes to accept it")
    }
}

impl std::error::Error for NotConfirmed {}

pub fn run(args: &SubmitArgs) -> Result<()> {
    let job = args.settings.job_input(&args.input)?;
    let out = match &args.out {
        Some(out) => out.clone(),
        None => default_out(&job.photos)?,
    };
    let request = Request { job: &job, out: &out, cloud: &args.cloud, wait: args.wait };
    let summary = block_on(submit(&request))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// `kiln reconstruct --where cloud`: the submission of `job` with `--wait` into the
/// reconstruct's job folder.
pub fn reconstruct(job: &JobInput, out: &Path, cloud: &CloudJobArgs, json: bool) -> Result<()> {
    let request = Request { job, out, cloud, wait: true };
    let summary = block_on(submit(&request))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// `./<input name>-cloud`.
fn default_out(input: &Path) -> Result<PathBuf> {
    let stem = input
        .file_stem()
        .ok_or_else(|| BadArgument(format!("{} has no name to make a job folder of: pass --out", input.display())))?;
    let mut name = stem.to_os_string();
    name.push("-cloud");
    Ok(PathBuf::from(name))
}

/// Runs a submission (see the module's doc) on the current runtime.
pub async fn submit(request: &Request<'_>) -> Result<Summary> {
    let session = session(&request.cloud.server.server).await?;
    let server = session.client().server().to_string();
    let (job, quote, upload) = match JobRecord::read(request.out)? {
        Some(record) if record.server == server => {
            eprintln!(
                "{} already records cloud job {}: following it (remove {} to submit anew)",
                request.out.display(),
                record.job_id,
                request.out.join(CLOUD_JOB_FILE).display()
            );
            (session.call(async |client| client.job(record.job_id).await).await?, None, None)
        }
        Some(record) => {
            return Err(BadArgument(format!(
                "{} records a job of {}, not of {server}: pick another --out",
                request.out.display(),
                record.server
            ))
            .into());
        }
        None => match submit_new(&session, request).await? {
            Some((job, quote, upload)) => (job, Some(quote), Some(upload)),
            None => anyhow::bail!("not submitted: the quote was declined, nothing was spent"),
        },
    };
    let mut summary = Summary {
        server,
        job_id: job.id,
        upload_id: job.upload_id,
        state: job.state,
        settings_from: quote.as_ref().and(request.job.spec.clone()),
        quote,
        upload,
        outputs: Vec::new(),
    };
    if !request.wait {
        eprintln!(
            "cloud job {} is {}; `kiln cloud status {}` follows it",
            job.id,
            job.state.as_str(),
            request.out.display()
        );
        return Ok(summary);
    }
    let job = follow(&session, job.id).await?;
    summary.state = job.state;
    if job.state != JobState::Succeeded {
        if !job.outputs.is_empty() {
            download_into(&session, &job, request.out).await?;
            eprintln!("{}", resume_hint(&request.job.photos, request.out));
        }
        return Err(JobEnded { job_id: job.id, state: job.state, reason: job_reason(&job) }.into());
    }
    summary.outputs = download_into(&session, &job, request.out).await?;
    eprintln!("cloud job {} succeeded: job folder {}", job.id, request.out.display());
    Ok(summary)
}

/// How to go on locally from what a cloud job that stopped early finished.
pub(super) fn resume_hint(input: &Path, out: &Path) -> String {
    format!(
        "the stages the cloud job finished are in {}: `kiln reconstruct {} --out {}` goes on locally from there",
        out.display(),
        input.display(),
        out.display()
    )
}

/// Quote, confirmation, upload and job creation; `None` when the quote was declined.
async fn submit_new(session: &Session, request: &Request<'_>) -> Result<Option<(Job, Quote, UploadSummary)>> {
    let priority = if request.cloud.rush { Priority::Rush } else { Priority::Standard };
    let overrides = &request.job.overrides;
    let estimate = job::estimate(session, &request.job.photos, overrides, priority).await?;
    let quote = &estimate.quote;
    eprintln!(
        "quote: {} credits for {} photos at preset {}, {} priority{} ({} available){}",
        quote.credits,
        quote.photos,
        quote.preset,
        quote.priority.as_str(),
        if quote.credits != quote.standard_credits {
            format!(", {} at standard priority", quote.standard_credits)
        } else {
            String::new()
        },
        estimate.available,
        request.job.settings_from().map(|from| format!("; {from}")).unwrap_or_default()
    );
    estimate.check()?;
    if !confirm(&format!("Submit this job for {} credits?", quote.credits), request.cloud.yes)? {
        return Ok(None);
    }
    let (upload_id, upload) = upload(session, &request.job.photos, request.out).await?;
    let job = job::create(session, upload_id, overrides, priority, request.out).await?;
    eprintln!("submitted cloud job {} ({} credits reserved)", job.id, job.credits.reserved);
    Ok(Some((job, estimate.quote, upload)))
}

/// Whether the quote is accepted: `--yes`, or "y" at the prompt `question`; without a terminal
/// and without `--yes`, [`NotConfirmed`].
pub(super) fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(NotConfirmed.into());
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).context("cannot read the answer")?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Uploads the photos with a progress bar, resuming the upload `<out>/cloud-upload.json` records;
/// answers the complete upload's id and what this run sent.
pub(super) async fn upload(session: &Session, input: &Path, out: &Path) -> Result<(Uuid, UploadSummary)> {
    let bar = bytes_bar("upload");
    let uploaded = job::upload(session, input, out, |progress| {
        bar.set_length(progress.total_bytes);
        bar.set_position(progress.sent_bytes);
        bar.set_message(format!("{}/{} files", progress.files_done, progress.files));
    })
    .await;
    bar.finish_and_clear();
    let uploaded = uploaded?;
    match uploaded.summary {
        Some(summary) => eprintln!(
            "uploaded {} in {} parts{}",
            super::megabytes(summary.bytes_sent),
            summary.parts_sent,
            if summary.bytes_resumed > 0 {
                format!(" ({} were already there from an earlier run)", super::megabytes(summary.bytes_resumed))
            } else {
                String::new()
            }
        ),
        None => eprintln!("the upload {} was already complete", uploaded.upload_id),
    }
    Ok((uploaded.upload_id, uploaded.summary.unwrap_or_default()))
}

/// Follows the job to its end with a progress bar (see `kiln_cloud::job::follow`); answers the
/// job as it ended.
async fn follow(session: &Session, job_id: Uuid) -> Result<Job> {
    let bar = ProgressBar::with_draw_target(Some(BAR_UNITS), ProgressDrawTarget::stderr());
    // The template is a compile-time constant; a bad one would only lose the styling.
    if let Ok(style) = ProgressStyle::with_template("{prefix:>7} [{bar:30}] {percent:>3}% · {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix("cloud");
    bar.enable_steady_tick(Duration::from_millis(250));
    let followed = job::follow(session, job_id, |update| show_update(&bar, update)).await;
    bar.finish_and_clear();
    Ok(followed?)
}

fn show_update(bar: &ProgressBar, update: JobUpdate) {
    match update {
        JobUpdate::Event(JobStreamEvent::State { change, .. }) => {
            let why = change.error.as_ref().map(|e| format!(": {}", e.message)).unwrap_or_default();
            bar.suspend(|| eprintln!("cloud job {} ({}){why}", change.state.as_str(), change.reason));
        }
        JobUpdate::Event(JobStreamEvent::Progress { progress, .. }) => {
            bar.set_prefix(progress.stage.to_string());
            bar.set_position((progress.fraction.clamp(0.0, 1.0) * BAR_UNITS as f64).round() as u64);
            let eta = progress.eta_seconds.map(|s| format!(" · ETA {:.0} s", s.max(0.0))).unwrap_or_default();
            bar.set_message(format!("{}{eta}", progress.event.message));
        }
        JobUpdate::Polling(error) => {
            bar.suspend(|| eprintln!("the job's event stream failed ({error}): polling it instead"));
        }
        JobUpdate::Polled(job) => {
            bar.set_prefix(job.stage.clone().unwrap_or_else(|| job.state.as_str().to_string()));
            bar.set_position((f64::from(job.fraction).clamp(0.0, 1.0) * BAR_UNITS as f64).round() as u64);
            bar.set_message(job.state.as_str());
        }
    }
}

/// Downloads the finished `job`'s outputs into the job folder `out` with a progress bar; answers
/// the files in place.
pub(super) async fn download_into(session: &Session, job: &Job, out: &Path) -> Result<Vec<PathBuf>> {
    let bar = bytes_bar("download");
    let downloaded = job::download_into(session, job, out, |progress| {
        bar.set_length(progress.total_bytes);
        bar.set_position(progress.received_bytes);
        bar.set_message(format!("{}/{} files", progress.files_done, progress.files));
    })
    .await;
    bar.finish_and_clear();
    let paths = downloaded?;
    for path in &paths {
        eprintln!("wrote {}", path.display());
    }
    Ok(paths)
}

/// A bar in bytes on stderr.
fn bytes_bar(prefix: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    // The template is a compile-time constant; a bad one would only lose the styling.
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {msg} · {bytes_per_sec}, ETA {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_folder_is_named_after_the_input() {
        assert_eq!(default_out(Path::new("/photos/mug.zip")).unwrap(), PathBuf::from("mug-cloud"));
        assert_eq!(default_out(Path::new("shots/")).unwrap(), PathBuf::from("shots-cloud"));
    }
}
