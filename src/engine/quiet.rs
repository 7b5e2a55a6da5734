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

/// While alive, the process's stdout goes to /dev/null. Restored on drop.
pub struct StdoutMuted {
    #[cfg(unix)]
    saved: Option<i32>,
}

impl StdoutMuted {
    pub fn new() -> Self {
        #[cfg(unix)]
        {
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
                    return StdoutMuted { saved: None };
                }
                libc::dup2(null, 1);
                libc::close(null);
                StdoutMuted { saved: Some(saved) }
            }
        }
        #[cfg(not(unix))]
        StdoutMuted {}
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
        if let Some(saved) = self.saved.take() {
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
