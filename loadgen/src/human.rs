//! Measured times for people: latencies and elapsed times in the summary table, the
//! `--fail-on` messages and the progress line (`850us`, `12.3ms`, `1.25s`, `2m05s`).
//!
//! Reporting only: the units loadgen *reads* (durations, rates, the password source) are
//! `pyile::units`, the same parsers as the `pyile` binary and the simulator's scenarios.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_for_people() {
        assert_eq!(format_duration(Duration::from_micros(850)), "850us");
        assert_eq!(format_duration(Duration::from_micros(12_300)), "12.3ms");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(format_duration(Duration::from_millis(50)), "50ms");
    }
}
