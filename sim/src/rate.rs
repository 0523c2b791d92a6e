//! Byte rates with a unit (`"64MiB/s"`, `"500KB/s"`, `"unbounded"`) for scenario files.
//!
//! Like durations, a rate is always written with its unit, so `"64"` can never be misread
//! as bytes or megabytes per second. Decimal units (`B`, `KB`, `MB`, `GB`: powers of 1000)
//! and binary units (`KiB`, `MiB`, `GiB`: powers of 1024) are both accepted, each followed by
//! `/s`; `"unbounded"` means no limit (0 in pyile's API). The value is a whole number of
//! bytes per second; a decimal that is not (`"0.5B/s"`) is rejected rather than rounded.
//! Printing is canonical and round-trips: the largest unit that represents the value as a
//! whole number (`"64MiB/s"`, `"1GB/s"`, `"1500B/s"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Units, largest first (the order [`fmt::Display`] tries them in).
const UNITS: &[(&str, u64)] = &[
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

/// Bytes per second; `ByteRate::UNBOUNDED` (0) is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRate(pub u64);

/// Why a byte rate string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid byte rate {input:?}: {reason} (write e.g. \"64MiB/s\", \"500KB/s\", \"1GB/s\" or \"unbounded\"; units B, KB, MB, GB, KiB, MiB, GiB, each followed by /s)"
)]
pub struct RateError {
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl ByteRate {
    /// No limit (pyile's 0).
    pub const UNBOUNDED: ByteRate = ByteRate(0);

    /// Bytes per second (0 = unbounded), as pyile takes it.
    pub fn bytes_per_sec(self) -> u64 {
        self.0
    }

    /// Whether this is no limit.
    pub fn is_unbounded(self) -> bool {
        self.0 == 0
    }

    /// The largest unit (in bytes) that divides both `a` and `b` (1 if none larger does).
    pub fn common_unit(a: ByteRate, b: ByteRate) -> u64 {
        UNITS.iter().map(|&(_, u)| u).find(|u| a.0.is_multiple_of(*u) && b.0.is_multiple_of(*u)).unwrap_or(1)
    }
}

impl FromStr for ByteRate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| RateError { input: s.to_string(), reason };
        let t = s.trim();
        if t == "unbounded" {
            return Ok(ByteRate::UNBOUNDED);
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| err("missing unit"))?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(err("missing number"));
        }
        let unit = unit.trim().strip_suffix("/s").ok_or_else(|| err("the unit must end in /s"))?;
        let &(_, scale) = UNITS.iter().find(|(name, _)| *name == unit).ok_or_else(|| err("unknown unit"))?;
        // Exact decimal arithmetic, as for durations: no float rounding.
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(err("malformed number"));
        }
        let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| err("number too large"))? };
        let mut bytes = int.checked_mul(u128::from(scale)).ok_or_else(|| err("number too large"))?;
        // Fraction digits: value = Σ digit × scale / 10^k, which must come out whole.
        let mut num_frac: u128 = 0;
        let mut den: u128 = 1;
        for d in frac_part.chars() {
            let digit = d.to_digit(10).ok_or_else(|| err("malformed number"))?;
            if den >= 10u128.pow(20) {
                if digit != 0 {
                    return Err(err("too many decimals"));
                }
                continue;
            }
            num_frac = num_frac * 10 + u128::from(digit);
            den *= 10;
        }
        let frac = num_frac * u128::from(scale);
        if !frac.is_multiple_of(den) {
            return Err(err("not a whole number of bytes per second"));
        }
        bytes += frac / den;
        if bytes == 0 {
            return Err(err("a budget must be > 0 (write \"unbounded\" for no limit)"));
        }
        let bytes = u64::try_from(bytes).map_err(|_| err("number too large"))?;
        Ok(ByteRate(bytes))
    }
}

impl fmt::Display for ByteRate {
    /// `"unbounded"`, or the largest unit that represents the value as a whole number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unbounded() {
            return f.write_str("unbounded");
        }
        let &(name, unit) = UNITS.iter().find(|(_, u)| self.0.is_multiple_of(*u)).expect("B divides everything");
        write!(f, "{}{name}/s", self.0 / unit)
    }
}

impl Serialize for ByteRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte rate string with a unit, like \"64MiB/s\", or \"unbounded\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteRate, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> u64 {
        s.parse::<ByteRate>().unwrap_or_else(|e| panic!("{e}")).0
    }

    fn bad(s: &str) -> String {
        s.parse::<ByteRate>().unwrap_err().to_string()
    }

    #[test]
    fn parses_decimal_and_binary_units() {
        assert_eq!(r("64MiB/s"), 64 << 20);
        assert_eq!(r("500KB/s"), 500_000);
        assert_eq!(r("1GB/s"), 1_000_000_000);
        assert_eq!(r("1GiB/s"), 1 << 30);
        assert_eq!(r("2KiB/s"), 2048);
        assert_eq!(r("7MB/s"), 7_000_000);
        assert_eq!(r("123B/s"), 123);
        assert_eq!(r("1.5MB/s"), 1_500_000);
        assert_eq!(r("0.5KiB/s"), 512);
        assert_eq!(r(" 10 MB/s "), 10_000_000);
        assert_eq!(r("unbounded"), 0);
        assert_eq!(r("64MiB/s"), pyile::DEFAULT_DISTRIBUTION_BUDGET);
    }

    #[test]
    fn rejects_what_it_cannot_read_exactly() {
        assert!(bad("64").contains("missing unit"));
        assert!(bad("64MiB").contains("must end in /s"));
        assert!(bad("64mib/s").contains("unknown unit"));
        assert!(bad("64Mb/s").contains("unknown unit"));
        assert!(bad("64TB/s").contains("unknown unit"));
        assert!(bad("MiB/s").contains("missing number"));
        assert!(bad("1.2.3MB/s").contains("malformed"));
        assert!(bad("0.5B/s").contains("whole number of bytes"));
        assert!(bad("0.1KiB/s").contains("whole number of bytes"));
        assert!(bad("0MB/s").contains("unbounded"));
        assert!(bad("99999999999GiB/s").contains("too large"));
        assert!(bad("Unbounded").contains("missing number"));
        assert!(bad("-1MB/s").contains("missing number"));
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (input, shown) in [
            ("64MiB/s", "64MiB/s"),
            ("65536KiB/s", "64MiB/s"),
            ("1000MB/s", "1GB/s"),
            ("1.5MB/s", "1500KB/s"),
            ("1024000B/s", "1000KiB/s"),
            ("1500B/s", "1500B/s"),
            ("unbounded", "unbounded"),
        ] {
            let v: ByteRate = input.parse().unwrap();
            assert_eq!(v.to_string(), shown, "{input}");
            assert_eq!(shown.parse::<ByteRate>().unwrap(), v, "{shown} round-trips");
        }
    }

    #[test]
    fn common_unit_of_two_rates() {
        let u = |a: &str, b: &str| ByteRate::common_unit(a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(u("1MiB/s", "64MiB/s"), 1 << 20);
        assert_eq!(u("500KB/s", "2MB/s"), 1_000);
        assert_eq!(u("1MB/s", "64MiB/s"), 1);
        assert_eq!(u("1B/s", "1GB/s"), 1);
    }
}
