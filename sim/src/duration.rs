//! Human-readable simulated durations (`"250ms"`, `"2s"`, `"1.5m"`) for scenario files.
//!
//! Scenario files state every time with an explicit unit so that `tick = "1"` can never be
//! misread as seconds or milliseconds. This module owns that one notation: parsing it,
//! printing it back canonically (the `[random]` resolver writes drawn durations back into
//! the document, and reports print them), and its serde glue.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with a unit: `us`, `ms`, `s`, `m` or `h`, e.g. `"250ms"`, `"1.5s"`.
///
/// Resolution is one microsecond; a value that is not a whole number of microseconds is
/// rejected rather than silently rounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (write e.g. \"250ms\", \"2s\", \"1.5m\"; units us, ms, s, m, h)")]
pub struct DurationError {
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl Dur {
    /// The wrapped [`Duration`].
    pub fn get(self) -> Duration {
        self.0
    }

    /// Seconds as a float.
    pub fn secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// Whole microseconds.
    pub fn as_micros(self) -> u64 {
        self.0.as_micros() as u64
    }

    /// From whole microseconds.
    pub fn from_micros(us: u64) -> Self {
        Dur(Duration::from_micros(us))
    }

    /// From whole milliseconds.
    pub fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }

    /// From whole seconds.
    pub fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Self {
        Dur(d)
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Self {
        d.0
    }
}

impl FromStr for Dur {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| DurationError { input: s.to_string(), reason };
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| err("missing unit"))?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err("missing number"));
        }
        let unit_us: u128 = match unit.trim() {
            "us" | "µs" => 1,
            "ms" => 1_000,
            "s" => 1_000_000,
            "m" | "min" => 60_000_000,
            "h" => 3_600_000_000,
            _ => return Err(err("unknown unit")),
        };
        // Exact decimal arithmetic: integer part and fraction digits, no float rounding.
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(err("malformed number"));
        }
        let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| err("number too large"))? };
        let mut us = int.checked_mul(unit_us).ok_or_else(|| err("number too large"))?;
        let mut scale = unit_us;
        for d in frac_part.chars() {
            let digit = d.to_digit(10).ok_or_else(|| err("malformed number"))? as u128;
            if !scale.is_multiple_of(10) {
                if digit != 0 {
                    return Err(err("finer than one microsecond"));
                }
                continue;
            }
            scale /= 10;
            us += digit * scale;
        }
        let us = u64::try_from(us).map_err(|_| err("number too large"))?;
        Ok(Dur::from_micros(us))
    }
}

impl fmt::Display for Dur {
    /// Canonical form: the largest of `h`, `m`, `s`, `ms`, `us` that represents the value as
    /// a whole number (`"1500ms"`, `"2s"`, `"10m"`, `"0s"`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.as_micros();
        if us == 0 {
            return write!(f, "0s");
        }
        for (unit, name) in [(3_600_000_000u64, "h"), (60_000_000, "m"), (1_000_000, "s"), (1_000, "ms")] {
            if us.is_multiple_of(unit) {
                return write!(f, "{}{}", us / unit, name);
            }
        }
        write!(f, "{us}us")
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"250ms\" or \"2s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// Formats seconds for humans: `"850ms"`, `"2.31s"`, `"4m05s"`.
pub fn human_secs(secs: f64) -> String {
    if !secs.is_finite() {
        return format!("{secs}");
    }
    if secs < 1.0 {
        format!("{:.0}ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.2}s")
    } else if secs < 3600.0 {
        format!("{}m{:02.0}s", (secs / 60.0).floor(), secs % 60.0)
    } else {
        format!("{}h{:02.0}m", (secs / 3600.0).floor(), (secs % 3600.0) / 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<Dur>().unwrap().0
    }

    #[test]
    fn parses_units_exactly() {
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("2s"), Duration::from_secs(2));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("0.001s"), Duration::from_millis(1));
        assert_eq!(d("10m"), Duration::from_secs(600));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("750us"), Duration::from_micros(750));
        assert_eq!(d(".5ms"), Duration::from_micros(500));
        assert_eq!(d("0s"), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "5", "ms", "1.2.3s", "3 parsecs", "0.0001ms", "-1s", "1e3ms"] {
            assert!(bad.parse::<Dur>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["0s", "1ms", "1500ms", "2s", "10m", "2h", "1234us"] {
            assert_eq!(s.parse::<Dur>().unwrap().to_string(), s);
        }
        assert_eq!(Dur::from_millis(60_000).to_string(), "1m");
    }

    #[test]
    fn human_secs_formats() {
        assert_eq!(human_secs(0.25), "250ms");
        assert_eq!(human_secs(2.3149), "2.31s");
        assert_eq!(human_secs(245.0), "4m05s");
    }
}
