//! The price table: what a job costs in credits (per preset, per photo, rush), the credit packs
//! and monthly plans sold through Stripe Checkout, and Studio's one-model price. It is
//! configuration (`KILN_PRICES`, a JSON file), published as is at `GET /v1/prices`.

use std::collections::BTreeMap;

use kiln_protocol::{PRESETS, Preset};
use serde::{Deserialize, Serialize};

/// Rush jobs are leased before every standard one; within a priority, oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Standard,
    Rush,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Standard => "standard",
            Priority::Rush => "rush",
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        [Priority::Standard, Priority::Rush].into_iter().find(|p| p.as_str() == text)
    }
}

/// One preset's price: `base + ⌈photos × per_100_photos / 100⌉` credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PresetPrice {
    pub base: i64,
    pub per_100_photos: i64,
}

/// Credits sold once (Checkout `mode=payment`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Pack {
    #[cfg_attr(feature = "openapi", schema(example = "pack_100"))]
    pub id: String,
    pub credits: i64,
    /// Minor units of `currency` (cents).
    pub amount: i64,
    #[cfg_attr(feature = "openapi", schema(example = "eur"))]
    pub currency: String,
}

/// Credits granted on every paid monthly invoice (Checkout `mode=subscription`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[cfg_attr(feature = "openapi", schema(example = "monthly_500"))]
    pub id: String,
    pub credits_per_month: i64,
    /// Minor units of `currency` a month.
    pub amount: i64,
    pub currency: String,
}

/// One model without an account: its price in money, and the job it buys (the credits granted
/// are that job's quote at standard priority).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StudioPrice {
    pub amount: i64,
    pub currency: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "medium"))]
    pub preset: Preset,
    pub max_photos: u32,
}

/// The whole table, as `GET /v1/prices` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// By preset name; every preset has a price.
    pub presets: BTreeMap<String, PresetPrice>,
    /// A rush job costs this percentage of the standard price (rounded up), and goes first.
    pub rush_percent: i64,
    pub packs: Vec<Pack>,
    pub plans: Vec<Plan>,
    pub studio: StudioPrice,
}

/// A job's price before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    pub credits: i64,
    pub photos: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "medium"))]
    pub preset: Preset,
    pub priority: Priority,
    /// The preset's price for these photos, before the rush surcharge.
    pub standard_credits: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Serialize, Deserialize)]
pub enum PriceError {
    #[error("the price table has no price for the preset {0}")]
    MissingPreset(&'static str),
    #[error("the price table's {0} must not be negative, and packs, plans and Studio must cost something")]
    Negative(&'static str),
    #[error("rush_percent must be at least 100 (rush never costs less than standard)")]
    CheapRush,
    #[error("the id {0} is used twice among packs and plans")]
    DuplicateId(String),
    #[error("a price's currency must be three lower-case letters (ISO 4217), not {0:?}")]
    Currency(String),
}

impl PriceTable {
    /// Refuses a table a job could not be priced with, or that sells something for nothing.
    pub fn validate(&self) -> Result<(), PriceError> {
        for preset in PRESETS {
            let price = self.presets.get(preset.name()).ok_or(PriceError::MissingPreset(preset.name()))?;
            if price.base < 0 || price.per_100_photos < 0 {
                return Err(PriceError::Negative("preset prices"));
            }
        }
        if self.rush_percent < 100 {
            return Err(PriceError::CheapRush);
        }
        let mut ids = std::collections::BTreeSet::new();
        let sold = self.packs.iter().map(|p| (&p.id, p.credits, p.amount, &p.currency));
        let plans = self.plans.iter().map(|p| (&p.id, p.credits_per_month, p.amount, &p.currency));
        for (id, credits, amount, currency) in sold.chain(plans) {
            if credits <= 0 || amount <= 0 {
                return Err(PriceError::Negative("packs and plans"));
            }
            check_currency(currency)?;
            if !ids.insert(id.clone()) {
                return Err(PriceError::DuplicateId(id.clone()));
            }
        }
        if self.studio.amount <= 0 || self.studio.max_photos == 0 {
            return Err(PriceError::Negative("studio"));
        }
        check_currency(&self.studio.currency)
    }

    /// The price of a job of `photos` photos at `preset` and `priority`.
    pub fn quote(&self, photos: u32, preset: Preset, priority: Priority) -> Quote {
        let price = self.presets.get(preset.name()).cloned().unwrap_or(PresetPrice { base: 0, per_100_photos: 0 });
        let standard_credits = price.base + ceil_div(i64::from(photos) * price.per_100_photos, 100);
        let credits = match priority {
            Priority::Standard => standard_credits,
            Priority::Rush => ceil_div(standard_credits * self.rush_percent, 100),
        };
        Quote { credits, photos, preset, priority, standard_credits }
    }

    pub fn pack(&self, id: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.id == id)
    }

    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// The credits a Studio purchase grants: its job's quote.
    pub fn studio_credits(&self) -> i64 {
        self.quote(self.studio.max_photos, self.studio.preset, Priority::Standard).credits
    }
}

fn check_currency(currency: &str) -> Result<(), PriceError> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(PriceError::Currency(currency.to_string()))
    }
}

