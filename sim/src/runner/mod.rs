//! The runner: one resolved scenario, one seed, one turmoil simulation.
//!
//! The driver builds a deterministic `turmoil::Sim` (seeded RNG, fixed epoch, the scenario's
//! tick, latencies, loss and `tcp_capacity`), registers the hosts of the [`Layout`] in a
//! fixed order (which fixes their IPs), and steps the simulation by hand. Between steps it
//! applies the due operations of the [`timeline`](crate::timeline) schedule (faults through
//! turmoil's partition/hold/crash/bounce API, joins/leaves/broadcasts as commands to the
//! hosts) and the rejoin policy; after each step it drains what the hosts observed, records
//! it in the [`Trace`] and feeds it to the [`Monitor`]. Nothing here reads the wall clock
//! except the sim/wall ratio around the whole loop.
//!
//! The protocol software itself (pyile's `Authenticator`/`Joiner` on `TurmoilNet`) is in
//! [`hosts`]; the checkers are in [`crate::checkers`].

pub mod evidence;
pub mod hosts;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use pyile::{EventKind, HandshakeStage, LostReason, MemberList, RemovalReason};
use serde_json::{Value, json};

use crate::batch::set_wall_metrics;
use crate::checkers::{Impairment, ListView, Monitor, MonitorConfig, Removal};
use crate::hash::Fnv64;
use crate::layout::{AUTH_HOST, HostRole, Layout};
use crate::metrics::{MetricId, Metrics};
use crate::rng::{SimRng, derive_seed, rng_for};
use crate::scenario::{Action, Direction, Pick, Resolved, Scenario};
use crate::timeline::{Op, Selection, Sender, expand, pick_n};
use crate::trace::{Trace, TraceError, TraceEvent, TraceSummary};
use crate::verdict::Finding;
use evidence::Evidence;
use hosts::{Cmd, HostCtx, Obs, Role, Settings, Shared};

/// The fixed start of simulated time (turmoil's default is the wall clock).
pub const EPOCH_SECS: u64 = 1_700_000_000;

/// What one run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Metric values (the runner sets wall time and the sim/wall ratio too).
    pub metrics: Metrics,
    /// Checker findings.
    pub findings: Vec<Finding>,
    /// The finished trace.
    pub trace: TraceSummary,
    /// Why the run could not complete (host software error, simulation panic).
    pub error: Option<String>,
}

/// Deliberate protocol misconfigurations that the checkers do not know about: tests use
/// them to prove a checker fires against a broken authenticator.
#[derive(Clone, Debug, Default)]
pub struct Sabotage {
    /// Run the authenticator with this heartbeat timeout instead of the scenario's (e.g. an
    /// hour: the reference's "members are never removed"), while the checkers keep the
    /// scenario's bound.
    pub auth_heartbeat_timeout: Option<Duration>,
}

/// Runs `resolved` once, recording into `trace`.
pub fn run(resolved: &Resolved, trace: Trace) -> Result<RunOutput, TraceError> {
    run_with(resolved, trace, &Sabotage::default())
}

/// [`run`] with a [`Sabotage`].
pub fn run_with(resolved: &Resolved, trace: Trace, sabotage: &Sabotage) -> Result<RunOutput, TraceError> {
    let evidence = Evidence::default();
    let dispatch = tracing::Dispatch::new(evidence.clone());
    let wall = std::time::Instant::now(); // wall time: only for the sim/wall ratio
    let out = tracing::dispatcher::with_default(&dispatch, || Driver::new(resolved, trace, &evidence, sabotage).run());
    let mut out = out?;
    let sim_secs = out.metrics.get(MetricId::SimSeconds).unwrap_or(0.0);
    set_wall_metrics(&mut out.metrics, sim_secs, wall.elapsed().as_secs_f64());
    Ok(out)
}

/// A joiner slot's state, as the driver knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Idle,
    Joining(u64),
    Active(u64),
    Leaving(u64),
}

/// Something to do at a time.
#[derive(Clone, Debug)]
enum Item {
    Op(Op),
    /// The rejoin policy (or a restart) joins this slot again.
    Rejoin(usize),
}

