//! `kiln batch … --cloud`: the items `kiln batch` plans (a CSV manifest, a folder of photo
//! folders or a ZIP of them, each with its settings) sent to the hosted service as one batch.
//!
//! In order: each item's photos counted and quoted, the whole batch's quote shown against the
//! balance and confirmed (a prompt on a terminal; `--yes` otherwise), each item's photos uploaded
//! (resumable: the upload's state is in the item's job folder, as for `kiln cloud submit`), the
//! batch created (`POST /v1/batches`: every job or none) with each item's full settings, so a
//! job runs in the cloud as it would here, and recorded: `<out>/cloud-batch.json`, and each
//! item's `cloud-job.json` (so `kiln cloud status <item folder>` follows it). With `--wait` the
//! batch is followed until every job has ended, and each job's outputs are downloaded into its
//! own job folder (for a job that failed or was canceled, the stages it finished). Run again on an
//! `--out` that records a batch of the same server, the command follows that batch instead of
//! submitting another.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kiln_api::batches::{Batch, CreateBatch, CreateItem};
use kiln_api::jobs::JobState;
use kiln_api::prices::Priority;
use kiln_cloud::job::{self, JobRecord};
use kiln_cloud::login::Session;
use kiln_queue::batch::BatchItem;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::submit::{CloudJobArgs, confirm, download_into, upload};
use super::{BadArgument, block_on, session};

/// The batch's record in the batch's output folder.
pub const BATCH_FILE: &str = "cloud-batch.json";

/// How often the batch is polled while `--wait` follows it: often enough to show progress, rare
/// enough to be no load on the API.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// `<out>/cloud-batch.json`: which server, which batch, and each item's input, job folder and job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    pub server: String,
    pub batch_id: Uuid,
    pub items: Vec<RecordedItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedItem {
    pub input: PathBuf,
    /// The item's job folder.
    pub output: PathBuf,
    pub job_id: Uuid,
}

