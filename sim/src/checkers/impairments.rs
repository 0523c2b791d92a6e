//! Ground truth about faults: which hosts' links to the authenticator are impaired (crash,
//! partition, hold, loss), since when, and which impairments ended when.
//!
//! The driver reports each fault as it applies and ends it. The checks ask two questions of
//! this history: was a host (or the authenticator) impaired at any time in a window (a removal
//! in a fault-free window is false), and is it healthy now (only healthy members must
//! converge). An impairment also stops the clocks that the stale-member deadlines and the
//! convergence samples run on.

use std::collections::BTreeMap;
use std::time::Duration;

use super::monitor::Monitor;
use super::removals::Deadline;

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

/// One host's impairments: those in force and those that ended.
#[derive(Clone, Debug, Default)]
pub(super) struct HostState {
    /// Active impairments: (kind, id) → since.
    pub(super) active: BTreeMap<(Impairment, u64), Duration>,
    /// Ended impairments: (start, end).
    pub(super) past: Vec<(Duration, Duration)>,
}

impl HostState {
    /// Whether any impairment of this host overlapped `[a, b]`.
    pub(super) fn impaired_between(&self, a: Duration, b: Duration) -> bool {
        self.active.values().any(|&s| s <= b) || self.past.iter().any(|&(s, e)| s <= b && e >= a)
    }

    /// Whether an impairment is in force.
    pub(super) fn impaired_now(&self) -> bool {
        !self.active.is_empty()
    }
}

impl Monitor {
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
    pub(super) fn impaired_between(&self, host: usize, a: Duration, b: Duration) -> bool {
        self.cfg.global_loss || self.hosts[host].impaired_between(a, b) || self.hosts[0].impaired_between(a, b)
    }

    /// Whether neither `host` nor the authenticator is impaired now (and no global loss).
    pub(super) fn healthy_now(&self, host: usize) -> bool {
        !self.cfg.global_loss && !self.hosts[host].impaired_now() && !self.hosts[0].impaired_now()
    }
}
