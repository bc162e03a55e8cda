//! The worker's side of the workers' API (`/v1/worker/…`): typed calls with the worker token, and
//! the retry policy (exponential backoff) shared by every call that must get through.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use url::Url;
use uuid::Uuid;

use crate::routes::worker_api::{
    Finish, Finished, Heartbeat, HeartbeatReply, Lease, LeaseRef, LeaseRequest, OutputsReply, OutputsRequest,
};

/// A call to the server gives up after this long (a stuck connection must not stall heartbeats).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Storage transfers (inputs, outputs) may be large: a generous bound, only against hangs.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// First and longest wait between retries.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a call did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The worker no longer holds the job (409 `lease_lost`): drop it.
    #[error("the lease on the job was lost")]
    LeaseLost,
    /// The server refused the request itself (a 4xx other than `lease_lost`): retrying the same
    /// request fails again.
    #[error("the server refused the request ({status} {code}): {message}")]
    Refused { status: u16, code: String, message: String },
    /// The network, the server or storage failed; retrying may succeed.
    #[error("{0}")]
    Transient(String),
}

impl CallError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Transient(_))
    }
}

/// Growing waits between retries: 0.5 s doubling to 30 s.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_START }
    }
}

impl Backoff {
    /// The next wait, and the one after grows.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }
}

/// Runs `call` until it succeeds or fails with a non-transient error, backing off between tries.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut backoff = Backoff::default();
    loop {
        match call().await {
            Err(error) if error.is_transient() => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %error, "{what} failed; retrying in {:.1} s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For storage transfers: no per-call timeout of the API's size.
    transfers: reqwest::Client,
    base: Url,
    token: String,
    pub worker_id: String,
}

impl Client {
    pub fn new(base: Url, token: String, worker_id: String) -> Result<Self, reqwest::Error> {
        Ok(Client {
            http: reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?,
            transfers: reqwest::Client::builder().timeout(TRANSFER_TIMEOUT).build()?,
            base,
            token,
            worker_id,
        })
    }

    async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<Option<R>, CallError> {
        let url = self.base.join(path).map_err(|e| CallError::Transient(format!("bad URL {path}: {e}")))?;
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| CallError::Transient(format!("POST {path}: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        if status.is_success() {
            return response.json().await.map(Some).map_err(|e| CallError::Transient(format!("POST {path}: {e}")));
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let code = body["error"]["code"].as_str().unwrap_or("").to_string();
        let message = body["error"]["message"].as_str().unwrap_or("").to_string();
        match status.as_u16() {
            409 if code == "lease_lost" => Err(CallError::LeaseLost),
            // Rate limits and timeouts are the server's state, not the request's fault.
            408 | 429 => Err(CallError::Transient(format!("POST {path}: {status} {code}"))),
            400..=499 => Err(CallError::Refused { status: status.as_u16(), code, message }),
            _ => Err(CallError::Transient(format!("POST {path}: {status} {code} {message}"))),
        }
    }

    /// The next job, or `None` when the queue is empty.
    pub async fn lease(&self, device: &str) -> Result<Option<Lease>, CallError> {
        let request = LeaseRequest { worker_id: self.worker_id.clone(), device: device.to_string() };
        self.post("/v1/worker/lease", &request).await
    }

    pub async fn heartbeat(&self, job_id: Uuid, body: &Heartbeat) -> Result<HeartbeatReply, CallError> {
        self.required(self.post(&format!("/v1/worker/jobs/{job_id}/heartbeat"), body).await)
    }

    pub async fn outputs(&self, job_id: Uuid, body: &OutputsRequest) -> Result<OutputsReply, CallError> {
        self.required(self.post(&format!("/v1/worker/jobs/{job_id}/outputs"), body).await)
    }

    pub async fn finish(&self, job_id: Uuid, body: &Finish) -> Result<Finished, CallError> {
        self.required(self.post(&format!("/v1/worker/jobs/{job_id}/finish"), body).await)
    }

    pub async fn release(&self, job_id: Uuid, attempt: i32) -> Result<Finished, CallError> {
        let body = LeaseRef { worker_id: self.worker_id.clone(), attempt };
        self.required(self.post(&format!("/v1/worker/jobs/{job_id}/release"), &body).await)
    }

    /// The reply's body, which this call cannot do without.
    fn required<R>(&self, reply: Result<Option<R>, CallError>) -> Result<R, CallError> {
        reply?.ok_or_else(|| CallError::Transient("the server answered 204 where a body was due".into()))
    }

    /// Streams `url` (a presigned GET) into the file `dest`; returns its size and hex SHA-256.
    pub async fn download(&self, url: &str, dest: &Path) -> Result<(i64, String), CallError> {
        let failed =
            |e: &dyn std::fmt::Display| CallError::Transient(format!("downloading to {}: {e}", dest.display()));
        // Without the URL: it is presigned, and the message may reach logs and the job's error.
        let response = self.transfers.get(url).send().await.map_err(|e| failed(&e.without_url()))?;
        let mut response = storage_status("download", response)?;
        let mut file = std::fs::File::create(dest).map_err(|e| failed(&e))?;
        let (mut size, mut hasher) = (0usize, Sha256::new());
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e.without_url()))? {
            hasher.update(&chunk);
            size += chunk.len();
            file.write_all(&chunk).map_err(|e| failed(&e))?;
        }
        file.sync_all().map_err(|e| failed(&e))?;
        Ok((size as i64, hex::encode(hasher.finalize())))
    }

    /// Uploads `bytes` to `url` (a presigned PUT).
    pub async fn upload(&self, url: &str, bytes: Vec<u8>) -> Result<(), CallError> {
        let response = self
            .transfers
            .put(url)
            .body(bytes)
            .send()
            .await
            .map_err(|e| CallError::Transient(format!("upload: {}", e.without_url())))?;
        storage_status("upload", response).map(|_| ())
    }
}

/// Storage answers: 403 means an expired or wrong signature, which a new URL (a new lease or
/// outputs call) fixes, so every failure counts as transient except for a missing object.
fn storage_status(what: &str, response: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = response.status();
    match status.as_u16() {
        200..=299 => Ok(response),
        404 => Err(CallError::Refused {
            status: 404,
            code: "not_found".into(),
            message: format!("{what}: no such object"),
        }),
        _ => Err(CallError::Transient(format!("{what}: storage answered {status}"))),
    }
}
