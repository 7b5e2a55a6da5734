//! When each user could take what was owed to it: since when its current connection is up,
//! and how far its earlier connections carried a delivery's deadline. Owns the rule for the
//! moment an owed delivery's `loss_deadline` counts from; not the ledger that holds what is
//! owed, nor the verdicts drawn from it (`settle`, `vu::frames`).
//!
//! The rule: a delivery is due `loss_deadline` after the later of when the target could first
//! have it (`due_from`) and when its recipient's connection came up — so a recipient who was
//! offline is not held against the target — unless an earlier connection of the recipient's
//! stayed up a whole deadline past `due_from`. Then it was due on that connection, and it
//! stays overdue however the recipient reconnects afterwards: a server that held a message
//! on a live connection and sends it only when the recipient returns (or never) lost it.
//! Counting from the newest connection alone once made such a message "on time" after a
//! reconnect storm, or "in flight" when the run ended soon after one.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const NEVER_CONNECTED: u64 = u64::MAX;
const DISCONNECTED: u64 = u64::MAX - 1;

pub struct Reachability {
    /// Per user: since when (µs on the run's clock) its current connection is up, or
    /// `NEVER_CONNECTED` / `DISCONNECTED`.
    since: Box<[AtomicU64]>,
    /// Per user: one past the latest `due_from` that one of its ended connections outlasted
    /// by a whole deadline (0: none did). One number holds every earlier connection: a
    /// connection [s, e] makes overdue exactly the deliveries with `due_from <= e - deadline`
    /// (when `s <= e - deadline`), so only the largest such bound matters.
    overdue_below: Box<[AtomicU64]>,
    deadline_us: u64,
    connected: AtomicU64,
}

impl Reachability {
    pub fn new(users: usize, deadline_us: u64) -> Self {
        Reachability {
            since: (0..users)
                .map(|_| AtomicU64::new(NEVER_CONNECTED))
                .collect(),
            overdue_below: (0..users).map(|_| AtomicU64::new(0)).collect(),
            deadline_us,
            connected: AtomicU64::new(0),
        }
    }

    /// `user`'s connection came up (`on`) or went down at `now_us`. Each user's own task
    /// calls this, so a user's two numbers are never written by two threads at once.
    pub fn set(&self, user: u32, on: bool, now_us: u64) {
        let (Some(state), Some(overdue)) = (
            self.since.get(user as usize),
            self.overdue_below.get(user as usize),
        ) else {
            return;
        };
        let since = state.load(Relaxed);
        let was_on = since < DISCONNECTED;
        if was_on && let Some(bound) = now_us.checked_sub(self.deadline_us) {
            // A connection that ended (or is replaced) at `now_us` carried every delivery
            // due from `bound` or earlier through a whole deadline, if it was up by then.
            if since <= bound {
                overdue.fetch_max(bound + 1, Relaxed);
            }
        }
        if on {
            state.store(now_us, Relaxed);
        } else if was_on {
            state.store(DISCONNECTED, Relaxed);
        }
        match (was_on, on) {
            (false, true) => {
                self.connected.fetch_add(1, Relaxed);
            }
            (true, false) => {
                self.connected.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
    }

    /// When `user`'s current connection came up, if it is up.
    pub fn since(&self, user: u32) -> Option<u64> {
        let state = self.since.get(user as usize)?.load(Relaxed);
        (state < DISCONNECTED).then_some(state)
    }

    /// Whether `user` has had a connection at any time in this run.
    pub fn ever_connected(&self, user: u32) -> bool {
        self.since
            .get(user as usize)
            .is_some_and(|s| s.load(Relaxed) != NEVER_CONNECTED)
    }

    /// Users connected now.
    pub fn connected(&self) -> u64 {
        self.connected.load(Relaxed)
    }

    /// Whether a delivery to `user` that the target could have from `due_from_us` was already
    /// overdue on one of the user's ended connections.
    pub fn overdue_earlier(&self, user: u32, due_from_us: u64) -> bool {
        self.overdue_below
            .get(user as usize)
            .is_some_and(|b| due_from_us < b.load(Relaxed))
    }

    /// The moment a delivery to `user`, which the target could have from `due_from_us`, has
    /// its deadline counted from, given that the connection it arrives on (or that is up)
    /// came up at `since_us`.
    pub fn counts_from(&self, user: u32, due_from_us: u64, since_us: u64) -> u64 {
        if self.overdue_earlier(user, due_from_us) {
            due_from_us
        } else {
            due_from_us.max(since_us)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn a_reconnect_does_not_restart_a_deadline_that_ran_out_on_the_last_connection() {
        let r = Reachability::new(2, S);
        r.set(0, true, 0);
        // Connected from 0 to 4 s, back at 4.2 s.
        r.set(0, false, 4 * S);
        r.set(0, true, 4 * S + S / 5);
        // Due from 2 s: the first connection lasted past 3 s, so it was overdue there.
        assert!(r.overdue_earlier(0, 2 * S));
        assert_eq!(r.counts_from(0, 2 * S, 4 * S + S / 5), 2 * S);
        // Due from exactly 3 s: the connection ended just as its deadline did.
        assert!(r.overdue_earlier(0, 3 * S));
        // Due from 3.5 s: the first connection ended before its deadline, so it is due
        // from the return, as for a recipient who was offline.
        assert!(!r.overdue_earlier(0, 3 * S + S / 2));
        assert_eq!(
            r.counts_from(0, 3 * S + S / 2, 4 * S + S / 5),
            4 * S + S / 5
        );
        // The other user was never connected: nothing is overdue on its account.
        assert!(!r.overdue_earlier(1, 0));
        assert!(!r.ever_connected(1));
        assert_eq!(r.connected(), 1);
    }

    #[test]
    fn a_connection_shorter_than_the_deadline_makes_nothing_overdue() {
        let r = Reachability::new(1, S);
        r.set(0, true, 10 * S);
        r.set(0, false, 10 * S + S / 2);
        assert!(!r.overdue_earlier(0, 0), "up only half a deadline");
        assert_eq!(r.since(0), None);
        assert!(r.ever_connected(0));
        // A delivery due before a connection that then lasted a whole deadline was owed
        // on that connection from its start.
        r.set(0, true, 20 * S);
        r.set(0, true, 22 * S);
        assert!(r.overdue_earlier(0, 15 * S));
        assert_eq!(r.counts_from(0, 15 * S, 22 * S), 15 * S);
        assert_eq!(r.since(0), Some(22 * S));
        assert_eq!(r.connected(), 1);
    }
}
