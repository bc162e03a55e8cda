//! The hosted API's routes as typed methods on [`Client`], speaking `kiln-api`'s types: limits,
//! prices and quotes, credits and the ledger, and jobs (submit, read, list, cancel, output
//! links) and batches. Uploads and downloads live in their own modules; a job's live events in
//! `events`.

use kiln_api::batches::{Batch, CreateBatch};
use kiln_api::credits::{Balances, LedgerPage, LedgerQuery, QuoteRequest};
use kiln_api::jobs::{CreateJob, Job, JobList, OutputLink};
use kiln_api::limits::Limits;
use kiln_api::prices::{PriceTable, Quote};
use reqwest::Method;
use serde::Serialize;
use url::Url;
use uuid::Uuid;

use crate::client::Client;
use crate::error::CloudError;

impl Client {
    /// `GET /v1/limits`: what the service accepts (files, sizes, photos, retention).
    pub async fn limits(&self) -> Result<Limits, CloudError> {
        self.get("/v1/limits").await
    }

    /// `GET /v1/prices`: the published price table (no credential needed).
    pub async fn prices(&self) -> Result<PriceTable, CloudError> {
        self.get("/v1/prices").await
    }

    /// `POST /v1/quotes`: what a job of these photos, preset and priority costs.
    pub async fn quote(&self, request: &QuoteRequest) -> Result<Quote, CloudError> {
        self.post("/v1/quotes", request).await
    }

    /// `GET /v1/credits`: the organisation's balances.
    pub async fn credits(&self) -> Result<Balances, CloudError> {
        self.get("/v1/credits").await
    }

    /// `GET /v1/credits/ledger`: one page of the organisation's ledger, newest first.
    pub async fn ledger(&self, query: &LedgerQuery) -> Result<LedgerPage, CloudError> {
        let url = with_query(self.url("/v1/credits/ledger")?, query)?;
        self.call_url(Method::GET, url, None).await
    }

    /// `POST /v1/jobs`: submits a job for a complete upload (402 `insufficient_credits` when the
    /// quote is more than the available balance).
    pub async fn create_job(&self, job: &CreateJob) -> Result<Job, CloudError> {
        self.post("/v1/jobs", job).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: Uuid) -> Result<Job, CloudError> {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// `GET /v1/jobs`: one page of the organisation's jobs, newest first; `after` is the previous
    /// page's `next`.
    pub async fn jobs(&self, limit: Option<u32>, after: Option<Uuid>) -> Result<JobList, CloudError> {
        #[derive(Serialize)]
        struct Page {
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            after: Option<Uuid>,
        }
        let url = with_query(self.url("/v1/jobs")?, &Page { limit, after })?;
        self.call_url(Method::GET, url, None).await
    }

    /// `POST /v1/jobs/{id}/cancel`: a queued job ends at once, a running one at its worker's
    /// next heartbeat (`cancel_requested` until then); 409 `job_final` once it has ended.
    pub async fn cancel_job(&self, id: Uuid) -> Result<Job, CloudError> {
        let url = self.url(&format!("/v1/jobs/{id}/cancel"))?;
        self.call_url(Method::POST, url, None).await
    }

    /// `POST /v1/batches`: one job per item, all in one transaction (an item refused refuses the
    /// batch, with the item named; 402 `insufficient_credits` when the balance does not cover
    /// every item's quote).
    pub async fn create_batch(&self, batch: &CreateBatch) -> Result<Batch, CloudError> {
        self.post("/v1/batches", batch).await
    }

    /// `GET /v1/batches/{id}`: the batch's state, counts by job state and each item's job.
    pub async fn batch(&self, id: Uuid) -> Result<Batch, CloudError> {
        self.get(&format!("/v1/batches/{id}")).await
    }

    /// `GET /v1/jobs/{job}/outputs/{file}`: a freshly signed storage URL for one output (the
    /// server's 303 is read, not followed); 410 `outputs_expired` after the retention.
    pub async fn output_link(&self, job: Uuid, file: &str) -> Result<OutputLink, CloudError> {
        let mut url = self.url(&format!("/v1/jobs/{job}/outputs/"))?;
        url.path_segments_mut()
            .map_err(|()| CloudError::Protocol("the server URL cannot take a path".into()))?
            .pop_if_empty()
            .push(file);
        self.call_url(Method::GET, url, None).await
    }
}

/// `url` with `query`'s fields (a struct serialising to a flat JSON object; absent fields
/// skipped) as its query string.
fn with_query(mut url: Url, query: &impl Serialize) -> Result<Url, CloudError> {
    let value = serde_json::to_value(query).map_err(|e| CloudError::Protocol(format!("cannot encode a query: {e}")))?;
    let serde_json::Value::Object(fields) = value else {
        return Err(CloudError::Protocol("a query must be an object".into()));
    };
    let mut pairs = url.query_pairs_mut();
    for (name, value) in fields {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::String(text) => {
                pairs.append_pair(&name, &text);
            }
            other => {
                pairs.append_pair(&name, &other.to_string());
            }
        }
    }
    drop(pairs);
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use kiln_api::credits::Reason;

    use super::*;

    #[test]
    fn queries_carry_only_the_fields_given() {
        let base = Url::parse("http://127.0.0.1:1/v1/credits/ledger").unwrap();
        assert_eq!(with_query(base.clone(), &LedgerQuery::default()).unwrap().as_str(), base.as_str());
        let query = LedgerQuery {
            limit: Some(5),
            reason: Some(Reason::Refund),
            since: Some(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()),
            ..LedgerQuery::default()
        };
        let url = with_query(base, &query).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("limit".into(), "5".into()),
                ("reason".into(), "refund".into()),
                ("since".into(), "2026-01-02T03:04:05Z".into())
            ]
        );
    }
}