/// `⌈a / b⌉` for `a ≥ 0`, `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

impl Default for PriceTable {
    /// Kiln's launch prices: a credit is about a tenth of a euro. A `medium` job of 60 photos is
    /// 8 credits; a GPU `full` job of 150 photos 30; `preview` costs what a CPU worker spends.
    fn default() -> Self {
        let presets = [("preview", 1, 2), ("reduced", 2, 4), ("medium", 5, 5), ("full", 15, 10), ("raw", 20, 10)]
            .into_iter()
            .map(|(name, base, per_100_photos)| (name.to_string(), PresetPrice { base, per_100_photos }))
            .collect();
        let eur = || "eur".to_string();
        PriceTable {
            presets,
            rush_percent: 200,
            packs: vec![
                Pack { id: "pack_100".into(), credits: 100, amount: 1_000, currency: eur() },
                Pack { id: "pack_500".into(), credits: 500, amount: 4_500, currency: eur() },
                Pack { id: "pack_2000".into(), credits: 2_000, amount: 16_000, currency: eur() },
            ],
            plans: vec![Plan { id: "monthly_500".into(), credits_per_month: 500, amount: 3_900, currency: eur() }],
            studio: StudioPrice { amount: 900, currency: eur(), preset: Preset::Full, max_photos: 300 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_is_valid_and_prices_every_preset() {
        let table = PriceTable::default();
        assert_eq!(table.validate(), Ok(()));
        assert_eq!(table.quote(60, Preset::Medium, Priority::Standard).credits, 8);
        assert_eq!(table.quote(150, Preset::Full, Priority::Standard).credits, 30);
        assert_eq!(table.quote(150, Preset::Full, Priority::Rush).credits, 60);
        assert_eq!(table.studio_credits(), 45);
    }

    #[test]
    fn photos_round_up_and_rush_rounds_up() {
        let mut table = PriceTable::default();
        table.presets.insert("preview".into(), PresetPrice { base: 0, per_100_photos: 3 });
        table.rush_percent = 150;
        assert_eq!(table.quote(1, Preset::Preview, Priority::Standard).credits, 1);
        assert_eq!(table.quote(0, Preset::Preview, Priority::Standard).credits, 0);
        assert_eq!(table.quote(34, Preset::Preview, Priority::Standard).credits, 2);
        assert_eq!(table.quote(34, Preset::Preview, Priority::Rush).credits, 3);
    }

    #[test]
    fn bad_tables_are_refused() {
        let mut missing = PriceTable::default();
        missing.presets.remove("raw");
        assert_eq!(missing.validate(), Err(PriceError::MissingPreset("raw")));
        let cheap_rush = PriceTable { rush_percent: 90, ..PriceTable::default() };
        assert_eq!(cheap_rush.validate(), Err(PriceError::CheapRush));
        let mut twice = PriceTable::default();
        twice.packs[1].id = "pack_100".into();
        assert!(matches!(twice.validate(), Err(PriceError::DuplicateId(_))));
        let mut free = PriceTable::default();
        free.packs[0].amount = 0;
        assert!(matches!(free.validate(), Err(PriceError::Negative(_))));
        let mut currency = PriceTable::default();
        currency.plans[0].currency = "EUR".into();
        assert!(matches!(currency.validate(), Err(PriceError::Currency(_))));
    }
}
