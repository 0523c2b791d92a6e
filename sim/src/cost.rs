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
//! Traffic is the other cost. The sim's joiners speak protocol 2, so after the whole list a
//! newcomer gets on its new distribution connection (m members: ~m × [`ENTRY_BYTES`]), each
//! membership change reaches every member as a delta ([`DELTA_OVERHEAD`] plus an entry per
//! changed address): a round costs O(m), not the O(m²) of whole lists. The changes that
//! arrive within one distribution interval (10 ms) after a round coalesce into one merged
//! delta at its end; the distribution budget paces only reference (v1) members, which the
//! sim does not run. [`distribution_traffic`] replays the scheduled joins and leaves through
//! that rule ([`Pacing`], which asks pyile's own pacing rule).
//!
//! History: with whole lists to every member, `scale_1000` (1,000 joiners, 1,180 changes)
//! moved ~2.46 GB of simulated lists under the default 64 MiB/s budget (1 m 47 s wall, of
//! which the host curve explains ~1 m 12 s) and ~10 GB without a budget (3 m 39 s): that
//! calibrated [`SECS_PER_DIST_BYTE`], 1.5e-8 s per byte. With deltas it moves ~40 MB.

use std::time::Duration;

use pyile::units::Dur;

use crate::metrics::human_secs;

/// Measured (hosts, wall seconds per 60 simulated seconds at a 1 ms tick).
pub const MEASURED: &[(f64, f64)] = &[(10.0, 1.0), (50.0, 25.0), (100.0, 151.0), (500.0, 27_360.0)];

/// Extra wall seconds per joiner per simulated minute (1,000 joiners on 10 hosts: +0.4 s).
pub const PER_JOINER_MINUTE: f64 = 0.0004;

/// Wall seconds per simulated byte of member-list distribution, calibrated on scale_1000:
/// (107 s measured − 71.6 s host curve) / the 2.36 GB [`distribution_traffic`] models for it
/// (it measured 2.46 GB). Before the distribution budget the same run gave 1.5e-8 too:
/// (219 s − 72 s) / ~9.9 GB.
pub const SECS_PER_DIST_BYTE: f64 = 1.5e-8;

/// Bytes of one member-list entry on the wire (`["192.168.0.10", 49153],`).
pub const ENTRY_BYTES: f64 = 23.0;

/// Bytes of a delta besides its entries:
/// `{"delta":true,"base":1234,"version":1235,"removed":[],"added":[]}`.
pub const DELTA_OVERHEAD: f64 = 64.0;

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
    /// Estimated distribution rounds (the newest list to every member).
    pub dist_rounds: u64,
    /// Estimated wall seconds for one run on one core.
    pub wall_secs: f64,
}

/// Estimates one run's wall time from its size alone (no traffic term).
pub fn estimate(hosts: u64, joiners: u64, duration: Duration, tick: Duration) -> CostEstimate {
    let minutes = duration.as_secs_f64() / 60.0;
    let tick_factor = 0.001 / tick.as_secs_f64().max(1e-6);
    let wall = wall_per_sim_minute(hosts as f64) * minutes * tick_factor + PER_JOINER_MINUTE * joiners as f64 * minutes;
    CostEstimate { hosts, joiners, duration, tick, dist_bytes: 0.0, dist_rounds: 0, wall_secs: wall }
}

/// How the authenticator spaces distribution rounds, seen by member count: pyile's own
/// [`pyile::authenticator::state::Pacing`] for a protocol-2 member (sim's joiners are; the
/// budget does not pace them), fed the list size a member count makes, so the model follows
/// any change to the rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing(pyile::authenticator::state::Pacing);

impl Pacing {
    /// The pacing of an authenticator configured with `a`.
    pub fn of(a: &crate::scenario::AuthSettings) -> Self {
        Self::new(a.distribution_budget.bytes_per_sec(), a.heartbeat_timeout().get())
    }

    /// Pacing with `budget` bytes per second (0 = unbounded) and `heartbeat_timeout`.
    pub fn new(budget: u64, heartbeat_timeout: Duration) -> Self {
        let cfg = pyile::AuthenticatorConfig::new("")
            .heartbeat_interval(heartbeat_timeout / 3)
            .heartbeat_timeout(heartbeat_timeout)
            .distribution_budget(budget);
        Pacing(pyile::authenticator::state::Pacing::of(&cfg, true))
    }

