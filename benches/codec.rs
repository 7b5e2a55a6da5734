//! What the wire codec costs per frame, on both sides' hot path: decoding the frames a chat
//! message makes (`send`, `sent`, `msg`, `ack`, `receipt`) and building them.
//! `cargo bench --bench codec`.

use chatload::protocol::{self, Delivery, Recipient};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// One chat message's five frames.
fn five_frames(id: u64, t: u64, s: u64) -> [String; 5] {
    let body = protocol::filler_body(64);
    [
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

/// The ids and clocks of a real run: 16-digit ids, clock values in the tens of seconds.
const ID: u64 = 1_000_123_000_045_678;
const T: u64 = 41_523_117;
const S: u64 = 41_523_164;

fn codec(c: &mut Criterion) {
    let frames = five_frames(ID, T, S);
    c.bench_function("decode one message's five frames", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(protocol::decode(black_box(f)).is_ok());
            }
        })
    });
    c.bench_function("build one message's five frames", |b| {
        b.iter(|| {
            let built = five_frames(black_box(ID), black_box(T), black_box(S));
            black_box(built.iter().map(String::len).sum::<usize>())
        })
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
