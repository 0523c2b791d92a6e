//! Event rates (`"100/s"`, `"6000/m"`, `"3600/h"`) and Poisson arrivals.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng, RngExt};

use super::UnitError;

/// Events per second: a finite number `>= 0` (0 switches the process off).
///
/// Written `<number>/<per>` with `per` one of `s` (or `sec`), `m` (or `min`), `h`, or as a
/// bare number, which is per second: `"100/s"`, `"6000/m"` and `"100"` are all 100 per
/// second, `"7200/h"` is 2. The number is anything Rust reads as an `f64` (`"0.5"`, `"1e3"`)
/// except negative, infinite and NaN values; the rate is `number / seconds_per_unit`.
///
/// [`Display`](fmt::Display) writes events per second (`"100/s"`, `"0.5/s"`) and round-trips.
/// Serde writes the same strings and reads them or a plain number, per second (`2`, `0.5`:
/// what scenario files wrote before rates had units).
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct EventRate(f64);

impl EventRate {
    /// No events.
    pub const ZERO: EventRate = EventRate(0.0);

    /// `per_sec` events per second, if that is a finite number `>= 0`.
    pub fn per_second(per_sec: f64) -> Option<EventRate> {
        (per_sec.is_finite() && per_sec >= 0.0).then_some(EventRate(per_sec + 0.0))
    }

    /// Events per second.
    pub fn per_sec(self) -> f64 {
        self.0
    }

    /// Whether this rate is zero (no events).
    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl FromStr for EventRate {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| UnitError::EventRate { input: s.to_string(), reason };
        let t = s.trim();
        let (number, per) = match t.split_once('/') {
            Some((n, unit)) => {
                let per = match unit.trim() {
                    "s" | "sec" => 1.0,
                    "m" | "min" => 60.0,
                    "h" => 3600.0,
                    _ => return Err(err("unknown unit (use /s, /m or /h)")),
                };
                (n.trim(), per)
            }
            None => (t, 1.0),
        };
        let n: f64 = number.parse().map_err(|_| err("not a number"))?;
        if !n.is_finite() || n < 0.0 {
            return Err(err("a rate must be a finite number >= 0"));
        }
        Ok(EventRate(n / per + 0.0))
    }
}

impl fmt::Display for EventRate {
    /// Events per second, `"100/s"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

impl serde::Serialize for EventRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for EventRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EventRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an event rate: a number per second, or a string like \"100/s\" or \"6000/m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EventRate, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<EventRate, E> {
                EventRate::per_second(v).ok_or_else(|| {
                    E::custom(UnitError::EventRate {
                        input: v.to_string(),
                        reason: "a rate must be a finite number >= 0",
                    })
                })
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EventRate, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EventRate, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// One inter-arrival gap of a Poisson process of `per_sec` events per second: exponential,
/// `-ln(1 - U) / per_sec` seconds with `U = rng.random::<f64>()` uniform in `[0, 1)`, as
/// [`Duration::from_secs_f64`] makes it.
///
/// This exact arithmetic (one `random::<f64>()` per gap, these float operations, this
/// rounding) is what the simulator's schedules and trace hashes are built on: do not change
/// it. Panics unless `per_sec > 0` (the gap would be infinite).
pub fn exp_gap<R: Rng + ?Sized>(rng: &mut R, per_sec: f64) -> Duration {
    let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    Duration::from_secs_f64(-u.ln() / per_sec)
}

/// The event times of a Poisson process of `per_sec` events per second in `[from, until)`:
/// `from + gap₁`, `+ gap₂`, … with each gap from [`exp_gap`], summed as [`Duration`]s. Empty
/// (and no draw made) unless `per_sec > 0`.
pub fn poisson_arrivals<R: Rng + ?Sized>(rng: &mut R, per_sec: f64, from: Duration, until: Duration) -> Vec<Duration> {
    let mut times = Vec::new();
    if per_sec.is_nan() || per_sec <= 0.0 {
        return times;
    }
    let mut t = from + exp_gap(rng, per_sec);
    while t < until {
        times.push(t);
        t += exp_gap(rng, per_sec);
    }
    times
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn rate(s: &str) -> f64 {
        s.parse::<EventRate>().unwrap_or_else(|e| panic!("{e}")).per_sec()
    }

    fn reason(s: &str) -> &'static str {
        s.parse::<EventRate>().unwrap_err().reason()
    }

