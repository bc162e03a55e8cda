//! A job's event stream (`GET /v1/jobs/{id}/events`, Server-Sent Events): each event's `id` is
//! its place in the job's log (replay from `Last-Event-ID`), its `event` name says which body its
//! `data` JSON holds: [`STATE_EVENT`] a [`StateChange`], [`PROGRESS_EVENT`] a [`Progress`]. The
//! stream ends after the state event of a final state.

use kiln_protocol::{JobEvent, Stage};
use serde::{Deserialize, Serialize};

use crate::jobs::{JobFailure, JobState};

/// The event name of a state change.
pub const STATE_EVENT: &str = "state";
/// The event name of the engine's progress.
pub const PROGRESS_EVENT: &str = "progress";

/// The job moved to `state`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateChange {
    pub state: JobState,
    /// Times a worker leased the job so far.
    pub attempts: i32,
    /// Why: `created`, `leased`, `finished`, `canceled_by_user`, `lease_expired`, `worker_lost`, ….
    #[cfg_attr(feature = "openapi", schema(example = "leased"))]
    pub reason: String,
    /// A failure's (or cancel's) error.
    pub error: Option<JobFailure>,
}

/// The engine's progress, as a worker reported it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    /// The stage running: `check`, `poses`, `train`, `mesh`, `export`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "train"))]
    pub stage: Stage,
    /// The job's fraction done, 0 to 1 (never falling within an attempt).
    pub fraction: f64,
    /// Seconds the job is expected to need from now.
    pub eta_seconds: Option<f64>,
    /// The engine's own event (kiln-protocol's `JobEvent`; `preview` is always absent).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub event: JobEvent,
}
