//! What one observation costs on chatload's hot path: the calling thread's recorder shard
//! (an uncontended lock) and one HdrHistogram record, as a virtual user does for every
//! send, ack and delivery; beside it the bare histogram record, and the ledger's per-message
//! open and receive. `cargo bench --bench record`.

use chatload::metrics::{Ledger, Metric, Owed, Recorders, new_histogram};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// Latencies spread over four decades, as a run's are (a constant would flatter the cache).
fn latencies() -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            50 + (x % 1000) * 10u64.pow((x >> 32) as u32 % 4)
        })
        .collect()
}

fn record(c: &mut Criterion) {
    let values = latencies();
    let recorders = Recorders::new(4);
    let mut i = 0usize;
    c.bench_function("record one sample (shard + histogram)", |b| {
        b.iter(|| {
            let v = values[i & 4095];
            i = i.wrapping_add(1);
            recorders.local().record(1, Metric::Delivery, black_box(v));
        })
    });
    let mut h = new_histogram();
    c.bench_function("histogram record alone", |b| {
        b.iter(|| {
            let v = values[i & 4095];
            i = i.wrapping_add(1);
            let _ = h.record(black_box(v));
        })
    });
    let ledger = Ledger::new(4);
    let mut id = 0u64;
    c.bench_function("ledger open + receive (one recipient)", |b| {
        b.iter(|| {
            id += 1 << 10;
            ledger.open(id, 1, 7, 1_000, Owed::One(9));
            black_box(ledger.receive(id, 9, |_| Some(1)));
        })
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
