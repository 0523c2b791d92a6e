//! The deterministic load plan: what every joiner, churn event, message and attack does, and
//! when it is *intended* to start.
//!
//! Loadgen is an open-model generator: operations are scheduled on a timetable fixed before
//! the run, never "when the previous one finished", and latencies are measured from the
//! intended start. The timetable is a pure function of the configuration and `--seed`, so
//! several processes (`--shard I/N`) can each build the same plan and run disjoint slices of
//! it; together the slices are exactly the whole plan.
//!
//! Model:
//! - `peers` *slots*. Slot `k` joins at `k / rate` (or evenly over `--ramp`), so the arrival
//!   phase ends at `peers / rate`. Then the hold phase lasts `--hold`.
//! - Churn (hold phase only, Poisson at `--churn` per second): a random slot's current joiner
//!   leaves (half of them gracefully, closing its sockets; half by crashing: it hangs with its
//!   sockets open, see [`LeaveMode::Crash`]) and the next *generation* of that slot joins at
//!   the same instant, from the same source address.
//! - Broadcasts (hold phase only, Poisson at `--broadcast-rate`): from a random slot's current
//!   joiner to every member.
//! - Wrong-password attempts (whole run, Poisson at `--wrong-password-rate`): from dedicated
//!   attacker addresses, round robin, never shared with joiners, so bans do not hit joiners.
//! - Hostile traffic (`--attack`, see [`crate::attack`]): each attack's connections start in
//!   its window, as a Poisson process at its rate or evenly over its `ramp` for a count, from
//!   the attack's own addresses (round robin), never a joiner's or another attack's.
//! - Shard `I/N` owns slots and attackers whose index is `I` modulo `N`; joiner addresses are
//!   dealt to shards the same way, so shards share neither joiners nor source addresses.
//!
//! Randomness comes from ChaCha8 seeded with `--seed`, one stream per process (churn,
//! broadcasts, attacks), so a plan does not change when an unrelated rate changes. Poisson
//! arrival times are `pyile::units::poisson_arrivals`, the simulator's own draw (exponential
//! gaps summed as `Duration`s); slot choices and leave modes are this module's own arithmetic.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use pyile::units::poisson_arrivals;

use crate::attack::{Amount, AttackSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::Error;

/// Largest number of operations a plan may hold (about 50 bytes each).
pub const MAX_OPS: f64 = 20_000_000.0;

/// How joins arrive during the arrival phase.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    /// Joins per second, evenly spaced.
    Rate(f64),
    /// All `peers` joins evenly spread over this duration.
    Ramp(Duration),
}

/// Everything the plan depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of slots (joiners alive at once once the arrival phase is over).
    pub peers: u32,
    /// Arrival schedule.
    pub arrival: Arrival,
    /// Length of the hold phase.
    pub hold: Duration,
    /// Churn events (a leave and its replacement) per second during the hold phase.
    pub churn_rate: f64,
    /// Broadcasts per second during the hold phase.
    pub broadcast_rate: f64,
    /// Wrong-password attempts per second during the whole run.
    pub wrong_password_rate: f64,
    /// Joiner source addresses; empty means the system chooses.
    pub joiner_ips: Vec<IpAddr>,
    /// Attacker source addresses, disjoint from `joiner_ips`.
    pub attacker_ips: Vec<IpAddr>,
    /// Number of shards the plan will be split into (addresses are dealt per shard).
    pub shards: u32,
    /// Hostile traffic, in `--attack` order.
    pub attacks: Vec<PlannedAttack>,
}

/// One `--attack` and the source addresses dealt to it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedAttack {
    /// What, how much, for how long.
    pub spec: AttackSpec,
    /// Its own source addresses (`spec.ips` of them), disjoint from every other use.
    pub ips: Vec<IpAddr>,
}

/// One process's share of a plan: shard `index` of `count`, zero-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// Zero-based index, `< count`.
    pub index: u32,
    /// Number of shards, `>= 1`.
    pub count: u32,
}

impl Shard {
    /// The whole plan as one shard.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether the object with this owner index (slot or attacker) belongs to this shard.
    pub fn owns(&self, owner: u32) -> bool {
        owner % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: write I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One joiner: the `generation`-th occupant of slot `slot` (generation 0 joins in the
/// arrival phase; each churn event starts the next generation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JoinerId {
    /// Slot index, `< peers`.
    pub slot: u32,
    /// Generation within the slot.
    pub generation: u32,
}

impl fmt::Display for JoinerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "j{}.{}", self.slot, self.generation)
    }
}

