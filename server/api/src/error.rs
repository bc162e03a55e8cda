//! The one error shape every refusal has: `{"error": {"code", "message"}}`, `code` stable.

use serde::{Deserialize, Serialize};

/// Every error response.
#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable and machine-readable.
    #[cfg_attr(feature = "openapi", schema(example = "not_found"))]
    pub code: String,
    /// For people; may change.
    pub message: String,
}
