//! Helpers shared by the integration tests: scenario files in temp folders, bundle folders,
//! and the real servers and proxies the tests start. Runs in one process may overlap: each
//! goose attack ends by itself when its users are done.

#![allow(dead_code)]

pub mod chat_api;
pub mod cpu_slice;
pub mod ejabberd;
pub mod http_server;
pub mod mosquitto;
pub mod mqtt_flood;
pub mod mqtt_proxy;
pub mod nats;
pub mod prosody;
pub mod rabbitmq;
pub mod serve;
pub mod synapse;
pub mod tls;
pub mod xmpp_proxy;

#[allow(unused_imports)]
pub use serve::ServeProcess;

use chatload::engine::{RunOptions, RunResult};
use std::path::PathBuf;

pub struct TempScenario {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Sets the environment variables this test binary's runs read, once, before anything else
/// happens: every test of a binary that needs any calls it first with the same list, so no
/// thread reads the environment while it changes (a change while another thread reads it is
/// undefined behaviour in libc).
pub fn set_env_once(vars: &[(&str, &str)]) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (k, v) in vars {
            // SAFETY: inside the Once that every test of this binary passes before it starts
            // anything, so no other thread of the binary is running code that reads it.
            unsafe { std::env::set_var(k, v) };
        }
    });
}

pub fn scenario_file(text: &str) -> TempScenario {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, text).expect("write scenario");
    TempScenario { dir, path }
}

/// A folder for one run's bundle that outlives the test's temp files (under cargo's
/// per-target temp dir), so a test can read what the run wrote.
pub fn bundle_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("bundles")
        .join(format!("{}-{n}", std::process::id()))
}

/// Runs `text` with the library and returns the result; panics on any error.
pub async fn run_text(text: &str, target: Option<String>) -> RunResult {
    run_text_on_shards(text, target, 1).await
}

/// As [`run_text`], with the users on `shards` threads (`chatload run --threads N` for an
/// open-model scenario; shard 0 is the caller's runtime).
pub async fn run_text_on_shards(text: &str, target: Option<String>, shards: usize) -> RunResult {
    let file = scenario_file(text);
    let scenario = chatload::scenario::load(&file.path).unwrap_or_else(|e| panic!("{e}"));
    let opts = RunOptions {
        target,
        out: Some(bundle_dir()),
        quiet: true,
        shards,
        ..RunOptions::default()
    };
    let result = chatload::engine::run(scenario, &opts)
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    let json = std::fs::read_to_string(result.bundle_dir.join("summary.json"))
        .expect("summary.json written");
    let back: chatload::report::Summary = serde_json::from_str(&json).expect("summary.json parses");
    assert_eq!(
        back, result.summary,
        "summary.json holds what the run returned"
    );
    result
}