impl BatchRecord {
    fn read(out: &Path) -> Result<Option<BatchRecord>> {
        let path = out.join(BATCH_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not a batch record", path.display()))?,
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the record atomically (a sibling file renamed into place).
    fn write(&self, out: &Path) -> Result<()> {
        let path = out.join(BATCH_FILE);
        let temporary = out.join(format!("{BATCH_FILE}.tmp"));
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Some of the batch's jobs did not succeed (exit code 7, as for one job).
#[derive(Debug)]
pub struct NotAllSucceeded {
    pub failed: usize,
    pub total: usize,
}

impl std::fmt::Display for NotAllSucceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of the batch's {} cloud jobs did not succeed", self.failed, self.total)
    }
}

impl std::error::Error for NotAllSucceeded {}

/// Runs the batch of `items` (planned into `out`) in the cloud; see the module docs.
pub fn run(items: &[BatchItem], out: &Path, cloud: &CloudJobArgs, wait: bool) -> Result<()> {
    block_on(async {
        let session = session(&cloud.server.server).await?;
        let server = session.client().server().to_string();
        let record = match BatchRecord::read(out)? {
            Some(record) if record.server == server => {
                eprintln!(
                    "{} already records cloud batch {}: following it (remove it to submit anew)",
                    out.join(BATCH_FILE).display(),
                    record.batch_id
                );
                record
            }
            Some(record) => {
                return Err(BadArgument(format!(
                    "{} records a batch of {}, not of {server}: pick another --out",
                    out.display(),
                    record.server
                ))
                .into());
            }
            None => match submit(&session, items, out, cloud).await? {
                Some(record) => record,
                None => anyhow::bail!("not submitted: the quote was declined, nothing was spent"),
            },
        };
        if !wait {
            eprintln!("cloud batch {} submitted; `kiln batch … --cloud --wait` follows it", record.batch_id);
            return Ok(());
        }
        let batch = follow(&session, record.batch_id).await?;
        download_all(&session, &record, &batch).await
    })
}

/// Quote, confirmation, uploads, the batch created and recorded; `None` when declined.
async fn submit(
    session: &Session,
    items: &[BatchItem],
    out: &Path,
    cloud: &CloudJobArgs,
) -> Result<Option<BatchRecord>> {
    let priority = if cloud.rush { Priority::Rush } else { Priority::Standard };
    let mut total = 0;
    for (index, item) in items.iter().enumerate() {
        let quote = job::quote(session, &item.input, &job::cloud_overrides(&item.settings), priority).await?;
        eprintln!(
            "[{}/{}] {}: {} credits for {} photos at preset {}",
            index + 1,
            items.len(),
            item.input.display(),
            quote.credits,
            quote.photos,
            quote.preset
        );
        total += quote.credits;
    }
    let balances = session.call(async |client| client.credits().await).await?;
    eprintln!(
        "quote: {total} credits for the batch of {} jobs, {} priority ({} available)",
        items.len(),
        priority.as_str(),
        balances.available
    );
    job::ensure_credits(total, balances.available)?;
    if !confirm(&format!("Submit these {} jobs for {total} credits?", items.len()), cloud.yes)? {
        return Ok(None);
    }
    let mut created = Vec::with_capacity(items.len());
    for item in items {
        let (upload_id, _) = upload(session, &item.input, &item.output).await?;
        created.push(CreateItem { upload_id, settings: serde_json::to_value(job::cloud_overrides(&item.settings))? });
    }
    let request = CreateBatch { items: Some(created), priority, ..CreateBatch::default() };
    let batch = session.call(async |client| client.create_batch(&request).await).await?;
    let server = session.client().server().to_string();
    let mut recorded = Vec::with_capacity(items.len());
    for (item, job) in items.iter().zip(&batch.items) {
        JobRecord { server: server.clone(), job_id: job.job_id, upload_id: job.upload_id }.write(&item.output)?;
        recorded.push(RecordedItem { input: item.input.clone(), output: item.output.clone(), job_id: job.job_id });
    }
    let record = BatchRecord { server, batch_id: batch.id, items: recorded };
    record.write(out)?;
    eprintln!("submitted cloud batch {} ({} jobs)", batch.id, batch.items.len());
    Ok(Some(record))
}

/// Polls the batch until every job has ended, saying how many are where as that changes.
async fn follow(session: &Session, batch_id: Uuid) -> Result<Batch> {
    let mut shown = None;
    loop {
        let batch = session.call(async |client| client.batch(batch_id).await).await?;
        let c = &batch.counts;
        let line = format!(
            "cloud batch {}: {} queued, {} running, {} succeeded, {} failed, {} canceled, {} expired",
            batch.state, c.queued, c.running, c.succeeded, c.failed, c.canceled, c.expired
        );
        if shown.as_ref() != Some(&line) {
            eprintln!("{line}");
            shown = Some(line);
        }
        if batch.is_complete() {
            return Ok(batch);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Downloads each item's outputs into its job folder (a job that did not succeed: the stages it
/// finished, if any); fails with [`NotAllSucceeded`] when some job did not succeed.
async fn download_all(session: &Session, record: &BatchRecord, batch: &Batch) -> Result<()> {
    let mut failed = 0;
    for item in &record.items {
        let job = session.call(async |client| client.job(item.job_id).await).await?;
        if !job.outputs.is_empty() {
            download_into(session, &job, &item.output).await?;
        }
        let note = match (&job.error, job.state) {
            (_, JobState::Succeeded) => String::new(),
            (Some(error), _) => format!(": {} ({})", error.message, error.code),
            (None, _) => String::new(),
        };
        println!("{:<10} {}  {}{note}", job.state.as_str(), job.id, item.output.display());
        if job.state != JobState::Succeeded {
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(NotAllSucceeded { failed, total: batch.items.len() }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_job::JobSettings;
    use kiln_protocol::{Format, Preset, Stage};

    #[test]
    fn a_cloud_job_gets_every_setting_but_the_device() {
        let mut settings = JobSettings::for_preset(Preset::Medium);
        settings.formats = vec![Format::Usdz];
        settings.max_side = Some(100);
        settings.until = Stage::Mesh;
        let overrides = job::cloud_overrides(&settings);
        assert_eq!(overrides.device, None);
        let mut back = overrides.settings();
        back.device = settings.device;
        back.checkpoint_every = settings.checkpoint_every;
        assert_eq!(back, settings, "the same job either way");
    }

    #[test]
    fn the_batch_record_reads_back() {
        let dir = std::env::temp_dir().join(format!("kiln-cli-batch-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(BatchRecord::read(&dir).unwrap(), None);
        let item = RecordedItem { input: "a".into(), output: dir.join("a"), job_id: Uuid::from_u128(2) };
        let record =
            BatchRecord { server: "http://127.0.0.1:9/".into(), batch_id: Uuid::from_u128(1), items: vec![item] };
        record.write(&dir).unwrap();
        assert_eq!(BatchRecord::read(&dir).unwrap(), Some(record));
        assert!(!dir.join(format!("{BATCH_FILE}.tmp")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