/// How a churned joiner goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveMode {
    /// Closes its sockets cleanly: the authenticator sees the close at once.
    Graceful,
    /// Hangs like a process that stopped: answers nothing and reads nothing, but keeps every
    /// socket open (no FIN, no RST) until the authenticator removes it or the crash bound
    /// expires, so only the authenticator's heartbeat timeout can notice.
    Crash,
}

/// What a planned operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Start a joiner (a full handshake); `source` is its local address, `None` = system's.
    Join {
        /// Who joins.
        joiner: JoinerId,
        /// Source and peer-listener address.
        source: Option<IpAddr>,
    },
    /// Make a joiner leave.
    Leave {
        /// Who leaves.
        joiner: JoinerId,
        /// How.
        mode: LeaveMode,
    },
    /// Broadcast one message from a joiner to every member.
    Broadcast {
        /// The sender.
        from: JoinerId,
    },
    /// One handshake with a wrong password, from an attacker address.
    WrongPassword {
        /// Attacker index, `< attacker_ips.len()`.
        attacker: u32,
        /// Its source address.
        source: IpAddr,
    },
    /// One hostile connection (for `reconnect-storm` with a count: one loop of them).
    Attack {
        /// Index into [`Plan::attacks`].
        attack: u16,
        /// Index of its source address among the attack's addresses.
        attacker: u32,
        /// Its source address.
        source: IpAddr,
    },
}

impl OpKind {
    /// Short name for listings: `join`, `leave`, `crash`, `broadcast`, `wrong_password`.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Join { .. } => "join",
            OpKind::Leave { mode: LeaveMode::Graceful, .. } => "leave",
            OpKind::Leave { mode: LeaveMode::Crash, .. } => "crash",
            OpKind::Broadcast { .. } => "broadcast",
            OpKind::WrongPassword { .. } => "wrong_password",
            OpKind::Attack { .. } => "attack",
        }
    }

    /// The slot or attacker index that decides which shard runs this operation.
    pub fn owner(&self) -> u32 {
        match *self {
            OpKind::Join { joiner, .. } | OpKind::Leave { joiner, .. } => joiner.slot,
            OpKind::Broadcast { from } => from.slot,
            OpKind::WrongPassword { attacker, .. } | OpKind::Attack { attacker, .. } => attacker,
        }
    }
}

/// One planned operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// Position in the whole plan (unique; shards keep the numbers of the whole plan).
    pub seq: u64,
    /// Intended start, from the start of the run.
    pub at: Duration,
    /// What to do.
    pub kind: OpKind,
}

/// Counts of a plan's operations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanSummary {
    /// Slots owned (joiners alive at once after the arrival phase).
    pub slots: u32,
    /// Joins, first generations and replacements.
    pub joins: u64,
    /// Graceful leaves.
    pub leaves: u64,
    /// Crashes (silent hangs).
    pub crashes: u64,
    /// Broadcasts.
    pub broadcasts: u64,
    /// Wrong-password attempts.
    pub wrong_passwords: u64,
    /// Hostile connections (and `reconnect-storm` loops) of `--attack`.
    pub attacks: u64,
}

/// A timetable of operations, sorted by intended start.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The operations, sorted by `at` (ties keep a leave before its replacement).
    pub ops: Vec<Op>,
    /// End of the arrival phase (start of the hold phase).
    pub arrival_end: Duration,
    /// End of the run (end of the hold phase).
    pub end: Duration,
    /// Which share of the whole plan this is.
    pub shard: Shard,
    /// The `--attack`s, which [`OpKind::Attack`] operations index.
    pub attacks: Vec<AttackSpec>,
}

/// ChaCha8, with slot and mode choices by our own arithmetic (see the module documentation).
struct PlanRng(ChaCha8Rng);

impl PlanRng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        PlanRng(rng)
    }

    /// Uniform in `[0, 1)`, 53 bits.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for any `u32` n).
    fn below(&mut self, n: u32) -> u32 {
        ((self.0.next_u64() as u128 * n as u128) >> 64) as u32
    }

    /// Event times of a Poisson process of `rate` per second in `[from, to)`.
    fn poisson(&mut self, rate: f64, from: Duration, to: Duration) -> Vec<Duration> {
        poisson_arrivals(&mut self.0, rate, from, to)
    }
}