struct FaultRecord {
    pairs: Vec<(IpAddr, IpAddr)>,
    direction: Direction,
    impaired: Vec<usize>,
}

struct Driver<'a> {
    sc: &'a Scenario,
    seed: u64,
    layout: Layout,
    sim: turmoil::Sim<'static>,
    shared: Rc<Shared>,
    ips: Vec<IpAddr>,
    schedule: BTreeMap<(Duration, u64), Item>,
    next_seq: u64,
    monitor: Monitor,
    trace: Trace,
    rng: SimRng,
    running: Vec<bool>,
    slots: Vec<Slot>,
    inst_slot: BTreeMap<u64, usize>,
    next_inst: u64,
    rejoining: BTreeMap<u64, bool>,
    crashed_slots: BTreeMap<usize, Vec<usize>>,
    partitions: BTreeMap<usize, FaultRecord>,
    holds: BTreeMap<usize, FaultRecord>,
    losses: BTreeMap<usize, FaultRecord>,
    evidence: &'a Evidence,
    events: u64,
    error: Option<String>,
    /// Hosts told to crash this step; `sim.crash` follows the step (see [`Cmd::Crash`]).
    crashing: Vec<usize>,
}

fn list_view(l: &MemberList, bytes: usize) -> ListView {
    ListView { version: l.version, members: l.members.to_vec(), bytes }
}

fn list_json(l: &MemberList) -> Value {
    let mut h = Fnv64::new();
    for m in l.members.iter() {
        h.update(m.to_string().as_bytes());
        h.update(b",");
    }
    json!({"v": l.version, "n": l.members.len(), "h": h.hex()})
}

fn removal(r: &RemovalReason) -> Removal {
    match r {
        RemovalReason::HeartbeatTimeout => Removal::HeartbeatTimeout,
        RemovalReason::Closed => Removal::Closed,
        RemovalReason::DistributionStalled => Removal::Stalled,
        RemovalReason::DistributionLost => Removal::DistributionLost,
        RemovalReason::Replaced => Removal::Replaced,
        RemovalReason::ProtocolError(_) => Removal::Protocol,
    }
}

/// A pyile event as a trace kind and data.
fn describe(kind: &EventKind) -> (&'static str, Value) {
    match kind {
        EventKind::Handshake(stage) => (
            "handshake",
            match stage {
                HandshakeStage::Connected => json!({"stage": "connected"}),
                HandshakeStage::BannedStatus { banned } => json!({"stage": "banned_status", "banned": banned}),
                HandshakeStage::Authenticated { ok } => json!({"stage": "authenticated", "ok": ok}),
                HandshakeStage::FirstList(l) => json!({"stage": "first_list", "list": list_json(l)}),
                HandshakeStage::DistConnected => json!({"stage": "dist_connected"}),
            },
        ),
        EventKind::Joined { peer_addr, list } => {
            ("joined", json!({"peer": peer_addr.to_string(), "list": list_json(list)}))
        }
        EventKind::MemberJoined { member, source } => {
            ("member_joined", json!({"member": member.to_string(), "source": source.to_string()}))
        }
        EventKind::MemberListChanged { list, bytes } => ("list", json!({"list": list_json(list), "bytes": bytes})),
        EventKind::MemberRemoved { member, reason } => {
            ("member_removed", json!({"member": member.to_string(), "reason": format!("{reason:?}")}))
        }
        EventKind::AuthFailed { ip, attempts } => ("auth_failed", json!({"ip": ip.to_string(), "attempts": attempts})),
        EventKind::Banned { ip } => ("banned", json!({"ip": ip.to_string()})),
        EventKind::BanRefused { ip } => ("ban_refused", json!({"ip": ip.to_string()})),
        EventKind::HandshakeFailed { source, error } => {
            ("handshake_failed", json!({"source": source.to_string(), "error": error}))
        }
        EventKind::HeartbeatReceived { .. } => ("heartbeat", Value::Null),
        EventKind::HeartbeatMissed { peer, silent_for } => {
            ("heartbeat_missed", json!({"peer": peer.to_string(), "silent_us": silent_for.as_micros() as u64}))
        }
        EventKind::MessageReceived { from, broadcast, data, .. } => {
            ("message", json!({"from": from.to_string(), "broadcast": broadcast, "len": data.len()}))
        }
        EventKind::MessageRefused { source } => ("message_refused", json!({"source": source.to_string()})),
        EventKind::AuthenticatorLost { reason } => (
            "authenticator_lost",
            json!({"reason": match reason { LostReason::Timeout => "timeout".to_string(), LostReason::Closed => "closed".to_string(), LostReason::Error(e) => format!("error: {e}") }}),
        ),
        EventKind::Left => ("left", Value::Null),
        EventKind::Lagged { dropped } => ("lagged", json!({"dropped": dropped})),
    }
}

