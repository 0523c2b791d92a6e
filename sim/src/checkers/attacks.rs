//! Hostile traffic: what attacker hosts may never achieve, and what the attacks cost.
//!
//! The attack hosts are known from the scenario: *hostile* hosts (every `attack` kind but
//! `dist_chatter`) must never get in; *insiders* (`dist_chatter`) are admitted by design and
//! only misbehave on their distribution socket. Checks (each finding fails the run):
//! - `attacker_member`: an address is admitted from a hostile source, or announced by a
//!   connection that does not own its IP (a spoofed peer address), or any list (the
//!   authenticator's or a joiner's) holds such an address or one on a hostile IP.
//! - `member_evicted`: an honest member is removed as `Replaced` and the replacing admission
//!   comes from another source (or never comes). Removals of a healthy honest member for any
//!   other reason are `false_removal` (see [`removals`](super::removals)).
//! - `chatter_resent`: a chatterer received more lists than the authenticator published while
//!   it was a member (writes on the one-way distribution socket made it resend).
//!
//! Metrics: connections opened, closed by the authenticator, still open at the end, time to
//! the authenticator's close, handshake failures from attack IPs, hostile admissions, honest
//! evictions, lists and bytes chatterers received and any excess, and the join latency of
//! honest joiners during an attack.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::monitor::Monitor;
use super::removals::Removal;
use crate::metrics::MetricId;
use crate::verdict::Severity;

/// How a hostile connection ended, as the runner reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttackEnd {
    /// Closed by the authenticator (false: the attacker hung up).
    pub by_auth: bool,
    /// Whether it had completed a handshake.
    pub member: bool,
    /// Member lists it received on its distribution connection.
    pub lists: u64,
    /// Their bytes.
    pub list_bytes: u64,
    /// The peer address it announced, if any.
    pub peer: Option<SocketAddr>,
}

/// An insider member: the lists published while it was listed.
#[derive(Clone, Debug, Default)]
struct Chatter {
    publications: u64,
    listed: bool,
}

/// Everything the attack checks keep.
#[derive(Clone, Debug, Default)]
pub(super) struct AttackState {
    hostile_ips: BTreeSet<IpAddr>,
    insider_ips: BTreeSet<IpAddr>,
    /// Connection id → (opened at, closed).
    conns: BTreeMap<u64, (Duration, bool)>,
    /// Addresses admitted from a hostile source or announced by a connection off their IP.
    tainted: BTreeSet<SocketAddr>,
    chatters: BTreeMap<SocketAddr, Chatter>,
    /// Honest members removed as `Replaced`: address → (when, their host's IP).
    replaced: BTreeMap<SocketAddr, (Duration, IpAddr)>,
    pub(super) windows: Vec<(Duration, Duration)>,
    close_latency: Vec<f64>,
    pub(super) honest_latency: Vec<f64>,
}

impl AttackState {
    /// Whether the run has attack hosts (then the attack metrics are reported, 0 included).
    fn any(&self) -> bool {
        !self.hostile_ips.is_empty() || !self.insider_ips.is_empty()
    }

    fn attack_ip(&self, ip: IpAddr) -> bool {
        self.hostile_ips.contains(&ip) || self.insider_ips.contains(&ip)
    }
}

impl Monitor {
    /// The hosts of the run's attacks: `hostile` must never get in, `insiders` are admitted
    /// by design.
    pub fn hostile_hosts(&mut self, hostile: &[usize], insiders: &[usize]) {
        self.attacks.hostile_ips.extend(hostile.iter().map(|&h| self.host_ips[h]));
        self.views.changed();
        self.attacks.insider_ips.extend(insiders.iter().map(|&h| self.host_ips[h]));
    }

    /// An attack's window (for the honest-admission metric).
    pub fn attack_window(&mut self, start: Duration, end: Duration) {
        self.attacks.windows.push((start, end));
    }

    /// Hostile connection `conn` from `host` is up.
    pub fn attack_opened(&mut self, t: Duration, conn: u64, _host: usize) {
        self.count(MetricId::AttackConns, 1.0);
        self.attacks.conns.insert(conn, (t, false));
    }

    /// Hostile connection `conn` ended.
    pub fn attack_closed(&mut self, t: Duration, conn: u64, end: &AttackEnd) {
        if let Some((opened, closed)) = self.attacks.conns.get_mut(&conn) {
            *closed = true;
            let opened = *opened;
            if end.by_auth {
                self.count(MetricId::AttackConnsClosedByAuth, 1.0);
                if !end.member {
                    self.attacks.close_latency.push((t - opened).as_secs_f64());
                }
            }
        }
        if !end.member {
            return;
        }
        self.count(MetricId::ChatterLists, end.lists as f64);
        self.count(MetricId::ChatterListBytes, end.list_bytes as f64);
        let Some(peer) = end.peer.filter(|p| self.attacks.insider_ips.contains(&p.ip())) else { return };
        let allowed = self.attacks.chatters.get(&peer).map_or(0, |c| c.publications);
        if end.lists > allowed {
            self.count(MetricId::ChatterExcessLists, (end.lists - allowed) as f64);
            self.find(
                Severity::Safety,
                "chatter_resent",
                format!("{peer}"),
                t,
                format!(
                    "chatterer {peer} received {} lists though only {allowed} were published while it was a member",
                    end.lists
                ),
            );
        }
    }

