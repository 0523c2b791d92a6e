//! Readable units for chart axes: a range of seconds shown in µs, ms, s or min, a range of
//! bytes in B, KiB or MiB, and compact number labels.

/// A unit to divide values by before plotting: `(divisor, name)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Values in the base unit are divided by this.
    pub divisor: f64,
    /// The unit's name, for axis labels.
    pub name: &'static str,
}

impl Scale {
    /// `v` in this unit.
    pub fn apply(self, v: f64) -> f64 {
        v / self.divisor
    }
}

/// The unit for durations whose largest value is `max_s` seconds.
pub fn time_scale(max_s: f64) -> Scale {
    match max_s {
        m if m < 2e-3 => Scale { divisor: 1e-6, name: "µs" },
        m if m < 2.0 => Scale { divisor: 1e-3, name: "ms" },
        m if m < 300.0 => Scale { divisor: 1.0, name: "s" },
        _ => Scale { divisor: 60.0, name: "min" },
    }
}

/// The unit for sizes whose largest value is `max` bytes.
pub fn byte_scale(max: f64) -> Scale {
    match max {
        m if m < 4096.0 => Scale { divisor: 1.0, name: "B" },
        m if m < 4.0 * 1024.0 * 1024.0 => Scale { divisor: 1024.0, name: "KiB" },
        _ => Scale { divisor: 1024.0 * 1024.0, name: "MiB" },
    }
}

/// A number for a tick label: at most 3 decimals, trailing zeros trimmed, thousands as `k`.
pub fn tick(v: f64) -> String {
    if v.abs() >= 100_000.0 {
        return format!("{}k", tick(v / 1000.0));
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_ticks() {
        assert_eq!(time_scale(0.0005).name, "µs");
        assert_eq!(time_scale(0.5).name, "ms");
        assert_eq!(time_scale(120.0).name, "s");
        assert_eq!(time_scale(3600.0).name, "min");
        assert_eq!(time_scale(0.5).apply(0.25), 250.0);
        assert_eq!(byte_scale(100.0).name, "B");
        assert_eq!(byte_scale(100_000.0).name, "KiB");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(0.1234), "0.123");
        assert_eq!(tick(250_000.0), "250k");
        assert_eq!(tick(-0.0), "0");
    }
}
