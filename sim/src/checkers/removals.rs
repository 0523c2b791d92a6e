//! Removals: a member removed too late, or wrongly.
//!
//! Checks: `stale_member` (the authenticator still lists a member `heartbeat_timeout` + one
//! interval + slack after its host stopped answering; the deadlines are set when the
//! impairment starts and judged by [`Monitor::tick`]) and `false_removal` (removed though
//! neither it nor the authenticator had a fault since it joined, and it was not leaving; or
//! removed for a lost distribution although the network's ground truth shows its stream
//! intact, judged once the streams are quiet by [`Monitor::judge_distribution_losses`]).

use std::net::SocketAddr;
use std::time::Duration;

use pyile::units::Dur;

use super::impairments::Impairment;
use super::monitor::Monitor;
use crate::metrics::MetricId;
use crate::verdict::Severity;

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
    /// It said it was leaving (a graceful leave, protocol 2).
    Left,
}

/// A `DistributionLost` removal, judged against the network's ground truth at the end.
#[derive(Clone, Debug)]
pub(super) struct DistLoss {
    pub(super) at: Duration,
    pub(super) member: SocketAddr,
    pub(super) dist: SocketAddr,
    pub(super) joined: Duration,
}

/// When a listed member whose host stopped answering must be gone by.
#[derive(Clone, Debug)]
pub(super) struct Deadline {
    pub(super) inst: u64,
    pub(super) kind: Impairment,
    pub(super) id: u64,
    pub(super) since: Duration,
    pub(super) auth_incarnation: u64,
}

impl Monitor {
    /// The authenticator removed `member`.
    pub fn member_removed(&mut self, t: Duration, member: SocketAddr, reason: Removal) {
        self.names_removed(t, member, reason);
        if matches!(reason, Removal::HeartbeatTimeout | Removal::Stalled | Removal::DistributionLost) {
            self.count(MetricId::TimeoutRemovals, 1.0);
        }
        if reason == Removal::DistributionLost {
            self.count(MetricId::DistLostRemovals, 1.0);
        }
        self.auth_members.remove(&member);
        let honest_host = self.by_addr.get(&member).map(|k| &self.instances[k]).filter(|i| i.honest).map(|i| i.host);
        self.note_removal(t, member, reason, honest_host.map(|h| self.host_ips[h]));
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

    // ---------------------------------------------------------------- stale members: deadlines

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
}
