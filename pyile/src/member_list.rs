//! The member list: what a distribution carries.
//!
//! The authenticator is itself a member: its own peer address is always the
//! first entry. Lists from our authenticator carry a `version` (an extension
//! key the reference ignores), strictly increasing with every change, so a
//! joiner can refuse to regress to an older list and a simulator can tell
//! which list each joiner holds. Lists from the reference have no version.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A member list as distributed: peer addresses, authenticator first.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MemberList {
    /// Monotonic list number from our authenticator; `None` from the reference.
    pub version: Option<u64>,
    /// Peer addresses of every member, authenticator first.
    pub members: Arc<[SocketAddr]>,
}

impl MemberList {
    /// A list from its parts.
    pub fn new(version: Option<u64>, members: impl Into<Arc<[SocketAddr]>>) -> Self {
        MemberList { version, members: members.into() }
    }

    /// Whether `addr` is a member.
    pub fn contains(&self, addr: &SocketAddr) -> bool {
        self.members.contains(addr)
    }

    /// Whether some member's peer address has this IP (the reference's check
    /// for accepting an incoming message).
    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        self.members.iter().any(|m| m.ip() == ip)
    }

    /// Number of members, the authenticator included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the list is empty (never true for a list from an authenticator).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members in list order.
    pub fn iter(&self) -> impl Iterator<Item = &SocketAddr> {
        self.members.iter()
    }

    /// Whether a joiner holding `self` should take `newer`: always for
    /// unversioned lists (the reference), else only a strictly newer version.
    pub fn is_superseded_by(&self, newer: &MemberList) -> bool {
        match (self.version, newer.version) {
            (Some(old), Some(new)) => new > old,
            _ => true,
        }
    }
}