const STREAM_CHURN: u64 = 1;
const STREAM_BROADCAST: u64 = 2;
const STREAM_ATTACK: u64 = 3;
/// Stream of `--attack` number `i` is `STREAM_ATTACKS + i`.
const STREAM_ATTACKS: u64 = 16;

impl PlanConfig {
    /// The source address of every generation of `slot`: the slot's shard gets every
    /// `shards`-th joiner address, and its slots take those round robin.
    pub fn slot_source(&self, slot: u32) -> Option<IpAddr> {
        if self.joiner_ips.is_empty() {
            return None;
        }
        let n = self.shards as usize;
        let shard = slot as usize % n;
        let per_shard = (self.joiner_ips.len() - shard).div_ceil(n);
        let k = (slot as usize / n) % per_shard;
        Some(self.joiner_ips[shard + k * n])
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |s: String| Err(Error::Config(s));
        if self.peers == 0 {
            return bad("--peers must be at least 1".into());
        }
        if self.shards == 0 {
            return bad("the shard count must be at least 1".into());
        }
        if let Arrival::Rate(r) = self.arrival
            && !(r > 0.0 && r.is_finite())
        {
            return bad("--rate must be more than 0/s".into());
        }
        for (name, rate) in [
            ("--churn", self.churn_rate),
            ("--broadcast-rate", self.broadcast_rate),
            ("--wrong-password-rate", self.wrong_password_rate),
        ] {
            if !(rate >= 0.0 && rate.is_finite()) {
                return bad(format!("{name} must be a finite rate >= 0"));
            }
        }
        if (self.churn_rate > 0.0 || self.broadcast_rate > 0.0) && self.hold.is_zero() {
            return bad("--churn and --broadcast-rate act during the hold phase: give --hold".into());
        }
        if self.broadcast_rate > 0.0 && self.peers < 2 {
            return bad("--broadcast-rate needs at least 2 peers".into());
        }
        if self.wrong_password_rate > 0.0 && self.attacker_ips.is_empty() {
            return bad("--wrong-password-rate needs dedicated attacker addresses (--source-ips)".into());
        }
        if !self.joiner_ips.is_empty() && self.joiner_ips.len() < self.shards as usize {
            return bad(format!(
                "{} joiner source addresses cannot be dealt to {} shards",
                self.joiner_ips.len(),
                self.shards
            ));
        }
        if self.joiner_ips.iter().any(|ip| self.attacker_ips.contains(ip)) {
            return bad("attacker addresses must not be joiner addresses".into());
        }
        if self.attacks.len() > u16::MAX as usize {
            return bad("too many --attack flags".into());
        }
        let mut used: std::collections::HashSet<IpAddr> =
            self.joiner_ips.iter().chain(&self.attacker_ips).copied().collect();
        for a in &self.attacks {
            if a.ips.len() < self.shards as usize {
                return bad(format!(
                    "--attack {}: {} source addresses cannot be dealt to {} shards (give ips=)",
                    a.spec,
                    a.ips.len(),
                    self.shards
                ));
            }
            if let Some(ip) = a.ips.iter().find(|ip| !used.insert(**ip)) {
                return bad(format!("--attack {}: {ip} is also a joiner's or another attack's address", a.spec));
            }
        }
        Ok(())
    }
}