impl<'a> Driver<'a> {
    fn new(resolved: &'a Resolved, trace: Trace, evidence: &'a Evidence, sabotage: &Sabotage) -> Self {
        let sc = &resolved.scenario;
        let seed = resolved.seed;
        let layout = Layout::new(sc);
        let net = &sc.network;
        let mut b = turmoil::Builder::new();
        b.rng_seed(derive_seed(seed, "turmoil"))
            .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
            .simulation_duration(sc.duration.get() + Duration::from_secs(3600))
            .tick_duration(sc.tick.get())
            .min_message_latency(net.min_latency.get())
            .max_message_latency(net.max_latency.get())
            .fail_rate(net.fail_rate)
            .tcp_capacity(net.tcp_capacity);
        let mut sim = b.build();

        let a = &sc.authenticator;
        let groups = sc
            .joiners
            .iter()
            .map(|g| {
                let g = g.get_ref();
                (
                    g.password.clone().unwrap_or_else(|| a.password.clone()),
                    g.handshake_timeout.unwrap_or(a.handshake_timeout).get(),
                    g.heartbeat_timeout
                        .map(|d| d.get())
                        .unwrap_or(a.heartbeat_timeout().get() + a.heartbeat_interval.get()),
                )
            })
            .collect();
        let settings = Settings {
            seed,
            password: a.password.clone(),
            password_attempts: a.password_attempts,
            heartbeat_interval: a.heartbeat_interval.get(),
            heartbeat_timeout: sabotage.auth_heartbeat_timeout.unwrap_or(a.heartbeat_timeout().get()),
            handshake_timeout: a.handshake_timeout.get(),
            distribution_budget: a.distribution_budget.bytes_per_sec(),
            port: a.port,
            groups,
            joiner_names: layout.joiners.iter().map(|j| j.name.clone()).collect(),
        };
        // Register in layout order: turmoil assigns 192.168.0.1, .2, ... in this order.
        let ips: Vec<IpAddr> = layout.hosts.iter().map(|h| sim.lookup(h.name.as_str())).collect();
        let shared = Rc::new(Shared {
            obs: RefCell::new(Vec::new()),
            inboxes: layout.hosts.iter().map(|_| hosts::Inbox::default()).collect(),
            auth_addr: SocketAddr::new(ips[AUTH_HOST], a.port),
            settings,
        });
        for (i, h) in layout.hosts.iter().enumerate() {
            let ctx = HostCtx {
                shared: shared.clone(),
                host: i,
                ip: ips[i],
                role: match h.role {
                    HostRole::Authenticator => Role::Authenticator,
                    HostRole::Joiners { .. } => Role::Joiners,
                    HostRole::Attacker { .. } => Role::Attacker,
                },
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
            rejoining: BTreeMap::new(),
            crashed_slots: BTreeMap::new(),
            partitions: BTreeMap::new(),
            holds: BTreeMap::new(),
            losses: BTreeMap::new(),
            evidence,
            events: 0,
            error: None,
            crashing: Vec::new(),
        }
    }

    fn record(&mut self, at: Duration, src: &str, kind: &str, data: Value) -> Result<(), TraceError> {
        self.trace.record(&TraceEvent::new(at, src, kind, data))
    }

    fn run(mut self) -> Result<RunOutput, TraceError> {
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
        let evidence = self.evidence;
        self.monitor.judge_distribution_losses(|dist| evidence.undelivered(dist).map(|n| n > 0));
        let (mut metrics, findings) = self.monitor.finish(sim_end);
        metrics.set(MetricId::Hosts, self.layout.hosts.len() as f64);
        metrics.set(MetricId::Joiners, self.layout.joiners.len() as f64);
        metrics.set(MetricId::SimSeconds, sim_end.as_secs_f64());
        let trace = self.trace.finish()?;
        Ok(RunOutput { metrics, findings, trace, error: self.error })
    }

    fn schedule_at(&mut self, at: Duration, item: Item) {
        self.schedule.insert((at, self.next_seq), item);
        self.next_seq += 1;
    }

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

    fn slots_where(&self, group: usize, f: impl Fn(Slot) -> bool) -> Vec<usize> {
        self.layout.groups[group]
            .joiners
            .iter()
            .copied()
            .filter(|&s| f(self.slots[s]) && self.running[self.layout.joiners[s].host])
            .collect()
    }

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

    /// The two sides of a cut: the chosen hosts and everyone else.
    fn sides(&mut self, sel: &Selection) -> (Vec<usize>, Vec<usize>) {
        let chosen = sel.choose(&sel.hosts, &mut self.rng);
        let rest = (0..self.layout.hosts.len()).filter(|h| !chosen.contains(h)).collect();
        (chosen, rest)
    }

    /// Hosts whose link to the authenticator a cut between `a` and `b` impairs.
    fn impaired_by(a: &[usize], b: &[usize]) -> Vec<usize> {
        if a.contains(&AUTH_HOST) || b.is_empty() {
            vec![AUTH_HOST]
        } else if b.contains(&AUTH_HOST) {
            a.to_vec()
        } else {
            Vec::new()
        }
    }

    fn names(&self, hosts: &[usize]) -> Vec<String> {
        hosts.iter().map(|&h| self.layout.hosts[h].name.clone()).collect()
    }

    fn apply(&mut self, now: Duration, op: Op) -> Result<(), TraceError> {
        match op {
            Op::JoinJoiner { joiner } => {
                if self.slots[joiner] == Slot::Idle && self.running[self.layout.joiners[joiner].host] {
                    self.start_join(now, joiner, false)?;
                }
            }
            Op::JoinFrom { group, pick } => {
                let idle = self.slots_where(group, |s| s == Slot::Idle);
                if let Some(&slot) = pick_n(&idle, 1, pick, &mut self.rng).first() {
                    self.start_join(now, slot, false)?;
                }
            }
            Op::LeaveFrom { group, pick } => {
                let active = self.slots_where(group, |s| matches!(s, Slot::Active(_)));
                if let Some(&slot) = pick_n(&active, 1, pick, &mut self.rng).first() {
                    self.leave(now, slot)?;
                }
            }
            Op::Crash(sel) => {
                let eligible: Vec<usize> = sel.hosts.iter().copied().filter(|&h| self.running[h]).collect();
                let chosen = sel.choose(&eligible, &mut self.rng);
                self.monitor.fault(!chosen.is_empty());
                for &h in &chosen {
                    self.running[h] = false;
                    self.shared.inboxes[h].clear();
                    self.shared.inboxes[h].send(Cmd::Crash);
                    self.crashing.push(h);
                    if h == AUTH_HOST {
                        self.monitor.auth_crashed(now);
                        continue;
                    }
                    self.monitor.impaired(now, h, Impairment::Crash, h as u64);
                    let mut were_in = Vec::new();
                    for &slot in &self.layout.hosts[h].joiners {
                        match self.slots[slot] {
                            Slot::Idle => {}
                            Slot::Joining(i) | Slot::Active(i) | Slot::Leaving(i) => {
                                if !matches!(self.slots[slot], Slot::Leaving(_)) {
                                    were_in.push(slot);
                                }
                                self.monitor.ended(now, i);
                                self.slots[slot] = Slot::Idle;
                            }
                        }
                    }
                    self.crashed_slots.insert(h, were_in);
                }
                let names = self.names(&chosen);
                self.record(now, "sim", "crash", json!({"hosts": names}))?;
            }
            Op::Restart { sel, rejoin } => {
                let eligible: Vec<usize> = sel.hosts.iter().copied().filter(|&h| !self.running[h]).collect();
                let chosen = sel.choose(&eligible, &mut self.rng);
                for &h in &chosen {
                    self.sim.bounce(self.layout.hosts[h].name.as_str());
                    self.running[h] = true;
                    if h == AUTH_HOST {
                        self.monitor.auth_restarted(now);
                    } else {
                        self.monitor.restored(now, h, Impairment::Crash, h as u64);
                    }
                    let slots = self.crashed_slots.remove(&h).unwrap_or_default();
                    if rejoin {
                        for (k, slot) in slots.into_iter().enumerate() {
                            // One tick after the restart, so the host's software is up; spaced 1 ms.
                            let at = now + self.sc.tick.get() + Duration::from_millis(k as u64);
                            self.schedule_at(at, Item::Rejoin(slot));
                        }
                    }
                }
                let names = self.names(&chosen);
                self.record(now, "sim", "restart", json!({"hosts": names, "rejoin": rejoin}))?;
            }
            Op::Partition { id, sel, direction } => {
                let (a, b) = self.sides(&sel);
                let mut pairs = Vec::new();
                for &x in &a {
                    for &y in &b {
                        let (ix, iy) = (self.ips[x], self.ips[y]);
                        match direction {
                            Direction::Both => self.sim.partition(ix, iy),
                            Direction::Outbound => self.sim.partition_oneway(ix, iy),
                            Direction::Inbound => self.sim.partition_oneway(iy, ix),
                        }
                        pairs.push((ix, iy));
                    }
                }
                let impaired = Self::impaired_by(&a, &b);
                self.monitor.fault(!pairs.is_empty());
                for &h in &impaired {
                    self.monitor.impaired(now, h, Impairment::Partition, id as u64);
                }
                let names = self.names(&a);
                self.record(
                    now,
                    "sim",
                    "partition",
                    json!({"id": id, "hosts": names, "direction": format!("{direction:?}").to_lowercase()}),
                )?;
                self.partitions.insert(id, FaultRecord { pairs, direction, impaired });
            }
            Op::HealPartition { id } => self.heal(now, id)?,
            Op::HealAll => {
                let ids: Vec<usize> = self.partitions.keys().copied().collect();
                for id in ids {
                    self.heal(now, id)?;
                }
            }
            Op::Hold { id, sel } => {
                let (a, b) = self.sides(&sel);
                let mut pairs = Vec::new();
                for &x in &a {
                    for &y in &b {
                        self.sim.hold(self.ips[x], self.ips[y]);
                        pairs.push((self.ips[x], self.ips[y]));
                    }
                }
                let impaired = Self::impaired_by(&a, &b);
                self.monitor.fault(!pairs.is_empty());
                for &h in &impaired {
                    self.monitor.impaired(now, h, Impairment::Hold, id as u64);
                }
                let names = self.names(&a);
                self.record(now, "sim", "hold", json!({"id": id, "hosts": names}))?;
                self.holds.insert(id, FaultRecord { pairs, direction: Direction::Both, impaired });
            }
            Op::ReleaseHold { id } => self.release(now, id)?,
            Op::ReleaseAll => {
                let ids: Vec<usize> = self.holds.keys().copied().collect();
                for id in ids {
                    self.release(now, id)?;
                }
            }
            Op::LossStart { id, sel, fail_rate } => {
                let (pairs, impaired, names) = match sel {
                    None => {
                        self.sim.set_fail_rate(fail_rate);
                        (Vec::new(), vec![AUTH_HOST], vec!["all".to_string()])
                    }
                    Some(sel) => {
                        let (a, b) = self.sides(&sel);
                        let mut pairs = Vec::new();
                        for &x in &a {
                            for &y in &b {
                                self.sim.set_link_fail_rate(self.ips[x], self.ips[y], fail_rate);
                                pairs.push((self.ips[x], self.ips[y]));
                            }
                        }
                        let names = self.names(&a);
                        (pairs, Self::impaired_by(&a, &b), names)
                    }
                };
                self.monitor.fault(true);
                for &h in &impaired {
                    self.monitor.impaired(now, h, Impairment::Loss, id as u64);
                }
                self.record(now, "sim", "loss", json!({"id": id, "hosts": names, "fail_rate": fail_rate}))?;
                self.losses.insert(id, FaultRecord { pairs, direction: Direction::Both, impaired });
            }
            Op::LossEnd { id } => {
                if let Some(f) = self.losses.remove(&id) {
                    let base = self.sc.network.fail_rate;
                    if f.pairs.is_empty() {
                        self.sim.set_fail_rate(base);
                    }
                    for (x, y) in f.pairs {
                        self.sim.set_link_fail_rate(x, y, base);
                    }
                    for h in f.impaired {
                        self.monitor.restored(now, h, Impairment::Loss, id as u64);
                    }
                    self.record(now, "sim", "loss_end", json!({"id": id}))?;
                }
            }
            Op::Attempt { flood, host, correct } => {
                if self.running[host] {
                    self.shared.inboxes[host].send(Cmd::Attempt { correct });
                    let name = self.layout.hosts[host].name.clone();
                    self.record(now, "sim", "attempt", json!({"flood": flood, "host": name, "correct": correct}))?;
                }
            }
            Op::Broadcast { from, size } => {
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
                    self.shared.inboxes[host].send(Cmd::Broadcast { inst, size });
                    self.record(now, "sim", "broadcast", json!({"inst": inst, "size": size}))?;
                }
            }
        }
        Ok(())
    }

