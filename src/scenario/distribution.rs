//! Distribution specs as written in scenario files, and their checking. Owns the syntax
//! (`{ lognormal = { median = "15s", sigma = 1.0 }, max = "5m" }`), the units of each field and
//! the mathematical mean/quantiles a spec declares. Sampling lives in `scenario::sampler`.

use super::units::{Micros, parse_bytes, parse_duration};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A value inside a distribution: a plain number, a duration or a size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Quantity {
    Number(f64),
    Time(Micros),
    Bytes(f64),
}

/// What a distribution's samples measure; decides which quantities it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Counts (messages, contacts, group members): plain numbers.
    Count,
    /// Time spans: duration strings, sampled in microseconds.
    Time,
    /// Sizes in bytes: plain numbers or strings such as "120KB".
    Bytes,
}

impl Quantity {
    /// The value in the unit's base (count, microseconds, bytes), or why it does not fit.
    pub fn in_unit(self, unit: Unit) -> Result<f64, String> {
        match (self, unit) {
            (Quantity::Number(n), Unit::Count | Unit::Bytes) => Ok(n),
            (Quantity::Number(n), Unit::Time) => {
                Err(format!("{n} needs a time unit here: write \"{n}s\" or \"{n}ms\""))
            }
            (Quantity::Time(t), Unit::Time) => Ok(t.0 as f64),
            (Quantity::Time(_), Unit::Count) => Err("a duration is not allowed here: this is a count, write a plain number".into()),
            (Quantity::Time(_), Unit::Bytes) => Err("a duration is not allowed here: this is a size, write bytes like 1200 or \"120KB\"".into()),
            (Quantity::Bytes(b), Unit::Bytes) => Ok(b),
            (Quantity::Bytes(_), _) => Err("a size is not allowed here".into()),
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a number, a duration such as \"15s\" or a size such as \"120KB\""
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity::Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                let has_byte_unit = v.trim_end().ends_with('B');
                if has_byte_unit {
                    return parse_bytes(v).map(Quantity::Bytes).map_err(E::custom);
                }
                parse_duration(v).map(Quantity::Time).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

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

/// The standard normal CDF (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[allow(clippy::excessive_precision)]
/// Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383577518672690e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p_low = 0.02425;
    if p < p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

#[allow(clippy::excessive_precision)]
/// Lanczos approximation of the gamma function (for the Weibull mean).
fn gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.5203681218851,
        -1259.1392167224028,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507343278686905,
        -0.13857109526572012,
        9.984_369_578_019_572e-6,
        1.5056327351493116e-7,
    ];
    if x < 0.5 {
        std::f64::consts::PI / ((std::f64::consts::PI * x).sin() * gamma(1.0 - x))
    } else {
        let x = x - 1.0;
        let mut a = G[0];
        let t = x + 7.5;
        for (i, g) in G.iter().enumerate().skip(1) {
            a += g / (x + i as f64);
        }
        (2.0 * std::f64::consts::PI).sqrt() * t.powf(x + 0.5) * (-t).exp() * a
    }
}

// ---- the written form -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UniformP {
    min: Quantity,
    max: Quantity,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeanP {
    mean: Quantity,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NormalP {
    mean: Quantity,
    stddev: Quantity,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogNormalP {
    median: Option<Quantity>,
    mean: Option<Quantity>,
    sigma: f64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleShapeP {
    scale: Quantity,
    shape: f64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ZipfP {
    n: u64,
    s: f64,
}
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GeometricP {
    mean: Option<f64>,
    p: Option<f64>,
}

/// The written table; exactly one family key must be present.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    constant: Option<Quantity>,
    uniform: Option<UniformP>,
    exponential: Option<MeanP>,
    normal: Option<NormalP>,
    lognormal: Option<LogNormalP>,
    pareto: Option<ScaleShapeP>,
    weibull: Option<ScaleShapeP>,
    zipf: Option<ZipfP>,
    geometric: Option<GeometricP>,
    poisson: Option<MeanP>,
    mixture: Option<Vec<WeightedWritten>>,
    min: Option<Quantity>,
    max: Option<Quantity>,
}

#[derive(Deserialize)]
struct WeightedWritten {
    weight: f64,
    #[serde(flatten)]
    dist: WrittenDist,
}

/// A spec before its unit is known: either a bare constant or a table.
#[derive(Deserialize)]
#[serde(untagged)]
enum WrittenDist {
    Constant(Quantity),
    Table(Box<Written>),
}

const FAMILIES: &str = "constant, uniform, exponential, normal, lognormal, pareto, weibull, zipf, geometric, poisson or mixture";

fn positive(name: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("`{name}` must be greater than 0 (found {v})"))
    }
}

fn non_negative(name: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("`{name}` must be 0 or more (found {v})"))
    }
}

