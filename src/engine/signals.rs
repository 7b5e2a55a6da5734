//! Ctrl-C and SIGTERM for the whole process. Installed before goose so goose's own handler
//! (which would call `exit(1)` on a second Ctrl-C, losing the report) never takes over:
//! the first signal asks the current run to stop and write what it has; the second exits.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use tokio::sync::watch;

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static NOTIFY: OnceLock<watch::Sender<usize>> = OnceLock::new();

/// Exit code for a run ended by a second Ctrl-C (128 + SIGINT).
pub const HARD_EXIT_CODE: i32 = 130;

/// Installs the handler once per process and returns a receiver that changes on each signal.
pub fn subscribe() -> watch::Receiver<usize> {
    let sender = NOTIFY.get_or_init(|| {
        let (tx, _) = watch::channel(0usize);
        let installed = ctrlc::set_handler(|| {
            let n = INTERRUPTS.fetch_add(1, SeqCst) + 1;
            if n >= 2 {
                eprintln!("\nchatload: second interrupt, exiting now without a report");
                std::process::exit(HARD_EXIT_CODE);
            }
            eprintln!("\nchatload: interrupted; finishing in-flight deliveries and writing the report (Ctrl-C again to quit at once)");
            if let Some(tx) = NOTIFY.get() {
                tx.send_replace(n);
            }
        });
        if let Err(e) = installed {
            eprintln!("chatload: cannot install the Ctrl-C handler ({e}); Ctrl-C will stop the run without a report");
        }
        tx
    });
    sender.subscribe()
}

/// Signals received so far in this process.
pub fn interrupts() -> usize {
    INTERRUPTS.load(SeqCst)
}

/// Forgets earlier interrupts (a new run in the same process starts clean).
pub fn reset() {
    INTERRUPTS.store(0, SeqCst);
    if let Some(tx) = NOTIFY.get() {
        tx.send_replace(0);
    }
}
