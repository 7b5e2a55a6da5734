//! The Kubernetes manifests in deploy/kubernetes/: valid against the Kubernetes schemas
//! (kubernetes-validate, offline, strict), consistent with each other, and running a
//! scenario chatload accepts with flags chatload has.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// Runs kubernetes-validate, or returns None where it is not installed outside CI.
fn validate(files: &[PathBuf]) -> Option<std::process::Output> {
    match Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--no-warn"])
        .args(files)
        .output()
    {
        Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("No module named") => Some(o),
        other => {
            let e = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).to_string(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must validate the manifests (pip install kubernetes-validate): {e}"
            );
            eprintln!("skipped: kubernetes-validate is not installed here ({e})");
            None
        }
    }
}

#[test]
fn manifests_pass_the_kubernetes_schemas_and_a_broken_one_does_not() {
    let files = manifests();
    assert_eq!(files.len(), 4, "{files:?}");
    let Some(o) = validate(&files) else { return };
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}");
    assert_eq!(out.matches("passed").count(), 4, "{out}");
    // The validator is not a rubber stamp: a misspelt field fails it.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("job.yaml");
    let text = std::fs::read_to_string(dir().join("job-segments.yaml")).unwrap();
    std::fs::write(&broken, text.replace("completionMode:", "completionMod:")).unwrap();
    let Some(o) = validate(&[broken]) else { return };
    assert!(!o.status.success(), "a misspelt field must fail");
}

#[test]
fn the_segment_job_agrees_with_itself_and_with_chatload() {
    let job = std::fs::read_to_string(dir().join("job-segments.yaml")).unwrap();
    let value = |key: &str| -> String {
        job.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in the Job"))
            .trim()
            .trim_matches('"')
            .to_string()
    };
    let n = value("completions:");
    assert_eq!(value("parallelism:"), n);
    let segments = job
        .split("- name: SEGMENTS")
        .nth(1)
        .and_then(|rest| rest.lines().nth(1))
        .and_then(|l| l.trim().strip_prefix("value:"))
        .map(|v| v.trim().trim_matches('"').to_string());
    assert_eq!(
        segments.as_deref(),
        Some(n.as_str()),
        "SEGMENTS = completions"
    );
    assert_eq!(value("completionMode:"), "Indexed");
    // The flags the Jobs use exist.
    let help = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--segment",
        "--start-at",
        "--target",
        "--webhook-listen",
        "--out",
        "--quiet",
    ] {
        assert!(job.contains(flag) && help.contains(flag), "{flag}");
    }
    let start = value("value: \"2026").to_string();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&format!("2026{start}")).is_ok(),
        "{start}"
    );
    let merge = std::fs::read_to_string(dir().join("job-merge.yaml")).unwrap();
    assert!(merge.contains("chatload merge /bundles/${RUN}/seg-*"));
}

#[test]
fn the_configmaps_scenario_is_one_chatload_accepts_and_can_split() {
    let cm = std::fs::read_to_string(dir().join("configmap-scenario.yaml")).unwrap();
    let body: String = cm
        .split("scenario.toml: |\n")
        .nth(1)
        .expect("a scenario.toml key")
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim()))
        .collect::<Vec<_>>()
        .join("\n");
    let s = chatload::scenario::parse(Path::new("scenario.toml"), &body)
        .unwrap_or_else(|e| panic!("{e}"));
    let split = chatload::workload::Segment::parse("3/4").unwrap();
    assert_eq!(chatload::engine::segment_refusal(&s, split), None);
}
