//! The scenario file as written: the TOML shape with serde, unknown keys refused. Owns field
//! names, defaults and per-value checks; cross-field checks and compilation live in
//! `scenario::compile`.

use super::distribution::{CountDist, SizeDist, TimeDist};
use super::units::{Micros, Rate};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    pub scenario: ScenarioSection,
    pub population: PopulationSection,
    #[serde(default, rename = "pattern")]
    #[schemars(with = "Vec<PatternSection>")]
    pub patterns: Vec<Spanned<PatternSection>>,
    pub load: Option<LoadSection>,
    pub target: Option<TargetSection>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub thresholds: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSection {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    pub description: Option<String>,
    #[schemars(with = "Option<Micros>")]
    pub duration: Option<Spanned<Micros>>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// A delivery not seen this long after its intended send time counts as lost.
    #[schemars(with = "Option<Micros>")]
    pub loss_deadline: Option<Spanned<Micros>>,
    /// The longest wait at the end for deliveries still in flight.
    pub drain: Option<Micros>,
}

fn default_seed() -> u64 {
    1
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PopulationSection {
    #[schemars(with = "ConsumersSection")]
    pub consumers: Spanned<ConsumersSection>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumersSection {
    #[schemars(with = "i64")]
    pub users: Spanned<i64>,
    #[schemars(with = "Option<f64>")]
    pub online: Option<Spanned<f64>>,
    pub contacts: Option<CountDist>,
    #[schemars(with = "Option<i64>")]
    pub groups: Option<Spanned<i64>>,
    pub group_size: Option<CountDist>,
}

/// One `[[pattern]]` table. Fields that do not apply to its `kind` are refused by the compiler.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatternSection {
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    // direct_chat
    #[schemars(with = "Option<Rate>")]
    pub conversations: Option<Spanned<Rate>>,
    pub messages: Option<CountDist>,
    pub gap: Option<TimeDist>,
    #[schemars(with = "Option<f64>")]
    pub reply: Option<Spanned<f64>>,
    #[schemars(with = "Option<f64>")]
    pub partner_skew: Option<Spanned<f64>>,
    // group_chat
    #[schemars(with = "Option<Rate>")]
    pub rate: Option<Spanned<Rate>>,
    #[schemars(with = "Option<f64>")]
    pub sender_skew: Option<Spanned<f64>>,
    // reconnect_storm
    #[schemars(with = "Option<Micros>")]
    pub at: Option<Spanned<Micros>>,
    #[schemars(with = "Option<f64>")]
    pub fraction: Option<Spanned<f64>>,
    #[schemars(with = "Option<String>")]
    pub backoff: Option<Spanned<String>>,
    pub base: Option<Micros>,
    pub cap: Option<Micros>,
    #[schemars(with = "Option<i64>")]
    pub max_attempts: Option<Spanned<i64>>,
    // messaging patterns
    pub size: Option<SizeDist>,
}

impl PatternSection {
    /// The keys that are set, by name, so the compiler can refuse the ones a kind does not take.
    pub fn present_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut add = |present: bool, key| {
            if present {
                keys.push(key)
            }
        };
        add(self.conversations.is_some(), "conversations");
        add(self.messages.is_some(), "messages");
        add(self.gap.is_some(), "gap");
        add(self.reply.is_some(), "reply");
        add(self.partner_skew.is_some(), "partner_skew");
        add(self.rate.is_some(), "rate");
        add(self.sender_skew.is_some(), "sender_skew");
        add(self.at.is_some(), "at");
        add(self.fraction.is_some(), "fraction");
        add(self.backoff.is_some(), "backoff");
        add(self.base.is_some(), "base");
        add(self.cap.is_some(), "cap");
        add(self.max_attempts.is_some(), "max_attempts");
        add(self.size.is_some(), "size");
        keys
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    #[schemars(with = "Vec<StageSection>")]
    pub stages: Spanned<Vec<Spanned<StageSection>>>,
    /// A day's traffic curve compressed into `day`: "consumer_evening", "workday" or "flat".
    #[schemars(with = "Option<String>")]
    pub diurnal: Option<Spanned<String>>,
    /// How long one compressed day lasts (default: the whole run).
    pub day: Option<Micros>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    pub ramp: Option<Micros>,
    pub hold: Option<Micros>,
    pub ramp_down: Option<Micros>,
    /// A burst: message rates rise to `rate` times and fall back within the stage.
    pub spike: Option<Micros>,
    /// Fraction of the online users connected at the end of a ramp (default 1.0; 0 for ramp_down).
    pub to: Option<f64>,
    /// Multiplier of every pattern's rate at the end of the stage (the peak of a spike); default: as before.
    pub rate: Option<f64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    pub connect_timeout: Option<Micros>,
    /// Embedded server knobs.
    pub delay: Option<Micros>,
    #[schemars(with = "Option<i64>")]
    pub drop_every: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub duplicate_every: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub reorder_every: Option<Spanned<i64>>,
}
