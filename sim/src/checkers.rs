//! Ground truth, safety and liveness checkers, and per-run metrics.
//!
//! The [`Monitor`] is fed two kinds of facts, in simulated-time order: what the driver did
//! to the world (the truth: which host crashed, which link is cut or held, which joiner was
//! told to join or leave) and what the protocol reported (admissions, published and received
//! member lists, removals, bans), translated by the runner from pyile's events into the plain
//! calls below. It knows nothing of pyile's types, so every checker is tested here with
//! synthetic histories — including the broken behaviours each checker must catch.
//!
//! Safety checks (each finding fails the run):
//! - `banned_member`: a list (published or received) holds a banned or attacker IP.
//! - `unknown_member`: a joiner's list holds an address the authenticator never admitted.
//! - `view_regressed`: a joiner received a list older than one it already had.
//! - `stale_member`: the authenticator still lists a member `heartbeat_timeout` + one interval
//!   (+ latency slack) after the member's host stopped answering (crash, cut, hold).
//! - `false_removal`: a member was removed although neither its host nor the authenticator
//!   had any fault since it joined and it was not leaving; or it was removed for a lost
//!   distribution (`DistributionLost`) although the network's ground truth shows its
//!   distribution stream never lost a segment (whatever faults it lived through).
//! - `banned_admitted`: an attacker IP got in with the correct password after its ban.
//! - `honest_banned`: an IP was banned that made no wrong attempts by design.
//!
//! Liveness (at the end of a run with `settle` > 0): `not_converged` — a live, healthy joiner
//! does not hold the authenticator's list (as of a grace period before the end), or is not
//! in it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pyile::units::Dur;

use crate::metrics::{MetricId, Metrics};
use crate::verdict::{Finding, Severity};

/// Settings the checkers need.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// Authenticator heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Authenticator heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Maximum one-way latency (slack for the bounds).
    pub max_latency: Duration,
    /// Turmoil tick (slack for the bounds).
    pub tick: Duration,
    /// Length of the final liveness window (zero: no liveness checks).
    pub settle: Duration,
    /// Whether the whole run has a global `fail_rate` (then no removal is provably false).
    pub global_loss: bool,
}

impl MonitorConfig {
    /// The longest an unresponsive member may stay listed.
    pub fn stale_bound(&self) -> Duration {
        self.heartbeat_timeout + self.heartbeat_interval + self.slack()
    }

    /// Latency slack: a few hops and ticks.
    pub fn slack(&self) -> Duration {
        self.max_latency * 4 + self.tick * 4
    }

    /// How long before the end a list change may still be in flight at the liveness check.
    pub fn convergence_grace(&self) -> Duration {
        Duration::from_secs(2) + self.slack()
    }
}

/// A member list as seen by one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListView {
    /// Version (our authenticator's extension; None from the reference).
    pub version: Option<u64>,
    /// The members, authenticator first.
    pub members: Vec<SocketAddr>,
    /// Encoded size.
    pub bytes: usize,
}

/// Why the authenticator removed a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Heartbeat timeout.
    HeartbeatTimeout,
    /// The member closed its connection.
    Closed,
    /// Distribution to it stalled.
    Stalled,
    /// Its heartbeat answers showed it lacked a list long published: its distribution
    /// stream is dead.
    DistributionLost,
    /// Replaced by a new join from the same address.
    Replaced,
    /// Protocol error.
    Protocol,
}

/// What impairs a host's link to the authenticator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Impairment {
    /// The host crashed.
    Crash,
    /// A partition (either direction) cuts it from the authenticator.
    Partition,
    /// Its segments are held.
    Hold,
    /// Its links lose segments.
    Loss,
}

#[derive(Clone, Debug, Default)]
struct Instance {
    joiner: usize,
    host: usize,
    honest: bool,
    join_started: Duration,
    joined_at: Option<Duration>,
    addr: Option<SocketAddr>,
    leaving: Option<Duration>,
    ended: Option<Duration>,
    stopped_at: Option<Duration>,
    last_version: Option<u64>,
    version_seen: Option<u64>,
    /// Local address of its distribution connection (where the list writes go).
    dist: Option<SocketAddr>,
}

/// A `DistributionLost` removal, judged against the network's ground truth at the end.
#[derive(Clone, Debug)]
struct DistLoss {
    at: Duration,
    member: SocketAddr,
    dist: SocketAddr,
    joined: Duration,
}