    /// The authenticator gave up a handshake from `source`.
    pub fn handshake_failed(&mut self, _t: Duration, source: SocketAddr) {
        if self.attacks.attack_ip(source.ip()) {
            self.count(MetricId::AttackHandshakeFailures, 1.0);
        }
    }

    /// `attacker_member` and `member_evicted` on an admission (from [`Monitor::member_joined`]).
    pub(super) fn check_admission(&mut self, t: Duration, member: SocketAddr, source: IpAddr) {
        if let Some((at, owner)) = self.attacks.replaced.remove(&member)
            && owner != source
        {
            self.count(MetricId::HonestEvictions, 1.0);
            self.find(
                Severity::Safety,
                "member_evicted",
                format!("{member}"),
                t,
                format!("honest member {member} was replaced at {at:?} by an admission from {source}"),
            );
        }
        if self.attacks.insider_ips.contains(&source) && member.ip() == source {
            self.attacks.chatters.insert(member, Chatter { publications: 0, listed: true });
        }
        let hostile = self.attacks.hostile_ips.contains(&source) || self.attacks.hostile_ips.contains(&member.ip());
        if hostile || member.ip() != source {
            self.attacks.tainted.insert(member);
            self.views.changed();
            self.count(MetricId::AttackAdmissions, 1.0);
            self.find(
                Severity::Safety,
                "attacker_member",
                format!("admitted:{member}"),
                t,
                format!("admitted {member} from {source} (a hostile source, or an address it does not own)"),
            );
        }
    }

    /// `attacker_member` on a list held by the authenticator (`holder` "a") or a joiner ("j").
    pub(super) fn check_list_for_attackers(&mut self, t: Duration, holder: &str, members: &pyile::MemberList) {
        if !self.attacks.any() && self.attacks.tainted.is_empty() {
            return;
        }
        for m in members {
            if self.attacks.hostile_ips.contains(&m.ip()) || self.attacks.tainted.contains(m) {
                self.find(
                    Severity::Safety,
                    "attacker_member",
                    format!("{holder}:{m}"),
                    t,
                    format!(
                        "{} holds {m}, an attacker's address",
                        if holder == "a" { "the authenticator's list" } else { "a joiner's list" }
                    ),
                );
            }
        }
    }

    /// The authenticator published a list: every listed chatterer may receive one more.
    pub(super) fn count_chatter_publication(&mut self) {
        for c in self.attacks.chatters.values_mut().filter(|c| c.listed) {
            c.publications += 1;
        }
    }

    /// A removal, for `member_evicted` and the chatterers (from [`Monitor::member_removed`]).
    /// `honest_host` is the IP of the honest, live instance listed at `member`, if any.
    pub(super) fn note_removal(
        &mut self,
        t: Duration,
        member: SocketAddr,
        reason: Removal,
        honest_host: Option<IpAddr>,
    ) {
        if let Some(c) = self.attacks.chatters.get_mut(&member) {
            c.listed = false;
        }
        if reason == Removal::Replaced
            && let Some(ip) = honest_host
        {
            self.attacks.replaced.insert(member, (t, ip));
        }
    }

    /// End of run: replacements nobody was admitted for, and the attack metrics.
    pub(super) fn finish_attacks(&mut self, end: Duration) -> Vec<(MetricId, f64)> {
        for (member, (at, _)) in std::mem::take(&mut self.attacks.replaced) {
            self.count(MetricId::HonestEvictions, 1.0);
            self.find(
                Severity::Safety,
                "member_evicted",
                format!("{member}"),
                at,
                format!("honest member {member} was removed as replaced, and no admission replaced it by {end:?}"),
            );
        }
        if !self.attacks.any() {
            return Vec::new();
        }
        let open = self.attacks.conns.values().filter(|(_, closed)| !closed).count();
        let mut v = vec![(MetricId::AttackConnsOpenAtEnd, open as f64)];
        for id in [
            MetricId::AttackConns,
            MetricId::AttackConnsClosedByAuth,
            MetricId::AttackHandshakeFailures,
            MetricId::AttackAdmissions,
            MetricId::HonestEvictions,
            MetricId::ChatterLists,
            MetricId::ChatterListBytes,
            MetricId::ChatterExcessLists,
        ] {
            v.push((id, self.counters.get(&id).copied().unwrap_or(0.0)));
        }
        v
    }

    /// Time from a hostile connection's open to the authenticator closing it.
    pub(super) fn attack_close_latency(&self) -> &[f64] {
        &self.attacks.close_latency
    }
}
