//! The schedule: a scenario's timeline expanded into concrete, time-ordered operations.
//!
//! Everything that can be decided before the run is decided here, from the seed: group
//! joins with their stagger, Poisson churn arrivals and burst spreads, ban-flood attempt
//! times, attack connection times, broadcast times, the end of every bounded fault. What depends on the state at the
//! time (which idle joiner joins, which running host crashes) stays a [`Selection`] or a
//! `*From` operation, resolved by the runner with its own seeded RNG when the operation
//! fires. Operations are ordered by (time, sequence number), the sequence number being the
//! order of creation, so equal times keep file order.

use std::time::Duration;

use pyile::units::{EventRate, exp_gap, poisson_arrivals};
use rand::RngExt;

use crate::layout::Layout;
use crate::rng::{SimRng, rng_for};
use crate::scenario::{Action, Direction, Pick, Scenario};

/// Which hosts an operation hits, resolved when it fires.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Candidate hosts (the target's hosts).
    pub hosts: Vec<usize>,
    /// How many of the eligible candidates.
    pub count: SelCount,
    /// How they are chosen.
    pub pick: Pick,
}

/// How many hosts of a selection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SelCount {
    /// Every eligible candidate.
    All,
    /// This many (or fewer if fewer are eligible).
    Hosts(u32),
    /// This fraction of the candidates, rounded up, at least one.
    Fraction(f64),
}

impl Selection {
    /// Chooses from `eligible` (a subset of `hosts`, in host order).
    pub fn choose(&self, eligible: &[usize], rng: &mut SimRng) -> Vec<usize> {
        let want = match self.count {
            SelCount::All => eligible.len(),
            SelCount::Hosts(n) => n as usize,
            SelCount::Fraction(f) => ((self.hosts.len() as f64 * f).ceil() as usize).max(1),
        }
        .min(eligible.len());
        pick_n(eligible, want, self.pick, rng)
    }
}

/// Picks `n` of `items` (first `n`, or a seeded random subset), returned in item order.
pub fn pick_n(items: &[usize], n: usize, pick: Pick, rng: &mut SimRng) -> Vec<usize> {
    let n = n.min(items.len());
    let mut chosen: Vec<usize> = match pick {
        Pick::First => items[..n].to_vec(),
        Pick::Random => {
            // Partial Fisher-Yates on a copy: deterministic for a given RNG state.
            let mut v = items.to_vec();
            for i in 0..n {
                let j = rng.random_range(i..v.len());
                v.swap(i, j);
            }
            v.truncate(n);
            v
        }
    };
    chosen.sort_unstable();
    chosen
}

/// Who sends a broadcast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// The authenticator.
    Authenticator,
    /// Any active joiner (chosen when it fires).
    Any,
    /// An active joiner of this group.
    Group(usize),
}

/// One concrete operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// This joiner joins (a group's `join_at`).
    JoinJoiner {
        /// Joiner id.
        joiner: usize,
    },
    /// One idle joiner of the group joins.
    JoinFrom {
        /// Group index.
        group: usize,
        /// Which idle joiner.
        pick: Pick,
    },
    /// One active joiner of the group leaves gracefully.
    LeaveFrom {
        /// Group index.
        group: usize,
        /// Which active joiner.
        pick: Pick,
    },
    /// Running hosts of the selection crash.
    Crash(Selection),
    /// Crashed hosts of the selection restart.
    Restart {
        /// Which hosts.
        sel: Selection,
        /// Whether their joiners join again.
        rejoin: bool,
    },
    /// A partition between the selection and every other host starts.
    Partition {
        /// Id for its heal.
        id: usize,
        /// Which hosts.
        sel: Selection,
        /// Which direction is cut.
        direction: Direction,
    },
    /// Partition `id` heals.
    HealPartition {
        /// Which.
        id: usize,
    },
    /// Every partition heals.
    HealAll,
    /// A hold between the selection and every other host starts.
    Hold {
        /// Id for its release.
        id: usize,
        /// Which hosts.
        sel: Selection,
    },
    /// Hold `id` is released.
    ReleaseHold {
        /// Which.
        id: usize,
    },
    /// Every hold is released.
    ReleaseAll,
    /// Loss on links touching the selection (None: every link) starts.
    LossStart {
        /// Id for its end.
        id: usize,
        /// Which hosts (None: all).
        sel: Option<Selection>,
        /// turmoil fail_rate.
        fail_rate: f64,
    },
    /// Loss `id` ends.
    LossEnd {
        /// Which.
        id: usize,
    },
    /// An attacker host makes one password attempt.
    Attempt {
        /// Flood index.
        flood: usize,
        /// Attacker host.
        host: usize,
        /// Whether it uses the correct password.
        correct: bool,
    },
    /// An attacker host opens one hostile connection of attack `attack` (its kind and
    /// parameters are the entry's; a spoofer's victim is picked when it fires).
    Attack {
        /// Attack index (into `Layout::attacks`).
        attack: usize,
        /// Attacker host.
        host: usize,
    },
    /// One broadcast.
    Broadcast {
        /// Sender.
        from: Sender,
        /// Payload bytes.
        size: u32,
    },
}

