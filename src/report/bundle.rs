//! The report bundle on disk: one folder per run with `summary.json`, `summary.md`,
//! `report.html`, `latency.hlog` and `junit.xml` (the thresholds as test cases). Owns
//! folder naming, checking `--out` before a run, writing (into a staging folder beside the
//! bundle's, renamed into place when whole, so a reader sees a whole bundle or none),
//! reading a bundle back (`chatload report`) and removing a bundle left half-written by a
//! process that must exit at once; not the content of each file.

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

/// A bundle being written: its staging folder (this process made it).
struct InProgress {
    dir: PathBuf,
}

/// Whether `out` can take a run's bundle, checked before anything is sent: not a file, not
/// a bundle already (unless `force`), and its parent folder creatable and writable (proved
/// by making and removing a staging folder there). The error is one sentence for the user.
pub fn check_out(out: &Path, force: bool) -> Result<(), String> {
    let shown = out.display();
    if out.exists() && !out.is_dir() {
        return Err(format!(
            "--out {shown} is a file, not a folder; give a folder for the report bundle"
        ));
    }
    if out.join("summary.json").exists() && !force {
        return Err(format!(
            "--out {shown} holds a report bundle already; choose another folder, or add --force to replace it"
        ));
    }
    let probe = staging_path(out, 0);
    let parent = probe.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .and_then(|_| std::fs::create_dir(&probe))
        .and_then(|_| std::fs::remove_dir(&probe))
        .map_err(|e| {
            format!(
                "--out {shown} cannot be written ({e} in {}); choose a writable folder",
                parent.display()
            )
        })
}

/// `.<name>.partial-<pid>-<n>` beside `dir`: on the same file system, so that renaming it
/// into place is atomic.
fn staging_path(dir: &Path, n: u32) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.partial-{}-{n}", std::process::id()))
}

/// Where a bundle is written while it is incomplete, and where it goes when whole.
#[derive(Debug, Clone)]
pub struct Staged {
    staging: PathBuf,
    target: Target,
}

#[derive(Debug, Clone)]
enum Target {
    /// `--out`: this folder (files of a bundle already there are replaced).
    Exact(PathBuf),
    /// A default folder: this name, or `-2`, `-3` … when taken.
    Unique(PathBuf),
}

impl Staged {
    /// A staging folder for a bundle bound for `out`, or for a folder of its own at `base`.
    pub fn new(out: Option<&Path>, base: &Path) -> std::io::Result<Staged> {
        let target = match out {
            Some(o) => Target::Exact(o.to_path_buf()),
            None => Target::Unique(base.to_path_buf()),
        };
        let at = match &target {
            Target::Exact(d) | Target::Unique(d) => d,
        };
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent)?;
        }
        for n in 0..1000 {
            let staging = staging_path(at, n);
            match std::fs::create_dir(&staging) {
                Ok(()) => return Ok(Staged { staging, target }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("1,000 staging folders exist already"))
    }

    /// The folder the files go into until [`publish`](Staged::publish).
    pub fn dir(&self) -> &Path {
        &self.staging
    }

    /// Where the bundle will be (for a default folder: its first choice of name).
    pub fn destination(&self) -> &Path {
        match &self.target {
            Target::Exact(d) | Target::Unique(d) => d,
        }
    }

    /// Moves the whole bundle into place and returns its folder.
    pub fn publish(self) -> Result<PathBuf, BundleError> {
        let err = |path: &Path| {
            let path = path.display().to_string();
            move |source| BundleError { path, source }
        };
        match &self.target {
            Target::Unique(base) => {
                let name = base.file_name().map(|n| n.to_string_lossy().into_owned());
                for n in 1..10_000u32 {
                    let dir = match (n, &name) {
                        (1, _) | (_, None) => base.clone(),
                        (n, Some(name)) => base.with_file_name(format!("{name}-{n}")),
                    };
                    // A folder of that name holding anything (another run's bundle) refuses
                    // the rename; an empty one is replaced.
                    match std::fs::rename(&self.staging, &dir) {
                        Ok(()) => return Ok(dir),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::AlreadyExists
                                    | std::io::ErrorKind::DirectoryNotEmpty
                            ) || dir.is_file() =>
                        {
                            continue;
                        }
                        Err(e) => return Err(err(&dir)(e)),
                    }
                }
                Err(err(base)(std::io::Error::other(
                    "9,999 folders of that name exist already",
                )))
            }
            Target::Exact(dir) => {
                if std::fs::rename(&self.staging, dir).is_ok() {
                    return Ok(dir.clone());
                }
                // The folder holds other files (or an older bundle, with --force): the
                // bundle's files are moved in one by one, each whole.
                std::fs::create_dir_all(dir).map_err(err(dir))?;
                for name in FILES {
                    let from = self.staging.join(name);
                    if from.exists() {
                        std::fs::rename(&from, dir.join(name)).map_err(err(&dir.join(name)))?;
                    } else {
                        let _ = std::fs::remove_file(dir.join(name));
                    }
                }
                let _ = std::fs::remove_dir_all(&self.staging);
                Ok(dir.clone())
            }
        }
    }

    /// Removes the staging folder and what is in it.
    pub fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

/// The bundle this process is writing, if any. Held while the bundle's last files are
/// written, so that an exit in between waits for a complete bundle.
static IN_PROGRESS: Mutex<Option<InProgress>> = Mutex::new(None);