    /// Seconds each member's writer waits after sending a list while `members` joiners are
    /// members: the list has `members` + 1 entries (the authenticator's own first) of
    /// [`ENTRY_BYTES`] each.
    pub fn gap(&self, members: f64) -> f64 {
        let entries = members.max(0.0) + 1.0;
        self.0.gap((entries * ENTRY_BYTES) as usize, entries as usize).as_secs_f64()
    }
}

/// Bytes of one full round of whole lists: the list (`members` + 1 entries) to each of
/// `members` members (what reference members get; protocol-2 members only on joining).
pub fn round_bytes(members: f64) -> f64 {
    members * (members + 1.0) * ENTRY_BYTES
}

/// Bytes of one round of deltas: one delta carrying `changes` addresses to each of
/// `members` members.
pub fn delta_round_bytes(members: f64, changes: u64) -> f64 {
    members * (DELTA_OVERHEAD + changes as f64 * ENTRY_BYTES)
}

/// The distribution traffic of a sequence of membership changes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Traffic {
    /// Membership changes (each one list published).
    pub changes: u64,
    /// Distribution rounds (the newest list to every member).
    pub rounds: u64,
    /// Simulated bytes of member lists.
    pub bytes: f64,
}

/// Replays membership changes (`(time, +1)` a join, `(time, -1)` a leave, in time order)
/// through the authenticator's pacing of protocol-2 members: a joiner gets the whole list
/// once; a change after the previous round's gap has passed is a round of deltas at once;
/// changes inside the gap coalesce into one round of merged deltas at the gap's end.
/// Members are clamped to `[0, max_members]`.
pub fn distribution_traffic(
    changes: impl IntoIterator<Item = (Duration, i8)>,
    max_members: u64,
    pacing: &Pacing,
) -> Traffic {
    let mut t = Traffic::default();
    let mut members = 0f64;
    // When the writers' current gap ends, and how many changes wait for it.
    let mut free_at = f64::NEG_INFINITY;
    let mut pending = 0u64;
    let round = |t: &mut Traffic, members: f64, changes: u64, at: f64| {
        t.rounds += 1;
        t.bytes += delta_round_bytes(members, changes);
        at + pacing.gap(members)
    };
    for (at, c) in changes {
        let at = at.as_secs_f64();
        if pending > 0 && free_at <= at {
            // The coalesced round went out at the end of the gap, before this change.
            free_at = round(&mut t, members, pending, free_at);
            pending = 0;
        }
        t.changes += 1;
        members = (members + f64::from(c)).clamp(0.0, max_members as f64);
        if c > 0 {
            t.bytes += (members + 1.0) * ENTRY_BYTES; // the newcomer's first whole list
        }
        if at >= free_at {
            free_at = round(&mut t, members, 1, at);
        } else {
            pending += 1;
        }
    }
    if pending > 0 {
        round(&mut t, members, pending, free_at);
    }
    t
}

/// The membership changes a resolved scenario schedules for `seed`, in time order: group
/// joins and timeline joins (+1), timeline leaves (−1). Crashes and restarts are not
/// counted (what they hit is decided at run time; their removals and rejoins coalesce).
pub fn scheduled_changes(s: &crate::scenario::Scenario, seed: u64) -> Vec<(Duration, i8)> {
    use crate::timeline::Op;
    let layout = crate::layout::Layout::new(s);
    crate::timeline::expand(s, &layout, seed)
        .into_iter()
        .filter_map(|e| match e.op {
            Op::JoinJoiner { .. } | Op::JoinFrom { .. } => Some((e.at, 1i8)),
            Op::LeaveFrom { .. } => Some((e.at, -1)),
            _ => None,
        })
        .collect()
}

/// Estimates a resolved scenario for `seed`: the host curve plus the distribution traffic
/// of its scheduled joins and leaves, paced by its authenticator's budget.
pub fn scenario_estimate(s: &crate::scenario::Scenario, seed: u64) -> CostEstimate {
    let mut e = estimate(s.host_count(), s.joiner_count(), s.duration.get(), s.tick.get());
    let traffic = distribution_traffic(scheduled_changes(s, seed), s.joiner_count(), &Pacing::of(&s.authenticator));
    e.dist_bytes = traffic.bytes;
    e.dist_rounds = traffic.rounds;
    e.wall_secs += e.dist_bytes * SECS_PER_DIST_BYTE;
    e
}