impl Plan {
    /// Builds the whole plan (shard `0/1`; take slices with [`Plan::shard`]).
    pub fn build(cfg: &PlanConfig) -> Result<Plan, Error> {
        cfg.check()?;
        let peers = cfg.peers;
        let arrival_end = match cfg.arrival {
            Arrival::Rate(r) => Duration::from_secs_f64(peers as f64 / r),
            Arrival::Ramp(d) => d,
        };
        let end = arrival_end + cfg.hold;
        let windows: Vec<(Duration, Duration)> = cfg
            .attacks
            .iter()
            .map(|a| {
                let (from, to) = a.spec.window_in(end);
                if from >= end {
                    return Err(Error::Config(format!(
                        "--attack {}: after={} is not before the end of the run ({:.1}s)",
                        a.spec,
                        pyile::units::Dur(from),
                        end.as_secs_f64()
                    )));
                }
                Ok((from, to))
            })
            .collect::<Result<_, _>>()?;
        let attack_ops: f64 = cfg
            .attacks
            .iter()
            .zip(&windows)
            .map(|(a, (from, to))| match a.spec.amount {
                Amount::Rate(r) => r.per_sec() * (*to - *from).as_secs_f64(),
                Amount::Count(n) => n as f64,
            })
            .sum();
        let expected = peers as f64
            + cfg.hold.as_secs_f64() * (2.0 * cfg.churn_rate + cfg.broadcast_rate)
            + end.as_secs_f64() * cfg.wrong_password_rate
            + attack_ops;
        if expected > MAX_OPS {
            return Err(Error::Config(format!(
                "the plan would hold about {expected:.0} operations (limit {MAX_OPS:.0}); \
                 lower the rates or the duration"
            )));
        }

        let mut ops: Vec<(Duration, OpKind)> = Vec::with_capacity(expected as usize + 16);
        for slot in 0..peers {
            let at = arrival_end.mul_f64(slot as f64 / peers as f64);
            let joiner = JoinerId { slot, generation: 0 };
            ops.push((at, OpKind::Join { joiner, source: cfg.slot_source(slot) }));
        }

        // Churn and broadcasts are drawn separately, then walked together in time order so a
        // broadcast names the generation alive at its instant.
        let mut churn_rng = PlanRng::new(cfg.seed, STREAM_CHURN);
        let churn: Vec<(Duration, u32, LeaveMode)> = churn_rng
            .poisson(cfg.churn_rate, arrival_end, end)
            .into_iter()
            .map(|t| {
                let slot = churn_rng.below(peers);
                let mode = if churn_rng.unit() < 0.5 { LeaveMode::Graceful } else { LeaveMode::Crash };
                (t, slot, mode)
            })
            .collect();
        let mut bc_rng = PlanRng::new(cfg.seed, STREAM_BROADCAST);
        let broadcasts: Vec<(Duration, u32)> = bc_rng
            .poisson(cfg.broadcast_rate, arrival_end, end)
            .into_iter()
            .map(|t| (t, bc_rng.below(peers)))
            .collect();

        let mut generation = vec![0u32; peers as usize];
        let mut next_churn = churn.iter().peekable();
        let mut apply_churn = |ops: &mut Vec<(Duration, OpKind)>, &(at, slot, mode): &(Duration, u32, LeaveMode)| {
            let g = &mut generation[slot as usize];
            ops.push((at, OpKind::Leave { joiner: JoinerId { slot, generation: *g }, mode }));
            *g += 1;
            let joiner = JoinerId { slot, generation: *g };
            ops.push((at, OpKind::Join { joiner, source: cfg.slot_source(slot) }));
            *g
        };
        let mut current = vec![0u32; peers as usize];
        for &(at, slot) in &broadcasts {
            while let Some(c) = next_churn.next_if(|c| c.0 <= at) {
                current[c.1 as usize] = apply_churn(&mut ops, c);
            }
            let from = JoinerId { slot, generation: current[slot as usize] };
            ops.push((at, OpKind::Broadcast { from }));
        }
        for c in next_churn {
            apply_churn(&mut ops, c);
        }

        let mut attack_rng = PlanRng::new(cfg.seed, STREAM_ATTACK);
        let attackers = cfg.attacker_ips.len() as u32;
        for (i, at) in attack_rng.poisson(cfg.wrong_password_rate, Duration::ZERO, end).into_iter().enumerate() {
            let attacker = (i as u64 % attackers as u64) as u32;
            let source = cfg.attacker_ips[attacker as usize];
            ops.push((at, OpKind::WrongPassword { attacker, source }));
        }

        for (i, (a, &(from, to))) in cfg.attacks.iter().zip(&windows).enumerate() {
            let times = match a.spec.amount {
                Amount::Rate(r) => PlanRng::new(cfg.seed, STREAM_ATTACKS + i as u64).poisson(r.per_sec(), from, to),
                Amount::Count(n) => (0..n).map(|k| from + a.spec.ramp.mul_f64(k as f64 / n as f64)).collect(),
            };
            let n = a.ips.len() as u64;
            for (k, at) in times.into_iter().enumerate() {
                let attacker = (k as u64 % n) as u32;
                let source = a.ips[attacker as usize];
                ops.push((at, OpKind::Attack { attack: i as u16, attacker, source }));
            }
        }

        // Stable: equal instants keep insertion order, so a leave precedes its replacement.
        ops.sort_by_key(|(at, _)| *at);
        let ops = ops.into_iter().enumerate().map(|(i, (at, kind))| Op { seq: i as u64, at, kind }).collect();
        let attacks = cfg.attacks.iter().map(|a| a.spec.clone()).collect();
        Ok(Plan { ops, arrival_end, end, shard: Shard::WHOLE, attacks })
    }