fn in_progress() -> MutexGuard<'static, Option<InProgress>> {
    IN_PROGRESS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Notes that a bundle is about to be written into the staging folder `dir`, so that
/// [`abandon`] can take it away again.
pub fn begin(dir: &Path) {
    *in_progress() = Some(InProgress {
        dir: dir.to_path_buf(),
    });
}

/// For a process that must exit now (a second Ctrl-C): removes the bundle being written, if
/// it is not complete, so that no half-written folder is left; a complete bundle stays (it
/// is renamed into place before the slot is cleared). The staging folder goes whole.
pub fn abandon() {
    let mut slot = in_progress();
    if let Some(b) = slot.take() {
        let _ = std::fs::remove_dir_all(&b.dir);
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

/// Writes the whole bundle into its staging folder and moves it into place, with an exit at
/// once (a second Ctrl-C) held off until it is there; returns the bundle's folder. On a
/// failure the staging folder is removed and the error names the file.
pub fn write_staged(
    staged: Staged,
    summary: &Summary,
    hlog: Option<&[u8]>,
) -> Result<PathBuf, BundleError> {
    let mut slot = in_progress();
    let done = write_all(staged.dir(), summary, hlog).and_then(|_| staged.clone().publish());
    if done.is_err() {
        staged.discard();
    }
    *slot = None;
    // The staging folder is gone: name the file as the user asked for it.
    let (staging, destination) = (
        staged.dir().display().to_string(),
        staged.destination().display().to_string(),
    );
    done.map_err(|mut e| {
        e.path = e.path.replacen(&staging, &destination, 1);
        e
    })
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
    let summary = parse_summary(&json_path, &text)?;
    let hlog = std::fs::read(dir.join("latency.hlog")).unwrap_or_default();
    Ok((summary, hlog))
}

/// A bundle read back with its interval log, which must be there: merging a bundle without
/// it would silently leave its samples out of every percentile.
pub fn read_with_log(dir: &Path) -> Result<(Summary, Vec<u8>), String> {
    let (summary, _) = read(dir)?;
    let log_path = dir.join("latency.hlog");
    let hlog = std::fs::read(&log_path).map_err(|e| {
        format!(
            "cannot read {} ({e}); its latencies would be missing from the whole",
            log_path.display()
        )
    })?;
    Ok((summary, hlog))
}

/// `summary.json` text as a [`Summary`], refusing a schema this chatload does not know (a
/// newer one's fields would be dropped without a word).
pub fn parse_summary(path: &Path, text: &str) -> Result<Summary, String> {
    #[derive(serde::Deserialize)]
    struct Version {
        schema_version: Option<u64>,
    }
    let version = serde_json::from_str::<Version>(text)
        .map_err(|e| format!("{} is not a chatload summary: {e}", path.display()))?
        .schema_version;
    let known = u64::from(super::summary::SCHEMA_VERSION);
    match version {
        Some(v) if (1..=known).contains(&v) => {}
        Some(v) => {
            return Err(format!(
                "{} has schema_version {v}, which this chatload does not know (it reads 1 to {known}); use the chatload that wrote it",
                path.display()
            ));
        }
        None => {
            return Err(format!(
                "{} is not a chatload summary: it has no schema_version",
                path.display()
            ));
        }
    }
    serde_json::from_str(text)
        .map_err(|e| format!("{} is not a chatload summary: {e}", path.display()))
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
    use super::*;

    fn bundle_in(staged: &Staged) {
        for f in FILES {
            std::fs::write(staged.dir().join(f), f).unwrap();
        }
    }

    #[test]
    fn runs_in_the_same_second_get_folders_of_their_own() {
        let root = tempfile::tempdir().unwrap();
        let base = root
            .path()
            .join("reports")
            .join("quickstart-20261202T031332Z");
        let a = Staged::new(None, &base).unwrap();
        let b = Staged::new(None, &base).unwrap();
        assert_ne!(a.dir(), b.dir(), "each run stages in a folder of its own");
        bundle_in(&a);
        bundle_in(&b);
        // Until published, no folder of the bundle's name exists: a reader sees none.
        assert!(!base.exists());
        let first = a.publish().unwrap();
        let second = b.publish().unwrap();
        assert_eq!(first, base);
        assert_eq!(
            second,
            root.path()
                .join("reports")
                .join("quickstart-20261202T031332Z-2")
        );
        for d in [&first, &second] {
            for f in FILES {
                assert!(d.join(f).is_file());
            }
        }
        let left: Vec<_> = std::fs::read_dir(root.path().join("reports"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "no staging folder is left: {left:?}");
    }

    #[test]
    fn out_is_checked_before_a_run() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        assert!(check_out(&file, false).unwrap_err().contains("is a file"));
        let old = root.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("summary.json"), "{}").unwrap();
        assert!(check_out(&old, false).unwrap_err().contains("--force"));
        assert!(check_out(&old, true).is_ok());
        assert!(check_out(&root.path().join("new/deeper"), false).is_ok());
        // --out into an existing folder with other files: the bundle's files join them.
        let s = Staged::new(Some(&old), &old).unwrap();
        std::fs::write(old.join("notes.txt"), "mine").unwrap();
        bundle_in(&s);
        assert_eq!(s.publish().unwrap(), old);
        assert!(old.join("notes.txt").is_file() && old.join("junit.xml").is_file());
        assert_eq!(
            std::fs::read_to_string(old.join("summary.json")).unwrap(),
            "summary.json"
        );
    }
}
