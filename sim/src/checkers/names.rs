//! Names and announcements: unique aliases, the joins and leaves the authenticator announces
//! to protocol-2 members, and graceful leaves told apart from crashes.
//!
//! Checks:
//! - `alias_duplicated`: the authenticator admitted a member with an alias another live
//!   member (by its own list) still holds.
//! - `alias_refused_free`: a joiner was refused with `alias_taken` although no other
//!   instance with that alias held it: none was in its handshake (from its join's start to
//!   its end, plus the bound the authenticator needs to notice a handshake that died) or
//!   listed (until the authenticator removed it), around the refusal (± latency slack).
//! - `announcement_missed` / `announcement_wrong` / `announcement_repeated`: a live member
//!   of the current authenticator incarnation must see every change after its first whole
//!   list (each removal with its reason and alias, each admission with its alias) exactly
//!   once, in the authenticator's order, before it takes the list that change made; unless
//!   it reported `AnnouncementsSkipped`, which moves it past the versions it skipped.
//! - `left_misreported`: a member the runner told to leave (gracefully: it says so) was
//!   removed with another reason although neither it nor the authenticator had a fault since
//!   the leave began; or a member the runner never told to leave (a crash, a cut) was
//!   removed as `left`.
//!
//! The authenticator's changes are learned from its events, in the order it emits them under
//! its state lock: removals (`member_removed`), the admission (`member_joined`) and its alias
//! (`member_alias`), then the list they made (`auth_list`), which numbers them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use pyile::units::Dur;

use super::monitor::Monitor;
use super::removals::Removal;
use crate::metrics::MetricId;
use crate::verdict::Severity;

/// One change of the member list, as the authenticator made it or a member heard of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `peer` was admitted with `alias`.
    Joined {
        /// Its peer address.
        peer: SocketAddr,
        /// Its alias.
        alias: Option<String>,
    },
    /// `peer` (with `alias`) was removed for `reason` (its wire name: `left`, `timeout`, ...).
    Left {
        /// Its peer address.
        peer: SocketAddr,
        /// Its alias.
        alias: Option<String>,
        /// Why, as announced.
        reason: String,
    },
}

/// How a removal is announced on the wire.
pub(super) fn wire_reason(r: Removal) -> &'static str {
    match r {
        Removal::HeartbeatTimeout => "timeout",
        Removal::Closed => "closed",
        Removal::Stalled => "stalled",
        Removal::DistributionLost => "distribution_lost",
        Removal::Replaced => "replaced",
        Removal::Protocol => "error",
        Removal::Left => "left",
    }
}

/// What the name and announcement checks keep.
#[derive(Clone, Debug, Default)]
pub(super) struct NameState {
    /// Each instance's alias.
    alias_of_inst: BTreeMap<u64, String>,
    /// The instance that announces each peer address (the newest).
    inst_by_peer: BTreeMap<SocketAddr, u64>,
    /// Per alias, the instances that took it and when their hold began and ended (None:
    /// still held), and whether they had been admitted.
    holds: BTreeMap<String, Vec<Hold>>,
    /// The authenticator's live members' aliases (current incarnation).
    alias_by_member: BTreeMap<SocketAddr, String>,
    /// The authenticator's changes by the version they made (current incarnation).
    changes: BTreeMap<u64, Vec<Change>>,
    /// Changes emitted but not yet numbered by a list.
    pending: Vec<Change>,
    /// Each live instance's next expected announcement: (version, index in its changes).
    cursor: BTreeMap<u64, (u64, usize)>,
}

/// One instance's hold on an alias.
#[derive(Clone, Debug)]
struct Hold {
    inst: u64,
    start: Duration,
    end: Option<Duration>,
    admitted: bool,
}

impl Monitor {
    /// Join attempt `inst`, which will listen at `peer`, presents `alias`.
    pub fn join_alias(&mut self, t: Duration, inst: u64, peer: SocketAddr, alias: &str) {
        self.names.alias_of_inst.insert(inst, alias.to_owned());
        self.names.inst_by_peer.insert(peer, inst);
        self.names.holds.entry(alias.to_owned()).or_default().push(Hold { inst, start: t, end: None, admitted: false });
    }

    /// Ends instance `inst`'s hold on its alias at `t` (its handshake failed or ended, or the
    /// authenticator removed it).
    fn release_alias(&mut self, t: Duration, inst: u64, admitted_only: bool) {
        let Some(alias) = self.names.alias_of_inst.get(&inst) else { return };
        if let Some(h) = self.names.holds.get_mut(alias).and_then(|v| v.iter_mut().rev().find(|h| h.inst == inst))
            && h.end.is_none()
            && (!admitted_only || h.admitted)
        {
            h.end = Some(t);
        }
    }

