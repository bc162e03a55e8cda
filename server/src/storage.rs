//! Object storage over S3's API (SeaweedFS here, any S3-compatible store in production).
//! Requests are signed by `rusty-s3` (SigV4, no I/O of its own) and sent with `reqwest`; clients
//! and workers only ever get presigned URLs, never the storage credentials.

use std::sync::Arc;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

use crate::config::S3Config;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage endpoint is not a valid URL: {0}")]
    Endpoint(String),
    #[error("storage request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("storage answered {status} to {action}: {body}")]
    Status { action: &'static str, status: u16, body: String },
    #[error("storage answered {action} with a body that does not parse: {problem}")]
    Parse { action: &'static str, problem: String },
}

#[derive(Clone)]
pub struct Storage {
    pub bucket: Arc<Bucket>,
    pub credentials: Arc<Credentials>,
    pub http: reqwest::Client,
    /// How long presigned URLs stay valid.
    pub presign: Duration,
}

/// Server-side requests to storage give up after this long (a stuck store must not hold a
/// request handler forever).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

impl Storage {
    pub fn new(config: &S3Config, presign: Duration) -> Result<Self, StorageError> {
        let endpoint = Url::parse(&config.endpoint).map_err(|e| StorageError::Endpoint(e.to_string()))?;
        // Path style: S3-compatible stores on an IP or a single host name cannot do virtual hosts.
        let bucket = Bucket::new(endpoint, UrlStyle::Path, config.bucket.clone(), config.region.clone())
            .map_err(|e| StorageError::Endpoint(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(StorageError::Http)?;
        Ok(Storage {
            bucket: Arc::new(bucket),
            credentials: Arc::new(Credentials::new(config.access_key.clone(), config.secret_key.clone())),
            http,
            presign,
        })
    }

    /// A URL to download `key` for [`Storage::presign`].
    pub fn presign_get(&self, key: &str) -> Url {
        self.bucket.get_object(Some(&self.credentials), key).sign(self.presign)
    }

    /// A URL to upload `key` in one PUT for [`Storage::presign`].
    pub fn presign_put(&self, key: &str) -> Url {
        self.bucket.put_object(Some(&self.credentials), key).sign(self.presign)
    }

    /// Signs `action` for a request the server makes itself, valid one minute.
    pub fn sign<'a>(&self, action: &impl S3Action<'a>) -> Url {
        action.sign(Duration::from_secs(60))
    }

    /// Whether the bucket answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StorageError> {
        let url = self.sign(&self.bucket.head_bucket(Some(&self.credentials)));
        let response = self.http.head(url).send().await?;
        check("HeadBucket", response).await.map(|_| ())
    }

    /// Creates the bucket unless it exists (`kiln-server migrate`).
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        if self.ping().await.is_ok() {
            return Ok(());
        }
        let url = self.sign(&self.bucket.create_bucket(&self.credentials));
        let response = self.http.put(url).send().await?;
        check("CreateBucket", response).await.map(|_| ())
    }

    /// Deletes `key` (missing keys are not an error, as in S3).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let url = self.sign(&self.bucket.delete_object(Some(&self.credentials), key));
        let response = self.http.delete(url).send().await?;
        check("DeleteObject", response).await.map(|_| ())
    }
}

/// The response if its status is a success, else a [`StorageError::Status`] with its body.
pub async fn check(action: &'static str, response: reqwest::Response) -> Result<reqwest::Response, StorageError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(StorageError::Status { action, status: status.as_u16(), body: body.chars().take(500).collect() })
}
