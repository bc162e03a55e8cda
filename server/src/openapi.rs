//! The OpenAPI 3.1 document, assembled from the routes' annotations and served at
//! `/openapi.json`.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "Kiln API", description = "Photos in, 3D models out: the hosted Kiln service."),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "api-keys", description = "Keys for integrations"),
        (name = "uploads", description = "Photos into object storage"),
        (name = "jobs", description = "Reconstructions"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An access token (from login or OAuth) or an API key (`kiln_live_…`, `kiln_test_…`)"))
                    .build(),
            ),
        );
    }
}

/// Every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable.
    #[schema(example = "not_found")]
    pub code: String,
    /// For people; may change.
    pub message: String,
}