/// A small chat scenario: `users` online, direct chat and optionally groups, no ramp-down
/// (everyone is still connected at the end, so nothing is left queued offline).
pub fn chat_scenario(users: u32, hold_s: u32, groups: u32, extra_target: &str) -> String {
    let group_part = if groups > 0 {
        format!(
            "groups = {groups}\ngroup_size = {{ uniform = {{ min = 3, max = 8 }} }}\n\n[[pattern]]\nkind = \"group_chat\"\nrate = \"30/min per group\"\nsize = 40\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"[scenario]
name = "it"
seed = 11
loss_deadline = "1s"
drain = "3s"

[population.consumers]
users = {users}
contacts = {{ uniform = {{ min = 2, max = 6 }} }}
{group_part}
[[pattern]]
kind = "direct_chat"
conversations = "20/min per user"
messages = {{ geometric = {{ mean = 5 }} }}
gap = {{ exponential = {{ mean = "200ms" }} }}
size = {{ uniform = {{ min = 10, max = 200 }} }}

[load]
stages = [{{ ramp = "1s" }}, {{ hold = "{hold_s}s" }}]

{extra_target}
"#
    )
}

/// `text` with half its users cut off at 2 s and kept away for 20 s or more (a storm whose
/// backoff starts at 20 s): a run stopped before then leaves them owed what came for them.
pub fn with_half_the_users_away(text: &str) -> String {
    text.replace(
        "[load]",
        "[[pattern]]\nname = \"storm\"\nkind = \"reconnect_storm\"\nat = \"2s\"\nfraction = 0.5\nbackoff = \"full_jitter\"\nbase = \"20s\"\ncap = \"30s\"\n\n[load]",
    )
}

/// `text` run by the chatload binary and stopped with SIGINT after `after`: the summary
/// of its bundle, once it exited 130 (interrupted).
pub async fn interrupted_run(text: &str, after: std::time::Duration) -> chatload::report::Summary {
    let file = scenario_file(text);
    let bundle = file.dir.path().join("interrupted");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(&bundle)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(after).await;
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the interrupted run ends")
    .unwrap()
    .unwrap()
    .status;
    assert_eq!(status.code(), Some(130), "interrupted");
    serde_json::from_slice(&std::fs::read(bundle.join("summary.json")).unwrap()).unwrap()
}

/// `chat_scenario` with a reconnect storm: half the users are cut off at 2 s and come back
/// within a second.
pub fn storm_scenario(users: u32, extra_target: &str) -> String {
    chat_scenario(users, 5, 0, extra_target).replace(
        "[load]",
        "[[pattern]]\nname = \"storm\"\nkind = \"reconnect_storm\"\nat = \"2s\"\nfraction = 0.5\nbackoff = \"full_jitter\"\nbase = \"200ms\"\ncap = \"1s\"\n\n[load]",
    )
}

/// `[target]` for an MQTT broker at `url`, with `settings` in `[target.mqtt]`.
pub fn mqtt_target(url: &str, settings: &str) -> String {
    format!("[target]\nurl = \"{url}\"\n\n[target.mqtt]\n{settings}\n")
}

/// The lowest value a report can show for a latency of at least `us`: the report's
/// histograms keep three significant digits and report a bucket's lowest value, so 1.2 s
/// recorded shows as 1,199,104 µs.
pub fn reported_floor(us: u64) -> u64 {
    chatload::metrics::new_histogram().lowest_equivalent(us)
}

/// The run's first description of errors of `kind` ("" when there was none).
pub fn error_example(s: &chatload::report::Summary, kind: &str) -> String {
    s.error_examples.get(kind).cloned().unwrap_or_default()
}

/// The books of a clean run: no errors; nothing lost, pending or unverifiable; every owed
/// delivery delivered once; nothing unexpected or held back; both balances hold.
pub fn assert_clean(s: &chatload::report::Summary) {
    let a = &s.accounting;
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    assert_eq!((a.lost, a.in_flight, a.unverified), (0, 0, 0), "{a:?}");
    assert_eq!(a.delivered, a.sent, "{a:?}");
    assert_eq!((a.duplicated, a.unexpected, a.not_sent), (0, 0, 0), "{a:?}");
    assert!(a.balances() && a.schedule_balances(), "{a:?}");
}

/// No file of the report bundle holds `secret`, in any byte: a credential is used, never
/// written down.
pub fn assert_bundle_hides(dir: &std::path::Path, secret: &str) {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("the bundle folder is readable") {
        let path = entry.expect("a bundle entry").path();
        let body = std::fs::read(&path).expect("a bundle file is readable");
        assert!(
            !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret",
            path.display()
        );
        files += 1;
    }
    assert!(
        files >= 4,
        "the bundle in {} has {files} files",
        dir.display()
    );
}

/// A run behind a proxy that let `passed` deliveries through and dropped `dropped` of them:
/// exactly those are lost, and nothing else is off.
pub fn assert_lost_exactly(a: &chatload::report::Accounting, passed: u64, dropped: u64) {
    assert!(
        dropped >= 10,
        "the proxy dropped some: {dropped} of {passed}"
    );
    assert_eq!(
        passed, a.sent,
        "one delivery at the proxy per owed one: {a:?}"
    );
    assert_eq!(a.lost, dropped, "lost = dropped by the proxy: {a:?}");
    assert_eq!(a.delivered + a.lost, a.sent, "{a:?}");
    assert_eq!(
        (a.in_flight, a.unverified, a.duplicated),
        (0, 0, 0),
        "{a:?}"
    );
}

/// Runs `text` expecting the run to be refused, and returns the one sentence it gave.
pub async fn refused_run(text: &str) -> String {
    let file = scenario_file(text);
    let scenario = chatload::scenario::load(&file.path).unwrap_or_else(|e| panic!("{e}"));
    let opts = RunOptions {
        out: Some(bundle_dir()),
        quiet: true,
        ..RunOptions::default()
    };
    let run = chatload::engine::run(scenario, &opts);
    match tokio::time::timeout(std::time::Duration::from_secs(30), run).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => panic!("the run was expected to be refused"),
        Err(_) => panic!("the run was neither refused nor done within 30 s"),
    }
}

/// A free loopback port from the kernel (servers started once and never restarted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `cmd` (a chatload run) as a process of its own, reaped within `limit` (killed, and the
/// test failed, past it); it must exit 0. Returns what the kernel counted for that process
/// alone: its CPU and its peak memory (`ru_maxrss`, KiB).
pub fn reaped(mut cmd: std::process::Command, limit: std::time::Duration) -> libc::rusage {
    #[allow(
        clippy::zombie_processes,
        reason = "reaped by wait4 below, for its rusage"
    )]
    let child = cmd.spawn().expect("chatload starts");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut status = 0;
        // SAFETY: plain out-parameters; `pid` is this test's own child, not yet waited.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let _ = tx.send((waited, status, usage));
    });
    let Ok((waited, status, usage)) = rx.recv_timeout(limit) else {
        // SAFETY: our own child, still running.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("the run did not end within {limit:?}");
    };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status}"
    );
    usage
}

/// A server or tool a test needs: `found` when installed; otherwise a failure under
/// `CI=true` (`.ci/run` installs it as `install` says) and a printed skip elsewhere.
pub fn required<T>(found: Option<T>, what: &str, install: &str) -> Option<T> {
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{what} is not installed; .ci/run installs it ({install})");
        }
        eprintln!("skipping: {what} is not installed ({install})");
    }
    found
}

/// The verdict of the run's threshold rule whose text starts with `rule`.
pub fn verdict<'a>(
    s: &'a chatload::report::summary::Summary,
    rule: &str,
) -> &'a chatload::report::summary::Verdict {
    s.thresholds
        .iter()
        .find(|v| v.rule.starts_with(rule))
        .unwrap_or_else(|| panic!("{rule}: {:?}", s.thresholds))
}