#[derive(Clone, Debug, Default)]
struct HostState {
    /// Active impairments: (kind, id) → since.
    active: BTreeMap<(Impairment, u64), Duration>,
    /// Ended impairments: (start, end).
    past: Vec<(Duration, Duration)>,
}

impl HostState {
    fn impaired_between(&self, a: Duration, b: Duration) -> bool {
        self.active.values().any(|&s| s <= b) || self.past.iter().any(|&(s, e)| s <= b && e >= a)
    }
    fn impaired_now(&self) -> bool {
        !self.active.is_empty()
    }
}

#[derive(Clone, Debug)]
struct Deadline {
    inst: u64,
    kind: Impairment,
    id: u64,
    since: Duration,
    auth_incarnation: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    published: Duration,
    waiting: BTreeSet<u64>,
    last_receipt: Option<Duration>,
}

/// Collects truth and observations; produces findings and metrics.
pub struct Monitor {
    cfg: MonitorConfig,
    hosts: Vec<HostState>,
    host_ips: Vec<IpAddr>,
    attacker_ips: BTreeSet<IpAddr>,
    instances: BTreeMap<u64, Instance>,
    by_addr: BTreeMap<SocketAddr, u64>,
    // authenticator
    auth_incarnation: u64,
    auth_running: bool,
    auth_peers: BTreeSet<SocketAddr>,
    admitted: BTreeSet<SocketAddr>,
    auth_members: BTreeSet<SocketAddr>,
    auth_versions: Vec<(Duration, Option<u64>)>,
    banned: BTreeSet<IpAddr>,
    ban_first_attempt: BTreeMap<IpAddr, Duration>,
    fail_counts: BTreeMap<IpAddr, u32>,
    // checkers' state
    deadlines: BTreeMap<(Duration, u64), Deadline>,
    deadline_seq: u64,
    pending: BTreeMap<u64, Pending>,
    reported: BTreeSet<(&'static str, String)>,
    findings: Vec<Finding>,
    floods: Vec<(Duration, Duration)>,
    dist_losses: Vec<DistLoss>,
    // samples and counters
    join_latency: Vec<f64>,
    honest_flood_latency: Vec<f64>,
    detection: Vec<f64>,
    convergence: Vec<f64>,
    auth_loss_detection: Vec<f64>,
    ban_latency: Vec<f64>,
    attempts_before_ban: Vec<f64>,
    auth_fault_since: Option<Duration>,
    counters: BTreeMap<MetricId, f64>,
}

impl Monitor {
    /// A monitor for a run with these hosts (index = layout host index); `attackers` are
    /// the hosts expected to be banned (attackers, and groups with a wrong password): their
    /// IPs must never be listed, and only they may be banned.
    pub fn new(cfg: MonitorConfig, host_ips: Vec<IpAddr>, attackers: &[usize]) -> Self {
        Monitor {
            hosts: vec![HostState::default(); host_ips.len()],
            attacker_ips: attackers.iter().map(|&h| host_ips[h]).collect(),
            host_ips,
            cfg,
            instances: BTreeMap::new(),
            by_addr: BTreeMap::new(),
            auth_incarnation: 0,
            auth_running: false,
            auth_peers: BTreeSet::new(),
            admitted: BTreeSet::new(),
            auth_members: BTreeSet::new(),
            auth_versions: Vec::new(),
            banned: BTreeSet::new(),
            ban_first_attempt: BTreeMap::new(),
            fail_counts: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            deadline_seq: 0,
            pending: BTreeMap::new(),
            reported: BTreeSet::new(),
            findings: Vec::new(),
            floods: Vec::new(),
            dist_losses: Vec::new(),
            join_latency: Vec::new(),
            honest_flood_latency: Vec::new(),
            detection: Vec::new(),
            convergence: Vec::new(),
            auth_loss_detection: Vec::new(),
            ban_latency: Vec::new(),
            attempts_before_ban: Vec::new(),
            auth_fault_since: None,
            counters: BTreeMap::new(),
        }
    }

    fn count(&mut self, id: MetricId, by: f64) {
        *self.counters.entry(id).or_default() += by;
    }

    /// Records a finding once per (check, key).
    fn find(&mut self, severity: Severity, check: &'static str, key: String, at: Duration, detail: String) {
        if self.reported.insert((check, key)) {
            self.findings.push(Finding { severity, check, at, detail });
        }
    }

    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    // ---------------------------------------------------------------- truth: the world

