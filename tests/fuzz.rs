//! A bounded fuzz harness that runs inside `cargo test`: seeded mutations of real inputs
//! (every scenario in `scenarios/`, a real interval log, the reference server's frames and
//! HTTP requests) are fed to the parsers that meet them. Each case must not panic, must end
//! within a time bound and must not allocate more than a bound (a counting allocator watches
//! this test process). The inputs that once broke something are kept in `tests/data/fuzz/`
//! and must be refused with a message.

use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Live bytes and the peak since the last reset, for every allocation of this process.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// At most this many bytes above what was live before a case.
const ALLOC_BOUND: usize = 256 << 20;
/// Each case must finish within this.
const TIME_BOUND: Duration = Duration::from_secs(5);

/// Runs one case and checks it against the bounds; returns whether it was accepted.
fn case<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let started = Instant::now();
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        panic!(
            "{what} panicked on {:?}",
            String::from_utf8_lossy(&input[..input.len().min(400)])
        )
    });
    let took = started.elapsed();
    let grew = PEAK.load(Relaxed).saturating_sub(base);
    assert!(
        took < TIME_BOUND,
        "{what} took {took:?} on {:?}",
        String::from_utf8_lossy(&input[..input.len().min(400)])
    );
    assert!(
        grew < ALLOC_BOUND,
        "{what} allocated {grew} bytes on {:?}",
        String::from_utf8_lossy(&input[..input.len().min(400)])
    );
    out
}

/// Tokens that have broken parsers before, or are at the edges of a type.
const DICTIONARY: &[&str] = &[
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "-inf",
    "nan",
    "0",
    "-1",
    "\"",
    "\\",
    "[[pattern]]",
    "[population.consumers]",
    "groups = 100000000",
    "users = 1000000000",
    "{ pareto = { scale = 1, shape = 0.0001 } }",
    "\"1e9/s per user\"",
    "\"0s\"",
    "\"99999999h\"",
    "{{",
    "}}",
    "\u{0}",
    "\u{fffd}",
];

/// One seeded mutation of `input`: flip, insert a token, delete or duplicate a slice.
fn mutate(rng: &mut rand_pcg::Pcg64, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let at = if v.is_empty() {
            0
        } else {
            rng.random_range(0..v.len())
        };
        match rng.random_range(0..5) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.random_range(0..8),
            1 => {
                let t = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
                v.splice(at..at, t.bytes());
            }
            2 if !v.is_empty() => {
                let end = (at + rng.random_range(1..40)).min(v.len());
                v.drain(at..end);
            }
            3 if !v.is_empty() => {
                let end = (at + rng.random_range(1..200)).min(v.len());
                let slice = v[at..end].to_vec();
                v.splice(at..at, slice);
            }
            _ => {
                // A digit run replaced by a huge number.
                let t = DICTIONARY[rng.random_range(0..3)];
                v.splice(at..at, t.bytes());
            }
        }
    }
    v
}

#[test]
fn scenario_parsing_and_compiling_survive_mutated_files() {
    let mut seeds = Vec::new();
    for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            seeds.push(std::fs::read(&p).unwrap());
        }
    }
    assert!(seeds.len() >= 10);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(14);
    let (mut cases, mut accepted) = (0, 0);
    let path = std::path::Path::new("fuzz.toml");
    for round in 0..300 {
        for seed in &seeds {
            let input = mutate(&mut rng, seed);
            let Ok(text) = std::str::from_utf8(&input) else {
                continue;
            };
            cases += 1;
            let parsed = case("scenario::parse", &input, || {
                chatload::scenario::parse(path, text).ok()
            });
            if let Some(s) = parsed {
                accepted += 1;
                // What `plan` and a run's setup derive from an accepted scenario.
                case("plan", &input, || chatload::plan::plan(&s, None));
            }
        }
        if round == 0 {
            assert!(cases > 0);
        }
    }
    eprintln!("scenario fuzz: {cases} mutated files, {accepted} accepted, none broke a bound");
    assert!(cases > 2_000, "{cases}");
}

#[test]
fn the_inputs_that_once_broke_something_are_refused() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let r = case("scenario::load", &bytes, || chatload::scenario::load(&p));
        assert!(r.is_err(), "{} is accepted again", p.display());
        n += 1;
    }
    assert!(n >= 5, "the corpus is there: {n}");
}

#[test]
fn the_interval_log_reader_survives_mutated_logs() {
    use chatload::metrics::{Metric, MetricSet, hlog::HlogWriter};
    let mut set = MetricSet::new(1);
    for v in 1..=2000u64 {
        set.record(0, Metric::Delivery, v * 37);
        set.record(0, Metric::Send, v);
    }
    let mut w = HlogWriter::new(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    for i in 0..3 {
        w.interval(&set, i as f64, 1.0);
    }
    let log = w.finish("fuzz").unwrap();
    assert!(chatload::metrics::hlog::digest(&log).is_ok());
    let mut rng = rand_pcg::Pcg64::seed_from_u64(15);
    let mut refused = 0;
    for _ in 0..3_000 {
        let input = mutate(&mut rng, &log);
        if case("hlog::digest", &input, || {
            chatload::metrics::hlog::digest(&input).is_err()
        }) {
            refused += 1;
        }
        case("hlog::read", &input, || {
            chatload::metrics::hlog::read(&input).map(|v| v.len()).ok()
        });
    }
    eprintln!("hlog fuzz: 3,000 mutated logs, {refused} refused, none broke a bound");
}

#[test]
fn the_frame_decoder_survives_mutated_frames() {
    use chatload::protocol::{self, Recipient};
    let frames = [
        protocol::hello(7, 3, 99),
        protocol::send(5, Recipient::Group(2), 10, 11, "hello there"),
        protocol::group(4, &[1, 2, 3, 4]),
        protocol::hello_ok(7, 0),
    ];
    let mut rng = rand_pcg::Pcg64::seed_from_u64(16);
    for _ in 0..5_000 {
        let pick = rng.random_range(0..frames.len());
        let input = mutate(&mut rng, frames[pick].as_bytes());
        let text = String::from_utf8_lossy(&input).into_owned();
        case("protocol::decode", &input, || {
            protocol::decode(&text).is_ok()
        });
    }
}

/// The reference server's HTTP API and WebSocket handshake over a real socket, with mutated
/// requests: it answers or closes, never dies, and `/healthz` still answers at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_http_handler_survives_mutated_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let port = server.addr.port();
    let requests: [&[u8]; 4] = [
        b"POST /v1/3/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 58\r\n\r\n{\"to\":\"17\",\"type\":\"text\",\"text\":{\"body\":\"hi\"},\"x\":1}\r\n",
        b"PUT /v1/3/webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\n{\"url\":\"http://127.0.0.1:1/hook\"}\r\n",
        b"POST /admin/config HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n{\"throughput\":80}",
        b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    ];
    let mut rng = rand_pcg::Pcg64::seed_from_u64(17);
    for _ in 0..400 {
        let pick = rng.random_range(0..requests.len());
        let input = mutate(&mut rng, requests[pick]);
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            panic!("the server stopped accepting");
        };
        let _ = s.write_all(&input).await;
        let _ = s.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(12), s.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok(),
            "no answer and no close within 12 s for {:?}",
            String::from_utf8_lossy(&input)
        );
    }
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    server.shutdown().await;
}
