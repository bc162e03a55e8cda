//! What a credential may do. API keys carry the scopes they were created with; access tokens
//! carry their user's role's scopes (or fewer, for OAuth clients that asked for fewer). Both
//! types are the API's own (`kiln-api`), shared with its clients.

pub use kiln_api::accounts::Role;
pub use kiln_api::keys::Scope;