    /// Instance `inst` ended or failed to join at `t`: if it was never admitted, its
    /// handshake's hold ends (the authenticator may still need its handshake bound to see
    /// that; [`Monitor::alias_refused`] allows for it).
    pub(super) fn names_instance_ended(&mut self, t: Duration, inst: u64) {
        let admitted = self.instances.get(&inst).is_some_and(|i| i.joined_at.is_some());
        if !admitted {
            self.release_alias(t, inst, false);
        }
        self.names.cursor.remove(&inst);
    }

    /// The authenticator admitted `member` (the admission's alias follows, if any).
    pub(super) fn names_joined(&mut self, member: SocketAddr) {
        self.names.pending.push(Change::Joined { peer: member, alias: None });
    }

    /// The authenticator's newest admission, `member`, holds `alias`.
    pub fn member_alias(&mut self, t: Duration, member: SocketAddr, alias: &str) {
        if let Some(Change::Joined { peer, alias: a }) = self.names.pending.last_mut()
            && *peer == member
        {
            *a = Some(alias.to_owned());
        }
        if let Some((other, _)) = self.names.alias_by_member.iter().find(|(m, a)| **m != member && a.as_str() == alias)
        {
            let other = *other;
            self.find(
                Severity::Safety,
                "alias_duplicated",
                alias.to_owned(),
                t,
                format!("{member} admitted as {alias:?} while {other} is listed with that alias"),
            );
        }
        self.names.alias_by_member.insert(member, alias.to_owned());
        if let Some(&inst) = self.names.inst_by_peer.get(&member)
            && let Some(h) = self.names.holds.get_mut(alias).and_then(|v| v.iter_mut().rev().find(|h| h.inst == inst))
        {
            h.admitted = true;
        }
    }

    /// The authenticator removed `member` for `reason` at `t`.
    pub(super) fn names_removed(&mut self, t: Duration, member: SocketAddr, reason: Removal) {
        let alias = self.names.alias_by_member.remove(&member);
        self.names.pending.push(Change::Left { peer: member, alias, reason: wire_reason(reason).to_owned() });
        if reason == Removal::Left {
            self.count(MetricId::LeavesGraceful, 1.0);
        }
        let Some(&inst) = self.names.inst_by_peer.get(&member) else { return };
        self.release_alias(t, inst, true);
        let Some(i) = self.instances.get(&inst).cloned() else { return };
        if !i.honest || i.incarnation != self.auth_incarnation {
            return;
        }
        match (reason, i.leaving) {
            (Removal::Left, None) => self.find(
                Severity::Safety,
                "left_misreported",
                format!("{member}"),
                t,
                format!("{member} removed as left, but it never said it was leaving (a crash or a cut)"),
            ),
            (Removal::Left | Removal::Replaced, _) => {}
            (other, Some(since)) if !self.impaired_between(i.host, since, t) => self.find(
                Severity::Safety,
                "left_misreported",
                format!("{member}"),
                t,
                format!(
                    "{member} began a graceful leave at {} and was removed as {} ({other:?}), with no fault since",
                    Dur(since),
                    wire_reason(other)
                ),
            ),
            _ => {}
        }
    }

    /// The authenticator published `version`: the changes since the last one made it.
    pub(super) fn names_published(&mut self, version: Option<u64>) {
        let changes = std::mem::take(&mut self.names.pending);
        if let Some(v) = version {
            self.names.changes.insert(v, changes);
        }
    }

    /// A new authenticator incarnation: no members, versions from scratch. Every hold of an
    /// alias by an admitted member ends with the old incarnation.
    pub(super) fn names_restart(&mut self, t: Duration) {
        self.names.alias_by_member.clear();
        self.names.changes.clear();
        self.names.pending.clear();
        self.names.cursor.clear();
        for h in self.names.holds.values_mut().flatten() {
            if h.admitted && h.end.is_none() {
                h.end = Some(t);
            }
        }
    }

    /// Joiner `inst` was refused at `t` because its alias was taken.
    pub fn alias_refused(&mut self, t: Duration, inst: u64) {
        self.count(MetricId::AliasesRefused, 1.0);
        let Some(alias) = self.names.alias_of_inst.get(&inst).cloned() else { return };
        let slack = self.cfg.slack();
        // A handshake that died unseen holds its alias until the authenticator's handshake
        // deadline; the stale bound is longer than any handshake timeout of the scenarios.
        let unadmitted_grace = self.cfg.stale_bound();
        let held = self.names.holds.get(&alias).is_some_and(|v| {
            v.iter().any(|h| {
                h.inst != inst
                    && h.start <= t
                    && h.end.is_none_or(|e| e + slack + if h.admitted { Duration::ZERO } else { unadmitted_grace } >= t)
            })
        });
        // A refused join never held the alias: it justifies no later refusal.
        if let Some(v) = self.names.holds.get_mut(&alias) {
            v.retain(|h| h.inst != inst);
        }
        if !held {
            self.find(
                Severity::Safety,
                "alias_refused_free",
                format!("{alias}@{}", Dur(t)),
                t,
                format!("join #{inst} refused: alias {alias:?} taken, but no other member or handshake held it"),
            );
        }
    }

