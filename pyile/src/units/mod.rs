//! Units shared by the binaries and the simulator's scenario files: one grammar each, one
//! parser each, one canonical printing each.
//!
//! | type / function | written as | used by |
//! |---|---|---|
//! | [`Dur`], [`parse_duration`] | `"250ms"`, `"1.5s"`, `"1m30s"` | scenario times, every duration flag |
//! | [`ByteRate`] | `"64MiB/s"`, `"500KB/s"`, `"unbounded"` | `distribution_budget`, `pyile auth --distribution-budget` |
//! | [`ByteSize`] | `"1MiB"`, `"2KiB"`, `"300B"` | loadgen's `--attack` sizes |
//! | [`EventRate`] | `"100/s"`, `"6000/m"`, `"3600/h"` | loadgen's rate flags, scenario event rates (`join_rate`, `leave_rate`, `rate`) |
//! | [`exp_gap`], [`poisson_arrivals`] | – | Poisson arrivals in the simulator's timeline and loadgen's plan |
//! | [`resolve_password`] | file > flag / `PYILE_PASSWORD` | `pyile auth`/`join`, loadgen |
//!
//! A duration or a byte rate always carries its unit, so `"60"` can never be misread as
//! seconds or milliseconds (an event rate alone may be bare: per second). Values are exact:
//! decimals are read with integer arithmetic, and a value that is not a whole number of the
//! type's resolution (one microsecond, one byte per second) is an error, never rounded.
//! Every parse failure is a [`UnitError`] that names the input, says what was wrong and shows
//! what would be accepted ("write e.g. …").
//!
//! Nothing here knows about command lines: the binaries' clap structs call these functions.

mod byte_rate;
mod byte_size;
mod duration;
mod event_rate;
mod password;

pub use byte_rate::ByteRate;
pub use byte_size::ByteSize;
pub use duration::{Dur, parse_duration};
pub use event_rate::{EventRate, exp_gap, poisson_arrivals};
pub use password::{PASSWORD_ENV, PasswordError, resolve_password};

/// Why a duration, byte rate or event rate did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a [`Dur`].
    #[error(
        "invalid duration {input:?}: {reason} (write e.g. \"250ms\", \"2s\", \"1.5m\", \"1m30s\"; units ns, us, ms, s, m, h)"
    )]
    Duration {
        /// The text that failed to parse.
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// Not a [`ByteRate`].
    #[error(
        "invalid byte rate {input:?}: {reason} (write e.g. \"64MiB/s\", \"500KB/s\", \"1GB/s\" or \"unbounded\"; units B, KB, MB, GB, KiB, MiB, GiB, each followed by /s)"
    )]
    ByteRate {
        /// The text that failed to parse.
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// Not a [`ByteSize`].
    #[error(
        "invalid byte size {input:?}: {reason} (write e.g. \"1MiB\", \"2KiB\", \"1.5MB\", \"300B\"; units B, KB, MB, GB, KiB, MiB, GiB)"
    )]
    ByteSize {
        /// The text that failed to parse.
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// Not an [`EventRate`].
    #[error(
        "invalid event rate {input:?}: {reason} (write e.g. \"100/s\", \"6000/m\", \"3600/h\"; a bare number is per second)"
    )]
    EventRate {
        /// The text that failed to parse.
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
}

impl UnitError {
    /// What was wrong, without the input and the example.
    pub fn reason(&self) -> &'static str {
        match self {
            UnitError::Duration { reason, .. }
            | UnitError::ByteRate { reason, .. }
            | UnitError::ByteSize { reason, .. }
            | UnitError::EventRate { reason, .. } => reason,
        }
    }
}

/// Why a decimal number could not be scaled exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecimalError {
    /// Not `digits`, `digits.digits` or `.digits`.
    Malformed,
    /// Does not fit.
    TooLarge,
    /// `number × scale` has a fractional part.
    NotWhole,
}

/// `number × scale` exactly, where `number` is `123`, `1.5` or `.25` (ASCII digits and at
/// most one point): integer arithmetic, no float rounding. Fails if the product is not whole.
fn scale_decimal(number: &str, scale: u128) -> Result<u128, DecimalError> {
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
        return Err(DecimalError::Malformed);
    }
    if !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::Malformed);
    }
    let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| DecimalError::TooLarge)? };
    let whole = int.checked_mul(scale).ok_or(DecimalError::TooLarge)?;
    // Fraction: Σ digit × scale / 10^k must come out whole. Digits past the 20th can only be
    // zeros for a whole result while `scale` < 10^20, and stopping there keeps u128 safe.
    let (mut num, mut den) = (0u128, 1u128);
    for c in frac_part.chars() {
        let digit = c.to_digit(10).ok_or(DecimalError::Malformed)?;
        if den >= 10u128.pow(20) {
            if digit != 0 {
                return Err(DecimalError::NotWhole);
            }
            continue;
        }
        num = num * 10 + u128::from(digit);
        den *= 10;
    }
    let frac = num.checked_mul(scale).ok_or(DecimalError::TooLarge)?;
    if !frac.is_multiple_of(den) {
        return Err(DecimalError::NotWhole);
    }
    whole.checked_add(frac / den).ok_or(DecimalError::TooLarge)
}

/// Length of the leading run of ASCII digits and points of `s`.
fn number_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len())
}

/// Serde as the canonical string ([`std::fmt::Display`]) and back ([`std::str::FromStr`]).
macro_rules! serde_as_string {
    ($ty:ty, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
use serde_as_string;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_scale_exactly() {
        assert_eq!(scale_decimal("12", 1000), Ok(12_000));
        assert_eq!(scale_decimal("1.5", 1000), Ok(1500));
        assert_eq!(scale_decimal(".25", 1000), Ok(250));
        assert_eq!(scale_decimal("5.", 10), Ok(50));
        assert_eq!(scale_decimal("0.001", 1000), Ok(1));
        assert_eq!(scale_decimal("8.2", 1_000_000), Ok(8_200_000));
        assert_eq!(scale_decimal("1.0000000000000000000000000", 1), Ok(1));
        assert_eq!(scale_decimal("0.0001", 1000), Err(DecimalError::NotWhole));
        assert_eq!(scale_decimal("0.000000000000000000001", 1 << 30), Err(DecimalError::NotWhole));
        assert_eq!(scale_decimal(".", 1), Err(DecimalError::Malformed));
        assert_eq!(scale_decimal("1.2.3", 1), Err(DecimalError::Malformed));
        assert_eq!(scale_decimal("", 1), Err(DecimalError::Malformed));
        assert_eq!(scale_decimal("999999999999999999999999999999999999999999", 1), Err(DecimalError::TooLarge));
        assert_eq!(scale_decimal("99999999999999999999999999999999999999", 1000), Err(DecimalError::TooLarge));
    }

    #[test]
    fn errors_name_the_input_and_show_an_example() {
        let e = "60".parse::<Dur>().unwrap_err();
        assert_eq!(e.reason(), "missing unit");
        let shown = e.to_string();
        assert!(shown.starts_with("invalid duration \"60\": missing unit (write e.g. "), "{shown}");
        let shown = "64".parse::<ByteRate>().unwrap_err().to_string();
        assert!(shown.starts_with("invalid byte rate \"64\": missing unit (write e.g. \"64MiB/s\""), "{shown}");
        let shown = "fast".parse::<EventRate>().unwrap_err().to_string();
        assert!(shown.starts_with("invalid event rate \"fast\": not a number (write e.g. \"100/s\""), "{shown}");
    }
}
