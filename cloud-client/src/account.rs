//! The account's routes as typed methods on [`Client`]: who is calling (`GET /v1/me`), API keys
//! (create, list, revoke), and buying a credit pack through Stripe Checkout.

use kiln_api::accounts::Me;
use kiln_api::credits::{BuyPack, Checkout};
use kiln_api::keys::{ApiKey, CreateKey, CreatedKey, KeyList};
use uuid::Uuid;

use crate::client::Client;
use crate::error::CloudError;

impl Client {
    /// `GET /v1/me`: the user (for a login), the organisation, the role, and the credential's kind.
    pub async fn me(&self) -> Result<Me, CloudError> {
        self.get("/v1/me").await
    }

    /// `POST /v1/api-keys`: a new key, its secret in this answer only (`keys:manage`).
    pub async fn create_key(&self, key: &CreateKey) -> Result<CreatedKey, CloudError> {
        self.post("/v1/api-keys", key).await
    }

    /// `GET /v1/api-keys`: the organisation's keys, newest first, without their secrets.
    pub async fn keys(&self) -> Result<Vec<ApiKey>, CloudError> {
        Ok(self.get::<KeyList>("/v1/api-keys").await?.data)
    }

    /// `DELETE /v1/api-keys/{id}`: the key stops working at once (revoking twice is no error).
    pub async fn revoke_key(&self, id: Uuid) -> Result<ApiKey, CloudError> {
        self.delete(&format!("/v1/api-keys/{id}")).await
    }

    /// `POST /v1/credits/checkout`: a Stripe Checkout Session for the pack `pack` (an id from
    /// `GET /v1/prices`). A person's login only: an API key is refused (403 `user_required`). The
    /// credits arrive when Stripe reports the payment, as a `purchase` in the ledger whose
    /// `stripe_ref` is the session's id.
    pub async fn buy_pack(&self, pack: &str) -> Result<Checkout, CloudError> {
        self.post("/v1/credits/checkout", &BuyPack { pack: pack.to_string() }).await
    }
}
