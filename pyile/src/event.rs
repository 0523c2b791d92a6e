//! Events: what happens to an authenticator or joiner, as a typed stream.
//!
//! This is the reference's `Messenger`, done as a channel. `sim` and
//! `loadgen` measure through it, so each event is stamped with
//! `tokio::time::Instant` (simulated time under turmoil) at the moment the
//! protocol code observed it, and carries the addresses and sizes a
//! measurement needs. The channel is bounded and the protocol never waits on
//! it: when the consumer falls behind, events are dropped and the consumer is
//! told how many with [`EventKind::Lagged`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::member_list::{Departure, MemberList};
use crate::wire::{ChatId, Refusal};

/// Default capacity of an event channel.
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;

/// One event, stamped with the (tokio) time it happened.
#[derive(Clone, Debug)]
pub struct Event {
    /// When it happened (`tokio::time`, simulated under turmoil).
    pub at: Instant,
    /// What happened.
    pub kind: EventKind,
}

/// A joiner's progress through the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeStage {
    /// The TCP connection to the authenticator is up.
    Connected,
    /// The banned status arrived.
    BannedStatus {
        /// What it said.
        banned: bool,
    },
    /// The password check result arrived.
    Authenticated {
        /// Whether the password was accepted.
        ok: bool,
    },
    /// The first member list arrived, as sent: a reference authenticator's provisional list
    /// (unversioned, the joiner itself last), or a protocol-2 authenticator's committed list
    /// (versioned; the deltas that follow start from it, and the joiner's own view until
    /// then is this list with itself last: `Joined` carries that).
    FirstList(MemberList),
    /// The distribution connection is up: the handshake is complete.
    DistConnected,
}

/// Why the authenticator removed a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemovalReason {
    /// No heartbeat answer within `heartbeat_timeout`.
    HeartbeatTimeout,
    /// The member closed or reset its connection (graceful leave or crash).
    Closed,
    /// The member stopped reading member lists (writes timed out).
    DistributionStalled,
    /// The member keeps answering heartbeats, but its answers show it still
    /// lacks a member list published longer than `heartbeat_timeout` plus one
    /// heartbeat interval ago: its distribution connection is
    /// dead although its auth connection lives (a lost segment, a middlebox
    /// dropping one flow). Protocol-2 members only: they report the version
    /// they hold in every heartbeat answer. Both its connections are closed,
    /// so the member sees the authenticator go and can join again.
    DistributionLost,
    /// The same peer address joined again; the old membership was dropped.
    Replaced,
    /// The member sent something the protocol does not allow.
    ProtocolError(String),
    /// The member said it was leaving (`{"leaving": true}`, protocol 2): a graceful leave,
    /// told apart from a crash (`Closed`, `HeartbeatTimeout`).
    Left,
}

impl RemovalReason {
    /// How deltas announce this removal to the other members.
    pub fn departure(&self) -> Departure {
        match self {
            RemovalReason::HeartbeatTimeout => Departure::Timeout,
            RemovalReason::Closed => Departure::Closed,
            RemovalReason::DistributionStalled => Departure::Stalled,
            RemovalReason::DistributionLost => Departure::DistributionLost,
            RemovalReason::Replaced => Departure::Replaced,
            RemovalReason::ProtocolError(_) => Departure::Error,
            RemovalReason::Left => Departure::Left,
        }
    }
}

/// Why a joiner considers its authenticator lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// No heartbeat within the joiner's heartbeat timeout.
    Timeout,
    /// The authenticator closed the connection (an EOF, or a reset when it
    /// closed with data of ours unread).
    Closed,
    /// A read or write failed.
    Error(String),
}

