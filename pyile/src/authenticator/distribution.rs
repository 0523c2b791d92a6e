//! Member-list distribution: publishing each new version once, and one writer per member
//! that brings it up to the newest version over its distribution connection.
//!
//! Publishing ([`Shared::announce`], under the state lock) costs O(change), whatever the
//! list's size: the version's delta is encoded once into shared bytes and appended to a
//! bounded history, the list itself is an O(1) clone of a persistent structure, and its full
//! encoding (a *snapshot*) is made lazily, once per version, by the first writer that needs
//! it, outside the state lock.
//!
//! Each member's writer sends whatever brings its member to the newest version when it gets
//! to it, then waits its gap ([`Pacing`]), so a burst of changes coalesces instead of
//! queueing stale lists:
//!
//! - a reference (v1) member always gets the newest snapshot, paced by the v1 pacing and the
//!   distribution budget, exactly as before deltas existed;
//! - a protocol-2 member holds the committed list its handshake sent it (its version's
//!   snapshot), and gets the deltas from the version it holds: the one delta's shared bytes, or the deltas it missed
//!   back to back in one write (shared between writers behind by the same versions; never
//!   merged, since each delta announces who joined and who left and why), or a snapshot
//!   only when it cannot be helped: the missed deltas left the history, or its heartbeat
//!   answers show it lacks a version written long ago ([`DistProgress::request_snapshot`]).
//!   The budget does not pace it; the distribution interval is its coalescing window.
//!
//! A one-connection member's writer writes on its auth connection instead ([`DistSink::Auth`],
//! the write half shared with its heartbeats): the same bytes, pacing, timeouts and removal
//! reasons.
//!
//! The writer also watches the connection for its end, since a member's distribution
//! connection can close while its auth connection lives; anything a member writes there is
//! dropped (one value of at most the handshake value limit at a time), so writing cannot
//! make the authenticator resend. Counters of what was sent and why are in [`DistStats`].

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::state::{Pacing, Publication};
use crate::event::{EventKind, RemovalReason};
use crate::member_list::{AliasMap, Delta, MemberList};
use crate::net::Network;
use crate::wire::{
    DecodeError, MessageReader, assemble_distro, encode_delta, encode_distro, encode_distro_aliased, push_addr_items,
    push_alias_items,
};

/// One published version, as the writers need it: the list and its aliases, and its
/// snapshot bytes once a writer asked for them.
pub(super) struct Version {
    list: MemberList,
    aliases: AliasMap,
    /// The authenticator's pieces of earlier whole lists, to build this one's from.
    pieces: Arc<Pieces>,
    /// The v1 bytes (reference members).
    snapshot: OnceLock<Arc<[u8]>>,
    /// The protocol-2 bytes: the v1 object with `"aliases"`.
    snapshot_v2: OnceLock<Arc<[u8]>>,
}

impl Version {
    /// An authenticator's first version.
    pub(super) fn new(list: MemberList, aliases: AliasMap) -> Arc<Self> {
        Self::with_pieces(list, aliases, Arc::default())
    }

    /// The version after this one: its whole list is built from this one's pieces.
    pub(super) fn next(&self, list: MemberList, aliases: AliasMap) -> Arc<Self> {
        Self::with_pieces(list, aliases, self.pieces.clone())
    }

    fn with_pieces(list: MemberList, aliases: AliasMap, pieces: Arc<Pieces>) -> Arc<Self> {
        Arc::new(Version { list, aliases, pieces, snapshot: OnceLock::new(), snapshot_v2: OnceLock::new() })
    }

    pub(super) fn number(&self) -> u64 {
        self.list.version.unwrap_or(0)
    }

    /// The whole list as it goes on the wire to a reference member, encoded once per version
    /// (by the first writer that needs it; the others wait for that encoding or reuse it).
    fn snapshot(&self) -> Arc<[u8]> {
        self.snapshot.get_or_init(|| self.pieces.encode(&self.list, &self.aliases, false).into()).clone()
    }

