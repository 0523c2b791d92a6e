//! `[random]`: scenario values drawn per seed (swarm testing), and their resolution.
//!
//! Each key is a dotted path to a value of the scenario (`"network.fail_rate"`,
//! `"authenticator.heartbeat_interval"`, `"joiners.members.count"` — an array element is
//! named by its `name` or by its index — `"timeline.2.at"`), and each value says how to draw:
//! `{ min = 0.0, max = 0.02 }` (integers, floats, duration strings, byte-rate strings like
//! `"1MiB/s"`, or event-rate strings like `"30/m"`; uniform, inclusive) or `{ one_of = [..] }`. Resolution writes the drawn values
//! into the document and parses it again, so a drawn value goes through exactly the checks a
//! written one does. Each path draws from its own stream derived from `(seed, path)`: adding
//! a key never changes what the others draw. The drawn values are returned for the report.

use std::collections::BTreeMap;
use std::ops::Range;

use pyile::units::{ByteRate, Dur, EventRate};
use rand::RngExt;
use serde::Deserialize;
use toml::{Table, Value};

use super::load::parse_toml;
use super::{LoadedScenario, Resolved, Scenario, ScenarioError};
use crate::rng::{SimRng, rng_for};

/// How one value is drawn.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSpec {
    /// Lower bound (inclusive).
    #[serde(default)]
    pub min: Option<Value>,
    /// Upper bound (inclusive).
    #[serde(default)]
    pub max: Option<Value>,
    /// A list of values to choose from.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
}

/// Top-level keys a `[random]` path may not change.
const FIXED_KEYS: &[&str] = &["name", "seeds", "random", "ci", "description"];

enum Kind {
    Int(i64, i64),
    Float(f64, f64),
    Duration(Dur, Dur),
    Rate(ByteRate, ByteRate),
    Events(EventRate, EventRate),
    OneOf(Vec<Value>),
}

fn kind(spec: &RandomSpec) -> Result<Kind, String> {
    match (&spec.min, &spec.max, &spec.one_of) {
        (None, None, Some(list)) => {
            if list.is_empty() {
                Err("one_of must not be empty".into())
            } else {
                Ok(Kind::OneOf(list.clone()))
            }
        }
        (Some(lo), Some(hi), None) => {
            let k = match (lo, hi) {
                (Value::Integer(a), Value::Integer(b)) => Kind::Int(*a, *b),
                (Value::Integer(_) | Value::Float(_), Value::Integer(_) | Value::Float(_)) => {
                    let f = |v: &Value| v.as_float().or(v.as_integer().map(|i| i as f64)).unwrap();
                    Kind::Float(f(lo), f(hi))
                }
                (Value::String(a), Value::String(b)) => match (a.parse::<Dur>(), a.parse::<ByteRate>()) {
                    (Ok(lo), _) => Kind::Duration(lo, b.parse().map_err(|e| format!("max: {e}"))?),
                    (Err(_), Err(_)) if a.contains('/') && a.parse::<EventRate>().is_ok() => {
                        Kind::Events(a.parse().unwrap(), b.parse().map_err(|e| format!("max: {e}"))?)
                    }
                    (Err(_), Ok(lo)) => {
                        let hi: ByteRate = b.parse().map_err(|e| format!("max: {e}"))?;
                        if lo.is_unbounded() || hi.is_unbounded() {
                            return Err("\"unbounded\" is not a range bound; use one_of = [\"unbounded\", ..]".into());
                        }
                        Kind::Rate(lo, hi)
                    }
                    (Err(_), Err(_)) => {
                        return Err(format!(
                            "min {a:?} is neither a duration (\"2s\"), a byte rate (\"64MiB/s\") nor an event rate (\"2/s\")"
                        ));
                    }
                },
                _ => return Err("min and max must both be numbers, both duration strings or both byte rates".into()),
            };
            let ordered = match &k {
                Kind::Int(a, b) => a <= b,
                Kind::Float(a, b) => a.is_finite() && b.is_finite() && a <= b,
                Kind::Duration(a, b) => a <= b,
                Kind::Rate(a, b) => a <= b,
                Kind::Events(a, b) => a <= b,
                Kind::OneOf(_) => true,
            };
            if ordered { Ok(k) } else { Err("min must not exceed max".into()) }
        }
        _ => Err("give `min` and `max`, or `one_of`".into()),
    }
}

fn draw(k: &Kind, rng: &mut SimRng) -> Value {
    match k {
        Kind::Int(a, b) => Value::Integer(rng.random_range(*a..=*b)),
        Kind::Float(a, b) => {
            let x = a + rng.random::<f64>() * (b - a);
            // Six decimals keep reports readable; clamp so rounding cannot leave the range.
            Value::Float(((x * 1e6).round() / 1e6).clamp(*a, *b))
        }
        Kind::Duration(a, b) => {
            let (lo, hi) = (a.as_micros(), b.as_micros());
            let us = if lo % 1000 == 0 && hi % 1000 == 0 {
                rng.random_range(lo / 1000..=hi / 1000) * 1000
            } else {
                rng.random_range(lo..=hi)
            };
            Value::String(Dur::from_micros(us).to_string())
        }
        Kind::Rate(a, b) => {
            // Whole units of the coarsest unit both bounds are written in (MiB for
            // "1MiB/s".."64MiB/s"), so the report shows readable values.
            let unit = ByteRate::common_unit(*a, *b);
            let n = rng.random_range(a.0 / unit..=b.0 / unit);
            Value::String(ByteRate(n * unit).to_string())
        }
        Kind::Events(a, b) => {
            // Per second, six decimals, as a float range draws.
            let (a, b) = (a.per_sec(), b.per_sec());
            let x = (((a + rng.random::<f64>() * (b - a)) * 1e6).round() / 1e6).clamp(a, b);
            Value::String(EventRate::per_second(x).expect("within [a, b]").to_string())
        }
        Kind::OneOf(list) => list[rng.random_range(0..list.len())].clone(),
    }
}

