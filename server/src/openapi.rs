//! The OpenAPI 3.1 document, assembled from the routes' annotations and served at
//! `/openapi.json`.

pub use kiln_api::error::{ErrorBody, ErrorDetail};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Kiln API", description = "Photos in, 3D models out: the hosted Kiln service."),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "oauth", description = "OAuth 2.0 for the desktop app and the CLI (RFC 6749, 7636, 8252, 7009, 8414)"),
        (name = "api-keys", description = "Keys for integrations"),
        (name = "uploads", description = "Photos into object storage"),
        (name = "jobs", description = "Reconstructions"),
        (name = "batches", description = "Many jobs at once"),
        (name = "webhooks", description = "Events sent to your endpoints (Standard Webhooks)"),
        (name = "credits", description = "Prices, quotes, balances, the ledger and buying credits (Stripe)"),
        (name = "studio", description = "One model without an account"),
        (name = "admin", description = "Staff: organisations and credit grants"),
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
                    .description(Some(
                        "An access token (from login or OAuth) or an API key (`kiln_live_…`, `kiln_test_…`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The refusals any operation can give, added to every operation that does not document them
/// itself: a malformed body or parameter (400), a rate limit (429), an unreachable dependency
/// (503) and a bug (500); with credentials, 401 and 403; with an id in the path, 404. Each
/// route then documents only what is particular to it, and clients still get a complete schema.
pub fn add_common_errors(openapi: &mut utoipa::openapi::OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let has_id = path.contains('{');
        for operation in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            add_errors_to(operation, has_id);
        }
    }
}

fn add_errors_to(operation: &mut Operation, has_id: bool) {
    let authed = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut statuses = vec![
        ("400", "Malformed request (`invalid_json`, `invalid_query`, `invalid_id`, …)"),
        ("413", "Body over the size limit (`body_too_large`)"),
        ("429", "Rate limited (`rate_limited`); see `Retry-After`"),
        ("500", "Internal error (`internal`)"),
        ("503", "A dependency is unreachable (`unavailable`)"),
    ];
    if authed {
        statuses
            .push(("401", "Missing or invalid credentials (`unauthorized`, `invalid_token`, `invalid_api_key`, …)"));
        statuses.push(("403", "The credential lacks a scope (`missing_scope`, …)"));
    }
    if has_id {
        statuses.push(("404", "No such resource in the caller's organisation (`not_found`)"));
    }
    for (status, description) in statuses {
        operation.responses.responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::T(
                Response::builder()
                    .description(description)
                    .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                    .build(),
            )
        });
    }
}
