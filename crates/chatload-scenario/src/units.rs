//! Quantities as people write them: durations ("30s", "1m30s", "250ms"), rates ("2/min per
//! user") and sizes ("120KB"). Owns parsing and the wording of their errors; it does not know
//! where in a file a value stands (the serde layer adds that).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A span of time in whole microseconds, parsed from strings like `"30s"` or `"1m30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Micros(pub u64);

impl Micros {
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0)
    }
    pub fn from_secs_f64(secs: f64) -> Self {
        Micros((secs * 1e6).round().max(0.0) as u64)
    }
}

const DURATION_HINT: &str = "write a number followed by a unit (us, ms, s, m, h, d), for example \"30s\", \"250ms\" or \"1m30s\"";

/// Parses a human duration. Parts may be combined (`"1h30m"`) and may have decimals (`"2.5s"`).
pub fn parse_duration(text: &str) -> Result<Micros, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!(
            "an empty string is not a duration: {DURATION_HINT}"
        ));
    }
    let mut total = 0f64;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!("`{trimmed}` is not a duration: {DURATION_HINT}"));
        }
        let number: f64 = rest[..number_len]
            .replace('_', "")
            .parse()
            .map_err(|_| format!("`{trimmed}` is not a duration: {DURATION_HINT}"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            // The micro sign and the Greek mu look alike; both are written.
            "us" | "µs" | "μs" => 1.0,
            "ms" => 1e3,
            "s" | "sec" => 1e6,
            "m" | "min" => 60e6,
            "h" => 3600e6,
            "d" => 86_400e6,
            "" if rest.is_empty() => {
                return Err(format!("`{trimmed}` has no unit: {DURATION_HINT}"));
            }
            "" => return Err(format!("`{trimmed}` is not a duration: {DURATION_HINT}")),
            _ => {
                return Err(format!(
                    "`{trimmed}` is not a duration (unknown unit `{unit}`): {DURATION_HINT}"
                ));
            }
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e17 {
        return Err(format!("`{trimmed}` is too long a duration"));
    }
    Ok(Micros(total.round() as u64))
}

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Micros;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a duration string such as \"30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Micros, E> {
                parse_duration(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Micros, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{v}s\" or \"{v}ms\""
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Micros, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{v}s\" or \"{v}ms\""
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// What a rate is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateBasis {
    Total,
    PerUser,
    PerGroup,
}

/// The highest rate a scenario may ask for, per second (per user, per group or in all).
pub const MAX_RATE_PER_S: f64 = 1e6;

/// An event rate, such as `"2/min per user"` or `"500/s"`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub per_second: f64,
    pub basis: RateBasis,
}

const RATE_HINT: &str = "write a count per time unit, optionally per user or per group, for example \"2/min per user\", \"1/h per group\" or \"500/s\"";

pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let trimmed = text.trim();
    let (amount, rest) = trimmed
        .split_once('/')
        .ok_or_else(|| format!("`{trimmed}` is not a rate: {RATE_HINT}"))?;
    let count: f64 = amount.trim().replace('_', "").parse().map_err(|_| {
        format!(
            "`{trimmed}` is not a rate: `{}` is not a number; {RATE_HINT}",
            amount.trim()
        )
    })?;
    if !count.is_finite() || count < 0.0 {
        return Err(format!(
            "`{trimmed}` is not a rate: the count must be zero or more"
        ));
    }

    let mut words = rest.split_whitespace();
    let unit = words.next().unwrap_or("");
    let seconds = match unit {
        "s" | "sec" | "second" => 1.0,
        "min" | "minute" | "m" => 60.0,
        "h" | "hour" => 3600.0,
        "d" | "day" => 86_400.0,
        _ => {
            return Err(format!(
                "`{trimmed}` is not a rate (unknown time unit `{unit}`): {RATE_HINT}"
            ));
        }
    };
    let basis = match (words.next(), words.next(), words.next()) {
        (None, _, _) => RateBasis::Total,
        (Some("per"), Some("user"), None) => RateBasis::PerUser,
        (Some("per"), Some("group"), None) => RateBasis::PerGroup,
        _ => {
            return Err(format!(
                "`{trimmed}` is not a rate: after the time unit write nothing, \"per user\" or \"per group\""
            ));
        }
    };
    if count / seconds > MAX_RATE_PER_S {
        return Err(format!(
            "`{trimmed}` is more than a million a second: chatload paces rates up to 1,000,000/s (per user, per group or in all)"
        ));
    }
    Ok(Rate {
        per_second: count / seconds,
        basis,
    })
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a rate string such as \"2/min per user\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                parse_rate(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Parses a size such as `"120KB"`, `"2MiB"` or `"64B"` into bytes.
pub fn parse_bytes(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(trimmed.len());
    let number: f64 = trimmed[..split].replace('_', "").parse().map_err(|_| {
        format!("`{trimmed}` is not a size: write a number with B, KB, MB or GB, e.g. \"120KB\"")
    })?;
    let scale = match trimmed[split..].trim() {
        "B" | "" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "`{trimmed}` is not a size (unknown unit `{other}`): use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Micros(30_000_000)));
        assert_eq!(parse_duration("250ms"), Ok(Micros(250_000)));
        assert_eq!(parse_duration("1m30s"), Ok(Micros(90_000_000)));
        assert_eq!(parse_duration("2.5s"), Ok(Micros(2_500_000)));
        assert_eq!(parse_duration("1h"), Ok(Micros(3_600_000_000)));
        assert_eq!(parse_duration("10us"), Ok(Micros(10)));
        // What the schema promises: the micro sign (and the Greek mu it is often typed as).
        assert_eq!(parse_duration("250µs"), Ok(Micros(250)));
        assert_eq!(parse_duration("250μs"), Ok(Micros(250)));
        assert_eq!(parse_duration("1ms500µs"), Ok(Micros(1_500)));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for bad in ["5 junk", "5", "s", "", "5x", "-3s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("\"30s\""), "{bad}: {err}");
        }
    }

    #[test]
    fn rates_read_as_people_write_them() {
        assert!(
            parse_rate("1e308/s per user")
                .unwrap_err()
                .contains("more than a million")
        );
        assert!(parse_rate("1000000/s").is_ok());
        let r = parse_rate("2/min per user").unwrap();
        assert!((r.per_second - 2.0 / 60.0).abs() < 1e-12);
        assert_eq!(r.basis, RateBasis::PerUser);
        let r = parse_rate("500/s").unwrap();
        assert_eq!((r.per_second, r.basis), (500.0, RateBasis::Total));
        let r = parse_rate("1/h per group").unwrap();
        assert_eq!(r.basis, RateBasis::PerGroup);
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("2 per minute").is_err());
        assert!(parse_rate("2/min per planet").is_err());
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_bytes("120KB"), Ok(120_000.0));
        assert_eq!(parse_bytes("2KiB"), Ok(2048.0));
        assert!(parse_bytes("12 parsecs").is_err());
    }
}
