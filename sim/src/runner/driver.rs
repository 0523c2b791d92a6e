//! The [`Driver`]: one simulation from build to finish.
//!
//! It builds the turmoil `Sim` and the [`Monitor`] from the scenario and [`Layout`], keeps
//! the schedule (the [`timeline`](crate::timeline) operations, then rejoins as they arise),
//! steps the simulation and, between steps, applies what is due: joins, leaves, attempts
//! and broadcasts here, faults in [`faults`](super::faults). What the hosts observed is
//! drained after each step by [`observe`](super::observe). Its fields are `pub(super)` for
//! those two sibling modules.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use serde_json::{Value, json};

use super::evidence::Evidence;
use super::faults::{FaultRecord, LinkFaults};
use super::hosts::{self, Cmd, HostCtx, Role, Settings, Shared};
use super::{RunOutput, Sabotage};
use crate::checkers::{Monitor, MonitorConfig};
use crate::layout::{AUTH_HOST, Layout};
use crate::metrics::MetricId;
use crate::rng::{SimRng, rng_for};
use crate::scenario::{Action, Pick, Resolved, Scenario};
use crate::timeline::{Op, Sender, expand, pick_n};
use crate::trace::{Trace, TraceError, TraceEvent};

/// A joiner slot's state, as the driver knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Idle,
    Joining(u64),
    Active(u64),
    Leaving(u64),
}

/// Something to do at a time.
#[derive(Clone, Debug)]
pub(super) enum Item {
    Op(Op),
    /// The rejoin policy (or a restart) joins this slot again.
    Rejoin(usize),
}

/// One run in progress: the simulation, the schedule, the joiner slots and the checkers.
pub(super) struct Driver<'a> {
    pub(super) sc: &'a Scenario,
    pub(super) seed: u64,
    pub(super) layout: Layout,
    pub(super) sim: turmoil::Sim<'static>,
    pub(super) shared: Rc<Shared>,
    pub(super) ips: Vec<IpAddr>,
    pub(super) schedule: BTreeMap<(Duration, u64), Item>,
    pub(super) next_seq: u64,
    pub(super) monitor: Monitor,
    pub(super) trace: Trace,
    pub(super) rng: SimRng,
    pub(super) running: Vec<bool>,
    pub(super) slots: Vec<Slot>,
    pub(super) inst_slot: BTreeMap<u64, usize>,
    pub(super) next_inst: u64,
    /// Number of the next broadcast (pairs a broadcast's order with its outcome).
    pub(super) next_broadcast: u64,
    pub(super) rejoining: BTreeMap<u64, bool>,
    pub(super) crashed_slots: BTreeMap<usize, Vec<usize>>,
    pub(super) partitions: BTreeMap<usize, FaultRecord>,
    pub(super) holds: BTreeMap<usize, FaultRecord>,
    /// Partitions and holds in force per link (see [`LinkFaults`]).
    pub(super) links: BTreeMap<(IpAddr, IpAddr), LinkFaults>,
    pub(super) losses: BTreeMap<usize, FaultRecord>,
    pub(super) evidence: &'a Evidence,
    pub(super) events: u64,
    pub(super) error: Option<String>,
    /// Hosts told to crash this step; `sim.crash` follows the step (see [`Cmd::Crash`]).
    pub(super) crashing: Vec<usize>,
    /// Next hostile connection id.
    pub(super) next_conn: u64,
    /// The peer address each hostile connection announces (those that announce one).
    pub(super) attack_peers: BTreeMap<u64, SocketAddr>,
    /// Each joined instance's peer address (spoofers' victims).
    pub(super) peers: BTreeMap<u64, SocketAddr>,
}

