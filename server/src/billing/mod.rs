//! Credits and payments: the price table and quotes, the double-entry ledger every movement of
//! credits goes through, purchases granted from Stripe's events (once each, in any order,
//! refunds included), and Studio's claims (one paid model without an account).
//!
//! A job's credits follow it: quoted and reserved when it is queued (`jobs::create_job`),
//! captured when it succeeds and released for every other ending (`jobs::end_job`), each in the
//! same database transaction as the job's own change. Test-mode jobs are quoted, never charged.

pub mod checkout;
pub mod events;
pub mod ledger;
pub use kiln_api::prices;
pub mod studio;
