//! A sleep precise to microseconds inside the async runtime, for the pacer: a Linux timerfd
//! registered with tokio's reactor. Owns the timer and its wait; what is paced is the
//! dispatcher's.
//!
//! Why not the others: tokio's timer rounds to whole milliseconds, an error that would show in
//! every latency measured from an intended time. A thread of its own sleeping with
//! `std::thread::sleep` (what the pacer was) is precise, but every order it hands over then
//! crosses threads: at 3,000 msg/s its sleeps, its wake-ups of the runtime and the context
//! switches they cost took 17% of the client's CPU (`perf record`, one worker). A timerfd
//! wakes the worker's own `epoll_wait` at the intended moment (hrtimer precision), and the
//! order goes to its user on the same thread.

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

pub struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
}

impl PreciseTimer {
    /// A disarmed timer on the monotonic clock (the clock `Instant` reads). Needs a tokio
    /// runtime with I/O enabled.
    pub fn new() -> io::Result<PreciseTimer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the `OwnedFd` moves into the `AsyncFd` and is neither closed nor swapped
        // while it is registered; it is dropped with the registration.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(PreciseTimer { fd })
    }

    /// Waits `duration` from now. Cancel-safe: the next sleep re-arms the timer.
    ///
    /// The expiry count is never read: tokio registers the descriptor edge-triggered and each
    /// expiry is a new edge, so a read would only be one more system call per sleep. A
    /// readiness left over from a cancelled sleep is told apart by the clock.
    pub async fn sleep(&self, duration: Duration) -> io::Result<()> {
        let deadline = Instant::now() + duration;
        // An all-zero value would disarm the timer instead of firing at once.
        let duration = duration.max(Duration::from_nanos(1));
        let at = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(duration.subsec_nanos()),
            },
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &at)?;
        loop {
            let mut ready = self.fd.readable().await?;
            ready.clear_ready();
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleeps_at_least_as_long_as_asked_and_not_a_millisecond_more() {
        let timer = PreciseTimer::new().unwrap();
        // tokio's timer would round each of these up to a whole millisecond or more.
        let mut over = Vec::new();
        for micros in [50u64, 200, 700, 1_300] {
            let asked = Duration::from_micros(micros);
            let start = Instant::now();
            timer.sleep(asked).await.unwrap();
            let slept = start.elapsed();
            assert!(slept >= asked, "slept {slept:?} for {asked:?}");
            over.push(slept - asked);
        }
        // A loaded CI machine may hold one sleep off the CPU; the median may not be late.
        over.sort();
        assert!(over[1] < Duration::from_micros(900), "overshoots {over:?}");
    }

    #[tokio::test]
    async fn a_cancelled_sleep_leaves_no_early_wake_up_for_the_next() {
        let timer = PreciseTimer::new().unwrap();
        // Armed for 1 µs and dropped after it has surely expired, unread.
        let cut = tokio::time::timeout(Duration::ZERO, timer.sleep(Duration::from_micros(1)));
        let _ = cut.await;
        std::thread::sleep(Duration::from_millis(2));
        let start = Instant::now();
        timer.sleep(Duration::from_millis(3)).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(3));
    }
}
