//! The binary as a user meets it: exit codes, Ctrl-C during a run, an unreachable target,
//! a failed threshold.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chatload"))
}

#[test]
fn an_unreachable_target_exits_3_before_any_user_starts() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = common::scenario_file(&common::chat_scenario(10, 2, 0, ""));
    let out = bin()
        .args([
            "run",
            file.path.to_str().unwrap(),
            "--quiet",
            "--target",
            &format!("ws://127.0.0.1:{port}/v1/ws"),
        ])
        .arg("--out")
        .arg(file.dir.path().join("bundle"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not reachable") && stderr.contains("check --target"),
        "{stderr}"
    );
    assert!(
        !file.dir.path().join("bundle").exists(),
        "nothing was run, so no bundle"
    );
}

#[test]
fn a_webhook_address_that_cannot_be_bound_exits_3_and_names_the_flag() {
    // A port already taken: the business webhook receiver cannot listen there.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/otp-login-storm.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("run")
        .arg(&path)
        .args(["--quiet", "--duration", "2s", "--webhook-listen", &addr])
        .arg("--out")
        .arg(dir.path().join("bundle"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("--webhook-listen"),
        "{stderr}"
    );
    assert!(!dir.path().join("bundle").exists());
}

/// `--duration` stretches the whole timeline, not only the stages: a storm 5 s into a 10 s
/// run (4 s after its ramp) strikes 2 s into the same run shortened to 4 s. Before, it kept
/// its 5 s and never came: the report listed a storm that dropped no one.
#[test]
fn a_shortened_run_keeps_its_storm_in_place() {
    let storm = "[[pattern]]\nname = \"blip\"\nkind = \"reconnect_storm\"\nat = \"5s\"\nfraction = 1.0\nbase = \"100ms\"\ncap = \"500ms\"\n";
    let text = common::chat_scenario(40, 9, 0, "").replace("[load]", &format!("{storm}\n[load]"));
    let file = common::scenario_file(&text);
    let bundle = file.dir.path().join("bundle");
    let out = bin()
        .args([
            "run",
            file.path.to_str().unwrap(),
            "--quiet",
            "--duration",
            "4s",
        ])
        .arg("--out")
        .arg(&bundle)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: chatload::report::Summary =
        serde_json::from_slice(&std::fs::read(bundle.join("summary.json")).unwrap()).unwrap();
    let st = &s.storms[0];
    assert_eq!(
        (st.at_s, st.dropped, st.reconnected),
        (2.0, 40, 40),
        "{st:?}"
    );
    assert_eq!(s.planned_duration_s, 4.0);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
}

#[test]
fn bad_flags_exit_2() {
    let file = common::scenario_file(&common::chat_scenario(10, 2, 0, ""));
    let out = bin()
        .args(["run", file.path.to_str().unwrap(), "--duration", "5 junk"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
    let out = bin()
        .args(["run", file.path.to_str().unwrap(), "--target", "http://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not fit"));
    let out = bin()
        .args(["run", file.path.to_str().unwrap(), "--target", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a URL chatload can reach"));
    let out = bin()
        .args(["run", file.path.to_str().unwrap(), "--users", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["run", file.path.to_str().unwrap(), "--start-at", "tomorrow"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--start-at"));
    let out = bin()
        .args([
            "plan",
            file.path.to_str().unwrap(),
            "--capacity",
            "/no/such/dir",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/dir"));
    let bad_pool = common::scenario_file(&common::chat_scenario(
        10,
        2,
        0,
        "[target]\nsource_addresses = \"127.0.0.9-127.0.0.1\"\n",
    ));
    let out = bin()
        .args(["validate", bad_pool.path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("source_addresses"));
    let out = bin().args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().args(["plan", "/no/such/file.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /no/such/file.toml"));
    let out = bin()
        .args(["plan", file.path.to_str().unwrap(), "--users", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("use between 1 and 10,000,000,000 users")
    );
    // `setup matrix`: a --timeout that is not a duration, or is zero, is refused before any
    // request; a --homeserver that is not a URL is named without its credentials.
    let setup = |homeserver: &str, timeout: &str| {
        bin()
            .args(["setup", "matrix", file.path.to_str().unwrap(), "-o"])
            .arg(file.dir.path().join("ids.json"))
            .args(["--homeserver", homeserver, "--timeout", timeout])
            .env("CHATLOAD_MATRIX_AS_TOKEN", "as-token-for-the-test")
            .output()
            .unwrap()
    };
    for (timeout, says) in [
        ("soon", "--timeout: `soon` is not a duration"),
        ("0s", "--timeout must be longer than 0s"),
    ] {
        let out = setup("http://127.0.0.1:9", timeout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    let out = setup("http://bob:hunter2@", "30s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not a URL") && !stderr.contains("hunter2"),
        "{stderr}"
    );
    assert!(!file.dir.path().join("ids.json").exists());
}

#[test]
fn a_failed_threshold_exits_1_and_names_the_rule() {
    let text = common::chat_scenario(
        20,
        2,
        0,
        "[thresholds]\n\"delivery.max\" = \"< 1us\"\n\"loss\" = \"== 0\"\n",
    );
    let file = common::scenario_file(&text);
    let out = bin()
        .args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(file.dir.path().join("b"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("✗ delivery.max < 1us failed: observed"),
        "{stdout}"
    );
    assert!(stdout.contains("✓ loss == 0"), "{stdout}");
    assert!(
        !stdout.contains("users launched"),
        "goose's own output stays out of ours: {stdout}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file.dir.path().join("b/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["passed"], false);
    assert!(file.dir.path().join("b/summary.md").exists());
}

#[test]
fn command_line_thresholds_abort_a_clearly_failing_run_early() {
    // 200 users chatting for 30 s; the rule cannot hold, so the run ends within seconds.
    let text = common::chat_scenario(200, 30, 0, "");
    let file = common::scenario_file(&text);
    let started = std::time::Instant::now();
    let out = bin()
        .args([
            "run",
            file.path.to_str().unwrap(),
            "--quiet",
            "--abort-on-fail",
        ])
        .args([
            "--threshold",
            "delivery.p99<1us",
            "--threshold",
            "errors==0",
        ])
        .arg("--out")
        .arg(file.dir.path().join("b"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(20), "ended early");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file.dir.path().join("b/summary.json")).unwrap())
            .unwrap();
    let ended = summary["ended"].as_str().unwrap();
    assert!(ended.starts_with("aborted: delivery.p99 < 1us"), "{ended}");
    assert_eq!(summary["thresholds"].as_array().unwrap().len(), 2);
    assert!(file.dir.path().join("b/junit.xml").exists());
    let bad = bin()
        .args([
            "run",
            file.path.to_str().unwrap(),
            "--threshold",
            "delivery.p99 300ms",
        ])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a rule without an operator is bad input"
    );
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a child we started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Starts a long run, signals it after a few seconds, and returns what it wrote.
fn signalled_run(sig: i32) -> (std::process::Output, serde_json::Value, Duration) {
    let file = common::scenario_file(&common::chat_scenario(50, 60, 0, ""));
    let bundle = file.dir.path().join("bundle");
    let child = bin()
        .args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(&bundle)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let started = Instant::now();
    signal(child.id(), sig);
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let mut names: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "junit.xml",
            "latency.hlog",
            "report.html",
            "summary.json",
            "summary.md"
        ],
        "the whole bundle is written"
    );
    let junit = std::fs::read_to_string(bundle.join("junit.xml")).unwrap();
    assert!(
        junit.contains("name=\"completed\"") && junit.contains("<failure"),
        "junit shows the run did not complete: {junit}"
    );
    let summary =
        serde_json::from_slice(&std::fs::read(bundle.join("summary.json")).unwrap()).unwrap();
    (out, summary, took)
}

#[test]
fn ctrl_c_stops_the_run_writes_the_whole_bundle_and_exits_130() {
    let (out, summary, took) = signalled_run(libc::SIGINT);
    assert!(took < Duration::from_secs(20), "stopped promptly: {took:?}");
    assert_eq!(
        out.status.code(),
        Some(130),
        "an interrupted run is never a pass: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["ended"], "interrupted");
    assert_eq!(summary["signal"], "SIGINT");
    assert!(summary["duration_s"].as_f64().unwrap() < 10.0);
    assert!(
        summary["accounting"]["messages_sent"].as_u64().unwrap() > 0,
        "what was measured is kept"
    );
    let a = &summary["accounting"];
    let n = |k: &str| a[k].as_u64().unwrap();
    assert_eq!(
        n("sent"),
        n("delivered") + n("lost") + n("in_flight") + n("unverified")
    );
    assert_eq!(n("messages_scheduled"), n("messages_sent") + n("not_sent"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted"));
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_leaves_no_half_written_bundle() {
    let file = common::scenario_file(&common::chat_scenario(20, 60, 0, ""));
    let bundle = file.dir.path().join("b");
    let child = bin()
        .args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(&bundle)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let staging = file.dir.path().join(format!(".b.partial-{}-0", child.id()));
    assert!(
        staging.join("latency.hlog").exists(),
        "the interval log streams into the staging folder during the run"
    );
    assert!(
        !bundle.exists(),
        "the bundle's folder appears only when whole"
    );
    signal(child.id(), libc::SIGINT);
    std::thread::sleep(Duration::from_millis(100));
    signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Either the complete bundle or none: the users stop at once on the first Ctrl-C, so
    // the run may have written its whole bundle before the second; never a staging folder
    // left behind or a bundle without its summary.
    let listing = std::fs::read_dir(file.dir.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>());
    assert!(!staging.exists(), "no half-written folder: {listing:?}");
    if bundle.exists() {
        for part in ["summary.json", "summary.md", "report.html", "latency.hlog"] {
            assert!(
                bundle.join(part).exists(),
                "{part} in the bundle: {listing:?}"
            );
        }
    }
}

#[test]
fn sigterm_stops_the_run_like_ctrl_c_and_exits_143() {
    let (out, summary, _) = signalled_run(libc::SIGTERM);
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["ended"], "interrupted");
    assert_eq!(summary["signal"], "SIGTERM");
}

#[test]
fn only_regular_scenario_files_of_a_sane_size_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path in a folder this test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let bad_utf8 = dir.path().join("latin1.toml");
    std::fs::write(&bad_utf8, b"[scenario]\nname = \"caf\xe9\"\n").unwrap();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    let cases: [(&std::path::Path, &str); 5] = [
        (std::path::Path::new("/dev/zero"), "is not a regular file"),
        (&fifo, "is not a regular file"),
        (dir.path(), "is not a regular file"),
        (&bad_utf8, "latin1.toml:2:12: this is not UTF-8 text"),
        (&big, "is larger than 1048576 bytes"),
    ];
    for (path, says) in cases {
        let started = Instant::now();
        let out = bin().arg("validate").arg(path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path:?} answered at once"
        );
        assert_eq!(out.status.code(), Some(2), "{path:?}: {stderr}");
        assert!(stderr.contains(says), "{path:?}: {stderr}");
    }
}

/// `--threads N` sets the run's threads (three: the embedded server's and two shards of
/// users), one runs a whole scenario alone, each with clean books; zero is refused at the flag.
#[test]
fn runtime_workers_follow_threads_or_the_planned_traffic_and_zero_is_refused() {
    let file = common::scenario_file(&common::chat_scenario(40, 2, 3, ""));
    // --threads as given; without it, a scenario this light (tens of frames a second)
    // gets one worker (engine::workers). The bundle says which.
    for (threads, workers) in [(Some("3"), 3), (None, 1)] {
        let out_dir = file.dir.path().join(format!("bundle-{workers}"));
        let mut run = bin();
        run.args(["run", file.path.to_str().unwrap(), "--quiet"]);
        if let Some(n) = threads {
            run.args(["--threads", n]);
        }
        let out = run.arg("--out").arg(&out_dir).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: chatload::report::Summary =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
                .unwrap();
        common::assert_clean(&summary);
        assert!(
            summary.accounting.messages_sent > 20,
            "{:?}",
            summary.accounting
        );
        assert_eq!(
            summary.machine.as_ref().and_then(|m| m.workers),
            Some(workers),
            "{threads:?}"
        );
        let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
        assert!(html.contains(&format!("{workers} threads")), "{threads:?}");
    }
    for cmd in ["run", "serve"] {
        let mut c = bin();
        c.arg(cmd);
        if cmd == "run" {
            c.arg(&file.path);
        }
        let out = c.args(["--threads", "0"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--threads"),
            "{cmd}"
        );
    }
}

/// A run says what chatload's own process used, and says it truly: its CPU from the first
/// connect to the end is at most what the kernel counted for the whole process when it was
/// reaped, and its peak memory is the process's (what `wait4` reports, give or take the
/// bundle written after the summary); the console and summary.md show them per message and
/// per connected user, naming the embedded server that shares the process.
#[test]
fn a_run_says_what_its_own_process_used() {
    let file = common::scenario_file(&common::chat_scenario(200, 3, 0, ""));
    let out_dir = file.dir.path().join("bundle");
    let console = file.dir.path().join("console.txt");
    let mut run = bin();
    run.args(["run", file.path.to_str().unwrap(), "--out"])
        .arg(&out_dir)
        .stdout(std::fs::File::create(&console).unwrap())
        .stderr(Stdio::null());
    let usage = common::reaped(run, Duration::from_secs(60));
    let summary: chatload::report::Summary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    common::assert_clean(&summary);
    let own = summary.own.expect("Linux says what a process used");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let whole_cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    assert!(
        own.cpu_s() > 0.0 && own.cpu_s() <= whole_cpu + 0.002,
        "{own:?} against the whole process's {whole_cpu} s"
    );
    let whole_peak = usage.ru_maxrss as u64 * 1024;
    assert!(
        own.peak_rss_bytes <= whole_peak && own.peak_rss_bytes * 10 >= whole_peak * 7,
        "{own:?} against the whole process's peak {whole_peak} bytes"
    );
    let shown = std::fs::read_to_string(&console).unwrap();
    let line = shown
        .lines()
        .find(|l| l.trim_start().starts_with("generator"))
        .unwrap_or_else(|| panic!("no generator line in {shown}"));
    assert!(
        line.contains("with the embedded server")
            && line.contains("per message sent")
            && line.contains("KiB per connected user at the peak of 200"),
        "{line}"
    );
    let md = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(md.contains("chatload's own process"), "{md}");
    // Second by second, the same CPU: the intervals' cores times their lengths add up to
    // what the run counted in all (less what it spent after the last interval).
    let points = &summary.series.points;
    let mut last_t = 0.0;
    let mut per_second = 0.0;
    for p in points {
        let cores = p
            .cpu_cores
            .unwrap_or_else(|| panic!("no CPU at {} s", p.t_s));
        assert!(
            (0.0..=64.0).contains(&cores),
            "{cores} cores at {} s",
            p.t_s
        );
        per_second += cores * (p.t_s - last_t);
        last_t = p.t_s;
    }
    eprintln!(
        "CPU second by second {per_second:.3} s, in all {:.3} s",
        own.cpu_s()
    );
    assert!(
        per_second <= own.cpu_s() * 1.02 + 0.01 && per_second >= own.cpu_s() * 0.5,
        "{per_second} s second by second against {own:?}"
    );
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("data-chart=\"generator\""), "no CPU chart");
}

#[test]
fn an_absurd_number_of_groups_is_refused_at_its_key() {
    for groups in ["9223372036854775807", "100_000_000"] {
        let text = common::chat_scenario(1000, 2, 5, "")
            .replace("groups = 5", &format!("groups = {groups}"));
        let file = common::scenario_file(&text);
        let started = Instant::now();
        let out = bin().arg("validate").arg(&file.path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(started.elapsed() < Duration::from_secs(5), "{groups}");
        assert_eq!(out.status.code(), Some(2), "{groups}: {stderr}");
        assert!(
            stderr.contains("scenario.toml:10:10: `groups`")
                && stderr.contains("use at most 10000"),
            "{groups}: {stderr}"
        );
    }
}

/// `--out` that cannot take the bundle is refused before anything is sent (exit 2, one
/// sentence): a file, a folder holding a bundle (unless --force), a place nothing can be
/// created in.
#[test]
fn an_out_folder_that_cannot_take_the_bundle_is_refused_before_the_run() {
    let file = common::scenario_file(&common::chat_scenario(5, 1, 0, ""));
    let a_file = file.dir.path().join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let old = file.dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("summary.json"), "{\"mine\":1}").unwrap();
    for (out, says) in [
        (a_file.clone(), "is a file"),
        (old.clone(), "--force"),
        (
            std::path::PathBuf::from("/proc/chatload-cannot/b"),
            "cannot be written",
        ),
    ] {
        let started = Instant::now();
        let o = bin()
            .args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{out:?}: {stderr}");
        assert!(stderr.contains(says), "{out:?}: {stderr}");
        assert!(
            o.stdout.is_empty(),
            "nothing ran: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "refused at once"
        );
    }
    assert_eq!(std::fs::read_to_string(&a_file).unwrap(), "x");
    assert_eq!(
        std::fs::read_to_string(old.join("summary.json")).unwrap(),
        "{\"mine\":1}",
        "an existing bundle is left alone"
    );
    // With --force the old bundle is replaced by a whole new one.
    let o = bin()
        .args([
            "run",
            file.path.to_str().unwrap(),
            "--quiet",
            "--force",
            "--out",
        ])
        .arg(&old)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        std::fs::read_to_string(old.join("summary.json"))
            .unwrap()
            .contains("schema_version")
    );
}

/// The disk fails the bundle after the run (here: its staging folder is replaced by a file
/// mid-run): the summary table is still printed, the error names what could not be written,
/// and the exit is 3.
#[test]
fn a_bundle_that_cannot_be_written_after_the_run_still_shows_the_results() {
    let file = common::scenario_file(&common::chat_scenario(10, 3, 0, ""));
    let bundle = file.dir.path().join("b");
    let child = bin()
        .args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(&bundle)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let staging = file.dir.path().join(format!(".b.partial-{}-0", child.id()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !staging.exists() {
        assert!(Instant::now() < deadline, "no staging folder appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir_all(&staging).unwrap();
    std::fs::write(&staging, "in the way").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stdout.contains("accounting"),
        "the results are shown: {stdout}"
    );
    assert!(
        stderr.contains(&format!("cannot write the report to {}", bundle.display()))
            && !stderr.contains(".partial-"),
        "the file named as the user asked for it: {stderr}"
    );
    assert!(!bundle.exists(), "no partial bundle in place");
}

/// A real full disk (a 16 KiB tmpfs): the run's results are printed, the error names the
/// file that did not fit and the disk's own words, the exit is 3, and nothing is left on
/// the disk. Needs root to mount; under CI a missing mount fails the test.
#[test]
fn a_full_disk_loses_no_results_and_leaves_nothing_half_written() {
    let disk = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(disk.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must mount a small tmpfs (run as root) to fill a disk"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(disk.path());
    let file = common::scenario_file(&common::chat_scenario(10, 3, 0, ""));
    let bundle = disk.path().join("b");
    let out = bin()
        .args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(&bundle)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stdout.contains("accounting"),
        "the results are shown: {stdout}"
    );
    assert!(
        stderr.contains(&format!("cannot write the report to {}/", bundle.display()))
            && stderr.contains("No space left on device"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "nothing half-written on the disk: {left:?}"
    );
}

/// A signal that comes between two runs of one process (the steps of a capacity search)
/// stops the next run as it starts. Each run used to forget the signals before it: the
/// first Ctrl-C after one step said it was stopping, and the next step ran to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_between_two_runs_of_one_process_stops_the_next() {
    use chatload::engine::signals;
    // As an earlier run in this process would have: the handlers are in place.
    let _ = signals::subscribe();
    // SAFETY: the handlers installed above take SIGTERM; the process is not ended by it.
    unsafe { libc::raise(libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while signals::interrupts() == 0 {
        assert!(Instant::now() < deadline, "the signal was not counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let r = common::run_text(&common::chat_scenario(20, 30, 0, ""), None).await;
    let s = &r.summary;
    assert_eq!(s.ended, "interrupted", "{:?}", s.accounting);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped as it started, not after its 31 s: {:?}",
        started.elapsed()
    );
    assert!(s.accounting.balances(), "{:?}", s.accounting);
    assert_eq!(signals::exit_code(), Some(143));
}

/// Local ports run out (a network namespace of our own whose port range holds 100, so 150
/// users cannot all connect to the embedded server): the failures are chatload's own limit
/// (`local_limit`, in a sentence that says so and names the range), never the target's
/// `connect_failed`, and the console says what they did to the books. Needs root for the
/// namespace; under CI a missing one fails the test.
#[test]
fn running_out_of_local_ports_is_said_as_chatloads_own_limit() {
    let file = common::scenario_file(&common::chat_scenario(150, 3, 0, ""));
    let bundle = file.dir.path().join("bundle");
    let script = format!(
        "ip link set lo up && echo '40000 40099' > /proc/sys/net/ipv4/ip_local_port_range && exec '{}' run '{}' --out '{}'",
        env!("CARGO_BIN_EXE_chatload"),
        file.path.display(),
        bundle.display()
    );
    let Ok(out) = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run `unshare --net` (util-linux, as root)"
        );
        eprintln!("skipped: unshare is not here");
        return;
    };
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // chatload never started: the namespace, `ip` or the port range could not be had.
    if !out.status.success() && stdout.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must make a network namespace with `unshare --net` and `ip` (iproute2), as root: {stderr}"
        );
        eprintln!(
            "skipped: cannot make a network namespace here (needs root and iproute2): {stderr}"
        );
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("summary.json")).unwrap())
            .unwrap();
    let errors = &summary["errors"];
    let local = errors["local_limit"].as_u64().unwrap_or(0);
    assert!(local > 0, "{errors}");
    assert!(errors.get("connect_failed").is_none(), "{errors}");
    let example = summary["error_examples"]["local_limit"].as_str().unwrap();
    assert!(
        example.contains(
            "a limit of the machine it runs on and not the target's: no local port was left"
        ) && example.contains("100 here (net.ipv4.ip_local_port_range 40000-40099)"),
        "{example}"
    );
    assert!(
        stderr.contains("chatload: warning: 150 users each hold a connection to ws://127.0.0.1:")
            && stderr.contains("but one local address has 100 local ports to reach it"),
        "said before the run: {stderr}"
    );
    let a = &summary["accounting"];
    // At most 99 users connected (the embedded server's port is the range's 100th).
    assert!(
        summary["peak_connected"].as_u64().unwrap() <= 99,
        "{summary}"
    );
    assert!(
        a["not_sent_reasons"]["sender_never_connected"]
            .as_u64()
            .unwrap()
            > 0,
        "{a}"
    );
    assert!(
        stdout.contains("connections could not be opened for a limit of the machine chatload runs on, not the target's (local_limit)"),
        "{stdout}"
    );
}