    /// The whole list as it goes to a protocol-2 member, with its aliases (once per version).
    pub(super) fn snapshot_v2(&self) -> Arc<[u8]> {
        self.snapshot_v2.get_or_init(|| self.pieces.encode(&self.list, &self.aliases, true).into()).clone()
    }
}

/// Entries a piece covers: those whose list keys share `key / PIECE`.
const PIECE: u64 = 256;

/// The encoded pieces of the last whole list an authenticator built, so that the next
/// version's is mostly copied, not encoded again.
///
/// Every join makes a version, and a joiner's first list is that version's whole list: at
/// 10,000 members, formatting 10,000 addresses and looking up 10,000 aliases a join (~20 %
/// of the authenticator's CPU, by `perf`). A version differs from the last by a few
/// entries, so the list is cut into runs of [`PIECE`] list keys, each encoded once (its
/// addresses, and its aliases apart) and kept while its keys stay the same. A key names one
/// entry for the list's whole history, and an entry's address and alias never change, so
/// equal keys mean equal bytes, whichever version asks.
pub(super) struct Pieces {
    /// List keys a piece covers ([`PIECE`]; tests use a few).
    size: u64,
    runs: Mutex<BTreeMap<u64, Piece>>,
}

impl Default for Pieces {
    fn default() -> Self {
        Pieces { size: PIECE, runs: Mutex::default() }
    }
}

/// One run of entries, encoded.
struct Piece {
    keys: Vec<u64>,
    addrs: Vec<u8>,
    aliases: Vec<u8>,
}

impl Pieces {
    /// `list`'s whole-list bytes (with its aliases when `with_aliases`): those of
    /// [`encode_distro`] and [`encode_distro_aliased`], encoding only the runs that changed
    /// since the last call and dropping the runs it no longer has.
    fn encode(&self, list: &MemberList, aliases: &AliasMap, with_aliases: bool) -> Vec<u8> {
        let Some(entries) = list.keyed() else {
            return if with_aliases {
                encode_distro_aliased(list.iter(), list.version, |a| aliases.get(a).cloned())
            } else {
                encode_distro(list.iter(), list.version)
            };
        };
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let mut old = std::mem::take(&mut *runs);
        let size = self.size;
        let mut run: Vec<(u64, SocketAddr)> = Vec::new();
        let mut close = |run: &mut Vec<(u64, SocketAddr)>| {
            let Some(&(first, _)) = run.first() else { return };
            let id = first / size;
            let piece = match old.remove(&id) {
                Some(p) if p.keys.iter().copied().eq(run.iter().map(|e| e.0)) => p,
                _ => {
                    let mut p =
                        Piece { keys: run.iter().map(|e| e.0).collect(), addrs: Vec::new(), aliases: Vec::new() };
                    push_addr_items(&mut p.addrs, run.iter().map(|e| &e.1));
                    push_alias_items(&mut p.aliases, run.iter().map(|e| aliases.get(&e.1).map(|a| &**a)));
                    p
                }
            };
            runs.insert(id, piece);
            run.clear();
        };
        for (key, addr) in entries {
            if run.first().is_some_and(|&(first, _)| first / size != key / size) {
                close(&mut run);
            }
            run.push((key, addr));
        }
        close(&mut run);
        let addrs = runs.values().map(|p| p.addrs.as_slice());
        let alias_runs = with_aliases.then(|| runs.values().map(|p| p.aliases.as_slice()));
        assemble_distro(addrs, list.version, alias_runs)
    }
}

/// One version's change and its wire bytes, encoded once and shared by every writer.
pub(super) struct DeltaEntry {
    delta: Delta,
    bytes: Arc<[u8]>,
}

/// The recent deltas, oldest first, bounded by [`AuthenticatorConfig::delta_history`]
/// (`super::AuthenticatorConfig`), and the last run of deltas a writer joined back to back
/// (writers woken by one change are usually behind by the same versions: the first joins
/// them, the others reuse the bytes).
pub(super) struct History {
    deltas: VecDeque<Arc<DeltaEntry>>,
    limit: usize,
    merged: Option<(u64, u64, Arc<[u8]>)>,
}

impl History {
    pub(super) fn new(limit: usize) -> Self {
        History { deltas: VecDeque::new(), limit: limit.max(1), merged: None }
    }

