//! The report bundle on disk: one folder per run with `summary.json` and `summary.md`.
//! Owns folder naming and writing; not the content of each file.

use super::summary::Summary;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot write the report to {path}: {source}; check that the folder is writable or choose another with --out"
)]
pub struct BundleError {
    pub path: String,
    pub source: std::io::Error,
}

/// `reports/<scenario>-<UTC timestamp>/` under `root`.
pub fn default_dir(root: &Path, scenario: &str, started: chrono::DateTime<chrono::Utc>) -> PathBuf {
    root.join(format!("{scenario}-{}", started.format("%Y%m%dT%H%M%SZ")))
}

pub fn write(dir: &Path, summary: &Summary) -> Result<(), BundleError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| BundleError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let json = serde_json::to_string_pretty(summary).map_err(|e| BundleError {
        path: dir.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let json_path = dir.join("summary.json");
    std::fs::write(&json_path, json + "\n").map_err(err(&json_path))?;
    let md_path = dir.join("summary.md");
    std::fs::write(&md_path, super::markdown::render(summary)).map_err(err(&md_path))?;
    Ok(())
}