    /// A ban flood's window (for the honest-admission metric).
    pub fn flood_window(&mut self, start: Duration, end: Duration) {
        self.floods.push((start, end));
    }

    /// Counts a scheduled fault, and whether it was applied.
    pub fn fault(&mut self, fired: bool) {
        self.count(MetricId::FaultsScheduled, 1.0);
        if fired {
            self.count(MetricId::FaultsFired, 1.0);
        }
    }

    /// `host`'s link to the authenticator became impaired (for the authenticator's host:
    /// every member's link).
    pub fn impaired(&mut self, t: Duration, host: usize, kind: Impairment, id: u64) {
        self.hosts[host].active.insert((kind, id), t);
        if host == 0 && kind != Impairment::Loss {
            self.auth_fault_since.get_or_insert(t);
        }
        if kind == Impairment::Loss {
            return; // which streams a loss kills is unknown: no deadlines, no detection samples
        }
        let affected: Vec<u64> = self
            .instances
            .iter()
            .filter(|(_, i)| i.ended.is_none() && (host == 0 || i.host == host))
            .map(|(k, _)| *k)
            .collect();
        for k in affected {
            let inst = self.instances.get_mut(&k).unwrap();
            if inst.stopped_at.is_none() {
                inst.stopped_at = Some(t);
            }
            let listed = inst.addr.is_some_and(|a| self.auth_members.contains(&a));
            if listed && !(host == 0 && kind == Impairment::Crash) {
                self.deadline_seq += 1;
                self.deadlines.insert(
                    (t + self.cfg.stale_bound(), self.deadline_seq),
                    Deadline { inst: k, kind, id, since: t, auth_incarnation: self.auth_incarnation },
                );
            }
            for p in self.pending.values_mut() {
                p.waiting.remove(&k);
            }
        }
        self.complete_pending(t);
    }

    /// The impairment `(kind, id)` of `host` ended.
    pub fn restored(&mut self, t: Duration, host: usize, kind: Impairment, id: u64) {
        if let Some(since) = self.hosts[host].active.remove(&(kind, id)) {
            self.hosts[host].past.push((since, t));
        }
        if host == 0 && self.hosts[0].active.keys().all(|(k, _)| *k == Impairment::Loss) {
            self.auth_fault_since = None;
        }
    }

    /// The authenticator's host crashed: its list is gone.
    pub fn auth_crashed(&mut self, t: Duration) {
        self.auth_running = false;
        self.auth_members.clear();
        self.pending.clear();
        self.impaired(t, 0, Impairment::Crash, u64::MAX);
    }

    /// The authenticator's host restarted (the new incarnation reports [`Monitor::auth_started`]).
    pub fn auth_restarted(&mut self, t: Duration) {
        self.restored(t, 0, Impairment::Crash, u64::MAX);
    }

    /// Whether `host` (or the authenticator) was impaired at any time in `[a, b]`.
    fn impaired_between(&self, host: usize, a: Duration, b: Duration) -> bool {
        self.cfg.global_loss || self.hosts[host].impaired_between(a, b) || self.hosts[0].impaired_between(a, b)
    }

    fn healthy_now(&self, host: usize) -> bool {
        !self.cfg.global_loss && !self.hosts[host].impaired_now() && !self.hosts[0].impaired_now()
    }

    // ---------------------------------------------------------------- joiner lifecycle

    /// The runner started join attempt `inst` of joiner slot `joiner` on `host`.
    pub fn join_started(&mut self, t: Duration, inst: u64, joiner: usize, host: usize, rejoin: bool) {
        self.count(MetricId::JoinsAttempted, 1.0);
        if rejoin {
            self.count(MetricId::Rejoins, 1.0);
        }
        self.instances.insert(inst, Instance { joiner, host, honest: true, join_started: t, ..Default::default() });
    }

    /// Join attempt `inst` failed.
    pub fn join_failed(&mut self, t: Duration, inst: u64) {
        self.count(MetricId::JoinsFailed, 1.0);
        if let Some(i) = self.instances.get_mut(&inst) {
            i.ended = Some(t);
        }
    }

