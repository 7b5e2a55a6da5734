//! How many threads a run gets when `--threads` does not say (one while the scenario's
//! planned peak traffic is light enough for one, else one per core), and how they are laid
//! out: an open-model run puts its users on that many shards (`engine::shards`) around a
//! runtime of one worker; a closed loop gets a runtime of that many workers. Owns that choice
//! and its threshold; building the runtime is the binary's.
//!
//! Why one thread while it is enough: a thread that carries every user sleeps and wakes once
//! for several frames; with the users on two shards each thread wakes for its own half, and
//! with one runtime of two workers (before shards) a frame that woke one worker often woke the
//! other. Measured on 4 December 2026 (twelfth session, `perf stat`, the one-to-one chat of
//! `benches/ws-vs-k6.sh` against `chatload serve` on this 2-core machine): one thread spent
//! 38–41 µs per message at 10,000 msg/s against 44–46 on two shards, and at every rate up to
//! 30,000 msg/s (150,000 frames/s) it sent nothing late and had a delivery p99 no worse than
//! two shards' (0.57 against 1.03 ms at 30,000); its first late sends came at 40,000 msg/s
//! (31 of 584,547). The threshold sits at half of that; with the embedded server in the
//! process (counted twice) one thread carried 15,000 msg/s with p99 0.30 ms and less CPU
//! than two (41 against 68 µs per message, server included).

use crate::plan::plan;
use crate::scenario::Scenario;

/// Planned frames (and API requests and webhooks) per second at the profile's peak that one
/// worker is given; an embedded server counts each twice, TLS three times.
pub const ONE_WORKER_MAX_FRAMES_PER_S: f64 = 100_000.0;

/// Connections at the peak past which every core helps with the connecting (handshakes).
pub const ONE_WORKER_MAX_CONNECTIONS: f64 = 10_000.0;

/// `Some(1)` for a scenario one thread carries, `None` (one per core)
/// otherwise. `target` is the URL the run will use; `None` runs the embedded server in this
/// process, on the same workers.
pub fn default_workers(scenario: &Scenario, target: Option<&str>) -> Option<usize> {
    if scenario.closed_loop().is_some() {
        // A closed loop sends as fast as answers come: it uses every core it has.
        return None;
    }
    let p = plan(scenario, None);
    let mut load = p.peak.frames_per_s + p.peak.api_requests_per_s + p.peak.webhooks_per_s;
    match target {
        None => load *= 2.0,
        Some(url)
            if ["wss://", "mqtts://", "https://"]
                .iter()
                .any(|s| url.starts_with(s)) =>
        {
            load *= 3.0
        }
        Some(_) => {}
    }
    let light = load.is_finite()
        && load <= ONE_WORKER_MAX_FRAMES_PER_S
        && p.connections_peak <= ONE_WORKER_MAX_CONNECTIONS;
    light.then_some(1)
}

/// A run's threads: the async runtime's workers and the shards its users run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Worker threads of the process's runtime; `None`: one per core.
    pub runtime_workers: Option<usize>,
    /// Shards the users run on (1: all on the runtime).
    pub shards: usize,
}

/// The layout for `threads` threads (`--threads`), or the scenario's default.
pub fn layout(scenario: &Scenario, target: Option<&str>, threads: Option<usize>) -> Layout {
    let threads = threads.or_else(|| default_workers(scenario, target));
    if scenario.closed_loop().is_some() {
        // A closed loop's requests share one HTTP client and its connection pool, which is
        // at home on one runtime; it stays one runtime of every worker (issue 15's design).
        return Layout {
            runtime_workers: threads,
            shards: 1,
        };
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Layout {
        runtime_workers: Some(1),
        shards: threads.unwrap_or(cores).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(users: u32, per_min: f64) -> Scenario {
        let text = format!(
            r#"
[scenario]
name = "w"
seed = 1
[population.consumers]
users = {users}
contacts = {{ uniform = {{ min = 5, max = 30 }} }}
[[pattern]]
kind = "direct_chat"
conversations = "{per_min}/min per user"
messages = 1
size = 64
typing = 0
read = 0
media = {{ text = 1 }}
[load]
stages = [{{ ramp = "1s" }}, {{ hold = "20s" }}]
"#
        );
        crate::scenario::parse(std::path::Path::new("w.toml"), &text).unwrap()
    }

    #[test]
    fn light_traffic_gets_one_worker_and_heavy_traffic_every_core() {
        // 10,000 msg/s: 5 frames each = 50,000 frames/s.
        let light = chat(1_000, 600.0);
        assert_eq!(
            default_workers(&light, Some("ws://127.0.0.1:7070/v1/ws")),
            Some(1)
        );
        // The same run against the embedded server counts 100,000: still one.
        assert_eq!(default_workers(&light, None), Some(1));
        // Over TLS, 150,000: every core.
        assert_eq!(
            default_workers(&light, Some("wss://chat.example/v1/ws")),
            None
        );
        // 25,000 msg/s: 125,000 frames/s.
        let heavy = chat(1_000, 1_500.0);
        assert_eq!(
            default_workers(&heavy, Some("ws://127.0.0.1:7070/v1/ws")),
            None
        );
        // 20,000 people idle-ish: their connecting wants every core.
        let crowd = chat(20_000, 1.0);
        assert_eq!(
            default_workers(&crowd, Some("ws://127.0.0.1:7070/v1/ws")),
            None
        );
        // Ten users in a closed loop send as fast as they are answered.
        let closed = crate::scenario::parse(
            std::path::Path::new("c.toml"),
            "[scenario]\nname = \"c\"\n[population.consumers]\nusers = 10\ncontacts = 1\n[[pattern]]\nkind = \"closed_loop\"\n[load]\nstages = [{ ramp = \"1s\" }, { hold = \"1s\" }]\n",
        )
        .unwrap();
        assert_eq!(
            default_workers(&closed, Some("ws://127.0.0.1:7070/v1/ws")),
            None
        );
    }

    #[test]
    fn open_model_runs_put_their_threads_into_shards_and_closed_loops_into_workers() {
        let ws = Some("ws://127.0.0.1:7070/v1/ws");
        let light = chat(1_000, 180.0);
        let one = Layout {
            runtime_workers: Some(1),
            shards: 1,
        };
        assert_eq!(layout(&light, ws, None), one);
        assert_eq!(
            layout(&light, ws, Some(3)),
            Layout {
                runtime_workers: Some(1),
                shards: 3
            }
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            layout(&chat(1_000, 1_500.0), ws, None),
            Layout {
                runtime_workers: Some(1),
                shards: cores
            }
        );
        let closed = crate::scenario::parse(
            std::path::Path::new("c.toml"),
            "[scenario]\nname = \"c\"\n[population.consumers]\nusers = 10\ncontacts = 1\n[[pattern]]\nkind = \"closed_loop\"\n[load]\nstages = [{ ramp = \"1s\" }, { hold = \"1s\" }]\n",
        )
        .unwrap();
        assert_eq!(
            layout(&closed, ws, Some(2)),
            Layout {
                runtime_workers: Some(2),
                shards: 1
            }
        );
        assert_eq!(
            layout(&closed, ws, None),
            Layout {
                runtime_workers: None,
                shards: 1
            }
        );
    }
}
