//! Membership from the joiners' side: a list may hold a joiner only while that joiner really
//! is a member.
//!
//! The other list checks take the authenticator's word for who was admitted; this one does
//! not. The runner chooses every joiner instance's peer address before it starts (see
//! [`Monitor::join_started`]), and each joiner reports, in its own simulated time, when it
//! finished its whole handshake (distribution connection included: the `Joined` event). From
//! that ground truth, check `ghost_member`:
//! - a list (the authenticator's or a joiner's) holds a joiner's address **before** that
//!   joiner finished its handshake, or although its handshake never finished — the reference
//!   implementation's best-known defect: it lists a joiner on `peer_address`, before the
//!   distribution connection, and keeps it when the handshake then fails;
//! - the authenticator still lists a joiner `heartbeat_timeout` + one interval (+ slack)
//!   after that joiner ended (left, or its join failed), with no fault on its host or the
//!   authenticator in between (faults are [`removals`](super::removals)' `stale_member`).
//!
//! Lists may be observed before the joiner's own report of the same instant (observations of
//! different hosts in one step arrive in any order), so a list that holds a joiner not yet
//! known to be complete is kept as a *claim* and judged when the joiner completes, fails or
//! the run ends. A joiner's own list may name the joiner itself (its first list does).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::monitor::Monitor;
use crate::verdict::Severity;

/// What the ghost check keeps.
#[derive(Clone, Debug, Default)]
pub(super) struct GhostState {
    /// Every joiner instance's peer address, chosen before it started.
    peers: BTreeMap<SocketAddr, u64>,
    /// Instance → the first time a list held it before it was known to be complete, and who
    /// held it.
    claims: BTreeMap<u64, (Duration, &'static str)>,
    /// Instances whose host crashed while they were joining: whether their last handshake
    /// message left before the crash is unknowable (the host's last observations are
    /// dropped), so they are not judged; `stale_member` still bounds how long they stay.
    cut: BTreeSet<u64>,
}

impl Monitor {
    /// Joiner instance `inst` will announce `peer` as its address.
    pub(super) fn note_peer(&mut self, inst: u64, peer: SocketAddr) {
        self.ghosts.peers.insert(peer, inst);
    }

    /// `ghost_member` on a list held at `t` by the authenticator (`holder` = `None`) or by
    /// joiner instance `holder`.
    pub(super) fn check_list_for_ghosts(&mut self, t: Duration, holder: Option<u64>, members: &pyile::MemberList) {
        let who = if holder.is_some() { "a joiner's list" } else { "the authenticator's list" };
        for m in members {
            let Some(&inst) = self.ghosts.peers.get(m) else { continue };
            if Some(inst) == holder {
                continue;
            }
            let Some(i) = self.instances.get(&inst) else { continue };
            let (joined_at, ended, host) = (i.joined_at, i.ended, i.host);
            if self.ghosts.cut.contains(&inst) {
                continue;
            }
            match (joined_at, ended) {
                (Some(j), _) if j <= t => {}
                (Some(j), _) => {
                    let detail = format!(
                        "{who} holds {m} at {}, before its joiner finished its handshake at {}",
                        pyile::units::Dur(t),
                        pyile::units::Dur(j)
                    );
                    self.find(Severity::Safety, "ghost_member", format!("{m}"), t, detail);
                }
                (None, Some(end)) => {
                    let detail = format!(
                        "{who} holds {m} at {}, but its joiner's handshake never completed (it ended at {})",
                        pyile::units::Dur(t),
                        pyile::units::Dur(end)
                    );
                    self.find(Severity::Safety, "ghost_member", format!("{m}"), t, detail);
                }
                _ => {
                    self.ghosts.claims.entry(inst).or_insert((t, who));
                }
            }
            if holder.is_none()
                && let Some(end) = ended
                && t > end + self.cfg.stale_bound()
                && !self.impaired_between(host, end, t)
            {
                let detail = format!(
                    "{who} still holds {m} at {}, {} after its joiner ended",
                    pyile::units::Dur(t),
                    pyile::units::Dur(t - end)
                );
                self.find(Severity::Safety, "ghost_member", format!("{m}:ended"), t, detail);
            }
        }
    }

    /// The host of joining instance `inst` crashed (call before [`Monitor::ended`]).
    pub fn join_cut(&mut self, inst: u64) {
        self.count(crate::metrics::MetricId::JoinsCutByCrash, 1.0);
        self.ghosts.cut.insert(inst);
        self.ghosts.claims.remove(&inst);
    }

    /// Instance `inst` finished its handshake at `t`: judge a list that held it earlier.
    pub(super) fn ghost_completed(&mut self, t: Duration, inst: u64, addr: SocketAddr) {
        if let Some((at, who)) = self.ghosts.claims.remove(&inst)
            && at < t
        {
            let detail = format!(
                "{who} holds {addr} at {}, before its joiner finished its handshake at {}",
                pyile::units::Dur(at),
                pyile::units::Dur(t)
            );
            self.find(Severity::Safety, "ghost_member", format!("{addr}"), at, detail);
        }
    }

    /// Instance `inst` ended at `t` without finishing its handshake: a list that held it held
    /// a ghost.
    pub(super) fn ghost_failed(&mut self, t: Duration, inst: u64) {
        if let Some((at, who)) = self.ghosts.claims.remove(&inst) {
            let addr = self.ghosts.peers.iter().find(|(_, i)| **i == inst).map(|(a, _)| *a);
            let detail = format!(
                "{who} holds {} at {}, but its joiner's handshake never completed (it failed at {})",
                addr.map_or_else(|| format!("instance {inst}"), |a| a.to_string()),
                pyile::units::Dur(at),
                pyile::units::Dur(t)
            );
            self.find(Severity::Safety, "ghost_member", format!("inst:{inst}"), at, detail);
        }
    }

    /// End of run: claims on joiners that never completed, and the authenticator's final list.
    pub(super) fn finish_ghosts(&mut self, end: Duration) {
        for (inst, (at, who)) in std::mem::take(&mut self.ghosts.claims) {
            let detail = format!(
                "{who} holds instance {inst}'s address at {}, but its handshake had not completed when the run ended",
                pyile::units::Dur(at)
            );
            self.find(Severity::Safety, "ghost_member", format!("inst:{inst}"), at, detail);
        }
        if self.auth_running {
            let members = pyile::MemberList::new(None, self.auth_members.iter().copied());
            self.check_list_for_ghosts(end, None, &members);
        }
    }
}