    /// Join attempt `inst` completed: the joiner listens at `addr` and got `list`.
    pub fn joined(&mut self, t: Duration, inst: u64, addr: SocketAddr, list: &ListView) {
        self.count(MetricId::JoinsOk, 1.0);
        let Some(i) = self.instances.get_mut(&inst) else { return };
        i.joined_at = Some(t);
        i.addr = Some(addr);
        let lat = (t - i.join_started).as_secs_f64();
        let started = i.join_started;
        self.join_latency.push(lat);
        if self.floods.iter().any(|&(a, b)| started >= a && started <= b) {
            self.honest_flood_latency.push(lat);
        }
        self.by_addr.insert(addr, inst);
        self.joiner_list(t, inst, list);
    }

    /// Joiner `inst`'s distribution connection has local address `local` (its stream's ground
    /// truth is asked for in [`Monitor::judge_distribution_losses`]).
    pub fn dist_connected(&mut self, inst: u64, local: SocketAddr) {
        if let Some(i) = self.instances.get_mut(&inst) {
            i.dist = Some(local);
        }
    }

    /// The runner told instance `inst` to leave.
    pub fn leave_started(&mut self, t: Duration, inst: u64) {
        if let Some(i) = self.instances.get_mut(&inst) {
            i.leaving.get_or_insert(t);
            i.stopped_at.get_or_insert(t);
        }
        for p in self.pending.values_mut() {
            p.waiting.remove(&inst);
        }
        self.complete_pending(t);
    }

    /// Instance `inst` ended (left, lost the authenticator, crashed with its host).
    pub fn ended(&mut self, t: Duration, inst: u64) {
        if let Some(i) = self.instances.get_mut(&inst) {
            i.ended.get_or_insert(t);
            i.stopped_at.get_or_insert(t);
        }
        for p in self.pending.values_mut() {
            p.waiting.remove(&inst);
        }
        self.complete_pending(t);
    }

    /// Joiner `inst` reported the authenticator lost.
    pub fn auth_lost(&mut self, t: Duration, inst: u64) {
        self.count(MetricId::AuthLostReports, 1.0);
        let host = self.instances.get(&inst).map(|i| i.host);
        // Loss windows are excluded: when a loss killed the stream is unknown.
        let own = host.and_then(|h| {
            self.hosts[h].active.iter().filter(|((k, _), _)| *k != Impairment::Loss).map(|(_, t)| *t).min()
        });
        let since = [self.auth_fault_since, own].into_iter().flatten().min();
        if let Some(s) = since {
            self.auth_loss_detection.push((t - s).as_secs_f64());
        }
    }

    /// Joiner `inst` holds a (newer) list.
    pub fn joiner_list(&mut self, t: Duration, inst: u64, list: &ListView) {
        self.count(MetricId::DistMsgsPerChange, 1.0); // normalised in finish()
        self.count(MetricId::DistBytesPerChange, list.bytes as f64);
        let Some(i) = self.instances.get(&inst) else { return };
        let own = i.addr;
        let who = format!("joiner instance {inst}");
        if let (Some(prev), Some(v)) = (i.last_version, list.version)
            && v < prev
        {
            self.find(
                Severity::Safety,
                "view_regressed",
                format!("{inst}:{v}"),
                t,
                format!("{who} received list v{v} after v{prev}"),
            );
        }
        for m in &list.members {
            if self.banned.contains(&m.ip()) || self.attacker_ips.contains(&m.ip()) {
                self.find(
                    Severity::Safety,
                    "banned_member",
                    format!("j:{m}"),
                    t,
                    format!("{who} holds {m}, a banned/attacker IP"),
                );
            }
            if Some(*m) != own && !self.admitted.contains(m) && !self.auth_peers.contains(m) {
                self.find(
                    Severity::Safety,
                    "unknown_member",
                    format!("{m}"),
                    t,
                    format!("{who} holds {m}, never admitted by the authenticator"),
                );
            }
        }
        let i = self.instances.get_mut(&inst).unwrap();
        if let Some(v) = list.version {
            i.last_version = Some(i.last_version.map_or(v, |p| p.max(v)));
            i.version_seen = i.last_version;
            for p in self.pending.range_mut(..=v).map(|(_, p)| p) {
                if p.waiting.remove(&inst) {
                    p.last_receipt = Some(t);
                }
            }
            self.complete_pending(t);
        }
    }

    fn complete_pending(&mut self, _t: Duration) {
        let done: Vec<u64> = self.pending.iter().filter(|(_, p)| p.waiting.is_empty()).map(|(v, _)| *v).collect();
        for v in done {
            let p = self.pending.remove(&v).unwrap();
            if let Some(r) = p.last_receipt {
                self.convergence.push((r - p.published).as_secs_f64());
            }
        }
    }

