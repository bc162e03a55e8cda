//! `kiln cloud status|list|cancel|download`: one cloud job (by id, or by the job folder whose
//! `cloud-job.json` names it) or the organisation's recent jobs. `download` takes a job that
//! failed or was canceled too, when it left the files of the stages it finished: the folder then
//! resumes locally.

use std::path::PathBuf;

use anyhow::Result;
use kiln_api::jobs::{Job, JobState};
use kiln_cloud::job::JobRecord;

use super::submit::download_into;
use super::{JobEnded, ServerArgs, Target, block_on, job_reason, session};

/// A job id, or the folder of a cloud job.
#[derive(clap::Args)]
pub struct JobArgs {
    /// A job id, or a job folder holding cloud-job.json (its server is then used).
    pub job: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the job as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// How many jobs to list.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print the page of jobs as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct DownloadArgs {
    /// A job id, or a job folder holding cloud-job.json.
    pub job: String,
    /// The job folder to download into [default: the folder given, or ./kiln-<job id>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the downloaded paths as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn status(args: &JobArgs) -> Result<()> {
    block_on(async {
        let target = Target::resolve(&args.job, &args.server.server)?;
        let session = session(&target.server).await?;
        let job = session.call(async |client| client.job(target.job_id).await).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&job)?);
        } else {
            print_job(&job);
        }
        Ok(())
    })
}

pub fn list(args: &ListArgs) -> Result<()> {
    block_on(async {
        let session = session(&args.server.server).await?;
        let page = session.call(async |client| client.jobs(Some(args.limit), None).await).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&page)?);
            return Ok(());
        }
        if page.data.is_empty() {
            println!("no cloud jobs");
        }
        for job in &page.data {
            println!(
                "{}  {:<10} {:>4.0}%  {:>4} photos  {:>5} credits  {}",
                job.id,
                job.state.as_str(),
                100.0 * job.fraction,
                job.photos,
                job.credits.quoted,
                job.created_at.format("%Y-%m-%d %H:%M")
            );
        }
        Ok(())
    })
}

pub fn cancel(args: &JobArgs) -> Result<()> {
    block_on(async {
        let target = Target::resolve(&args.job, &args.server.server)?;
        let session = session(&target.server).await?;
        let job = session.call(async |client| client.cancel_job(target.job_id).await).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&job)?);
        } else if job.state.is_final() {
            println!("job {} is {}", job.id, job.state.as_str());
        } else {
            println!("job {} will stop at its worker's next heartbeat (cancel requested)", job.id);
        }
        Ok(())
    })
}

pub fn download(args: &DownloadArgs) -> Result<()> {
    block_on(async {
        let target = Target::resolve(&args.job, &args.server.server)?;
        let out = args
            .out
            .clone()
            .or_else(|| target.folder.clone())
            .unwrap_or_else(|| PathBuf::from(format!("kiln-{}", target.job_id)));
        let session = session(&target.server).await?;
        let job = session.call(async |client| client.job(target.job_id).await).await?;
        let partial = job.state.is_final() && !job.outputs.is_empty();
        if job.state != JobState::Succeeded && !partial {
            return Err(JobEnded { job_id: job.id, state: job.state, reason: job_reason(&job) }.into());
        }
        if JobRecord::read(&out)?.is_none() {
            let record = JobRecord { server: target.server.to_string(), job_id: job.id, upload_id: job.upload_id };
            record.write(&out)?;
        }
        let paths = download_into(&session, &job, &out).await?;
        if job.state != JobState::Succeeded {
            eprintln!(
                "the cloud job {} ended {}{}; the files of the stages it finished are in {}: `kiln reconstruct \
                 <its photos> --out {}` goes on locally from there",
                job.id,
                job.state.as_str(),
                job_reason(&job).map(|reason| format!(" ({reason})")).unwrap_or_default(),
                out.display(),
                out.display()
            );
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&paths)?);
        }
        Ok(())
    })
}

fn print_job(job: &Job) {
    println!("job:      {}", job.id);
    println!("state:    {}{}", job.state.as_str(), if job.cancel_requested { " (cancel requested)" } else { "" });
    if let Some(stage) = &job.stage {
        println!("stage:    {stage}, {:.0}% of the job", 100.0 * job.fraction);
    }
    if let Some(position) = job.queue_position {
        println!("queue:    position {position}");
    }
    println!("photos:   {}", job.photos);
    let credits = &job.credits;
    println!(
        "credits:  {} quoted, {} reserved, {} charged, {} released",
        credits.quoted, credits.reserved, credits.charged, credits.released
    );
    if let Some(error) = &job.error {
        println!("error:    {} ({})", error.message, error.code);
    }
    for output in &job.outputs {
        println!("output:   {} ({})", output.name, super::megabytes(u64::try_from(output.size).unwrap_or(0)));
    }
    if job.outputs_expired {
        println!("outputs:  expired (past the retention)");
    }
}