/// What happened.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// Joiner: a handshake step completed.
    Handshake(HandshakeStage),
    /// Joiner: the whole handshake is done; `list` is the first member list.
    Joined {
        /// Where this joiner receives messages.
        peer_addr: SocketAddr,
        /// The first member list (it includes this joiner).
        list: MemberList,
    },
    /// Authenticator: a member was admitted after its full handshake.
    MemberJoined {
        /// Its peer address.
        member: SocketAddr,
        /// The source IP of its connection.
        source: IpAddr,
    },
    /// Authenticator: a new list was published. Joiner: a newer list arrived, whole or as
    /// deltas; deltas read together (written back to back) give one event, for the last.
    MemberListChanged {
        /// The list.
        list: MemberList,
        /// Its encoded size in bytes (what one distribution message costs; for a run of
        /// deltas, the run's).
        bytes: usize,
    },
    /// Joiner: a list older than the one it holds arrived and was dropped: the authenticator
    /// went back in versions (the joiner's view stays correct; this says the sender is not).
    StaleList {
        /// The version that arrived.
        version: u64,
        /// The version held.
        held: u64,
    },
    /// Authenticator: a member was removed.
    MemberRemoved {
        /// Its peer address.
        member: SocketAddr,
        /// Why.
        reason: RemovalReason,
    },
    /// Authenticator: the member just admitted (the `MemberJoined` before this) holds
    /// `alias` (a protocol-2 joiner that joined with one).
    MemberAlias {
        /// Its peer address.
        member: SocketAddr,
        /// Its alias.
        alias: Arc<str>,
    },
    /// Authenticator: a protocol-2 joiner with the right password was refused for its alias
    /// (not counted toward bans).
    AliasRefused {
        /// The connection's source address.
        source: SocketAddr,
        /// The alias it asked for.
        alias: String,
        /// Why.
        refusal: Refusal,
    },
    /// Joiner (protocol 2): a member joined, as the authenticator's delta announced it.
    PeerJoined {
        /// Its peer address.
        peer: SocketAddr,
        /// Its alias, if it joined with one.
        alias: Option<Arc<str>>,
        /// The list version its admission made.
        version: u64,
    },
    /// Joiner (protocol 2): a member left, as the authenticator's delta announced it.
    PeerLeft {
        /// Its peer address.
        peer: SocketAddr,
        /// Its alias, if it had one.
        alias: Option<Arc<str>>,
        /// Why it left.
        reason: Departure,
        /// The list version its removal made.
        version: u64,
    },
    /// Joiner (protocol 2): the list jumped from version `from` to `to` through a whole list
    /// (the authenticator's history no longer had the deltas, or this joiner missed one): the
    /// joins and leaves in between were not announced to it.
    AnnouncementsSkipped {
        /// The version held before.
        from: u64,
        /// The version taken.
        to: u64,
    },
    /// Authenticator: a wrong password from `ip` (`attempts` so far).
    /// Joiner: our password was rejected (`ip` is our own).
    AuthFailed {
        /// Source IP.
        ip: IpAddr,
        /// Failed attempts counted so far for this IP.
        attempts: u32,
    },
    /// Authenticator: `ip` has just been banned. Joiner: we are banned.
    Banned {
        /// The banned IP.
        ip: IpAddr,
    },
    /// Authenticator: a connection from a banned IP was turned away.
    BanRefused {
        /// The banned IP.
        ip: IpAddr,
    },
    /// Authenticator: a handshake did not complete (it leaves no trace).
    HandshakeFailed {
        /// The connection's source address.
        source: SocketAddr,
        /// Why.
        error: String,
    },
    /// Joiner: a heartbeat arrived from the authenticator.
    HeartbeatReceived {
        /// The authenticator's auth address.
        from: SocketAddr,
    },
    /// Either role: a heartbeat is overdue by more than one interval.
    HeartbeatMissed {
        /// The silent side (member peer address, or the authenticator).
        peer: SocketAddr,
        /// How long it has been silent.
        silent_for: Duration,
    },
    /// A chat message arrived from a member.
    MessageReceived {
        /// The sender's peer address as it claims (`from`).
        from: SocketAddr,
        /// The connection's source address.
        source: SocketAddr,
        /// The sender's alias.
        alias: String,
        /// Whether it was a broadcast.
        broadcast: bool,
        /// The text.
        data: String,
        /// The sender's id of the message (protocol-2 senders only).
        msg_id: Option<ChatId>,
    },
    /// A protocol-2 chat message whose id was seen before was dropped (it was still echoed,
    /// so the sender stops retrying). See [`crate::dedup`].
    MessageDuplicate {
        /// The sender's peer address as it claims (`from`).
        from: SocketAddr,
        /// The connection's source address.
        source: SocketAddr,
        /// The id.
        msg_id: ChatId,
        /// Dropped because it was more than the window below the newest id of its sender
        /// (too old to tell from a duplicate), rather than remembered as seen.
        too_old: bool,
    },
    /// An incoming message connection was refused: its IP is not a member's.
    MessageRefused {
        /// The connection's source address.
        source: SocketAddr,
    },
    /// Joiner: the authenticator is gone; the joiner leaves.
    AuthenticatorLost {
        /// How it was noticed.
        reason: LostReason,
    },
    /// Every task and socket of this node has ended. The last event: the
    /// stream ends after it.
    Left,
    /// The consumer fell behind and `dropped` events were discarded.
    Lagged {
        /// How many.
        dropped: u64,
    },
}