impl CostEstimate {
    /// Total wall seconds for `seeds` seeds spread over `threads` cores, each run `passes`
    /// times (2 with `--check-determinism`: a seed's second run follows its first on the
    /// same core, so passes do not spread over cores).
    pub fn total_secs(&self, seeds: u64, passes: u64, threads: u64) -> f64 {
        self.wall_secs * passes as f64 * (seeds as f64 / threads.max(1) as f64).ceil()
    }

    /// The warning to print before running `seeds` seeds `passes` times each on `threads`
    /// cores, if it will be slow.
    pub fn warning(&self, scenario: &str, seeds: u64, passes: u64, threads: u64) -> Option<String> {
        if self.wall_secs < WARN_SECONDS {
            return None;
        }
        Some(format!(
            "warning: {scenario}: {} simulated hosts for {} at tick {}{} will take about {} per run \
             ({} for {} run(s) on {threads} core(s)); turmoil's step cost grows ~hosts^3 \
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
            human_secs(self.total_secs(seeds, passes, threads)),
            seeds * passes,
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

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// `n` joins, `every` seconds apart from `t0`.
    fn joins(t0: f64, n: usize, every: f64) -> Vec<(Duration, i8)> {
        (0..n).map(|k| (secs(t0 + k as f64 * every), 1)).collect()
    }

    /// The default authenticator's pacing (64 MiB/s, 2 s heartbeats, 6 s timeout).
    fn default_pacing() -> Pacing {
        Pacing::new(pyile::DEFAULT_DISTRIBUTION_BUDGET, Duration::from_secs(6))
    }

    #[test]
    fn gap_is_the_distribution_interval_whatever_the_budget() {
        // Protocol-2 members get deltas: the byte budget no longer paces them, at any size;
        // the delta rate (100,000 writes a second) stretches the interval past 1,000 members.
        for members in [100.0, 500.0, 998.0] {
            assert_eq!(default_pacing().gap(members), 0.010, "{members}");
            assert_eq!(Pacing::new(0, Duration::from_secs(6)).gap(members), 0.010, "{members}");
        }
        assert!((default_pacing().gap(9_999.0) - 0.100).abs() < 1e-9);
        assert!((Pacing::new(0, Duration::from_secs(6)).gap(9_999.0) - 0.100).abs() < 1e-9);
    }

    #[test]
    fn changes_slower_than_the_gap_are_a_round_each_and_grow_quadratically() {
        let unbounded = Pacing::new(0, Duration::from_secs(6));
        let storm = |n: usize| distribution_traffic(joins(0.0, n, 1.0), n as u64, &unbounded);
        // Join k: its whole list (k + 1 entries), then a one-entry delta to each of k members.
        let want: f64 = (1..=3).map(|k| (k as f64 + 1.0) * ENTRY_BYTES + delta_round_bytes(k as f64, 1)).sum();
        assert_eq!(storm(3).bytes, want);
        assert_eq!((storm(3).changes, storm(3).rounds), (3, 3));
        let ratio = storm(200).bytes / storm(100).bytes;
        assert!((3.8..4.2).contains(&ratio), "{ratio}");
        // Leaves below zero and joins above the joiner count are clamped.
        let t = |c: &[i8]| c.iter().enumerate().map(|(k, &c)| (secs(k as f64), c)).collect::<Vec<_>>();
        let one_join = 2.0 * ENTRY_BYTES + delta_round_bytes(1.0, 1);
        assert_eq!(distribution_traffic(t(&[-1, -1, 1]), 1, &unbounded).bytes, one_join);
    }

    #[test]
    fn a_burst_within_one_gap_coalesces_into_one_merged_delta() {
        // 1,000 members, then 50 leaves 1 ms apart: the first goes out at once, the other
        // 49 in merged deltas, one per 10 ms interval.
        let base = joins(0.0, 1000, 60.0);
        let end = 1000.0 * 60.0;
        let all: Vec<_> =
            base.iter().copied().chain((0..50).map(|k| (secs(end + 60.0 + k as f64 * 0.001), -1))).collect();
        let before = distribution_traffic(base.iter().copied(), 1000, &default_pacing());
        let after = distribution_traffic(all, 1000, &default_pacing());
        assert_eq!(after.rounds - before.rounds, 6, "one at once, then one per 10 ms");
        // Each member gets 6 deltas carrying the 50 addresses between them.
        let bytes = after.bytes - before.bytes;
        assert!(
            (950.0 * (6.0 * DELTA_OVERHEAD + 50.0 * ENTRY_BYTES)..1000.0 * (6.0 * DELTA_OVERHEAD + 50.0 * ENTRY_BYTES))
                .contains(&bytes),
            "{bytes}"
        );
    }

    #[test]
    fn a_join_storm_costs_the_same_with_or_without_a_budget() {
        // scale_1000's storm: 1,000 joins 30 ms apart, each its own round.
        let t = distribution_traffic(joins(0.0, 1000, 0.030), 1000, &default_pacing());
        let unbounded = distribution_traffic(joins(0.0, 1000, 0.030), 1000, &Pacing::new(0, Duration::from_secs(6)));
        assert_eq!(t, unbounded);
        assert_eq!(t.rounds, 1000);
        // Σ (m + 1) × 23 for the newcomers' lists + Σ m × 87 for the deltas: ~55 MB,
        // against ~2.4 GB of whole lists under the budget before deltas.
        assert!((5.0e7..6.0e7).contains(&t.bytes), "{}", t.bytes);
    }

    #[test]
    fn shipped_scenarios_estimates_match_measurements() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let est = |name: &str| {
            let src = crate::scenario::LoadedScenario::load(dir.join(name)).unwrap();
            scenario_estimate(&src.resolve(1).unwrap().scenario, 1)
        };
        // Measured in release builds on the 2-core machine (seed 1), with deltas: 1 m 23 s
        // (user 59 s, the machine shared with two other builds), 66 MB of lists (53 MB of
        // deltas, 13 MB of first lists) where whole lists moved 2.46 GB in 1 m 47 s.
        let scale = est("scale_1000.toml");
        let measured = 83.0;
        assert!(
            (scale.wall_secs - measured).abs() / measured < 0.3,
            "scale_1000 measured 1m23s, estimated {}",
            scale.wall_secs
        );
        assert!((4.0e7..9.0e7).contains(&scale.dist_bytes), "{}", scale.dist_bytes);
        let w = scale.warning("scale_1000", 1, 1, 2).unwrap();
        assert!(!w.contains("GB of member lists") && w.contains("per run"), "{w}");
        // The budget no longer changes what the sim's (protocol-2) joiners cost.
        let src = crate::scenario::LoadedScenario::load(dir.join("scale_1000.toml")).unwrap();
        let mut unbounded = src.resolve(1).unwrap().scenario;
        unbounded.authenticator.distribution_budget = pyile::units::ByteRate::UNBOUNDED;
        assert_eq!(scenario_estimate(&unbounded, 1), scale);
        let churn = est("churn.toml");
        let measured = 2.4;
        assert!(
            (churn.wall_secs - measured).abs() / measured < 0.3,
            "churn measured 2.4 s, estimated {}",
            churn.wall_secs
        );
        assert_eq!(churn.warning("churn", 3, 2, 2), None);
    }

    #[test]
    fn warns_only_when_slow() {
        let small = estimate(11, 50, Duration::from_secs(120), Duration::from_millis(1));
        assert_eq!(small.warning("churn", 3, 1, 2), None);
        let big = estimate(100, 1000, Duration::from_secs(600), Duration::from_millis(1));
        let w = big.warning("big", 4, 1, 2).unwrap();
        assert!(w.contains("100 simulated hosts") && w.contains("joiners_per_host"), "{w}");
        assert!((big.total_secs(4, 1, 2) - 2.0 * big.wall_secs).abs() < 1e-9);
        assert!((big.total_secs(4, 2, 2) - 4.0 * big.wall_secs).abs() < 1e-9);
        assert!((big.total_secs(1, 2, 2) - 2.0 * big.wall_secs).abs() < 1e-9, "passes do not spread");
        assert!(big.warning("big", 4, 2, 2).unwrap().contains("for 8 run(s) on 2 core(s)"));
    }
}
