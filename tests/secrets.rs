//! No secret leaves chatload in any form. A hostile HTTP API answers the first requests and
//! then echoes the credentials back in an error body, in every form a peer may use: as they
//! are, JSON-escaped, URL-encoded, base64 (standard and URL-safe), the `user:password` pair
//! of the target URL as an HTTP Basic header, and the bare password, each placed so that a
//! cut of the error text at 160 characters would fall inside it. chatload runs as a user runs
//! it (the binary, the token in its environment, the password in `--target`), and every
//! output is searched: stdout and stderr of `run`, `capacity`, `merge`, `compare` and
//! `report`, and every file they write (summary.json, summary.md, report.html, junit.xml,
//! latency.hlog, capacity.json/.md/.html, each step's bundle, the merged bundle).

mod common;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use tokio::net::TcpListener;

const TOKEN_VAR: &str = "CHATLOAD_TEST_LEAK_TOKEN";
/// Quote, backslash, slash and plus: its JSON-escaped and URL-encoded forms differ from it.
const TOKEN: &str = "TOKs3cr\"et\\Zq/+9w";
const USER: &str = "bob-x9";
/// In the URL as `pa%3Ass-77`.
const PASSWORD: &str = "pa:ss-77";

/// How the hostile API echoes the secrets back.
#[derive(Clone, Copy, Debug)]
enum Echo {
    Raw,
    JsonEscaped,
    UrlEncoded,
    Base64,
    Base64UrlSafe,
    BasicHeader,
    Password,
}

const ALL: [Echo; 7] = [
    Echo::Raw,
    Echo::JsonEscaped,
    Echo::UrlEncoded,
    Echo::Base64,
    Echo::Base64UrlSafe,
    Echo::BasicHeader,
    Echo::Password,
];

fn form(e: Echo) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    match e {
        Echo::Raw => TOKEN.to_string(),
        Echo::JsonEscaped => {
            let j = serde_json::to_string(TOKEN).unwrap();
            j[1..j.len() - 1].to_string()
        }
        Echo::UrlEncoded => {
            percent_encoding::utf8_percent_encode(TOKEN, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        }
        Echo::Base64 => STANDARD.encode(TOKEN),
        Echo::Base64UrlSafe => URL_SAFE.encode(TOKEN),
        Echo::BasicHeader => format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}"))),
        Echo::Password => PASSWORD.to_string(),
    }
}

/// What must never appear: every form whole, and the first 8 characters of each (a form cut
/// in two by a truncation leaves its start behind).
fn needles() -> Vec<String> {
    let mut n = Vec::new();
    for e in ALL {
        let f = form(e);
        let f = f.strip_prefix("Basic ").unwrap_or(&f).to_string();
        n.push(f.chars().take(8).collect());
        n.push(f);
    }
    n
}