impl Written {
    fn compile(self, unit: Unit) -> Result<Distribution, String> {
        let q = |name: &str, x: Quantity| x.in_unit(unit).map_err(|e| format!("`{name}`: {e}"));
        let mut families = Vec::new();
        if let Some(v) = self.constant {
            families.push(Family::Constant {
                value: non_negative("constant", q("constant", v)?)?,
            });
        }
        if let Some(p) = self.uniform {
            let (min, max) = (non_negative("min", q("min", p.min)?)?, q("max", p.max)?);
            if max < min {
                return Err(format!(
                    "uniform needs min <= max (found min {min}, max {max})"
                ));
            }
            families.push(Family::Uniform { min, max });
        }
        if let Some(p) = self.exponential {
            families.push(Family::Exponential {
                mean: positive("mean", q("mean", p.mean)?)?,
            });
        }
        if let Some(p) = self.normal {
            families.push(Family::Normal {
                mean: q("mean", p.mean)?,
                stddev: positive("stddev", q("stddev", p.stddev)?)?,
            });
        }
        if let Some(p) = self.lognormal {
            let sigma = positive("sigma", p.sigma)?;
            let mu = match (p.median, p.mean) {
                (Some(m), None) => positive("median", q("median", m)?)?.ln(),
                (None, Some(m)) => positive("mean", q("mean", m)?)?.ln() - sigma * sigma / 2.0,
                _ => {
                    return Err(
                        "lognormal takes either `median` or `mean` (one of them) and `sigma`"
                            .into(),
                    );
                }
            };
            families.push(Family::LogNormal { mu, sigma });
        }
        if let Some(p) = self.pareto {
            families.push(Family::Pareto {
                scale: positive("scale", q("scale", p.scale)?)?,
                shape: positive("shape", p.shape)?,
            });
        }
        if let Some(p) = self.weibull {
            families.push(Family::Weibull {
                scale: positive("scale", q("scale", p.scale)?)?,
                shape: positive("shape", p.shape)?,
            });
        }
        if let Some(p) = self.zipf {
            if unit != Unit::Count {
                return Err("zipf gives ranks 1..n and fits only counts".into());
            }
            if p.n == 0 {
                return Err("zipf over zero items is impossible: `n` must be at least 1".into());
            }
            families.push(Family::Zipf {
                n: p.n as f64,
                s: non_negative("s", p.s)?,
            });
        }
        if let Some(p) = self.geometric {
            if unit == Unit::Time {
                return Err("geometric gives whole counts; for times use exponential".into());
            }
            let p = match (p.mean, p.p) {
                (Some(mean), None) if mean.is_finite() && mean >= 1.0 => 1.0 / mean,
                (Some(mean), None) => {
                    return Err(format!(
                        "geometric `mean` counts trials up to the first success and must be at least 1 (found {mean})"
                    ));
                }
                (None, Some(p)) if p > 0.0 && p <= 1.0 => p,
                (None, Some(p)) => {
                    return Err(format!("geometric `p` must be in (0, 1] (found {p})"));
                }
                _ => return Err("geometric takes either `mean` or `p`".into()),
            };
            families.push(Family::Geometric { p });
        }
        if let Some(p) = self.poisson {
            if unit == Unit::Time {
                return Err("poisson gives whole counts; for times use exponential".into());
            }
            families.push(Family::Poisson {
                mean: positive("mean", q("mean", p.mean)?)?,
            });
        }
        if let Some(parts) = self.mixture {
            if parts.is_empty() {
                return Err("mixture needs at least one part".into());
            }
            let mut compiled = Vec::with_capacity(parts.len());
            for part in parts {
                let w = positive("weight", part.weight)?;
                compiled.push((w, part.dist.compile(unit)?));
            }
            families.push(Family::Mixture { parts: compiled });
        }
        let family = match families.len() {
            1 => families.remove(0),
            0 => return Err(format!("a distribution needs one family: {FAMILIES}")),
            _ => {
                return Err(format!(
                    "a distribution takes exactly one family, found {}",
                    families.len()
                ));
            }
        };
        let min = self.min.map(|m| q("min", m)).transpose()?;
        let max = self.max.map(|m| q("max", m)).transpose()?;
        if let (Some(lo), Some(hi)) = (min, max)
            && hi < lo
        {
            return Err(format!("`max` ({hi}) is below `min` ({lo})"));
        }
        Ok(Distribution { family, min, max })
    }
}