    fn push(&mut self, entry: Arc<DeltaEntry>) {
        if self.deltas.len() >= self.limit {
            self.deltas.pop_front();
        }
        self.deltas.push_back(entry);
    }

    /// The deltas from `held` to `to`, if the history still has all of them.
    fn between(&self, held: u64, to: u64) -> Option<Vec<Arc<DeltaEntry>>> {
        let first = self.deltas.front()?.delta.base;
        if held < first || to <= held {
            return None;
        }
        let start = usize::try_from(held - first).ok()?;
        let n = usize::try_from(to - held).ok()?;
        // `range` starts in O(1): a writer one version behind costs O(1), not O(history).
        let end = start.checked_add(n).filter(|&e| e <= self.deltas.len())?;
        let out: Vec<_> = self.deltas.range(start..end).cloned().collect();
        out.last().is_some_and(|e| e.delta.version == to).then_some(out)
    }
}

/// Why a protocol-2 member was sent a whole list instead of a delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotReason {
    /// Its first list on a new distribution connection (a join, or a rejoin after a
    /// reconnect): it holds no committed version to apply a delta to.
    First,
    /// It missed more versions than the delta history keeps.
    Behind,
    /// Its heartbeat answers reported a version older than one written to it at least a
    /// heartbeat interval before: it missed or refused something, so only a whole list can
    /// put it right.
    Reported,
}

/// What the distribution writers have sent since the authenticator started (counts and
/// bytes; deterministic under simulation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DistStats {
    /// Writes to members' connections, of any kind: a delta (or a run of deltas written
    /// together), a snapshot or a whole v1 list each.
    pub writes: u64,
    /// Deltas written to protocol-2 members (each version's delta counts once per member).
    pub deltas: u64,
    /// Writes that carried two or more deltas back to back (a writer behind by several
    /// versions).
    pub merged: u64,
    /// Bytes of those deltas.
    pub delta_bytes: u64,
    /// Snapshots written to protocol-2 members, by reason.
    pub snapshots_first: u64,
    /// See [`SnapshotReason::Behind`].
    pub snapshots_behind: u64,
    /// See [`SnapshotReason::Reported`].
    pub snapshots_reported: u64,
    /// Bytes of the snapshots written to protocol-2 members.
    pub snapshot_bytes: u64,
    /// Lists written to reference (v1) members (always whole).
    pub v1_lists: u64,
    /// Bytes of those.
    pub v1_bytes: u64,
}

impl DistStats {
    /// Adds `other`'s counts to these (the totals of several authenticators, or incarnations).
    pub fn add(&mut self, other: &DistStats) {
        self.writes += other.writes;
        self.deltas += other.deltas;
        self.merged += other.merged;
        self.delta_bytes += other.delta_bytes;
        self.snapshots_first += other.snapshots_first;
        self.snapshots_behind += other.snapshots_behind;
        self.snapshots_reported += other.snapshots_reported;
        self.snapshot_bytes += other.snapshot_bytes;
        self.v1_lists += other.v1_lists;
        self.v1_bytes += other.v1_bytes;
    }
}

/// The counters behind [`DistStats`].
#[derive(Default)]
pub(super) struct DistCounters {
    writes: AtomicU64,
    deltas: AtomicU64,
    merged: AtomicU64,
    delta_bytes: AtomicU64,
    snapshots: [AtomicU64; 3],
    snapshot_bytes: AtomicU64,
    v1_lists: AtomicU64,
    v1_bytes: AtomicU64,
}

