//! The hosted Kiln API's contract: what its routes take and answer, as serde types. The server
//! (`kiln-server`, with the `openapi` feature deriving its OpenAPI schemas from these) and its
//! clients (`kiln-cloud`) both use them, so a change to the API is a change to one definition.

pub mod accounts;
pub mod batches;
pub mod credits;
pub mod error;
pub mod events;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod prices;
pub mod studio;
pub mod uploads;
