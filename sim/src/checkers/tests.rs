//! Every checker, fed a synthetic history: each must stay quiet on correct behaviour and
//! fire on the broken behaviour it exists for (a "deliberately broken authenticator").

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::*;
use crate::metrics::MetricId;
use crate::verdict::Severity;

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 168, 0, n])
}

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(host), port)
}

const AUTH_PEER: u16 = 49152;

fn cfg(settle: f64) -> MonitorConfig {
    MonitorConfig {
        heartbeat_interval: s(2.0),
        heartbeat_timeout: s(6.0),
        max_latency: s(0.01),
        tick: s(0.001),
        settle: s(settle),
        global_loss: false,
    }
}

/// Hosts: 0 auth (.1), 1 and 2 joiner hosts (.2, .3), 3 an attacker (.4).
struct World {
    m: Monitor,
    version: u64,
    members: Vec<SocketAddr>,
    /// Instances that hold a versioned list (they hear announcements).
    holding: std::collections::BTreeSet<u64>,
}

impl World {
    fn new(settle: f64) -> Self {
        let mut m = Monitor::new(cfg(settle), vec![ip(1), ip(2), ip(3), ip(4)], &[3]);
        m.auth_started(s(0.0), addr(1, AUTH_PEER));
        World { m, version: 0, members: vec![addr(1, AUTH_PEER)], holding: Default::default() }
    }

    fn list(&self) -> ListView {
        ListView {
            version: Some(self.version),
            members: pyile::MemberList::new(Some(self.version), self.members.clone()),
            bytes: 30 * self.members.len(),
        }
    }

    /// The authenticator publishes its current list and every given instance receives it
    /// `delay` later.
    fn publish(&mut self, t: f64, receivers: &[u64], delay: f64) {
        self.version += 1;
        let l = self.list();
        let changes = self.m.pending_changes();
        self.m.auth_list(s(t), &l);
        for &r in receivers {
            if self.holding.contains(&r) {
                for c in &changes {
                    self.m.announced(s(t + delay), r, self.version, c.clone());
                }
            }
            self.m.joiner_list(s(t + delay), r, &l);
            self.holding.insert(r);
        }
    }

    /// A correct join of instance `inst` (host `host`, port `port`) at `t`.
    fn join(&mut self, t: f64, inst: u64, host: usize, port: u16, others: &[u64]) {
        let a = addr(host as u8 + 1, port);
        self.m.join_started(s(t), inst, inst as usize, host, false, a);
        self.members.push(a);
        // The provisional first list: the joiner included, unversioned (as pyile sends it).
        let first = ListView { version: None, members: pyile::MemberList::new(None, self.members.clone()), bytes: 0 };
        self.m.joined(s(t + 0.05), inst, a, &first);
        self.m.member_joined(s(t + 0.05), a, ip(host as u8 + 1));
        self.publish(t + 0.06, &[others, &[inst]].concat(), 0.01);
    }

    fn remove(&mut self, t: f64, a: SocketAddr, reason: Removal, receivers: &[u64]) {
        self.members.retain(|m| *m != a);
        self.m.member_removed(s(t), a, reason);
        self.publish(t, receivers, 0.01);
    }

    fn checks(&self) -> Vec<&'static str> {
        self.m.findings().iter().map(|f| f.check).collect()
    }
}

#[test]
fn a_correct_history_has_no_findings_and_full_metrics() {
    let mut w = World::new(10.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    w.m.leave_started(s(20.0), 2);
    w.remove(20.01, addr(3, 50001), Removal::Left, &[1]);
    w.m.ended(s(20.02), 2);
    w.m.tick(s(60.0));
    let (m, findings) = w.m.finish(s(60.0));
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(m.get(MetricId::Converged), Some(1.0));
    assert_eq!(m.get(MetricId::JoinsOk), Some(2.0));
    assert_eq!(m.get(MetricId::JoinLatencyMax), Some(0.05));
    assert_eq!(m.get(MetricId::FalseRemovals), Some(0.0));
    assert!((m.get(MetricId::DetectionLatencyMax).unwrap() - 0.01).abs() < 1e-9, "leave → removal");
    assert!((m.get(MetricId::ConvergenceMax).unwrap() - 0.01).abs() < 1e-9);
    assert_eq!(m.get(MetricId::ListChanges), Some(3.0));
    assert_eq!(m.get(MetricId::DetectionLatencyP50), m.get(MetricId::DetectionLatencyMax));
}

#[test]
fn stale_member_fires_on_an_authenticator_without_heartbeat_timeout() {
    // The reference's bug: a partitioned member is never removed.
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.impaired(s(10.0), 1, Impairment::Partition, 0);
    w.m.restored(s(12.0), 1, Impairment::Partition, 0);
    let bound = cfg(0.0).stale_bound().as_secs_f64();
    w.m.tick(s(10.0 + bound - 0.001));
    assert!(w.checks().is_empty(), "not before the bound");
    w.m.tick(s(10.0 + bound));
    assert_eq!(w.checks(), ["stale_member"]);
    assert!(w.m.findings()[0].detail.contains("192.168.0.2:50000 still listed"));
}

#[test]
fn a_timely_removal_is_not_stale_and_is_a_detection_sample() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.impaired(s(10.0), 1, Impairment::Partition, 0);
    w.remove(17.0, addr(2, 50000), Removal::HeartbeatTimeout, &[]);
    w.m.tick(s(40.0));
    let (m, findings) = w.m.finish(s(40.0));
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(m.get(MetricId::DetectionLatencyMax), Some(7.0));
    assert_eq!(m.get(MetricId::TimeoutRemovals), Some(1.0));
}