impl DistCounters {
    pub(super) fn stats(&self) -> DistStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DistStats {
            writes: g(&self.writes),
            deltas: g(&self.deltas),
            merged: g(&self.merged),
            delta_bytes: g(&self.delta_bytes),
            snapshots_first: g(&self.snapshots[0]),
            snapshots_behind: g(&self.snapshots[1]),
            snapshots_reported: g(&self.snapshots[2]),
            snapshot_bytes: g(&self.snapshot_bytes),
            v1_lists: g(&self.v1_lists),
            v1_bytes: g(&self.v1_bytes),
        }
    }

    fn count(&self, sent: &Sent, bytes: usize) {
        let add = |a: &AtomicU64, n: u64| {
            a.fetch_add(n, Ordering::Relaxed);
        };
        add(&self.writes, 1);
        match sent {
            Sent::V1 => {
                add(&self.v1_lists, 1);
                add(&self.v1_bytes, bytes as u64);
            }
            Sent::Deltas { count } => {
                add(&self.deltas, *count);
                add(&self.merged, u64::from(*count > 1));
                add(&self.delta_bytes, bytes as u64);
            }
            Sent::Snapshot(reason) => {
                let i = match reason {
                    SnapshotReason::First => 0,
                    SnapshotReason::Behind => 1,
                    SnapshotReason::Reported => 2,
                };
                add(&self.snapshots[i], 1);
                add(&self.snapshot_bytes, bytes as u64);
            }
        }
    }
}

/// What one write was.
enum Sent {
    V1,
    /// `count` deltas, back to back.
    Deltas {
        count: u64,
    },
    Snapshot(SnapshotReason),
}

/// A protocol-2 member's distribution progress, shared by its writer and its heartbeat task:
/// the version its writer last wrote completely, and the heartbeat task's request for a
/// snapshot.
#[derive(Default)]
pub(super) struct DistProgress {
    /// Version last written completely, plus one (0: nothing written yet).
    written: AtomicU64,
    resend: AtomicBool,
    wake: Notify,
}

impl DistProgress {
    /// The version last written completely to the member, if any.
    pub(super) fn written(&self) -> Option<u64> {
        self.written.load(Ordering::Acquire).checked_sub(1)
    }

    /// Asks the writer to send a whole list next, whatever the member is thought to hold.
    pub(super) fn request_snapshot(&self) {
        self.resend.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

impl<N: Network> Shared<N> {
    /// Publishes a committed version to the writers, the peer listener and the events, in
    /// O(change): the delta is encoded here, once; the snapshot only when a writer needs it.
    /// Call it with the state lock held, so that versions and events come out in one order.
    pub(super) fn announce(&self, published: Publication) {
        let Publication { list, delta, aliases } = published;
        let bytes = list.snapshot_len();
        let entry = Arc::new(DeltaEntry { bytes: encode_delta(&delta).into(), delta });
        self.history.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
        let next = self.dist_tx.borrow().next(list.clone(), aliases);
        self.dist_tx.send_replace(next);
        self.dist_changed.notify_waiters();
        self.members_tx.send_replace(list.clone());
        self.events.emit(EventKind::MemberListChanged { list, bytes });
    }

    /// See [`catch_up`].
    fn next_for_v2(&self, held: Option<u64>, cur: &Version, requested: bool) -> Option<(Arc<[u8]>, Sent)> {
        catch_up(&self.history, held, cur, requested)
    }
}

/// What to write to bring a protocol-2 member whose writer last wrote version `held` (None:
/// nothing yet) up to `cur`, a snapshot if `requested`: None if it is up to date. Every
/// delta it missed is sent, in order, back to back in one write: each announces who joined
/// and who left (and why), which one merged change would hide (a join and leave within the
/// run would vanish). A snapshot replaces them only when the member holds nothing to apply
/// them to, asked for one, or missed more than the history keeps; the joiner then reports
/// the announcements skipped. Locks `history` only to look the missed deltas up (and to
/// share the joined bytes).
fn catch_up(
    history_lock: &Mutex<History>,
    held: Option<u64>,
    cur: &Version,
    requested: bool,
) -> Option<(Arc<[u8]>, Sent)> {
    let to = cur.number();
    let snapshot = |reason| Some((cur.snapshot_v2(), Sent::Snapshot(reason)));
    let held = match (held, requested) {
        (_, true) => return snapshot(SnapshotReason::Reported),
        (None, false) => return snapshot(SnapshotReason::First),
        (Some(h), false) if h >= to => return None,
        (Some(h), false) => h,
    };
    let count = to - held;
    let history = history_lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((from, until, bytes)) = &history.merged
        && (*from, *until) == (held, to)
    {
        return Some((bytes.clone(), Sent::Deltas { count }));
    }
    let Some(missed) = history.between(held, to) else {
        return snapshot(SnapshotReason::Behind);
    };
    drop(history);
    if let [one] = missed.as_slice() {
        return Some((one.bytes.clone(), Sent::Deltas { count: 1 }));
    }
    // Joined outside the lock, in O(missed changes).
    let mut joined = Vec::with_capacity(missed.iter().map(|e| e.bytes.len()).sum());
    for e in &missed {
        joined.extend_from_slice(&e.bytes);
    }
    let bytes: Arc<[u8]> = joined.into();
    history_lock.lock().unwrap_or_else(|p| p.into_inner()).merged = Some((held, to, bytes.clone()));
    Some((bytes, Sent::Deltas { count }))
}

/// The write half of a member's auth connection: its heartbeat loop's alone, or shared
/// with its distribution writer (a one-connection member). Shared, each value is written
/// whole under the lock, so heartbeats and lists never interleave within a value; a caller's
/// timeout bounds the wait for the lock and the write together.
pub(super) enum AuthWriter<S> {
    /// Written by the heartbeat loop only.
    Own(WriteHalf<S>),
    /// Written by the heartbeat loop and the distribution writer.
    Shared(Arc<tokio::sync::Mutex<WriteHalf<S>>>),
}

impl<S: AsyncRead + AsyncWrite> AuthWriter<S> {
    /// Writes one whole value.
    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            AuthWriter::Own(w) => w.write_all(bytes).await,
            AuthWriter::Shared(w) => w.lock().await.write_all(bytes).await,
        }
    }

