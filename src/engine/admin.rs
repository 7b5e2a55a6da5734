//! The reference server's admin API as a run uses it: the business limits, where to post each
//! business number's webhooks, and graceful reconnect storms (`goaway`). Owns the requests and
//! what a refusal says; when to make them is the run's.

use crate::workload::Segment;
use std::time::Duration;

pub struct AdminClient {
    http: reqwest::Client,
    /// `http://host:port` of the target (from its WebSocket URL).
    base: String,
}

/// The business API's limits, as the run asks the target to enforce them.
pub struct BusinessLimits {
    pub throughput_mps: f64,
    pub messaging_limit: u64,
    pub window_ms: u64,
    pub pair_interval_ms: u64,
    pub pair_burst: u32,
}

impl AdminClient {
    /// A client for the target at `ws_url`; requests time out after 5 s.
    pub fn new(ws_url: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(AdminClient {
            http,
            base: super::business::http_base(ws_url),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /admin/config`: the limits the business API holds senders to.
    pub async fn configure(&self, l: &BusinessLimits) -> Result<(), String> {
        let body = serde_json::json!({
            "throughput_mps": l.throughput_mps,
            "messaging_limit": l.messaging_limit,
            "window_ms": l.window_ms,
            "pair_interval_ms": l.pair_interval_ms,
            "pair_burst": l.pair_burst,
        });
        answered(
            self.http
                .post(format!("{}/admin/config", self.base))
                .json(&body)
                .send()
                .await,
        )
    }

    /// `PUT /v1/{number}/webhook`: where business number `number`'s webhooks go. A split
    /// run's segments each register their own receiver with their place, so the target posts
    /// each consumer's statuses and messages to the segment that owns that consumer.
    pub async fn register_webhook(
        &self,
        number: u32,
        url: &str,
        segment: Segment,
    ) -> Result<(), String> {
        answered(
            self.http
                .put(format!("{}/v1/{number}/webhook", self.base))
                .json(&webhook_registration(url, segment))
                .send()
                .await,
        )
    }

    /// `POST /admin/goaway`: the target sends `goaway` to the storm's users.
    pub async fn goaway(&self, pattern: u16, fraction: f64, seed: u64) -> Result<(), String> {
        let body = serde_json::json!({
            "pattern": pattern,
            "fraction": fraction,
            "seed": seed,
            "after_ms": 0,
        });
        answered(
            self.http
                .post(format!("{}/admin/goaway", self.base))
                .json(&body)
                .send()
                .await,
        )
    }
}

fn answered(r: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    match r {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

fn webhook_registration(url: &str, segment: Segment) -> serde_json::Value {
    let mut body = serde_json::json!({"url": url, "fields": ["messages"]});
    if !segment.is_whole() {
        body["segment"] = serde_json::json!({"index": segment.index, "count": segment.count});
    }
    body
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_segment_registers_its_place() {
        let whole = super::webhook_registration("http://a/w", crate::workload::Segment::WHOLE);
        assert!(whole.get("segment").is_none());
        let seg = crate::workload::Segment::parse("2/8").unwrap();
        let part = super::webhook_registration("http://a/w", seg);
        assert_eq!(part["segment"]["index"], 2);
        assert_eq!(part["segment"]["count"], 8);
    }
}
