//! Byte rates with a unit: `"64MiB/s"`, `"500KB/s"`, `"unbounded"`.
//!
//! The byte-size part is parsed here rather than with the `bytesize` crate, whose parser
//! (checked at 2.7.0) does not give the same results for the forms accepted here: it
//! multiplies decimals in `f64` and truncates (`"8.2MB"` is 8,199,999 bytes, `"0.5B"` is 0,
//! where this parser gives 8,200,000 and refuses the half byte), reads units case-insensitively
//! (`"64Mb"`, bits to most readers, would be 64 MB) and takes a bare number as bytes, and
//! saturates on overflow instead of failing.

use std::fmt;
use std::str::FromStr;

use super::byte_size::{UNITS, in_largest_unit, number_and_unit, scale_bytes};
use super::{UnitError, serde_as_string};

/// Bytes per second; [`ByteRate::UNBOUNDED`] (0) is no limit, as in pyile's API.
///
/// Written with its unit, so `"64"` can never be misread as bytes or megabytes per second:
/// decimal units (`B`, `KB`, `MB`, `GB`: powers of 1000) and binary units (`KiB`, `MiB`,
/// `GiB`: powers of 1024), case-sensitive, each followed by `/s`; `"unbounded"` is no limit.
/// The value is read exactly and must be a whole number of bytes per second (`"0.5B/s"` is
/// refused, not rounded); 0 must be written `"unbounded"`.
///
/// [`Display`](fmt::Display) is canonical and round-trips: `"unbounded"`, or the largest unit
/// that represents the value as a whole number (`"64MiB/s"`, `"1GB/s"`, `"1500B/s"`). Serde
/// uses the same strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRate(pub u64);

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
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| UnitError::ByteRate { input: s.to_string(), reason };
        let t = s.trim();
        if t == "unbounded" {
            return Ok(ByteRate::UNBOUNDED);
        }
        let (num, unit) = number_and_unit(t).map_err(err)?;
        let unit = unit.strip_suffix("/s").ok_or_else(|| err("the unit must end in /s"))?;
        let bytes = scale_bytes(num, unit, "not a whole number of bytes per second").map_err(err)?;
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
        let (n, unit) = in_largest_unit(self.0);
        write!(f, "{n}{unit}/s")
    }
}

serde_as_string!(ByteRate, "a byte rate string with a unit, like \"64MiB/s\", or \"unbounded\"");

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        assert_eq!(r("8.2MB/s"), 8_200_000);
        assert_eq!(r("0.5KiB/s"), 512);
        assert_eq!(r(" 10 MB/s "), 10_000_000);
        assert_eq!(r("unbounded"), 0);
        assert_eq!(r("64MiB/s"), crate::DEFAULT_DISTRIBUTION_BUDGET);
    }

    #[test]
    fn rejects_what_it_cannot_read_exactly() {
        assert!(bad("64").contains("missing unit"));
        assert!(bad("").contains("missing unit"));
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

    #[test]
    fn serde_uses_the_canonical_string() {
        let v: ByteRate = serde_json::from_str("\"65536KiB/s\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"64MiB/s\"");
        let e = serde_json::from_str::<ByteRate>("67108864").unwrap_err().to_string();
        assert!(e.contains("byte rate string"), "{e}");
    }

    proptest! {
        #[test]
        fn any_rate_round_trips(bytes in any::<u64>()) {
            let v = ByteRate(bytes);
            prop_assert_eq!(v.to_string().parse::<ByteRate>().unwrap(), v);
        }

        #[test]
        fn decimals_in_every_unit_are_exact(int in 0u64..100_000, frac in 0u64..1000, unit in 0usize..UNITS.len()) {
            let (name, scale) = UNITS[unit];
            let text = format!("{int}.{frac:03}{name}/s");
            let exact = u128::from(int * 1000 + frac) * u128::from(scale);
            match text.parse::<ByteRate>() {
                Ok(v) => prop_assert_eq!(u128::from(v.0) * 1000, exact),
                Err(e) => prop_assert!(exact % 1000 != 0 || exact == 0, "{e}"),
            }
        }
    }
}
