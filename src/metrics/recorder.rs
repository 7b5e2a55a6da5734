//! Where observations land: per-thread shards of HdrHistograms and counters, each behind its
//! own uncontended lock, collected once per interval into totals and an interval series.
//! Owns recording and collection; not what the numbers mean for a report.

use super::kinds::{Counters, ErrorKind, Metric};
use hdrhistogram::Histogram;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// Microsecond histograms, 3 significant digits, growing as large values arrive.
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable_histogram());
    h.auto(true);
    h
}

fn unreachable_histogram() -> Histogram<u64> {
    // Histogram::new(3) only fails for sigfig > 5; kept total to avoid a panic path.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap_or_else(|_| std::process::abort())
}

/// Histograms for every (pattern, metric) plus per-pattern counters and error counts.
#[derive(Clone)]
pub struct MetricSet {
    patterns: usize,
    hists: Vec<Option<Histogram<u64>>>,
    pub counters: Vec<Counters>,
    /// Error counts per pattern slot (the last slot: connection-level errors).
    pub errors: Vec<[u64; ErrorKind::ALL.len()]>,
    /// The first message seen for each error kind, so a report can say what went wrong.
    pub error_examples: [Option<String>; ErrorKind::ALL.len()],
}

impl MetricSet {
    pub fn new(patterns: usize) -> Self {
        MetricSet {
            patterns,
            hists: vec![None; (patterns + 1) * Metric::COUNT],
            counters: vec![Counters::default(); patterns + 1],
            errors: vec![[0; ErrorKind::ALL.len()]; patterns + 1],
            error_examples: Default::default(),
        }
    }

    /// Counts one connection-level error of `kind`, keeping its first description.
    pub fn error(&mut self, kind: ErrorKind, detail: impl FnOnce() -> String) {
        self.error_in(self.patterns, kind, detail);
    }

    /// Counts one error of `kind` against a pattern's slot.
    pub fn error_in(&mut self, pattern: usize, kind: ErrorKind, detail: impl FnOnce() -> String) {
        let slot = pattern.min(self.patterns);
        self.errors[slot][kind as usize] += 1;
        let example = &mut self.error_examples[kind as usize];
        if example.is_none() {
            // Examples reach reports and the terminal: a credential inside one must not, nor a
            // target's escape sequence.
            *example = Some(crate::secrets::printable(
                &crate::secrets::redact(&detail()),
            ));
        }
    }

    /// How many patterns the set has slots for (not counting the no-pattern slot).
    pub fn patterns(&self) -> usize {
        self.patterns
    }

    /// Pattern slot for observations that belong to no pattern (connects).
    pub fn no_pattern(&self) -> usize {
        self.patterns
    }

    pub fn record(&mut self, pattern: usize, metric: Metric, micros: u64) {
        let slot = &mut self.hists[pattern * Metric::COUNT + metric.index()];
        let h = slot.get_or_insert_with(new_histogram);
        // Auto-resizing histograms accept any u64; a zero is recorded as zero.
        let _ = h.record(micros);
    }

    pub fn histogram(&self, pattern: usize, metric: Metric) -> Option<&Histogram<u64>> {
        self.hists[pattern * Metric::COUNT + metric.index()].as_ref()
    }

    /// All patterns' histograms of one metric merged.
    pub fn merged(&self, metric: Metric) -> Option<Histogram<u64>> {
        let mut out: Option<Histogram<u64>> = None;
        for p in 0..=self.patterns {
            if let Some(h) = self.histogram(p, metric) {
                match &mut out {
                    Some(o) => {
                        let _ = o.add(h);
                    }
                    None => out = Some(h.clone()),
                }
            }
        }
        out
    }

    /// Errors of one kind over every slot.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.iter().map(|e| e[kind as usize]).sum()
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().flatten().sum()
    }

    pub fn counters_total(&self) -> Counters {
        let mut c = Counters::default();
        for p in &self.counters {
            c.add(p);
        }
        c
    }

    pub fn add(&mut self, other: &MetricSet) {
        for (mine, theirs) in self.hists.iter_mut().zip(&other.hists) {
            if let Some(t) = theirs {
                match mine {
                    Some(m) => {
                        let _ = m.add(t);
                    }
                    None => *mine = Some(t.clone()),
                }
            }
        }
        for (a, b) in self.counters.iter_mut().zip(&other.counters) {
            a.add(b);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(&other.errors) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        for (a, b) in self.error_examples.iter_mut().zip(&other.error_examples) {
            if a.is_none() {
                a.clone_from(b);
            }
        }
    }

    /// Empties the set, keeping histogram allocations for reuse.
    pub fn clear(&mut self) {
        for h in self.hists.iter_mut().flatten() {
            h.reset();
        }
        self.counters
            .iter_mut()
            .for_each(|c| *c = Counters::default());
        self.errors
            .iter_mut()
            .for_each(|e| *e = [0; ErrorKind::ALL.len()]);
        self.error_examples = Default::default();
    }
}

/// Recording shards; a thread keeps using the shard it first picked.
pub struct Recorders {
    shards: Box<[Mutex<MetricSet>]>,
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD: Cell<usize> = Cell::new(NEXT_SHARD.fetch_add(1, Relaxed));
}

impl Recorders {
    pub fn new(patterns: usize) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let shards = (threads * 2).max(4);
        Recorders {
            shards: (0..shards)
                .map(|_| Mutex::new(MetricSet::new(patterns)))
                .collect(),
        }
    }

    /// The calling thread's shard, locked for a few recordings.
    pub fn local(&self) -> MutexGuard<'_, MetricSet> {
        let i = SHARD.with(|s| s.get()) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves everything recorded since the last call into `into`, leaving the shards empty.
    pub fn drain_into(&self, into: &mut MetricSet) {
        for shard in self.shards.iter() {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            into.add(&s);
            s.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_and_draining_keeps_every_sample() {
        let r = Recorders::new(2);
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let r = &r;
                scope.spawn(move || {
                    for i in 0..1000u64 {
                        r.local()
                            .record((t % 2) as usize, Metric::Delivery, 1000 + i);
                    }
                });
            }
        });
        let mut total = MetricSet::new(2);
        r.drain_into(&mut total);
        let h = total.merged(Metric::Delivery).unwrap();
        assert_eq!(h.len(), 4000);
        assert_eq!(h.min(), 1000);
        assert_eq!(h.highest_equivalent(h.max()), h.highest_equivalent(1999));
        let mut again = MetricSet::new(2);
        r.drain_into(&mut again);
        assert!(again.merged(Metric::Delivery).is_none_or(|h| h.is_empty()));
    }
}