    // ---------------------------------------------------------------- authenticator

    /// An authenticator incarnation started; its own peer address is `peer`.
    pub fn auth_started(&mut self, _t: Duration, peer: SocketAddr) {
        self.auth_incarnation += 1;
        self.auth_running = true;
        self.auth_peers.insert(peer);
        self.auth_members.clear();
        self.auth_members.insert(peer);
    }

    /// The authenticator admitted `member` (connection from `source`).
    pub fn member_joined(&mut self, t: Duration, member: SocketAddr, source: IpAddr) {
        self.admitted.insert(member);
        if self.banned.contains(&source) || self.attacker_ips.contains(&source) {
            self.find(
                Severity::Safety,
                "banned_member",
                format!("a:{member}"),
                t,
                format!("admitted {member} from banned/attacker IP {source}"),
            );
        }
    }

    /// The authenticator published `list`.
    pub fn auth_list(&mut self, t: Duration, list: &ListView) {
        self.count(MetricId::ListChanges, 1.0);
        for m in &list.members {
            if self.banned.contains(&m.ip()) || self.attacker_ips.contains(&m.ip()) {
                self.find(
                    Severity::Safety,
                    "banned_member",
                    format!("a:{m}"),
                    t,
                    format!("authenticator list v{:?} holds {m}, a banned/attacker IP", list.version),
                );
            }
        }
        self.auth_members = list.members.iter().copied().collect();
        self.auth_versions.push((t, list.version));
        if let Some(v) = list.version {
            let waiting: BTreeSet<u64> = self
                .instances
                .iter()
                .filter(|(_, i)| {
                    i.joined_at.is_some()
                        && i.leaving.is_none()
                        && i.ended.is_none()
                        && i.version_seen.is_none_or(|s| s < v)
                        && i.addr.is_some_and(|a| list.members.contains(&a))
                })
                .map(|(k, _)| *k)
                .filter(|k| self.healthy_now(self.instances[k].host))
                .collect();
            if !waiting.is_empty() {
                self.pending.insert(v, Pending { published: t, waiting, last_receipt: None });
            }
        }
    }

    /// The authenticator removed `member`.
    pub fn member_removed(&mut self, t: Duration, member: SocketAddr, reason: Removal) {
        if matches!(reason, Removal::HeartbeatTimeout | Removal::Stalled | Removal::DistributionLost) {
            self.count(MetricId::TimeoutRemovals, 1.0);
        }
        if reason == Removal::DistributionLost {
            self.count(MetricId::DistLostRemovals, 1.0);
        }
        self.auth_members.remove(&member);
        let Some(&inst) = self.by_addr.get(&member) else { return };
        let i = self.instances[&inst].clone();
        if let Some(s) = i.stopped_at {
            self.detection.push((t - s).as_secs_f64());
        }
        let joined = i.joined_at.unwrap_or(i.join_started);
        let gone = i.leaving.is_some() || i.ended.is_some_and(|e| e <= t);
        if let (Removal::DistributionLost, Some(dist), true, false) = (reason, i.dist, i.honest, gone) {
            // Whether that stream really died is known only once nothing is in flight.
            self.dist_losses.push(DistLoss { at: t, member, dist, joined });
            return;
        }
        if i.honest && !gone && !self.impaired_between(i.host, joined, t) {
            self.count(MetricId::FalseRemovals, 1.0);
            self.find(
                Severity::Safety,
                "false_removal",
                format!("{member}"),
                t,
                format!(
                    "{member} removed ({reason:?}) though it and the authenticator had no fault since it joined at {}",
                    Dur(joined)
                ),
            );
        }
    }

    /// The authenticator counted a wrong password from `ip` (`attempts` so far).
    pub fn auth_failed(&mut self, _t: Duration, ip: IpAddr, attempts: u32) {
        if !self.banned.contains(&ip) {
            let c = self.fail_counts.entry(ip).or_default();
            *c = (*c).max(attempts);
        }
    }

