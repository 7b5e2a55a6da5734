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
    /// Deliveries owed to offline recipients on a target that cannot resume sessions are
    /// unverified: "verify" (default) fails a `loss` rule on them, "unverified_ok" accepts them.
    pub offline_delivery: Option<super::model::OfflineDelivery>,
    /// End the run early when a threshold is clearly broken (as `--abort-on-fail`).
    pub abort_on_fail: Option<bool>,
}

fn default_seed() -> u64 {
    1
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PopulationSection {
    #[schemars(with = "ConsumersSection")]
    pub consumers: Spanned<ConsumersSection>,
    #[schemars(with = "Option<BusinessesSection>")]
    pub businesses: Option<Spanned<BusinessesSection>>,
}

/// Business phone numbers on the business API and the limits they are held to.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BusinessesSection {
    /// How many business numbers (default 1).
    #[schemars(with = "Option<i64>")]
    pub count: Option<Spanned<i64>>,
    /// Throughput tier in messages per second: 20, 80 (default) or 1000.
    #[schemars(with = "Option<f64>")]
    pub throughput: Option<Spanned<f64>>,
    /// Unique business-initiated recipients per 24 hours: 250, 2000, 10000, 100000; 0 = unlimited.
    #[schemars(with = "Option<i64>")]
    pub messaging_limit: Option<Spanned<i64>>,
    /// What "24 hours" lasts in this run (default 24h, or `[load] day` when a day is compressed).
    pub window: Option<Micros>,
    /// Pair rate: one message per this interval to one user (default 6s) …
    pub pair_interval: Option<Micros>,
    /// … with bursts up to this many (default 45).
    #[schemars(with = "Option<i64>")]
    pub pair_burst: Option<Spanned<i64>>,
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
    // direct_chat media, receipts and typing
    /// Shares of message types, e.g. { text = 0.82, image = 0.08, voice = 0.07, video = 0.02, other = 0.01 }.
    #[schemars(with = "Option<BTreeMap<String, f64>>")]
    pub media: Option<Spanned<BTreeMap<String, f64>>>,
    pub image_bytes: Option<SizeDist>,
    pub voice_bytes: Option<SizeDist>,
    pub video_bytes: Option<SizeDist>,
    pub other_bytes: Option<SizeDist>,
    /// Probability a delivered message is read.
    #[schemars(with = "Option<f64>")]
    pub read: Option<Spanned<f64>>,
    pub read_delay: Option<TimeDist>,
    /// Probability a text is preceded by a typing indicator.
    #[schemars(with = "Option<f64>")]
    pub typing: Option<Spanned<f64>>,
    // group_chat mention-all storm
    pub mention_all: Option<MentionAllSection>,
    // presence
    pub session: Option<TimeDist>,
    pub offline: Option<TimeDist>,
    pub heartbeat: Option<Micros>,
    pub updates: Option<bool>,
    // business patterns
    /// business_broadcast: when the campaign starts, from the run's start (before the end of
    /// the stages; `--duration` moves it with them).
    pub start: Option<Micros>,
    #[schemars(with = "Option<i64>")]
    pub recipients: Option<Spanned<i64>>,
    #[schemars(with = "Option<Rate>")]
    pub send_rate: Option<Spanned<Rate>>,
    #[schemars(with = "Option<f64>")]
    pub marketing: Option<Spanned<f64>>,
    pub reply_delay: Option<TimeDist>,
    pub turns: Option<CountDist>,
    pub customer_gap: Option<TimeDist>,
    #[schemars(with = "Option<f64>")]
    pub bot: Option<Spanned<f64>>,
    pub bot_think: Option<TimeDist>,
    pub agent_think: Option<TimeDist>,
    #[schemars(with = "Option<f64>")]
    pub interactive: Option<Spanned<f64>>,
    pub pick_delay: Option<TimeDist>,
    #[schemars(with = "Option<f64>")]
    pub late: Option<Spanned<f64>>,
    /// On 130429: "slow" to the tier (default) or "retry".
    #[schemars(with = "Option<String>")]
    pub on_throttle: Option<Spanned<String>>,
    /// On 131056: "backoff" (retry after 4^x s, default) or "drop".
    #[schemars(with = "Option<String>")]
    pub on_pair_limit: Option<Spanned<String>>,
    pub retry_base: Option<Micros>,
    #[schemars(with = "Option<i64>")]
    pub max_retries: Option<Spanned<i64>>,
    pub timeout: Option<Micros>,
    /// closed_loop: the pause between an answer and the next send (default 0).
    pub think: Option<TimeDist>,
    // reconnect_storm
    /// reconnect_storm: when the connections drop, from the run's start (before the end of
    /// the stages; `--duration` moves it with them).
    #[schemars(with = "Option<Micros>")]
    pub at: Option<Spanned<Micros>>,
    #[schemars(with = "Option<f64>")]
    pub fraction: Option<Spanned<f64>>,
    #[schemars(with = "Option<String>")]
    pub backoff: Option<Spanned<String>>,
    /// How connections are dropped: "cut" (no word, as a failure; default) or "goaway" (the
    /// server asks clients to leave and closes gracefully).
    #[schemars(with = "Option<String>")]
    pub via: Option<Spanned<String>>,
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
        add(self.via.is_some(), "via");
        add(self.base.is_some(), "base");
        add(self.cap.is_some(), "cap");
        add(self.max_attempts.is_some(), "max_attempts");
        add(self.size.is_some(), "size");
        add(self.media.is_some(), "media");
        add(self.image_bytes.is_some(), "image_bytes");
        add(self.voice_bytes.is_some(), "voice_bytes");
        add(self.video_bytes.is_some(), "video_bytes");
        add(self.other_bytes.is_some(), "other_bytes");
        add(self.read.is_some(), "read");
        add(self.read_delay.is_some(), "read_delay");
        add(self.typing.is_some(), "typing");
        add(self.mention_all.is_some(), "mention_all");
        add(self.session.is_some(), "session");
        add(self.offline.is_some(), "offline");
        add(self.heartbeat.is_some(), "heartbeat");
        add(self.updates.is_some(), "updates");
        add(self.start.is_some(), "start");
        add(self.recipients.is_some(), "recipients");
        add(self.send_rate.is_some(), "send_rate");
        add(self.marketing.is_some(), "marketing");
        add(self.reply_delay.is_some(), "reply_delay");
        add(self.turns.is_some(), "turns");
        add(self.customer_gap.is_some(), "customer_gap");
        add(self.bot.is_some(), "bot");
        add(self.bot_think.is_some(), "bot_think");
        add(self.agent_think.is_some(), "agent_think");
        add(self.interactive.is_some(), "interactive");
        add(self.pick_delay.is_some(), "pick_delay");
        add(self.late.is_some(), "late");
        add(self.on_throttle.is_some(), "on_throttle");
        add(self.on_pair_limit.is_some(), "on_pair_limit");
        add(self.retry_base.is_some(), "retry_base");
        add(self.max_retries.is_some(), "max_retries");
        add(self.timeout.is_some(), "timeout");
        add(self.think.is_some(), "think");
        keys
    }
}