    fn heal(&mut self, now: Duration, id: usize) -> Result<(), TraceError> {
        if let Some(f) = self.partitions.remove(&id) {
            for (x, y) in f.pairs {
                match f.direction {
                    Direction::Both => self.sim.repair(x, y),
                    Direction::Outbound => self.sim.repair_oneway(x, y),
                    Direction::Inbound => self.sim.repair_oneway(y, x),
                }
            }
            for h in f.impaired {
                self.monitor.restored(now, h, Impairment::Partition, id as u64);
            }
            self.record(now, "sim", "heal", json!({"id": id}))?;
        }
        Ok(())
    }

    fn release(&mut self, now: Duration, id: usize) -> Result<(), TraceError> {
        if let Some(f) = self.holds.remove(&id) {
            for (x, y) in f.pairs {
                self.sim.release(x, y);
            }
            for h in f.impaired {
                self.monitor.restored(now, h, Impairment::Hold, id as u64);
            }
            self.record(now, "sim", "release", json!({"id": id}))?;
        }
        Ok(())
    }

    fn inst_name(&self, inst: u64) -> String {
        self.inst_slot
            .get(&inst)
            .map(|&s| format!("{}#{inst}", self.layout.joiners[s].name))
            .unwrap_or_else(|| format!("#{inst}"))
    }

