//! A slice of one CPU core for a process under test, through a cgroup's CPU quota (cgroup v2
//! `cpu.max`, or v1 `cpu.cfs_quota_us`): the process may run 1 ms (the kernel's smallest
//! quota) of every period of `100 / percent` ms, e.g. 1 ms of every 33 ms for 3%.
//! A broker limited so has a known, steady ceiling on its throughput, set by its own CPU cost
//! per message, while its neighbours stay free. Needs root and a writable cgroup hierarchy;
//! without one the test says it skipped (and fails under CI).

use std::path::PathBuf;

const QUOTA_US: u64 = 1_000;

pub struct CpuSlice {
    dir: PathBuf,
}

impl CpuSlice {
    pub fn new(percent: u64) -> Option<CpuSlice> {
        let name = format!("chatload-test-{}", std::process::id());
        let (quota, period) = (QUOTA_US, QUOTA_US * 100 / percent.max(1));
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let made = if v2.join("cgroup.controllers").is_file() {
            let dir = v2.join(&name);
            // The cpu controller must be enabled for the children of the root.
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join("cpu.max"), format!("{quota} {period}")))
                .map(|_| dir)
        } else {
            let dir = v2.join("cpu").join(&name);
            std::fs::create_dir_all(&dir)
                .and_then(|_| std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string()))
                .and_then(|_| std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()))
                .map(|_| dir)
        };
        match made {
            Ok(dir) => Some(CpuSlice { dir }),
            Err(e) => {
                let why = format!(
                    "cannot limit a process's CPU through a cgroup here ({e}); run as root with /sys/fs/cgroup writable"
                );
                assert!(std::env::var_os("CI").is_none(), "{why}");
                eprintln!("skipping: {why}");
                None
            }
        }
    }

    /// Moves the process (all its threads) into the slice.
    pub fn add(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .expect("move the process into its CPU slice");
    }
}

impl Drop for CpuSlice {
    fn drop(&mut self) {
        // Empty by now (its process was stopped first), so it can go.
        let _ = std::fs::remove_dir(&self.dir);
    }
}
