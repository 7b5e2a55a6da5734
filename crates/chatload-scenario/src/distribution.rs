//! Checked distributions: the families with their parameters in base units, and what a spec
//! declares mathematically (mean, quantiles, CDF, bounds). The written syntax is in
//! `distribution_syntax`; sampling is in `scenario::sampler`.

use super::special::{gamma, normal_cdf, normal_quantile};
use serde::Serialize;

pub use super::distribution_syntax::{CountDist, Quantity, SizeDist, TimeDist, Unit};
/// One distribution family with its parameters, already checked for sense.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Constant {
        value: f64,
    },
    Uniform {
        min: f64,
        max: f64,
    },
    Exponential {
        mean: f64,
    },
    Normal {
        mean: f64,
        stddev: f64,
    },
    /// `mu` and `sigma` of ln X.
    LogNormal {
        mu: f64,
        sigma: f64,
    },
    Pareto {
        scale: f64,
        shape: f64,
    },
    Weibull {
        scale: f64,
        shape: f64,
    },
    /// Ranks 1..=n with exponent s.
    Zipf {
        n: f64,
        s: f64,
    },
    /// Trials up to and including the first success (1, 2, ...), mean 1/p.
    Geometric {
        p: f64,
    },
    Poisson {
        mean: f64,
    },
    Mixture {
        parts: Vec<(f64, Distribution)>,
    },
}

/// A checked distribution in one unit, with optional caps applied to every sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Distribution {
    pub family: Family,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Distribution {
    pub fn constant(value: f64) -> Self {
        Distribution {
            family: Family::Constant { value },
            min: None,
            max: None,
        }
    }

    /// The mean the spec declares, ignoring caps; `None` when it is infinite (Pareto with shape <= 1).
    pub fn declared_mean(&self) -> Option<f64> {
        Some(match &self.family {
            Family::Constant { value } => *value,
            Family::Uniform { min, max } => (min + max) / 2.0,
            Family::Exponential { mean } | Family::Poisson { mean } => *mean,
            Family::Normal { mean, .. } => *mean,
            Family::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Family::Pareto { scale, shape } => {
                if *shape <= 1.0 {
                    return None;
                }
                shape * scale / (shape - 1.0)
            }
            Family::Weibull { scale, shape } => scale * gamma(1.0 + 1.0 / shape),
            Family::Zipf { n, s } => {
                let n = *n as u64;
                let h: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
                (1..=n).map(|k| (k as f64).powf(1.0 - s)).sum::<f64>() / h
            }
            Family::Geometric { p } => 1.0 / p,
            Family::Mixture { parts } => {
                let total: f64 = parts.iter().map(|(w, _)| w).sum();
                let mut mean = 0.0;
                for (w, d) in parts {
                    mean += w / total * d.capped_mean_estimate()?;
                }
                mean
            }
        })
    }

    /// Mean with caps taken into account where they matter (used by planning); falls back to
    /// the declared mean. Heavy-tailed families with a cap are integrated numerically.
    pub fn capped_mean_estimate(&self) -> Option<f64> {
        if self.min.is_none() && self.max.is_none() {
            return self.declared_mean();
        }
        if let Some(q) = self.quantile_fn() {
            // Mean of the clamped variable = integral of its quantile function over (0, 1).
            let steps = 20_000;
            let sum: f64 = (0..steps)
                .map(|i| self.clamp(q((i as f64 + 0.5) / steps as f64)))
                .sum();
            return Some(sum / steps as f64);
        }
        self.declared_mean().map(|m| self.clamp(m))
    }

    /// The declared q-quantile (0 < q < 1) of the uncapped family, where it has a closed form.
    pub fn declared_quantile(&self, q: f64) -> Option<f64> {
        self.quantile_fn().map(|f| f(q))
    }

    fn quantile_fn(&self) -> Option<Box<dyn Fn(f64) -> f64 + '_>> {
        Some(match &self.family {
            Family::Constant { value } => Box::new(move |_| *value),
            Family::Uniform { min, max } => Box::new(move |q| min + (max - min) * q),
            Family::Exponential { mean } => Box::new(move |q| -mean * (1.0 - q).ln()),
            Family::LogNormal { mu, sigma } => {
                Box::new(move |q| (mu + sigma * normal_quantile(q)).exp())
            }
            Family::Normal { mean, stddev } => {
                Box::new(move |q| mean + stddev * normal_quantile(q))
            }
            Family::Pareto { scale, shape } => {
                Box::new(move |q| scale * (1.0 - q).powf(-1.0 / shape))
            }
            Family::Weibull { scale, shape } => {
                Box::new(move |q| scale * (-(1.0 - q).ln()).powf(1.0 / shape))
            }
            Family::Geometric { p } => {
                Box::new(move |q| ((1.0 - q).ln() / (1.0 - p).ln()).ceil().max(1.0))
            }
            _ => return None,
        })
    }

    /// The largest value a sample can take, when there is one.
    pub fn upper_bound(&self) -> Option<f64> {
        let family = match &self.family {
            Family::Constant { value } => Some(*value),
            Family::Uniform { max, .. } => Some(*max),
            Family::Zipf { n, .. } => Some(*n),
            Family::Mixture { parts } => parts
                .iter()
                .map(|(_, d)| d.upper_bound())
                .try_fold(0f64, |acc, b| b.map(|b| acc.max(b))),
            _ => None,
        };
        match (family, self.max) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The declared cumulative distribution function of the uncapped family, where it has a
    /// closed form (continuous families), for goodness-of-fit checks.
    pub fn declared_cdf(&self, x: f64) -> Option<f64> {
        Some(match &self.family {
            Family::Uniform { min, max } => ((x - min) / (max - min)).clamp(0.0, 1.0),
            Family::Exponential { mean } => (1.0 - (-x / mean).exp()).max(0.0),
            Family::Normal { mean, stddev } => normal_cdf((x - mean) / stddev),
            Family::LogNormal { mu, sigma } if x > 0.0 => normal_cdf((x.ln() - mu) / sigma),
            Family::LogNormal { .. } => 0.0,
            Family::Pareto { scale, shape } if x >= *scale => 1.0 - (scale / x).powf(*shape),
            Family::Pareto { .. } => 0.0,
            Family::Weibull { scale, shape } if x > 0.0 => 1.0 - (-(x / scale).powf(*shape)).exp(),
            Family::Weibull { .. } => 0.0,
            _ => return None,
        })
    }

    pub fn clamp(&self, x: f64) -> f64 {
        let x = self.min.map_or(x, |m| x.max(m));
        self.max.map_or(x, |m| x.min(m))
    }
}