impl Op {
    /// Whether this operation injects a fault (counted in `faults_scheduled`).
    pub fn is_fault(&self) -> bool {
        matches!(self, Op::Crash(_) | Op::Partition { .. } | Op::Hold { .. } | Op::LossStart { .. })
    }
}

/// An operation at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Scheduled {
    /// Simulated time.
    pub at: Duration,
    /// Creation order (tie-break).
    pub seq: u64,
    /// The timeline entry it came from (None: a group's `join_at`).
    pub entry: Option<usize>,
    /// What to do.
    pub op: Op,
}

struct Builder {
    out: Vec<Scheduled>,
    seq: u64,
}

impl Builder {
    fn push(&mut self, at: Duration, entry: Option<usize>, op: Op) {
        self.out.push(Scheduled { at, seq: self.seq, entry, op });
        self.seq += 1;
    }
}

fn selection(
    layout: &Layout,
    target: &str,
    hosts: Option<u32>,
    fraction: Option<f64>,
    pick: Option<Pick>,
) -> Selection {
    Selection {
        hosts: layout.target_hosts(target),
        count: match (hosts, fraction) {
            (Some(n), _) => SelCount::Hosts(n),
            (None, Some(f)) => SelCount::Fraction(f),
            (None, None) => SelCount::All,
        },
        pick: pick.unwrap_or_default(),
    }
}

/// Uniform offset in `[0, spread]`, whole microseconds.
fn spread_offset(rng: &mut SimRng, spread: Duration) -> Duration {
    let us = spread.as_micros() as u64;
    if us == 0 { Duration::ZERO } else { Duration::from_micros(rng.random_range(0..=us)) }
}

