//! Member lists: what the authenticator publishes and each joiner holds, and what they may
//! hold.
//!
//! Checks: `banned_member` (a banned or ban-flood attacker IP admitted, or in any list),
//! `unknown_member` (a joiner holds an address the authenticator never admitted),
//! `view_regressed` (a joiner received a list older than one it had: taken, or dropped by
//! the joiner, which reports it). Each admission and list
//! also goes to the attack checks ([`attacks`](super::attacks)), convergence
//! ([`liveness`](super::liveness)) and the distribution cost metrics.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pyile::MemberList;

use super::monitor::Monitor;
use crate::metrics::MetricId;
use crate::verdict::Severity;

/// A member list as seen by one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListView {
    /// Version (our authenticator's extension; None from the reference).
    pub version: Option<u64>,
    /// The members, authenticator first (an O(1) clone of the node's own list).
    pub members: MemberList,
    /// Encoded size.
    pub bytes: usize,
}

impl Monitor {
    /// The authenticator admitted `member` (connection from `source`).
    pub fn member_joined(&mut self, t: Duration, member: SocketAddr, source: IpAddr) {
        self.admitted.insert(member);
        self.names_joined(member);
        self.check_admission(t, member, source);
        if self.banned.contains(&source) || self.attacker_ips.contains(&source) {
            self.find(
                Severity::Safety,
                "banned_member",
                format!("a:{member}"),
                t,
                format!("admitted {member} from banned/attacker IP {source}"),
            );
        }
    }

    /// The authenticator published `list`.
    pub fn auth_list(&mut self, t: Duration, list: &ListView) {
        self.count(MetricId::ListChanges, 1.0);
        self.names_published(list.version);
        let finds = self.finds;
        // A list holding an address never admitted is no finding of its own (a joiner that
        // holds it is), but joiners' copies of it are then checked one by one.
        let mut unknown = false;
        for m in list.members.iter() {
            if self.banned.contains(&m.ip()) || self.attacker_ips.contains(&m.ip()) {
                self.find(
                    Severity::Safety,
                    "banned_member",
                    format!("a:{m}"),
                    t,
                    format!("authenticator list v{:?} holds {m}, a banned/attacker IP", list.version),
                );
            }
            unknown |= !self.admitted.contains(m) && !self.auth_peers.contains(m);
        }
        self.check_list_for_attackers(t, "a", &list.members);
        self.check_list_for_ghosts(t, None, &list.members);
        let clean = self.finds == finds && !unknown;
        self.view_published(&list.members, clean);
        self.count_chatter_publication();
        self.auth_members = list.members.iter().copied().collect();
        self.auth_versions.push((t, list.version));
        if let Some(v) = list.version {
            self.await_convergence(t, v, &list.members);
        }
    }

    /// Joiner `inst` received list `version` while holding the newer `held`, and dropped it:
    /// the authenticator regressed even though the joiner's view did not (`view_regressed`).
    pub fn stale_list(&mut self, t: Duration, inst: u64, version: u64, held: u64) {
        self.find(
            Severity::Safety,
            "view_regressed",
            format!("{inst}:{version}"),
            t,
            format!("joiner instance {inst} was sent list v{version} after v{held} (it dropped it)"),
        );
    }

    /// Joiner `inst` holds a (newer) list.
    pub fn joiner_list(&mut self, t: Duration, inst: u64, list: &ListView) {
        self.count(MetricId::DistMsgsPerChange, 1.0); // normalised in finish()
        self.count(MetricId::DistBytesPerChange, list.bytes as f64);
        if let Some(v) = list.version {
            self.names_list_taken(t, inst, v);
        }
        let Some(i) = self.instances.get(&inst) else { return };
        let own = i.addr;
        let who = format!("joiner instance {inst}");
        let regressed = matches!((i.last_version, list.version), (Some(prev), Some(v)) if v < prev);
        if let (Some(prev), Some(v)) = (i.last_version, list.version)
            && v < prev
        {
            self.find(
                Severity::Safety,
                "view_regressed",
                format!("{inst}:{v}"),
                t,
                format!("{who} received list v{v} after v{prev}"),
            );
        }
        // A list equal to the authenticator's of its version was judged when that was
        // published (see `views`): only its version bookkeeping is left.
        if !regressed && self.view_taken(t, inst, &list.members) {
            return self.joiner_list_taken(t, inst, list);
        }
        for m in list.members.iter() {
            if self.banned.contains(&m.ip()) || self.attacker_ips.contains(&m.ip()) {
                self.find(
                    Severity::Safety,
                    "banned_member",
                    format!("j:{m}"),
                    t,
                    format!("{who} holds {m}, a banned/attacker IP"),
                );
            }
            if Some(*m) != own && !self.admitted.contains(m) && !self.auth_peers.contains(m) {
                self.find(
                    Severity::Safety,
                    "unknown_member",
                    format!("{m}"),
                    t,
                    format!("{who} holds {m}, never admitted by the authenticator"),
                );
            }
        }
        self.check_list_for_attackers(t, "j", &list.members);
        self.check_list_for_ghosts(t, Some(inst), &list.members);
        self.joiner_list_taken(t, inst, list);
    }

    /// The version bookkeeping of a list joiner `inst` took (after its checks).
    fn joiner_list_taken(&mut self, t: Duration, inst: u64, list: &ListView) {
        let Some(i) = self.instances.get_mut(&inst) else { return };
        if let Some(v) = list.version {
            i.last_version = Some(i.last_version.map_or(v, |p| p.max(v)));
            i.version_seen = i.last_version;
            self.list_received(t, inst, v);
        }
    }
}
