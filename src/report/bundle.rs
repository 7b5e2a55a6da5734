//! The report bundle on disk: one folder per run with `summary.json`, `summary.md`,
//! `report.html`, `latency.hlog` and `junit.xml` (the thresholds as test cases). Owns
//! folder naming, writing, reading a bundle back (`chatload report`) and removing a bundle
//! left half-written by a process that must exit at once; not the content of each file.

use super::summary::Summary;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The files of a bundle.
pub const FILES: [&str; 5] = [
    "summary.json",
    "summary.md",
    "report.html",
    "latency.hlog",
    "junit.xml",
];

/// A bundle being written: its folder, and whether this process made the folder.
struct InProgress {
    dir: PathBuf,
    made_folder: bool,
}

/// The bundle this process is writing, if any. Held while the bundle's last files are
/// written, so that an exit in between waits for a complete bundle.
static IN_PROGRESS: Mutex<Option<InProgress>> = Mutex::new(None);

fn in_progress() -> MutexGuard<'static, Option<InProgress>> {
    IN_PROGRESS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Notes that a bundle is about to be written into `dir`, so that [`abandon`] can take it
/// away again; `made` says whether this process made the folder (`None`: not yet known, so
/// whether it exists now tells).
pub fn begin(dir: &Path, made: Option<bool>) {
    *in_progress() = Some(InProgress {
        dir: dir.to_path_buf(),
        made_folder: made.unwrap_or_else(|| !dir.exists()),
    });
}

/// Makes a folder for one run at `base`, or at `base-2`, `base-3`, … when another run (one
/// started in the same second, say) has that name already: each run gets its own, and two
/// runs never write into one folder.
pub fn claim_dir(base: &Path) -> std::io::Result<PathBuf> {
    if let Some(parent) = base.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned());
    for n in 1..10_000u32 {
        let dir = match (n, &name) {
            (1, _) | (_, None) => base.to_path_buf(),
            (n, Some(name)) => base.with_file_name(format!("{name}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "{} and 9,999 folders beside it exist already",
        base.display()
    )))
}

/// For a process that must exit now (a second Ctrl-C): removes the bundle being written, if
/// it is not complete, so that no half-written folder is left; a complete bundle stays.
/// Files of other names in a folder given with `--out` are left alone.
pub fn abandon() {
    let mut slot = in_progress();
    if let Some(b) = slot.take() {
        for name in FILES {
            let _ = std::fs::remove_file(b.dir.join(name));
        }
        if b.made_folder {
            let _ = std::fs::remove_dir(&b.dir);
        }
    }
    // Keep the lock: nothing may write into the folder between here and the exit.
    std::mem::forget(slot);
}

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

/// Writes the whole bundle: the run's summary and its interval log (`None`: the log was
/// streamed into the folder during the run).
pub fn write(dir: &Path, summary: &Summary, hlog: Option<&[u8]>) -> Result<(), BundleError> {
    let mut slot = in_progress();
    let written = write_all(dir, summary, hlog);
    // Complete (or failed with a reason the caller reports): nothing to take away any more.
    *slot = None;
    written
}

fn write_all(dir: &Path, summary: &Summary, hlog: Option<&[u8]>) -> Result<(), BundleError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| BundleError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let hlog_path = dir.join("latency.hlog");
    let streamed;
    let log = match hlog {
        Some(bytes) => {
            std::fs::write(&hlog_path, bytes).map_err(err(&hlog_path))?;
            bytes
        }
        None => {
            streamed = std::fs::read(&hlog_path).unwrap_or_default();
            &streamed[..]
        }
    };
    write_reports(dir, summary, log)
}

/// (Re)writes everything derived from the summary and the log: JSON, Markdown, HTML, JUnit.
pub fn write_reports(dir: &Path, summary: &Summary, hlog: &[u8]) -> Result<(), BundleError> {
    let log = crate::metrics::hlog::digest(hlog).unwrap_or_default();
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, super::html::render(summary, &log)).map_err(|source| {
        BundleError {
            path: html_path.display().to_string(),
            source,
        }
    })?;
    write_summary(dir, summary)
}

/// Reads a bundle back: its summary and its interval log (empty if it has none).
pub fn read(dir: &Path) -> Result<(Summary, Vec<u8>), String> {
    let json_path = dir.join("summary.json");
    let text = std::fs::read_to_string(&json_path).map_err(|e| {
        format!(
            "cannot read {}: {e}; give the folder of a chatload run",
            json_path.display()
        )
    })?;
    let summary: Summary = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a chatload summary: {e}", json_path.display()))?;
    let hlog = std::fs::read(dir.join("latency.hlog")).unwrap_or_default();
    Ok((summary, hlog))
}

fn write_summary(dir: &Path, summary: &Summary) -> Result<(), BundleError> {
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
    let junit_path = dir.join("junit.xml");
    std::fs::write(&junit_path, super::junit::render(summary)).map_err(err(&junit_path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_in_the_same_second_get_folders_of_their_own() {
        let root = tempfile::tempdir().unwrap();
        let base = root
            .path()
            .join("reports")
            .join("quickstart-20261202T031332Z");
        let first = super::claim_dir(&base).unwrap();
        let second = super::claim_dir(&base).unwrap();
        assert_eq!(first, base);
        assert_eq!(
            second,
            root.path()
                .join("reports")
                .join("quickstart-20261202T031332Z-2")
        );
        assert!(first.is_dir() && second.is_dir());
    }
}
