//! Where consumers' sessions run: shard 0 is the run's own runtime (its one worker), every
//! other shard a thread of its own with a single-threaded runtime (its own I/O driver and
//! timer). A consumer stays on one shard for the whole run (by user index), its connections
//! registered with that shard's driver, and each shard has its own pacer
//! (`dispatcher`), so one user's orders and frames never wake another thread. When the
//! embedded server runs in the process it has shard 0 to itself (it costs about what the
//! users do per frame), and the users share the others. Owns the threads and their lifetime;
//! not which users exist or what they do.
//!
//! Why: with one multi-threaded runtime of two workers, each frame often woke the other
//! worker to share it (tokio's work-stealing hand-off and its single I/O driver): 1.2
//! `futex` calls and 2.4 context switches per message at 10,000 messages/s against 1.3
//! switches and no `futex` with one worker (docs/performance.md, "Where the second
//! worker's cost goes").

use std::future::Future;
use std::sync::Mutex;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The run's shards; dropping it ends the extra threads' runtimes (their tasks are dropped).
pub struct Shards {
    extra: Vec<Extra>,
    /// Users stay off shard 0 (the embedded server's).
    users_off_first: bool,
}

struct Extra {
    handle: Handle,
    /// Taken (dropped) to end the thread's runtime.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Shards {
    /// Shard 0 alone: everything on the calling runtime.
    pub fn one() -> Shards {
        Shards {
            extra: Vec::new(),
            users_off_first: false,
        }
    }

    /// `count` shards: the calling runtime plus `count - 1` threads; with `server_first`,
    /// users only on the threads (shard 0 runs the embedded server).
    pub fn start(count: usize, server_first: bool) -> std::io::Result<Shards> {
        let mut extra = Vec::with_capacity(count.saturating_sub(1));
        for i in 1..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("chatload-shard-{i}"))
                .spawn(move || {
                    // Returns when `stop` is dropped; the runtime's tasks are dropped with it.
                    let _ = runtime.block_on(stopped);
                })?;
            extra.push(Extra {
                handle,
                stop: Mutex::new(Some(stop)),
            });
        }
        Ok(Shards {
            users_off_first: server_first && !extra.is_empty(),
            extra,
        })
    }

    pub fn count(&self) -> usize {
        self.extra.len() + 1
    }

    /// The shard user `user` lives on.
    pub fn of(&self, user: u32) -> usize {
        let user = user as usize;
        if self.users_off_first {
            1 + user % self.extra.len()
        } else {
            user % self.count()
        }
    }

    /// The shards users live on, each with its own pacer.
    pub fn with_users(&self) -> std::ops::Range<usize> {
        usize::from(self.users_off_first)..self.count()
    }

    /// The shard whose pacer hands out the business client's orders (the first with users).
    pub fn business(&self) -> usize {
        self.with_users().start
    }

    /// Ends the threads' runtimes (what still runs on them is dropped); for the end of the
    /// run, once every user has closed. Dropping the shards does the same.
    pub fn stop(&self) {
        for e in &self.extra {
            if let Ok(mut stop) = e.stop.lock() {
                stop.take();
            }
        }
    }

    /// Runs `task` on shard `shard`.
    pub fn spawn<F>(&self, shard: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match shard.checked_sub(1).and_then(|i| self.extra.get(i)) {
            Some(e) => e.handle.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_spread_over_the_shards_and_off_the_servers_own() {
        let one = Shards::one();
        assert_eq!((one.count(), one.of(7), one.business()), (1, 0, 0));
        assert_eq!(one.with_users(), 0..1);

        let three = Shards::start(3, false).unwrap();
        assert_eq!(three.count(), 3);
        assert_eq!(
            (0..6).map(|u| three.of(u)).collect::<Vec<_>>(),
            [0, 1, 2, 0, 1, 2]
        );
        assert_eq!((three.with_users(), three.business()), (0..3, 0));

        // The embedded server keeps shard 0; users and the business orders go to the rest.
        let served = Shards::start(3, true).unwrap();
        assert_eq!(
            (0..4).map(|u| served.of(u)).collect::<Vec<_>>(),
            [1, 2, 1, 2]
        );
        assert_eq!((served.with_users(), served.business()), (1..3, 1));

        // With one shard there is no other place for users: they share it with the server.
        let alone = Shards::start(1, true).unwrap();
        assert_eq!((alone.of(5), alone.with_users()), (0, 0..1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_runs_on_its_shards_thread_until_the_shards_stop() {
        let shards = Shards::start(2, false).unwrap();
        let name = || std::thread::current().name().map(str::to_string);
        let here = name();
        assert_eq!(shards.spawn(0, async move { name() }).await.unwrap(), here);
        assert_eq!(
            shards
                .spawn(1, async move { name() })
                .await
                .unwrap()
                .as_deref(),
            Some("chatload-shard-1")
        );
        // A task still running when the shards stop is dropped with its thread's runtime.
        let (_never, wait) = oneshot::channel::<()>();
        let stuck = shards.spawn(1, wait);
        shards.stop();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), stuck).await;
        assert!(
            matches!(ended, Ok(Err(ref e)) if e.is_cancelled()),
            "{ended:?}"
        );
    }
}