    /// The authenticator banned `ip`.
    pub fn banned(&mut self, t: Duration, ip: IpAddr) {
        if !self.banned.insert(ip) {
            return;
        }
        self.count(MetricId::BannedIps, 1.0);
        if let Some(first) = self.ban_first_attempt.get(&ip) {
            self.ban_latency.push((t - *first).as_secs_f64());
        }
        self.attempts_before_ban.push(f64::from(self.fail_counts.get(&ip).copied().unwrap_or(0)));
        if !self.attacker_ips.contains(&ip) {
            let host = self.host_ips.iter().position(|h| *h == ip);
            self.find(
                Severity::Safety,
                "honest_banned",
                format!("{ip}"),
                t,
                format!("{ip} (host {host:?}) banned though it is not an attacker"),
            );
        }
    }

    // ---------------------------------------------------------------- attackers and traffic

    /// An attacker on `ip` started a password attempt.
    pub fn attempt_started(&mut self, t: Duration, ip: IpAddr) {
        self.ban_first_attempt.entry(ip).or_insert(t);
    }

    /// An attacker's attempt ended; `admitted` if the join succeeded.
    pub fn attempt_result(&mut self, t: Duration, ip: IpAddr, correct: bool, admitted: bool) {
        if admitted && (self.banned.contains(&ip) || !correct) {
            self.find(
                Severity::Safety,
                "banned_admitted",
                format!("{ip}"),
                t,
                format!("attacker {ip} admitted (correct password: {correct}) after its ban"),
            );
        }
    }

    /// A broadcast finished.
    pub fn broadcast(&mut self, sent: usize, delivered: usize) {
        self.count(MetricId::MsgsSent, sent as f64);
        self.count(MetricId::MsgsDelivered, delivered as f64);
        self.count(MetricId::MsgsLost, sent.saturating_sub(delivered) as f64);
    }

    /// Protocol events consumed.
    pub fn events(&mut self, n: u64) {
        self.count(MetricId::EventsProcessed, n as f64);
    }

    /// Evidence counters from the network (segments dropped/held).
    pub fn network_evidence(&mut self, dropped: u64, held: u64) {
        self.count(MetricId::SegmentsDropped, dropped as f64);
        self.count(MetricId::SegmentsHeld, held as f64);
    }

    /// Judges every `DistributionLost` removal by the ground truth: `lost(dist)` says whether
    /// the stream to that distribution socket lost a segment (`None`: unknown). A removal of a
    /// member whose distribution stream was intact is a false removal, whatever faults it
    /// lived through; with no ground truth, the usual fault-window judgment applies. Call once
    /// the removed streams are quiet (at the end of the run), before [`Monitor::finish`].
    pub fn judge_distribution_losses(&mut self, lost: impl Fn(SocketAddr) -> Option<bool>) {
        for d in std::mem::take(&mut self.dist_losses) {
            let host = self.by_addr.get(&d.member).and_then(|k| self.instances.get(k)).map(|i| i.host);
            let intact = match lost(d.dist) {
                Some(l) => {
                    if l {
                        self.count(MetricId::DistStreamsLost, 1.0);
                    }
                    !l
                }
                None => host.is_some_and(|h| !self.impaired_between(h, d.joined, d.at)),
            };
            if intact {
                self.count(MetricId::FalseRemovals, 1.0);
                self.find(
                    Severity::Safety,
                    "false_removal",
                    format!("{}", d.member),
                    d.at,
                    format!(
                        "{} removed (DistributionLost) though its distribution stream ({}) never lost a segment",
                        d.member, d.dist
                    ),
                );
            }
        }
    }

    // ---------------------------------------------------------------- time

    /// Evaluates every stale-member deadline due at `now`.
    pub fn tick(&mut self, now: Duration) {
        while let Some((&key, _)) = self.deadlines.first_key_value() {
            if key.0 > now {
                break;
            }
            let d = self.deadlines.remove(&key).unwrap();
            if d.auth_incarnation != self.auth_incarnation || !self.auth_running {
                continue; // that authenticator is gone
            }
            let host = self.instances[&d.inst].host;
            if d.kind == Impairment::Hold {
                let short = self.hosts[host]
                    .past
                    .iter()
                    .chain(self.hosts[0].past.iter())
                    .any(|&(s, e)| s == d.since && e < d.since + self.cfg.heartbeat_timeout);
                if short {
                    continue; // released before the timeout: late answers are answers
                }
            }
            let _ = d.id;
            if let Some(addr) = self.instances[&d.inst].addr
                && self.auth_members.contains(&addr)
            {
                self.find(
                        Severity::Safety,
                        "stale_member",
                        format!("{addr}"),
                        now,
                        format!(
                            "{addr} still listed {} after its host stopped answering ({:?} at {}); bound = heartbeat_timeout + interval + slack",
                            Dur(now - d.since),
                            d.kind,
                            Dur(d.since)
                        ),
                    );
            }
        }
    }