#[test]
fn a_short_hold_does_not_require_removal_but_a_long_one_does() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.impaired(s(10.0), 1, Impairment::Hold, 0);
    w.m.restored(s(13.0), 1, Impairment::Hold, 0); // released well before the 6 s timeout
    w.m.tick(s(30.0));
    assert!(w.checks().is_empty());
    w.m.impaired(s(40.0), 1, Impairment::Hold, 1);
    w.m.restored(s(50.0), 1, Impairment::Hold, 1);
    w.m.tick(s(60.0));
    assert_eq!(w.checks(), ["stale_member"]);
}

#[test]
fn isolating_the_authenticator_makes_every_member_due() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    w.m.impaired(s(10.0), 0, Impairment::Partition, 0);
    w.remove(17.0, addr(2, 50000), Removal::HeartbeatTimeout, &[]);
    w.m.tick(s(30.0));
    assert_eq!(w.checks(), ["stale_member"], "the member that was not removed");
    assert!(w.m.findings()[0].detail.contains("192.168.0.3:50001"));
}

#[test]
fn false_removal_fires_only_for_a_healthy_member() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(1.5, 2, 2, 50001, &[1]);
    w.join(1.8, 3, 2, 50002, &[1, 2]);
    // A broken authenticator removes member 1 for no reason.
    w.remove(5.0, addr(2, 50000), Removal::HeartbeatTimeout, &[2, 3]);
    assert_eq!(w.checks(), ["false_removal"]);
    // Member 2's host was partitioned: its removal is legitimate.
    w.m.impaired(s(6.0), 2, Impairment::Partition, 0);
    w.m.restored(s(7.0), 2, Impairment::Partition, 0);
    w.remove(13.0, addr(3, 50001), Removal::HeartbeatTimeout, &[3]);
    // Member 3 leaves: its removal is legitimate too (its host's fault is also in the past).
    w.m.leave_started(s(20.0), 3);
    w.remove(20.1, addr(3, 50002), Removal::Left, &[]);
    let (m, findings) = w.m.finish(s(30.0));
    assert_eq!(findings.len(), 1);
    assert_eq!(m.get(MetricId::FalseRemovals), Some(1.0));
}

#[test]
fn banned_or_attacker_addresses_in_lists_are_caught() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.attempt_started(s(2.0), ip(4));
    for n in 1..=3 {
        w.m.password_refused(ip(4), s(1.9 + f64::from(n) * 0.1));
    }
    w.m.banned(s(2.3), ip(4));
    // The attacker's own count: an attempt started after the ban is not one before it.
    w.m.password_refused(ip(4), s(2.4));
    assert!(w.checks().is_empty());
    // A broken authenticator distributes the attacker anyway.
    w.members.push(addr(4, 50003));
    w.m.member_joined(s(3.0), addr(4, 50003), ip(4));
    w.publish(3.0, &[1], 0.01);
    let mut c = w.checks();
    c.sort();
    assert_eq!(c, ["banned_member", "banned_member"], "admission and the published list (deduplicated per address)");
    let (m, _) = w.m.finish(s(10.0));
    assert_eq!(m.get(MetricId::BannedIps), Some(1.0));
    assert!((m.get(MetricId::BanLatencyMax).unwrap() - 0.3).abs() < 1e-9);
    assert_eq!(m.get(MetricId::AttemptsBeforeBanMax), Some(3.0));
}

#[test]
fn an_attacker_admitted_after_its_ban_and_an_honest_ban_are_caught() {
    let mut w = World::new(0.0);
    w.m.banned(s(1.0), ip(4));
    w.m.attempt_result(s(2.0), ip(4), true, false);
    assert!(w.checks().is_empty(), "refused: correct");
    w.m.attempt_result(s(3.0), ip(4), true, true);
    w.m.banned(s(4.0), ip(2));
    assert_eq!(w.checks(), ["banned_admitted", "honest_banned"]);
}

#[test]
fn unknown_member_fires_on_ghosts_but_not_on_the_joiners_own_first_list() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    assert!(w.checks().is_empty(), "its own address before admission is fine");
    // A distribution that carries an address the authenticator never admitted (a ghost of
    // a half-finished handshake, as the reference leaves behind).
    let ghost = ListView {
        version: Some(99),
        members: pyile::MemberList::new(Some(99), vec![addr(1, AUTH_PEER), addr(2, 50000), addr(3, 41000)]),
        bytes: 90,
    };
    w.m.joiner_list(s(5.0), 1, &ghost);
    assert_eq!(w.checks(), ["unknown_member"]);
}

#[test]
fn view_regressed_fires_on_an_older_list() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    let l = |v| ListView {
        version: Some(v),
        members: pyile::MemberList::new(Some(v), vec![addr(1, AUTH_PEER), addr(2, 50000)]),
        bytes: 60,
    };
    w.m.joiner_list(s(2.0), 1, &l(5));
    w.m.joiner_list(s(2.1), 1, &l(5));
    assert!(w.checks().is_empty(), "the same version again is not a regression");
    w.m.joiner_list(s(2.2), 1, &l(4));
    assert_eq!(w.checks(), ["view_regressed"]);
}

