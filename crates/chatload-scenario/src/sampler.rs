//! Sampling from checked distributions through `rand_distr`. Owns the mapping from a
//! `Distribution` to a ready sampler; the caller owns the seeded RNG, so one seed gives one
//! stream of values.

use super::distribution::{Distribution, Family};
use rand::Rng;
use rand_distr::{
    Distribution as _, Exp, Geometric, LogNormal, Normal, Pareto, Poisson, Uniform, Weibull, Zipf,
};

/// A distribution ready to draw from. Built once; drawing allocates nothing.
#[derive(Debug, Clone)]
pub struct Sampler {
    kind: Kind,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Clone)]
enum Kind {
    Constant(f64),
    Uniform(Uniform<f64>),
    Exponential(Exp<f64>),
    Normal(Normal<f64>),
    LogNormal(LogNormal<f64>),
    Pareto(Pareto<f64>),
    Weibull(Weibull<f64>),
    Zipf(Zipf<f64>),
    Geometric(Geometric),
    Poisson(Poisson<f64>),
    Mixture {
        cumulative: Vec<f64>,
        parts: Vec<Sampler>,
    },
}

/// The parameters passed validation but `rand_distr` still refused them.
#[derive(Debug, thiserror::Error)]
#[error("distribution parameters out of range: {0}")]
pub struct SamplerError(pub String);

impl Sampler {
    pub fn new(dist: &Distribution) -> Result<Self, SamplerError> {
        let err = |e: &dyn std::fmt::Debug| SamplerError(format!("{e:?}"));
        let kind = match &dist.family {
            Family::Constant { value } => Kind::Constant(*value),
            Family::Uniform { min, max } if min == max => Kind::Constant(*min),
            Family::Uniform { min, max } => {
                Kind::Uniform(Uniform::new_inclusive(*min, *max).map_err(|e| err(&e))?)
            }
            Family::Exponential { mean } => {
                Kind::Exponential(Exp::new(1.0 / mean).map_err(|e| err(&e))?)
            }
            Family::Normal { mean, stddev } => {
                Kind::Normal(Normal::new(*mean, *stddev).map_err(|e| err(&e))?)
            }
            Family::LogNormal { mu, sigma } => {
                Kind::LogNormal(LogNormal::new(*mu, *sigma).map_err(|e| err(&e))?)
            }
            Family::Pareto { scale, shape } => {
                Kind::Pareto(Pareto::new(*scale, *shape).map_err(|e| err(&e))?)
            }
            Family::Weibull { scale, shape } => {
                Kind::Weibull(Weibull::new(*scale, *shape).map_err(|e| err(&e))?)
            }
            Family::Zipf { n, s } => Kind::Zipf(Zipf::new(*n, *s).map_err(|e| err(&e))?),
            Family::Geometric { p } => Kind::Geometric(Geometric::new(*p).map_err(|e| err(&e))?),
            Family::Poisson { mean } => Kind::Poisson(Poisson::new(*mean).map_err(|e| err(&e))?),
            Family::Mixture { parts } => {
                let total: f64 = parts.iter().map(|(w, _)| w).sum();
                let mut acc = 0.0;
                let mut cumulative = Vec::with_capacity(parts.len());
                let mut samplers = Vec::with_capacity(parts.len());
                for (w, d) in parts {
                    acc += w / total;
                    cumulative.push(acc);
                    samplers.push(Sampler::new(d)?);
                }
                Kind::Mixture {
                    cumulative,
                    parts: samplers,
                }
            }
        };
        Ok(Sampler {
            kind,
            min: dist.min,
            max: dist.max,
        })
    }

