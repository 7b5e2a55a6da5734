//! `latency.hlog`: the HdrHistogram interval log of a run — one compressed histogram per
//! metric per interval, tagged by metric name, values in microseconds — written while the
//! run goes (compressed intervals only, so a long run stays small) and read back by
//! `chatload report` and the HdrHistogram tools (HistogramLogProcessor: pass
//! `-outputValueUnitRatio 1000` for milliseconds, the values being microseconds).

use super::kinds::Metric;
use super::recorder::MetricSet;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The intervals written so far: in memory, or streamed to the bundle's file as they come so
/// that a long run's memory stays flat.
pub struct HlogWriter {
    started: SystemTime,
    body: Vec<u8>,
    serializer: V2DeflateSerializer,
    sink: Option<std::io::BufWriter<std::fs::File>>,
}

impl HlogWriter {
    pub fn new(started: SystemTime) -> Self {
        HlogWriter {
            started,
            body: Vec::new(),
            serializer: V2DeflateSerializer::new(),
            sink: None,
        }
    }

    /// Writes the log to `path` while the run goes (the header now, each interval as it
    /// closes).
    pub fn streaming(
        path: &std::path::Path,
        started: SystemTime,
        scenario: &str,
    ) -> std::io::Result<Self> {
        use std::io::Write as _;
        let mut sink = std::io::BufWriter::new(std::fs::File::create(path)?);
        sink.write_all(&header(started, scenario))?;
        Ok(HlogWriter {
            sink: Some(sink),
            ..HlogWriter::new(started)
        })
    }

    /// Appends one interval: every metric with samples, all patterns merged (tagged by the
    /// metric's name); with more than one pattern, also each pattern's own (tagged
    /// `p<index>/<metric>`), so that merged runs keep exact per-pattern percentiles.
    pub fn interval(&mut self, set: &MetricSet, start_s: f64, length_s: f64) {
        let from = self.body.len();
        self.write_interval(set, start_s, length_s);
        drop_repeated_divisor(&mut self.body, from);
        if let Some(sink) = self.sink.as_mut() {
            use std::io::Write as _;
            // A failed write loses this interval from the file, never the run.
            let _ = sink.write_all(&self.body);
            self.body.clear();
        }
    }

    fn write_interval(&mut self, set: &MetricSet, start_s: f64, length_s: f64) {
        let mut writer = match IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut self.body, &mut self.serializer)
        {
            Ok(w) => w,
            Err(_) => return,
        };
        for m in Metric::ALL {
            let Some(h) = set.merged(m).filter(|h| !h.is_empty()) else {
                continue;
            };
            // Writing to memory cannot fail; a serializer error would drop one interval.
            let _ = writer.write_histogram(
                &h,
                Duration::from_secs_f64(start_s.max(0.0)),
                Duration::from_secs_f64(length_s.max(0.0)),
                Tag::new(m.name()),
            );
        }
        if set.patterns() > 1 {
            for p in 0..set.patterns() {
                for m in Metric::ALL {
                    let Some(h) = set.histogram(p, m).filter(|h| !h.is_empty()) else {
                        continue;
                    };
                    let tag = pattern_tag(p, m.name());
                    let _ = writer.write_histogram(
                        h,
                        Duration::from_secs_f64(start_s.max(0.0)),
                        Duration::from_secs_f64(length_s.max(0.0)),
                        Tag::new(&tag),
                    );
                }
            }
        }
    }

    /// The whole log (headers, legend, intervals), or `None` when it was streamed to its
    /// file, which is then complete.
    pub fn finish(&mut self, scenario: &str) -> Option<Vec<u8>> {
        if let Some(sink) = self.sink.as_mut() {
            use std::io::Write as _;
            let _ = sink.flush();
            return None;
        }
        let mut out = header(self.started, scenario);
        out.extend_from_slice(&self.body);
        Some(out)
    }
}