#[test]
fn not_converged_fires_when_a_distribution_skips_a_member() {
    let mut w = World::new(10.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    // A broken distribution: the next change reaches member 1 but never member 2.
    w.join(3.0, 3, 2, 50002, &[]);
    let l = w.list();
    w.m.announced(s(3.1), 1, l.version.unwrap(), Change::Joined { peer: addr(3, 50002), alias: None });
    w.m.joiner_list(s(3.1), 1, &l);
    let (m, findings) = w.m.finish(s(40.0));
    assert_eq!(m.get(MetricId::Converged), Some(0.0));
    let checks: Vec<_> = findings.iter().map(|f| (f.check, f.severity)).collect();
    assert_eq!(checks, [("not_converged", Severity::Liveness)]);
    assert!(findings[0].detail.contains("instance 2"), "{}", findings[0].detail);
}

#[test]
fn unhealthy_joiners_and_late_changes_do_not_count_against_convergence() {
    let mut w = World::new(10.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    // A change published within the grace period before the end, not yet received.
    w.version += 1;
    let l = w.list();
    w.m.auth_list(s(39.5), &l);
    let (m, findings) = w.m.finish(s(40.0));
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(m.get(MetricId::Converged), Some(1.0));
}

#[test]
fn authenticator_crash_drops_its_deadlines_and_measures_loss_reports() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.impaired(s(10.0), 1, Impairment::Partition, 0);
    w.m.auth_crashed(s(11.0));
    w.m.auth_lost(s(11.0), 1);
    w.m.ended(s(11.0), 1);
    w.m.auth_restarted(s(20.0));
    w.m.auth_started(s(20.0), addr(1, AUTH_PEER + 1));
    w.m.tick(s(40.0));
    let (m, findings) = w.m.finish(s(40.0));
    assert!(findings.is_empty(), "the crashed authenticator's list is gone: {findings:?}");
    assert_eq!(m.get(MetricId::AuthLostReports), Some(1.0));
    assert_eq!(m.get(MetricId::AuthLossDetectionMax), Some(1.0), "from the partition of its own host at 10 s");
}

#[test]
fn distribution_lost_removals_are_judged_by_the_stream_ground_truth() {
    // Two members live through a loss window; both are removed as DistributionLost. The
    // network's ground truth says member 1's distribution stream lost a segment (a correct
    // removal) and member 2's never did (a false one, loss window or not).
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    let (d1, d2) = (addr(2, 40001), addr(3, 40002));
    w.m.dist_connected(1, d1);
    w.m.dist_connected(2, d2);
    w.m.impaired(s(10.0), 0, Impairment::Loss, 0);
    w.remove(20.0, addr(2, 50000), Removal::DistributionLost, &[2]);
    w.remove(21.0, addr(3, 50001), Removal::DistributionLost, &[]);
    w.m.restored(s(30.0), 0, Impairment::Loss, 0);
    assert!(w.checks().is_empty(), "judged only once the streams are quiet");
    w.m.judge_distribution_losses(|d| Some(d == d1));
    assert_eq!(w.checks(), ["false_removal"]);
    assert!(w.m.findings()[0].detail.contains("192.168.0.3:50001 removed (DistributionLost)"), "{:?}", w.m.findings());
    let (m, _) = w.m.finish(s(40.0));
    assert_eq!(m.get(MetricId::DistLostRemovals), Some(2.0));
    assert_eq!(m.get(MetricId::DistStreamsLost), Some(1.0));
    assert_eq!(m.get(MetricId::FalseRemovals), Some(1.0));
    assert_eq!(m.get(MetricId::TimeoutRemovals), Some(2.0));
}

#[test]
fn distribution_lost_without_ground_truth_falls_back_to_fault_windows() {
    // No stream address known, or no truth for it: a removal during a fault window is
    // excused, one with no fault at all is false.
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    w.m.dist_connected(2, addr(3, 40002));
    w.m.impaired(s(10.0), 1, Impairment::Loss, 0);
    w.remove(20.0, addr(2, 50000), Removal::DistributionLost, &[2]);
    w.remove(21.0, addr(3, 50001), Removal::DistributionLost, &[]);
    let (m, findings) = w.m.finish(s(40.0));
    let checks: Vec<_> = findings.iter().map(|f| f.check).collect();
    assert_eq!(checks, ["false_removal"], "{findings:?}");
    assert!(findings[0].detail.contains("192.168.0.3:50001"));
    assert_eq!(m.get(MetricId::DistStreamsLost), Some(0.0));
}

/// A world with attack hosts: 4 (.5) hostile, 5 (.6) an insider (a chatterer).
fn attack_world() -> World {
    let mut m = Monitor::new(cfg(0.0), (1..=6).map(ip).collect(), &[3]);
    m.hostile_hosts(&[4], &[5]);
    m.auth_started(s(0.0), addr(1, AUTH_PEER));
    World { m, version: 0, members: vec![addr(1, AUTH_PEER)], holding: Default::default() }
}

#[test]
fn attacker_member_fires_on_hostile_or_spoofed_admissions_and_lists_holding_them() {
    let mut w = attack_world();
    w.join(1.0, 1, 1, 50000, &[]);
    // The insider is admitted at its own address: by design.
    w.m.member_joined(s(2.0), addr(6, 40000), ip(6));
    w.members.push(addr(6, 40000));
    w.publish(2.0, &[1], 0.01);
    assert!(w.checks().is_empty(), "{:?}", w.m.findings());
    // A broken authenticator admits a hostile host, and an address its connection does not own.
    w.m.member_joined(s(3.0), addr(5, 40001), ip(5));
    assert_eq!(w.checks(), ["attacker_member"]);
    w.m.member_joined(s(3.5), addr(3, 7), ip(6));
    w.members.push(addr(3, 7));
    w.publish(3.5, &[1], 0.01);
    let mut c = w.checks();
    c.sort();
    assert_eq!(c, ["attacker_member"; 4], "two admissions, the authenticator's list, a joiner's list");
    assert!(w.m.findings().iter().any(|f| f.detail.contains("a joiner's list holds 192.168.0.3:7")));
    let (m, _) = w.m.finish(s(10.0));
    assert_eq!(m.get(MetricId::AttackAdmissions), Some(2.0));
}

#[test]
fn member_evicted_fires_when_another_source_replaces_an_honest_member() {
    let mut w = attack_world();
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(1.5, 2, 2, 50001, &[1]);
    // A rejoin from the member's own host replaces it legitimately (its old session had ended).
    w.m.ended(s(1.9), 1);
    w.m.member_removed(s(2.0), addr(2, 50000), Removal::Replaced);
    w.m.member_joined(s(2.0), addr(2, 50000), ip(2));
    assert!(w.checks().is_empty(), "{:?}", w.m.findings());
    // A broken authenticator lets the hostile host take member 2's address.
    w.m.member_removed(s(5.0), addr(3, 50001), Removal::Replaced);
    w.m.member_joined(s(5.0), addr(3, 50001), ip(5));
    let mut c = w.checks();
    c.sort();
    assert_eq!(c, ["attacker_member", "false_removal", "member_evicted"], "a healthy member removed, too");
    assert!(w.m.findings().iter().any(|f| f.detail.contains("honest member 192.168.0.3:50001 was replaced")));
    let (m, _) = w.m.finish(s(10.0));
    assert_eq!(m.get(MetricId::HonestEvictions), Some(1.0));
}

#[test]
fn a_replacement_that_never_comes_is_an_eviction_too() {
    let mut w = attack_world();
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.ended(s(1.9), 1);
    w.m.member_removed(s(2.0), addr(2, 50000), Removal::Replaced);
    let (m, findings) = w.m.finish(s(10.0));
    assert_eq!(findings.iter().map(|f| f.check).collect::<Vec<_>>(), ["member_evicted"]);
    assert_eq!(m.get(MetricId::HonestEvictions), Some(1.0));
}

#[test]
fn chatter_resent_fires_when_a_chatterer_gets_more_lists_than_were_published() {
    let chatter = |lists: u64| {
        let mut w = attack_world();
        w.join(1.0, 1, 1, 50000, &[]);
        w.m.attack_opened(s(2.0), 7, 5);
        w.m.member_joined(s(2.1), addr(6, 40007), ip(6));
        w.members.push(addr(6, 40007));
        w.publish(2.1, &[1], 0.01); // the admission's list
        w.join(3.0, 2, 2, 50001, &[1]); // one more change while it is a member
        let end =
            AttackEnd { by_auth: false, member: true, lists, list_bytes: 100 * lists, peer: Some(addr(6, 40007)) };
        w.m.attack_closed(s(9.0), 7, &end);
        w.remove(9.001, addr(6, 40007), Removal::Closed, &[1, 2]); // published after it hung up
        w.m.finish(s(10.0))
    };
    let (m, findings) = chatter(2);
    assert!(findings.is_empty(), "as many lists as changes: {findings:?}");
    assert_eq!(m.get(MetricId::ChatterLists), Some(2.0));
    assert_eq!(m.get(MetricId::ChatterExcessLists), Some(0.0));
    // A broken distribution writer resends the list whenever the member writes on the socket.
    let (m, findings) = chatter(5);
    assert_eq!(findings.iter().map(|f| f.check).collect::<Vec<_>>(), ["chatter_resent"]);
    assert!(findings[0].detail.contains("received 5 lists though only 2 were published"), "{}", findings[0].detail);
    assert_eq!(m.get(MetricId::ChatterExcessLists), Some(3.0));
}

#[test]
fn attack_metrics_count_connections_their_closes_and_leaks() {
    let mut w = attack_world();
    w.m.attack_window(s(1.0), s(8.0));
    w.m.attack_opened(s(1.0), 0, 4);
    w.m.attack_opened(s(1.0), 1, 4);
    w.m.attack_opened(s(1.0), 2, 4);
    w.m.handshake_failed(s(4.0), SocketAddr::new(ip(5), 49152));
    w.m.handshake_failed(s(4.0), SocketAddr::new(ip(2), 49152)); // an honest joiner's: not counted
    w.m.attack_closed(s(4.0), 0, &AttackEnd { by_auth: true, ..AttackEnd::default() });
    w.m.attack_closed(s(1.5), 1, &AttackEnd::default()); // hung up itself
    w.join(2.0, 1, 1, 50000, &[]); // an honest join during the attack
    let (m, findings) = w.m.finish(s(10.0));
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(m.get(MetricId::AttackConns), Some(3.0));
    assert_eq!(m.get(MetricId::AttackConnsClosedByAuth), Some(1.0));
    assert_eq!(m.get(MetricId::AttackConnsOpenAtEnd), Some(1.0), "connection 2 was never closed");
    assert_eq!(m.get(MetricId::AttackCloseLatencyMax), Some(3.0));
    assert_eq!(m.get(MetricId::AttackHandshakeFailures), Some(1.0));
    assert_eq!(m.get(MetricId::HonestAdmitDuringAttackMax), Some(0.05));
    // A run without attack hosts reports none of these.
    let (m, _) = World::new(0.0).m.finish(s(1.0));
    assert_eq!(m.get(MetricId::AttackConns), None);
}

#[test]
fn a_failed_join_counts_as_expected_only_when_a_fault_overlapped_it() {
    let mut w = World::new(0.0);
    // Host 1 is partitioned from 10 s to 12 s.
    w.m.impaired(s(10.0), 1, Impairment::Partition, 0);
    w.m.restored(s(12.0), 1, Impairment::Partition, 0);
    w.m.join_started(s(9.0), 1, 0, 1, false, addr(2, 50000)); // overlaps the partition
    w.m.join_failed(s(14.0), 1);
    w.m.join_started(s(20.0), 2, 1, 2, false, addr(3, 50001)); // host 2, no fault
    w.m.join_failed(s(21.0), 2);
    w.m.join_started(s(30.0), 3, 0, 1, false, addr(2, 50002)); // host 1 after the partition
    w.m.join_failed(s(31.0), 3);
    let (m, _) = w.m.finish(s(40.0));
    assert_eq!(m.get(MetricId::JoinsFailed), Some(3.0));
    assert_eq!(m.get(MetricId::JoinsFailedInFaults), Some(1.0));
}

/// The reference's defect, in the joiners' terms: the authenticator lists a joiner as soon as
/// it sends `peer_address`, before its distribution connection, and keeps it when the
/// handshake then fails.
#[test]
fn ghost_member_fires_on_a_joiner_listed_before_or_without_its_whole_handshake() {
    // Listed before the joiner finished (it finishes 50 ms later).
    let mut w = World::new(0.0);
    let a = addr(2, 50000);
    w.m.join_started(s(1.0), 1, 0, 1, false, a);
    w.members.push(a);
    w.publish(1.02, &[], 0.0);
    assert!(w.checks().is_empty(), "judged only once the joiner reports");
    let first = w.list();
    w.m.joined(s(1.05), 1, a, &first);
    w.holding.insert(1);
    assert_eq!(w.checks(), ["ghost_member"]);
    assert!(w.m.findings()[0].detail.contains("before its joiner finished its handshake"), "{:?}", w.m.findings());

    // Listed, then the handshake fails: a ghost, whether the failure is seen before or after.
    let mut w = World::new(0.0);
    w.join(0.5, 9, 2, 50009, &[]); // a real member receives the lists
    w.m.join_started(s(1.0), 1, 0, 1, false, a);
    w.m.member_joined(s(1.02), a, ip(2));
    w.members.push(a);
    w.publish(1.02, &[9], 0.01);
    w.m.join_failed(s(6.0), 1);
    assert_eq!(w.checks(), ["ghost_member"]);
    assert!(w.m.findings()[0].detail.contains("never completed"));

    // A join that fails without ever being listed is no ghost.
    let mut w = World::new(0.0);
    w.m.join_started(s(1.0), 1, 0, 1, false, a);
    w.m.join_failed(s(6.0), 1);
    let (_, findings) = w.m.finish(s(20.0));
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn a_list_observed_in_the_same_instant_as_the_joiners_report_is_no_ghost() {
    let mut w = World::new(0.0);
    let a = addr(2, 50000);
    w.m.join_started(s(1.0), 1, 0, 1, false, a);
    w.members.push(a);
    // The authenticator's list is observed before the joiner's own report of the same time.
    w.publish(1.05, &[], 0.0);
    let first = w.list();
    w.m.joined(s(1.05), 1, a, &first);
    w.holding.insert(1);
    // A joiner whose host crashed mid-handshake is not judged (its last messages may have left).
    let b = addr(3, 50001);
    w.m.join_started(s(2.0), 2, 1, 2, false, b);
    w.m.member_joined(s(2.05), b, ip(3));
    w.members.push(b);
    w.publish(2.05, &[1], 0.01);
    w.m.join_cut(2);
    w.m.ended(s(2.06), 2);
    let (_, findings) = w.m.finish(s(3.0));
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn ghost_member_fires_when_the_authenticator_keeps_a_joiner_that_left() {
    let bound = cfg(0.0).stale_bound().as_secs_f64();
    // Left at 10 s, still listed when the authenticator publishes past the bound.
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    w.m.leave_started(s(10.0), 2);
    w.m.ended(s(10.0), 2);
    w.publish(10.0 + bound - 0.01, &[1], 0.01);
    assert!(w.checks().is_empty(), "not before the bound");
    w.publish(10.0 + bound + 0.01, &[1], 0.01);
    assert_eq!(w.checks(), ["ghost_member"]);
    assert!(w.m.findings()[0].detail.contains("after its joiner ended"));

    // The same at the end of the run, with no list published after the leave.
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.leave_started(s(10.0), 1);
    w.m.ended(s(10.0), 1);
    let (_, findings) = w.m.finish(s(10.0 + bound + 1.0));
    assert_eq!(findings.iter().map(|f| f.check).collect::<Vec<_>>(), ["ghost_member"]);

    // Removed in time: nothing.
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.m.leave_started(s(10.0), 1);
    w.m.ended(s(10.0), 1);
    w.remove(10.02, addr(2, 50000), Removal::Left, &[]);
    let (_, findings) = w.m.finish(s(10.0 + bound + 1.0));
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn a_stale_list_the_joiner_dropped_is_still_a_regression_of_the_authenticator() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    assert!(w.checks().is_empty());
    w.m.stale_list(s(2.0), 1, 1, 2);
    assert_eq!(w.checks(), ["view_regressed"]);
    assert!(w.m.findings()[0].detail.contains("sent list v1 after v2"));
}

#[test]
fn view_diverged_fires_on_other_members_or_another_order_at_the_same_version() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    assert!(w.checks().is_empty(), "{:?}", w.m.findings());
    // The authenticator's v2 is [auth, j1, j2]; a joiner that applied a delta wrongly holds
    // v2 without j1 (caught at once by contents)...
    let wrong = ListView {
        version: Some(2),
        members: pyile::MemberList::new(Some(2), vec![addr(1, AUTH_PEER), addr(3, 50001)]),
        bytes: 60,
    };
    w.m.joiner_list(s(2.5), 1, &wrong);
    assert_eq!(w.checks(), ["view_diverged"]);
    // ...or with the right members in another order (caught when its view is final).
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(2.0, 2, 2, 50001, &[1]);
    let swapped = ListView {
        version: Some(2),
        members: pyile::MemberList::new(Some(2), vec![addr(1, AUTH_PEER), addr(3, 50001), addr(2, 50000)]),
        bytes: 90,
    };
    w.m.joiner_list(s(2.5), 1, &swapped);
    assert!(w.checks().is_empty(), "contents match");
    let (_, findings) = w.m.finish(s(10.0));
    assert_eq!(findings.iter().map(|f| f.check).collect::<Vec<_>>(), ["view_diverged"], "{findings:?}");
    assert!(findings[0].detail.contains("last list v2"), "{findings:?}");
}

// ---------------------------------------------------------------- names and announcements

fn joined(a: SocketAddr, alias: &str) -> Change {
    Change::Joined { peer: a, alias: Some(alias.into()) }
}

fn left(a: SocketAddr, alias: &str, reason: &str) -> Change {
    Change::Left { peer: a, alias: Some(alias.into()), reason: reason.into() }
}

/// The authenticator admits `a` (as `alias`) and publishes version `v`.
fn admit(m: &mut Monitor, t: f64, a: SocketAddr, alias: &str, v: u64) {
    m.member_joined(s(t), a, a.ip());
    m.member_alias(s(t), a, alias);
    m.auth_list(s(t), &ListView { version: Some(v), members: pyile::MemberList::new(Some(v), []), bytes: 0 });
}

fn drop_member(m: &mut Monitor, t: f64, a: SocketAddr, reason: Removal, v: u64) {
    m.member_removed(s(t), a, reason);
    m.auth_list(s(t), &ListView { version: Some(v), members: pyile::MemberList::new(Some(v), []), bytes: 0 });
}

fn taken(m: &mut Monitor, t: f64, inst: u64, v: u64) {
    m.joiner_list(s(t), inst, &ListView { version: Some(v), members: pyile::MemberList::new(Some(v), []), bytes: 0 });
}

fn names_world() -> (Monitor, SocketAddr, SocketAddr, SocketAddr) {
    let mut m = Monitor::new(cfg(0.0), vec![ip(1), ip(2), ip(3), ip(4)], &[3]);
    m.auth_started(s(0.0), addr(1, AUTH_PEER));
    let (w, b, c) = (addr(2, 50000), addr(2, 50001), addr(3, 50002));
    // The watcher (instance 1) joins and takes its first list, v1.
    m.join_started(s(1.0), 1, 1, 1, false, w);
    m.join_alias(s(1.0), 1, w, "watcher");
    admit(&mut m, 1.05, w, "watcher", 1);
    m.joined(s(1.06), 1, w, &ListView { version: None, members: pyile::MemberList::new(None, [w]), bytes: 0 });
    taken(&mut m, 1.07, 1, 1);
    (m, w, b, c)
}

#[test]
fn announcements_heard_exactly_once_in_order_are_quiet() {
    let (mut m, _, b, c) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    admit(&mut m, 2.05, b, "bob", 2);
    m.join_started(s(2.0), 3, 3, 2, false, c);
    m.join_alias(s(2.0), 3, c, "carol");
    admit(&mut m, 2.06, c, "carol", 3);
    m.leave_started(s(3.0), 2);
    drop_member(&mut m, 3.01, b, Removal::Left, 4);
    // Back to back, as a writer that was behind sends them.
    m.announced(s(3.1), 1, 2, joined(b, "bob"));
    taken(&mut m, 3.1, 1, 2);
    m.announced(s(3.1), 1, 3, joined(c, "carol"));
    taken(&mut m, 3.1, 1, 3);
    m.announced(s(3.1), 1, 4, left(b, "bob", "left"));
    taken(&mut m, 3.1, 1, 4);
    assert!(m.findings().is_empty(), "{:?}", m.findings());
    let (metrics, _) = m.finish(s(10.0));
    assert_eq!(metrics.get(MetricId::Announcements), Some(3.0));
    assert_eq!(metrics.get(MetricId::LeavesGraceful), Some(1.0));
}

/// Bob (instance 2) joins with a committed first list of v1 and is admitted as v2.
fn joined_from_committed_list() -> (Monitor, SocketAddr) {
    let (mut m, _, b, _) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    m.first_list(s(2.01), 2, 1);
    admit(&mut m, 2.05, b, "bob", 2);
    m.joined(s(2.06), 2, b, &ListView { version: None, members: pyile::MemberList::new(None, [b]), bytes: 0 });
    (m, b)
}

#[test]
fn announcement_checkers_fire_on_a_missed_a_wrong_and_a_repeated_change() {
    // Missed: a merged delta hid bob's join and leave (the watcher took v3 hearing nothing).
    let (mut m, _, b, _) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    admit(&mut m, 2.05, b, "bob", 2);
    drop_member(&mut m, 2.5, b, Removal::Closed, 3);
    taken(&mut m, 3.0, 1, 3);
    assert_eq!(m.findings().iter().map(|f| f.check).collect::<Vec<_>>(), ["announcement_missed"]);

    // Wrong: the leave announced without its reason.
    let (mut m, _, b, _) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    admit(&mut m, 2.05, b, "bob", 2);
    m.announced(s(2.1), 1, 2, joined(b, "bob"));
    taken(&mut m, 2.1, 1, 2);
    drop_member(&mut m, 2.5, b, Removal::HeartbeatTimeout, 3);
    m.announced(s(2.6), 1, 3, left(b, "bob", "unknown"));
    assert_eq!(m.findings().iter().map(|f| f.check).collect::<Vec<_>>(), ["announcement_wrong"]);

    // Repeated: the join heard twice.
    let (mut m, _, b, _) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    admit(&mut m, 2.05, b, "bob", 2);
    m.announced(s(2.1), 1, 2, joined(b, "bob"));
    m.announced(s(2.2), 1, 2, joined(b, "bob"));
    assert_eq!(m.findings().iter().map(|f| f.check).collect::<Vec<_>>(), ["announcement_repeated"]);

    // Missed from the committed first list on: a joiner whose handshake brought v1 and
    // that took v2 without hearing bob's join.
    let (mut m, _) = joined_from_committed_list();
    taken(&mut m, 2.1, 2, 2);
    assert_eq!(m.findings().iter().map(|f| f.check).collect::<Vec<_>>(), ["announcement_missed"]);
    // ...and quiet when it heard it (its own join) first.
    let (mut m, b) = joined_from_committed_list();
    m.announced(s(2.1), 2, 2, joined(b, "bob"));
    taken(&mut m, 2.1, 2, 2);
    assert!(m.findings().is_empty(), "{:?}", m.findings());

    // Skipped (reported by the joiner): no finding, counted.
    let (mut m, _, b, _) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    admit(&mut m, 2.05, b, "bob", 2);
    drop_member(&mut m, 2.5, b, Removal::Closed, 3);
    m.announcements_skipped(s(3.0), 1, 1, 3);
    taken(&mut m, 3.0, 1, 3);
    assert!(m.findings().is_empty(), "{:?}", m.findings());
    let (metrics, _) = m.finish(s(10.0));
    assert_eq!(metrics.get(MetricId::AnnouncementsSkipped), Some(1.0));
}

#[test]
fn alias_checkers_fire_on_a_duplicate_and_on_a_refusal_of_a_free_alias() {
    // Two live members admitted with one alias.
    let (mut m, _, b, c) = names_world();
    for (inst, a, v) in [(2, b, 2), (3, c, 3)] {
        m.join_started(s(2.0), inst, inst as usize, 1, false, a);
        m.join_alias(s(2.0), inst, a, "bob");
        admit(&mut m, 2.05, a, "bob", v);
    }
    assert_eq!(m.findings().iter().map(|f| f.check).collect::<Vec<_>>(), ["alias_duplicated"]);

    // After the first bob is removed, a second is fine; a refusal while bob is listed is too.
    let (mut m, _, b, c) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    admit(&mut m, 2.05, b, "bob", 2);
    m.join_started(s(3.0), 3, 3, 2, false, c);
    m.join_alias(s(3.0), 3, c, "bob");
    m.alias_refused(s(3.05), 3);
    m.join_failed(s(3.05), 3);
    drop_member(&mut m, 4.0, b, Removal::Closed, 3);
    m.join_started(s(5.0), 4, 3, 2, false, addr(3, 50003));
    m.join_alias(s(5.0), 4, addr(3, 50003), "bob");
    admit(&mut m, 5.05, addr(3, 50003), "bob", 4);
    assert!(m.findings().is_empty(), "{:?}", m.findings());

    // A refusal long after the only bob left: the alias was free.
    let (mut m, _, b, c) = names_world();
    m.join_started(s(2.0), 2, 2, 1, false, b);
    m.join_alias(s(2.0), 2, b, "bob");
    admit(&mut m, 2.05, b, "bob", 2);
    drop_member(&mut m, 3.0, b, Removal::Closed, 3);
    m.join_started(s(30.0), 3, 3, 2, false, c);
    m.join_alias(s(30.0), 3, c, "bob");
    m.alias_refused(s(30.05), 3);
    assert_eq!(m.findings().iter().map(|f| f.check).collect::<Vec<_>>(), ["alias_refused_free"]);
}

#[test]
fn left_misreported_fires_on_a_leave_reported_closed_and_a_crash_reported_left() {
    let (mut m, _, b, c) = names_world();
    for (inst, a) in [(2, b), (3, c)] {
        m.join_started(s(2.0), inst, inst as usize, 1, false, a);
        m.join_alias(s(2.0), inst, a, &format!("j{inst}"));
        admit(&mut m, 2.05, a, &format!("j{inst}"), inst);
        m.joined(s(2.06), inst, a, &ListView { version: None, members: pyile::MemberList::new(None, [a]), bytes: 0 });
    }
    // Bob leaves gracefully but is reported as closed; carol, never told to leave, as left.
    m.leave_started(s(3.0), 2);
    drop_member(&mut m, 3.01, b, Removal::Closed, 4);
    drop_member(&mut m, 4.0, c, Removal::Left, 5);
    // Carol's removal is a false removal too: nothing was wrong with her.
    assert_eq!(
        m.findings().iter().map(|f| f.check).collect::<Vec<_>>(),
        ["left_misreported", "left_misreported", "false_removal"]
    );
}

#[test]
fn impostor_checks_fire_only_where_protocol_2_promises_the_password_stays_home() {
    let x = |offers_scram, requires_mutual, password, trusted| ImpostorExchange {
        source: addr(2, 50000),
        offers_scram,
        requires_mutual,
        password,
        trusted,
    };
    let mut w = World::new(0.0);
    // A proof to a SCRAM impostor, nothing to a v1 one from a joiner that requires mutual
    // authentication, and v1's weakness (a cleartext password, trusted) where it is not required.
    w.m.impostor_exchange(s(1.0), &x(true, false, false, false));
    w.m.impostor_exchange(s(1.0), &x(false, true, false, false));
    w.m.impostor_exchange(s(1.0), &x(false, false, true, true));
    w.m.impostor_refused();
    assert!(w.checks().is_empty(), "{:?}", w.m.findings());
    w.m.impostor_exchange(s(2.0), &x(true, false, false, true));
    assert_eq!(w.checks(), ["impostor_trusted"]);
    w.m.impostor_exchange(s(3.0), &x(false, true, true, true));
    // One finding per check and joiner address.
    assert_eq!(w.checks(), ["impostor_trusted", "password_exposed"]);
    let (m, _) = w.m.finish(s(4.0));
    assert_eq!(m.get(MetricId::ImpostorExchanges), Some(5.0));
    assert_eq!(m.get(MetricId::ImpostorPasswordsCaptured), Some(2.0));
    assert_eq!(m.get(MetricId::ImpostorRefused), Some(1.0));
}

#[test]
fn broadcasts_count_duplicates_and_losses_among_members_throughout() {
    let mut w = World::new(0.0);
    w.join(1.0, 1, 1, 50000, &[]);
    w.join(1.1, 2, 1, 50001, &[1]);
    w.join(1.2, 3, 2, 50002, &[1, 2]);
    let list = pyile::MemberList::new(Some(w.version), w.members.clone());
    w.m.chat_list(Some(1), &list);
    let from = addr(2, 50000);
    // Broadcast 0 from instance 1: 2 delivers it twice (a retry the filter let through),
    // 3 delivers it once; the filter of 3 dropped one copy.
    w.m.broadcast_started(s(5.0), 0, Some(1));
    w.m.chat_delivered(s(5.01), Some(2), from, Some((7, 0)));
    w.m.chat_delivered(s(5.01), Some(3), from, Some((7, 0)));
    w.m.chat_duplicate_dropped();
    w.m.chat_delivered(s(5.5), Some(2), from, Some((7, 0)));
    w.m.broadcast_finished(s(5.6), 0, from, Some((7, 0)), 2);
    // Broadcast 1: 3 never delivers it (a loss); 2 leaves before it finishes (not judged).
    w.m.broadcast_started(s(6.0), 1, Some(1));
    w.m.leave_started(s(6.1), 2);
    w.m.broadcast_finished(s(6.5), 1, from, Some((7, 1)), 0);
    // A v1 message (no id) is never judged, however often it arrives.
    w.m.chat_delivered(s(7.0), Some(3), from, None);
    w.m.chat_delivered(s(7.0), Some(3), from, None);
    let (m, findings) = w.m.finish(s(10.0));
    let dup: Vec<_> = findings.iter().filter(|f| f.check == "broadcast_duplicated").collect();
    assert_eq!(dup.len(), 1, "{findings:?}");
    assert_eq!(dup[0].severity, Severity::Safety);
    assert_eq!(m.get(MetricId::BroadcastDuplicatesDelivered), Some(1.0));
    assert_eq!(m.get(MetricId::MsgsDuplicatesDropped), Some(1.0));
    assert_eq!(m.get(MetricId::MsgsRetries), Some(2.0));
    assert_eq!(m.get(MetricId::BroadcastCopiesChecked), Some(3.0), "2 and 3 for the first, 3 for the second");
    assert_eq!(m.get(MetricId::BroadcastLosses), Some(1.0));
}
