//! Uploads: declaring the files, and what is left to send (presigned multipart URLs).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A request to open an upload.
#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUpload {
    /// Either photos (`.jpg`, `.jpeg`, `.png`) or exactly one `.zip` of photos.
    pub files: Vec<DeclaredFile>,
}

/// One file the client is about to upload.
#[derive(Deserialize, Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeclaredFile {
    /// A plain file name: no `/`, `\`, control characters or leading `.`; at most 255 bytes.
    #[cfg_attr(feature = "openapi", schema(example = "img_001.jpg"))]
    pub name: String,
    /// In bytes, more than 0.
    #[cfg_attr(feature = "openapi", schema(example = 3_481_275))]
    pub size: u64,
    /// The SHA-256 of the file, 64 hexadecimal characters.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    )]
    pub sha256: String,
}

/// An upload and, while it is open, what is left to send.
#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upload {
    pub id: Uuid,
    /// `open`, `complete` or `rejected`.
    #[cfg_attr(feature = "openapi", schema(example = "open"))]
    pub state: String,
    /// `photos` or `zip`.
    #[cfg_attr(feature = "openapi", schema(example = "photos"))]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// An upload still open then is rejected and its parts deleted.
    pub expires_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When the part URLs of this response stop working (none when there are none): ask again
    /// with `GET /v1/uploads/{id}` for fresh ones.
    pub urls_expire_at: Option<DateTime<Utc>>,
    /// Why a rejected upload was refused.
    pub error: Option<UploadError>,
    pub files: Vec<UploadFile>,
}

/// The refusal that rejected an upload.
#[derive(Clone, Serialize, Deserialize, Debug)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadError {
    #[cfg_attr(feature = "openapi", schema(example = "hash_mismatch"))]
    pub code: String,
    pub message: String,
}

#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadFile {
    #[cfg_attr(feature = "openapi", schema(example = "img_001.jpg"))]
    pub name: String,
    pub size: i64,
    /// As declared, lowercase hexadecimal.
    pub sha256: String,
    /// Every part but the last has this size.
    pub part_size: i64,
    pub part_count: i32,
    /// The parts still to send (absent from storage, or there with the wrong size), each with
    /// the URL to `PUT` its bytes to; empty once complete.
    pub parts: Vec<PartToSend>,
    /// The parts storage holds (while open).
    pub received: Vec<ReceivedPart>,
}

#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartToSend {
    /// From 1.
    pub number: u16,
    /// Bytes of the file from `(number - 1) * part_size`.
    pub size: i64,
    /// `PUT` the part's bytes here; the response's `ETag` header acknowledges them.
    pub url: String,
}

#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceivedPart {
    pub number: u16,
    pub size: u64,
    pub etag: String,
}