impl<'a> Driver<'a> {
    pub(super) fn new(resolved: &'a Resolved, trace: Trace, evidence: &'a Evidence, sabotage: &Sabotage) -> Self {
        let sc = &resolved.scenario;
        let seed = resolved.seed;
        let layout = Layout::new(sc);
        let net = &sc.network;
        let mut sim = hosts::build_sim(sc, seed);
        let a = &sc.authenticator;
        let mut settings = Settings::new(sc, &layout, seed);
        if let Some(t) = sabotage.auth_heartbeat_timeout {
            settings.heartbeat_timeout = t;
        }
        settings.foreign_peer_addresses = sabotage.auth_foreign_peer_addresses;
        settings.max_handshakes = sabotage.auth_max_handshakes;
        // Register in layout order: turmoil assigns 192.168.0.1, .2, ... in this order.
        let ips: Vec<IpAddr> = layout.hosts.iter().map(|h| sim.lookup(h.name.as_str())).collect();
        let mut shared = Shared::new(layout.hosts.len(), SocketAddr::new(ips[AUTH_HOST], a.port), settings);
        for (gi, g) in layout.groups.iter().enumerate() {
            if let Some(h) = g.impostor {
                shared.targets[gi] = SocketAddr::new(ips[h], a.port);
            }
        }
        let shared = Rc::new(shared);
        for (i, h) in layout.hosts.iter().enumerate() {
            let ctx = HostCtx {
                shared: shared.clone(),
                host: i,
                ip: ips[i],
                role: Role::of(&h.role),
                incarnation: Rc::new(Cell::new(0)),
            };
            sim.host(h.name.as_str(), move || hosts::software(ctx.clone()));
        }

        // Hosts expected to be banned: attackers, and groups with a wrong password.
        let mut suspects: Vec<usize> = layout.floods.iter().flat_map(|f| f.hosts.iter().copied()).collect();
        for (gi, g) in sc.joiners.iter().enumerate() {
            if g.get_ref().password.as_ref().is_some_and(|p| *p != a.password) {
                suspects.extend(&layout.groups[gi].hosts);
            }
        }
        let mcfg = MonitorConfig {
            heartbeat_interval: a.heartbeat_interval.get(),
            heartbeat_timeout: a.heartbeat_timeout().get(),
            max_latency: net.max_latency.get(),
            tick: sc.tick.get(),
            settle: sc.settle.get(),
            global_loss: net.fail_rate > 0.0,
        };
        let mut monitor = Monitor::new(mcfg, ips.clone(), &suspects);
        for e in sc.timeline.iter().map(|e| e.get_ref()).filter(|e| e.action == Action::BanFlood) {
            let end = e.ends_at(a).unwrap_or(e.at).get() + a.handshake_timeout.get();
            monitor.flood_window(e.at.get(), end);
        }
        monitor.hostile_hosts(&layout.attack_hosts(false), &layout.attack_hosts(true));
        for info in &layout.attacks {
            let e = sc.timeline[info.entry].get_ref();
            monitor.attack_window(e.at.get(), e.attack_end(a).get());
        }
        let mut schedule = BTreeMap::new();
        let ops = expand(sc, &layout, seed);
        let next_seq = ops.len() as u64;
        for s in ops {
            schedule.insert((s.at, s.seq), Item::Op(s.op));
        }
        let n_hosts = layout.hosts.len();
        let n_joiners = layout.joiners.len();
        Driver {
            sc,
            seed,
            layout,
            sim,
            shared,
            ips,
            schedule,
            next_seq,
            monitor,
            trace,
            rng: rng_for(seed, "driver"),
            running: vec![true; n_hosts],
            slots: vec![Slot::Idle; n_joiners],
            inst_slot: BTreeMap::new(),
            next_inst: 0,
            next_broadcast: 0,
            rejoining: BTreeMap::new(),
            crashed_slots: BTreeMap::new(),
            partitions: BTreeMap::new(),
            holds: BTreeMap::new(),
            links: BTreeMap::new(),
            losses: BTreeMap::new(),
            evidence,
            events: 0,
            error: None,
            crashing: Vec::new(),
            next_conn: 0,
            attack_peers: BTreeMap::new(),
            peers: BTreeMap::new(),
        }
    }

    /// Appends one event to the trace.
    pub(super) fn record(&mut self, at: Duration, src: &str, kind: &str, data: Value) -> Result<(), TraceError> {
        self.trace.record(&TraceEvent::new(at, src, kind, data))
    }

    /// Steps the simulation to the scenario's end, then collects metrics and findings.
    pub(super) fn run(mut self) -> Result<RunOutput, TraceError> {
        let end = self.sc.duration.get();
        self.record(
            Duration::ZERO,
            "sim",
            "start",
            json!({"seed": self.seed, "hosts": self.layout.hosts.len(), "joiners": self.layout.joiners.len()}),
        )?;
        loop {
            let now = self.sim.elapsed();
            self.apply_due(now)?;
            if now >= end {
                break;
            }
            if let Err(e) = self.sim.step() {
                self.error = Some(format!("turmoil step at {}: {e}", pyile::units::Dur(now)));
                break;
            }
            for h in std::mem::take(&mut self.crashing) {
                self.sim.crash(self.layout.hosts[h].name.as_str());
            }
            self.drain()?;
            if self.error.is_some() {
                break;
            }
            self.monitor.tick(self.sim.elapsed());
        }
        let sim_end = self.sim.elapsed().min(end);
        self.record(sim_end, "sim", "end", Value::Null)?;
        self.monitor.events(self.events);
        self.monitor.network_evidence(self.evidence.dropped(), self.evidence.held());
        self.monitor.dist_stats(&self.shared.dist_stats());
        let evidence = self.evidence;
        self.monitor.judge_distribution_losses(|dist| evidence.undelivered(dist).map(|n| n > 0));
        let (mut metrics, findings) = self.monitor.finish(sim_end);
        metrics.set(MetricId::Hosts, self.layout.hosts.len() as f64);
        metrics.set(MetricId::Joiners, self.layout.joiners.len() as f64);
        metrics.set(MetricId::SimSeconds, sim_end.as_secs_f64());
        let trace = self.trace.finish()?;
        Ok(RunOutput { metrics, findings, trace, error: self.error })
    }

