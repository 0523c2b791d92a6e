//! Durations with a unit: `"250ms"`, `"2s"`, `"1.5m"`, `"1m30s"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{DecimalError, UnitError, number_len, scale_decimal, serde_as_string};

/// Units, largest first, in nanoseconds (the order a compound duration must follow).
const UNITS: &[(&[&str], u128)] = &[
    (&["h"], 3_600_000_000_000),
    (&["m", "min"], 60_000_000_000),
    (&["s"], 1_000_000_000),
    (&["ms"], 1_000_000),
    (&["us", "µs"], 1_000),
    (&["ns"], 1),
];

/// A duration written with a unit, exact to the microsecond.
///
/// Grammar: one or more `<number><unit>` parts, largest unit first, each unit at most once,
/// optionally separated by spaces: `"250ms"`, `"1.5s"`, `".5ms"`, `"1m30s"`, `"1h 30m"`.
/// A number is decimal digits with at most one point; units are `h`, `m` (or `min`), `s`,
/// `ms`, `us` (or `µs`) and `ns`. A bare number (`"60"`) is refused: it could mean seconds or
/// milliseconds. The value is read exactly and must be a whole number of microseconds:
/// `"0.0001ms"` or `"1500ns"` is an error, never rounded.
///
/// [`Display`](fmt::Display) is canonical, one unit, never compound: the largest of `h`, `m`,
/// `s`, `ms`, `us` that represents the value as a whole number (`"1500ms"`, `"2s"`, `"10m"`,
/// `"0s"`). It round-trips through [`FromStr`], and the simulator writes drawn durations back
/// into scenarios with it, so it must never change. Serde uses the same strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

/// Parses a [`Dur`] into a [`Duration`] (for a clap `value_parser`, or wherever a plain
/// `Duration` is wanted).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    text.parse::<Dur>().map(Dur::get)
}

impl Dur {
    /// Zero.
    pub const ZERO: Dur = Dur(Duration::ZERO);

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
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| UnitError::Duration { input: s.to_string(), reason };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err("empty"));
        }
        let mut total_ns: u128 = 0;
        // Index in UNITS of the previous part's unit: the next must be smaller.
        let mut last: Option<usize> = None;
        while !rest.is_empty() {
            let n = number_len(rest);
            let (number, after) = rest.split_at(n);
            let after = after.trim_start();
            let unit_len = after.find(|c: char| !c.is_alphabetic()).unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            if unit.is_empty() {
                return Err(err(if number.is_empty() { "missing number" } else { "missing unit" }));
            }
            if number.is_empty() {
                return Err(err("missing number"));
            }
            let index = UNITS.iter().position(|(names, _)| names.contains(&unit)).ok_or_else(|| err("unknown unit"))?;
            if last.is_some_and(|l| index <= l) {
                return Err(err("units must go from largest to smallest, each at most once"));
            }
            last = Some(index);
            let ns = scale_decimal(number, UNITS[index].1).map_err(|e| {
                err(match e {
                    DecimalError::Malformed => "malformed number",
                    DecimalError::TooLarge => "number too large",
                    DecimalError::NotWhole => "finer than one microsecond",
                })
            })?;
            total_ns = total_ns.checked_add(ns).ok_or_else(|| err("number too large"))?;
            rest = after.trim_start();
        }
        if !total_ns.is_multiple_of(1000) {
            return Err(err("finer than one microsecond"));
        }
        let us = u64::try_from(total_ns / 1000).map_err(|_| err("number too large"))?;
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

