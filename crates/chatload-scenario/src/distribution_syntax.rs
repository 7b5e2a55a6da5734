//! Distribution specs as written in scenario files: plain constants, durations, sizes and
//! tables such as `{ lognormal = { median = "15s", sigma = 1.0 }, max = "5m" }`. Owns the
//! syntax, the units each field accepts and the refusal messages; the checked result is a
//! [`Distribution`](super::distribution::Distribution).

use super::distribution::{Distribution, Family};
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
        // Every quantity chatload draws (counts, sizes, durations) is 0 or more: a negative
        // or non-finite cap could only clamp every draw to nonsense.
        let min = self
            .min
            .map(|m| q("min", m).and_then(|v| non_negative("min", v)))
            .transpose()?;
        let max = self
            .max
            .map(|m| q("max", m).and_then(|v| non_negative("max", v)))
            .transpose()?;
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
    use crate::special::{gamma, normal_quantile};

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
            count("{ uniform = { min = 2, max = 4 }, max = -9223372036854775808 }")
                .unwrap_err()
                .contains("`max` must be 0 or more")
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