/// hdrhistogram's log writer opens every log it begins with a `#[MaxValueDivisor]` line;
/// the log's own header already says it once, so the copy written at `from` goes.
fn drop_repeated_divisor(body: &mut Vec<u8>, from: usize) {
    const DIVISOR: &[u8] = b"#[MaxValueDivisor:";
    if body[from..].starts_with(DIVISOR)
        && let Some(end) = body[from..].iter().position(|b| *b == b'\n')
    {
        body.drain(from..from + end + 1);
    }
}

fn header(started: SystemTime, scenario: &str) -> Vec<u8> {
    let start = started
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    format!(
            "#[chatload {} interval log: scenario {scenario}, values in microseconds, one histogram per metric (tag) per second]\n#[StartTime: {start:.3} (seconds since epoch)]\n#[BaseTime: {start:.3} (seconds since epoch)]\n#[MaxValueDivisor: 1000.000]\n\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// A whole log from intervals already made (a merge of several runs' logs), in time order.
pub fn write_intervals(
    started: SystemTime,
    scenario: &str,
    intervals: &[LoggedInterval],
) -> Vec<u8> {
    let mut out = header(started, scenario);
    let mut serializer = V2DeflateSerializer::new();
    let mut body = Vec::new();
    if let Ok(mut writer) = IntervalLogWriterBuilder::new()
        .with_max_value_divisor(1000.0)
        .begin_log_with(&mut body, &mut serializer)
    {
        for i in intervals {
            let Some(tag) = Tag::new(&i.tag) else {
                continue;
            };
            let _ = writer.write_histogram(
                &i.histogram,
                Duration::from_secs_f64(i.start_s.max(0.0)),
                Duration::from_secs_f64(i.length_s.max(0.0)),
                Some(tag),
            );
        }
    }
    drop_repeated_divisor(&mut body, 0);
    out.extend_from_slice(&body);
    out
}

/// The tag of one pattern's histogram of `metric`.
pub fn pattern_tag(pattern: usize, metric: &str) -> String {
    format!("p{pattern}/{metric}")
}

/// A tag's pattern index and metric, if it is a pattern's.
pub fn split_pattern_tag(tag: &str) -> Option<(usize, &str)> {
    let (p, metric) = tag.split_once('/')?;
    Some((p.strip_prefix('p')?.parse().ok()?, metric))
}

/// One interval histogram read back from a log.
pub struct LoggedInterval {
    pub tag: String,
    pub start_s: f64,
    pub length_s: f64,
    pub histogram: Histogram<u64>,
}

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
#[error("latency.hlog is not a readable interval log: {0}")]
pub struct HlogReadError(String);

/// Reads every interval of a log.
pub fn read(bytes: &[u8]) -> Result<Vec<LoggedInterval>, HlogReadError> {
    let mut out = Vec::new();
    each(bytes, |i| out.push(i))?;
    Ok(out)
}

/// One interval's percentiles, all a chart over time needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalQuantiles {
    pub end_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// A log boiled down for a report: each tag's percentiles per interval and its histogram
/// over the whole log. Read one interval at a time, so an hour-long log does not hold 3,600
/// histograms per metric in memory at once.
#[derive(Default)]
pub struct Digest {
    pub over_time: std::collections::BTreeMap<String, Vec<IntervalQuantiles>>,
    pub totals: std::collections::BTreeMap<String, Histogram<u64>>,
}

pub fn digest(bytes: &[u8]) -> Result<Digest, HlogReadError> {
    let mut d = Digest::default();
    let mut overflow = false;
    // Samples per tag, added up checked: hdrhistogram saturates silently.
    let mut counted: std::collections::BTreeMap<String, u64> = Default::default();
    each(bytes, |i| {
        let h = &i.histogram;
        let n = counted.entry(i.tag.clone()).or_insert(0);
        match n.checked_add(h.len()) {
            Some(sum) => *n = sum,
            None => overflow = true,
        }
        d.over_time
            .entry(i.tag.clone())
            .or_default()
            .push(IntervalQuantiles {
                end_s: i.start_s + i.length_s,
                p50_us: h.value_at_quantile(0.5),
                p90_us: h.value_at_quantile(0.9),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            });
        let sum = d
            .totals
            .entry(i.tag)
            .or_insert_with(super::recorder::new_histogram);
        if sum.add(h).is_err() {
            overflow = true;
        }
    })?;
    if overflow {
        return Err(HlogReadError(
            "its counts overflow when added up (a crafted or corrupt log)".into(),
        ));
    }
    Ok(d)
}

/// The most a log's histogram may declare: chatload writes 3 significant digits and values
/// in microseconds; 2^42 µs is 51 days. A crafted log declaring more would make the reader
/// allocate gigabytes for one line.
const MAX_SIGNIFICANT_DIGITS: u32 = 3;
const MAX_HIGHEST_TRACKABLE: u64 = 1 << 42;
/// The longest encoded histogram read (chatload's are a few kilobytes).
const MAX_ENCODED_BYTES: usize = 4 << 20;

/// Checks the header of one encoded histogram (V2, compressed or not) before it is decoded:
/// its declared precision and range, which decide how much decoding it allocates.
fn check_header(decoded: &[u8]) -> Result<(), HlogReadError> {
    use std::io::Read;
    // hdrhistogram's V2 cookies (base | 0x10), plain and deflated.
    const V2: u32 = 0x1c84_9313;
    const V2_COMPRESSED: u32 = 0x1c84_9314;
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let long = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    let bad = |why: &str| HlogReadError(why.to_string());
    let mut inner = [0u8; 40];
    let header: &[u8] = match word(decoded, 0) {
        Some(V2) => decoded,
        Some(V2_COMPRESSED) => {
            let mut z = flate2::read::ZlibDecoder::new(decoded.get(8..).unwrap_or_default());
            z.read_exact(&mut inner)
                .map_err(|_| bad("a compressed histogram that does not inflate"))?;
            &inner
        }
        _ => return Err(bad("a histogram in an unknown encoding")),
    };
    let digits = word(header, 12).ok_or_else(|| bad("a histogram header cut short"))?;
    let highest = long(header, 24).ok_or_else(|| bad("a histogram header cut short"))?;
    if digits > MAX_SIGNIFICANT_DIGITS {
        return Err(HlogReadError(format!(
            "a histogram of {digits} significant digits (chatload writes {MAX_SIGNIFICANT_DIGITS})"
        )));
    }
    if highest > MAX_HIGHEST_TRACKABLE {
        return Err(HlogReadError(format!(
            "a histogram declared up to {highest} µs (more than 51 days)"
        )));
    }
    Ok(())
}

/// Hands every interval of a log to `f`, one at a time.
pub fn each(bytes: &[u8], mut f: impl FnMut(LoggedInterval)) -> Result<(), HlogReadError> {
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| HlogReadError(format!("{e:?}")))?;
        let LogEntry::Interval(i) = entry else {
            continue;
        };
        if i.encoded_histogram().len() > MAX_ENCODED_BYTES * 4 / 3 + 4 {
            return Err(HlogReadError("a histogram line longer than 4 MiB".into()));
        }
        let decoded = base64_decode(i.encoded_histogram())
            .ok_or_else(|| HlogReadError("a histogram is not base64".into()))?;
        check_header(&decoded)?;
        let histogram: Histogram<u64> = deserializer
            .deserialize(&mut decoded.as_slice())
            .map_err(|e| HlogReadError(format!("{e:?}")))?;
        f(LoggedInterval {
            tag: i.tag().map_or_else(String::new, |t| t.as_str().to_string()),
            start_s: i.start_timestamp().as_secs_f64(),
            length_s: i.duration().as_secs_f64(),
            histogram,
        });
    }
    Ok(())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Every metric's histogram summed over the whole log.
pub fn totals(intervals: &[LoggedInterval]) -> std::collections::BTreeMap<String, Histogram<u64>> {
    let mut out: std::collections::BTreeMap<String, Histogram<u64>> = Default::default();
    for i in intervals {
        // Read-back histograms have fixed bounds; the sum must grow to the largest of them.
        let sum = out
            .entry(i.tag.clone())
            .or_insert_with(super::recorder::new_histogram);
        let _ = sum.add(&i.histogram);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log whose only line is `h`, encoded as chatload encodes.
    fn log_of(h: &Histogram<u64>) -> Vec<u8> {
        use base64::Engine as _;
        let mut bytes = Vec::new();
        use hdrhistogram::serialization::Serializer as _;
        V2DeflateSerializer::new().serialize(h, &mut bytes).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        format!("#[StartTime: 0.000 (seconds since epoch)]\nTag=delivery,0.000,1.000,0.000,{b64}\n")
            .into_bytes()
    }

    #[test]
    fn a_crafted_log_cannot_make_the_reader_allocate_without_bound() {
        // Declared up to 2^62 with 5 digits: tens of megabytes per line if decoded.
        let huge = Histogram::<u64>::new_with_bounds(1, 1 << 62, 5).unwrap();
        let e = read(&log_of(&huge)).err().expect("refused");
        assert!(e.to_string().contains("significant digits"), "{e}");
        let wide = Histogram::<u64>::new_with_bounds(1, 1 << 60, 3).unwrap();
        let e = read(&log_of(&wide)).err().expect("refused");
        assert!(e.to_string().contains("51 days"), "{e}");
        // Three lines whose counts add past u64: refused, not wrapped or saturated silently.
        let mut big = Histogram::<u64>::new_with_bounds(1, 1 << 20, 3).unwrap();
        big.record_n(5, i64::MAX as u64).unwrap();
        let one = log_of(&big);
        let mut three = one.clone();
        for _ in 0..2 {
            three.extend_from_slice(one.split(|b| *b == b'\n').nth(1).unwrap());
            three.push(b'\n');
        }
        assert!(digest(&one).is_ok());
        let e = digest(&three).err().expect("refused");
        assert!(e.to_string().contains("overflow"), "{e}");
        // What chatload writes is read.
        let mut fine = super::super::recorder::new_histogram();
        fine.record(1234).unwrap();
        assert_eq!(read(&log_of(&fine)).unwrap().len(), 1);
    }

    #[test]
    fn intervals_round_trip_through_the_log() {
        let mut set = MetricSet::new(1);
        for v in 1..=1000u64 {
            set.record(0, Metric::Delivery, v * 10);
        }
        set.record(0, Metric::Send, 77);
        let mut w = HlogWriter::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        w.interval(&set, 0.0, 1.0);
        w.interval(&set, 1.0, 1.0);
        let log = w.finish("t").unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1700000000.000"));
        assert_eq!(text.matches("#[MaxValueDivisor").count(), 1, "{text}");
        assert!(text.contains("Tag=delivery,1.000,1.000,10.0"), "{text}");
        let back = read(&log).unwrap();
        assert_eq!(back.len(), 4);
        let t = totals(&back);
        assert_eq!(t["delivery"].len(), 2000);
        assert_eq!(t["send"].len(), 2);
        let want = set.merged(Metric::Delivery).unwrap();
        assert_eq!(
            t["delivery"].value_at_quantile(0.99),
            want.value_at_quantile(0.99)
        );
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
    }

    #[test]
    fn totals_grow_past_any_one_interval() {
        let mut w = HlogWriter::new(UNIX_EPOCH);
        let mut want = 0;
        for i in 0..10u64 {
            let mut set = MetricSet::new(2);
            for v in 0..(50 + i * 7) {
                set.record((v % 2) as usize, Metric::Delivery, 90 + v * 997 * (i + 1));
                want += 1;
            }
            w.interval(&set, i as f64, 1.0);
        }
        let back = read(&w.finish("x").unwrap()).unwrap();
        assert_eq!(totals(&back)["delivery"].len(), want);
    }
}
