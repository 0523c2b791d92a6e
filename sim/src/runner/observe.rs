//! Observations: what the hosts reported after a step, into the trace and the checkers.
//!
//! Hosts push [`Obs`] (pyile events and the runner's own join/attempt/broadcast outcomes);
//! the driver drains them in order, updates its joiner slots (a join completed, an instance
//! ended and may rejoin), feeds the [`Monitor`](crate::checkers::Monitor) in its own plain
//! vocabulary ([`ListView`], [`Removal`]) and records each as a trace event.

use std::net::SocketAddr;

use pyile::{EventKind, HandshakeStage, LostReason, MemberList, RemovalReason};
use serde_json::{Value, json};

use super::driver::{Driver, Slot};
use super::hosts::Obs;
use crate::checkers::{Change, ListView, Removal};
use crate::trace::TraceError;

/// A list as the checkers see it: an O(1) clone, whatever its size.
fn list_view(l: &MemberList, bytes: usize) -> ListView {
    ListView { version: l.version, members: l.clone(), bytes }
}

/// A list in the trace: version, length and contents fingerprint (O(1); the view checker
/// compares contents and order against the authenticator's, see `checkers::views`).
fn list_json(l: &MemberList) -> Value {
    json!({"v": l.version, "n": l.len(), "h": format!("{:016x}", l.fingerprint())})
}

fn removal(r: &RemovalReason) -> Removal {
    match r {
        RemovalReason::HeartbeatTimeout => Removal::HeartbeatTimeout,
        RemovalReason::Closed => Removal::Closed,
        RemovalReason::DistributionStalled => Removal::Stalled,
        RemovalReason::DistributionLost => Removal::DistributionLost,
        RemovalReason::Replaced => Removal::Replaced,
        RemovalReason::ProtocolError(_) => Removal::Protocol,
        RemovalReason::Left => Removal::Left,
    }
}

/// A pyile event as a trace kind and data.
fn describe(kind: &EventKind) -> (&'static str, Value) {
    match kind {
        EventKind::Handshake(stage) => (
            "handshake",
            match stage {
                HandshakeStage::Connected => json!({"stage": "connected"}),
                HandshakeStage::BannedStatus { banned } => json!({"stage": "banned_status", "banned": banned}),
                HandshakeStage::Authenticated { ok } => json!({"stage": "authenticated", "ok": ok}),
                HandshakeStage::FirstList(l) => json!({"stage": "first_list", "list": list_json(l)}),
                HandshakeStage::DistConnected => json!({"stage": "dist_connected"}),
            },
        ),
        EventKind::Joined { peer_addr, list } => {
            ("joined", json!({"peer": peer_addr.to_string(), "list": list_json(list)}))
        }
        EventKind::MemberJoined { member, source } => {
            ("member_joined", json!({"member": member.to_string(), "source": source.to_string()}))
        }
        EventKind::MemberListChanged { list, bytes } => ("list", json!({"list": list_json(list), "bytes": bytes})),
        EventKind::MemberRemoved { member, reason } => {
            ("member_removed", json!({"member": member.to_string(), "reason": format!("{reason:?}")}))
        }
        EventKind::AuthFailed { ip, attempts } => ("auth_failed", json!({"ip": ip.to_string(), "attempts": attempts})),
        EventKind::Banned { ip } => ("banned", json!({"ip": ip.to_string()})),
        EventKind::BanRefused { ip } => ("ban_refused", json!({"ip": ip.to_string()})),
        EventKind::HandshakeFailed { source, error } => {
            ("handshake_failed", json!({"source": source.to_string(), "error": error}))
        }
        EventKind::HeartbeatReceived { .. } => ("heartbeat", Value::Null),
        EventKind::HeartbeatMissed { peer, silent_for } => {
            ("heartbeat_missed", json!({"peer": peer.to_string(), "silent_us": silent_for.as_micros() as u64}))
        }
        EventKind::MessageReceived { from, broadcast, data, .. } => {
            ("message", json!({"from": from.to_string(), "broadcast": broadcast, "len": data.len()}))
        }
        EventKind::MessageRefused { source } => ("message_refused", json!({"source": source.to_string()})),
        EventKind::MessageDuplicate { from, msg_id, too_old, .. } => (
            "message_duplicate",
            json!({"from": from.to_string(), "epoch": msg_id.epoch, "seq": msg_id.seq, "too_old": too_old}),
        ),
        EventKind::AuthenticatorLost { reason } => (
            "authenticator_lost",
            json!({"reason": match reason { LostReason::Timeout => "timeout".to_string(), LostReason::Closed => "closed".to_string(), LostReason::Error(e) => format!("error: {e}") }}),
        ),
        EventKind::Left => ("left", Value::Null),
        EventKind::Lagged { dropped } => ("lagged", json!({"dropped": dropped})),
        EventKind::StaleList { version, held } => ("stale_list", json!({"version": version, "held": held})),
        EventKind::MemberAlias { member, alias } => {
            ("member_alias", json!({"member": member.to_string(), "alias": alias.as_ref()}))
        }
        EventKind::AliasRefused { source, alias, refusal } => {
            ("alias_refused", json!({"source": source.to_string(), "alias": alias, "refusal": refusal.as_str()}))
        }
        EventKind::PeerJoined { peer, alias, version } => {
            ("peer_joined", json!({"peer": peer.to_string(), "alias": alias.as_deref(), "v": version}))
        }
        EventKind::PeerLeft { peer, alias, reason, version } => (
            "peer_left",
            json!({"peer": peer.to_string(), "alias": alias.as_deref(), "reason": reason.as_str(), "v": version}),
        ),
        EventKind::AnnouncementsSkipped { from, to } => ("announcements_skipped", json!({"from": from, "to": to})),
    }
}

