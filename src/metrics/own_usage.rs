//! What chatload's own process used during a run: CPU seconds in its own code and in the
//! kernel on its behalf, from the first user's connect to the end, and its peak resident
//! memory. So a run says what the load generator cost — CPU per message, memory per
//! connected user, the figures a fleet of generators is planned from — without a profiler
//! beside it. Owns reading (`getrusage`) and subtracting; not what a report makes of them.
//!
//! The process is the whole of chatload: with the embedded server (no `--target`) the
//! server's work and memory are in these figures too, which the report says.

use super::round3;
use serde::{Deserialize, Serialize};

/// chatload's process over one run: the difference of two readings, and the peak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OwnUsage {
    /// CPU seconds in chatload's own code.
    pub cpu_user_s: f64,
    /// CPU seconds the kernel spent for chatload (system calls, its sockets' TCP work).
    pub cpu_system_s: f64,
    /// The most memory the process held resident at once, since it started (bytes).
    pub peak_rss_bytes: u64,
}

impl OwnUsage {
    /// The process's use so far; `None` where the system does not say.
    pub fn read() -> Option<OwnUsage> {
        // SAFETY: getrusage fills the struct it is given and reads nothing else.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
            return None;
        }
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(OwnUsage {
            cpu_user_s: seconds(u.ru_utime),
            cpu_system_s: seconds(u.ru_stime),
            // Linux counts `ru_maxrss` in KiB.
            peak_rss_bytes: u64::try_from(u.ru_maxrss).unwrap_or(0).saturating_mul(1024),
        })
    }

    /// What was used between `self` (earlier) and `later`; the peak is `later`'s.
    pub fn until(self, later: OwnUsage) -> OwnUsage {
        OwnUsage {
            cpu_user_s: round3((later.cpu_user_s - self.cpu_user_s).max(0.0)),
            cpu_system_s: round3((later.cpu_system_s - self.cpu_system_s).max(0.0)),
            peak_rss_bytes: later.peak_rss_bytes,
        }
    }

    /// Segments of a split run, each a process of its own: CPU and peak memory summed (the
    /// fleet's, an upper bound on what it held at once).
    pub fn add(&mut self, other: &OwnUsage) {
        self.cpu_user_s = round3(self.cpu_user_s + other.cpu_user_s);
        self.cpu_system_s = round3(self.cpu_system_s + other.cpu_system_s);
        self.peak_rss_bytes += other.peak_rss_bytes;
    }

    pub fn cpu_s(&self) -> f64 {
        self.cpu_user_s + self.cpu_system_s
    }

    /// The CPU as cores busy over `seconds` (to 3 decimals); `None` for no time.
    pub fn cores_over(&self, seconds: f64) -> Option<f64> {
        (seconds > 0.0).then(|| round3(self.cpu_s() / seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_spent_between_two_readings_is_counted_and_the_peak_kept() {
        let before = OwnUsage::read().expect("getrusage answers on Linux");
        // A fixed amount of work (about 0.1 s of one core), and 32 MiB held resident.
        let held = vec![1u8; 32 << 20];
        let mut x = 0u64;
        for _ in 0..100_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        std::hint::black_box((x, held.iter().step_by(4096).map(|b| *b as u64).sum::<u64>()));
        let used = before.until(OwnUsage::read().expect("getrusage"));
        assert!(used.cpu_user_s > 0.0, "{used:?}");
        assert!(used.cpu_s() < 60.0, "{used:?}");
        assert!(used.peak_rss_bytes >= 32 << 20, "{used:?}");
    }

    #[test]
    fn segments_add_up() {
        let mut a = OwnUsage {
            cpu_user_s: 1.5,
            cpu_system_s: 2.25,
            peak_rss_bytes: 10 << 20,
        };
        a.add(&OwnUsage {
            cpu_user_s: 0.5,
            cpu_system_s: 0.75,
            peak_rss_bytes: 6 << 20,
        });
        assert_eq!((a.cpu_s(), a.peak_rss_bytes), (5.0, 16 << 20));
        let earlier = OwnUsage {
            cpu_user_s: 1.0,
            cpu_system_s: 1.0,
            peak_rss_bytes: 1,
        };
        let later = OwnUsage {
            cpu_user_s: 3.5,
            cpu_system_s: 1.25,
            peak_rss_bytes: 99,
        };
        assert_eq!(
            earlier.until(later),
            OwnUsage {
                cpu_user_s: 2.5,
                cpu_system_s: 0.25,
                peak_rss_bytes: 99
            }
        );
    }
}
