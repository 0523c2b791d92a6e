//! Wall-time estimate of a run, from turmoil 0.7.2's measured step cost, and the warning
//! printed before a run that will be slow.
//!
//! Every `Sim::step()` scans every host-pair link for every running host, so one tick costs
//! about O(hosts³) whatever the traffic, and a run costs ticks × that. Measured on this
//! project's 2-core machine (issue 3): 60 simulated seconds with 2 s heartbeats at a 1 ms
//! tick took 1.0 s with 10 hosts, 25 s with 50, 151 s with 100, ≈ 7.6 h with 500; 100 hosts
//! at a 10 ms tick took 15.8 s (so cost scales with 1/tick). Joiner *tasks* are nearly free:
//! 1,000 joiners on 10 hosts took 1.4 s. The estimate interpolates those points on a log-log
//! curve; it is a guide for packing joiners onto hosts, not a promise.
//!
//! Traffic is the other cost: every membership change sends the whole list to every member,
//! so a join storm of N joiners moves ~N³/3 list entries. Measured with `scale_1000`
//! (1,000 joiners, 1,180 changes, ~10 GB of simulated lists): 3 m 39 s wall, of which the
//! host curve explains ~1 m 12 s; the rest calibrates [`SECS_PER_DIST_BYTE`].

use std::time::Duration;

use crate::duration::{human_secs, Dur};

/// Measured (hosts, wall seconds per 60 simulated seconds at a 1 ms tick).
pub const MEASURED: &[(f64, f64)] = &[(10.0, 1.0), (50.0, 25.0), (100.0, 151.0), (500.0, 27_360.0)];

/// Extra wall seconds per joiner per simulated minute (1,000 joiners on 10 hosts: +0.4 s).
pub const PER_JOINER_MINUTE: f64 = 0.0004;

/// Wall seconds per simulated byte of member-list distribution (calibrated on scale_1000).
pub const SECS_PER_DIST_BYTE: f64 = 1.5e-8;

/// Bytes of one member-list entry on the wire (`["192.168.0.10", 49153],`).
pub const ENTRY_BYTES: f64 = 23.0;

/// Estimated wall seconds per seed above which a warning is printed.
pub const WARN_SECONDS: f64 = 60.0;

/// Wall seconds per 60 simulated seconds at a 1 ms tick for `hosts`, interpolated on the
/// log-log curve through [`MEASURED`] (extrapolated with the end segments' exponents).
pub fn wall_per_sim_minute(hosts: f64) -> f64 {
    let hosts = hosts.max(1.0);
    let seg = |i: usize| {
        let (h0, w0) = MEASURED[i];
        let (h1, w1) = MEASURED[i + 1];
        let k = (w1 / w0).ln() / (h1 / h0).ln();
        w0 * (hosts / h0).powf(k)
    };
    let last = MEASURED.len() - 2;
    for i in 0..=last {
        if hosts <= MEASURED[i + 1].0 {
            return seg(i);
        }
    }
    seg(last)
}

/// An estimate for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct CostEstimate {
    /// Simulated hosts.
    pub hosts: u64,
    /// Joiners (tasks).
    pub joiners: u64,
    /// Simulated duration.
    pub duration: Duration,
    /// Tick.
    pub tick: Duration,
    /// Estimated simulated bytes of member-list distribution.
    pub dist_bytes: f64,
    /// Estimated wall seconds for one run on one core.
    pub wall_secs: f64,
}

/// Estimates one run's wall time from its size alone (no traffic term).
pub fn estimate(hosts: u64, joiners: u64, duration: Duration, tick: Duration) -> CostEstimate {
    let minutes = duration.as_secs_f64() / 60.0;
    let tick_factor = 0.001 / tick.as_secs_f64().max(1e-6);
    let wall = wall_per_sim_minute(hosts as f64) * minutes * tick_factor
        + PER_JOINER_MINUTE * joiners as f64 * minutes;
    CostEstimate { hosts, joiners, duration, tick, dist_bytes: 0.0, wall_secs: wall }
}

/// Simulated bytes of member lists a sequence of membership changes distributes
/// (`+1` a join, `-1` a leave), each change sending the whole list to every member.
pub fn distribution_bytes(changes: impl IntoIterator<Item = i8>, max_members: u64) -> f64 {
    let mut members = 0f64;
    let mut bytes = 0f64;
    for c in changes {
        members = (members + f64::from(c)).clamp(0.0, max_members as f64);
        bytes += members * (members + 1.0) * ENTRY_BYTES;
    }
    bytes
}

/// Estimates a resolved scenario for `seed`: the host curve plus the distribution traffic
/// of its scheduled joins and leaves.
pub fn scenario_estimate(s: &crate::scenario::Scenario, seed: u64) -> CostEstimate {
    use crate::timeline::Op;
    let layout = crate::layout::Layout::new(s);
    let changes = crate::timeline::expand(s, &layout, seed).into_iter().filter_map(|e| match e.op {
        Op::JoinJoiner { .. } | Op::JoinFrom { .. } => Some(1i8),
        Op::LeaveFrom { .. } => Some(-1),
        _ => None,
    });
    let mut e = estimate(s.host_count(), s.joiner_count(), s.duration.get(), s.tick.get());
    e.dist_bytes = distribution_bytes(changes, s.joiner_count());
    e.wall_secs += e.dist_bytes * SECS_PER_DIST_BYTE;
    e
}

