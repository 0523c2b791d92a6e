//! The catalogue of per-run metrics: their stable names, units, and which direction is worse.
//!
//! Every metric a run can produce is declared here once, in [`MetricId::ALL`]. The name is
//! the CSV column name (stable: baselines and CI compare by it), the unit says how to read and
//! print it, and [`Better`] with the default tolerances says how `sim compare` judges a change.
//! Scenario `[[expect]]` entries name metrics from this table, so a typo is caught at parse
//! time with its line number. Keeping the catalogue separate from the runner means the report,
//! compare and expectation code is complete and tested before the protocol is wired in.
//!
//! All times are in **simulated** seconds, except `wall_seconds` and `sim_wall_ratio`; a
//! metric in seconds says so in its name (`join_latency_p50_s`), as loadgen's `_us` columns do.

use std::collections::BTreeMap;
use std::fmt;

/// Which part of the printed table a metric belongs to, so ~50 rows read as a few short
/// blocks: what happened, how fast, what it cost, the faults and the attacks, the run itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Joins, convergence, removals, messages, checker findings: what happened.
    Outcome,
    /// Latencies (simulated time).
    Latency,
    /// Distribution traffic and list changes.
    Cost,
    /// Bans and faults, and the network's evidence of them.
    Faults,
    /// Hostile traffic (runs with attack hosts).
    Attacks,
    /// The run itself: size, events, wall time.
    Run,
}

impl Group {
    /// The block's heading in the printed table.
    pub fn title(self) -> &'static str {
        match self {
            Group::Outcome => "outcome",
            Group::Latency => "latency (simulated time)",
            Group::Cost => "cost",
            Group::Faults => "bans and faults",
            Group::Attacks => "attacks",
            Group::Run => "run",
        }
    }
}

impl MetricId {
    /// The table block this metric is printed in.
    pub fn group(self) -> Group {
        use MetricId::*;
        match self {
            JoinsAttempted
            | JoinsOk
            | JoinsFailed
            | JoinsFailedInFaults
            | JoinsCutByCrash
            | Converged
            | FalseRemovals
            | AuthLostReports
            | Rejoins
            | MsgsSent
            | MsgsDelivered
            | MsgsLost
            | MsgsRetries
            | MsgsDuplicatesDropped
            | BroadcastDuplicatesDelivered
            | BroadcastLosses
            | BroadcastCopiesChecked
            | AliasesRefused
            | LeavesGraceful
            | Announcements
            | AnnouncementsSkipped
            | SafetyViolations
            | LivenessViolations => Group::Outcome,
            JoinLatencyP50 | JoinLatencyP90 | JoinLatencyMax | DetectionLatencyP50 | DetectionLatencyMax
            | ConvergenceP50 | ConvergenceP90 | ConvergenceMax | AuthLossDetectionMax => Group::Latency,
            ListChanges
            | DistMsgsPerChange
            | DistBytesPerChange
            | DistDeltas
            | DistDeltasMerged
            | DistDeltaBytes
            | DistSnapshotsFirst
            | DistSnapshotsBehind
            | DistSnapshotsReported
            | DistSnapshotBytes
            | EventsProcessed => Group::Cost,
            BannedIps
            | BanLatencyMax
            | AttemptsBeforeBanMax
            | HonestAdmitDuringFloodMax
            | FaultsScheduled
            | FaultsFired
            | SegmentsDropped
            | SegmentsHeld
            | TimeoutRemovals
            | DistLostRemovals
            | DistStreamsLost => Group::Faults,
            AttackConns
            | AttackConnsClosedByAuth
            | AttackConnsOpenAtEnd
            | AttackCloseLatencyMax
            | AttackHandshakeFailures
            | AttackAdmissions
            | HonestEvictions
            | ChatterLists
            | ChatterListBytes
            | ChatterExcessLists
            | HonestAdmitDuringAttackMax
            | ImpostorExchanges
            | ImpostorPasswordsCaptured
            | ImpostorRefused => Group::Attacks,
            Hosts | Joiners | SimSeconds | WallSeconds | SimWallRatio => Group::Run,
        }
    }
}

/// How a metric's value is read and printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Simulated seconds (printed as ms/s/m).
    Seconds,
    /// A count of things.
    Count,
    /// Bytes.
    Bytes,
    /// A dimensionless ratio.
    Ratio,
    /// 0 or 1.
    Flag,
}