    /// Final checks at `end`; returns the metrics and every finding.
    pub fn finish(mut self, end: Duration) -> (Metrics, Vec<Finding>) {
        self.tick(end);
        self.judge_distribution_losses(|_| None);
        let mut m = Metrics::new();
        if self.cfg.settle > Duration::ZERO {
            let cutoff = end.saturating_sub(self.cfg.convergence_grace());
            let reference = self.auth_versions.iter().rev().find(|(t, _)| *t <= cutoff).and_then(|(_, v)| *v);
            let mut ok = self.auth_running;
            if !self.auth_running {
                self.find(
                    Severity::Liveness,
                    "not_converged",
                    "auth".into(),
                    end,
                    "the authenticator is not running at the end".into(),
                );
            }
            let live: Vec<(u64, Instance)> = self
                .instances
                .iter()
                .filter(|(_, i)| i.joined_at.is_some_and(|j| j <= cutoff) && i.leaving.is_none() && i.ended.is_none())
                .map(|(k, i)| (*k, i.clone()))
                .collect();
            for (k, i) in live {
                if !self.healthy_now(i.host) {
                    continue;
                }
                let addr = i.addr.expect("joined");
                if !self.auth_members.contains(&addr) {
                    ok = false;
                    self.find(
                        Severity::Liveness,
                        "not_converged",
                        format!("m{k}"),
                        end,
                        format!(
                            "live joiner instance {k} (slot {}, {addr}) is not in the authenticator's list",
                            i.joiner
                        ),
                    );
                }
                if let Some(v) = reference
                    && i.last_version.is_none_or(|have| have < v)
                {
                    ok = false;
                    self.find(
                            Severity::Liveness,
                            "not_converged",
                            format!("v{k}"),
                            end,
                            format!("live joiner instance {k} (slot {}, {addr}) holds v{:?}, the authenticator published v{v} by {}", i.joiner, i.last_version, Dur(cutoff)),
                        );
                }
            }
            m.set(MetricId::Converged, if ok { 1.0 } else { 0.0 });
        }
        let changes = self.counters.get(&MetricId::ListChanges).copied().unwrap_or(0.0);
        for (id, v) in &self.counters {
            let v = match id {
                MetricId::DistMsgsPerChange | MetricId::DistBytesPerChange => {
                    if changes > 0.0 {
                        v / changes
                    } else {
                        continue;
                    }
                }
                _ => *v,
            };
            m.set(*id, v);
        }
        for id in [
            MetricId::JoinsAttempted,
            MetricId::JoinsOk,
            MetricId::JoinsFailed,
            MetricId::FalseRemovals,
            MetricId::MsgsSent,
            MetricId::MsgsDelivered,
            MetricId::MsgsLost,
            MetricId::BannedIps,
            MetricId::AuthLostReports,
            MetricId::FaultsScheduled,
            MetricId::FaultsFired,
            MetricId::TimeoutRemovals,
            MetricId::DistLostRemovals,
            MetricId::DistStreamsLost,
            MetricId::Rejoins,
            MetricId::ListChanges,
        ] {
            if m.get(id).is_none() {
                m.set(id, 0.0);
            }
        }
        m.set_distribution(
            &self.join_latency,
            Some(MetricId::JoinLatencyP50),
            Some(MetricId::JoinLatencyP90),
            Some(MetricId::JoinLatencyMax),
        );
        m.set_distribution(
            &self.detection,
            Some(MetricId::DetectionLatencyP50),
            None,
            Some(MetricId::DetectionLatencyMax),
        );
        m.set_distribution(
            &self.convergence,
            Some(MetricId::ConvergenceP50),
            Some(MetricId::ConvergenceP90),
            Some(MetricId::ConvergenceMax),
        );
        m.set_distribution(&self.ban_latency, None, None, Some(MetricId::BanLatencyMax));
        m.set_distribution(&self.attempts_before_ban, None, None, Some(MetricId::AttemptsBeforeBanMax));
        m.set_distribution(&self.honest_flood_latency, None, None, Some(MetricId::HonestAdmitDuringFloodMax));
        m.set_distribution(&self.auth_loss_detection, None, None, Some(MetricId::AuthLossDetectionMax));
        (m, self.findings)
    }
}

#[cfg(test)]
mod tests;