impl WrittenDist {
    fn compile(self, unit: Unit) -> Result<Distribution, String> {
        match self {
            WrittenDist::Constant(v) => {
                let value = v.in_unit(unit)?;
                non_negative("value", value)?;
                Ok(Distribution::constant(value))
            }
            WrittenDist::Table(t) => t.compile(unit),
        }
    }
}

fn deserialize_in<'de, D: Deserializer<'de>>(
    deserializer: D,
    unit: Unit,
) -> Result<Distribution, D::Error> {
    struct V(Unit);
    impl<'de> Visitor<'de> for V {
        type Value = Distribution;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a constant or a table with one of {FAMILIES}")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Distribution, E> {
            WrittenDist::Constant(Quantity::Number(v as f64))
                .compile(self.0)
                .map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Distribution, E> {
            WrittenDist::Constant(Quantity::Number(v))
                .compile(self.0)
                .map_err(E::custom)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Distribution, E> {
            let q = Quantity::deserialize(de::value::StrDeserializer::<E>::new(v))?;
            WrittenDist::Constant(q).compile(self.0).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Distribution, A::Error> {
            let written = Written::deserialize(de::value::MapAccessDeserializer::new(map))?;
            written.compile(self.0).map_err(de::Error::custom)
        }
    }
    deserializer.deserialize_any(V(unit))
}

macro_rules! unit_dist {
    ($name:ident, $unit:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(transparent)]
        pub struct $name(pub Distribution);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_in(d, $unit).map($name)
            }
        }
    };
}

unit_dist!(
    CountDist,
    Unit::Count,
    "A distribution of counts (plain numbers)."
);
unit_dist!(
    TimeDist,
    Unit::Time,
    "A distribution of time spans, sampled in microseconds."
);
unit_dist!(SizeDist, Unit::Bytes, "A distribution of sizes in bytes.");

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe {
        t: Option<TimeDist>,
        c: Option<CountDist>,
    }

    fn time(src: &str) -> Result<Distribution, String> {
        toml::from_str::<Probe>(&format!("t = {src}"))
            .map(|p| p.t.unwrap().0)
            .map_err(|e| e.message().to_string())
    }
    fn count(src: &str) -> Result<Distribution, String> {
        toml::from_str::<Probe>(&format!("c = {src}"))
            .map(|p| p.c.unwrap().0)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn written_forms_compile() {
        assert_eq!(time("\"15s\"").unwrap(), Distribution::constant(15e6));
        let d = time("{ lognormal = { median = \"15s\", sigma = 1.0 }, max = \"5m\" }").unwrap();
        assert_eq!(d.max, Some(300e6));
        assert!(matches!(d.family, Family::LogNormal { .. }));
        let d = count("{ geometric = { mean = 7 } }").unwrap();
        assert_eq!(d.family, Family::Geometric { p: 1.0 / 7.0 });
        let d = count("{ mixture = [ { weight = 0.6, geometric = { mean = 4 } }, { weight = 0.4, pareto = { scale = 5, shape = 1.8 }, max = 200 } ] }").unwrap();
        assert!(matches!(d.family, Family::Mixture { .. }));
    }

    #[test]
    fn impossible_values_are_refused_with_a_reason() {
        assert!(
            count("{ zipf = { n = 0, s = 1.0 } }")
                .unwrap_err()
                .contains("zero items")
        );
        assert!(time("{ exponential = { mean = \"-5s\" } }").is_err());
        assert!(
            time("{ lognormal = { median = \"1s\", sigma = -1.0 } }")
                .unwrap_err()
                .contains("sigma")
        );
        assert!(time("5").unwrap_err().contains("time unit"));
        assert!(
            time("{ exponential = { mean = \"5 junk\" } }")
                .unwrap_err()
                .contains("\"30s\"")
        );
        assert!(
            count("{ poisson = { mean = 3 }, exponential = { mean = 2 } }")
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(
            count("{ gaussian = { mean = 3 } }")
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            count("{ uniform = { min = 5, max = 1 } }")
                .unwrap_err()
                .contains("min <= max")
        );
    }

    #[test]
    fn declared_means_and_quantiles() {
        let d = time("{ lognormal = { median = \"10s\", sigma = 0.5 } }").unwrap();
        assert!((d.declared_quantile(0.5).unwrap() - 10e6).abs() < 1.0);
        assert!((d.declared_mean().unwrap() - 10e6 * (0.125f64).exp()).abs() < 1.0);
        let z = count("{ zipf = { n = 1, s = 1.0 } }").unwrap();
        assert_eq!(z.declared_mean(), Some(1.0));
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((gamma(5.0) - 24.0).abs() < 1e-9);
    }
}