impl Driver<'_> {
    pub(super) fn drain(&mut self) -> Result<(), TraceError> {
        let obs = std::mem::take(&mut *self.shared.obs.borrow_mut());
        for (host, o) in obs {
            if !self.running[host] {
                continue; // a crashed host's last gasps are not observations
            }
            self.events += 1;
            self.observe(o)?;
        }
        Ok(())
    }

    fn observe(&mut self, o: Obs) -> Result<(), TraceError> {
        match o {
            Obs::AuthStarted { at, peer } => {
                self.monitor.auth_started(at, peer);
                self.record(at, "auth", "started", json!({"peer": peer.to_string()}))?;
            }
            Obs::AuthStartFailed { at, error } => {
                self.error = Some(format!("authenticator failed to start at {}: {error}", pyile::units::Dur(at)));
                self.record(at, "auth", "start_failed", json!({"error": error}))?;
            }
            Obs::Auth { at, kind } => {
                match &kind {
                    EventKind::MemberJoined { member, source } => self.monitor.member_joined(at, *member, *source),
                    EventKind::MemberListChanged { list, bytes } => {
                        self.monitor.chat_list(None, list);
                        self.monitor.auth_list(at, &list_view(list, *bytes))
                    }
                    EventKind::MemberRemoved { member, reason } => {
                        self.monitor.chat_member_removed(at, *member);
                        self.monitor.member_removed(at, *member, removal(reason))
                    }
                    EventKind::MessageReceived { from, msg_id, .. } => {
                        self.monitor.chat_delivered(at, None, *from, msg_id.map(|m| (m.epoch, m.seq)))
                    }
                    EventKind::MessageDuplicate { .. } => self.monitor.chat_duplicate_dropped(),
                    EventKind::Banned { ip } => self.monitor.banned(at, *ip),
                    EventKind::MemberAlias { member, alias } => self.monitor.member_alias(at, *member, alias),
                    EventKind::HandshakeFailed { source, .. } => self.monitor.handshake_failed(at, *source),
                    EventKind::Lagged { dropped } => {
                        self.error =
                            Some(format!("authenticator events lagged ({dropped} dropped): checkers incomplete"));
                    }
                    _ => {}
                }
                let (k, d) = describe(&kind);
                self.record(at, "auth", k, d)?;
            }
            Obs::JoinStarted { at, inst } => {
                if let Some(&slot) = self.inst_slot.get(&inst) {
                    let host = self.layout.joiners[slot].host;
                    let rejoin = self.rejoining.get(&inst).copied().unwrap_or(false);
                    let peer = SocketAddr::new(self.ips[host], super::hosts::peer_port(inst));
                    self.monitor.join_started(at, inst, slot, host, rejoin, peer);
                    let alias = super::hosts::alias_of(&self.shared.settings, slot, inst);
                    self.monitor.join_alias(at, inst, peer, &alias);
                }
                let n = self.inst_name(inst);
                self.record(at, &n, "join_started", Value::Null)?;
            }
            Obs::JoinFailed { at, inst, error, refused, alias_taken, impostor } => {
                if alias_taken {
                    self.monitor.alias_refused(at, inst);
                }
                if impostor {
                    self.monitor.impostor_refused();
                }
                if refused && let Some(&slot) = self.inst_slot.get(&inst) {
                    let ip = self.ips[self.layout.joiners[slot].host];
                    self.monitor.join_refused(inst, ip);
                }
                self.monitor.join_failed(at, inst);
                if let Some(slot) = self.current_slot(inst) {
                    self.slots[slot] = Slot::Idle;
                    self.maybe_rejoin(at, slot);
                }
                let n = self.inst_name(inst);
                self.record(at, &n, "join_failed", json!({"error": error}))?;
            }
            Obs::ImpostorCapture { at, group, capture } => {
                let Some(host) = self.layout.groups[group].impostor else { return Ok(()) };
                let g = &self.shared.settings.groups[group];
                let x = crate::checkers::ImpostorExchange {
                    source: capture.source,
                    offers_scram: g.impostor == Some(pyile::impostor::ImpostorKind::Scram),
                    requires_mutual: g.require_mutual_auth,
                    password: capture.cleartext.as_deref() == Some(self.shared.settings.password.as_str()),
                    trusted: capture.trusted,
                };
                self.monitor.impostor_exchange(at, &x);
                let name = self.layout.hosts[host].name.clone();
                self.record(
                    at,
                    &name,
                    "impostor_exchange",
                    json!({
                        "source": capture.source.to_string(),
                        "cleartext": capture.cleartext.is_some(),
                        "password": x.password,
                        "proof": capture.proof,
                        "trusted": capture.trusted,
                        "ended": capture.ended,
                    }),
                )?;
            }
            Obs::Joiner { at, inst, kind } => {
                match &kind {
                    EventKind::Joined { peer_addr, list } => {
                        self.monitor.chat_list(Some(inst), list);
                        self.monitor.joined(at, inst, *peer_addr, &list_view(list, 0));
                        self.peers.insert(inst, *peer_addr);
                        if let Some(slot) = self.current_slot(inst)
                            && self.slots[slot] == Slot::Joining(inst)
                        {
                            self.slots[slot] = Slot::Active(inst);
                        }
                    }
                    EventKind::MemberListChanged { list, bytes } => {
                        self.monitor.chat_list(Some(inst), list);
                        self.monitor.joiner_list(at, inst, &list_view(list, *bytes))
                    }
                    EventKind::MessageReceived { from, msg_id, .. } => {
                        self.monitor.chat_delivered(at, Some(inst), *from, msg_id.map(|m| (m.epoch, m.seq)))
                    }
                    EventKind::MessageDuplicate { .. } => self.monitor.chat_duplicate_dropped(),
                    EventKind::AuthenticatorLost { .. } => self.monitor.auth_lost(at, inst),
                    EventKind::StaleList { version, held } => self.monitor.stale_list(at, inst, *version, *held),
                    EventKind::Handshake(HandshakeStage::FirstList(list)) => {
                        if let Some(v) = list.version {
                            self.monitor.first_list(at, inst, v);
                        }
                    }
                    EventKind::PeerJoined { peer, alias, version } => {
                        let change = Change::Joined { peer: *peer, alias: alias.as_deref().map(str::to_owned) };
                        self.monitor.announced(at, inst, *version, change)
                    }
                    EventKind::PeerLeft { peer, alias, reason, version } => {
                        let change = Change::Left {
                            peer: *peer,
                            alias: alias.as_deref().map(str::to_owned),
                            reason: reason.as_str().to_owned(),
                        };
                        self.monitor.announced(at, inst, *version, change)
                    }
                    EventKind::AnnouncementsSkipped { from, to } => {
                        self.monitor.announcements_skipped(at, inst, *from, *to)
                    }
                    EventKind::Lagged { dropped } => {
                        self.error = Some(format!("joiner events lagged ({dropped} dropped): checkers incomplete"));
                    }
                    _ => {}
                }
                let (k, d) = describe(&kind);
                let n = self.inst_name(inst);
                self.record(at, &n, k, d)?;
            }
            Obs::DistConnected { inst, local } => {
                // Before the authenticator can have written to it: see `Evidence::watch`.
                self.evidence.watch(local);
                self.monitor.dist_connected(inst, local);
            }
            Obs::JoinerEnded { at, inst, tasks } => {
                if let Some(n) = tasks.filter(|&n| n > 0) {
                    self.error = Some(format!("joiner instance {inst} ended with {n} tasks still running"));
                }
                self.monitor.ended(at, inst);
                if let Some(slot) = self.current_slot(inst) {
                    let was_leaving = self.slots[slot] == Slot::Leaving(inst);
                    self.slots[slot] = Slot::Idle;
                    if !was_leaving {
                        self.maybe_rejoin(at, slot);
                    }
                }
                let n = self.inst_name(inst);
                self.record(at, &n, "ended", Value::Null)?;
            }
            Obs::BroadcastDone { at, id, from, msg_id, retries, inst, sent, delivered, failed } => {
                self.monitor.broadcast(sent, delivered);
                self.monitor.broadcast_finished(at, id, from, msg_id, retries);
                let n = inst.map(|i| self.inst_name(i)).unwrap_or_else(|| "auth".into());
                self.record(at, &n, "broadcast_done", json!({"sent": sent, "delivered": delivered, "failed": failed}))?;
            }
            Obs::AttemptStarted { at, host } => {
                self.monitor.attempt_started(at, self.ips[host]);
            }
            Obs::AttemptDone { at, host, started, correct, admitted, refused, error } => {
                self.monitor.attempt_result(at, self.ips[host], correct, admitted);
                if refused {
                    self.monitor.password_refused(self.ips[host], started);
                }
                let n = self.layout.hosts[host].name.clone();
                self.record(at, &n, "attempt_done", json!({"correct": correct, "admitted": admitted, "error": error}))?;
            }
            Obs::AttackOpened { at, host, conn, local } => self.attack_opened(at, host, conn, local)?,
            Obs::AttackClosed { at, host, conn, outcome } => self.attack_closed(at, host, conn, outcome)?,
        }
        Ok(())
    }
}
