//! Offered load, computed without sending anything: what a scenario's model implies per
//! pattern — messages, deliveries after fan-out, receipts, frames, bytes, connections — at
//! the profile's mean and at its peak, optionally scaled to another population size (up to a
//! billion users). Owns the arithmetic of the model; the schedule owns the sampling.

use crate::human::thousands;
use crate::scenario::{PatternKind, Scenario};
use crate::workload::Profile;
use crate::workload::profile::{CONNECT_MARGIN_US, DISCONNECT_MARGIN_US};
use serde::Serialize;
use std::fmt::Write as _;

/// Bytes a frame adds around a body (JSON envelope plus WebSocket header), measured from
/// the codec: a `send` with ids in the millions is about 90 bytes, a `msg` about 120.
const SEND_OVERHEAD: f64 = 90.0;
const MSG_OVERHEAD: f64 = 120.0;
const CONTROL_FRAME: f64 = 80.0;

macro_rules! rates {
    ($($(#[doc = $doc:literal])* $field:ident),* $(,)?) => {
        /// Rates of one pattern (or the total) at one level of the profile.
        #[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
        pub struct Rates {
            $($(#[doc = $doc])* pub $field: f64,)*
        }

        impl Rates {
            fn scaled(&self, f: f64) -> Rates {
                Rates { $($field: self.$field * f,)* }
            }
            fn add(&mut self, o: &Rates) {
                $(self.$field += o.$field;)*
            }
        }
    };
}

rates! {
    /// Conversations started per second (direct chat and support).
    conversations_per_s,
    messages_per_s,
    /// After group fan-out: one per recipient.
    deliveries_per_s,
    /// Delivered receipts back to senders.
    receipts_per_s,
    /// Read receipts (consumers) and `read` statuses (businesses).
    reads_per_s,
    /// Typing indicators and presence updates, as seen by their recipients.
    signals_per_s,
    /// WebSocket frames both ways: send, ack, delivery, delivery ack, receipt, signals.
    frames_per_s,
    /// Business API requests (sends and mark-read).
    api_requests_per_s,
    /// Webhooks the business receives: statuses and inbound messages.
    webhooks_per_s,
    /// Client → server bytes per second.
    bytes_in_per_s,
    /// Server → client bytes per second.
    bytes_out_per_s,
    /// Media uploaded out of band (images, voice, video), bytes per second.
    media_bytes_per_s,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PatternPlan {
    pub name: String,
    pub kind: String,
    /// With every online user connected (the profile at level 1).
    pub at_full: Rates,
    pub mean: Rates,
    pub peak: Rates,
    /// Expected messages over the whole run (edges of online windows included).
    pub expected_messages: f64,
    pub expected_deliveries: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plan {
    pub scenario: String,
    pub users: f64,
    pub online_at_peak: f64,
    pub groups: f64,
    pub duration_s: f64,
    /// Share of the online users connected: time average and maximum of the profile.
    pub mean_level: f64,
    pub peak_level: f64,
    pub patterns: Vec<PatternPlan>,
    pub mean: Rates,
    pub peak: Rates,
    pub connections_peak: f64,
    /// Notes on what the model leaves out.
    pub notes: Vec<String>,
}

/// How a pattern's traffic scales with the connected share of users.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scaling {
    /// Both people must be online: the square of the share.
    Pair,
    /// One person (sender or recipient) must be online.
    Single,
    /// Follows its own timetable (a campaign), not the share or the rate multipliers.
    Fixed,
}

/// Per-pattern rates with every online user connected, for `online` users and `groups` groups.
fn full_rates(s: &Scenario, p: usize, online: f64, groups: f64, churn: f64) -> (Rates, Scaling) {
    let pat = &s.patterns[p];
    let size = pat.size.capped_mean_estimate().unwrap_or(0.0);
    let mean = |d: &crate::scenario::distribution::Distribution, floor: f64| {
        d.capped_mean_estimate().unwrap_or(floor).max(floor)
    };
    match &pat.kind {
        PatternKind::DirectChat {
            conversations,
            messages,
            media,
            read,
            typing,
            ..
        } => {
            let conv = online * conversations.per_second;
            let msgs = conv * mean(messages, 1.0);
            let media_bytes: f64 = media
                .bytes
                .iter()
                .zip(&media.shares[1..])
                .map(|(d, share)| share * mean(d, 0.0))
                .sum();
            let mut r = frames(
                Rates {
                    conversations_per_s: conv,
                    messages_per_s: msgs,
                    deliveries_per_s: msgs,
                    reads_per_s: msgs * read,
                    // Every text after a conversation's first may be announced by typing.
                    signals_per_s: (msgs - conv).max(0.0) * media.shares[0] * typing,
                    media_bytes_per_s: msgs * media_bytes,
                    ..Rates::default()
                },
                size,
            );
            r.frames_per_s += 2.0 * r.reads_per_s;
            (r, Scaling::Pair)
        }
        PatternKind::GroupChat { rate, .. } => {
            let members = s
                .consumers
                .group_size
                .capped_mean_estimate()
                .unwrap_or(2.0)
                .max(2.0)
                .min(online.max(2.0));
            let msgs = groups * rate.per_second;
            (
                frames(
                    Rates {
                        messages_per_s: msgs,
                        deliveries_per_s: msgs * (members - 1.0),
                        ..Rates::default()
                    },
                    size,
                ),
                Scaling::Single,
            )
        }
        PatternKind::Presence {
            session,
            offline,
            heartbeat,
            updates,
        } => {
            // Each session is one connect and one disconnect, each announced to the contacts
            // who are online then.
            let cycle_s = (mean(session, 1.0) + mean(offline, 1.0)) / 1e6;
            let changes = online * 2.0 / cycle_s;
            let contacts = mean(&s.consumers.contacts, 0.0);
            let announced = if *updates { changes } else { 0.0 };
            let heartbeats = online * churn / heartbeat.as_secs_f64().max(1e-3);
            let r = Rates {
                signals_per_s: announced * contacts * churn,
                frames_per_s: announced * (1.0 + contacts * churn) + 2.0 * heartbeats,
                bytes_in_per_s: announced * (CONTROL_FRAME + contacts * 8.0)
                    + heartbeats * CONTROL_FRAME,
                bytes_out_per_s: (announced * contacts * churn + heartbeats) * CONTROL_FRAME,
                ..Rates::default()
            };
            (r, Scaling::Single)
        }
        PatternKind::BusinessBroadcast {
            send_rate,
            reaction,
            ..
        } => (
            business_rates(*send_rate, reaction.read, reaction.reply, size),
            Scaling::Fixed,
        ),
        PatternKind::SupportConversation {
            conversations,
            turns,
            bot,
            ..
        } => {
            let conv = online * conversations.per_second;
            let replies = conv * mean(turns, 1.0);
            let mut r = business_rates(replies, 0.0, 0.0, size);
            // Customers' messages arrive as inbound webhooks; agents mark read.
            r.conversations_per_s = conv;
            r.messages_per_s += replies;
            r.deliveries_per_s += replies;
            r.webhooks_per_s += replies;
            r.api_requests_per_s += replies * (1.0 - bot);
            r.signals_per_s += replies * (1.0 - bot);
            r.frames_per_s += 2.0 * replies;
            (r, Scaling::Single)
        }
        PatternKind::OtpBurst { rate, .. } => {
            (business_rates(*rate, 0.0, 0.0, size), Scaling::Single)
        }
        PatternKind::ReconnectStorm { .. } => (Rates::default(), Scaling::Single),
        // The target's answers set a closed loop's rate: nothing to plan ahead.
        PatternKind::ClosedLoop { .. } => (Rates::default(), Scaling::Single),
    }
}

/// Business sends at `sends` per second: each is a request, a delivery to a consumer, and
/// `sent` + `delivered` (+ `read`) statuses; replies come back as inbound webhooks.
fn business_rates(sends: f64, read: f64, reply: f64, body: f64) -> Rates {
    Rates {
        messages_per_s: sends,
        deliveries_per_s: sends,
        reads_per_s: sends * read,
        api_requests_per_s: sends,
        webhooks_per_s: sends * (2.0 + read + reply),
        // Delivery + ack + read on the consumer's WebSocket; replies are a send + ack.
        frames_per_s: sends * (2.0 + read + 2.0 * reply),
        bytes_in_per_s: sends * (CONTROL_FRAME * (1.0 + read) + reply * SEND_OVERHEAD),
        bytes_out_per_s: sends * (MSG_OVERHEAD + body),
        ..Rates::default()
    }
}

fn frames(mut r: Rates, body: f64) -> Rates {
    r.receipts_per_s = r.deliveries_per_s;
    // send + ack per message; delivery + delivery ack + receipt per recipient; signals.
    r.frames_per_s = 2.0 * r.messages_per_s + 3.0 * r.deliveries_per_s + 2.0 * r.signals_per_s;
    r.bytes_in_per_s =
        r.messages_per_s * (SEND_OVERHEAD + body) + r.deliveries_per_s * CONTROL_FRAME;
    r.bytes_out_per_s = r.messages_per_s * CONTROL_FRAME
        + r.deliveries_per_s * (MSG_OVERHEAD + body + CONTROL_FRAME);
    r
}

/// The share of online users eligible for traffic at `t` (online through the margins).
fn eligible_level(profile: &Profile, t: u64) -> f64 {
    let a = profile.level(t.saturating_sub(CONNECT_MARGIN_US));
    let b = profile.level(t);
    let c = profile.level(t + DISCONNECT_MARGIN_US);
    a.min(b).min(c)
}

/// The offered load of `s`, scaled to `users` people when given.
pub fn plan(s: &Scenario, users: Option<f64>) -> Plan {
    let scale = users.map_or(1.0, |n| n / s.consumers.users as f64);
    let users = s.consumers.users as f64 * scale;
    let online = s.consumers.online_users as f64 * scale;
    let groups = s.consumers.groups as f64 * scale;
    let profile = Profile::for_scenario(s, s.consumers.online_users);
    let end = profile.end().0;
    let steps = 2_000u64;
    let dt = end as f64 / steps as f64;
    let at = |i: u64| (i as f64 * dt + dt / 2.0) as u64;
    let levels: Vec<f64> = (0..steps).map(|i| profile.level(at(i))).collect();
    let multipliers: Vec<f64> = (0..steps).map(|i| profile.multiplier(at(i))).collect();
    let mean_level = levels.iter().sum::<f64>() / steps as f64;
    let peak_level = levels.iter().cloned().fold(0.0, f64::max);
    let eligible: Vec<f64> = (0..steps)
        .map(|i| eligible_level(&profile, at(i)))
        .collect();
    let duration_s = end as f64 / 1e6;

    let (churn_share, churn_eligible) = churn_shares(&profile, s.consumers.online_users, end);

    let mut patterns = Vec::new();
    let (mut mean, mut peak) = (Rates::default(), Rates::default());
    for (i, p) in s.patterns.iter().enumerate() {
        let kind = p.kind.kind_name();
        let (full, scaling) = full_rates(s, i, online, groups, churn_share);
        // Direct chat needs both people eligible; a group message needs its sender. Rates
        // scale with the stages' multipliers and the diurnal curve at each moment.
        let (exponent, shaped) = match scaling {
            Scaling::Pair => (2.0, true),
            Scaling::Single => (1.0, !matches!(p.kind, PatternKind::Presence { .. })),
            Scaling::Fixed => (0.0, false),
        };
        let churned = |x: f64| x * churn_eligible.powf(exponent);
        let load = |l: &[f64]| -> Vec<f64> {
            l.iter()
                .zip(&multipliers)
                .map(|(l, m)| l.powf(exponent) * if shaped { *m } else { 1.0 })
                .collect()
        };
        let at_level = load(&levels);
        let mut mean_f = at_level.iter().sum::<f64>() / steps as f64;
        let mut peak_f = at_level.iter().cloned().fold(0.0, f64::max);
        let mut eligible_f = churned(load(&eligible).iter().sum::<f64>() / steps as f64);
        let (mut extra_messages, mut extra_deliveries) = (0.0, 0.0);
        match &p.kind {
            PatternKind::BusinessBroadcast {
                start,
                recipients,
                send_rate,
                ..
            } => {
                // A campaign: `recipients` sends at `send_rate` from `start`, cut at the end.
                let window_s = (end.saturating_sub(start.0)) as f64 / 1e6;
                let sent = (*recipients as f64).min((window_s * send_rate).ceil().max(0.0));
                let active_s = sent / send_rate.max(1e-9);
                mean_f = active_s / duration_s.max(1e-9);
                peak_f = if sent > 0.0 { 1.0 } else { 0.0 };
                eligible_f = mean_f;
            }
            PatternKind::GroupChat {
                mention_all: Some(m),
                ..
            } if m.at.0 < end => {
                extra_messages = 1.0;
                extra_deliveries = (m.members as f64 * scale - 1.0).max(0.0);
            }
            PatternKind::Presence { .. } => {
                mean_f *= churn_share;
                peak_f *= churn_share;
            }
            _ => {}
        }
        let pp = PatternPlan {
            name: p.name.clone(),
            kind: kind.to_string(),
            at_full: full,
            mean: full.scaled(mean_f),
            peak: full.scaled(peak_f),
            expected_messages: full.messages_per_s * eligible_f * duration_s + extra_messages,
            expected_deliveries: full.deliveries_per_s * eligible_f * duration_s + extra_deliveries,
        };
        mean.add(&pp.mean);
        peak.add(&pp.peak);
        patterns.push(pp);
    }
    let mut notes = vec![
        "Rates are steady-state: conversations started near the end of the run are cut short, so a short run sends somewhat less.".to_string(),
        "Direct chat needs both people online, so it scales with the square of the connected share; group chat scales with it.".to_string(),
    ];
    if churn_share < 1.0 {
        notes.push(format!(
            "Presence churn keeps {:.0}% of the online users connected at a time; conversations are cut short when a participant leaves mid-conversation, which the plan does not subtract (it overstates conversational patterns by about the mean conversation length over the mean session).",
            churn_share * 100.0
        ));
    }
    let business_peak: f64 = patterns
        .iter()
        .zip(&s.patterns)
        .filter(|(_, p)| p.kind.is_business())
        .map(|(pp, _)| pp.peak.messages_per_s)
        .sum();
    let tier = s.businesses.throughput_mps * s.businesses.count as f64;
    if business_peak > tier {
        notes.push(format!(
            "Business sends and inbound messages peak at {business_peak:.0}/s, above the tier of {tier:.0}/s ({} × {:.0} msg/s): expect 130429 refusals and sends slowed to the tier.",
            s.businesses.count, s.businesses.throughput_mps
        ));
    }
    if let Some((_, p)) = s.closed_loop() {
        notes.push(format!(
            "Pattern `{}` is a closed loop: each user sends again when the last message is answered, so its rate is set by the target's speed and is not planned here (0 above); run it, or `chatload capacity` to step its users up.",
            p.name
        ));
    }
    if scale != 1.0 {
        notes.push(format!(
            "Scaled from {} users to {}; groups scale with the population.",
            thousands(s.consumers.users),
            thousands(users as u64)
        ));
    }
    Plan {
        scenario: s.name.clone(),
        users,
        online_at_peak: online * peak_level,
        groups,
        duration_s,
        mean_level,
        peak_level,
        patterns,
        mean,
        peak,
        connections_peak: online * peak_level * churn_share,
        notes,
    }
}

/// With presence churn: the share of time a user in its online window is connected, and the
/// share it is connected steadily enough (margins around each change) to take part in traffic.
fn churn_shares(profile: &Profile, users: u32, end: u64) -> (f64, f64) {
    let share = profile.churn_share();
    if share >= 1.0 || users == 0 || end == 0 {
        return (1.0, 1.0);
    }
    let sample_users = users.min(2_000);
    let (mut online, mut eligible, mut n) = (0u64, 0u64, 0u64);
    for k in 0..sample_users {
        let user = (k as u64 * users as u64 / sample_users as u64) as u32;
        for step in 0..200u64 {
            let t = end * (2 * step + 1) / 400;
            if !profile.level_online_at(user, t) {
                continue;
            }
            n += 1;
            online += profile.online(user, t) as u64;
            eligible += profile.eligible(user, t) as u64;
        }
    }
    if n == 0 {
        return (share, share);
    }
    (online as f64 / n as f64, eligible as f64 / n as f64)
}

fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn bytes(x: f64) -> String {
    let bits = x * 8.0;
    if bits >= 1e12 {
        format!("{:.2} Tbit/s", bits / 1e12)
    } else if bits >= 1e9 {
        format!("{:.2} Gbit/s", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.2} Mbit/s", bits / 1e6)
    } else {
        format!("{:.1} kbit/s", bits / 1e3)
    }
}

pub fn render(p: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "chatload plan · {} · {} users, {} online at the peak, {} groups · {:.0}s (mean level {:.0}%, peak {:.0}%)",
        p.scenario,
        human(p.users),
        human(p.online_at_peak),
        human(p.groups),
        p.duration_s,
        p.mean_level * 100.0,
        p.peak_level * 100.0
    );
    let row = |o: &mut String, label: &str, m: f64, k: f64| {
        let _ = writeln!(o, "    {label:<22}{:>15}{:>15}", human(m), human(k));
    };
    let block = |o: &mut String, title: &str, mean: &Rates, peak: &Rates| {
        let _ = writeln!(o, "\n  {title:<24}{:>15}{:>15}", "mean", "peak");
        if mean.conversations_per_s > 0.0 {
            row(
                o,
                "conversations/s",
                mean.conversations_per_s,
                peak.conversations_per_s,
            );
        }
        row(o, "messages/s", mean.messages_per_s, peak.messages_per_s);
        row(
            o,
            "deliveries/s",
            mean.deliveries_per_s,
            peak.deliveries_per_s,
        );
        row(o, "receipts/s", mean.receipts_per_s, peak.receipts_per_s);
        let optional = [
            ("reads/s", mean.reads_per_s, peak.reads_per_s),
            ("typing+presence/s", mean.signals_per_s, peak.signals_per_s),
            (
                "API requests/s",
                mean.api_requests_per_s,
                peak.api_requests_per_s,
            ),
            ("webhooks/s", mean.webhooks_per_s, peak.webhooks_per_s),
        ];
        for (label, m, k) in optional {
            if k > 0.0 {
                row(o, label, m, k);
            }
        }
        row(o, "frames/s", mean.frames_per_s, peak.frames_per_s);
        let _ = writeln!(
            o,
            "    {:<22}{:>15}{:>15}",
            "in (client → server)",
            bytes(mean.bytes_in_per_s),
            bytes(peak.bytes_in_per_s)
        );
        let _ = writeln!(
            o,
            "    {:<22}{:>15}{:>15}",
            "out (server → client)",
            bytes(mean.bytes_out_per_s),
            bytes(peak.bytes_out_per_s)
        );
        if peak.media_bytes_per_s > 0.0 {
            let _ = writeln!(
                o,
                "    {:<22}{:>15}{:>15}",
                "media (out of band)",
                bytes(mean.media_bytes_per_s),
                bytes(peak.media_bytes_per_s)
            );
        }
    };
    for pp in &p.patterns {
        block(
            &mut o,
            &format!("{} ({})", pp.name, pp.kind),
            &pp.mean,
            &pp.peak,
        );
    }
    block(&mut o, "all patterns", &p.mean, &p.peak);
    let _ = writeln!(
        o,
        "\n  connections at the peak: {}",
        human(p.connections_peak)
    );
    for n in &p.notes {
        let _ = writeln!(o, "  note: {n}");
    }
    o
}