serde_as_string!(Dur, "a duration string with a unit, like \"250ms\" or \"2s\"");

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<Dur>().unwrap_or_else(|e| panic!("{e}")).0
    }

    fn reason(s: &str) -> &'static str {
        s.parse::<Dur>().unwrap_err().reason()
    }

    #[test]
    fn parses_units_exactly() {
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("2s"), Duration::from_secs(2));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("0.001s"), Duration::from_millis(1));
        assert_eq!(d("10m"), Duration::from_secs(600));
        assert_eq!(d("2min"), Duration::from_secs(120));
        assert_eq!(d("1h"), Duration::from_secs(3600));
        assert_eq!(d("750us"), Duration::from_micros(750));
        assert_eq!(d("750µs"), Duration::from_micros(750));
        assert_eq!(d(".5ms"), Duration::from_micros(500));
        assert_eq!(d("5.s"), Duration::from_secs(5));
        assert_eq!(d("0s"), Duration::ZERO);
        assert_eq!(d(" 10 ms "), Duration::from_millis(10));
        assert_eq!(d("1.5000000000000000000000000s"), Duration::from_millis(1500));
    }

    #[test]
    fn parses_compound_durations_like_loadgen_did() {
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("1h 30m"), Duration::from_secs(5400));
        assert_eq!(d("1h2m3s4ms5us"), Duration::from_micros(3_723_004_005));
        assert_eq!(d("1.5m30s"), Duration::from_secs(120));
        assert_eq!(d("2s500ms"), Duration::from_millis(2500));
        // Nanoseconds are read, but only whole microseconds are durations.
        assert_eq!(d("2000ns"), Duration::from_micros(2));
        assert_eq!(d("1us1000ns"), Duration::from_micros(2));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "5", "ms", "1.2.3s", "3 parsecs", "0.0001ms", "-1s", "1e3ms", "1m30", "s5", "1s 2"] {
            assert!(bad.parse::<Dur>().is_err(), "{bad:?} should not parse");
        }
        assert_eq!(reason(""), "empty");
        assert_eq!(reason("60"), "missing unit");
        assert_eq!(reason("1m30"), "missing unit");
        assert_eq!(reason("ms"), "missing number");
        assert_eq!(reason("-1s"), "missing number");
        assert_eq!(reason("3 parsecs"), "unknown unit");
        assert_eq!(reason("1e3ms"), "unknown unit");
        assert_eq!(reason("1.2.3s"), "malformed number");
        assert_eq!(reason("."), "missing unit");
        assert_eq!(reason(".s"), "malformed number");
        assert_eq!(reason("99999999999999999999999h"), "number too large");
        assert_eq!(reason("99999999999999h"), "number too large");
    }

    #[test]
    fn finer_than_a_microsecond_is_an_error_not_rounded() {
        for bad in ["0.0001ms", "1500ns", "1ns", "0.5us", "1s1ns", "1us500ns", "0.0000000000000000000001s"] {
            assert_eq!(reason(bad), "finer than one microsecond", "{bad}");
        }
    }

    #[test]
    fn compound_units_go_from_largest_to_smallest_once() {
        for bad in ["30s1m", "1s1s", "1m1min", "5ms1s"] {
            assert_eq!(reason(bad), "units must go from largest to smallest, each at most once", "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["0s", "1ms", "1500ms", "2s", "10m", "2h", "1234us"] {
            assert_eq!(s.parse::<Dur>().unwrap().to_string(), s);
        }
        assert_eq!(Dur::from_millis(60_000).to_string(), "1m");
        assert_eq!("1m30s".parse::<Dur>().unwrap().to_string(), "90s");
        assert_eq!("1h30m".parse::<Dur>().unwrap().to_string(), "90m");
        assert_eq!("1.5s".parse::<Dur>().unwrap().to_string(), "1500ms");
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let v: Dur = serde_json::from_str("\"1m30s\"").unwrap();
        assert_eq!(v, Dur::from_secs(90));
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"90s\"");
        let e = serde_json::from_str::<Dur>("90").unwrap_err().to_string();
        assert!(e.contains("a duration string with a unit"), "{e}");
        let e = serde_json::from_str::<Dur>("\"90\"").unwrap_err().to_string();
        assert!(e.contains("missing unit"), "{e}");
    }

    #[test]
    fn parse_duration_gives_a_std_duration() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("30").is_err());
    }

    proptest! {
        #[test]
        fn any_whole_microsecond_count_round_trips(us in 0u64..=u64::MAX / 2) {
            let v = Dur::from_micros(us);
            prop_assert_eq!(v.to_string().parse::<Dur>().unwrap(), v);
        }

        #[test]
        fn compound_parts_add_up(h in 0u64..1000, m in 0u64..60, s in 0u64..60, ms in 0u64..1000, us in 0u64..1000) {
            let text = format!("{h}h{m}m{s}s{ms}ms{us}us");
            let want = Duration::from_micros((((h * 60 + m) * 60 + s) * 1000 + ms) * 1000 + us);
            prop_assert_eq!(d(&text), want);
        }

        #[test]
        fn decimals_are_exact(int in 0u64..1_000_000, frac in 0u64..1000) {
            // `int.frac` seconds with three decimals is a whole number of milliseconds.
            let text = format!("{int}.{frac:03}s");
            prop_assert_eq!(d(&text), Duration::from_millis(int * 1000 + frac));
        }
    }
}
