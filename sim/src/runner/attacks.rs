//! The driver's side of an `attack`: each scheduled connection becomes an [`AttackScript`]
//! for its hostile host (addresses, spoof victims and garbage seeds decided here, from the
//! run's seed, and recorded in the trace), and what the hostile hosts report goes to the
//! trace and the [`Monitor`](crate::checkers::Monitor).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::driver::{Driver, Slot};
use super::hostile::{AttackScript, Outcome};
use super::hosts::Cmd;
use crate::checkers::AttackEnd;
use crate::layout::AUTH_HOST;
use crate::rng::derive_seed;
use crate::scenario::{AttackKind, Pick};
use crate::timeline::pick_n;
use crate::trace::TraceError;

impl Driver<'_> {
    /// Attacker `host` of attack `attack` opens one connection, if it is up.
    pub(super) fn attack(&mut self, now: Duration, attack: usize, host: usize) -> Result<(), TraceError> {
        if !self.running[host] {
            return Ok(());
        }
        let (entry, kind) = (self.layout.attacks[attack].entry, self.layout.attacks[attack].kind);
        let e = self.sc.timeline[entry].get_ref();
        let conn = self.next_conn;
        self.next_conn += 1;
        let peer = match kind {
            AttackKind::NoDist | AttackKind::DistChatter => {
                Some(SocketAddr::new(self.ips[host], 40_000 + (conn % 20_000) as u16))
            }
            AttackKind::SpoofAddress => Some(self.spoof_victim(conn)),
            _ => None,
        };
        let script = AttackScript {
            kind,
            bytes: e.attack_bytes().unwrap_or(0),
            interval: e.attack_interval().map(|d| d.get()).unwrap_or_default(),
            until: e.until.map(|u| u.get()),
            peer,
            seed: derive_seed(self.seed, &format!("attack:{conn}")),
        };
        if let Some(p) = peer {
            self.attack_peers.insert(conn, p);
        }
        self.shared.inboxes[host].send(Cmd::Attack { conn, script });
        let name = self.layout.hosts[host].name.clone();
        self.record(
            now,
            "sim",
            "attack",
            json!({"attack": attack, "kind": kind.name(), "host": name, "conn": conn, "peer": peer.map(|p| p.to_string())}),
        )
    }

    /// The address a spoofer announces: on even connections a live honest member's (an
    /// eviction attempt), otherwise, or with no member up, an unused port on an honest joiner
    /// host's IP (an attempt to list an address it does not own).
    fn spoof_victim(&mut self, conn: u64) -> SocketAddr {
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&s| matches!(self.slots[s], Slot::Active(i) if self.peers.contains_key(&i)))
            .collect();
        if conn.is_multiple_of(2)
            && let Some(&slot) = pick_n(&live, 1, Pick::Random, &mut self.rng).first()
            && let Slot::Active(inst) = self.slots[slot]
        {
            return self.peers[&inst];
        }
        let hosts = self.layout.target_hosts("joiners");
        let h = pick_n(&hosts, 1, Pick::Random, &mut self.rng).first().copied().unwrap_or(AUTH_HOST);
        SocketAddr::new(self.ips[h], 1 + (conn % 1000) as u16)
    }

    /// A hostile connection is up.
    pub(super) fn attack_opened(
        &mut self,
        at: Duration,
        host: usize,
        conn: u64,
        local: SocketAddr,
    ) -> Result<(), TraceError> {
        self.monitor.attack_opened(at, conn, host);
        let name = self.layout.hosts[host].name.clone();
        self.record(at, &name, "attack_open", json!({"conn": conn, "local": local.to_string()}))
    }

    /// A hostile connection ended.
    pub(super) fn attack_closed(&mut self, at: Duration, host: usize, conn: u64, o: Outcome) -> Result<(), TraceError> {
        let peer = self.attack_peers.get(&conn).copied();
        let end = AttackEnd { by_auth: o.by_auth, member: o.member, lists: o.lists, list_bytes: o.list_bytes, peer };
        self.monitor.attack_closed(at, conn, &end);
        let name = self.layout.hosts[host].name.clone();
        self.record(
            at,
            &name,
            "attack_closed",
            json!({
                "conn": conn,
                "by": if o.by_auth { "auth" } else { "self" },
                "detail": o.detail,
                "member": o.member,
                "lists": o.lists,
                "list_bytes": o.list_bytes,
            }),
        )
    }
}
