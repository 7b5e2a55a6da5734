//! The reference server as the client side configures it: a scenario's `[target.server]`
//! knobs (or `chatload serve`'s flags, parsed the same way) turned into the server's own
//! [`Knobs`](crate::server::Knobs). The server knows nothing of scenarios; this is where the
//! two meet.

use crate::scenario::ServerKnobs;
use crate::scenario::sampler::Sampler;
use crate::server::{ApiFaults, Knobs, Latency};

/// The server's knobs for a scenario's.
pub fn knobs(k: &ServerKnobs) -> Knobs {
    let a = &k.api;
    Knobs {
        delay: k.delay.as_std(),
        latency: k
            .latency
            .as_ref()
            .and_then(|d| Sampler::new(d).ok())
            .map(|s| Latency::new(move |rng| s.sample(rng))),
        drop_every: k.drop_every,
        duplicate_every: k.duplicate_every,
        reorder_every: k.reorder_every,
        drop_ack_every: k.drop_ack_every,
        ack_delay: k.ack_delay.as_std(),
        stall_every: k.stall_every,
        stall: k.stall.as_std(),
        reset_every: k.reset_every,
        hold_every: k.hold_every,
        hold: k.hold.as_std(),
        discard_offline: k.discard_offline,
        max_rate: k.max_rate,
        api: ApiFaults {
            seed: a.seed,
            throttle: a.throttle,
            pair_rate: a.pair_rate,
            spam: a.spam,
            server_error: a.server_error,
            timeout: a.timeout,
            undeliverable: a.undeliverable,
            marketing_cap: a.marketing_cap,
            webhook_reorder: a.webhook_reorder.as_std(),
        },
    }
}
