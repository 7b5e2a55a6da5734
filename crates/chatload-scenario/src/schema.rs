//! The JSON Schema of the scenario format (`chatload schema`), derived from the same types the
//! parser reads, so editors with TOML schema support complete keys and flag mistakes while
//! typing. Owns the schema's shape for values the parser reads with its own rules.

use super::distribution::{CountDist, SizeDist, TimeDist};
use super::file::ScenarioFile;
use super::units::{Micros, Rate};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

/// The schema as pretty JSON.
pub fn json() -> String {
    let mut schema = schemars::schema_for!(ScenarioFile);
    schema.insert("title".into(), "chatload scenario".into());
    serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

const DURATION_PATTERN: &str = r"^\s*([0-9][0-9_]*(\.[0-9]+)?(us|µs|μs|ms|s|sec|m|min|h|d))+\s*$";

impl JsonSchema for Micros {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number with a unit (us, ms, s, m, h, d), e.g. \"30s\", \"250ms\", \"1m30s\"."
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*[0-9][0-9_]*(\.[0-9]+)?\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)(\s+per\s+(user|group))?\s*$",
            "description": "A rate: count per time unit, optionally per user or per group, e.g. \"2/min per user\", \"500/s\"."
        })
    }
}

/// The shared shape of every distribution; `value` is the schema of a plain value in its unit.
fn distribution(value: serde_json::Value, description: &str) -> Schema {
    let param = value.clone();
    let family = |props: serde_json::Value, required: &[&str]| serde_json::json!({ "type": "object", "properties": props, "required": required, "additionalProperties": false });
    let table = serde_json::json!({
        "type": "object",
        "description": "One family key, with optional min/max caps.",
        "properties": {
            "constant": param,
            "uniform": family(serde_json::json!({ "min": param, "max": param }), &["min", "max"]),
            "exponential": family(serde_json::json!({ "mean": param }), &["mean"]),
            "normal": family(serde_json::json!({ "mean": param, "stddev": param }), &["mean", "stddev"]),
            "lognormal": family(serde_json::json!({ "median": param, "mean": param, "sigma": { "type": "number", "exclusiveMinimum": 0 } }), &["sigma"]),
            "pareto": family(serde_json::json!({ "scale": param, "shape": { "type": "number", "exclusiveMinimum": 0 } }), &["scale", "shape"]),
            "weibull": family(serde_json::json!({ "scale": param, "shape": { "type": "number", "exclusiveMinimum": 0 } }), &["scale", "shape"]),
            "zipf": family(serde_json::json!({ "n": { "type": "integer", "minimum": 1 }, "s": { "type": "number", "minimum": 0 } }), &["n", "s"]),
            "geometric": family(serde_json::json!({ "mean": { "type": "number", "minimum": 1 }, "p": { "type": "number", "exclusiveMinimum": 0, "maximum": 1 } }), &[]),
            "poisson": family(serde_json::json!({ "mean": { "type": "number", "exclusiveMinimum": 0 } }), &["mean"]),
            "mixture": { "type": "array", "minItems": 1, "items": { "type": "object", "required": ["weight"], "properties": { "weight": { "type": "number", "exclusiveMinimum": 0 } } } },
            "min": param,
            "max": param
        },
        "additionalProperties": false,
        "minProperties": 1
    });
    let schema = serde_json::json!({ "description": description, "anyOf": [value, table] });
    Schema::try_from(schema).unwrap_or_default()
}

impl JsonSchema for TimeDist {
    fn schema_name() -> Cow<'static, str> {
        "TimeDistribution".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        distribution(
            serde_json::json!({ "type": "string", "pattern": DURATION_PATTERN }),
            "A distribution of durations, e.g. { lognormal = { median = \"15s\", sigma = 1.0 }, max = \"5m\" }.",
        )
    }
}

impl JsonSchema for CountDist {
    fn schema_name() -> Cow<'static, str> {
        "CountDistribution".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        distribution(
            serde_json::json!({ "type": "number", "minimum": 0 }),
            "A distribution of counts, e.g. { geometric = { mean = 7 } }.",
        )
    }
}

impl JsonSchema for SizeDist {
    fn schema_name() -> Cow<'static, str> {
        "SizeDistribution".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        distribution(
            serde_json::json!({ "anyOf": [{ "type": "number", "minimum": 0 }, { "type": "string", "pattern": r"^\s*[0-9][0-9_]*(\.[0-9]+)?\s*(B|KB|kB|MB|GB|KiB|MiB|GiB)$" }] }),
            "A distribution of sizes in bytes, e.g. { lognormal = { median = 25, sigma = 0.9 }, max = 4096 }.",
        )
    }
}
