//! SIGINT, SIGTERM and SIGHUP for the whole process. Installed before goose so goose's own
//! handler (which would call `exit(1)` on a second Ctrl-C, losing the report) never takes
//! over: the first signal asks the current run to stop and write its whole bundle; the
//! second exits at once, taking away a bundle that is not complete. Either way the exit
//! code is the shell's for the signal (128 + its number: 130, 143, 129), never a pass.
//! A signal is the process's for good: one that comes between two runs of one process (the
//! steps of a capacity search) stops the next run as it starts, and is never forgotten.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::SeqCst};
use tokio::sync::watch;

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
/// The number of the last signal received, and how many were seen (both set inside the
/// signal handler itself).
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SEEN: AtomicUsize = AtomicUsize::new(0);
static NOTIFY: OnceLock<watch::Sender<usize>> = OnceLock::new();

const HANDLED: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The exit code a shell gives a process ended by signal `signal`.
pub fn exit_code_for(signal: i32) -> i32 {
    128 + signal
}

/// The exit code for a run ended by the signals received so far (`None`: no signal).
pub fn exit_code() -> Option<i32> {
    (INTERRUPTS.load(SeqCst) > 0).then(|| exit_code_for(last_signal()))
}

/// The last signal received; SIGINT when it cannot be told.
pub fn last_signal() -> i32 {
    match LAST_SIGNAL.load(SeqCst) {
        0 => libc::SIGINT,
        n => n,
    }
}

/// The signal's name, for the run's summary ("SIGINT").
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "SIGINT",
    }
}

/// Installs the handlers once per process and returns a receiver that changes on each signal.
pub fn subscribe() -> watch::Receiver<usize> {
    let sender = NOTIFY.get_or_init(|| {
        let (tx, _) = watch::channel(0usize);
        // ctrlc takes the three signals (its "termination" feature) and runs this on a
        // thread of its own, where exiting and removing files is safe; holding its one
        // handler slot also keeps goose's handler out.
        let installed = ctrlc::set_handler(|| {
            let n = INTERRUPTS.fetch_add(1, SeqCst) + 1;
            // The chained handler below notes the signal just after ctrlc's own handler has
            // woken this thread: give it a moment to land.
            for _ in 0..100 {
                if SEEN.load(SeqCst) >= n {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let code = exit_code_for(last_signal());
            if n >= 2 {
                crate::report::bundle::abandon();
                eprintln!("\nchatload: second interrupt, exiting now without a report");
                std::process::exit(code);
            }
            eprintln!(
                "\nchatload: {}; finishing in-flight deliveries and writing the report (Ctrl-C again to quit at once)",
                name(last_signal())
            );
            if let Some(tx) = NOTIFY.get() {
                tx.send_replace(n);
            }
        });
        if let Err(e) = installed {
            eprintln!(
                "chatload: cannot install the Ctrl-C handler ({e}); Ctrl-C will stop the run without a report"
            );
        }
        // Registered after ctrlc's, so signal-hook's handler chains to ctrlc's and then notes
        // the signal: ctrlc cannot tell which signal came, and the exit code depends on it.
        for signal in HANDLED {
            // SAFETY: the action only stores to an atomic, which is async-signal-safe.
            let registered = unsafe {
                signal_hook_registry::register(signal, move || {
                    LAST_SIGNAL.store(signal, SeqCst);
                    SEEN.fetch_add(1, SeqCst);
                })
            };
            if let Err(e) = registered {
                eprintln!(
                    "chatload: cannot watch {} ({e}); a run it ends exits with 130",
                    name(signal)
                );
            }
        }
        tx
    });
    sender.subscribe()
}

/// Signals received so far in this process.
pub fn interrupts() -> usize {
    INTERRUPTS.load(SeqCst)
}
