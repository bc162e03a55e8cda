//! Batches: many jobs submitted at once (`POST /v1/batches`, a list of items or a CSV manifest,
//! all or nothing) and the one batch object that follows them (`GET /v1/batches/{id}`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::prices::Priority;

/// A batch: `items` or `csv`, not both.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// One job per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<CreateItem>>,
    /// A CSV manifest: a header row naming `upload_id` and any settings columns (`preset`,
    /// `formats`, `max_side`, … as in `kiln.toml`), then one row per job. An empty cell sets
    /// nothing; a list is written `glb;usdz` or quoted `"glb,usdz"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "upload_id,preset,formats\n0191e5d4-…,preview,glb;usdz\n"))]
    pub csv: Option<String>,
    /// Settings for every item, under each item's own (kiln-protocol's SettingsOverrides).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = json!({"preset": "preview"})))]
    pub settings: Value,
    #[serde(default)]
    pub priority: Priority,
}

/// One item of a [`CreateBatch`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateItem {
    /// A complete upload of the organisation's: the item's photos (or one ZIP of them).
    pub upload_id: Uuid,
    /// This item's settings, over the batch's.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object, example = json!({"formats": ["glb"]})))]
    pub settings: Value,
}

/// The batch as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Batch {
    pub id: Uuid,
    /// `running` until every item's job is final, then `completed`.
    #[cfg_attr(feature = "openapi", schema(example = "running"))]
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Items by their job's state.
    pub counts: Counts,
    /// In submission order.
    pub items: Vec<BatchItem>,
}

/// How many items are in each job state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counts {
    pub total: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub canceled: i64,
    pub expired: i64,
}

/// One item and its job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchItem {
    /// The item's place in the batch, from 0.
    pub item: i32,
    pub job_id: Uuid,
    pub upload_id: Uuid,
    /// The job's state.
    #[cfg_attr(feature = "openapi", schema(example = "succeeded"))]
    pub state: String,
    /// The job's error (`{code, message, class}`) when it failed or was stopped.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub error: Option<Value>,
}

impl Counts {
    /// The counts of `items` by their job's state.
    pub fn of(items: &[BatchItem]) -> Counts {
        let mut counts = Counts { total: items.len() as i64, ..Counts::default() };
        for item in items {
            match item.state.as_str() {
                "queued" => counts.queued += 1,
                "running" => counts.running += 1,
                "succeeded" => counts.succeeded += 1,
                "failed" => counts.failed += 1,
                "canceled" => counts.canceled += 1,
                _ => counts.expired += 1,
            }
        }
        counts
    }
}

impl Batch {
    /// Whether every item's job has reached a final state.
    pub fn is_complete(&self) -> bool {
        self.state == "completed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_counted_by_their_job_s_state() {
        let item = |state: &str| BatchItem {
            item: 0,
            job_id: Uuid::nil(),
            upload_id: Uuid::nil(),
            state: state.into(),
            error: None,
        };
        let counts = Counts::of(&[item("queued"), item("succeeded"), item("succeeded"), item("expired")]);
        assert_eq!(counts, Counts { total: 4, queued: 1, succeeded: 2, expired: 1, ..Counts::default() });
    }

    #[test]
    fn a_batch_request_carries_only_what_is_given() {
        let body = CreateBatch {
            items: Some(vec![CreateItem {
                upload_id: Uuid::nil(),
                settings: serde_json::json!({"preset": "preview"}),
            }]),
            ..CreateBatch::default()
        };
        let json = serde_json::to_value(&body).unwrap();
        assert!(json.get("csv").is_none());
        let back: CreateBatch = serde_json::from_value(json).unwrap();
        assert_eq!(back.items.unwrap()[0].settings["preset"], "preview");
        assert!(serde_json::from_value::<CreateBatch>(serde_json::json!({"item": []})).is_err(), "unknown fields");
    }
}
