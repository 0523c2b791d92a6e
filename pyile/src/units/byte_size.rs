//! Byte sizes with a unit: `"2KiB"`, `"1MiB"`, `"1.5MB"`, `"300B"`; and the unit table that
//! [`ByteRate`](super::ByteRate) shares, so a size and a rate are written the same way.

use std::fmt;
use std::str::FromStr;

use super::{DecimalError, UnitError, number_len, scale_decimal, serde_as_string};

/// Units, largest first (the order [`fmt::Display`] tries them in).
pub(super) const UNITS: &[(&str, u64)] = &[
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

/// `number` of `unit` in bytes, exactly; the reason as [`UnitError`]s word it otherwise.
/// Shared by [`ByteSize`] and [`ByteRate`](super::ByteRate) (after its `/s`).
pub(super) fn scale_bytes(number: &str, unit: &str, what: &'static str) -> Result<u128, &'static str> {
    let &(_, scale) = UNITS.iter().find(|(name, _)| *name == unit).ok_or("unknown unit")?;
    scale_decimal(number, u128::from(scale)).map_err(|e| match e {
        DecimalError::Malformed => "malformed number",
        DecimalError::TooLarge => "number too large",
        DecimalError::NotWhole => what,
    })
}

/// Splits `"1.5MiB"` (trimmed) into its number and its unit, or says which is missing.
pub(super) fn number_and_unit(t: &str) -> Result<(&str, &str), &'static str> {
    let (num, unit) = t.split_at(number_len(t));
    if unit.is_empty() {
        return Err("missing unit");
    }
    if num.is_empty() {
        return Err("missing number");
    }
    Ok((num, unit.trim()))
}

/// `bytes` in the largest unit that represents it as a whole number: (count, unit name).
pub(super) fn in_largest_unit(bytes: u64) -> (u64, &'static str) {
    let &(name, unit) = UNITS.iter().find(|(_, u)| bytes.is_multiple_of(*u)).expect("B divides everything");
    (bytes / unit, name)
}

/// A number of bytes, written with its unit so `"64"` is never misread: decimal units (`B`,
/// `KB`, `MB`, `GB`: powers of 1000) and binary units (`KiB`, `MiB`, `GiB`: powers of 1024),
/// case-sensitive, as in [`ByteRate`](super::ByteRate) without the `/s`. The value is read
/// exactly and must be a whole number of bytes (`"0.5B"` is refused, not rounded); 0 is
/// allowed (`"0B"`).
///
/// [`Display`](fmt::Display) is canonical and round-trips: the largest unit that represents
/// the value as a whole number (`"1MiB"`, `"1500B"`, `"0B"`). Serde uses the same strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| UnitError::ByteSize { input: s.to_string(), reason };
        let t = s.trim();
        let (num, unit) = number_and_unit(t).map_err(err)?;
        let bytes = scale_bytes(num, unit, "not a whole number of bytes").map_err(err)?;
        u64::try_from(bytes).map(ByteSize).map_err(|_| err("number too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that represents the value as a whole number (`"0B"` for zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0B");
        }
        let (n, unit) = in_largest_unit(self.0);
        write!(f, "{n}{unit}")
    }
}

serde_as_string!(ByteSize, "a byte size string with a unit, like \"1MiB\" or \"300B\"");

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn b(s: &str) -> u64 {
        s.parse::<ByteSize>().unwrap_or_else(|e| panic!("{e}")).0
    }

    fn bad(s: &str) -> String {
        s.parse::<ByteSize>().unwrap_err().to_string()
    }

    #[test]
    fn parses_decimal_and_binary_units() {
        assert_eq!(b("1MiB"), 1 << 20);
        assert_eq!(b("2KiB"), 2048);
        assert_eq!(b("1.5MB"), 1_500_000);
        assert_eq!(b("300B"), 300);
        assert_eq!(b(" 4 GiB "), 4 << 30);
        assert_eq!(b("0B"), 0);
        assert_eq!(b("0.5KiB"), 512);
    }

    #[test]
    fn rejects_what_it_cannot_read_exactly() {
        assert!(bad("64").contains("missing unit"), "{}", bad("64"));
        assert!(bad("").contains("missing unit"));
        assert!(bad("MiB").contains("missing number"));
        assert!(bad("64mib").contains("unknown unit"));
        assert!(bad("64MiB/s").contains("unknown unit"));
        assert!(bad("0.5B").contains("whole number of bytes"));
        assert!(bad("1.2.3MB").contains("malformed"));
        assert!(bad("99999999999GiB").contains("too large"));
        assert!(bad("-1MB").contains("missing number"));
        assert!(bad("64").starts_with("invalid byte size \"64\": missing unit (write e.g. \"1MiB\""), "{}", bad("64"));
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (input, shown) in [("1024KiB", "1MiB"), ("1.5MB", "1500KB"), ("1500B", "1500B"), ("0B", "0B")] {
            let v: ByteSize = input.parse().unwrap();
            assert_eq!(v.to_string(), shown, "{input}");
            assert_eq!(shown.parse::<ByteSize>().unwrap(), v, "{shown} round-trips");
        }
        let v: ByteSize = serde_json::from_str("\"2048B\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"2KiB\"");
    }

    proptest! {
        #[test]
        fn any_size_round_trips(bytes in any::<u64>()) {
            let v = ByteSize(bytes);
            prop_assert_eq!(v.to_string().parse::<ByteSize>().unwrap(), v);
        }
    }
}
