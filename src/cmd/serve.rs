//! `chatload serve`: the reference server on its own, its flags turned into the same knobs
//! a scenario's `[target]` sets; on Ctrl-C what it did, the faults it injected and what its
//! bounds refused.

use super::{BAD_INPUT, PASSED, RUN_FAILED, parse_duration_flag};
use chatload::scenario::{self, ServerKnobs};

pub async fn run(args: crate::cli::ServeArgs) -> u8 {
    let crate::cli::ServeArgs {
        listen,
        delay,
        drop_every,
        duplicate_every,
        reorder_every,
        drop_ack_every,
        ack_delay,
        latency,
        stall_every,
        stall,
        reset_every,
        hold_every,
        hold,
        no_offline_queue,
        max_connections,
        header_timeout,
        max_group_size,
        queue_per_user,
        queue_bytes,
        max_write_queue,
        max_rate,
        errors,
        webhook_reorder,
        seed,
        // Read by main.rs, which builds the runtime.
        threads: _,
    } = args;
    {
        // The flags become a `[target]` table, so they mean exactly what the scenario
        // keys mean and are checked by the same code.
        let mut table = format!(
            "drop_every = {drop_every}\nduplicate_every = {duplicate_every}\nreorder_every = {reorder_every}\ndrop_ack_every = {drop_ack_every}\nstall_every = {stall_every}\nreset_every = {reset_every}\nstall = {stall:?}\nhold_every = {hold_every}\nhold = {hold:?}\noffline_queue = {}\n",
            !no_offline_queue
        );
        if let Some(d) = delay {
            table.push_str(&format!("delay = {d:?}\n"));
        }
        if let Some(d) = ack_delay {
            table.push_str(&format!("ack_delay = {d:?}\n"));
        }
        if let Some(l) = latency {
            table.push_str(&format!("latency = {l}\n"));
        }
        if let Some(w) = webhook_reorder {
            table.push_str(&format!("webhook_reorder = {w:?}\n"));
        }
        if let Some(r) = max_rate {
            table.push_str(&format!("max_rate = {r:?}\n"));
        }
        if !errors.is_empty() {
            let mut parts = Vec::new();
            for e in &errors {
                let Some((code, p)) = e.split_once('=') else {
                    eprintln!("chatload: --error {e}: write CODE=P, e.g. --error 130429=0.01");
                    return BAD_INPUT;
                };
                parts.push(format!("{:?} = {}", code.trim(), p.trim()));
            }
            table.push_str(&format!("errors = {{ {} }}\n", parts.join(", ")));
        }
        let knobs: ServerKnobs = match scenario::server_knobs(&table, seed) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("chatload serve: {e}");
                return BAD_INPUT;
            }
        };
        let mut limits = chatload::server::Limits::default();
        if let Some(n) = max_connections {
            limits.max_connections = n.max(1);
        }
        limits.header_timeout = match parse_duration_flag("--header-timeout", &header_timeout) {
            Ok(d) if d.0 > 0 => d.as_std(),
            Ok(_) => {
                eprintln!("chatload serve: --header-timeout must be more than 0");
                return BAD_INPUT;
            }
            Err(code) => return code,
        };
        limits.max_group_size = max_group_size;
        limits.queue_per_user = queue_per_user.max(1);
        let size = |flag: &str, text: &str, example: &str| match scenario::units::parse_bytes(text)
        {
            Ok(b) if b >= 1.0 && b <= usize::MAX as f64 => Ok(b as usize),
            _ => {
                eprintln!("chatload serve: {flag} {text}: write a size such as {example}");
                Err(BAD_INPUT)
            }
        };
        limits.queue_bytes = match size("--queue-bytes", &queue_bytes, "256MiB") {
            Ok(b) => b,
            Err(code) => return code,
        };
        limits.max_write_queue = match size("--max-write-queue", &max_write_queue, "256KiB") {
            Ok(b) => b,
            Err(code) => return code,
        };
        serve(&listen, chatload::engine::embedded::knobs(&knobs), limits).await
    }
}

async fn serve(
    listen: &str,
    knobs: chatload::server::Knobs,
    limits: chatload::server::Limits,
) -> u8 {
    let server = match chatload::server::start_with_limits(listen, knobs, limits).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatload: {e}");
            return RUN_FAILED;
        }
    };
    eprintln!(
        "chatload serve: listening on {} and {}/v1/{{business}}/messages (Ctrl-C to stop)",
        server.url(),
        server.http_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    let stats = server.stats();
    server.shutdown().await;
    eprintln!(
        "chatload serve: stopped; {} connections, {} messages accepted, {} deliveries, {} business sends accepted, {} statuses",
        stats.connections,
        stats.accepted,
        stats.delivered,
        stats.business_accepted,
        stats.business_statuses
    );
    // The faults it injected, so a run's loss can be checked against what the server did.
    say_counts(
        "faults",
        &[
            ("dropped", stats.dropped),
            ("sends never confirmed", stats.acks_dropped),
            ("discarded for offline users", stats.discarded),
            ("held back", stats.held),
            ("duplicated", stats.duplicated),
            ("reordered", stats.reordered),
            ("connections reset", stats.resets),
        ],
    );
    // What its bounds refused, so a client that pushed them can see it.
    say_counts(
        "bounds",
        &[
            (
                "connections closed at --max-connections",
                stats.connections_refused,
            ),
            (
                "connections closed at --header-timeout",
                stats.headers_timed_out,
            ),
            ("groups refused at --max-group-size", stats.groups_refused),
            ("deliveries dropped at --queue-per-user", stats.overflowed),
            ("deliveries not kept at --queue-bytes", stats.queue_full),
            (
                "connections cut at --max-write-queue (not reading)",
                stats.slow_readers,
            ),
        ],
    );
    PASSED
}

/// One line `chatload serve: <what>: 3 dropped, 1 held back` of the counts that are not zero;
/// nothing when all are.
fn say_counts(what: &str, counts: &[(&str, u64)]) {
    let said: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    if !said.is_empty() {
        eprintln!("chatload serve: {what}: {}", said.join(", "));
    }
}
