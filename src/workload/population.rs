//! The simulated people: online users, each with a contact list ranked by closeness, and
//! groups with their members. Built once from the seed; owns nothing that changes in a run.

use super::Segment;
use crate::scenario::{Consumers, PatternKind, Scenario, sampler::Sampler};
use rand::SeedableRng;
use rand::seq::{SliceRandom, index};
use rand_pcg::Pcg64Mcg;
use std::sync::Arc;

pub struct Population {
    users: u32,
    /// Contact lists back to back; user k's are `contacts[offsets[k]..offsets[k + 1]]`.
    contacts: Vec<u32>,
    offsets: Vec<u32>,
    /// Members of each group, sorted by user id.
    groups: Vec<Arc<[u32]>>,
    /// The same members in activity rank order (rank 1 writes most), a random permutation,
    /// so that who writes most has nothing to do with who connects first.
    ranked: Vec<Box<[u32]>>,
    /// Groups `0..regular_groups` are the population's; the rest are very large broadcast
    /// groups of mention-all storms.
    regular_groups: usize,
}

/// Population building failed (a distribution `rand_distr` would not take).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the population: {0}")]
pub struct PopulationError(String);

impl Population {
    pub fn build(c: &Consumers, seed: u64) -> Result<Self, PopulationError> {
        Population::build_in(c, seed, Segment::WHOLE)
    }

    /// The population dealt out to `split.count` segments: contacts and group members are
    /// drawn inside each user's and group's own segment (with one segment, exactly `build`).
    pub fn build_in(c: &Consumers, seed: u64, split: Segment) -> Result<Self, PopulationError> {
        let n = c.online_users;
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0xC0C7_AC75);
        let degree = Sampler::new(&c.contacts).map_err(|e| PopulationError(e.to_string()))?;
        let mut contacts = Vec::new();
        let mut offsets = Vec::with_capacity(n as usize + 1);
        offsets.push(0u32);
        for k in 0..n {
            let class = split.of(k);
            let peers = split.members_of(class, n);
            let me = split.rank(k);
            let d = degree
                .sample_count(&mut rng, 1)
                .min(peers.saturating_sub(1) as u64) as usize;
            if d > 0 {
                // Sample from the other users of the segment, skipping k, ranked by
                // closeness at random.
                let mut picked = index::sample(&mut rng, peers as usize - 1, d).into_vec();
                picked.shuffle(&mut rng);
                for i in picked {
                    let other = i as u32;
                    let j = if other >= me { other + 1 } else { other };
                    contacts.push(split.nth(class, j));
                }
            }
            offsets.push(contacts.len() as u32);
        }
        let size = Sampler::new(&c.group_size).map_err(|e| PopulationError(e.to_string()))?;
        let mut groups = Vec::with_capacity(c.groups as usize);
        let mut ranked = Vec::with_capacity(c.groups as usize);
        for g in 0..c.groups {
            let class = split.of(g);
            let peers = split.members_of(class, n);
            let s = size.sample_count(&mut rng, 2).min(peers as u64) as usize;
            let mut members: Vec<u32> = index::sample(&mut rng, peers as usize, s)
                .into_iter()
                .map(|i| split.nth(class, i as u32))
                .collect();
            members.shuffle(&mut rng);
            ranked.push(members.clone().into_boxed_slice());
            members.sort_unstable();
            groups.push(members.into());
        }
        let regular_groups = groups.len();
        Ok(Population {
            users: n,
            contacts,
            offsets,
            groups,
            ranked,
            regular_groups,
        })
    }

    /// The population of a scenario, with one broadcast group per mention-all storm (its
    /// members are the first users to connect, so the storm reaches connected people).
    pub fn for_scenario(s: &Scenario) -> Result<Self, PopulationError> {
        Population::for_segment(s, Segment::WHOLE)
    }

    /// The population of one segment's run: the whole population, dealt out to the
    /// segments, so every segment builds the same one.
    pub fn for_segment(s: &Scenario, segment: Segment) -> Result<Self, PopulationError> {
        let mut p = Population::build_in(&s.consumers, s.seed, segment)?;
        for pattern in &s.patterns {
            if let PatternKind::GroupChat {
                mention_all: Some(m),
                ..
            } = &pattern.kind
            {
                let members: Vec<u32> = (0..m.members.min(p.users)).collect();
                p.ranked.push(members.clone().into_boxed_slice());
                p.groups.push(members.into());
            }
        }
        Ok(p)
    }

    /// Groups of the population proper (chat groups, not storm groups).
    pub fn regular_groups(&self) -> usize {
        self.regular_groups
    }

    /// The broadcast group of the `k`-th mention-all storm.
    pub fn storm_group(&self, k: usize) -> u32 {
        (self.regular_groups + k) as u32
    }

    pub fn users(&self) -> u32 {
        self.users
    }

    pub fn contacts(&self, user: u32) -> &[u32] {
        let (a, b) = (
            self.offsets[user as usize] as usize,
            self.offsets[user as usize + 1] as usize,
        );
        &self.contacts[a..b]
    }

    pub fn groups(&self) -> &[Arc<[u32]>] {
        &self.groups
    }

    pub fn group(&self, g: u32) -> Option<&Arc<[u32]>> {
        self.groups.get(g as usize)
    }

    /// The groups `user` belongs to (for transports that subscribe or join per group).
    pub fn groups_of(&self, user: u32) -> Vec<u32> {
        (0..self.groups.len() as u32)
            .filter(|&g| self.groups[g as usize].binary_search(&user).is_ok())
            .collect()
    }

    /// Members of group `g` by activity rank (for choosing who writes).
    pub fn ranked_members(&self, g: u32) -> &[u32] {
        self.ranked.get(g as usize).map_or(&[], |r| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::distribution::{Distribution, Family};

    #[test]
    fn population_is_deterministic_and_well_formed() {
        let c = Consumers {
            users: 1000,
            online_fraction: 1.0,
            online_users: 1000,
            contacts: Distribution {
                family: Family::LogNormal {
                    mu: 20f64.ln(),
                    sigma: 1.0,
                },
                min: Some(1.0),
                max: Some(200.0),
            },
            groups: 50,
            group_size: Distribution {
                family: Family::Pareto {
                    scale: 2.0,
                    shape: 1.161,
                },
                min: None,
                max: Some(100.0),
            },
        };
        let a = Population::build(&c, 7).unwrap();
        let b = Population::build(&c, 7).unwrap();
        for k in 0..1000 {
            assert_eq!(a.contacts(k), b.contacts(k));
            assert!(!a.contacts(k).contains(&k), "no one is their own contact");
            assert!(!a.contacts(k).is_empty() && a.contacts(k).len() <= 200);
        }
        let mean = (0..1000).map(|k| a.contacts(k).len()).sum::<usize>() as f64 / 1000.0;
        assert!(
            (25.0..40.0).contains(&mean),
            "lognormal(20, 1) mean ~33, got {mean}"
        );
        for g in a.groups() {
            assert!(g.len() >= 2 && g.len() <= 100);
            assert!(g.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
