//! Keeps goose's console output out of chatload's: a logger that swallows goose's records
//! (installed first, so goose's stdout logger never is) and a guard that points stdout at
//! /dev/null while goose runs, because goose prints "N users launched." unconditionally.

use std::sync::Once;

struct Silent;

impl log::Log for Silent {
    fn enabled(&self, _: &log::Metadata) -> bool {
        std::env::var_os("CHATLOAD_GOOSE_LOG").is_some()
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) && record.level() <= log::Level::Info {
            eprintln!("goose {}: {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

pub fn install_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if log::set_boxed_logger(Box::new(Silent)).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    });
}

/// While any is alive, the process's stdout goes to /dev/null; restored when the last one
/// drops. Counted, so runs that overlap in one process (tests, capacity steps) neither
/// restore stdout under each other nor leave it muted.
pub struct StdoutMuted {
    _private: (),
}

/// How many mutes are alive, and the real stdout saved by the first.
#[cfg(unix)]
static MUTED: std::sync::Mutex<(usize, Option<i32>)> = std::sync::Mutex::new((0, None));

impl StdoutMuted {
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            let mut muted = MUTED.lock().unwrap_or_else(|p| p.into_inner());
            if muted.0 == 0 {
                muted.1 = mute_stdout();
            }
            muted.0 += 1;
        }
        StdoutMuted { _private: () }
    }
}

/// Points fd 1 at /dev/null; returns the saved descriptor of the real stdout.
#[cfg(unix)]
fn mute_stdout() -> Option<i32> {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: plain descriptor calls; every result is checked before use.
    unsafe {
        let saved = libc::dup(1);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if saved < 0 || null < 0 {
            if saved >= 0 {
                libc::close(saved);
            }
            if null >= 0 {
                libc::close(null);
            }
            return None;
        }
        libc::dup2(null, 1);
        libc::close(null);
        Some(saved)
    }
}

impl Default for StdoutMuted {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StdoutMuted {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            let mut muted = MUTED.lock().unwrap_or_else(|p| p.into_inner());
            muted.0 = muted.0.saturating_sub(1);
            if muted.0 == 0
                && let Some(saved) = muted.1.take()
            {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                // SAFETY: `saved` is a descriptor we duplicated and still own.
                unsafe {
                    libc::dup2(saved, 1);
                    libc::close(saved);
                }
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn overlapping_mutes_restore_stdout_once_the_last_ends() {
        let identity = |fd: i32| {
            // SAFETY: fstat on a descriptor with a zeroed out-buffer of the right type.
            unsafe {
                let mut st: libc::stat = std::mem::zeroed();
                assert_eq!(libc::fstat(fd, &mut st), 0);
                (st.st_dev, st.st_ino)
            }
        };
        let real = identity(1);
        let a = StdoutMuted::new();
        let b = StdoutMuted::new();
        assert_ne!(identity(1), real, "muted");
        drop(a);
        assert_ne!(identity(1), real, "still muted while b lives");
        drop(b);
        assert_eq!(identity(1), real, "restored after the last");
    }
}
