//! Liveness: members converge on the authenticator's list.
//!
//! During the run, each published version waits for the healthy members it lists; the time
//! to its last receipt is a convergence sample (members that stop answering are no longer
//! waited for). At the end of a run with `settle` > 0, `not_converged` fires for a live,
//! healthy joiner that is not in the authenticator's list or does not hold the list it
//! published a grace period before the end (later changes may still be in flight).

use std::collections::BTreeSet;
use std::time::Duration;

use pyile::units::Dur;

use super::monitor::{Instance, Monitor};
use crate::verdict::Severity;

/// A published list version and the healthy members that have yet to receive it.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    pub(super) published: Duration,
    pub(super) waiting: BTreeSet<u64>,
    pub(super) last_receipt: Option<Duration>,
}

impl Monitor {
    /// The authenticator published version `v` listing `members`: every joined, healthy
    /// instance it lists that is not leaving must receive it.
    pub(super) fn await_convergence(&mut self, t: Duration, v: u64, members: &pyile::MemberList) {
        let waiting: BTreeSet<u64> = self
            .instances
            .iter()
            .filter(|(_, i)| {
                i.joined_at.is_some()
                    && i.leaving.is_none()
                    && i.ended.is_none()
                    && i.version_seen.is_none_or(|s| s < v)
                    && i.addr.is_some_and(|a| members.contains(&a))
            })
            .map(|(k, _)| *k)
            .filter(|k| self.healthy_now(self.instances[k].host))
            .collect();
        if !waiting.is_empty() {
            self.pending.insert(v, Pending { published: t, waiting, last_receipt: None });
        }
    }

    /// Instance `inst` holds version `v` (and so every older one).
    pub(super) fn list_received(&mut self, t: Duration, inst: u64, v: u64) {
        for p in self.pending.range_mut(..=v).map(|(_, p)| p) {
            if p.waiting.remove(&inst) {
                p.last_receipt = Some(t);
            }
        }
        self.complete_pending(t);
    }

    /// Versions nobody waits for any more become convergence samples.
    pub(super) fn complete_pending(&mut self, _t: Duration) {
        let done: Vec<u64> = self.pending.iter().filter(|(_, p)| p.waiting.is_empty()).map(|(v, _)| *v).collect();
        for v in done {
            let p = self.pending.remove(&v).unwrap();
            if let Some(r) = p.last_receipt {
                self.convergence.push((r - p.published).as_secs_f64());
            }
        }
    }

    /// The end-of-run liveness check at `end`; whether the run converged.
    pub(super) fn check_convergence(&mut self, end: Duration) -> bool {
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
                    format!("live joiner instance {k} (slot {}, {addr}) is not in the authenticator's list", i.joiner),
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
        ok
    }
}
