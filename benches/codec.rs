//! What the wire codec costs per frame, on both sides' hot path: decoding the frames a chat
//! message makes (`send`, `sent`, `msg`, `ack`, `receipt`) and building them.
//! `cargo bench --bench codec`.

use chatload::protocol::{self, Delivery, Recipient};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// One chat message's five frames with the ids and clocks of a real run (16-digit ids,
/// clock values in the tens of seconds).
fn frames() -> Vec<String> {
    let id = 1_000_123_000_045_678;
    let (t, s) = (41_523_117, 41_523_164);
    let body = protocol::filler_body(64);
    vec![
        protocol::send(id, Recipient::User(517), t, s, body),
        protocol::sent(id, t, s),
        protocol::msg(&Delivery {
            seq: 1_234,
            id,
            from: 16,
            to: 517,
            group: None,
            intended_us: t,
            sent_us: s,
            body,
            wamid: 0,
            kind: None,
            media_bytes: 0,
        }),
        protocol::ack(1_234, id, 16, t, s, 0),
        protocol::receipt(id, 517, t, s),
    ]
}

fn codec(c: &mut Criterion) {
    let frames = frames();
    c.bench_function("decode one message's five frames", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(protocol::decode(black_box(f)).is_ok());
            }
        })
    });
    c.bench_function("build one message's five frames", |b| {
        b.iter(|| {
            let id = black_box(1_000_123_000_045_678u64);
            let (t, s) = (black_box(41_523_117u64), black_box(41_523_164u64));
            black_box(frames_built(id, t, s));
        })
    });
}

fn frames_built(id: u64, t: u64, s: u64) -> usize {
    let body = protocol::filler_body(64);
    protocol::send(id, Recipient::User(517), t, s, body).len()
        + protocol::sent(id, t, s).len()
        + protocol::msg(&Delivery {
            seq: 1_234,
            id,
            from: 16,
            to: 517,
            group: None,
            intended_us: t,
            sent_us: s,
            body,
            wamid: 0,
            kind: None,
            media_bytes: 0,
        })
        .len()
        + protocol::ack(1_234, id, 16, t, s, 0).len()
        + protocol::receipt(id, 517, t, s).len()
}

criterion_group!(benches, codec);
criterion_main!(benches);