/// One message into a very large group, then a share of its members open it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MentionAllSection {
    /// When the message goes out, from the run's start (before the end of the stages).
    pub at: Micros,
    /// Members of the storm group (default: every online user).
    pub members: Option<u32>,
    /// Share of members who open the group and fetch its history (default 0.05).
    pub open: Option<f64>,
    /// How soon they open it (default exponential, mean 20s).
    pub open_delay: Option<TimeDist>,
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
    /// Shares of users by UTC offset in hours, e.g. { "0" = 0.5, "-5" = 0.3, "8" = 0.2 }: the
    /// day's curve is the sum of each zone's local curve (the run starts at 00:00 UTC).
    #[schemars(with = "Option<BTreeMap<String, f64>>")]
    pub timezones: Option<Spanned<BTreeMap<String, f64>>>,
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

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// ws://, wss:// (chatload's protocol, a gateway or XMPP), mqtt://, mqtts://, http://, https://, xmpp://.
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    /// "chatload" (default for ws://), "mqtt", "ws-gateway", "http" or "xmpp" (default for xmpp://).
    #[schemars(with = "Option<String>")]
    pub protocol: Option<Spanned<String>>,
    /// A PEM file of CA certificates to trust besides the public roots.
    pub ca_file: Option<String>,
    /// Environment variables holding credentials.
    pub auth: Option<super::target::AuthSection>,
    pub mqtt: Option<super::target::MqttSection>,
    pub gateway: Option<super::target::GatewaySection>,
    pub http: Option<super::target::HttpSection>,
    pub xmpp: Option<super::target::XmppSection>,
    pub connect_timeout: Option<Micros>,
    /// Local addresses connections come from, one per user in turn: "127.0.0.1-127.0.0.50"
    /// or "10.0.0.5, 10.0.0.6" (each holds about 25,000 connections to one target).
    #[schemars(with = "Option<String>")]
    pub source_addresses: Option<Spanned<String>>,
    /// Embedded server knobs.
    pub delay: Option<Micros>,
    #[schemars(with = "Option<i64>")]
    pub drop_every: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub duplicate_every: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub reorder_every: Option<Spanned<i64>>,
    /// Every n-th send is taken and delivered, but its confirmation is never sent (a server
    /// whose acknowledgements go missing).
    #[schemars(with = "Option<i64>")]
    pub drop_ack_every: Option<Spanned<i64>>,
    /// Every send's confirmation is written this long after the send was taken, e.g. "200ms"
    /// (a slow acknowledgement path).
    pub ack_delay: Option<Micros>,
    /// Added delivery latency drawn per delivery, e.g. { lognormal = { median = "2ms", sigma = 0.5 }, max = "50ms" }.
    pub latency: Option<TimeDist>,
    /// Every n-th delivery freezes its recipient's connection for `stall`.
    #[schemars(with = "Option<i64>")]
    pub stall_every: Option<Spanned<i64>>,
    /// Messages per second the embedded server can take and deliver; past it they queue.
    #[schemars(with = "Option<f64>")]
    pub max_rate: Option<Spanned<f64>>,
    pub stall: Option<Micros>,
    /// Every n-th delivery cuts its recipient's connection (the delivery is resent on resume).
    #[schemars(with = "Option<i64>")]
    pub reset_every: Option<Spanned<i64>>,
    /// Every n-th delivery is held back `hold` before it goes out (a late delivery).
    #[schemars(with = "Option<i64>")]
    pub hold_every: Option<Spanned<i64>>,
    pub hold: Option<Micros>,
    /// false: deliveries for a user who is not connected are discarded, not kept for the
    /// user's next connection (a server that loses offline queues). Default true.
    pub offline_queue: Option<bool>,
    /// Business API faults as probabilities per send: "130429", "131056", "131048", "500",
    /// "timeout" (accepted, response withheld), "131026" and "131049" (failed statuses).
    #[schemars(with = "Option<BTreeMap<String, f64>>")]
    pub errors: Option<Spanned<BTreeMap<String, f64>>>,
    /// Webhooks wait a random time up to this before they are sent (reordering them).
    pub webhook_reorder: Option<Micros>,
}
