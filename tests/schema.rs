//! The JSON Schema stays in step with the parser: for every table of the format, the keys the
//! schema lists are exactly the keys the parser accepts, and the schema file the scenarios
//! point at is what `chatload schema` prints today.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

const VALID: &str = r#"[scenario]
name = "s"
duration = "10s"

[population.consumers]
users = 10

[[pattern]]
kind = "direct_chat"
conversations = "1/min per user"

[load]
stages = [{ ramp = "5s" }, { hold = "5s" }]

[target]
delay = "1ms"
"#;

fn schema() -> Value {
    serde_json::from_str(&chatload::scenario::schema::json()).unwrap()
}

fn schema_keys(schema: &Value, def: Option<&str>) -> BTreeSet<String> {
    let node = match def {
        Some(d) => &schema["$defs"][d],
        None => schema,
    };
    node["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{def:?} has properties"))
        .keys()
        .cloned()
        .collect()
}

/// The keys the parser names when it refuses an unknown one in the table that `marker` opens.
fn parser_keys(insert_after: &str, line: &str) -> BTreeSet<String> {
    let text = VALID.replacen(insert_after, &format!("{insert_after}{line}"), 1);
    assert_ne!(text, VALID, "marker {insert_after:?} found");
    let err = chatload::scenario::parse(Path::new("s.toml"), &text)
        .expect_err("the unknown key is refused");
    let list = err
        .message
        .split("expected")
        .nth(1)
        .unwrap_or_else(|| panic!("a key list in: {}", err.message));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn schema_keys_are_the_parser_keys_for_every_table() {
    let s = schema();
    let cases = [
        (None, "[scenario]\n", "zzz = 1\n[x]\n"),
        (Some("ScenarioSection"), "name = \"s\"\n", "zzz = 1\n"),
        (Some("ConsumersSection"), "users = 10\n", "zzz = 1\n"),
        (
            Some("PatternSection"),
            "kind = \"direct_chat\"\n",
            "zzz = 1\n",
        ),
        (Some("TargetSection"), "delay = \"1ms\"\n", "zzz = 1\n"),
        (
            Some("LoadSection"),
            "stages = [{ ramp = \"5s\" }, { hold = \"5s\" }]\n",
            "zzz = 1\n",
        ),
        (Some("StageSection"), "{ ramp = \"5s\"", ", zzz = 1"),
    ];
    for (def, after, line) in cases {
        let want = schema_keys(&s, def);
        let got = if def.is_none() {
            let err = chatload::scenario::parse(Path::new("s.toml"), &format!("zzz = 1\n{VALID}"))
                .unwrap_err();
            err.message
                .split("expected")
                .nth(1)
                .unwrap()
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        } else {
            parser_keys(after, line)
        };
        assert_eq!(got, want, "keys of {def:?}");
    }
}

#[test]
fn the_committed_schema_is_current_and_every_scenario_points_at_it() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let committed = std::fs::read_to_string(dir.join("chatload.schema.json")).unwrap();
    assert_eq!(
        committed.trim(),
        chatload::scenario::schema::json().trim(),
        "run `chatload schema > scenarios/chatload.schema.json`"
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("#:schema ./chatload.schema.json\n"),
                "{} points at the schema",
                path.display()
            );
        }
    }
}

#[test]
fn completions_are_printed_for_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("validate") && text.contains("plan") && text.contains("serve"),
            "{shell}"
        );
    }
}