/// Which direction of change is a regression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Smaller is better (latencies, violations, losses).
    Lower,
    /// Larger is better (convergence flag, throughput).
    Higher,
    /// Informational: describes the run (counts of events, hosts) or depends on the machine
    /// (wall time); `sim compare` never fails on it.
    Info,
}

/// One metric's definition.
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    /// The id.
    pub id: MetricId,
    /// Stable column name.
    pub name: &'static str,
    /// Unit.
    pub unit: Unit,
    /// Which direction is a regression.
    pub better: Better,
    /// Default relative tolerance for `sim compare` (0.2 = 20 % worse is still fine).
    pub rel_tol: f64,
    /// Default absolute slack for `sim compare`, in the metric's unit.
    pub abs_tol: f64,
    /// One line for humans.
    pub doc: &'static str,
}

macro_rules! metrics {
    ($( $id:ident => $name:literal, $unit:ident, $better:ident, $rel:expr, $abs:expr, $doc:literal; )*) => {
        /// Identifies one metric of [`MetricId::ALL`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum MetricId { $( #[doc = $doc] $id, )* }

        impl MetricId {
            /// Every metric, in CSV column order.
            pub const ALL: &'static [MetricId] = &[ $( MetricId::$id, )* ];

            /// This metric's definition.
            pub fn def(self) -> &'static MetricDef {
                &DEFS[self as usize]
            }
        }

        static DEFS: &[MetricDef] = &[ $( MetricDef {
            id: MetricId::$id, name: $name, unit: Unit::$unit, better: Better::$better,
            rel_tol: $rel, abs_tol: $abs, doc: $doc,
        }, )* ];
    };
}