struct Hostile {
    requests: AtomicU64,
    echo: AtomicUsize,
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    h: Arc<Hostile>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let _ = common::http_server::body_bytes(req).await;
    let n = h.requests.fetch_add(1, Relaxed) + 1;
    let (status, body) = if n <= 3 {
        (StatusCode::OK, format!("{{\"id\":{n}}}"))
    } else {
        // An error body whose 151st character starts the echoed secret: a cut of the body
        // at 160 characters falls inside it, ten characters in.
        let echo = ALL[h.echo.load(Relaxed)];
        (
            StatusCode::UNAUTHORIZED,
            format!(
                "{{\"error\":\"{}{} denied\",\"echo\":\"{}\"}}",
                "P".repeat(140),
                form(echo),
                form(echo)
            ),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    Ok(r)
}

async fn start(h: Arc<Hostile>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    common::http_server::serve(listener, None, move |req| handle(req, h.clone()));
    port
}

const SCENARIO: &str = r#"[scenario]
name = "leak"
seed = 1

[population.consumers]
users = 20
contacts = { uniform = { min = 2, max = 4 } }

[[pattern]]
kind = "direct_chat"
conversations = "30/min per user"
messages = 1

[load]
stages = [{ ramp = "500ms" }, { hold = "2s" }]

[target]
protocol = "http"

[target.http]
method = "POST"
url = "/send/{{user}}"
body = '{"to":{{to}},"id":{{id}}}'
deliveries = "none"

[target.http.headers]
Authorization = "Bearer {{token}}"

[target.auth]
token_env = "CHATLOAD_TEST_LEAK_TOKEN"

[thresholds]
"send.p99" = "< 1s"
"#;

/// Everything a command printed, and every file under `dirs`, searched for every needle.
fn assert_no_secret(what: &str, out: &std::process::Output, dirs: &[&Path]) -> usize {
    let mut texts = vec![
        (format!("{what}: stdout"), out.stdout.clone()),
        (format!("{what}: stderr"), out.stderr.clone()),
    ];
    for d in dirs {
        for f in files_under(d) {
            texts.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
    }
    for (name, bytes) in &texts {
        let text = String::from_utf8_lossy(bytes);
        for n in needles() {
            assert!(
                !text.contains(&n),
                "{name} shows a secret form {n:?}:\n{}",
                text.chars().take(3000).collect::<String>()
            );
        }
    }
    texts.len()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn chatload<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(args)
        .env(TOKEN_VAR, TOKEN)
        .output()
        .expect("chatload runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_shows_a_secret_in_any_form() {
    let hostile = Arc::new(Hostile {
        requests: AtomicU64::new(0),
        echo: AtomicUsize::new(0),
    });
    let port = start(hostile.clone()).await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("leak.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let file = file.to_str().unwrap().to_string();
    let target = format!("http://{USER}:pa%3Ass-77@127.0.0.1:{port}");
    let mut searched = 0;

    // One run per form: a run keeps the first example of each error kind.
    for (i, echo) in ALL.iter().enumerate() {
        hostile.echo.store(i, Relaxed);
        hostile.requests.store(0, Relaxed);
        let out_dir = work.path().join(format!("run-{i}"));
        let args = vec![
            "run".to_string(),
            file.clone(),
            "--target".into(),
            target.clone(),
            "--out".into(),
            out_dir.to_string_lossy().into_owned(),
        ];
        let out = tokio::task::spawn_blocking(move || chatload(&args))
            .await
            .unwrap();
        let summary = std::fs::read_to_string(out_dir.join("summary.json")).unwrap_or_else(|e| {
            panic!(
                "{echo:?}: no summary ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            summary.contains("PPPPPPPPPP"),
            "{echo:?}: the echoed error reached the report, so it was searched: {summary}"
        );
        searched += assert_no_secret(&format!("run {echo:?}"), &out, &[&out_dir]);
    }

    // capacity: two steps, each a bundle of its own, and the capacity files.
    hostile.echo.store(0, Relaxed);
    hostile.requests.store(0, Relaxed);
    let cap_dir = work.path().join("capacity");
    let cap_args = [
        "capacity".to_string(),
        file.clone(),
        "--target".into(),
        target.clone(),
        "--from".into(),
        "1".into(),
        "--to".into(),
        "2".into(),
        "--factor".into(),
        "2".into(),
        "--refine".into(),
        "0".into(),
        "--step-time".into(),
        "2s".into(),
        "--out".into(),
        cap_dir.to_string_lossy().into_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || chatload(&cap_args))
        .await
        .unwrap();
    assert!(
        cap_dir.join("capacity.json").is_file(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    searched += assert_no_secret("capacity", &out, &[&cap_dir]);

    // Two segments of one run, merged, compared and re-reported.
    let mut segs = Vec::new();
    for (k, echo) in [(0usize, 1usize), (1, 5)] {
        hostile.echo.store(echo, Relaxed);
        hostile.requests.store(0, Relaxed);
        let d = work.path().join(format!("seg-{k}"));
        let args: Vec<String> = vec![
            "run".into(),
            file.clone(),
            "--target".into(),
            target.clone(),
            "--segment".into(),
            format!("{k}/2"),
            "--out".into(),
            d.to_string_lossy().into_owned(),
        ];
        let out = tokio::task::spawn_blocking(move || chatload(&args))
            .await
            .unwrap();
        searched += assert_no_secret(&format!("segment {k}"), &out, &[&d]);
        segs.push(d);
    }
    let merged = work.path().join("merged");
    let (s0, s1) = (
        segs[0].to_string_lossy().into_owned(),
        segs[1].to_string_lossy().into_owned(),
    );
    let out = chatload(&["merge", &s0, &s1, "--out", merged.to_str().unwrap()]);
    assert!(
        merged.join("summary.json").is_file(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    searched += assert_no_secret("merge", &out, &[&merged]);
    let out = chatload(&["compare", &s1, &s0]);
    searched += assert_no_secret("compare", &out, &[]);
    let out = chatload(&["report", merged.to_str().unwrap()]);
    searched += assert_no_secret("report", &out, &[&merged]);
    eprintln!(
        "searched {searched} outputs for {} forms of 3 secrets",
        ALL.len()
    );
}
