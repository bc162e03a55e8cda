//! Object storage over S3's API (SeaweedFS here, any S3-compatible store in production).
//! Requests are signed by `rusty-s3` (SigV4, no I/O of its own) and sent with `reqwest`; clients
//! and workers only ever get presigned URLs, never the storage credentials.

use std::sync::Arc;
use std::time::Duration;

use rusty_s3::actions::{CompleteMultipartUploadResponse, CreateMultipartUpload, ListObjectsV2, ListParts};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

use crate::config::S3Config;
use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage endpoint is not a valid URL: {0}")]
    Endpoint(String),
    #[error("storage request failed: {0}")]
    Http(reqwest::Error),
    #[error("storage answered {status} to {action}: {body}")]
    Status { action: &'static str, status: u16, body: String },
    #[error("storage answered {action} with a body that does not parse: {problem}")]
    Parse { action: &'static str, problem: String },
}

impl StorageError {
    /// Whether storage answered 404: no such key, or no such multipart upload.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Status { status: 404, .. })
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::Http(cause) if cause.is_connect() || cause.is_timeout() => {
                tracing::error!(error = %error, "storage unreachable");
                ApiError::Unavailable { message: "object storage is unreachable; retry shortly".into() }
            }
            _ => ApiError::internal(error),
        }
    }
}

/// One part of a multipart upload that storage holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPart {
    pub number: u16,
    pub size: u64,
    pub etag: String,
    pub last_modified: String,
}

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub key: String,
    pub size: u64,
}

/// reqwest names the request's URL in its errors; ours are presigned, and an error travels to
/// logs and to customers' job errors, so the URL is dropped here.
impl From<reqwest::Error> for StorageError {
    fn from(error: reqwest::Error) -> Self {
        StorageError::Http(error.without_url())
    }
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

/// A download the server streams itself (to verify an upload's hash) may take this long: a
/// 200 MiB file at a slow 1 MiB/s, with room to spare.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl Storage {
    pub fn new(config: &S3Config, presign: Duration) -> Result<Self, StorageError> {
        let endpoint = Url::parse(&config.endpoint).map_err(|e| StorageError::Endpoint(e.to_string()))?;
        // Path style: S3-compatible stores on an IP or a single host name cannot do virtual hosts.
        let bucket = Bucket::new(endpoint, UrlStyle::Path, config.bucket.clone(), config.region.clone())
            .map_err(|e| StorageError::Endpoint(e.to_string()))?;
        let http = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build().map_err(StorageError::Http)?;
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

    /// Starts a multipart upload of `key`; returns its upload id.
    pub async fn create_multipart(&self, key: &str) -> Result<String, StorageError> {
        let url = self.sign(&self.bucket.create_multipart_upload(Some(&self.credentials), key));
        let response = check("CreateMultipartUpload", self.http.post(url).send().await?).await?;
        let body = response.text().await?;
        let parsed = CreateMultipartUpload::parse_response(&body)
            .map_err(|e| StorageError::Parse { action: "CreateMultipartUpload", problem: e.to_string() })?;
        Ok(parsed.upload_id().to_string())
    }

    /// A URL the client PUTs part `number` of multipart upload `upload_id` of `key` to, valid for
    /// [`Storage::presign`].
    pub fn presign_upload_part(&self, key: &str, upload_id: &str, number: u16) -> Url {
        self.bucket.upload_part(Some(&self.credentials), key, number, upload_id).sign(self.presign)
    }

    /// The parts storage holds for multipart upload `upload_id` of `key`, by part number; `None`
    /// when there is no such multipart upload (completed or aborted).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Option<Vec<StoredPart>>, StorageError> {
        let mut parts = Vec::new();
        let mut marker = None;
        loop {
            let mut action = ListParts::new(&self.bucket, Some(&self.credentials), key, upload_id);
            if let Some(marker) = marker {
                action.set_part_number_marker(marker);
            }
            let response = match check("ListParts", self.http.get(self.sign(&action)).send().await?).await {
                Ok(response) => response,
                Err(error) if error.is_not_found() => return Ok(None),
                Err(error) => return Err(error),
            };
            let body = response.text().await?;
            let page = ListParts::parse_response(&body)
                .map_err(|e| StorageError::Parse { action: "ListParts", problem: e.to_string() })?;
            parts.extend(page.parts.into_iter().map(|p| StoredPart {
                number: p.number,
                size: p.size,
                etag: p.etag,
                last_modified: p.last_modified,
            }));
            match page.next_part_number_marker {
                Some(next) => marker = Some(next),
                None => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(Some(parts))
    }

    /// Assembles multipart upload `upload_id` of `key` from its parts 1, 2, … with `etags` in that
    /// order.
    pub async fn complete_multipart(&self, key: &str, upload_id: &str, etags: &[String]) -> Result<(), StorageError> {
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = self.sign(&action);
        let request = self.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/xml").body(action.body());
        let response = check("CompleteMultipartUpload", request.send().await?).await?;
        // S3 may answer 200 and still fail, with an <Error> document in the body.
        let body = response.text().await?;
        CompleteMultipartUploadResponse::parse(&body).map_err(|_| StorageError::Status {
            action: "CompleteMultipartUpload",
            status: 200,
            body: body.chars().take(500).collect(),
        })?;
        Ok(())
    }

    /// Aborts multipart upload `upload_id` of `key`, dropping its parts (an upload already gone is
    /// not an error).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        let url = self.sign(&self.bucket.abort_multipart_upload(Some(&self.credentials), key, upload_id));
        match check("AbortMultipartUpload", self.http.delete(url).send().await?).await {
            Err(error) if !error.is_not_found() => Err(error),
            _ => Ok(()),
        }
    }

    /// The size of `key`, or `None` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let url = self.sign(&self.bucket.head_object(Some(&self.credentials), key));
        let response = match check("HeadObject", self.http.head(url).send().await?).await {
            Ok(response) => response,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let length = response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or(StorageError::Parse { action: "HeadObject", problem: "no Content-Length".into() })?;
        Ok(Some(length))
    }

    /// Starts downloading `key`: the caller reads the body with `chunk()`, so nothing holds the
    /// whole object in memory. The body may take up to [`STREAM_TIMEOUT`].
    pub async fn get(&self, key: &str) -> Result<reqwest::Response, StorageError> {
        let url = self.sign(&self.bucket.get_object(Some(&self.credentials), key));
        check("GetObject", self.http.get(url).timeout(STREAM_TIMEOUT).send().await?).await
    }

    /// Every object whose key starts with `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<StoredObject>, StorageError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(token) = &token {
                action.with_continuation_token(token.clone());
            }
            let response = check("ListObjectsV2", self.http.get(self.sign(&action)).send().await?).await?;
            let body = response.text().await?;
            let page = ListObjectsV2::parse_response(&body)
                .map_err(|e| StorageError::Parse { action: "ListObjectsV2", problem: e.to_string() })?;
            objects.extend(page.contents.into_iter().map(|o| StoredObject { key: o.key, size: o.size.unwrap_or(0) }));
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(objects)
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