metrics! {
    Hosts => "hosts", Count, Info, 0.0, 0.0, "simulated hosts (authenticator + joiner hosts + attacker hosts)";
    Joiners => "joiners", Count, Info, 0.0, 0.0, "joiners declared by the scenario";
    JoinsAttempted => "joins_attempted", Count, Info, 0.0, 0.0, "join attempts started";
    JoinsOk => "joins_ok", Count, Info, 0.0, 0.0, "joins that completed the whole handshake";
    JoinsFailed => "joins_failed", Count, Lower, 0.1, 1.0, "joins that ended in an error (bans of attackers not included)";
    JoinsFailedInFaults => "joins_failed_in_faults", Count, Info, 0.0, 0.0, "of joins_failed, those during which a fault (partition, hold, loss, crash) impaired the joiner's host or the authenticator: expected";
    JoinsCutByCrash => "joins_cut_by_crash", Count, Info, 0.0, 0.0, "join attempts still in their handshake when their host crashed";
    JoinLatencyP50 => "join_latency_p50_s", Seconds, Lower, 0.1, 0.002, "join latency (connect to first list), median";
    JoinLatencyP90 => "join_latency_p90_s", Seconds, Lower, 0.1, 0.002, "join latency, 90th percentile";
    JoinLatencyMax => "join_latency_max_s", Seconds, Lower, 0.25, 0.02, "join latency, worst";
    DetectionLatencyP50 => "detection_latency_p50_s", Seconds, Lower, 0.1, 0.25, "fault (crash/partition/leave) to removal by the authenticator, median";
    DetectionLatencyMax => "detection_latency_max_s", Seconds, Lower, 0.1, 0.25, "fault to removal, worst";
    ConvergenceP50 => "convergence_p50_s", Seconds, Lower, 0.1, 0.002, "list change to every live joiner holding it, median";
    ConvergenceP90 => "convergence_p90_s", Seconds, Lower, 0.1, 0.002, "list change to every live joiner holding it, 90th percentile";
    ConvergenceMax => "convergence_max_s", Seconds, Lower, 0.25, 0.02, "list change to every live joiner holding it, worst";
    Converged => "converged", Flag, Higher, 0.0, 0.0, "1 if every live joiner held the authenticator's list at the end of the quiet period";
    FalseRemovals => "false_removals", Count, Lower, 0.0, 0.0, "honest members removed although they kept answering";
    AuthLostReports => "auth_lost_reports", Count, Info, 0.0, 0.0, "joiners that reported the loss of the authenticator";
    AuthLossDetectionMax => "auth_loss_detection_max_s", Seconds, Lower, 0.1, 0.25, "authenticator fault to a joiner reporting the loss, worst";
    Rejoins => "rejoins", Count, Info, 0.0, 0.0, "joins started by groups' rejoin_after policy";
    ListChanges => "list_changes", Count, Info, 0.0, 0.0, "member lists published by the authenticator";
    DistMsgsPerChange => "dist_msgs_per_change", Ratio, Lower, 0.1, 0.1, "member-list updates joiners received and applied (newer than the one they held) per list change: lists superseded before they were written, and stale ones a joiner drops, are not counted, and deltas read together (written back to back) count once, as the one update a joiner reports for them";
    DistBytesPerChange => "dist_bytes_per_change", Bytes, Lower, 0.1, 32.0, "bytes of the lists joiners received and applied, per list change";
    DistDeltas => "dist_deltas", Count, Info, 0.0, 0.0, "deltas the authenticator wrote to protocol-2 members (each version's delta once per member: a writer behind sends the ones it missed back to back)";
    DistDeltasMerged => "dist_deltas_merged", Count, Info, 0.0, 0.0, "writes that carried several deltas back to back (a writer behind, or a burst within one distribution interval)";
    DistDeltaBytes => "dist_delta_bytes", Bytes, Lower, 0.1, 4096.0, "bytes of those deltas";
    DistSnapshotsFirst => "dist_snapshots_first", Count, Info, 0.0, 0.0, "whole lists written to protocol-2 members as their first list on a new distribution connection (0 since their handshake sends a committed list)";
    DistSnapshotsBehind => "dist_snapshots_behind", Count, Lower, 0.0, 2.0, "whole lists written to protocol-2 members whose missed deltas had left the authenticator's history";
    DistSnapshotsReported => "dist_snapshots_reported", Count, Lower, 0.0, 2.0, "whole lists written to protocol-2 members whose heartbeat answers reported a version written to them long before (a missed or refused delta)";
    DistSnapshotBytes => "dist_snapshot_bytes", Bytes, Lower, 0.1, 4096.0, "bytes of the whole lists written to protocol-2 members";
    AliasesRefused => "aliases_refused", Count, Info, 0.0, 0.0, "joins refused with alias_taken (a live member or a handshake in progress held the alias)";
    LeavesGraceful => "leaves_graceful", Count, Info, 0.0, 0.0, "members removed because they said they were leaving (reason left)";
    Announcements => "announcements", Count, Info, 0.0, 0.0, "joins and leaves announced to protocol-2 members (PeerJoined and PeerLeft events, all members)";
    AnnouncementsSkipped => "announcements_skipped", Count, Lower, 0.0, 2.0, "whole lists that made a protocol-2 member skip announcements (its deltas had left the history, or it missed one)";
    BannedIps => "banned_ips", Count, Info, 0.0, 0.0, "IPs the authenticator banned";
    BanLatencyMax => "ban_latency_max_s", Seconds, Lower, 0.15, 0.05, "first wrong attempt of an IP to its ban, worst";
    AttemptsBeforeBanMax => "attempts_before_ban_max", Count, Lower, 0.0, 0.0, "wrong-password attempts an IP made (refusals it received, counted on its side) before it was banned, worst";
    HonestAdmitDuringFloodMax => "honest_admit_during_flood_max_s", Seconds, Lower, 0.2, 0.02, "join latency of honest joiners during a ban flood, worst";
    MsgsSent => "msgs_sent", Count, Info, 0.0, 0.0, "chat messages sent (a broadcast counts once per recipient)";
    MsgsDelivered => "msgs_delivered", Count, Info, 0.0, 0.0, "chat messages echoed by their recipient";
    MsgsLost => "msgs_lost", Count, Lower, 0.25, 2.0, "chat messages not delivered";
    MsgsRetries => "msgs_retries", Count, Info, 0.0, 0.0, "retries of unconfirmed chat messages (protocol-2 senders, to receivers known to drop duplicates)";
    MsgsDuplicatesDropped => "msgs_duplicates_dropped", Count, Info, 0.0, 0.0, "chat message copies receivers' duplicate filters dropped (an id seen before)";
    BroadcastDuplicatesDelivered => "broadcast_duplicates_delivered", Count, Lower, 0.0, 0.0, "chat messages a receiver delivered more than once (same sender id): must be 0";
    BroadcastLosses => "broadcast_losses", Count, Lower, 0.25, 2.0, "per broadcast, members of the sender's list that were members throughout and never delivered it";
    BroadcastCopiesChecked => "broadcast_copies_checked", Count, Info, 0.0, 0.0, "(broadcast, member throughout) pairs judged for losses";
    FaultsScheduled => "faults_scheduled", Count, Info, 0.0, 0.0, "faults the timeline scheduled";
    FaultsFired => "faults_fired", Count, Info, 0.0, 0.0, "scheduled faults that were applied to the simulated network";
    SegmentsDropped => "segments_dropped", Count, Info, 0.0, 0.0, "evidence: segments dropped by partitions or loss (turmoil's Drop)";
    SegmentsHeld => "segments_held", Count, Info, 0.0, 0.0, "evidence: segments held by holds";
    TimeoutRemovals => "timeout_removals", Count, Info, 0.0, 0.0, "evidence: members removed by heartbeat timeout or stalled distribution (silent faults bit)";
    DistLostRemovals => "dist_lost_removals", Count, Info, 0.0, 0.0, "members removed because their heartbeat answers showed a dead distribution stream";
    DistStreamsLost => "dist_streams_lost", Count, Info, 0.0, 0.0, "evidence: of those, the removals whose distribution stream really lost a segment (network ground truth)";
    AttackConns => "attack_conns", Count, Info, 0.0, 0.0, "hostile connections opened by attack hosts";
    AttackConnsClosedByAuth => "attack_conns_closed_by_auth", Count, Info, 0.0, 0.0, "hostile connections the authenticator closed (or refused)";
    AttackConnsOpenAtEnd => "attack_conns_open_at_end", Count, Lower, 0.0, 0.0, "hostile connections still open when the run ended (the authenticator never gave up on them)";
    AttackCloseLatencyMax => "attack_close_latency_max_s", Seconds, Lower, 0.1, 0.25, "hostile connection opened to the authenticator closing it, worst (members excluded)";
    AttackHandshakeFailures => "attack_handshake_failures", Count, Info, 0.0, 0.0, "handshakes from attack hosts the authenticator gave up (HandshakeFailed)";
    AttackAdmissions => "attack_admissions", Count, Lower, 0.0, 0.0, "admissions from hostile sources, or of addresses not on the connection's IP";
    HonestEvictions => "honest_evictions", Count, Lower, 0.0, 0.0, "honest members replaced by an admission from another source";
    ChatterLists => "chatter_lists", Count, Info, 0.0, 0.0, "member lists received by attack members (distribution-socket chatterers)";
    ChatterListBytes => "chatter_list_bytes", Bytes, Info, 0.0, 0.0, "bytes of those lists";
    ChatterExcessLists => "chatter_excess_lists", Count, Lower, 0.0, 0.0, "lists chatterers received beyond those published while they were members (resends)";
    HonestAdmitDuringAttackMax => "honest_admit_during_attack_max_s", Seconds, Lower, 0.2, 0.02, "join latency of honest joiners started during an attack, worst";
    ImpostorExchanges => "impostor_exchanges", Count, Info, 0.0, 0.0, "exchanges impostor authenticators played with joiners pointed at them";
    ImpostorPasswordsCaptured => "impostor_passwords_captured", Count, Lower, 0.0, 0.0, "cleartext passwords impostors received (v1's weakness where joiners do not require mutual authentication)";
    ImpostorRefused => "impostor_refused", Count, Info, 0.0, 0.0, "joins the joiner gave up because its authenticator could not prove it knows the password";
    SafetyViolations => "safety_violations", Count, Lower, 0.0, 0.0, "safety checker findings (any is a failure)";
    LivenessViolations => "liveness_violations", Count, Lower, 0.0, 0.0, "liveness checker findings";
    EventsProcessed => "events_processed", Count, Lower, 0.25, 50.0, "protocol events consumed by the checkers (what the run cost: a protocol that chatters more shows here)";
    SimSeconds => "sim_seconds", Seconds, Info, 0.0, 0.0, "simulated time run";
    WallSeconds => "wall_seconds", Seconds, Info, 0.0, 0.0, "wall-clock time of the run (machine-dependent)";
    SimWallRatio => "sim_wall_ratio", Ratio, Info, 0.0, 0.0, "simulated seconds per wall second (machine-dependent)";
}