    /// The slot of `inst` if it is still that slot's current instance.
    fn current_slot(&self, inst: u64) -> Option<usize> {
        let &slot = self.inst_slot.get(&inst)?;
        match self.slots[slot] {
            Slot::Joining(i) | Slot::Active(i) | Slot::Leaving(i) if i == inst => Some(slot),
            _ => None,
        }
    }

    /// The instance ended on its own (not by leave or crash): apply the rejoin policy.
    fn maybe_rejoin(&mut self, at: Duration, slot: usize) {
        let g = self.sc.joiners[self.layout.joiners[slot].group].get_ref();
        if let Some(d) = g.rejoin_after {
            self.schedule_at(at + d.get(), Item::Rejoin(slot));
        }
    }

    fn drain(&mut self) -> Result<(), TraceError> {
        let obs = std::mem::take(&mut *self.shared.obs.borrow_mut());
        for (host, o) in obs {
            if !self.running[host] {
                continue; // a crashed host's last gasps are not observations
            }
            self.events += 1;
            self.observe(o)?;
        }
        Ok(())
    }

    fn observe(&mut self, o: Obs) -> Result<(), TraceError> {
        match o {
            Obs::AuthStarted { at, peer } => {
                self.monitor.auth_started(at, peer);
                self.record(at, "auth", "started", json!({"peer": peer.to_string()}))?;
            }
            Obs::AuthStartFailed { at, error } => {
                self.error = Some(format!("authenticator failed to start at {}: {error}", pyile::units::Dur(at)));
                self.record(at, "auth", "start_failed", json!({"error": error}))?;
            }
            Obs::Auth { at, kind } => {
                match &kind {
                    EventKind::MemberJoined { member, source } => self.monitor.member_joined(at, *member, *source),
                    EventKind::MemberListChanged { list, bytes } => {
                        self.monitor.auth_list(at, &list_view(list, *bytes))
                    }
                    EventKind::MemberRemoved { member, reason } => {
                        self.monitor.member_removed(at, *member, removal(reason))
                    }
                    EventKind::AuthFailed { ip, attempts } => self.monitor.auth_failed(at, *ip, *attempts),
                    EventKind::Banned { ip } => self.monitor.banned(at, *ip),
                    EventKind::Lagged { dropped } => {
                        self.error =
                            Some(format!("authenticator events lagged ({dropped} dropped): checkers incomplete"));
                    }
                    _ => {}
                }
                let (k, d) = describe(&kind);
                self.record(at, "auth", k, d)?;
            }
            Obs::JoinStarted { at, inst } => {
                if let Some(&slot) = self.inst_slot.get(&inst) {
                    let host = self.layout.joiners[slot].host;
                    let rejoin = self.rejoining.get(&inst).copied().unwrap_or(false);
                    self.monitor.join_started(at, inst, slot, host, rejoin);
                }
                let n = self.inst_name(inst);
                self.record(at, &n, "join_started", Value::Null)?;
            }
            Obs::JoinFailed { at, inst, error } => {
                self.monitor.join_failed(at, inst);
                if let Some(slot) = self.current_slot(inst) {
                    self.slots[slot] = Slot::Idle;
                    self.maybe_rejoin(at, slot);
                }
                let n = self.inst_name(inst);
                self.record(at, &n, "join_failed", json!({"error": error}))?;
            }
            Obs::Joiner { at, inst, kind } => {
                match &kind {
                    EventKind::Joined { peer_addr, list } => {
                        self.monitor.joined(at, inst, *peer_addr, &list_view(list, 0));
                        if let Some(slot) = self.current_slot(inst)
                            && self.slots[slot] == Slot::Joining(inst)
                        {
                            self.slots[slot] = Slot::Active(inst);
                        }
                    }
                    EventKind::MemberListChanged { list, bytes } => {
                        self.monitor.joiner_list(at, inst, &list_view(list, *bytes))
                    }
                    EventKind::AuthenticatorLost { .. } => self.monitor.auth_lost(at, inst),
                    EventKind::Lagged { dropped } => {
                        self.error = Some(format!("joiner events lagged ({dropped} dropped): checkers incomplete"));
                    }
                    _ => {}
                }
                let (k, d) = describe(&kind);
                let n = self.inst_name(inst);
                self.record(at, &n, k, d)?;
            }
            Obs::DistConnected { inst, local } => {
                // Before the authenticator can have written to it: see `Evidence::watch`.
                self.evidence.watch(local);
                self.monitor.dist_connected(inst, local);
            }
            Obs::JoinerEnded { at, inst } => {
                self.monitor.ended(at, inst);
                if let Some(slot) = self.current_slot(inst) {
                    let was_leaving = self.slots[slot] == Slot::Leaving(inst);
                    self.slots[slot] = Slot::Idle;
                    if !was_leaving {
                        self.maybe_rejoin(at, slot);
                    }
                }
                let n = self.inst_name(inst);
                self.record(at, &n, "ended", Value::Null)?;
            }
            Obs::BroadcastDone { at, inst, sent, delivered, failed } => {
                self.monitor.broadcast(sent, delivered);
                let n = inst.map(|i| self.inst_name(i)).unwrap_or_else(|| "auth".into());
                self.record(at, &n, "broadcast_done", json!({"sent": sent, "delivered": delivered, "failed": failed}))?;
            }
            Obs::AttemptStarted { at, host } => {
                self.monitor.attempt_started(at, self.ips[host]);
            }
            Obs::AttemptDone { at, host, correct, admitted, error } => {
                self.monitor.attempt_result(at, self.ips[host], correct, admitted);
                let n = self.layout.hosts[host].name.clone();
                self.record(at, &n, "attempt_done", json!({"correct": correct, "admitted": admitted, "error": error}))?;
            }
        }
        Ok(())
    }
}
