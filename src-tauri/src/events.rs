//! The events the app sends the UI, by name, and the one place that sends them.

use serde::Serialize;
use tauri::{AppHandle, Emitter as _, Runtime};

use kiln_protocol::JobEvent;
use kiln_protocol::app::{JobEventMessage, JobRow, WatchedFolder};

/// A job layer event of a running job: `{ job_id, event }`.
pub const JOB_EVENT: &str = "job-event";
/// A job's row whenever its state changes.
pub const JOB_CHANGED: &str = "job-changed";
/// Every watched folder whenever one is added, removed, paused or resumed, or what one picked
/// up, has waiting or saw fail changes.
pub const WATCHED_CHANGED: &str = "watched-changed";
/// The cloud sign-in or the account changed (signed in or out, a purchase landed): the UI reads
/// `cloud_status` and `app_info` again. No payload.
pub const CLOUD_CHANGED: &str = "cloud-changed";
/// The sign-in page's address, once the app waits for the browser: shown in case none opens.
pub const CLOUD_LOGIN_URL: &str = "cloud-login-url";

/// Sends events to every window; the runner holds one. Type-erased over the Tauri runtime so the
/// runner is the same code under the real and the mock runtime.
#[derive(Clone)]
pub struct Emitter(std::sync::Arc<Sink>);

/// Where an emitter sends an event's name and payload.
type Sink = dyn Fn(&str, serde_json::Value) + Send + Sync;

impl Emitter {
    pub fn new<R: Runtime>(app: AppHandle<R>) -> Self {
        Self(std::sync::Arc::new(move |name, payload| {
            if let Err(error) = app.emit(name, payload) {
                tracing::warn!(%error, event = name, "could not send an event to the window");
            }
        }))
    }

    pub fn job_event(&self, job_id: i64, event: &JobEvent) {
        self.send(JOB_EVENT, &JobEventMessage { job_id: job_id.to_string(), event: event.clone() });
    }

    pub fn job_changed(&self, row: &JobRow) {
        self.send(JOB_CHANGED, row);
    }

    pub fn watched_changed(&self, folders: &[WatchedFolder]) {
        self.send(WATCHED_CHANGED, &folders);
    }

    pub fn cloud_changed(&self) {
        self.send(CLOUD_CHANGED, &());
    }

    pub fn cloud_login_url(&self, url: &str) {
        self.send(CLOUD_LOGIN_URL, &url);
    }

    fn send(&self, name: &str, payload: &impl Serialize) {
        match serde_json::to_value(payload) {
            Ok(value) => (self.0)(name, value),
            Err(error) => tracing::warn!(%error, event = name, "an event could not be serialised"),
        }
    }
}
