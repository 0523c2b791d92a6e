//! Human units on the command line and in reports: durations (`30s`, `500ms`, `1m30s`) and
//! rates (`100/s`, `6000/m`).
//!
//! Kept separate because the CLI, the `--fail-on` rules and the printed summary all speak the
//! same units and must agree on them. A bare number is never accepted as a duration: `--hold 60`
//! could mean seconds or milliseconds, so the unit is mandatory.

use std::time::Duration;

/// Units accepted by [`parse_duration`], longest spelling first so `ms` wins over `m`.
const DURATION_UNITS: &[(&str, f64)] =
    &[("min", 60.0), ("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("h", 3600.0), ("m", 60.0), ("s", 1.0)];

/// Parses a human duration: one or more `<number><unit>` parts, e.g. `30s`, `500ms`, `1.5s`,
/// `2m`, `1m30s`, `250us`. Units: `h`, `m`/`min`, `s`, `ms`, `us`/`µs`, `ns`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. 30s, 500ms or 2m".into());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{text:?} is not a duration; write e.g. 30s, 500ms or 2m"));
        }
        let number: f64 =
            rest[..num_len].parse().map_err(|_| format!("{text:?}: {:?} is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let Some(&(unit, scale)) = DURATION_UNITS.iter().find(|(u, _)| rest.starts_with(u)) else {
            return Err(if rest.is_empty() {
                format!("{text:?} has no unit; write e.g. {number}s or {number}ms")
            } else {
                format!("{text:?}: unknown unit {rest:?} (use h, m, s, ms, us)")
            });
        };
        rest = &rest[unit.len()..];
        total += number * scale;
    }
    if !total.is_finite() || total > 1e9 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration for people: `0us`, `850us`, `12.3ms`, `1.25s`, `2m05s`.
pub fn format_duration(d: Duration) -> String {
    format_micros(d.as_secs_f64() * 1e6)
}

/// Formats a number of microseconds the way [`format_duration`] does.
pub fn format_micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{}ms", trim3(us / 1e3))
    } else if us < 60e6 {
        format!("{}s", trim3(us / 1e6))
    } else {
        let secs = (us / 1e6).round() as u64;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// Three significant decimals, without trailing zeros (`12.300` -> `12.3`).
fn trim3(x: f64) -> String {
    let s = if x < 10.0 {
        format!("{x:.3}")
    } else if x < 100.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    };
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Parses a rate in events per second: `100`, `100/s`, `6000/m` (or `/min`), `3600/h`, `0.5/s`.
/// Zero is allowed (it switches the process off); negative, infinite and NaN rates are not.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let s = text.trim();
    let (number, per) = match s.split_once('/') {
        Some((n, unit)) => {
            let per = match unit.trim() {
                "s" | "sec" => 1.0,
                "m" | "min" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("{text:?}: unknown rate unit {other:?} (use /s, /m or /h)")),
            };
            (n.trim(), per)
        }
        None => (s, 1.0),
    };
    let n: f64 = number.parse().map_err(|_| format!("{text:?} is not a rate; write e.g. 100/s"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("{text:?}: a rate must be a finite number >= 0"));
    }
    Ok(n / per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration(" 0s ").unwrap(), Duration::ZERO);
    }

    #[test]
    fn durations_without_unit_or_with_garbage_are_rejected() {
        let err = parse_duration("60").unwrap_err();
        assert!(err.contains("no unit"), "{err}");
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
    }

    #[test]
    fn durations_format_for_people() {
        assert_eq!(format_duration(Duration::from_micros(850)), "850us");
        assert_eq!(format_duration(Duration::from_micros(12_300)), "12.3ms");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(format_duration(Duration::from_millis(50)), "50ms");
    }

    #[test]
    fn rates_parse_per_second() {
        assert_eq!(parse_rate("100").unwrap(), 100.0);
        assert_eq!(parse_rate("100/s").unwrap(), 100.0);
        assert_eq!(parse_rate("6000/m").unwrap(), 100.0);
        assert_eq!(parse_rate("7200/h").unwrap(), 2.0);
        assert_eq!(parse_rate("0.5/s").unwrap(), 0.5);
        assert_eq!(parse_rate("0").unwrap(), 0.0);
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10/fortnight").is_err());
        assert!(parse_rate("inf").is_err());
    }
}
