//! The [`Monitor`]: the state every checker shares, its configuration, and the run's metrics.
//!
//! The state is one struct because the checks read each other's facts (a removal is judged
//! against the fault history, convergence against the lists each joiner received); the
//! methods that feed and judge it live with their check, in the sibling modules, and use
//! these `pub(super)` fields. Here: construction, finding and counter bookkeeping, the plain
//! counters (faults, broadcasts, events, network evidence) and [`Monitor::finish`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::attacks::AttackState;
use super::broadcasts::BroadcastState;
use super::ghosts::GhostState;
use super::impairments::HostState;
use super::liveness::Pending;
use super::names::NameState;
use super::removals::{Deadline, DistLoss};
use super::views::ViewState;
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

#[derive(Clone, Debug, Default)]
/// One join attempt of a joiner slot (an instance), from its start to its end.
pub(super) struct Instance {
    pub(super) joiner: usize,
    pub(super) host: usize,
    pub(super) honest: bool,
    pub(super) join_started: Duration,
    pub(super) joined_at: Option<Duration>,
    pub(super) addr: Option<SocketAddr>,
    pub(super) leaving: Option<Duration>,
    pub(super) ended: Option<Duration>,
    pub(super) stopped_at: Option<Duration>,
    pub(super) last_version: Option<u64>,
    pub(super) version_seen: Option<u64>,
    /// Local address of its distribution connection (where the list writes go).
    pub(super) dist: Option<SocketAddr>,
    /// The authenticator incarnation it joined (its lists are numbered by that one).
    pub(super) incarnation: u64,
}

/// Collects truth and observations; produces findings and metrics.
pub struct Monitor {
    pub(super) cfg: MonitorConfig,
    pub(super) hosts: Vec<HostState>,
    pub(super) host_ips: Vec<IpAddr>,
    pub(super) attacker_ips: BTreeSet<IpAddr>,
    pub(super) instances: BTreeMap<u64, Instance>,
    pub(super) by_addr: BTreeMap<SocketAddr, u64>,
    // authenticator
    pub(super) auth_incarnation: u64,
    pub(super) auth_running: bool,
    pub(super) auth_peers: BTreeSet<SocketAddr>,
    pub(super) admitted: BTreeSet<SocketAddr>,
    pub(super) auth_members: BTreeSet<SocketAddr>,
    pub(super) auth_versions: Vec<(Duration, Option<u64>)>,
    pub(super) banned: BTreeSet<IpAddr>,
    pub(super) ban_first_attempt: BTreeMap<IpAddr, Duration>,
    pub(super) ban_at: BTreeMap<IpAddr, Duration>,
    pub(super) password_refusals: BTreeMap<IpAddr, Vec<Duration>>,
    // checkers' state
    pub(super) deadlines: BTreeMap<(Duration, u64), Deadline>,
    pub(super) deadline_seq: u64,
    pub(super) pending: BTreeMap<u64, Pending>,
    pub(super) reported: BTreeSet<(&'static str, String)>,
    pub(super) findings: Vec<Finding>,
    pub(super) floods: Vec<(Duration, Duration)>,
    pub(super) dist_losses: Vec<DistLoss>,
    pub(super) attacks: AttackState,
    pub(super) ghosts: GhostState,
    pub(super) views: ViewState,
    pub(super) names: NameState,
    pub(super) broadcasts: BroadcastState,
    /// Calls of [`Monitor::find`], reported or not (a check that found something, even a
    /// repeat, moves it).
    pub(super) finds: u64,
    // samples and counters
    pub(super) join_latency: Vec<f64>,
    pub(super) honest_flood_latency: Vec<f64>,
    pub(super) detection: Vec<f64>,
    pub(super) convergence: Vec<f64>,
    pub(super) auth_loss_detection: Vec<f64>,
    pub(super) ban_latency: Vec<f64>,
    pub(super) attempts_before_ban: Vec<f64>,
    pub(super) auth_fault_since: Option<Duration>,
    pub(super) counters: BTreeMap<MetricId, f64>,
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
            ban_at: BTreeMap::new(),
            password_refusals: BTreeMap::new(),
            deadlines: BTreeMap::new(),
            deadline_seq: 0,
            pending: BTreeMap::new(),
            reported: BTreeSet::new(),
            findings: Vec::new(),
            floods: Vec::new(),
            dist_losses: Vec::new(),
            attacks: AttackState::default(),
            ghosts: GhostState::default(),
            views: ViewState::default(),
            names: NameState::default(),
            broadcasts: BroadcastState::default(),
            finds: 0,
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

    pub(super) fn count(&mut self, id: MetricId, by: f64) {
        *self.counters.entry(id).or_default() += by;
    }

    /// Records a finding once per (check, key).
    pub(super) fn find(&mut self, severity: Severity, check: &'static str, key: String, at: Duration, detail: String) {
        self.finds += 1;
        if self.reported.insert((check, key)) {
            self.findings.push(Finding { severity, check, at, detail });
        }
    }

    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    // ---------------------------------------------------------------- plain counters

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

    /// What the authenticator's distribution writers sent over the run (every incarnation).
    pub fn dist_stats(&mut self, s: &pyile::DistStats) {
        self.count(MetricId::DistDeltas, s.deltas as f64);
        self.count(MetricId::DistDeltasMerged, s.merged as f64);
        self.count(MetricId::DistDeltaBytes, s.delta_bytes as f64);
        self.count(MetricId::DistSnapshotsFirst, s.snapshots_first as f64);
        self.count(MetricId::DistSnapshotsBehind, s.snapshots_behind as f64);
        self.count(MetricId::DistSnapshotsReported, s.snapshots_reported as f64);
        self.count(MetricId::DistSnapshotBytes, s.snapshot_bytes as f64);
    }

    // ---------------------------------------------------------------- the end

    /// Final checks at `end`; returns the metrics and every finding.
    pub fn finish(mut self, end: Duration) -> (Metrics, Vec<Finding>) {
        self.tick(end);
        self.judge_distribution_losses(|_| None);
        let attack_metrics = self.finish_attacks(end);
        self.finish_ghosts(end);
        self.finish_views(end);
        self.finish_bans();
        self.finish_broadcasts();
        let mut m = Metrics::new();
        if self.cfg.settle > Duration::ZERO {
            let ok = self.check_convergence(end);
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
            MetricId::JoinsFailedInFaults,
            MetricId::JoinsCutByCrash,
            MetricId::FalseRemovals,
            MetricId::MsgsSent,
            MetricId::MsgsDelivered,
            MetricId::MsgsLost,
            MetricId::MsgsRetries,
            MetricId::MsgsDuplicatesDropped,
            MetricId::BroadcastDuplicatesDelivered,
            MetricId::BroadcastLosses,
            MetricId::BroadcastCopiesChecked,
            MetricId::BannedIps,
            MetricId::AuthLostReports,
            MetricId::FaultsScheduled,
            MetricId::FaultsFired,
            MetricId::TimeoutRemovals,
            MetricId::DistLostRemovals,
            MetricId::DistStreamsLost,
            MetricId::Rejoins,
            MetricId::ListChanges,
            MetricId::AliasesRefused,
            MetricId::LeavesGraceful,
            MetricId::Announcements,
            MetricId::AnnouncementsSkipped,
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
        for (id, v) in attack_metrics {
            m.set(id, v);
        }
        m.set_distribution(self.attack_close_latency(), None, None, Some(MetricId::AttackCloseLatencyMax));
        m.set_distribution(&self.attacks.honest_latency, None, None, Some(MetricId::HonestAdmitDuringAttackMax));
        (m, self.findings)
    }
}
