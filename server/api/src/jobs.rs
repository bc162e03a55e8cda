//! Jobs: submitting one, and a job as every route shows it (state, progress, outputs, credits).

use chrono::{DateTime, Utc};
use kiln_protocol::ErrorClass;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use crate::prices::Priority;

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Expired,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
            JobState::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Canceled,
            JobState::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Succeeded, failed, canceled or expired: never changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// One output file of a finished job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobOutput {
    #[cfg_attr(feature = "openapi", schema(example = "model.glb"))]
    pub name: String,
    pub size: i64,
    /// Hex SHA-256 of the file, as the worker measured it.
    pub sha256: String,
}

/// Why a job failed (or how it was stopped).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobFailure {
    /// Stable and machine-readable: `bad_input`, `model_failed`, `device_error`, `internal_error`,
    /// `worker_lost`, `canceled`, `not_run`.
    #[cfg_attr(feature = "openapi", schema(example = "bad_input"))]
    pub code: String,
    /// The engine's message, for people.
    pub message: String,
    /// Whose problem it is: the engine's error class.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "bad_input"))]
    pub class: ErrorClass,
}

impl JobFailure {
    pub fn new(code: &str, class: ErrorClass, message: impl Into<String>) -> Self {
        JobFailure { code: code.into(), message: message.into(), class }
    }
}

/// A job, as every route shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub id: Uuid,
    pub state: JobState,
    pub priority: Priority,
    /// The key's mode: `test` jobs run at `preview` at most and are never charged.
    #[cfg_attr(feature = "openapi", schema(example = "live"))]
    pub mode: String,
    /// The settings as accepted (kiln-protocol's SettingsOverrides; `device` is the worker's
    /// choice and never stored).
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = json!({"preset": "preview", "formats": ["glb"]})))]
    pub settings: Value,
    pub upload_id: Uuid,
    pub batch_id: Option<Uuid>,
    pub batch_item: Option<i32>,
    /// The stage running or last run: `check`, `poses`, `train`, `mesh`, `export`.
    pub stage: Option<String>,
    /// Fraction of the whole job done, 0 to 1.
    pub fraction: f32,
    /// Seconds the job is expected to need from now, once the engine has a basis for a guess.
    pub eta_seconds: Option<f32>,
    /// For a queued job: how many queued jobs (of every organisation) a worker takes before it.
    pub queue_position: Option<i64>,
    /// Times a worker leased it (a worker lost mid-job puts it back in the queue).
    pub attempts: i32,
    /// Asked to stop; a running job stops at its worker's next heartbeat.
    pub cancel_requested: bool,
    /// The running worker's last heartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the outputs are deleted: `finished_at` plus the published retention.
    pub expires_at: Option<DateTime<Utc>>,
    /// Past `expires_at`: the outputs are gone (downloads answer 410).
    pub outputs_expired: bool,
    /// The engine's report.json, once a worker finished the job.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub report: Option<Value>,
    pub outputs: Vec<JobOutput>,
    pub error: Option<JobFailure>,
    /// Seconds the workers' devices spent on the job (what is metered).
    pub gpu_seconds: f64,
    /// Photos in the job's upload (what it was priced by).
    pub photos: i32,
    pub credits: JobCredits,
}

/// A job's credits: its price, and where they went. A live job reserves its quote when it is
/// queued; its end either charges the reservation (succeeded) or releases it (every other
/// ending). Test-mode jobs are quoted and never reserve or charge anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobCredits {
    pub quoted: i64,
    pub reserved: i64,
    pub charged: i64,
    pub released: i64,
}

#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// A complete upload of the organisation's.
    pub upload_id: Uuid,
    /// kiln-protocol's settings (the names `kiln reconstruct` and `kiln.toml` take): `preset`,
    /// `formats`, `train_steps`, `max_side`, `texture_size`, `max_triangles`, `size_mm`, `seed`,
    /// `keep_all`, `until`, `checkpoint_every`. Unknown names are refused; `device` is ignored
    /// (the worker's device decides). Test keys run at `preview` at most (the default for them).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = json!({"preset": "preview", "formats": ["glb", "usdz"]})))]
    pub settings: Value,
    #[serde(default)]
    pub priority: Priority,
}

#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub data: Vec<Job>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next: Option<Uuid>,
}

/// A fresh download link.
#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputLink {
    /// A presigned GET URL on the object storage.
    pub url: String,
    pub expires_at: DateTime<Utc>,
}
