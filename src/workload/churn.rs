//! Presence churn: each user's own sequence of sessions and offline gaps (docs/workloads.md §5 P3:
//! log-normal sessions, exponential gaps), drawn from the seed per user so it is the same on
//! every run. Owns when a churning user is connected; the load profile combines it with the
//! stages' connected share.

use crate::protocol::keyed;
use crate::scenario::distribution::Distribution;
use crate::scenario::sampler::{Sampler, SamplerError};
use rand::Rng;

#[derive(Debug)]
pub struct Churn {
    /// Per user: the times its state flips, ascending.
    toggles: Vec<Box<[u64]>>,
    starts_online: Vec<bool>,
    /// Long-run share of time a user is connected.
    pub share_online: f64,
}

impl Churn {
    pub fn new(
        seed: u64,
        users: u32,
        session: &Distribution,
        offline: &Distribution,
        end_us: u64,
    ) -> Result<Self, SamplerError> {
        let s = Sampler::new(session)?;
        let o = Sampler::new(offline)?;
        let mean_s = session.capped_mean_estimate().unwrap_or(1.0).max(1.0);
        let mean_o = offline.capped_mean_estimate().unwrap_or(1.0).max(1.0);
        let share_online = mean_s / (mean_s + mean_o);
        let mut toggles = Vec::with_capacity(users as usize);
        let mut starts_online = Vec::with_capacity(users as usize);
        for user in 0..users {
            let mut rng = keyed::rng(seed, user as u64, 0xC4);
            let mut online = rng.random::<f64>() < share_online;
            starts_online.push(online);
            // In equilibrium the run starts part-way through a session or a gap.
            let first = if online { &s } else { &o };
            let mut t = (rng.random::<f64>() * first.sample(&mut rng).max(1.0)) as u64;
            let mut flips = Vec::new();
            while t < end_us {
                flips.push(t);
                online = !online;
                let span = if online { &s } else { &o };
                t += span.sample(&mut rng).max(1_000.0) as u64;
            }
            toggles.push(flips.into_boxed_slice());
        }
        Ok(Churn {
            toggles,
            starts_online,
            share_online,
        })
    }

    pub fn online(&self, user: u32, t_us: u64) -> bool {
        let Some(flips) = self.toggles.get(user as usize) else {
            return true;
        };
        let passed = flips.partition_point(|&f| f <= t_us);
        self.starts_online[user as usize] ^ (passed % 2 == 1)
    }

    /// The first flip after `t_us`.
    pub fn next_toggle(&self, user: u32, t_us: u64) -> Option<u64> {
        let flips = self.toggles.get(user as usize)?;
        flips.get(flips.partition_point(|&f| f <= t_us)).copied()
    }

    /// Whether the user's state stays the same over `[from, to]`.
    pub fn steady(&self, user: u32, from: u64, to: u64) -> bool {
        self.next_toggle(user, from).is_none_or(|f| f > to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::distribution::Family;

    #[test]
    fn churn_keeps_the_declared_share_online() {
        let exp = |mean: f64| Distribution {
            family: Family::Exponential { mean },
            min: None,
            max: None,
        };
        let c = Churn::new(3, 2_000, &exp(60e6), &exp(40e6), 3_600e6 as u64).unwrap();
        assert!((c.share_online - 0.6).abs() < 1e-9);
        let mut on = 0u64;
        let mut n = 0u64;
        for user in 0..2_000 {
            for t in (0..3_600).step_by(60) {
                n += 1;
                on += c.online(user, t * 1_000_000) as u64;
            }
        }
        let share = on as f64 / n as f64;
        assert!((share - 0.6).abs() < 0.02, "online share {share}");
        let t = c.next_toggle(5, 0).unwrap();
        assert_ne!(c.online(5, t - 1), c.online(5, t));
        assert!(c.steady(5, 0, t - 1) && !c.steady(5, 0, t));
    }
}