impl CostEstimate {
    /// Total wall seconds for `runs` runs spread over `threads` cores.
    pub fn total_secs(&self, runs: u64, threads: u64) -> f64 {
        self.wall_secs * (runs as f64 / threads.max(1) as f64).ceil()
    }

    /// The warning to print before running `runs` runs on `threads` cores, if it will be slow.
    pub fn warning(&self, scenario: &str, runs: u64, threads: u64) -> Option<String> {
        if self.wall_secs < WARN_SECONDS {
            return None;
        }
        Some(format!(
            "warning: {scenario}: {} simulated hosts for {} at tick {}{} will take about {} per run \
             ({} for {runs} run(s) on {threads} core(s)); turmoil's step cost grows ~hosts^3 \
             (10 hosts 1 s, 50 hosts 25 s, 100 hosts 151 s per simulated minute): pack more \
             joiners per host (joiners_per_host) or raise tick",
            self.hosts,
            Dur(self.duration),
            Dur(self.tick),
            if self.dist_bytes >= 1e8 {
                format!(" with ~{:.1} GB of member lists", self.dist_bytes / 1e9)
            } else {
                String::new()
            },
            human_secs(self.wall_secs),
            human_secs(self.total_secs(runs, threads)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(hosts: u64, tick_ms: u64) -> f64 {
        estimate(hosts, 0, Duration::from_secs(60), Duration::from_millis(tick_ms)).wall_secs
    }

    #[test]
    fn reproduces_the_measured_points() {
        for &(h, w) in MEASURED {
            let e = minute(h as u64, 1);
            assert!((e - w).abs() / w < 1e-9, "{h} hosts: {e} vs {w}");
        }
    }

    #[test]
    fn scales_with_duration_and_inverse_tick() {
        // 100 hosts at 10 ms measured 15.8 s; the model says 15.1 s.
        let e = minute(100, 10);
        assert!((e - 15.8).abs() / 15.8 < 0.1, "{e}");
        let ten_min = estimate(10, 0, Duration::from_secs(600), Duration::from_millis(1)).wall_secs;
        assert!((ten_min - 10.0).abs() < 1e-9);
    }

    #[test]
    fn monotonic_and_superlinear_in_hosts() {
        let mut prev = 0.0;
        for h in 1..700 {
            let w = wall_per_sim_minute(h as f64);
            assert!(w > prev, "{h}");
            prev = w;
        }
        // Doubling hosts costs more than doubling.
        assert!(wall_per_sim_minute(200.0) > 4.0 * wall_per_sim_minute(100.0));
    }

    #[test]
    fn joiner_tasks_are_cheap() {
        // 1,000 joiners on 10 hosts measured 1.4 s per simulated minute.
        let e = estimate(10, 1000, Duration::from_secs(60), Duration::from_millis(1)).wall_secs;
        assert!((e - 1.4).abs() < 0.01, "{e}");
    }

    #[test]
    fn distribution_traffic_grows_cubically_with_a_join_storm() {
        let storm = |n: u64| distribution_bytes(std::iter::repeat_n(1, n as usize), n);
        // Σ k(k+1) × 23 for k = 1..n = n(n+1)(n+2)/3 × 23.
        assert_eq!(storm(3), 23.0 * (2.0 + 6.0 + 12.0));
        let ratio = storm(200) / storm(100);
        assert!((7.5..8.5).contains(&ratio), "{ratio}");
        // Leaves below zero and joins above the joiner count are clamped.
        assert_eq!(distribution_bytes([-1, -1, 1], 1), 23.0 * 2.0);
        assert_eq!(distribution_bytes([1, 1, 1], 1), 3.0 * 23.0 * 2.0);
    }

    #[test]
    fn shipped_scenarios_estimates_match_measurements() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let est = |name: &str| {
            let src = crate::scenario::LoadedScenario::load(dir.join(name)).unwrap();
            scenario_estimate(&src.resolve(1).unwrap().scenario, 1)
        };
        // Measured in release builds on the 2-core machine (seed 1).
        let scale = est("scale_1000.toml");
        assert!((150.0..300.0).contains(&scale.wall_secs), "scale_1000 measured 219 s, estimated {}", scale.wall_secs);
        assert!(scale.warning("scale_1000", 1, 2).unwrap().contains("GB of member lists"));
        let churn = est("churn.toml");
        assert!((1.0..4.5).contains(&churn.wall_secs), "churn measured 2.2 s, estimated {}", churn.wall_secs);
        assert_eq!(churn.warning("churn", 3, 2), None);
    }

    #[test]
    fn warns_only_when_slow() {
        let small = estimate(11, 50, Duration::from_secs(120), Duration::from_millis(1));
        assert_eq!(small.warning("churn", 3, 2), None);
        let big = estimate(100, 1000, Duration::from_secs(600), Duration::from_millis(1));
        let w = big.warning("big", 4, 2).unwrap();
        assert!(w.contains("100 simulated hosts") && w.contains("joiners_per_host"), "{w}");
        assert!((big.total_secs(4, 2) - 2.0 * big.wall_secs).abs() < 1e-9);
    }
}
