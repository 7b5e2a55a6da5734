//! Bad scenario files: each is refused with the line, column and message a person needs,
//! and `chatload validate` exits 2 on them. Every file in `scenarios/` validates.

use std::path::Path;

const BASE: &str = r#"[scenario]
name = "t"
duration = "10s"

[population.consumers]
users = 10

[[pattern]]
kind = "direct_chat"
conversations = "1/min per user"
"#;

/// (what is wrong, the file, line, column, words the message must contain)
fn cases() -> Vec<(&'static str, String, usize, usize, &'static str)> {
    let many_patterns: String = (0..256)
        .map(|n| format!("\n[[pattern]]\nname = \"p{n}\"\nkind = \"direct_chat\"\nconversations = \"1/min per user\"\n"))
        .collect();
    vec![
        (
            "a gateway header the WebSocket upgrade sets itself",
            format!(
                "{BASE}\n[target]\nurl = \"ws://127.0.0.1:9/x\"\nprotocol = \"ws-gateway\"\n\n[target.gateway]\nsend = \"x\"\nmessage = {{ match = {{ pointer = \"/t\", equals = \"m\" }}, id = \"/id\" }}\nheaders = {{ Upgrade = \"h2c\" }}\n"
            ),
            19,
            23,
            "is set by the WebSocket upgrade itself",
        ),
        (
            "a webhook transaction id that is neither a pointer nor the path",
            format!(
                "{BASE}\n[target]\nurl = \"http://127.0.0.1:9\"\nprotocol = \"http\"\n\n[target.http]\nurl = \"/x\"\ndeliveries = \"webhook\"\nwebhook = {{ recipient = \"/r\", id = \"/i\", transaction = \"txn\" }}\n"
            ),
            19,
            56,
            "give a JSON pointer into the body",
        ),
        (
            "a webhook answer status that is not a success or error status",
            format!(
                "{BASE}\n[target]\nurl = \"http://127.0.0.1:9\"\nprotocol = \"http\"\n\n[target.http]\nurl = \"/x\"\ndeliveries = \"webhook\"\nwebhook = {{ recipient = \"/r\", id = \"/i\", answer_status = 99 }}\n"
            ),
            19,
            58,
            "give an HTTP status from 200 to 599",
        ),
        (
            "a webhook answer body that is not JSON",
            format!(
                "{BASE}\n[target]\nurl = \"http://127.0.0.1:9\"\nprotocol = \"http\"\n\n[target.http]\nurl = \"/x\"\ndeliveries = \"webhook\"\nwebhook = {{ recipient = \"/r\", id = \"/i\", answer_body = \"ok\" }}\n"
            ),
            19,
            56,
            "answer_body is not JSON",
        ),
        (
            "a webhook ping that is not a path on the target",
            format!(
                "{BASE}\n[target]\nurl = \"http://127.0.0.1:9\"\nprotocol = \"http\"\n\n[target.http]\nurl = \"/x\"\ndeliveries = \"webhook\"\nwebhook = {{ recipient = \"/r\", id = \"/i\", ping = \"http://elsewhere/ping\" }}\n"
            ),
            19,
            49,
            "give a path on the target, starting with /",
        ),
        (
            "more patterns than a message id can tell apart",
            format!("{BASE}{many_patterns}"),
            1287,
            1,
            "at most 256 [[pattern]]s",
        ),
        (
            "a population too large for memory",
            BASE.replace(
                "users = 10",
                "users = 100_000_000\ncontacts = { uniform = { min = 100, max = 300 } }",
            ),
            6,
            9,
            "would need about 172.9 GiB of memory",
        ),
        (
            "an absurd rate",
            BASE.replace(r#""1/min per user""#, r#""1e308/s per user""#),
            10,
            17,
            "more than a million a second",
        ),
        (
            "a negative cap",
            BASE.replace(
                "users = 10",
                "users = 10\ncontacts = { uniform = { min = 2, max = 4 }, max = -9223372036854775808 }",
            ),
            7,
            12,
            "`max` must be 0 or more",
        ),
        (
            "a non-finite rule limit",
            format!("{BASE}\n[thresholds]\n\"loss\" = \"== -inf\"\n"),
            13,
            10,
            "not a usable limit",
        ),
        (
            "junk duration",
            BASE.replace(r#""10s""#, r#""5 junk""#),
            3,
            12,
            "`5 junk` is not a duration",
        ),
        (
            "duration without unit",
            BASE.replace(r#""10s""#, "10"),
            3,
            12,
            "needs a unit",
        ),
        (
            "unknown key",
            BASE.replace("users = 10", "users = 10\ncolour = \"red\""),
            7,
            1,
            "unknown key `colour`",
        ),
        (
            "wrong type",
            BASE.replace("users = 10", "users = \"ten\""),
            6,
            9,
            "expected a whole number",
        ),
        (
            "zero users",
            BASE.replace("users = 10", "users = 0"),
            6,
            9,
            "`users` must be at least 1",
        ),
        (
            "online above one",
            BASE.replace("users = 10", "users = 10\nonline = 1.5"),
            7,
            10,
            "`online` is the share",
        ),
        (
            "negative rate",
            BASE.replace("\"1/min per user\"", "\"-1/min per user\""),
            10,
            17,
            "the count must be zero or more",
        ),
        (
            "rate without basis",
            BASE.replace("\"1/min per user\"", "\"1/min\""),
            10,
            17,
            "counted per user",
        ),
        (
            "rate in words",
            BASE.replace("\"1/min per user\"", "\"often\""),
            10,
            17,
            "is not a rate",
        ),
        (
            "zipf over nothing",
            format!("{BASE}messages = {{ zipf = {{ n = 0, s = 1.0 }} }}\n"),
            11,
            12,
            "zipf over zero items",
        ),
        (
            "negative sigma",
            format!("{BASE}gap = {{ lognormal = {{ median = \"2s\", sigma = -1 }} }}\n"),
            11,
            7,
            "`sigma` must be greater than 0",
        ),
        (
            "time without unit in a distribution",
            format!("{BASE}gap = {{ exponential = {{ mean = 5 }} }}\n"),
            11,
            7,
            "needs a time unit",
        ),
        (
            "two families",
            format!("{BASE}gap = {{ exponential = {{ mean = \"1s\" }}, constant = \"1s\" }}\n"),
            11,
            7,
            "exactly one family",
        ),
        (
            "unknown family",
            format!("{BASE}gap = {{ gaussian = {{ mean = \"1s\" }} }}\n"),
            11,
            9,
            "unknown key `gaussian`",
        ),
        (
            "probability above one",
            format!("{BASE}reply = 1.5\n"),
            11,
            9,
            "`reply` is a probability",
        ),
        (
            "key of another kind",
            format!("{BASE}sender_skew = 1.0\n"),
            8,
            1,
            "does not apply to a direct_chat",
        ),
        (
            "unknown kind",
            BASE.replace("kind = \"direct_chat\"", "kind = \"telepathy\""),
            9,
            8,
            "unknown pattern kind `telepathy`",
        ),
        (
            "stages disagree",
            format!("{BASE}\n[load]\nstages = [{{ ramp = \"5s\" }}, {{ hold = \"10s\" }}]\n"),
            3,
            12,
            "add up to 15s",
        ),
        (
            "stage with two kinds",
            format!("{BASE}\n[load]\nstages = [{{ ramp = \"5s\", hold = \"5s\" }}]\n"),
            13,
            11,
            "only one of",
        ),
        (
            "threshold without operator",
            format!("{BASE}\n[thresholds]\n\"delivery.p99\" = \"500ms\"\n"),
            13,
            18,
            "is not a condition",
        ),
        (
            "threshold on nothing",
            format!("{BASE}\n[thresholds]\n\"latency.p99\" = \"< 1s\"\n"),
            13,
            1,
            "unknown metric `latency`",
        ),
        (
            "group chat without groups",
            BASE.replace(
                "kind = \"direct_chat\"\nconversations = \"1/min per user\"",
                "kind = \"group_chat\"\nrate = \"1/min per group\"",
            ),
            8,
            1,
            "set `groups`",
        ),
        (
            "target scheme unknown",
            format!("{BASE}\n[target]\nurl = \"ftp://x\"\n"),
            13,
            7,
            "has no scheme chatload speaks",
        ),
        (
            "http target without its table",
            format!("{BASE}\n[target]\nurl = \"http://x\"\n"),
            13,
            7,
            "needs a [target.http] table",
        ),
        (
            "url does not fit the protocol",
            format!("{BASE}\n[target]\nurl = \"mqtt://x\"\nprotocol = \"chatload\"\n"),
            13,
            7,
            "does not fit protocol \"chatload\"",
        ),
        (
            "unknown protocol",
            format!("{BASE}\n[target]\nurl = \"ws://x\"\nprotocol = \"stomp\"\n"),
            14,
            12,
            "unknown protocol `stomp`",
        ),
        (
            "an XMPP target at a URL that is not xmpp://",
            format!("{BASE}\n[target]\nurl = \"mqtt://x\"\nprotocol = \"xmpp\"\n"),
            13,
            7,
            "does not fit protocol \"xmpp\"",
        ),
        (
            "an XMPP username without the user",
            format!("{BASE}\n[target]\nurl = \"xmpp://127.0.0.1\"\n\n[target.xmpp]\nusername = \"bob\"\n"),
            16,
            12,
            "`username` must contain {{user}}",
        ),
        (
            "an unknown SASL mechanism",
            format!("{BASE}\n[target]\nurl = \"xmpp://127.0.0.1\"\n\n[target.xmpp]\nmechanisms = [\"PLAIN\", \"DIGEST-MD5\"]\n"),
            16,
            14,
            "unknown SASL mechanism `DIGEST-MD5`",
        ),
        (
            "mqtt qos 2",
            format!("{BASE}\n[target]\nurl = \"mqtt://x\"\n[target.mqtt]\nqos = 2\n"),
            15,
            7,
            "qos 2 is not supported",
        ),
        (
            "mqtt topic without the user",
            format!(
                "{BASE}\n[target]\nurl = \"mqtt://x\"\n[target.mqtt]\nuser_topic = \"chat/all\"\n"
            ),
            15,
            14,
            "must contain {{user}}",
        ),
        (
            "gateway template with an unknown placeholder",
            format!(
                "{BASE}\n[target]\nurl = \"ws://x\"\nprotocol = \"ws-gateway\"\n[target.gateway]\nsend = '{{\"to\":{{{{recipient}}}}}}'\nmessage = {{ match = {{ pointer = \"/t\", equals = \"m\" }}, id = \"/id\" }}\n"
            ),
            16,
            15,
            "unknown placeholder {{recipient}}",
        ),
        (
            "gateway text pattern that is not a regular expression",
            format!(
                "{BASE}\n[target]\nurl = \"ws://x\"\nprotocol = \"ws-gateway\"\n[target.gateway]\nformat = \"text\"\nsend = 'SAY {{{{to}}}}'\nmessage = {{ match = {{ pattern = '^MSG (?P<id>\\d+' }}, id = \"id\" }}\n"
            ),
            18,
            33,
            "is not a pattern: unclosed group",
        ),
        (
            "gateway text message reading a group its pattern lacks",
            format!(
                "{BASE}\n[target]\nurl = \"ws://x\"\nprotocol = \"ws-gateway\"\n[target.gateway]\nformat = \"text\"\nsend = 'SAY {{{{to}}}}'\nmessage = {{ match = {{ pattern = '^MSG (?P<ref>\\d+)' }}, id = \"id\" }}\n"
            ),
            18,
            33,
            "the pattern has no group named `id`",
        ),
        (
            "gateway pattern without format = text",
            format!(
                "{BASE}\n[target]\nurl = \"ws://x\"\nprotocol = \"ws-gateway\"\n[target.gateway]\nsend = 'x'\nmessage = {{ match = {{ pattern = '^MSG' }}, id = \"/id\" }}\n"
            ),
            17,
            33,
            "format = \"text\"",
        ),
        (
            "gateway template using a value no log-in step captures",
            format!(
                "{BASE}\n[target]\nurl = \"ws://x\"\nprotocol = \"ws-gateway\"\n[target.gateway]\nformat = \"text\"\nsend = 'SAY {{{{captured.session}}}} {{{{to}}}}'\nmessage = {{ match = {{ pattern = '^MSG (?P<id>\\d+)' }}, id = \"id\" }}\n\n[[target.gateway.login]]\nsend = 'HELLO'\nexpect = {{ pattern = '^WELCOME (?P<sid>\\w+)' }}\n"
            ),
            17,
            13,
            "captured are sid",
        ),
        (
            "webhook naming both a recipient and a conversation",
            format!(
                "{BASE}\n[target]\nurl = \"http://x\"\nprotocol = \"http\"\n[target.http]\nurl = \"/send\"\ndeliveries = \"webhook\"\n[target.http.webhook]\nrecipient = \"/to\"\nconversation = \"/room_id\"\nid = \"/id\"\n"
            ),
            20,
            16,
            "either `recipient`",
        ),
        (
            "webhook naming neither a recipient nor a conversation",
            format!(
                "{BASE}\n[target]\nurl = \"http://x\"\nprotocol = \"http\"\n[target.http]\nurl = \"/send\"\ndeliveries = \"webhook\"\n[target.http.webhook]\nid = \"/id\"\n"
            ),
            19,
            6,
            "needs `recipient`",
        ),
        (
            "signal request with a method that is not one",
            format!(
                "{BASE}\n[target]\nurl = \"http://x\"\nprotocol = \"http\"\n[target.http]\nurl = \"/send\"\n[target.http.signals]\nread = {{ method = \"GE T\", url = \"/read\" }}\n"
            ),
            18,
            19,
            "is not an HTTP method",
        ),
        (
            "gateway protocol without its table",
            format!("{BASE}\n[target]\nurl = \"ws://x\"\nprotocol = \"ws-gateway\"\n"),
            14,
            12,
            "needs a [target.gateway] table",
        ),
        (
            "no patterns",
            BASE.split("[[pattern]]")
                .next()
                .unwrap_or_default()
                .to_string(),
            1,
            1,
            "no [[pattern]]",
        ),
        (
            "bad name",
            BASE.replace("name = \"t\"", "name = \"a b/c\""),
            2,
            8,
            "`name` must be non-empty",
        ),
        (
            "storm share above one",
            format!(
                "{BASE}\n[[pattern]]\nkind = \"reconnect_storm\"\nat = \"5s\"\nfraction = 1.5\n"
            ),
            15,
            12,
            "`fraction` is the share of connected users dropped",
        ),
        (
            "storm after the run",
            format!("{BASE}\n[[pattern]]\nkind = \"reconnect_storm\"\nat = \"12s\"\n"),
            14,
            6,
            "pattern `reconnect_storm` is timed at `at` = 12s, when the run is over (its stages end at 10s)",
        ),
        (
            "campaign after the run",
            format!(
                "{BASE}\n[[pattern]]\nkind = \"business_broadcast\"\nrecipients = 5\nsend_rate = \"10/s\"\nstart = \"10s\"\n"
            ),
            12,
            1,
            "pattern `business_broadcast` is timed at `start` = 10s, when the run is over",
        ),
        (
            "unknown storm via",
            format!(
                "{BASE}\n[[pattern]]\nkind = \"reconnect_storm\"\nat = \"5s\"\nvia = \"fire\"\n"
            ),
            15,
            7,
            "unknown `via` `fire`: use \"cut\"",
        ),
        (
            "unknown throttle policy",
            format!(
                "{BASE}\n[[pattern]]\nkind = \"otp_burst\"\nrate = \"5/s\"\non_throttle = \"panic\"\n"
            ),
            15,
            15,
            "unknown `on_throttle` `panic`: use \"slow\"",
        ),
        (
            "unknown backoff",
            format!(
                "{BASE}\n[[pattern]]\nkind = \"reconnect_storm\"\nat = \"5s\"\nbackoff = \"panic\"\n"
            ),
            15,
            11,
            "unknown backoff `panic`",
        ),
        (
            "spike without a peak",
            format!("{BASE}\n[load]\nstages = [{{ ramp = \"5s\" }}, {{ spike = \"5s\" }}]\n"),
            13,
            28,
            "a spike needs `rate`",
        ),
        (
            "unknown diurnal curve",
            format!("{BASE}\n[load]\ndiurnal = \"martian\"\nstages = [{{ ramp = \"10s\" }}]\n"),
            13,
            11,
            "unknown diurnal curve `martian`",
        ),
    ]
}

#[test]
fn every_bad_file_names_line_column_and_fix() {
    for (what, text, line, column, words) in cases() {
        let err = chatload::scenario::parse(Path::new("bad.toml"), &text).expect_err(what);
        assert!(
            err.message.contains(words),
            "{what}: message `{}` lacks `{words}`",
            err.message
        );
        assert_eq!(
            (err.line, err.column),
            (line, column),
            "{what}: at {}:{} for `{}`",
            err.line,
            err.column,
            err.message
        );
        assert!(
            err.to_string()
                .starts_with(&format!("bad.toml:{line}:{column}: ")),
            "{what}: {err}"
        );
    }
}

#[test]
fn validate_exits_2_on_bad_files_and_0_on_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, BASE.replace(r#""10s""#, r#""5 junk""#)).unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, BASE).unwrap();
    let bin = env!("CARGO_BIN_EXE_chatload");
    let out = std::process::Command::new(bin)
        .arg("validate")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:3:12: `5 junk` is not a duration"),
        "{stderr}"
    );
    let out = std::process::Command::new(bin)
        .arg("validate")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(bin)
        .args(["validate", "/no/such/file.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /no/such/file.toml"));
}

#[test]
fn every_scenario_in_the_library_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = chatload::scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            // The CI scenario gates early; the others run to the end.
            assert_eq!(s.abort_on_fail, s.name == "ci-smoke", "{}", s.name);
            seen.push(s.name);
        }
    }
    seen.sort();
    // The README's table of scenarios names every file, and no other.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut listed: Vec<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `scenarios/"))
        .filter_map(|l| l.split_once(".toml` |"))
        .map(|(name, _)| name.to_string())
        .collect();
    listed.sort();
    listed.dedup();
    assert!(
        listed.len() >= 10,
        "the README lists the scenarios: {listed:?}"
    );
    assert_eq!(seen, listed, "the scenario library the README lists");
}
