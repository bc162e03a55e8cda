//! What one upload and one job may be, published at `GET /v1/limits`.

use serde::{Deserialize, Serialize};

/// What one upload and one job may be, published at `GET /v1/limits` and enforced before any
/// compute.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub max_files: u32,
    pub max_file_bytes: u64,
    pub max_upload_bytes: u64,
    /// Multipart part size: S3 wants at least 5 MiB for every part but the last.
    pub part_bytes: u64,
    /// Seconds a presigned URL stays valid.
    pub presign_seconds: u64,
    /// Days an open upload is kept before it is deleted.
    pub upload_retention_days: u32,
    /// Days a finished job's outputs are kept.
    pub output_retention_days: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 500,
            max_file_bytes: 200 << 20,
            max_upload_bytes: 20 << 30,
            part_bytes: 8 << 20,
            presign_seconds: 3600,
            upload_retention_days: 7,
            output_retention_days: 30,
        }
    }
}