    /// Schedules `item` at `at`, after everything already scheduled for that time.
    pub(super) fn schedule_at(&mut self, at: Duration, item: Item) {
        self.schedule.insert((at, self.next_seq), item);
        self.next_seq += 1;
    }

    /// Applies every item due by `now`, in (time, sequence) order.
    fn apply_due(&mut self, now: Duration) -> Result<(), TraceError> {
        while let Some((&key, _)) = self.schedule.first_key_value() {
            if key.0 > now {
                break;
            }
            let item = self.schedule.remove(&key).unwrap();
            match item {
                Item::Op(op) => self.apply(now, op)?,
                Item::Rejoin(slot) => {
                    if self.slots[slot] == Slot::Idle && self.running[self.layout.joiners[slot].host] {
                        self.start_join(now, slot, true)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies one scheduled operation: one method per kind.
    fn apply(&mut self, now: Duration, op: Op) -> Result<(), TraceError> {
        match op {
            Op::JoinJoiner { joiner } => self.join_joiner(now, joiner),
            Op::JoinFrom { group, pick } => self.join_from(now, group, pick),
            Op::LeaveFrom { group, pick } => self.leave_from(now, group, pick),
            Op::Crash(sel) => self.crash(now, &sel),
            Op::Restart { sel, rejoin } => self.restart(now, &sel, rejoin),
            Op::Partition { id, sel, direction } => self.partition(now, id, &sel, direction),
            Op::HealPartition { id } => self.heal(now, id),
            Op::HealAll => self.heal_all(now),
            Op::Hold { id, sel } => self.hold(now, id, &sel),
            Op::ReleaseHold { id } => self.release(now, id),
            Op::ReleaseAll => self.release_all(now),
            Op::LossStart { id, sel, fail_rate } => self.loss_start(now, id, sel.as_ref(), fail_rate),
            Op::LossEnd { id } => self.loss_end(now, id),
            Op::Attempt { flood, host, correct } => self.attempt(now, flood, host, correct),
            Op::Attack { attack, host } => self.attack(now, attack, host),
            Op::Broadcast { from, size } => self.broadcast(now, from, size),
        }
    }

    /// A group's `join_at`: this joiner joins, if idle and its host is up.
    fn join_joiner(&mut self, now: Duration, joiner: usize) -> Result<(), TraceError> {
        if self.slots[joiner] == Slot::Idle && self.running[self.layout.joiners[joiner].host] {
            self.start_join(now, joiner, false)?;
        }
        Ok(())
    }

    /// One idle joiner of `group` joins (timeline `join`, churn).
    fn join_from(&mut self, now: Duration, group: usize, pick: Pick) -> Result<(), TraceError> {
        let idle = self.slots_where(group, |s| s == Slot::Idle);
        if let Some(&slot) = pick_n(&idle, 1, pick, &mut self.rng).first() {
            self.start_join(now, slot, false)?;
        }
        Ok(())
    }

    /// One active joiner of `group` leaves (timeline `leave`, churn).
    fn leave_from(&mut self, now: Duration, group: usize, pick: Pick) -> Result<(), TraceError> {
        let active = self.slots_where(group, |s| matches!(s, Slot::Active(_)));
        if let Some(&slot) = pick_n(&active, 1, pick, &mut self.rng).first() {
            self.leave(now, slot)?;
        }
        Ok(())
    }

    /// One password attempt of ban flood `flood` from attacker `host`, if it is up.
    fn attempt(&mut self, now: Duration, flood: usize, host: usize, correct: bool) -> Result<(), TraceError> {
        if self.running[host] {
            self.shared.inboxes[host].send(Cmd::Attempt { correct });
            let name = self.layout.hosts[host].name.clone();
            self.record(now, "sim", "attempt", json!({"flood": flood, "host": name, "correct": correct}))?;
        }
        Ok(())
    }

    /// One broadcast from `from` (the authenticator, or an active joiner picked at random).
    fn broadcast(&mut self, now: Duration, from: Sender, size: u32) -> Result<(), TraceError> {
        let target = match from {
            Sender::Authenticator => self.running[AUTH_HOST].then_some((AUTH_HOST, None)),
            Sender::Any | Sender::Group(_) => {
                let candidates: Vec<usize> = match from {
                    Sender::Group(g) => self.slots_where(g, |s| matches!(s, Slot::Active(_))),
                    _ => (0..self.layout.groups.len())
                        .flat_map(|g| self.slots_where(g, |s| matches!(s, Slot::Active(_))))
                        .collect(),
                };
                pick_n(&candidates, 1, Pick::Random, &mut self.rng).first().map(|&slot| {
                    let Slot::Active(inst) = self.slots[slot] else { unreachable!() };
                    (self.layout.joiners[slot].host, Some(inst))
                })
            }
        };
        if let Some((host, inst)) = target {
            let id = self.next_broadcast;
            self.next_broadcast += 1;
            self.monitor.broadcast_started(now, id, inst);
            self.shared.inboxes[host].send(Cmd::Broadcast { id, inst, size });
            self.record(now, "sim", "broadcast", json!({"inst": inst, "size": size}))?;
        }
        Ok(())
    }

    /// Joiner `slot` starts a new instance (a join attempt); `rejoin` if the policy or a
    /// restart brought it back.
    fn start_join(&mut self, now: Duration, slot: usize, rejoin: bool) -> Result<(), TraceError> {
        let inst = self.next_inst;
        self.next_inst += 1;
        let j = &self.layout.joiners[slot];
        let (host, group) = (j.host, j.group);
        self.slots[slot] = Slot::Joining(inst);
        self.inst_slot.insert(inst, slot);
        self.rejoining.insert(inst, rejoin);
        self.shared.inboxes[host].send(Cmd::Join { inst, joiner: slot, group });
        let name = self.layout.joiners[slot].name.clone();
        self.record(now, "sim", "join", json!({"joiner": name, "inst": inst, "rejoin": rejoin}))
    }

    /// Slots of `group` in a state `f` accepts, on running hosts, in slot order.
    fn slots_where(&self, group: usize, f: impl Fn(Slot) -> bool) -> Vec<usize> {
        self.layout.groups[group]
            .joiners
            .iter()
            .copied()
            .filter(|&s| f(self.slots[s]) && self.running[self.layout.joiners[s].host])
            .collect()
    }

    /// Active joiner `slot` leaves gracefully.
    fn leave(&mut self, now: Duration, slot: usize) -> Result<(), TraceError> {
        if let Slot::Active(inst) = self.slots[slot] {
            self.slots[slot] = Slot::Leaving(inst);
            self.monitor.leave_started(now, inst);
            self.shared.inboxes[self.layout.joiners[slot].host].send(Cmd::Leave { inst });
            let name = self.layout.joiners[slot].name.clone();
            self.record(now, "sim", "leave", json!({"joiner": name, "inst": inst}))?;
        }
        Ok(())
    }

    /// The names of `hosts`, for trace records.
    pub(super) fn names(&self, hosts: &[usize]) -> Vec<String> {
        hosts.iter().map(|&h| self.layout.hosts[h].name.clone()).collect()
    }

    /// An instance's name in the trace: `joiner#inst`.
    pub(super) fn inst_name(&self, inst: u64) -> String {
        self.inst_slot
            .get(&inst)
            .map(|&s| format!("{}#{inst}", self.layout.joiners[s].name))
            .unwrap_or_else(|| format!("#{inst}"))
    }

    /// The slot of `inst` if it is still that slot's current instance.
    pub(super) fn current_slot(&self, inst: u64) -> Option<usize> {
        let &slot = self.inst_slot.get(&inst)?;
        match self.slots[slot] {
            Slot::Joining(i) | Slot::Active(i) | Slot::Leaving(i) if i == inst => Some(slot),
            _ => None,
        }
    }

    /// The instance ended on its own (not by leave or crash): apply the rejoin policy.
    pub(super) fn maybe_rejoin(&mut self, at: Duration, slot: usize) {
        let g = self.sc.joiners[self.layout.joiners[slot].group].get_ref();
        if let Some(d) = g.rejoin_after {
            self.schedule_at(at + d.get(), Item::Rejoin(slot));
        }
    }
}