    /// Joiner `inst` heard `change`, made by list `version`.
    pub fn announced(&mut self, t: Duration, inst: u64, version: u64, change: Change) {
        self.count(MetricId::Announcements, 1.0);
        if !self.announcing(inst) {
            return;
        }
        let Some(&cursor) = self.names.cursor.get(&inst) else { return };
        let (cv, ci) = self.normalized(cursor);
        let pos = self.names.changes.get(&version).and_then(|l| l.iter().position(|c| *c == change));
        let next = match pos {
            None => {
                let made = self.names.changes.get(&version).cloned().unwrap_or_default();
                self.find(
                    Severity::Safety,
                    "announcement_wrong",
                    format!("#{inst}/v{version}"),
                    t,
                    format!("joiner #{inst} heard {change:?} of v{version}; the authenticator made {made:?}"),
                );
                (cv, ci)
            }
            Some(p) if (version, p) < (cv, ci) => {
                self.find(
                    Severity::Safety,
                    "announcement_repeated",
                    format!("#{inst}/v{version}"),
                    t,
                    format!("joiner #{inst} heard {change:?} of v{version} again (it was at v{cv} #{ci})"),
                );
                (cv, ci)
            }
            Some(p) => {
                if (version, p) > (cv, ci) {
                    self.find(
                        Severity::Safety,
                        "announcement_missed",
                        format!("#{inst}/v{cv}"),
                        t,
                        format!("joiner #{inst} was not told of the changes from v{cv} #{ci} before {change:?} of v{version}"),
                    );
                }
                (version, p + 1)
            }
        };
        let next = self.normalized(next);
        self.names.cursor.insert(inst, next);
    }

    /// A cursor moved past the versions whose changes it has passed.
    fn normalized(&self, (mut v, mut i): (u64, usize)) -> (u64, usize) {
        while self.names.changes.get(&v).is_some_and(|l| i >= l.len()) {
            v += 1;
            i = 0;
        }
        (v, i)
    }

    /// Joiner `inst`'s handshake brought the committed list `version` (a protocol-2
    /// authenticator's first list): the deltas after it, its own admission first, must
    /// announce every change from the next version on.
    pub fn first_list(&mut self, _t: Duration, inst: u64, version: u64) {
        if self.announcing(inst) {
            self.names.cursor.insert(inst, (version + 1, 0));
        }
    }

    /// Joiner `inst` took a whole list that jumped from `from` to `to`: it cannot know what
    /// changed in between.
    pub fn announcements_skipped(&mut self, _t: Duration, inst: u64, _from: u64, to: u64) {
        self.count(MetricId::AnnouncementsSkipped, 1.0);
        if self.announcing(inst) {
            self.names.cursor.insert(inst, (to + 1, 0));
        }
    }

    /// Joiner `inst` took list `version`: every change up to it must have been announced
    /// (or skipped) by now. Its first versioned list starts the announcements.
    pub(super) fn names_list_taken(&mut self, t: Duration, inst: u64, version: u64) {
        if !self.announcing(inst) {
            return;
        }
        if let Some(&(cv, ci)) = self.names.cursor.get(&inst)
            && cv <= version
        {
            let missed: Vec<Change> = (cv..=version)
                .flat_map(|v| {
                    let skip = if v == cv { ci } else { 0 };
                    self.names.changes.get(&v).into_iter().flatten().skip(skip).cloned().collect::<Vec<_>>()
                })
                .take(3)
                .collect();
            if !missed.is_empty() {
                self.find(
                    Severity::Safety,
                    "announcement_missed",
                    format!("#{inst}/v{cv}"),
                    t,
                    format!("joiner #{inst} took v{version} without hearing {missed:?} (from v{cv})"),
                );
            }
        }
        self.names.cursor.insert(inst, (version + 1, 0));
    }

    /// The changes emitted and not yet numbered by a list (what the next list announces).
    #[cfg(test)]
    pub(super) fn pending_changes(&self) -> Vec<Change> {
        self.names.pending.clone()
    }

    /// Whether `inst`'s announcements are judged: an honest instance of the current
    /// authenticator incarnation.
    fn announcing(&self, inst: u64) -> bool {
        self.instances.get(&inst).is_some_and(|i| i.honest && i.incarnation == self.auth_incarnation)
    }
}
