//! The HTTP routes, one module per resource; each gives an `OpenApiRouter` so the OpenAPI
//! document is generated from the handlers themselves.

pub mod accounts;
pub mod api_keys;
pub mod meta;