impl MetricId {
    /// Looks a metric up by its column name.
    pub fn from_name(name: &str) -> Option<MetricId> {
        DEFS.iter().find(|d| d.name == name).map(|d| d.id)
    }

    /// The column name.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// Every metric name, for error messages.
    pub fn all_names() -> Vec<&'static str> {
        DEFS.iter().map(|d| d.name).collect()
    }
}

impl fmt::Display for MetricId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Formats a value in its metric's unit for humans.
pub fn format_value(id: MetricId, v: f64) -> String {
    match id.def().unit {
        Unit::Seconds => human_secs(v),
        Unit::Count | Unit::Flag if v.fract() == 0.0 => format!("{v:.0}"),
        Unit::Bytes if v >= 10.0 => format!("{v:.0}B"),
        _ => format!("{v:.3}"),
    }
}

/// Formats seconds for humans: `"850ms"`, `"2.31s"`, `"4m05s"` (reports and estimates; the
/// scenario notation itself is `pyile::units::Dur`).
pub fn human_secs(secs: f64) -> String {
    if !secs.is_finite() {
        return format!("{secs}");
    }
    if secs < 1.0 {
        format!("{:.0}ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.2}s")
    } else if secs < 3600.0 {
        format!("{}m{:02.0}s", (secs / 60.0).floor(), secs % 60.0)
    } else {
        format!("{}h{:02.0}m", (secs / 3600.0).floor(), (secs % 3600.0) / 60.0)
    }
}