/// The receiving end of a node's events.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    dropped: Arc<AtomicU64>,
    /// Set by [`EventStream::stop_list_changes`]; read by the node's sink.
    lists_off: Arc<AtomicBool>,
    /// `Left` (the last event of a node) has been returned.
    ended: bool,
}

impl EventStream {
    /// The next event; `None` once the node has left and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let lagged = self.dropped.swap(0, Ordering::Relaxed);
        if lagged > 0 {
            return Some(Event { at: Instant::now(), kind: EventKind::Lagged { dropped: lagged } });
        }
        // The node keeps its senders alive as long as it exists, so the
        // channel alone would never end: `Left` ends the stream.
        let ev = self.rx.recv().await;
        self.ended = matches!(ev, None | Some(Event { kind: EventKind::Left, .. }));
        ev
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let lagged = self.dropped.swap(0, Ordering::Relaxed);
        if lagged > 0 {
            return Some(Event { at: Instant::now(), kind: EventKind::Lagged { dropped: lagged } });
        }
        let ev = self.rx.try_recv().ok();
        self.ended = matches!(ev, Some(Event { kind: EventKind::Left, .. }));
        ev
    }

    /// From now on the node emits no [`EventKind::MemberListChanged`] (its list still
    /// changes: [`crate::Joiner::members`]). For a consumer done with them: loadgen's joiners
    /// once converged, which at 10,000 members would otherwise each take (and wake a task
    /// for) ten list events a second.
    pub fn stop_list_changes(&self) {
        self.lists_off.store(true, Ordering::Relaxed);
    }
}

/// The sending end, shared by a node's tasks. Never blocks.
#[derive(Clone, Debug)]
pub(crate) struct EventSink {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
    lists_off: Arc<AtomicBool>,
}

impl EventSink {
    pub(crate) fn channel(capacity: usize) -> (EventSink, EventStream) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let lists_off = Arc::new(AtomicBool::new(false));
        (
            EventSink { tx, dropped: dropped.clone(), lists_off: lists_off.clone() },
            EventStream { rx, dropped, lists_off, ended: false },
        )
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        if matches!(kind, EventKind::MemberListChanged { .. }) && self.lists_off.load(Ordering::Relaxed) {
            return;
        }
        let ev = Event { at: Instant::now(), kind };
        match self.tx.try_send(ev) {
            // `Left` ends the stream, so it is never dropped: when the
            // channel is full it is delivered as soon as the consumer makes
            // room (or discarded if the consumer drops the stream).
            Err(mpsc::error::TrySendError::Full(ev)) if matches!(ev.kind, EventKind::Left) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(ev).await;
                });
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}