    /// Shuts the write side down.
    pub(super) async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            AuthWriter::Own(w) => w.shutdown().await,
            AuthWriter::Shared(w) => w.lock().await.shutdown().await,
        }
    }
}

/// Where a member's lists go.
pub(super) enum DistSink<S> {
    /// Its own distribution connection, read only to see it end.
    Own(MessageReader<ReadHalf<S>>, WriteHalf<S>),
    /// Its auth connection (a one-connection member), which its heartbeat loop reads.
    Auth(AuthWriter<S>),
}

impl<S: AsyncRead + AsyncWrite> DistSink<S> {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            DistSink::Own(_, w) => w.write_all(bytes).await,
            DistSink::Auth(w) => w.write_all(bytes).await,
        }
    }

    /// Resolves when a distribution connection of its own ends (or breaks the protocol);
    /// never for the auth connection, whose end the heartbeat loop sees.
    async fn ended(&mut self) -> RemovalReason {
        let DistSink::Own(reader, _) = self else { return std::future::pending().await };
        // The connection is one-way: what a member writes on it is read (so its end is
        // seen) and dropped, and never causes a resend.
        loop {
            match reader.next().await {
                Err(DecodeError::Eof { .. }) | Err(DecodeError::Io(_)) => return RemovalReason::Closed,
                Err(e) => return RemovalReason::ProtocolError(format!("on the distribution socket: {e}")),
                Ok(_) => {}
            }
        }
    }
}