/// Renders a drawn value for the report (strings unquoted).
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes `value` at dotted `path` in `doc`, creating missing intermediate tables.
fn set_path(doc: &mut Table, path: &str, value: Value) -> Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(format!("malformed path {path:?}"));
    }
    if FIXED_KEYS.contains(&segs[0]) {
        return Err(format!("`{}` cannot be drawn at random", segs[0]));
    }
    let mut root = Value::Table(std::mem::take(doc));
    let result = set_in(&mut root, &segs, 0, value);
    if let Value::Table(t) = root {
        *doc = t;
    }
    result
}

fn set_in(cur: &mut Value, segs: &[&str], depth: usize, value: Value) -> Result<(), String> {
    let seg = segs[depth];
    let last = depth + 1 == segs.len();
    let here = if depth == 0 { "the top level".to_string() } else { format!("`{}`", segs[..depth].join(".")) };
    let slot = match cur {
        Value::Table(t) => {
            if last {
                t.insert(seg.to_string(), value);
                return Ok(());
            }
            t.entry(seg.to_string()).or_insert_with(|| Value::Table(Table::new()))
        }
        Value::Array(items) => {
            let idx = match seg.parse::<usize>() {
                Ok(n) => n,
                Err(_) => items
                    .iter()
                    .position(|it| it.get("name").and_then(Value::as_str) == Some(seg))
                    .ok_or_else(|| format!("no element named {seg:?} in {here}"))?,
            };
            let len = items.len();
            let slot =
                items.get_mut(idx).ok_or_else(|| format!("index {idx} out of range: {here} has {len} entries"))?;
            if last {
                *slot = value;
                return Ok(());
            }
            slot
        }
        _ => return Err(format!("{here} is not a table or an array")),
    };
    set_in(slot, segs, depth + 1, value)
}

fn raw_doc(src: &LoadedScenario) -> Result<Table, ScenarioError> {
    parse_toml::<Table>(&src.path, &src.text)
}

/// Substitutes `values` into the document and parses it as a scenario.
fn apply(src: &LoadedScenario, values: &[(String, Value, Range<usize>)]) -> Result<Scenario, ScenarioError> {
    let mut doc = raw_doc(src)?;
    doc.remove("random");
    for (path, v, span) in values {
        set_path(&mut doc, path, v.clone())
            .map_err(|m| src.error_at(span.clone(), format!("[random] {path:?}: {m}")))?;
    }
    let text = toml::to_string(&doc).map_err(|e| src.error(format!("[random]: cannot re-encode: {e}")))?;
    parse_toml::<Scenario>(&src.path, &text).map_err(|e| {
        let msg = match e {
            ScenarioError::At { msg, .. } | ScenarioError::Whole { msg, .. } => msg,
            ScenarioError::Read { source, .. } => source.to_string(),
        };
        let span = values.first().map(|v| v.2.clone()).unwrap_or(0..0);
        let paths: Vec<&str> = values.iter().map(|v| v.0.as_str()).collect();
        src.error_at(span, format!("[random] value for {} does not fit the schema: {msg}", paths.join(", ")))
    })
}

impl LoadedScenario {
    /// Checks every `[random]` entry without a seed: the spec is well-formed and both of its
    /// extremes (or every choice) fit the schema at that path.
    pub(super) fn check_random_paths(&self) -> Result<(), ScenarioError> {
        for (path, spec) in &self.scenario.random {
            let span = spec.span();
            let k = kind(spec.get_ref()).map_err(|m| self.error_at(span.clone(), format!("[random] {path:?}: {m}")))?;
            let probes: Vec<Value> = match k {
                Kind::Int(a, b) => vec![Value::Integer(a), Value::Integer(b)],
                Kind::Float(a, b) => vec![Value::Float(a), Value::Float(b)],
                Kind::Duration(a, b) => vec![Value::String(a.to_string()), Value::String(b.to_string())],
                Kind::Rate(a, b) => vec![Value::String(a.to_string()), Value::String(b.to_string())],
                Kind::Events(a, b) => vec![Value::String(a.to_string()), Value::String(b.to_string())],
                Kind::OneOf(list) => list,
            };
            for v in probes {
                apply(self, &[(path.clone(), v, span.clone())])?;
            }
        }
        Ok(())
    }
}

/// Draws every `[random]` value for `seed` and returns the substituted scenario.
pub fn resolve(src: &LoadedScenario, seed: u64) -> Result<Resolved, ScenarioError> {
    if src.scenario.random.is_empty() {
        return Ok(Resolved { seed, scenario: src.scenario.clone(), drawn: Vec::new() });
    }
    let mut values = Vec::new();
    let mut drawn = BTreeMap::new();
    for (path, spec) in &src.scenario.random {
        let k = kind(spec.get_ref()).map_err(|m| src.error_at(spec.span(), m))?;
        let mut rng = rng_for(seed, &format!("random:{path}"));
        let v = draw(&k, &mut rng);
        drawn.insert(path.clone(), render(&v));
        values.push((path.clone(), v, spec.span()));
    }
    let scenario = apply(src, &values)?;
    Ok(Resolved { seed, scenario, drawn: drawn.into_iter().collect() })
}
