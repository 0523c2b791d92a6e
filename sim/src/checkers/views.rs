//! Views: every joiner's list, however it got there (whole lists, deltas, merged deltas),
//! must be exactly the authenticator's list of the same version.
//!
//! Check `view_diverged`: a joiner holds version `v` with other members than the
//! authenticator's `v`, or in another order. Every list a joiner takes is compared at once
//! by contents ([`pyile::MemberList::fingerprint`] and length, O(1)); the order too (O(n))
//! is compared for each instance's last list, when it ends and at the end of the run. Lists
//! are persistent structures, so keeping every published version and each joiner's last
//! list costs only what differs between them.
//!
//! The same comparison makes the other list checks cheap: a joiner's list that equals the
//! authenticator's `v` holds nothing the checks of the authenticator's `v` (run once, when it
//! was published) did not already judge, unless a ban or a newly tainted address came in
//! between, which bumps a generation counter; only then, or on a mismatch, or for a list the
//! monitor cannot match (unversioned, from an earlier authenticator incarnation), are a
//! joiner's members checked one by one again. That is what keeps a 1,000-joiner run's
//! checking at O(change) per list instead of O(members).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use pyile::MemberList;

use super::monitor::Monitor;
use crate::verdict::Severity;

/// What the view check keeps.
#[derive(Clone, Debug, Default)]
pub(super) struct ViewState {
    /// The current authenticator incarnation's lists, by version, with the generation they
    /// were checked at (None: the checks found something in it, so joiners' copies are
    /// checked one by one too and the findings name them).
    auth: BTreeMap<u64, (MemberList, Option<u64>)>,
    /// Bumped whenever a ban or an attacker address changes what the list checks find.
    generation: u64,
    /// Each live instance's last list and the incarnation it came from.
    last: BTreeMap<u64, (MemberList, u64)>,
}

impl ViewState {
    /// Something the per-member list checks look at changed (a ban, a tainted address).
    pub(super) fn changed(&mut self) {
        self.generation += 1;
    }
}

/// Up to three addresses of `a` missing from `b`, for a finding's detail.
fn missing(a: &MemberList, b: &MemberList) -> Vec<SocketAddr> {
    a.iter().filter(|m| !b.contains(m)).take(3).copied().collect()
}

impl Monitor {
    /// The authenticator published `list` (current incarnation); `clean` if the list checks
    /// found nothing in it.
    pub(super) fn view_published(&mut self, list: &MemberList, clean: bool) {
        if let Some(v) = list.version {
            self.views.auth.insert(v, (list.clone(), clean.then_some(self.views.generation)));
        }
    }

    /// A new authenticator incarnation numbers its lists from scratch.
    pub(super) fn views_restart(&mut self) {
        self.views.auth.clear();
    }

    /// Joiner `inst` took `list` at `t`: compare it with the authenticator's list of the same
    /// version. Returns true when the per-member list checks may skip it (it equals a list
    /// already checked, and nothing they judge by changed since).
    pub(super) fn view_taken(&mut self, t: Duration, inst: u64, list: &MemberList) -> bool {
        let Some(v) = list.version else { return false };
        let Some(i) = self.instances.get(&inst) else { return false };
        if i.incarnation != self.auth_incarnation {
            return false;
        }
        self.views.last.insert(inst, (list.clone(), i.incarnation));
        let Some((auth, generation)) = self.views.auth.get(&v) else { return false };
        let generation = *generation;
        if auth.len() == list.len() && auth.fingerprint() == list.fingerprint() {
            return generation == Some(self.views.generation);
        }
        let (extra, lacking) = (missing(list, auth), missing(auth, list));
        let detail = format!(
            "joiner instance {inst} holds v{v} with {} members, the authenticator's v{v} has {}: it holds {extra:?} \
             the authenticator did not list, and lacks {lacking:?}",
            list.len(),
            auth.len()
        );
        self.find(Severity::Safety, "view_diverged", format!("{inst}:{v}"), t, detail);
        false
    }

    /// Instance `inst` ended at `t` (or the run did): its last list, in order.
    pub(super) fn view_final(&mut self, t: Duration, inst: u64) {
        let Some((list, incarnation)) = self.views.last.remove(&inst) else { return };
        let Some(v) = list.version else { return };
        if incarnation != self.auth_incarnation {
            return;
        }
        let Some((auth, _)) = self.views.auth.get(&v) else { return };
        if *auth == list {
            return;
        }
        let at = list.iter().zip(auth.iter()).take_while(|(a, b)| a == b).count();
        let detail = format!(
            "joiner instance {inst}'s last list v{v} is not the authenticator's v{v}: from entry {at} on it holds \
             {:?}, the authenticator {:?}",
            list.iter().skip(at).take(4).collect::<Vec<_>>(),
            auth.iter().skip(at).take(4).collect::<Vec<_>>()
        );
        self.find(Severity::Safety, "view_diverged", format!("{inst}:{v}:order"), t, detail);
    }

    /// End of run: the last list of every instance still holding one.
    pub(super) fn finish_views(&mut self, end: Duration) {
        let insts: Vec<u64> = self.views.last.keys().copied().collect();
        for inst in insts {
            self.view_final(end, inst);
        }
    }
}
