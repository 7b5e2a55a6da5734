//! Growing the process's descriptor table before a run rather than during it. Linux grows
//! the table by doubling as descriptors are opened, and in a process of more than one thread
//! each growth waits for an RCU grace period (`expand_fdtable` calls `synchronize_rcu`):
//! `perf trace` showed the `socket()` that opened descriptor 256 take 12.5 ms and the one
//! that opened 512 take 31.8 ms, while the runtime thread that called it served no one (a
//! client's sends went late, a server's answers waited). Both sides reserve the table once at
//! start; owns only that, not the file limit (each side raises or reads that itself).

/// Grows the descriptor table to hold descriptors up to `fds` (below the soft file limit),
/// by opening a descriptor there and closing it again. Best effort: on any failure the
/// table simply grows later, as it would have. Returns the descriptor number the table now
/// reaches, if it grew.
pub fn reserve(fds: u64) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    reserve_below(fds, lim.rlim_cur)
}

/// [`reserve`] below `limit`.
fn reserve_below(fds: u64, limit: u64) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let top = fds.min(limit.saturating_sub(1)).min(i32::MAX as u64);
    // The table starts with room for 64 (BITS_PER_LONG); nothing to gain below that.
    if top < 64 {
        return None;
    }
    let null = std::fs::File::open("/dev/null").ok()?;
    // SAFETY: F_DUPFD takes the lowest free descriptor from `top` up, so it closes nothing
    // the process holds (unlike dup2), whatever other threads open meanwhile; the copy is
    // closed at once.
    unsafe {
        let copy = libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top as libc::c_int);
        if copy < 0 {
            return None;
        }
        libc::close(copy);
        Some(copy as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open(fd: i32) -> bool {
        // SAFETY: reads flags only.
        unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
    }

    #[test]
    fn reserves_below_the_limit_and_leaves_nothing_open() {
        assert_eq!(reserve_below(10, 1_000), None);
        let top = reserve_below(700, 1_000).expect("a free descriptor at 700");
        assert_eq!(top, 700);
        assert!(!is_open(700));
        // Capped by the limit: never at or past it.
        assert_eq!(reserve_below(5_000, 800), Some(799));
        assert!(!is_open(799));
    }

    #[test]
    fn never_takes_a_descriptor_already_open() {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: 900 is this test's own number; closed below.
        assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), 900) }, 900);
        assert_eq!(reserve_below(900, 10_000), Some(901));
        assert!(is_open(900) && !is_open(901));
        // SAFETY: the copy made above.
        unsafe { libc::close(900) };
    }
}
