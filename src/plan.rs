//! Offered load, computed without sending anything: what a scenario's model implies per
//! pattern — messages, deliveries after fan-out, receipts, frames, bytes, connections — at
//! the profile's mean and at its peak, optionally scaled to another population size (up to a
//! billion users). Owns the arithmetic of the model; the schedule owns the sampling.

use crate::report::console::thousands;
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

/// Rates of one pattern (or the total) at one level of the profile.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Rates {
    /// Conversations started per second (direct chat only).
    pub conversations_per_s: f64,
    pub messages_per_s: f64,
    /// After group fan-out: one per recipient.
    pub deliveries_per_s: f64,
    /// Delivered receipts back to senders.
    pub receipts_per_s: f64,
    /// WebSocket frames both ways: send, ack, delivery, delivery ack, receipt.
    pub frames_per_s: f64,
    /// Client → server bytes per second.
    pub bytes_in_per_s: f64,
    /// Server → client bytes per second.
    pub bytes_out_per_s: f64,
}

impl Rates {
    fn scaled(&self, f: f64) -> Rates {
        Rates {
            conversations_per_s: self.conversations_per_s * f,
            messages_per_s: self.messages_per_s * f,
            deliveries_per_s: self.deliveries_per_s * f,
            receipts_per_s: self.receipts_per_s * f,
            frames_per_s: self.frames_per_s * f,
            bytes_in_per_s: self.bytes_in_per_s * f,
            bytes_out_per_s: self.bytes_out_per_s * f,
        }
    }
    fn add(&mut self, o: &Rates) {
        self.conversations_per_s += o.conversations_per_s;
        self.messages_per_s += o.messages_per_s;
        self.deliveries_per_s += o.deliveries_per_s;
        self.receipts_per_s += o.receipts_per_s;
        self.frames_per_s += o.frames_per_s;
        self.bytes_in_per_s += o.bytes_in_per_s;
        self.bytes_out_per_s += o.bytes_out_per_s;
    }
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

/// Per-pattern rates with every online user connected, for `online` users and `groups` groups.
fn full_rates(s: &Scenario, p: usize, online: f64, groups: f64) -> (Rates, &'static str) {
    let pat = &s.patterns[p];
    let size = pat.size.capped_mean_estimate().unwrap_or(0.0);
    match &pat.kind {
        PatternKind::DirectChat {
            conversations,
            messages,
            ..
        } => {
            let per_conv = messages.capped_mean_estimate().unwrap_or(1.0).max(1.0);
            let conv = online * conversations.per_second;
            let msgs = conv * per_conv;
            (
                frames(
                    Rates {
                        conversations_per_s: conv,
                        messages_per_s: msgs,
                        deliveries_per_s: msgs,
                        ..Rates::default()
                    },
                    size,
                ),
                "direct_chat",
            )
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
                "group_chat",
            )
        }
        PatternKind::ReconnectStorm { .. } => (Rates::default(), "reconnect_storm"),
    }
}

fn frames(mut r: Rates, body: f64) -> Rates {
    r.receipts_per_s = r.deliveries_per_s;
    // send + ack per message; delivery + delivery ack + receipt per recipient.
    r.frames_per_s = 2.0 * r.messages_per_s + 3.0 * r.deliveries_per_s;
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

    let mut patterns = Vec::new();
    let (mut mean, mut peak) = (Rates::default(), Rates::default());
    for (i, p) in s.patterns.iter().enumerate() {
        let (full, kind) = full_rates(s, i, online, groups);
        // Direct chat needs both people eligible; a group message needs its sender. Rates
        // scale with the stages' multipliers and the diurnal curve at each moment.
        let exponent = if kind == "direct_chat" { 2.0 } else { 1.0 };
        let load = |l: &[f64]| -> Vec<f64> {
            l.iter()
                .zip(&multipliers)
                .map(|(l, m)| l.powf(exponent) * m)
                .collect()
        };
        let at_level = load(&levels);
        let mean_f = at_level.iter().sum::<f64>() / steps as f64;
        let peak_f = at_level.iter().cloned().fold(0.0, f64::max);
        let eligible_f = load(&eligible).iter().sum::<f64>() / steps as f64;
        let pp = PatternPlan {
            name: p.name.clone(),
            kind: kind.to_string(),
            at_full: full,
            mean: full.scaled(mean_f),
            peak: full.scaled(peak_f),
            expected_messages: full.messages_per_s * eligible_f * duration_s,
            expected_deliveries: full.deliveries_per_s * eligible_f * duration_s,
        };
        mean.add(&pp.mean);
        peak.add(&pp.peak);
        patterns.push(pp);
    }
    let mut notes = vec![
        "Rates are steady-state: conversations started near the end of the run are cut short, so a short run sends somewhat less.".to_string(),
        "Direct chat needs both people online, so it scales with the square of the connected share; group chat scales with it.".to_string(),
    ];
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
        connections_peak: online * peak_level,
        notes,
    }
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
    if bits >= 1e9 {
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
        let _ = writeln!(o, "    {label:<22}{:>14}{:>14}", human(m), human(k));
    };
    let block = |o: &mut String, title: &str, mean: &Rates, peak: &Rates| {
        let _ = writeln!(o, "\n  {title:<24}{:>14}{:>14}", "mean", "peak");
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
        row(o, "frames/s", mean.frames_per_s, peak.frames_per_s);
        let _ = writeln!(
            o,
            "    {:<22}{:>14}{:>14}",
            "in (client → server)",
            bytes(mean.bytes_in_per_s),
            bytes(peak.bytes_in_per_s)
        );
        let _ = writeln!(
            o,
            "    {:<22}{:>14}{:>14}",
            "out (server → client)",
            bytes(mean.bytes_out_per_s),
            bytes(peak.bytes_out_per_s)
        );
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