/// Starts member `id`'s distribution writer; it removes the member when its connection
/// closes, stalls or misbehaves, and ends quietly when `cancel` fires. `progress` is given
/// for a protocol-2 member (deltas), None for a reference one (whole lists). `sink` is the
/// member's distribution connection, or its auth connection for a one-connection member:
/// the same lists, the same pacing, the same timeouts and removal reasons either way.
/// `first_version` is the committed list a protocol-2 member's handshake sent it: its
/// writer starts from there with deltas.
pub(super) fn spawn_writer<N: Network>(
    shared: &Arc<Shared<N>>,
    id: u64,
    progress: Option<Arc<DistProgress>>,
    first_version: Option<u64>,
    mut sink: DistSink<N::Stream>,
    cancel: CancellationToken,
) {
    let pacing = Pacing::of(&shared.cfg, progress.is_some());
    let mut lists = shared.dist_tx.subscribe();
    let shared = shared.clone();
    shared.tracker.clone().spawn(async move {
        // A protocol-2 member holds the committed list its handshake sent.
        let mut held: Option<u64> = first_version.filter(|_| progress.is_some());
        let reason = loop {
            let cur = lists.borrow_and_update().clone();
            let next = match &progress {
                None => Some((cur.snapshot(), Sent::V1)),
                Some(p) => shared.next_for_v2(held, &cur, p.resend.swap(false, Ordering::AcqRel)),
            };
            if let Some((bytes, sent)) = next {
                let write = timeout(shared.heartbeat_timeout, sink.write_all(&bytes));
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    r = write => match r {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break RemovalReason::Closed,
                        Err(_) => break RemovalReason::DistributionStalled,
                    },
                }
                shared.dist_counters.count(&sent, bytes.len());
                held = Some(cur.number());
                if let Some(p) = &progress {
                    p.written.store(cur.number() + 1, Ordering::Release);
                }
                let gap = pacing.gap(bytes.len(), cur.list.len());
                // Neither the bytes nor the version are kept through the gap: with thousands
                // of writers waiting, each would pin a list's worth of old bytes.
                drop((bytes, cur));
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => {}
                    _ = sleep(gap) => {}
                }
            }
            // Wait for the next change (deterministically: see `Shared::dist_changed`) or a
            // snapshot request; meanwhile watch the socket for EOF. The `Notified` future
            // receives `notify_waiters` from its creation on, so a change published between
            // the check and the wait is not missed.
            let changed = shared.dist_changed.notified();
            match lists.has_changed() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(_) => return,
            }
            if progress.as_ref().is_some_and(|p| p.resend.load(Ordering::Acquire)) {
                continue;
            }
            let resend = async {
                match &progress {
                    Some(p) => p.wake.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(changed);
            tokio::pin!(resend);
            let ended = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = &mut changed => None,
                _ = &mut resend => None,
                reason = sink.ended() => Some(reason),
            };
            if let Some(reason) = ended {
                break reason;
            }
        };
        shared.remove_member(id, reason);
    });
}

