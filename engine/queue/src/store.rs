//! The durable job queue: one SQLite table `jobs` (`<out>/queue.sqlite` for `kiln watch`).
//!
//! A job is `queued`, `running`, `done`, `failed` or `canceled` (stopped by its user; it resumes
//! when queued again); `attempts` counts its starts; a queued job
//! is not claimed before its `not_before` time (set when another process held its folder). Each
//! input's content hash is unique in the table, so an input already seen is never queued twice. Every
//! change is one statement (or one transaction), so a crash leaves the table as it was before or
//! after it; jobs a crash left `running` are put back to `queued` by [`QueueStore::requeue_interrupted`]
//! and resume from their job folders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{KeyMetrics, QueueError, unix_now};
use kiln_job::JobSettings;

/// How long a statement waits for another connection's write lock (the watcher's scanner and
/// its runner share the file) before failing: far longer than any of our short transactions.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    input         TEXT NOT NULL,
    content_hash  TEXT NOT NULL UNIQUE,
    job_dir       TEXT NOT NULL,
    settings      TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'canceled')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,
    metrics       TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    not_before    REAL NOT NULL DEFAULT 0,
    runs_on       TEXT NOT NULL DEFAULT 'local'
);";

/// Columns added after the first release, with their definitions: a queue file an older Kiln
/// wrote gains them when opened.
const ADDED_COLUMNS: &[(&str, &str)] =
    &[("not_before", "REAL NOT NULL DEFAULT 0"), ("runs_on", "TEXT NOT NULL DEFAULT 'local'")];

/// Where a queued job runs: this machine's engine, or the hosted service (the desktop app sends
/// it there and brings its outputs back into the same job folder).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunsOn {
    #[default]
    Local,
    Cloud,
}

impl RunsOn {
    pub fn name(self) -> &'static str {
        match self {
            RunsOn::Local => "local",
            RunsOn::Cloud => "cloud",
        }
    }

    fn parse(text: &str) -> Option<RunsOn> {
        [RunsOn::Local, RunsOn::Cloud].into_iter().find(|r| r.name() == text)
    }
}

/// Where a job stands in the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    /// Stopped by its user; its folder keeps what finished, and queuing it again resumes it.
    Canceled,
}

impl JobState {
    const ALL: [JobState; 5] =
        [JobState::Queued, JobState::Running, JobState::Done, JobState::Failed, JobState::Canceled];

    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }

    fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.name() == text)
    }
}

/// One row of the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedJob {
    pub id: i64,
    pub input: PathBuf,
    pub content_hash: String,
    pub job_dir: PathBuf,
    pub settings: JobSettings,
    pub state: JobState,
    pub attempts: u32,
    pub error: Option<String>,
    pub metrics: Option<KeyMetrics>,
    /// When it was queued, Unix seconds.
    pub created_at: f64,
    pub runs_on: RunsOn,
}

/// What [`QueueStore::enqueue`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Enqueued {
    /// A new row, queued.
    New(i64),
    /// The content hash was already in the queue: this row has it.
    AlreadyKnown(Box<QueuedJob>),
}

/// How a new row starts.
enum Initial<'a> {
    Queued(RunsOn),
    /// Refused before it could run, for this reason (runs nowhere).
    Failed(&'a str),
}

/// A connection to the queue database.
pub struct QueueStore {
    connection: Connection,
    path: PathBuf,
}