/// Expands a resolved scenario into its schedule for `seed`.
pub fn expand(s: &Scenario, layout: &Layout, seed: u64) -> Vec<Scheduled> {
    let mut b = Builder { out: Vec::new(), seq: 0 };
    for (gi, g) in s.joiners.iter().map(|g| g.get_ref()).enumerate() {
        if let Some(at) = g.join_at {
            for (k, &j) in layout.groups[gi].joiners.iter().enumerate() {
                b.push(at.get() + g.stagger.get() * k as u32, None, Op::JoinJoiner { joiner: j });
            }
        }
    }
    let mut next_id = 0usize;
    let mut flood_idx = 0usize;
    let mut attack_idx = 0usize;
    for (ei, e) in s.timeline.iter().map(|e| e.get_ref()).enumerate() {
        let at = e.at.get();
        let entry = Some(ei);
        let mut rng = rng_for(seed, &format!("timeline:{ei}"));
        let group = e.group.as_deref().and_then(|g| layout.group_index(g));
        let sel = || selection(layout, e.target.as_deref().unwrap_or("joiners"), e.hosts, e.fraction, e.pick);
        match e.action {
            Action::Join | Action::Leave => {
                let gi = group.expect("validated");
                let n = e.count.unwrap_or(layout.groups[gi].joiners.len() as u32);
                let stagger = e.stagger.map(|d| d.get()).unwrap_or_default();
                let pick = e.pick.unwrap_or_default();
                for k in 0..n {
                    let op = if e.action == Action::Join {
                        Op::JoinFrom { group: gi, pick }
                    } else {
                        Op::LeaveFrom { group: gi, pick }
                    };
                    b.push(at + stagger * k, entry, op);
                }
            }
            Action::Crash => b.push(at, entry, Op::Crash(sel())),
            Action::Restart => b.push(at, entry, Op::Restart { sel: sel(), rejoin: e.rejoin.unwrap_or(true) }),
            Action::Partition => {
                let id = next_id;
                next_id += 1;
                b.push(at, entry, Op::Partition { id, sel: sel(), direction: e.direction.unwrap_or_default() });
                if let Some(d) = e.heal_after {
                    b.push(at + d.get(), entry, Op::HealPartition { id });
                }
            }
            Action::Heal => b.push(at, entry, Op::HealAll),
            Action::Hold => {
                let id = next_id;
                next_id += 1;
                b.push(at, entry, Op::Hold { id, sel: sel() });
                if let Some(d) = e.release_after {
                    b.push(at + d.get(), entry, Op::ReleaseHold { id });
                }
            }
            Action::Release => b.push(at, entry, Op::ReleaseAll),
            Action::Loss => {
                let id = next_id;
                next_id += 1;
                let sel = e.target.as_ref().map(|_| sel());
                b.push(at, entry, Op::LossStart { id, sel, fail_rate: e.fail_rate.expect("validated") });
                b.push(e.until.expect("validated").get(), entry, Op::LossEnd { id });
            }
            Action::BanFlood => {
                let attempts = e.flood_attempts(&s.authenticator);
                let gap = Duration::from_secs_f64(1.0 / e.flood_rate());
                let flood = flood_idx;
                flood_idx += 1;
                for &host in &layout.floods[flood].hosts {
                    for k in 0..attempts {
                        b.push(at + gap * k, entry, Op::Attempt { flood, host, correct: false });
                    }
                    if e.then_correct.unwrap_or(true) {
                        b.push(at + gap * attempts, entry, Op::Attempt { flood, host, correct: true });
                    }
                }
            }
            Action::Attack => {
                let attack = attack_idx;
                attack_idx += 1;
                // Evenly spaced at `rate` in [at, until), or `count` at once (like a flood's
                // attempts: predictable, so tests can count what the authenticator did).
                let times: Vec<Duration> = match (e.rate, e.until) {
                    (Some(rate), Some(until)) => {
                        let gap = Duration::from_secs_f64(1.0 / rate.per_sec());
                        (0u32..).map(|k| at + gap * k).take_while(|t| *t < until.get()).collect()
                    }
                    _ => vec![at; e.count.unwrap_or(1) as usize],
                };
                for &host in &layout.attacks[attack].hosts {
                    for &t in &times {
                        b.push(t, entry, Op::Attack { attack, host });
                    }
                }
            }
            Action::Churn => {
                let gi = group.expect("validated");
                let until = e.until.expect("validated").get();
                let burst = e.burst.unwrap_or(1);
                let spread = e.burst_spread.map(|d| d.get()).unwrap_or_default();
                let per_sec = |r: Option<EventRate>| r.map_or(0.0, EventRate::per_sec);
                for (rate, join) in [(per_sec(e.join_rate), true), (per_sec(e.leave_rate), false)] {
                    if rate <= 0.0 {
                        continue;
                    }
                    // Arrivals are bursts: the burst rate is rate / burst so that `rate` stays
                    // the number of joins (or leaves) per second.
                    let arrival_rate = rate / f64::from(burst);
                    let mut t = at + exp_gap(&mut rng, arrival_rate);
                    while t < until {
                        for _ in 0..burst {
                            let when = (t + spread_offset(&mut rng, spread)).min(until);
                            let op = if join {
                                Op::JoinFrom { group: gi, pick: Pick::Random }
                            } else {
                                Op::LeaveFrom { group: gi, pick: Pick::Random }
                            };
                            b.push(when, entry, op);
                        }
                        t += exp_gap(&mut rng, arrival_rate);
                    }
                }
            }
            Action::Broadcast => {
                let from = match e.from.as_deref().unwrap_or("any") {
                    "authenticator" => Sender::Authenticator,
                    "any" => Sender::Any,
                    g => Sender::Group(layout.group_index(g).expect("validated")),
                };
                let size = e.size.unwrap_or(32);
                match (e.until, e.rate.map(EventRate::per_sec)) {
                    (Some(until), Some(rate)) if rate > 0.0 => {
                        for t in poisson_arrivals(&mut rng, rate, at, until.get()) {
                            b.push(t, entry, Op::Broadcast { from: from.clone(), size });
                        }
                    }
                    _ => {
                        for _ in 0..e.count.unwrap_or(1) {
                            b.push(at, entry, Op::Broadcast { from: from.clone(), size });
                        }
                    }
                }
            }
        }
    }
    let mut out = b.out;
    out.sort_by_key(|s| (s.at, s.seq));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::LoadedScenario;

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "name = \"t\"\nduration = \"200s\"\nsettle = \"0s\"\n[[joiners]]\nname = \"a\"\ncount = 6\njoiners_per_host = 2\njoin_at = \"1s\"\nstagger = \"100ms\"\n[[joiners]]\nname = \"b\"\ncount = 40\njoiners_per_host = 10\n{extra}"
        );
        LoadedScenario::from_text("t.toml", text).unwrap().resolve(1).unwrap().scenario
    }

    fn ops(s: &Scenario, seed: u64) -> Vec<Scheduled> {
        expand(s, &Layout::new(s), seed)
    }

    #[test]
    fn group_joins_are_staggered_in_order() {
        let s = scenario("");
        let v = ops(&s, 1);
        assert_eq!(v.len(), 6);
        for (k, e) in v.iter().enumerate() {
            assert_eq!(e.at, Duration::from_millis(1000 + 100 * k as u64));
            assert_eq!(e.op, Op::JoinJoiner { joiner: k });
        }
    }

    #[test]
    fn bounded_faults_schedule_their_end() {
        let s = scenario(
            "[[timeline]]\nat = \"10s\"\naction = \"partition\"\ntarget = \"a\"\nfraction = 0.5\ndirection = \"inbound\"\nheal_after = \"5s\"\n\
             [[timeline]]\nat = \"20s\"\naction = \"hold\"\ntarget = \"authenticator\"\nrelease_after = \"3s\"\n\
             [[timeline]]\nat = \"30s\"\naction = \"loss\"\nfail_rate = 0.01\nuntil = \"40s\"\n",
        );
        let v: Vec<(u64, Op)> = ops(&s, 1).into_iter().skip(6).map(|e| (e.at.as_secs(), e.op)).collect();
        let sel_a = Selection { hosts: vec![1, 2, 3], count: SelCount::Fraction(0.5), pick: Pick::Random };
        let sel_auth = Selection { hosts: vec![0], count: SelCount::All, pick: Pick::Random };
        assert_eq!(
            v,
            [
                (10, Op::Partition { id: 0, sel: sel_a, direction: Direction::Inbound }),
                (15, Op::HealPartition { id: 0 }),
                (20, Op::Hold { id: 1, sel: sel_auth }),
                (23, Op::ReleaseHold { id: 1 }),
                (30, Op::LossStart { id: 2, sel: None, fail_rate: 0.01 }),
                (40, Op::LossEnd { id: 2 }),
            ]
        );
    }

    #[test]
    fn churn_is_poisson_deterministic_and_bursty() {
        let s = scenario(
            "[[timeline]]\nat = \"10s\"\naction = \"churn\"\ngroup = \"b\"\nuntil = \"190s\"\njoin_rate = 2.0\nleave_rate = 1.0\nburst = 4\nburst_spread = \"5ms\"\n",
        );
        let a = ops(&s, 7);
        assert_eq!(a, ops(&s, 7), "same seed, same schedule");
        assert_ne!(a, ops(&s, 8), "another seed, another schedule");
        let joins: Vec<&Scheduled> = a.iter().filter(|e| matches!(e.op, Op::JoinFrom { .. })).collect();
        assert!(a.iter().all(|e| e.entry == Some(0) || matches!(e.op, Op::JoinJoiner { .. })));
        let leaves = a.iter().filter(|e| matches!(e.op, Op::LeaveFrom { .. })).count();
        // 180 s at 2/s = 360 expected joins, 180 leaves; Poisson spread well within ±25 %.
        assert!((270..=450).contains(&joins.len()), "{}", joins.len());
        assert!((135..=225).contains(&leaves), "{leaves}");
        assert_eq!(joins.len() % 4, 0, "whole bursts");
        let churn: Vec<&Scheduled> = a.iter().filter(|e| e.entry == Some(0)).collect();
        assert_eq!(churn.len(), joins.len() + leaves);
        assert!(churn.iter().all(|e| e.at >= Duration::from_secs(10) && e.at <= Duration::from_secs(190)));
        // Every burst of 4 joins lands within its 5 ms spread: sorted join times form clusters.
        let mut t: Vec<Duration> = joins.iter().map(|e| e.at).collect();
        t.sort();
        let clustered = t.windows(2).filter(|w| w[1] - w[0] <= Duration::from_millis(5)).count();
        assert!(clustered >= joins.len() / 2, "{clustered} of {}", joins.len());
    }

    #[test]
    fn ban_flood_attempts_then_correct() {
        let s =
            scenario("[[timeline]]\nat = \"10s\"\naction = \"ban_flood\"\nattackers = 2\nattempts = 4\nrate = 2.0\n");
        let v: Vec<Scheduled> = ops(&s, 1).into_iter().filter(|e| matches!(e.op, Op::Attempt { .. })).collect();
        assert_eq!(v.len(), 2 * 5);
        let host0: Vec<(u128, bool)> = v
            .iter()
            .filter_map(|e| match e.op {
                Op::Attempt { host: 8, correct, .. } => Some((e.at.as_millis(), correct)),
                _ => None,
            })
            .collect();
        assert_eq!(host0, [(10_000, false), (10_500, false), (11_000, false), (11_500, false), (12_000, true)]);
    }

    #[test]
    fn attacks_open_connections_at_once_or_at_a_rate() {
        let s = scenario(
            "[[timeline]]\nat = \"10s\"\naction = \"attack\"\nkind = \"silent\"\nattackers = 2\ncount = 3\n\
             [[timeline]]\nat = \"20s\"\naction = \"attack\"\nkind = \"reconnect_storm\"\nrate = \"4/s\"\nuntil = \"21s\"\n",
        );
        let v: Vec<(u128, Op)> = ops(&s, 1)
            .into_iter()
            .filter(|e| matches!(e.op, Op::Attack { .. }))
            .map(|e| (e.at.as_millis(), e.op))
            .collect();
        let a = |attack, host| Op::Attack { attack, host };
        assert_eq!(
            v,
            [
                (10_000, a(0, 8)),
                (10_000, a(0, 8)),
                (10_000, a(0, 8)),
                (10_000, a(0, 9)),
                (10_000, a(0, 9)),
                (10_000, a(0, 9)),
                (20_000, a(1, 10)),
                (20_250, a(1, 10)),
                (20_500, a(1, 10)),
                (20_750, a(1, 10)),
            ]
        );
    }

    #[test]
    fn broadcasts_one_off_and_windowed() {
        let s = scenario(
            "[[timeline]]\nat = \"5s\"\naction = \"broadcast\"\nfrom = \"b\"\ncount = 3\nsize = 10\n\
             [[timeline]]\nat = \"10s\"\naction = \"broadcast\"\nuntil = \"110s\"\nrate = 2.0\n",
        );
        let v = ops(&s, 3);
        let once: Vec<&Scheduled> = v.iter().filter(|e| e.entry == Some(0)).collect();
        assert_eq!(once.len(), 3);
        assert!(once.iter().all(|e| e.op == Op::Broadcast { from: Sender::Group(1), size: 10 }));
        let windowed = v.iter().filter(|e| e.entry == Some(1)).count();
        assert!((150..=250).contains(&windowed), "{windowed}");
    }

    #[test]
    fn selections_pick_deterministically() {
        let sel = Selection { hosts: vec![1, 2, 3, 4, 5], count: SelCount::Fraction(0.3), pick: Pick::Random };
        let mut r1 = rng_for(1, "x");
        let mut r2 = rng_for(1, "x");
        let a = sel.choose(&sel.hosts, &mut r1);
        assert_eq!(a.len(), 2, "ceil(5 × 0.3)");
        assert_eq!(a, sel.choose(&sel.hosts, &mut r2));
        let first = Selection { count: SelCount::Hosts(2), pick: Pick::First, ..sel.clone() };
        assert_eq!(first.choose(&[2, 4, 5], &mut r1), [2, 4]);
        let all = Selection { count: SelCount::All, ..sel };
        assert_eq!(all.choose(&[3, 5], &mut r1), [3, 5]);
        assert_eq!(pick_n(&[1, 2], 5, Pick::Random, &mut r1), [1, 2]);
    }
}