/// The metric values of one run. A metric with no samples (no detections in a run without
/// faults, say) is absent, and is written as an empty CSV cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    values: BTreeMap<MetricId, f64>,
}

impl Metrics {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a value; non-finite values are stored as absent.
    pub fn set(&mut self, id: MetricId, v: f64) {
        if v.is_finite() {
            self.values.insert(id, v);
        } else {
            self.values.remove(&id);
        }
    }

    /// A value, if the run produced one.
    pub fn get(&self, id: MetricId) -> Option<f64> {
        self.values.get(&id).copied()
    }

    /// Sets p50/p90/max (whichever ids are given) from raw samples; nothing if empty.
    pub fn set_distribution(
        &mut self,
        samples: &[f64],
        p50: Option<MetricId>,
        p90: Option<MetricId>,
        max: Option<MetricId>,
    ) {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if s.is_empty() {
            return;
        }
        s.sort_by(f64::total_cmp);
        if let Some(id) = p50 {
            self.set(id, percentile_sorted(&s, 0.5));
        }
        if let Some(id) = p90 {
            self.set(id, percentile_sorted(&s, 0.9));
        }
        if let Some(id) = max {
            self.set(id, *s.last().unwrap());
        }
    }

    /// Every (id, value) present, in catalogue order.
    pub fn iter(&self) -> impl Iterator<Item = (MetricId, f64)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }
}

/// Nearest-rank percentile of an ascending slice (`q` in 0..=1). Panics on an empty slice.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_consistent() {
        for (i, id) in MetricId::ALL.iter().enumerate() {
            assert_eq!(*id as usize, i);
            assert_eq!(id.def().id, *id);
            assert_eq!(MetricId::from_name(id.name()), Some(*id));
        }
        let mut names = MetricId::all_names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MetricId::ALL.len(), "duplicate metric names");
        assert_eq!(MetricId::from_name("no_such_metric"), None);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let s: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile_sorted(&s, 0.5), 5.0);
        assert_eq!(percentile_sorted(&s, 0.9), 9.0);
        assert_eq!(percentile_sorted(&s, 1.0), 10.0);
        assert_eq!(percentile_sorted(&s, 0.0), 1.0);
        assert_eq!(percentile_sorted(&[7.0], 0.9), 7.0);
    }

    #[test]
    fn distribution_sets_only_given_ids() {
        let mut m = Metrics::new();
        m.set_distribution(&[3.0, 1.0, 2.0], Some(MetricId::JoinLatencyP50), None, Some(MetricId::JoinLatencyMax));
        assert_eq!(m.get(MetricId::JoinLatencyP50), Some(2.0));
        assert_eq!(m.get(MetricId::JoinLatencyP90), None);
        assert_eq!(m.get(MetricId::JoinLatencyMax), Some(3.0));
        m.set_distribution(&[], Some(MetricId::ConvergenceP50), None, None);
        assert_eq!(m.get(MetricId::ConvergenceP50), None);
        m.set(MetricId::MsgsLost, f64::NAN);
        assert_eq!(m.get(MetricId::MsgsLost), None);
    }

    #[test]
    fn human_secs_formats() {
        assert_eq!(human_secs(0.25), "250ms");
        assert_eq!(human_secs(2.3149), "2.31s");
        assert_eq!(human_secs(245.0), "4m05s");
    }
}