    /// The slice of this plan that shard `shard` runs. Slicing the whole plan with every
    /// index of the same count partitions it.
    pub fn shard(&self, shard: Shard) -> Plan {
        Plan {
            ops: self.ops.iter().filter(|op| shard.owns(op.kind.owner())).copied().collect(),
            arrival_end: self.arrival_end,
            end: self.end,
            shard,
            attacks: self.attacks.clone(),
        }
    }

    /// Counts of the operations in this plan.
    pub fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary::default();
        for op in &self.ops {
            match op.kind {
                OpKind::Join { joiner, .. } => {
                    s.joins += 1;
                    if joiner.generation == 0 {
                        s.slots += 1;
                    }
                }
                OpKind::Leave { mode: LeaveMode::Graceful, .. } => s.leaves += 1,
                OpKind::Leave { mode: LeaveMode::Crash, .. } => s.crashes += 1,
                OpKind::Broadcast { .. } => s.broadcasts += 1,
                OpKind::WrongPassword { .. } => s.wrong_passwords += 1,
                OpKind::Attack { .. } => s.attacks += 1,
            }
        }
        s
    }

    /// Writes the plan as CSV (`seq,at_us,op,joiner,source`), for `--dry-run` and debugging.
    pub fn write_csv<W: std::io::Write>(&self, out: W) -> csv::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(["seq", "at_us", "op", "joiner", "source"])?;
        for op in &self.ops {
            let (who, source) = match op.kind {
                OpKind::Join { joiner, source } => {
                    (joiner.to_string(), source.map(|s| s.to_string()).unwrap_or_default())
                }
                OpKind::Leave { joiner, .. } => (joiner.to_string(), String::new()),
                OpKind::Broadcast { from } => (from.to_string(), String::new()),
                OpKind::WrongPassword { attacker, source } => (format!("a{attacker}"), source.to_string()),
                OpKind::Attack { attack, attacker, source } => {
                    (format!("{}#{attack}.a{attacker}", self.attacks[attack as usize].kind), source.to_string())
                }
            };
            w.write_record([
                op.seq.to_string(),
                op.at.as_micros().to_string(),
                op.kind.name().to_string(),
                who,
                source,
            ])?;
        }
        w.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn ips(range: &str) -> Vec<IpAddr> {
        range.parse::<crate::sources::SourceRange>().unwrap().addrs().to_vec()
    }

    fn config() -> PlanConfig {
        PlanConfig {
            seed: 7,
            peers: 200,
            arrival: Arrival::Rate(100.0),
            hold: Duration::from_secs(20),
            churn_rate: 3.0,
            broadcast_rate: 2.0,
            wrong_password_rate: 1.5,
            joiner_ips: ips("127.0.1.1-127.0.1.50"),
            attacker_ips: ips("127.0.2.1-127.0.2.5"),
            shards: 4,
            attacks: vec![],
        }
    }

    #[test]
    fn shards_are_disjoint_and_their_union_is_the_whole_plan() {
        for shards in [1, 2, 3, 4, 7] {
            let cfg = PlanConfig { shards, ..config() };
            let whole = Plan::build(&cfg).unwrap();
            let mut seen: HashMap<u64, Op> = HashMap::new();
            for index in 0..shards {
                let part = whole.shard(Shard { index, count: shards });
                assert!(part.ops.windows(2).all(|w| w[0].at <= w[1].at));
                for op in part.ops {
                    assert!(seen.insert(op.seq, op).is_none(), "op {} in two shards", op.seq);
                }
            }
            assert_eq!(seen.len(), whole.ops.len());
            for op in &whole.ops {
                assert_eq!(seen[&op.seq], *op);
            }
        }
    }

    #[test]
    fn shards_share_no_joiner_and_no_source_address() {
        let cfg = config();
        let whole = Plan::build(&cfg).unwrap();
        let mut owner_of_ip: HashMap<IpAddr, u32> = HashMap::new();
        let mut owner_of_slot: HashMap<u32, u32> = HashMap::new();
        for index in 0..cfg.shards {
            let part = whole.shard(Shard { index, count: cfg.shards });
            assert!(part.summary().slots > 0);
            for op in &part.ops {
                let ip = match op.kind {
                    OpKind::Join { source, joiner } => {
                        assert_eq!(*owner_of_slot.entry(joiner.slot).or_insert(index), index);
                        source.unwrap()
                    }
                    OpKind::WrongPassword { source, .. } => source,
                    _ => continue,
                };
                assert_eq!(*owner_of_ip.entry(ip).or_insert(index), index, "{ip} in two shards");
            }
        }
        // Every joiner address is used, and attackers never use joiner addresses.
        for ip in &cfg.joiner_ips {
            assert!(owner_of_ip.contains_key(ip), "{ip} unused");
        }
    }

    #[test]
    fn the_plan_is_a_function_of_the_seed() {
        let a = Plan::build(&config()).unwrap();
        assert_eq!(a, Plan::build(&config()).unwrap());
        let b = Plan::build(&PlanConfig { seed: 8, ..config() }).unwrap();
        assert_ne!(a.ops, b.ops);
        // Changing one process's rate leaves the others' choices alone.
        let c = Plan::build(&PlanConfig { broadcast_rate: 9.0, ..config() }).unwrap();
        let attacks = |p: &Plan| -> Vec<Op> {
            p.ops
                .iter()
                .filter(|o| matches!(o.kind, OpKind::WrongPassword { .. }))
                .map(|o| Op { seq: 0, ..*o })
                .collect()
        };
        assert_eq!(attacks(&a), attacks(&c));
    }

    #[test]
    fn joins_arrive_at_the_constant_rate() {
        let cfg = PlanConfig { churn_rate: 0.0, broadcast_rate: 0.0, wrong_password_rate: 0.0, ..config() };
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(plan.ops.len(), 200);
        for (k, op) in plan.ops.iter().enumerate() {
            let expect = k as f64 / 100.0;
            assert!((op.at.as_secs_f64() - expect).abs() < 1e-6, "join {k} at {:?}", op.at);
            assert!(
                matches!(op.kind, OpKind::Join { joiner: JoinerId { slot, generation: 0 }, .. } if slot == k as u32)
            );
        }
        assert_eq!(plan.arrival_end, Duration::from_secs(2));
        assert_eq!(plan.end, Duration::from_secs(22));
    }

    #[test]
    fn a_ramp_spreads_joins_evenly_over_its_length() {
        let cfg = PlanConfig {
            peers: 300,
            arrival: Arrival::Ramp(Duration::from_secs(30)),
            churn_rate: 0.0,
            broadcast_rate: 0.0,
            wrong_password_rate: 0.0,
            ..config()
        };
        let plan = Plan::build(&cfg).unwrap();
        let times: Vec<f64> = plan.ops.iter().map(|o| o.at.as_secs_f64()).collect();
        assert_eq!(times.len(), 300);
        assert_eq!(times[0], 0.0);
        assert!(times.iter().all(|&t| t < 30.0));
        for w in times.windows(2) {
            assert!((w[1] - w[0] - 0.1).abs() < 1e-6);
        }
        // Half of the joins in the first half of the ramp.
        assert_eq!(times.iter().filter(|&&t| t < 15.0).count(), 150);
    }

    #[test]
    fn poisson_processes_follow_their_rates_and_stay_in_their_phase() {
        let cfg = PlanConfig { hold: Duration::from_secs(1000), ..config() };
        let plan = Plan::build(&cfg).unwrap();
        let count = |name: &str| plan.ops.iter().filter(|o| o.kind.name() == name).count() as f64;
        let churn = count("leave") + count("crash");
        // Expected 3000 churn, 2000 broadcasts, 1.5 * 1002 attacks; allow about 5 sigma.
        assert!((churn - 3000.0).abs() < 5.0 * 3000f64.sqrt(), "churn {churn}");
        assert!((count("broadcast") - 2000.0).abs() < 5.0 * 2000f64.sqrt());
        assert!((count("wrong_password") - 1503.0).abs() < 5.0 * 1503f64.sqrt());
        // Roughly half of the leaves are crashes.
        assert!((count("crash") / churn - 0.5).abs() < 0.05);
        for op in &plan.ops {
            match op.kind {
                OpKind::Leave { .. } | OpKind::Broadcast { .. } => {
                    assert!(op.at >= plan.arrival_end && op.at < plan.end)
                }
                OpKind::WrongPassword { .. } => assert!(op.at < plan.end),
                OpKind::Join { joiner, .. } if joiner.generation > 0 => assert!(op.at >= plan.arrival_end),
                OpKind::Join { .. } => assert!(op.at < plan.arrival_end),
                OpKind::Attack { .. } => unreachable!("no --attack configured"),
            }
        }
    }

    #[test]
    fn churn_replaces_the_live_generation_and_broadcasts_come_from_live_joiners() {
        let cfg = PlanConfig { peers: 5, hold: Duration::from_secs(100), ..config() };
        let plan = Plan::build(&cfg).unwrap();
        let mut alive: HashMap<u32, JoinerId> = HashMap::new();
        let mut ever: HashSet<JoinerId> = HashSet::new();
        let mut ops = plan.ops.iter().peekable();
        while let Some(op) = ops.next() {
            match op.kind {
                OpKind::Join { joiner, source } => {
                    assert!(ever.insert(joiner), "{joiner} joins twice");
                    assert!(alive.insert(joiner.slot, joiner).is_none(), "{joiner} joins an occupied slot");
                    assert_eq!(source, cfg.slot_source(joiner.slot));
                }
                OpKind::Leave { joiner, .. } => {
                    assert_eq!(alive.remove(&joiner.slot), Some(joiner));
                    // The replacement follows at the same instant.
                    let next = ops.peek().unwrap();
                    assert_eq!(next.at, op.at);
                    let want = JoinerId { generation: joiner.generation + 1, ..joiner };
                    assert!(matches!(next.kind, OpKind::Join { joiner, .. } if joiner == want));
                }
                OpKind::Broadcast { from } => assert_eq!(alive.get(&from.slot), Some(&from)),
                OpKind::WrongPassword { source, .. } => assert!(cfg.attacker_ips.contains(&source)),
                OpKind::Attack { .. } => unreachable!("no --attack configured"),
            }
        }
        assert_eq!(alive.len(), 5);
        assert!(plan.summary().joins > 5);
    }

    #[test]
    fn slot_sources_are_dealt_per_shard_round_robin() {
        let cfg = PlanConfig { joiner_ips: ips("127.0.1.1-127.0.1.5"), shards: 2, ..config() };
        // Shard 0 gets .1 .3 .5, shard 1 gets .2 .4.
        let got: Vec<String> = (0..8).map(|s| cfg.slot_source(s).unwrap().to_string()).collect();
        let want =
            ["127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4", "127.0.1.5", "127.0.1.2", "127.0.1.1", "127.0.1.4"];
        assert_eq!(got, want);
        let none = PlanConfig { joiner_ips: vec![], ..cfg };
        assert_eq!(none.slot_source(3), None);
    }

    #[test]
    fn impossible_configurations_are_refused() {
        let refuse = |cfg: PlanConfig, needle: &str| {
            let e = Plan::build(&cfg).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        refuse(PlanConfig { peers: 0, ..config() }, "--peers");
        refuse(PlanConfig { arrival: Arrival::Rate(0.0), ..config() }, "--rate");
        refuse(PlanConfig { hold: Duration::ZERO, ..config() }, "--hold");
        refuse(PlanConfig { attacker_ips: vec![], ..config() }, "attacker");
        refuse(PlanConfig { joiner_ips: ips("127.0.1.1-127.0.1.3"), ..config() }, "4 shards");
        refuse(PlanConfig { attacker_ips: ips("127.0.1.1"), ..config() }, "must not be joiner");
        refuse(PlanConfig { peers: 1, ..config() }, "at least 2");
        refuse(PlanConfig { broadcast_rate: 1e9, ..config() }, "operations");
    }

    fn attack(spec: &str, range: &str) -> PlannedAttack {
        PlannedAttack { spec: spec.parse().unwrap(), ips: ips(range) }
    }

    #[test]
    fn attacks_follow_their_amount_window_and_addresses() {
        let cfg = PlanConfig {
            churn_rate: 0.0,
            broadcast_rate: 0.0,
            wrong_password_rate: 0.0,
            shards: 1,
            attacks: vec![
                attack("silent:100/s,after=5s,for=10s", "127.0.8.1-127.0.8.4"),
                attack("oversize:40,after=1s,ramp=2s", "127.0.8.5-127.0.8.6"),
            ],
            ..config()
        };
        let plan = Plan::build(&cfg).unwrap();
        assert_eq!(plan.attacks.len(), 2);
        let of = |i: u16| -> Vec<Op> {
            plan.ops
                .iter()
                .filter(|o| matches!(o.kind, OpKind::Attack { attack, .. } if attack == i))
                .copied()
                .collect()
        };
        // Poisson at 100/s for 10 s: about 1000.
        let silent = of(0);
        assert!((silent.len() as f64 - 1000.0).abs() < 5.0 * 1000f64.sqrt(), "{}", silent.len());
        assert!(silent.iter().all(|o| o.at >= Duration::from_secs(5) && o.at < Duration::from_secs(15)));
        // A count: evenly over the ramp, from `after`.
        let oversize = of(1);
        assert_eq!(oversize.len(), 40);
        for (k, o) in oversize.iter().enumerate() {
            assert_eq!(o.at, Duration::from_secs(1) + Duration::from_millis(50 * k as u64));
        }
        // Round robin over the attack's own addresses, never a joiner's.
        let sources: HashSet<IpAddr> = plan
            .ops
            .iter()
            .filter_map(|o| match o.kind {
                OpKind::Attack { attack: 1, attacker, source } => {
                    assert_eq!(source, cfg.attacks[1].ips[attacker as usize]);
                    Some(source)
                }
                _ => None,
            })
            .collect();
        assert_eq!(sources, cfg.attacks[1].ips.iter().copied().collect());
        assert_eq!(plan.summary().attacks, silent.len() as u64 + 40);
        // Same seed, same plan; the joins are where they were without attacks.
        assert_eq!(plan, Plan::build(&cfg).unwrap());
        let honest = Plan::build(&PlanConfig { attacks: vec![], ..cfg.clone() }).unwrap();
        let joins = |p: &Plan| -> Vec<(Duration, OpKind)> {
            p.ops.iter().filter(|o| o.kind.name() == "join").map(|o| (o.at, o.kind)).collect()
        };
        assert_eq!(joins(&plan), joins(&honest));
        // Shards split the attackers by address.
        let cfg2 = PlanConfig { shards: 2, ..cfg.clone() };
        let whole = Plan::build(&cfg2).unwrap();
        let a = whole.shard(Shard { index: 0, count: 2 });
        let b = whole.shard(Shard { index: 1, count: 2 });
        let srcs = |p: &Plan| -> HashSet<IpAddr> {
            p.ops
                .iter()
                .filter_map(|o| if let OpKind::Attack { source, .. } = o.kind { Some(source) } else { None })
                .collect()
        };
        assert!(srcs(&a).is_disjoint(&srcs(&b)));
        assert_eq!(a.summary().attacks + b.summary().attacks, whole.summary().attacks);
    }

    #[test]
    fn impossible_attacks_are_refused() {
        let refuse = |attacks: Vec<PlannedAttack>, shards: u32, needle: &str| {
            let cfg = PlanConfig { attacks, shards, ..config() };
            let e = Plan::build(&cfg).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        refuse(vec![attack("silent:10", "127.0.1.7")], 1, "127.0.1.7 is also a joiner's");
        refuse(vec![attack("silent:10", "127.0.8.1"), attack("garbage:1", "127.0.8.1")], 1, "another attack's");
        refuse(vec![attack("silent:10", "127.0.8.1")], 2, "cannot be dealt to 2 shards");
        refuse(vec![attack("silent:10,after=1h", "127.0.8.1")], 1, "is not before the end of the run");
        refuse(vec![attack("silent:10000000/s", "127.0.8.1")], 1, "operations");
    }

    #[test]
    fn shard_text_parses() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        assert_eq!("0/1".parse::<Shard>().unwrap(), Shard::WHOLE);
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        assert!("-1/4".parse::<Shard>().is_err());
        assert_eq!(Shard { index: 2, count: 5 }.to_string(), "2/5");
    }

    #[test]
    fn the_plan_lists_as_csv() {
        let cfg = PlanConfig { peers: 2, churn_rate: 0.0, broadcast_rate: 0.0, wrong_password_rate: 0.0, ..config() };
        let mut out = Vec::new();
        Plan::build(&cfg).unwrap().write_csv(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "seq,at_us,op,joiner,source\n0,0,join,j0.0,127.0.1.1\n1,10000,join,j1.0,127.0.1.2\n");
    }
}