/// The history and writers' shared state an authenticator starts with.
pub(super) fn history(limit: usize) -> Mutex<History> {
    Mutex::new(History::new(limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn entry(base: u64, added: u16) -> Arc<DeltaEntry> {
        let delta = Delta {
            base,
            version: base + 1,
            added: vec![SocketAddr::from(([10, 0, 0, 1], added))],
            ..Default::default()
        };
        Arc::new(DeltaEntry { bytes: encode_delta(&delta).into(), delta })
    }

    mod pieces {
        use super::*;
        use crate::authenticator::config::AuthenticatorConfig;
        use crate::authenticator::state::AuthState;
        use crate::member_list::Departure;
        use proptest::prelude::*;
        use std::net::IpAddr;
        use std::time::Duration;

        #[derive(Debug, Clone)]
        enum Op {
            /// A join from 10.0.1.host:port (an address taken is a replacement), with an alias.
            Join(u8, u16, Option<u8>),
            /// The removal of the member at this index (of those admitted, modulo).
            Remove(usize),
            /// A writer asks for the whole list of the version this many versions back.
            Snapshot(usize, bool),
        }

        fn arb_op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u8..5, 1u16..4, proptest::option::of(0u8..4)).prop_map(|(h, p, a)| Op::Join(h, p, a)),
                2 => any::<usize>().prop_map(Op::Remove),
                3 => (0usize..6, any::<bool>()).prop_map(|(ago, v2)| Op::Snapshot(ago, v2)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            /// Whatever joins, replacements (an address rejoining, under another alias) and
            /// removals came before, and whichever version asks (the newest or an older one
            /// a slow writer holds), a whole list built from pieces is byte for byte the
            /// whole list encoded from scratch.
            #[test]
            fn a_whole_list_from_pieces_is_the_whole_list_encoded(
                ops in proptest::collection::vec(arb_op(), 1..120),
                size in 1u64..5,
            ) {
                let own: SocketAddr = "10.0.0.1:4000".parse().unwrap();
                let cfg = AuthenticatorConfig::new("pw");
                let mut st: AuthState<(), (), ()> = AuthState::new(&cfg, own, Duration::ZERO);
                let pieces = Arc::new(Pieces { size, runs: Mutex::default() });
                let mut versions = vec![Version::with_pieces(st.list(), st.aliases(), pieces)];
                let mut ids: Vec<u64> = Vec::new();
                for op in ops {
                    let published = match op {
                        Op::Join(host, port, alias) => {
                            let peer = SocketAddr::new(IpAddr::from([10, 0, 1, host]), port);
                            let Ok((h, _)) = st.begin_handshake(peer.ip(), ()) else { continue };
                            if let Some(a) = alias {
                                let _ = st.reserve_alias(h, &format!("name-{a}"));
                            }
                            let admitted = st.admit_from(Some(h), peer.ip(), peer, (), Duration::ZERO).ok();
                            st.finish_handshake(h);
                            admitted.map(|a| {
                                ids.push(a.id);
                                a.published
                            })
                        }
                        Op::Remove(i) if !ids.is_empty() => {
                            let id = ids.remove(i % ids.len());
                            st.remove(id, Departure::Closed, Duration::ZERO).map(|(_, p)| p)
                        }
                        Op::Remove(_) => None,
                        Op::Snapshot(ago, v2) => {
                            let v = &versions[versions.len() - 1 - ago.min(versions.len() - 1)];
                            let fresh = if v2 {
                                encode_distro_aliased(v.list.iter(), v.list.version, |a| v.aliases.get(a).cloned())
                            } else {
                                encode_distro(v.list.iter(), v.list.version)
                            };
                            let built = if v2 { v.snapshot_v2() } else { v.snapshot() };
                            prop_assert_eq!(String::from_utf8_lossy(&built), String::from_utf8_lossy(&fresh));
                            None
                        }
                    };
                    if let Some(p) = published {
                        let next = versions.last().unwrap().next(p.list, p.aliases);
                        versions.push(next);
                    }
                }
            }
        }
    }

    #[test]
    fn the_history_is_bounded_and_finds_only_whole_runs() {
        let mut h = History::new(3);
        for v in 0..5 {
            h.push(entry(v, v as u16 + 1));
        }
        // Keeps deltas 2→3, 3→4, 4→5.
        assert_eq!(h.deltas.len(), 3);
        assert!(h.between(1, 5).is_none(), "1→2 was dropped");
        let run = h.between(2, 5).unwrap();
        assert_eq!(run.iter().map(|e| e.delta.version).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(h.between(3, 4).unwrap().len(), 1);
        assert!(h.between(4, 6).is_none(), "6 is not published");
        assert!(h.between(5, 5).is_none());
    }

    mod prop {
        use super::*;
        use crate::authenticator::AuthenticatorConfig;
        use crate::authenticator::state::AuthState;
        use crate::wire::Message;
        use proptest::prelude::*;
        use std::collections::BTreeMap;
        use std::net::IpAddr;
        use std::time::Duration;

        /// One step: a change, then maybe the writer wakes, maybe its write is lost, maybe a
        /// heartbeat answer lets the authenticator see what the member holds.
        #[derive(Clone, Debug)]
        struct Step {
            join: Option<(u8, u16)>,
            remove: usize,
            wake: bool,
            lose: bool,
            beat: bool,
        }

        fn arb_step() -> impl Strategy<Value = Step> {
            (
                proptest::option::weighted(0.6, (0u8..6, 1u16..5)),
                any::<usize>(),
                any::<bool>(),
                proptest::bool::weighted(0.1),
                any::<bool>(),
            )
                .prop_map(|(join, remove, wake, lose, beat)| Step { join, remove, wake, lose, beat })
        }

        /// The writer wakes: what it sends, and what the member does with it.
        fn wake(
            history: &Mutex<History>,
            versions: &BTreeMap<u64, MemberList>,
            cur: &Version,
            written: &mut Option<u64>,
            member: &mut Option<MemberList>,
            requested: &mut bool,
            lose: bool,
        ) -> Result<(), TestCaseError> {
            let Some((bytes, _)) = catch_up(history, *written, cur, std::mem::take(requested)) else { return Ok(()) };
            *written = Some(cur.number());
            if lose {
                return Ok(());
            }
            // One snapshot, or the missed deltas back to back.
            let values: Vec<serde_json::Value> =
                serde_json::Deserializer::from_slice(&bytes).into_iter().collect::<Result<_, _>>().unwrap();
            for v in values {
                wake_one(versions, member, Message::from_json(v).unwrap())?;
            }
            Ok(())
        }

        /// The member takes one value its writer sent.
        fn wake_one(
            versions: &BTreeMap<u64, MemberList>,
            member: &mut Option<MemberList>,
            msg: Message,
        ) -> Result<(), TestCaseError> {
            match msg {
                Message::Distro { members, version, .. } => {
                    let list = MemberList::new(version, members);
                    if member.as_ref().is_none_or(|m| m.is_superseded_by(&list)) {
                        *member = Some(list);
                    }
                }
                Message::Delta(d) => {
                    // Its first list was lost: it waits for a whole list, as the joiner does.
                    let Some(held) = member.as_ref() else { return Ok(()) };
                    match held.apply(&d, usize::MAX) {
                        Ok(next) => *member = Some(next),
                        Err(crate::member_list::DeltaError::BaseMismatch { .. }) => {}
                        Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                    }
                }
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
            let m = member.as_ref().unwrap();
            prop_assert_eq!(m, &versions[&m.version.unwrap()]);
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            /// Any sequence of changes (joins, replacements, removals), a writer that wakes at
            /// any moment (so it is any number of versions behind: one delta, a merge, or a
            /// snapshot past a tiny history), writes that get lost, and heartbeat answers that
            /// bring a snapshot: every list the member takes is the authenticator's list of
            /// that version, and once the writer catches up it holds the newest.
            #[test]
            fn a_member_fed_deltas_and_snapshots_holds_the_authenticators_list(
                steps in proptest::collection::vec(arb_step(), 1..80),
                limit in 1usize..6,
            ) {
                let own: SocketAddr = "10.0.0.1:4000".parse().unwrap();
                let cfg = AuthenticatorConfig::new("pw");
                let mut st: AuthState<(), (), ()> = AuthState::new(&cfg, own, Duration::ZERO);
                let history = Mutex::new(History::new(limit));
                let mut versions = BTreeMap::from([(0u64, st.list())]);
                let mut ids: Vec<u64> = Vec::new();
                let mut cur = Version::new(st.list(), st.aliases());
                let mut written: Option<u64> = None;
                let mut member: Option<MemberList> = None;
                let mut requested = false;
                for s in steps {
                    let published = match s.join {
                        Some((host, port)) => {
                            let peer = SocketAddr::new(IpAddr::from([10, 0, 1, host]), port);
                            st.admit(peer.ip(), peer, (), Duration::ZERO).ok().map(|a| {
                                ids.push(a.id);
                                a.published
                            })
                        }
                        None if !ids.is_empty() => {
                            let id = ids.remove(s.remove % ids.len());
                            st.remove(id, crate::member_list::Departure::Closed, Duration::ZERO).map(|(_, p)| p)
                        }
                        None => None,
                    };
                    if let Some(p) = published {
                        let entry = Arc::new(DeltaEntry { bytes: encode_delta(&p.delta).into(), delta: p.delta });
                        history.lock().unwrap().push(entry);
                        versions.insert(p.list.version.unwrap(), p.list.clone());
                        cur = cur.next(p.list, p.aliases);
                    }
                    if s.wake {
                        wake(&history, &versions, &cur, &mut written, &mut member, &mut requested, s.lose)?;
                    }
                    // The heartbeat rule: a member reporting less than was written asks for a
                    // snapshot (the real rule waits an interval; here writes arrive at once).
                    if s.beat && written.is_some() && member.as_ref().and_then(|m| m.version) < written {
                        requested = true;
                    }
                }
                // Quiet: beats and wakes until the member has the newest list.
                for _ in 0..3 {
                    if member.as_ref().and_then(|m| m.version) < written {
                        requested = true;
                    }
                    wake(&history, &versions, &cur, &mut written, &mut member, &mut requested, false)?;
                }
                prop_assert_eq!(member.as_ref(), Some(&st.list()));
            }
        }
    }
}