    /// One draw, with the distribution's caps applied.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let x = match &self.kind {
            Kind::Constant(v) => *v,
            Kind::Uniform(d) => d.sample(rng),
            Kind::Exponential(d) => d.sample(rng),
            Kind::Normal(d) => d.sample(rng),
            Kind::LogNormal(d) => d.sample(rng),
            Kind::Pareto(d) => d.sample(rng),
            Kind::Weibull(d) => d.sample(rng),
            Kind::Zipf(d) => d.sample(rng),
            // rand_distr counts failures before the first success; we count trials.
            Kind::Geometric(d) => (d.sample(rng) + 1) as f64,
            Kind::Poisson(d) => d.sample(rng),
            Kind::Mixture { cumulative, parts } => {
                let u: f64 = rng.random();
                let i = cumulative
                    .iter()
                    .position(|c| u < *c)
                    .unwrap_or(parts.len() - 1);
                parts[i].sample(rng)
            }
        };
        let x = self.min.map_or(x, |m| x.max(m));
        self.max.map_or(x, |m| x.min(m))
    }

    /// A draw rounded to a whole count, at least `floor`.
    pub fn sample_count<R: Rng + ?Sized>(&self, rng: &mut R, floor: u64) -> u64 {
        (self.sample(rng).round().max(0.0) as u64).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::{CountDist, TimeDist};
    use rand::SeedableRng;
    use rand_pcg::Pcg64Mcg;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Probe {
        d: Option<TimeDist>,
        c: Option<CountDist>,
    }

    fn dist(src: &str) -> Distribution {
        let p: Probe = toml::from_str(src).unwrap();
        p.d.map(|d| d.0).or(p.c.map(|c| c.0)).unwrap()
    }

    fn draws(d: &Distribution, n: usize, seed: u64) -> Vec<f64> {
        let s = Sampler::new(d).unwrap();
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut v: Vec<f64> = (0..n).map(|_| s.sample(&mut rng)).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }

    fn quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
    }

    /// Every family: the sample mean and quartiles agree with what the spec declares.
    #[test]
    fn samples_match_declared_mean_and_quantiles() {
        let cases = [
            "d = { exponential = { mean = \"10s\" } }",
            "d = { lognormal = { median = \"15s\", sigma = 1.0 } }",
            "d = { lognormal = { mean = \"2s\", sigma = 0.5 } }",
            "d = { uniform = { min = \"1s\", max = \"3s\" } }",
            "d = { normal = { mean = \"100ms\", stddev = \"10ms\" } }",
            "d = { pareto = { scale = \"1s\", shape = 3.0 } }",
            "d = { weibull = { scale = \"2s\", shape = 1.5 } }",
            "c = { geometric = { mean = 7 } }",
            "c = { poisson = { mean = 4 } }",
            "c = { zipf = { n = 50, s = 1.2 } }",
        ];
        for case in cases {
            let d = dist(case);
            let v = draws(&d, 200_000, 7);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let want = d.declared_mean().unwrap();
            assert!(
                (mean - want).abs() / want < 0.02,
                "{case}: mean {mean} want {want}"
            );
            for q in [0.25, 0.5, 0.75, 0.9] {
                if let Some(want_q) = d.declared_quantile(q) {
                    let got = quantile(&v, q);
                    let tol = 0.03 * want_q.abs().max(1.0);
                    assert!(
                        (got - want_q).abs() <= tol + 1.0,
                        "{case}: q{q} got {got} want {want_q}"
                    );
                }
            }
        }
    }

    /// Kolmogorov–Smirnov: the largest gap between the sample's and the declared CDF stays
    /// below the critical value at significance 0.001 (1.95/√n).
    #[test]
    fn continuous_families_pass_a_kolmogorov_smirnov_test() {
        let cases = [
            "d = { exponential = { mean = \"10s\" } }",
            "d = { lognormal = { median = \"15s\", sigma = 1.0 } }",
            "d = { uniform = { min = \"1s\", max = \"3s\" } }",
            "d = { normal = { mean = \"100ms\", stddev = \"10ms\" } }",
            "d = { pareto = { scale = \"1s\", shape = 1.161 } }",
            "d = { weibull = { scale = \"2s\", shape = 1.5 } }",
        ];
        let n = 20_000;
        let critical = 1.95 / (n as f64).sqrt();
        for case in cases {
            let d = dist(case);
            let v = draws(&d, n, 99);
            let gap = v
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let f = d.declared_cdf(*x).unwrap();
                    (f - i as f64 / n as f64)
                        .abs()
                        .max((f - (i + 1) as f64 / n as f64).abs())
                })
                .fold(0.0, f64::max);
            assert!(
                gap < critical,
                "{case}: KS distance {gap:.4} ≥ {critical:.4}"
            );
        }
        // A wrong declaration is rejected: the test can fail.
        let wrong = dist("d = { exponential = { mean = \"11s\" } }");
        let v = draws(&dist(cases[0]), n, 99);
        let gap = v
            .iter()
            .enumerate()
            .map(|(i, x)| (wrong.declared_cdf(*x).unwrap() - (i + 1) as f64 / n as f64).abs())
            .fold(0.0, f64::max);
        assert!(gap > critical, "a 10% wrong mean is caught: {gap}");
    }

    #[test]
    fn caps_hold_and_mixtures_weigh_their_parts() {
        let d = dist("c = { pareto = { scale = 2, shape = 1.161 }, max = 1024 }");
        let v = draws(&d, 100_000, 1);
        assert!(v[0] >= 2.0 && *v.last().unwrap() <= 1024.0);
        let est = d.capped_mean_estimate().unwrap();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            (mean - est).abs() / est < 0.05,
            "capped mean {mean} estimate {est}"
        );

        let m = dist(
            "c = { mixture = [ { weight = 3, constant = 1 }, { weight = 1, constant = 10 } ] }",
        );
        let v = draws(&m, 100_000, 2);
        let tens = v.iter().filter(|x| **x == 10.0).count() as f64 / v.len() as f64;
        assert!((tens - 0.25).abs() < 0.01, "{tens}");
    }

    #[test]
    fn the_same_seed_gives_the_same_values() {
        let d = dist("d = { lognormal = { median = \"1s\", sigma = 1.0 } }");
        assert_eq!(draws(&d, 1000, 42), draws(&d, 1000, 42));
        assert_ne!(draws(&d, 1000, 42), draws(&d, 1000, 43));
    }
}
