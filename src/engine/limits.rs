//! Process limits a load generator needs: enough file descriptors for every connection
//! (and the embedded server's side of each). Owns raising them and saying when they fall short.

/// Raises the open-file limit as far as allowed (to `fs.nr_open` when running as root)
/// and returns the soft limit now in force.
pub fn raise_open_files() -> u64 {
    #[cfg(unix)]
    {
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1 << 20);
        // SAFETY: getrlimit/setrlimit on a local struct; results are checked.
        unsafe {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1024;
            }
            let want = libc::rlimit {
                rlim_cur: ceiling as libc::rlim_t,
                rlim_max: ceiling as libc::rlim_t,
            };
            if lim.rlim_max < want.rlim_max && libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return ceiling;
            }
            if lim.rlim_cur < lim.rlim_max {
                let soft = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
                    return lim.rlim_max;
                }
            }
            lim.rlim_cur
        }
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}