impl QueueStore {
    /// Opens (creating if needed) the queue at `path`.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let sql = |source| QueueError::Sql { path: path.to_path_buf(), source };
        let connection = Connection::open(path).map_err(sql)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // WAL: readers never block the writer; FULL sync: a finished transaction survives power loss.
        connection.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        connection.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        connection.execute_batch(SCHEMA).map_err(sql)?;
        add_missing_columns(&connection).map_err(sql)?;
        allow_canceled(&connection).map_err(sql)?;
        Ok(QueueStore { connection, path: path.to_path_buf() })
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> QueueError + '_ {
        |source| QueueError::Sql { path: self.path.clone(), source }
    }

    /// Queues `input` unless a job with the same content hash exists (then returns that one).
    pub fn enqueue(
        &self,
        input: &Path,
        content_hash: &str,
        job_dir: &Path,
        settings: &JobSettings,
    ) -> Result<Enqueued, QueueError> {
        self.insert(input, content_hash, job_dir, settings, Initial::Queued(RunsOn::Local))
    }

    /// [`QueueStore::enqueue`], for a job that runs on `runs_on`.
    pub fn enqueue_on(
        &self,
        input: &Path,
        content_hash: &str,
        job_dir: &Path,
        settings: &JobSettings,
        runs_on: RunsOn,
    ) -> Result<Enqueued, QueueError> {
        self.insert(input, content_hash, job_dir, settings, Initial::Queued(runs_on))
    }

    /// Records `input` as failed before it could run (e.g. a broken sidecar), so the failure is
    /// visible and the same content is not retried.
    pub fn record_failure(
        &self,
        input: &Path,
        content_hash: &str,
        job_dir: &Path,
        settings: &JobSettings,
        error: &str,
    ) -> Result<Enqueued, QueueError> {
        self.insert(input, content_hash, job_dir, settings, Initial::Failed(error))
    }

    fn insert(
        &self,
        input: &Path,
        content_hash: &str,
        job_dir: &Path,
        settings: &JobSettings,
        initial: Initial,
    ) -> Result<Enqueued, QueueError> {
        let (state, error, runs_on) = match initial {
            Initial::Queued(runs_on) => (JobState::Queued, None, runs_on),
            Initial::Failed(error) => (JobState::Failed, Some(error), RunsOn::Local),
        };
        let settings_json = serde_json::to_string(settings).map_err(|e| self.corrupt(format!("settings: {e}")))?;
        let now = unix_now();
        let inserted = self
            .connection
            .execute(
                "INSERT INTO jobs (input, content_hash, job_dir, settings, state, error, created_at, updated_at, runs_on)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8) ON CONFLICT (content_hash) DO NOTHING",
                params![
                    path_text(input),
                    content_hash,
                    path_text(job_dir),
                    settings_json,
                    state.name(),
                    error,
                    now,
                    runs_on.name()
                ],
            )
            .map_err(self.sql())?;
        if inserted == 1 {
            return Ok(Enqueued::New(self.connection.last_insert_rowid()));
        }
        let known =
            self.find_by_hash(content_hash)?.ok_or_else(|| self.corrupt(format!("hash {content_hash} vanished")))?;
        Ok(Enqueued::AlreadyKnown(Box::new(known)))
    }

    /// The job with this id, if it exists.
    pub fn job(&self, id: i64) -> Result<Option<QueuedJob>, QueueError> {
        self.connection
            .query_row(&format!("{SELECT} WHERE id = ?1"), [id], read_row)
            .optional()
            .map_err(self.sql())?
            .transpose()
            .map_err(|e| self.corrupt(e))
    }

    /// Forgets a job (its folder is the caller's to remove; its photos are never touched).
    pub fn remove(&self, id: i64) -> Result<(), QueueError> {
        self.connection.execute("DELETE FROM jobs WHERE id = ?1", [id]).map_err(self.sql())?;
        Ok(())
    }

    pub fn find_by_hash(&self, content_hash: &str) -> Result<Option<QueuedJob>, QueueError> {
        self.connection
            .query_row(&format!("{SELECT} WHERE content_hash = ?1"), [content_hash], read_row)
            .optional()
            .map_err(self.sql())?
            .transpose()
            .map_err(|e| self.corrupt(e))
    }

    /// Puts jobs left `running` by a process that died back to `queued`; returns how many.
    pub fn requeue_interrupted(&self) -> Result<usize, QueueError> {
        self.connection
            .execute("UPDATE jobs SET state = 'queued', updated_at = ?1 WHERE state = 'running'", [unix_now()])
            .map_err(self.sql())
    }

    /// Marks the oldest queued job `running`, counts the attempt and returns it.
    pub fn claim_next(&mut self) -> Result<Option<QueuedJob>, QueueError> {
        let path = self.path.clone();
        let sql = |source| QueueError::Sql { path: path.clone(), source };
        let transaction =
            self.connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
        let claimed = transaction
            .query_row(
                &format!("{SELECT} WHERE state = 'queued' AND not_before <= ?1 ORDER BY id LIMIT 1"),
                [unix_now()],
                read_row,
            )
            .optional()
            .map_err(sql)?;
        let Some(job) = claimed else { return Ok(None) };
        let mut job = job.map_err(|problem| QueueError::BadInput { path: path.clone(), problem })?;
        transaction
            .execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
                params![job.id, unix_now()],
            )
            .map_err(sql)?;
        transaction.commit().map_err(sql)?;
        job.state = JobState::Running;
        job.attempts += 1;
        Ok(Some(job))
    }

    pub fn mark_done(&self, id: i64, metrics: &KeyMetrics) -> Result<(), QueueError> {
        let metrics = serde_json::to_string(metrics).map_err(|e| self.corrupt(format!("metrics: {e}")))?;
        self.set_state(id, JobState::Done, None, Some(&metrics))
    }

    pub fn mark_failed(&self, id: i64, error: &str) -> Result<(), QueueError> {
        self.set_state(id, JobState::Failed, Some(error), None)
    }

    /// A job its user stopped: not claimed again until [`QueueStore::requeue`]d.
    pub fn mark_canceled(&self, id: i64) -> Result<(), QueueError> {
        self.set_state(id, JobState::Canceled, None, None)
    }

    /// Puts a cancelled job back in the queue: it resumes at the next start.
    pub fn requeue(&self, id: i64) -> Result<(), QueueError> {
        self.set_state(id, JobState::Queued, None, None)
    }

    /// Puts a job back in the queue, not to be claimed for `delay`: another process holds its
    /// folder, and trying again at once would only fail again.
    pub fn defer(&self, id: i64, delay: Duration) -> Result<(), QueueError> {
        let now = unix_now();
        self.connection
            .execute(
                "UPDATE jobs SET state = 'queued', error = NULL, metrics = NULL, updated_at = ?2, not_before = ?3 WHERE id = ?1",
                params![id, now, now + delay.as_secs_f64()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    fn set_state(
        &self,
        id: i64,
        state: JobState,
        error: Option<&str>,
        metrics: Option<&str>,
    ) -> Result<(), QueueError> {
        self.connection
            .execute(
                "UPDATE jobs SET state = ?2, error = ?3, metrics = ?4, updated_at = ?5 WHERE id = ?1",
                params![id, state.name(), error, metrics, unix_now()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<QueuedJob>, QueueError> {
        let mut statement = self.connection.prepare(&format!("{SELECT} ORDER BY id")).map_err(self.sql())?;
        let rows = statement.query_map([], read_row).map_err(self.sql())?;
        let mut jobs = Vec::new();
        for row in rows {
            jobs.push(row.map_err(self.sql())?.map_err(|e| self.corrupt(e))?);
        }
        Ok(jobs)
    }

    /// How many jobs are queued or running.
    pub fn unfinished(&self) -> Result<usize, QueueError> {
        self.connection
            .query_row("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')", [], |row| row.get::<_, i64>(0))
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(self.sql())
    }

    /// A row Kiln wrote that it cannot read back: the queue's fault, not the user's input.
    fn corrupt(&self, problem: String) -> QueueError {
        QueueError::Corrupt { path: self.path.clone(), problem: format!("unreadable queue row: {problem}") }
    }
}

/// Adds the [`ADDED_COLUMNS`] a table created by an older version lacks.
fn add_missing_columns(connection: &Connection) -> rusqlite::Result<()> {
    let mut statement = connection.prepare("SELECT name FROM pragma_table_info('jobs')")?;
    let present: Vec<String> = statement.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
    for (name, definition) in ADDED_COLUMNS {
        if !present.iter().any(|column| column == name) {
            connection.execute_batch(&format!("ALTER TABLE jobs ADD COLUMN {name} {definition}"))?;
        }
    }
    Ok(())
}

/// Rebuilds a table an older version created, whose state check predates `canceled`, with the
/// current check and the same rows (SQLite cannot alter a check in place), in one transaction.
fn allow_canceled(connection: &Connection) -> rusqlite::Result<()> {
    let created: String =
        connection
            .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'", [], |row| row.get(0))?;
    if created.contains("'canceled'") {
        return Ok(());
    }
    let columns = "id, input, content_hash, job_dir, settings, state, attempts, error, metrics, created_at, updated_at, \
                   not_before, runs_on";
    connection.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE jobs RENAME TO jobs_before_canceled;
         {SCHEMA}
         INSERT INTO jobs ({columns}) SELECT {columns} FROM jobs_before_canceled;
         DROP TABLE jobs_before_canceled;
         COMMIT;"
    ))
}

const SELECT: &str = "SELECT id, input, content_hash, job_dir, settings, state, attempts, error, metrics, created_at, \
     runs_on FROM jobs";

/// A row as a job; the inner error describes a row this version cannot read.
fn read_row(row: &Row) -> rusqlite::Result<Result<QueuedJob, String>> {
    let settings: String = row.get(4)?;
    let state: String = row.get(5)?;
    let metrics: Option<String> = row.get(8)?;
    let runs_on: String = row.get(10)?;
    let parsed = (|| {
        let settings = serde_json::from_str(&settings).map_err(|e| format!("settings: {e}"))?;
        let state = JobState::parse(&state).ok_or_else(|| format!("unknown state {state:?}"))?;
        let metrics = metrics.map(|m| serde_json::from_str(&m)).transpose().map_err(|e| format!("metrics: {e}"))?;
        let runs_on = RunsOn::parse(&runs_on).ok_or_else(|| format!("unknown place to run {runs_on:?}"))?;
        Ok::<_, String>((settings, state, metrics, runs_on))
    })();
    let id: i64 = row.get(0)?;
    let input: String = row.get(1)?;
    let content_hash: String = row.get(2)?;
    let job_dir: String = row.get(3)?;
    let attempts: u32 = row.get(6)?;
    let error: Option<String> = row.get(7)?;
    let created_at: f64 = row.get(9)?;
    Ok(parsed.map(|(settings, state, metrics, runs_on)| QueuedJob {
        id,
        input: PathBuf::from(input),
        content_hash,
        job_dir: PathBuf::from(job_dir),
        settings,
        state,
        attempts,
        error,
        metrics,
        created_at,
        runs_on,
    }))
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_protocol::Preset;

    fn temp_db(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("queue.sqlite")
    }

    #[test]
    fn a_job_goes_queued_running_done_and_survives_reopening() {
        let path = temp_db("cycle");
        let settings = JobSettings::for_preset(Preset::Preview);
        let mut store = QueueStore::open(&path).unwrap();
        let Enqueued::New(id) = store.enqueue(Path::new("/in/a"), "hash-a", Path::new("/out/a"), &settings).unwrap()
        else {
            panic!("first enqueue must be new")
        };
        let again = store.enqueue(Path::new("/in/copy-of-a"), "hash-a", Path::new("/out/x"), &settings).unwrap();
        assert!(matches!(again, Enqueued::AlreadyKnown(ref job) if job.id == id && job.input == Path::new("/in/a")));
        let claimed = store.claim_next().unwrap().unwrap();
        assert_eq!((claimed.id, claimed.state, claimed.attempts), (id, JobState::Running, 1));
        assert_eq!(claimed.settings, settings);
        assert!(store.claim_next().unwrap().is_none(), "nothing else queued");
        let metrics = KeyMetrics { registered_images: Some(12), ..KeyMetrics::default() };
        store.mark_done(id, &metrics).unwrap();
        drop(store);
        let store = QueueStore::open(&path).unwrap();
        let jobs = store.jobs().unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!((jobs[0].state, jobs[0].attempts, jobs[0].metrics.clone()), (JobState::Done, 1, Some(metrics)));
        assert_eq!(store.unfinished().unwrap(), 0);
    }

    #[test]
    fn a_crash_while_running_requeues_and_counts_the_next_attempt() {
        let path = temp_db("crash");
        let settings = JobSettings::for_preset(Preset::Preview);
        let mut store = QueueStore::open(&path).unwrap();
        store.enqueue(Path::new("/in/a"), "a", Path::new("/out/a"), &settings).unwrap();
        store.enqueue(Path::new("/in/b"), "b", Path::new("/out/b"), &settings).unwrap();
        let a = store.claim_next().unwrap().unwrap();
        drop(store); // the process dies with `a` running
        let mut store = QueueStore::open(&path).unwrap();
        assert_eq!(store.requeue_interrupted().unwrap(), 1);
        let resumed = store.claim_next().unwrap().unwrap();
        assert_eq!((resumed.id, resumed.attempts), (a.id, 2), "the interrupted job comes first, second attempt");
        store.mark_failed(resumed.id, "no photos").unwrap();
        let b = store.claim_next().unwrap().unwrap();
        store.requeue(b.id).unwrap();
        let states: Vec<(JobState, Option<String>)> =
            store.jobs().unwrap().into_iter().map(|j| (j.state, j.error)).collect();
        assert_eq!(states, vec![(JobState::Failed, Some("no photos".into())), (JobState::Queued, None)]);
        assert_eq!(store.unfinished().unwrap(), 1);
    }

    #[test]
    fn a_deferred_job_waits_its_delay_and_others_go_first() {
        let path = temp_db("defer");
        let settings = JobSettings::for_preset(Preset::Preview);
        let mut store = QueueStore::open(&path).unwrap();
        store.enqueue(Path::new("/in/a"), "a", Path::new("/out/a"), &settings).unwrap();
        store.enqueue(Path::new("/in/b"), "b", Path::new("/out/b"), &settings).unwrap();
        let a = store.claim_next().unwrap().unwrap();
        store.defer(a.id, Duration::from_millis(400)).unwrap();
        let next = store.claim_next().unwrap().unwrap();
        assert_ne!(next.id, a.id, "the deferred job is not claimed before its time");
        assert!(store.claim_next().unwrap().is_none());
        assert_eq!(store.unfinished().unwrap(), 2, "deferred still counts as unfinished");
        std::thread::sleep(Duration::from_millis(450));
        let again = store.claim_next().unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (a.id, 2));
    }

    /// A queue file an older version wrote with `schema`, holding one queued job `/in/a`.
    fn write_old_queue(path: &Path, schema: &str) {
        let connection = Connection::open(path).unwrap();
        connection.execute_batch(schema).unwrap();
        connection
            .execute(
                "INSERT INTO jobs (input, content_hash, job_dir, settings, state, created_at, updated_at) VALUES ('/in/a', 'a', '/out/a', ?1, 'queued', 0, 0)",
                [serde_json::to_string(&JobSettings::for_preset(Preset::Preview)).unwrap()],
            )
            .unwrap();
    }

    #[test]
    fn a_canceled_job_waits_until_requeued_and_a_removed_one_is_gone() {
        let path = temp_db("cancel");
        let settings = JobSettings::for_preset(Preset::Preview);
        let mut store = QueueStore::open(&path).unwrap();
        store.enqueue(Path::new("/in/a"), "a", Path::new("/out/a"), &settings).unwrap();
        let a = store.claim_next().unwrap().unwrap();
        store.mark_canceled(a.id).unwrap();
        assert_eq!(store.job(a.id).unwrap().unwrap().state, JobState::Canceled);
        assert!(store.claim_next().unwrap().is_none(), "a canceled job is not claimed");
        assert_eq!(store.unfinished().unwrap(), 0);
        store.requeue(a.id).unwrap();
        assert_eq!(store.claim_next().unwrap().unwrap().attempts, 2, "resumed as the next attempt");
        store.remove(a.id).unwrap();
        assert!(store.job(a.id).unwrap().is_none());
        assert!(store.jobs().unwrap().is_empty());
    }

    #[test]
    fn a_queue_file_from_before_canceled_existed_is_rebuilt_with_its_rows() {
        let path = temp_db("migrate-canceled");
        let old_schema = SCHEMA.replace(", 'canceled'", "").replace(RUNS_ON_COLUMN, "");
        assert!(!old_schema.contains("canceled"), "the test must start from the old table");
        write_old_queue(&path, &old_schema);
        let mut store = QueueStore::open(&path).unwrap();
        let job = store.claim_next().unwrap().expect("the old row survives the rebuild");
        assert_eq!(job.input, Path::new("/in/a"));
        store.mark_canceled(job.id).unwrap();
        drop(store);
        let store = QueueStore::open(&path).unwrap();
        assert_eq!(store.jobs().unwrap()[0].state, JobState::Canceled, "reopening keeps the new check");
    }

    #[test]
    fn a_queue_file_from_before_not_before_existed_gains_the_column() {
        let path = temp_db("migrate");
        let old_schema = SCHEMA.replace(",\n    not_before    REAL NOT NULL DEFAULT 0", "").replace(RUNS_ON_COLUMN, "");
        assert!(!old_schema.contains("not_before"), "the test must start from the old table");
        write_old_queue(&path, &old_schema);
        let mut store = QueueStore::open(&path).unwrap();
        let job = store.claim_next().unwrap().expect("the old row is claimable");
        store.defer(job.id, Duration::from_secs(3600)).unwrap();
        assert!(store.claim_next().unwrap().is_none());
    }

    /// The column the cloud's jobs added, as SCHEMA spells it.
    const RUNS_ON_COLUMN: &str = ",\n    runs_on       TEXT NOT NULL DEFAULT 'local'";

    #[test]
    fn a_cloud_job_keeps_its_place_and_an_older_file_reads_as_local() {
        let path = temp_db("runs-on");
        let old_schema = SCHEMA.replace(RUNS_ON_COLUMN, "");
        assert!(!old_schema.contains("runs_on"), "the test must start from the old table");
        write_old_queue(&path, &old_schema);
        let mut store = QueueStore::open(&path).unwrap();
        let settings = JobSettings::for_preset(Preset::Preview);
        store.enqueue_on(Path::new("/in/b"), "b", Path::new("/out/b"), &settings, RunsOn::Cloud).unwrap();
        let old = store.claim_next().unwrap().unwrap();
        assert_eq!((old.input.as_path(), old.runs_on), (Path::new("/in/a"), RunsOn::Local));
        drop(store);
        let mut store = QueueStore::open(&path).unwrap();
        let cloud = store.claim_next().unwrap().unwrap();
        assert_eq!((cloud.input.as_path(), cloud.runs_on), (Path::new("/in/b"), RunsOn::Cloud));
    }
}