    #[test]
    fn rates_parse_per_second() {
        assert_eq!(rate("100"), 100.0);
        assert_eq!(rate("100/s"), 100.0);
        assert_eq!(rate("100/sec"), 100.0);
        assert_eq!(rate("6000/m"), 100.0);
        assert_eq!(rate("6000/min"), 100.0);
        assert_eq!(rate("3600/h"), 1.0);
        assert_eq!(rate("7200/h"), 2.0);
        assert_eq!(rate("0.5/s"), 0.5);
        assert_eq!(rate(" 120 / m "), 2.0);
        assert_eq!(rate("1e3/s"), 1000.0);
        assert_eq!(rate("0"), 0.0);
        assert!("0/s".parse::<EventRate>().unwrap().is_zero());
    }

    #[test]
    fn bad_rates_say_why() {
        assert_eq!(reason("-1/s"), "a rate must be a finite number >= 0");
        assert_eq!(reason("inf"), "a rate must be a finite number >= 0");
        assert_eq!(reason("NaN/s"), "a rate must be a finite number >= 0");
        assert_eq!(reason("fast"), "not a number");
        assert_eq!(reason("/s"), "not a number");
        assert_eq!(reason(""), "not a number");
        assert_eq!(reason("10/fortnight"), "unknown unit (use /s, /m or /h)");
        assert_eq!(reason("10/s/s"), "unknown unit (use /s, /m or /h)");
    }

    #[test]
    fn display_and_serde_round_trip() {
        for (input, shown) in [("100", "100/s"), ("6000/m", "100/s"), ("1800/h", "0.5/s"), ("0/m", "0/s")] {
            let v: EventRate = input.parse().unwrap();
            assert_eq!(v.to_string(), shown);
            assert_eq!(shown.parse::<EventRate>().unwrap(), v);
        }
        let v: EventRate = serde_json::from_str("\"6000/m\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"100/s\"");
        // A plain number is per second, bit for bit the same f64.
        for (json, per_sec) in [("2", 2.0), ("0.5", 0.5), ("1.113", 1.113), ("0", 0.0)] {
            assert_eq!(serde_json::from_str::<EventRate>(json).unwrap().per_sec().to_bits(), f64::to_bits(per_sec));
        }
        let e = serde_json::from_str::<EventRate>("-1").unwrap_err().to_string();
        assert!(e.contains("a rate must be a finite number >= 0"), "{e}");
        assert!(serde_json::from_str::<EventRate>("true").is_err());
        assert_eq!(EventRate::per_second(2.5).unwrap().per_sec(), 2.5);
        assert_eq!(EventRate::per_second(-0.0), Some(EventRate::ZERO));
        assert_eq!(EventRate::per_second(-1.0), None);
        assert_eq!(EventRate::per_second(f64::INFINITY), None);
    }

    #[test]
    fn exp_gap_is_the_pinned_arithmetic() {
        // The simulator's schedules depend on this exact formula; recompute it by hand.
        let mut a = ChaCha8Rng::seed_from_u64(42);
        let mut b = ChaCha8Rng::seed_from_u64(42);
        for rate in [0.5, 2.0, 100.0, 1e6] {
            let u = (b.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            let want = Duration::from_secs_f64(-(1.0 - u).ln() / rate);
            assert_eq!(exp_gap(&mut a, rate), want);
        }
        // Pinned: a change of rand's float conversion would shift every schedule.
        let mut r = ChaCha8Rng::seed_from_u64(7);
        let got: Vec<u128> = (0..3).map(|_| exp_gap(&mut r, 1.0).as_nanos()).collect();
        assert_eq!(got, [171_733_129, 183_910_053, 1_218_329_125]);
    }

    #[test]
    fn poisson_arrivals_follow_the_rate_and_stay_in_the_window() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (from, until) = (Duration::from_secs(10), Duration::from_secs(1010));
        let t = poisson_arrivals(&mut rng, 4.0, from, until);
        // 4000 expected; allow 5 sigma.
        assert!((t.len() as f64 - 4000.0).abs() < 5.0 * 4000f64.sqrt(), "{}", t.len());
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert!(t.iter().all(|&x| x > from && x < until));
        // Same draws as walking exp_gap by hand.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut x = from + exp_gap(&mut rng, 4.0);
        for &got in &t {
            assert_eq!(got, x);
            x += exp_gap(&mut rng, 4.0);
        }
        assert!(x >= until);
    }

    #[test]
    fn no_rate_no_arrivals_and_no_draws() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for r in [0.0, -1.0, f64::NAN] {
            assert!(poisson_arrivals(&mut rng, r, Duration::ZERO, Duration::from_secs(100)).is_empty());
        }
        assert_eq!(rng.next_u64(), ChaCha8Rng::seed_from_u64(1).next_u64());
    }

    proptest! {
        #[test]
        fn any_rate_round_trips(x in 0.0f64..1e12) {
            let v = EventRate::per_second(x).unwrap();
            prop_assert_eq!(v.to_string().parse::<EventRate>().unwrap(), v);
        }
    }
}
