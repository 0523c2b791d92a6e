//! The authenticator: admits joiners, bans password guessers, watches every
//! member's heartbeat and distributes the member list.
//!
//! Unlike the reference, which handles every handshake inside one accept
//! loop (so one silent joiner stalls all others), each connection here gets
//! its own task, and every read and write has a deadline. A joiner becomes a
//! member only when its whole handshake, distribution connection included,
//! has completed; until then it is a *pending* entry that disappears without
//! trace if the handshake fails. Members are watched with a real
//! `heartbeat_timeout`: a member that stops answering — crashed, partitioned
//! or half-open — is removed and the new list distributed.
//!
//! Distribution never blocks on a slow member: the current list lives in a
//! `watch` channel (a one-slot queue that always holds the newest list), and
//! each member has its own writer that sends whatever is newest when it gets
//! to it, so a burst of changes coalesces into one list instead of queueing
//! stale ones. Reference joiners need their lists spaced (see the interop
//! hazard in the wire notes); joiners that announce protocol 2 do not.
//!
//! A member's distribution connection can die while its auth connection
//! lives (a lost segment under turmoil, which never retransmits; a middlebox
//! dropping one flow): writes into it still succeed for a while, so the
//! writer cannot tell, and the member would keep heartbeating with an
//! ever-older list. Protocol-2 joiners therefore put the version of the
//! newest list they hold in each heartbeat answer; the authenticator keeps
//! the publication time of recent versions and removes a member whose answers
//! still lack a version published more than [`AuthenticatorConfig::effective_distribution_timeout`]
//! ago (`RemovalReason::DistributionLost`), closing both its connections.
//! The bound runs from the version's publication, so coalescing and pacing
//! (a member skipping straight to a newer list) never trip it. Reference
//! joiners never see any of this: they get plain heartbeats and send them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::event::{DEFAULT_EVENT_CAPACITY, EventKind, EventSink, EventStream, RemovalReason};
use crate::member_list::MemberList;
use crate::net::{Listener, NetStream, Network};
use crate::peer::{BroadcastReport, Delivery, PeerCore};
use crate::wire::{DEFAULT_MAX_VALUE_LEN, DecodeError, Message, MessageReader, PROTOCOL_VERSION, Recipient};

/// Default auth port.
pub const DEFAULT_AUTH_PORT: u16 = 4702;

/// Default [`AuthenticatorConfig::distribution_budget`]: 64 MiB/s, about half
/// a gigabit link. Rounds stay under the 10 ms distribution interval up to
/// ~150 members; under constant churn 500 members wait ~80 ms between lists,
/// 2,000 members ~1.3 s, 4,000 members ~5 s. Past ~4,300 members (2 s
/// heartbeats) the gap stays at its cap, the heartbeat timeout, and a round
/// costs more than the budget.
pub const DEFAULT_DISTRIBUTION_BUDGET: u64 = 64 << 20;

/// Settings of an [`Authenticator`]; build with [`AuthenticatorConfig::new`]
/// and the chained setters.
#[derive(Clone, Debug)]
pub struct AuthenticatorConfig {
    password: String,
    listen: SocketAddr,
    password_attempts: u32,
    heartbeat_interval: Duration,
    heartbeat_timeout: Option<Duration>,
    handshake_timeout: Duration,
    io_timeout: Duration,
    v1_pacing: Duration,
    distribution_interval: Duration,
    distribution_budget: u64,
    max_value_len: usize,
    max_handshakes: usize,
    event_capacity: usize,
    seed: u64,
    alias: String,
}

impl AuthenticatorConfig {
    /// Defaults: listen on `0.0.0.0:4702`, 3 attempts, 2 s heartbeats,
    /// 3 intervals of timeout, 5 s handshakes.
    pub fn new(password: impl Into<String>) -> Self {
        AuthenticatorConfig {
            password: password.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_AUTH_PORT)),
            password_attempts: 3,
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: None,
            handshake_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(2),
            v1_pacing: Duration::from_millis(50),
            distribution_interval: Duration::from_millis(10),
            distribution_budget: DEFAULT_DISTRIBUTION_BUDGET,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            max_handshakes: 8192,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            seed: 0,
            alias: "authenticator".into(),
        }
    }
    /// Address of the auth socket (port 0 picks one). The distribution and
    /// peer sockets bind the same IP on free ports.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Failed password attempts from one IP before it is banned (at least 1).
    pub fn password_attempts(mut self, n: u32) -> Self {
        self.password_attempts = n.max(1);
        self
    }
    /// Time between heartbeats to each member.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }
    /// Silence after which a member is removed (default: 3 intervals).
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = Some(d);
        self
    }
    /// Bound on a whole handshake, distribution connection included.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
    /// Bound on one chat message's connect, write and echo.
    pub fn io_timeout(mut self, d: Duration) -> Self {
        self.io_timeout = d;
        self
    }
    /// Gap between back-to-back writes to a reference (v1) joiner.
    pub fn v1_pacing(mut self, d: Duration) -> Self {
        self.v1_pacing = d;
        self
    }
    /// Minimum gap between two lists to one protocol-2 member (coalescing window).
    pub fn distribution_interval(mut self, d: Duration) -> Self {
        self.distribution_interval = d;
        self
    }
    /// Bytes per second that one full distribution round (the list to every
    /// member) may cost the authenticator; 0 = unbounded. Every change sends
    /// the whole list to every member, so a round costs members × list size
    /// (O(n²): 2,000 members, ~90 MB). While changes keep coming, each
    /// member's writer waits `members × list bytes / budget` (at least the
    /// distribution interval, or the v1 pacing; at most the heartbeat
    /// timeout, see [`AuthenticatorConfig::max_distribution_gap`]) before its
    /// next list, so a
    /// burst of changes coalesces instead of saturating the authenticator,
    /// the network and every member's CPU. A change after a quiet spell is
    /// still sent at once.
    pub fn distribution_budget(mut self, bytes_per_second: u64) -> Self {
        self.distribution_budget = bytes_per_second;
        self
    }
    /// Bound on one incoming JSON value.
    pub fn max_value_len(mut self, n: usize) -> Self {
        self.max_value_len = n;
        self
    }
    /// Bound on handshakes in progress at once; more connections are closed.
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n.max(1);
        self
    }
    /// Capacity of the event channel.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }
    /// Seed of the authenticator's RNG (heartbeat phases). All of its
    /// randomness comes from here.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Alias used when sending chat messages.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = alias.into();
        self
    }
    /// The effective heartbeat timeout.
    pub fn effective_heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout.unwrap_or(self.heartbeat_interval * 3)
    }
    /// The configured heartbeat interval.
    pub fn interval(&self) -> Duration {
        self.heartbeat_interval
    }
    /// How long after a list's publication a protocol-2 member may still
    /// answer heartbeats without holding it (or a newer one) before it is
    /// removed with `RemovalReason::DistributionLost`: the heartbeat timeout
    /// plus one interval. The extra interval is the heartbeat round a member
    /// needs to report a list it just received, so a stall of the whole link
    /// (a hold) that heartbeats tolerate — shorter than the heartbeat timeout
    /// — never removes a member this way; a longer one is a heartbeat
    /// timeout first.
    ///
    /// Plus the longest gap a member's writer may wait between two lists
    /// ([`AuthenticatorConfig::max_distribution_gap`]): a list a member lacks
    /// only because its writer is still pacing is not lost.
    pub fn effective_distribution_timeout(&self) -> Duration {
        self.effective_heartbeat_timeout() + self.heartbeat_interval + self.max_distribution_gap()
    }
    /// The longest a member's writer waits between two lists under churn:
    /// the heartbeat timeout with a distribution budget, else the distribution
    /// interval or the v1 pacing, whichever is longer.
    pub fn max_distribution_gap(&self) -> Duration {
        if self.distribution_budget > 0 {
            self.effective_heartbeat_timeout().max(self.distribution_interval).max(self.v1_pacing)
        } else {
            self.distribution_interval.max(self.v1_pacing)
        }
    }
}

struct MemberEntry {
    id: u64,
    peer_addr: SocketAddr,
    cancel: CancellationToken,
}

type DistConn<S> = (MessageReader<ReadHalf<S>>, WriteHalf<S>);

struct Pending<S> {
    ip: IpAddr,
    v2: bool,
    tx: oneshot::Sender<DistConn<S>>,
}

struct State<S> {
    version: u64,
    /// When recent versions were published, oldest first (see
    /// [`Shared::distribution_overdue`]); always holds the current version.
    published: VecDeque<(u64, Instant)>,
    members: Vec<MemberEntry>,
    attempts: BTreeMap<IpAddr, u32>,
    banned: BTreeSet<IpAddr>,
    pending: BTreeMap<u64, Pending<S>>,
    next_token: u64,
    next_member: u64,
    rng: ChaCha8Rng,
}

struct Shared<N: Network> {
    cfg: AuthenticatorConfig,
    heartbeat_timeout: Duration,
    distribution_timeout: Duration,
    auth_addr: SocketAddr,
    dist_addr: SocketAddr,
    state: Mutex<State<N::Stream>>,
    /// Current committed list (also read by the peer listener).
    members_tx: watch::Sender<MemberList>,
    /// Current committed list, encoded once per version for distribution.
    dist_tx: watch::Sender<Arc<[u8]>>,
    /// Wakes the distribution writers when `dist_tx` changes. Writers wait
    /// on this rather than on `watch::Receiver::changed`, because a watch
    /// channel wakes its receivers in an order drawn from tokio's unseeded
    /// RNG (`BigNotify`): the order of the distribution writes, and with it
    /// every simulated latency drawn after them, would differ from run to
    /// run. `Notify` wakes its waiters in the order they registered.
    dist_changed: Notify,
    events: EventSink,
    cancel: CancellationToken,
    tracker: TaskTracker,
    peer: Arc<PeerCore<N>>,
}

/// A running authenticator. Drop or [`Authenticator::leave`] to stop it.
pub struct Authenticator<N: Network = crate::net::TokioNet> {
    shared: Arc<Shared<N>>,
    events: Option<EventStream>,
    done: watch::Receiver<bool>,
}

impl<N: Network> Authenticator<N> {
    /// Binds the auth, distribution and peer sockets and starts serving.
    pub async fn start(net: N, cfg: AuthenticatorConfig) -> Result<Self, Error> {
        let auth_listener =
            net.bind(cfg.listen).await.map_err(|source| Error::Io { what: "bind the auth socket", source })?;
        let auth_addr =
            auth_listener.local_addr().map_err(|source| Error::Io { what: "auth socket address", source })?;
        let ip_only = SocketAddr::new(cfg.listen.ip(), 0);
        let dist_listener =
            net.bind(ip_only).await.map_err(|source| Error::Io { what: "bind the distribution socket", source })?;
        let peer_listener =
            net.bind(ip_only).await.map_err(|source| Error::Io { what: "bind the peer socket", source })?;
        let dist_addr =
            dist_listener.local_addr().map_err(|source| Error::Io { what: "dist socket address", source })?;
        let mut peer_addr =
            peer_listener.local_addr().map_err(|source| Error::Io { what: "peer socket address", source })?;
        if peer_addr.ip().is_unspecified() {
            // The member list needs a reachable address; on an unspecified
            // bind, advertise loopback (the auth socket's own IP is unknown).
            peer_addr.set_ip(if peer_addr.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }

        let (events, stream) = EventSink::channel(cfg.event_capacity);
        let first = MemberList::new(Some(0), vec![peer_addr]);
        let encoded: Arc<[u8]> =
            Message::Distro { members: first.members.to_vec(), version: first.version }.encode().into();
        let (members_tx, members_rx) = watch::channel(first);
        let (dist_tx, _) = watch::channel(encoded);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let local_ip = (!cfg.listen.ip().is_unspecified()).then_some(cfg.listen.ip());
        let peer = Arc::new(PeerCore {
            net: net.clone(),
            local_ip,
            peer_addr,
            alias: cfg.alias.clone(),
            members: members_rx,
            events: events.clone(),
            io_timeout: cfg.io_timeout,
            max_value_len: cfg.max_value_len,
            cancel: cancel.clone(),
        });
        let shared = Arc::new(Shared {
            heartbeat_timeout: cfg.effective_heartbeat_timeout(),
            distribution_timeout: cfg.effective_distribution_timeout(),
            state: Mutex::new(State {
                version: 0,
                published: VecDeque::from([(0, Instant::now())]),
                members: Vec::new(),
                attempts: BTreeMap::new(),
                banned: BTreeSet::new(),
                pending: BTreeMap::new(),
                next_token: 1,
                next_member: 1,
                rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            }),
            cfg,
            auth_addr,
            dist_addr,
            members_tx,
            dist_tx,
            dist_changed: Notify::new(),
            events,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            peer: peer.clone(),
        });
        info!(auth = %auth_addr, dist = %dist_addr, peer = %peer_addr, "authenticator listening");

        peer.spawn_listener(peer_listener, &tracker);
        tracker.spawn(accept_auth(shared.clone(), auth_listener));
        tracker.spawn(accept_dist(shared.clone(), dist_listener));

        let (done_tx, done) = watch::channel(false);
        let reaper = shared.clone();
        tokio::spawn(async move {
            reaper.cancel.cancelled().await;
            reaper.tracker.close();
            reaper.tracker.wait().await;
            reaper.events.emit(EventKind::Left);
            let _ = done_tx.send(true);
        });
        Ok(Authenticator { shared, events: Some(stream), done })
    }

    /// Where joiners connect.
    pub fn auth_addr(&self) -> SocketAddr {
        self.shared.auth_addr
    }
    /// The distribution socket.
    pub fn dist_addr(&self) -> SocketAddr {
        self.shared.dist_addr
    }
    /// The authenticator's own peer address (first in every list).
    pub fn peer_addr(&self) -> SocketAddr {
        self.shared.peer.peer_addr
    }
    /// The committed member list, authenticator first.
    pub fn members(&self) -> MemberList {
        self.shared.members_tx.borrow().clone()
    }
    /// A receiver that sees every committed list as it is published.
    pub fn watch_members(&self) -> watch::Receiver<MemberList> {
        self.shared.members_tx.subscribe()
    }
    /// Banned source IPs, in order.
    pub fn banned(&self) -> Vec<IpAddr> {
        self.shared.lock().banned.iter().copied().collect()
    }
    /// Handshakes in progress that have sent their peer address.
    pub fn pending_joins(&self) -> usize {
        self.shared.lock().pending.len()
    }
    /// Tasks still running (0 once left).
    pub fn task_count(&self) -> usize {
        self.shared.tracker.len()
    }
    /// The settings it runs with.
    pub fn config(&self) -> &AuthenticatorConfig {
        &self.shared.cfg
    }
    /// Takes the event stream (once).
    pub fn events(&mut self) -> Option<EventStream> {
        self.events.take()
    }
    /// Sends a chat message to every member.
    pub async fn broadcast(&self, data: &str) -> BroadcastReport {
        self.shared.peer.broadcast(data).await
    }
    /// Sends a chat message to one member.
    pub async fn send(&self, to: SocketAddr, data: &str) -> Result<Delivery, Error> {
        self.shared.peer.send_to(to, data, Recipient::Direct(to)).await
    }
    /// Closes every socket and ends every task; members see their
    /// connections end.
    pub async fn leave(&self) {
        self.shared.cancel.cancel();
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

impl<N: Network> Drop for Authenticator<N> {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

impl<N: Network> Shared<N> {
    fn lock(&self) -> MutexGuard<'_, State<N::Stream>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the committed list (call with the state lock held, so that
    /// versions and events come out in one order).
    fn publish(&self, st: &mut State<N::Stream>) {
        st.version += 1;
        let now = Instant::now();
        st.published.push_back((st.version, now));
        // Keep what `distribution_overdue` can need: versions published in
        // the last two bounds (older ones are overdue for anyone lacking them).
        let horizon = self.distribution_timeout * 2;
        while st.published.len() > 1 && st.published.front().is_some_and(|&(_, t)| now.duration_since(t) > horizon) {
            st.published.pop_front();
        }
        let members: Vec<SocketAddr> =
            std::iter::once(self.peer.peer_addr).chain(st.members.iter().map(|m| m.peer_addr)).collect();
        let list = MemberList::new(Some(st.version), members);
        let encoded: Arc<[u8]> =
            Message::Distro { members: list.members.to_vec(), version: list.version }.encode().into();
        let bytes = encoded.len();
        self.dist_tx.send_replace(encoded);
        self.dist_changed.notify_waiters();
        self.members_tx.send_replace(list.clone());
        self.events.emit(EventKind::MemberListChanged { list, bytes });
    }

    /// For a member whose newest list is `held`: the oldest version it lacks
    /// and how long ago that was published, if longer than the distribution
    /// timeout (the member should have reported it by now).
    fn distribution_overdue(&self, held: u64) -> Option<(u64, Duration)> {
        let st = self.lock();
        let now = Instant::now();
        let &(first, _) = st.published.front()?;
        if first > held.saturating_add(1) {
            // `held + 1` was pruned: published more than two bounds ago.
            return Some((held + 1, self.distribution_timeout * 2));
        }
        let &(missing, at) = st.published.iter().find(|(v, _)| *v > held)?;
        let age = now.duration_since(at);
        (age > self.distribution_timeout).then_some((missing, age))
    }

    /// How long one distribution round of a `list_bytes` list takes at the
    /// configured budget (see [`AuthenticatorConfig::distribution_budget`]).
    fn round_gap(&self, list_bytes: usize) -> Duration {
        let budget = self.cfg.distribution_budget;
        if budget == 0 {
            return Duration::ZERO;
        }
        let round = list_bytes as u128 * self.members_tx.borrow().len() as u128;
        let nanos = u64::try_from(round * 1_000_000_000 / budget as u128).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos).min(self.cfg.max_distribution_gap())
    }

    /// Removes member `id` if it is still a member; returns whether it was.
    fn remove_member(&self, id: u64, reason: RemovalReason) -> bool {
        let mut st = self.lock();
        let Some(pos) = st.members.iter().position(|m| m.id == id) else {
            return false;
        };
        let m = st.members.remove(pos);
        m.cancel.cancel();
        info!(member = %m.peer_addr, ?reason, "member removed");
        self.events.emit(EventKind::MemberRemoved { member: m.peer_addr, reason });
        self.publish(&mut st);
        true
    }
}

async fn accept_auth<N: Network>(shared: Arc<Shared<N>>, listener: N::Listener) {
    let permits = Arc::new(Semaphore::new(shared.cfg.max_handshakes));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, source)) => {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(%source, "too many handshakes in progress; connection closed");
                    continue;
                };
                let s = shared.clone();
                shared.tracker.spawn(async move {
                    let cancel = s.cancel.clone();
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => {}
                        _ = serve_joiner(s, stream, source, permit) => {}
                    }
                });
            }
            Err(e) => {
                // e.g. out of file descriptors: back off instead of spinning.
                warn!("auth accept failed: {e}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_dist<N: Network>(shared: Arc<Shared<N>>, listener: N::Listener) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, source)) => {
                let s = shared.clone();
                shared.tracker.spawn(async move {
                    let cancel = s.cancel.clone();
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => {}
                        _ = pair_dist(s, stream, source) => {}
                    }
                });
            }
            Err(e) => {
                warn!("distribution accept failed: {e}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Pairs a distribution connection with the pending joiner it belongs to:
/// by the token a protocol-2 joiner sends first, else the oldest pending
/// reference joiner from the same IP (the reference pairs blindly).
async fn pair_dist<N: Network>(shared: Arc<Shared<N>>, stream: N::Stream, source: SocketAddr) {
    let ip = source.ip();
    let (r, w) = tokio::io::split(stream);
    let mut reader = MessageReader::with_limit(r, shared.cfg.max_value_len);
    let expect_token = shared.lock().pending.values().any(|p| p.ip == ip && p.v2);
    let token = if expect_token {
        match timeout(shared.cfg.handshake_timeout, reader.next()).await {
            Ok(Ok(Message::DistToken(t))) => Some(t),
            Ok(Ok(other)) => {
                warn!(%source, "distribution connection sent {} instead of its token", other.kind());
                return;
            }
            Ok(Err(e)) => {
                debug!(%source, "distribution connection failed before its token: {e}");
                return;
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let pending = {
        let mut st = shared.lock();
        let key = match token {
            Some(t) => st.pending.get(&t).filter(|p| p.ip == ip).map(|_| t),
            None => st.pending.iter().find(|(_, p)| p.ip == ip && !p.v2).map(|(k, _)| *k),
        };
        key.and_then(|k| st.pending.remove(&k))
    };
    match pending {
        Some(p) => {
            let _ = p.tx.send((reader, w));
        }
        None => warn!(%source, ?token, "distribution connection matches no pending joiner; closed"),
    }
}

/// Removes a pending entry when its handshake ends, however it ends.
struct PendingGuard<'a, N: Network> {
    shared: &'a Shared<N>,
    token: u64,
}

impl<N: Network> Drop for PendingGuard<'_, N> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.token);
    }
}

async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message, limit: Duration) -> Result<(), String> {
    match timeout(limit, w.write_all(&msg.encode())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err(format!("write timed out after {limit:?}")),
    }
}

/// Handshake on one auth connection, then the member's session.
async fn serve_joiner<N: Network>(
    shared: Arc<Shared<N>>,
    stream: N::Stream,
    source: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let ip = source.ip();
    let local_ip = stream.local_addr().map(|a| a.ip()).ok();
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = MessageReader::with_limit(r, shared.cfg.max_value_len);
    let deadline = Instant::now() + shared.cfg.handshake_timeout;
    let fail = |error: String| {
        info!(%source, "handshake failed: {error}");
        shared.events.emit(EventKind::HandshakeFailed { source, error });
    };
    let io_limit = shared.cfg.handshake_timeout;

    if shared.lock().banned.contains(&ip) {
        info!(%ip, "banned address refused");
        shared.events.emit(EventKind::BanRefused { ip });
        let _ = write_msg(&mut w, &Message::Banned { banned: true, version: Some(PROTOCOL_VERSION) }, io_limit).await;
        let _ = timeout(io_limit, w.shutdown()).await;
        return;
    }
    if let Err(e) =
        write_msg(&mut w, &Message::Banned { banned: false, version: Some(PROTOCOL_VERSION) }, io_limit).await
    {
        return fail(e);
    }

    // Password.
    let (password, v2) = match tokio::time::timeout_at(deadline, reader.next()).await {
        Ok(Ok(Message::Shadow { password, version })) => (password, version.is_some_and(|v| v >= 2)),
        Ok(Ok(other)) => return fail(format!("expected shadow, got {}", other.kind())),
        Ok(Err(e)) => return fail(format!("reading the password: {e}")),
        Err(_) => return fail("no password before the handshake timeout".into()),
    };
    if password != shared.cfg.password {
        let (attempts, now_banned) = {
            let mut st = shared.lock();
            let n = st.attempts.entry(ip).or_insert(0);
            *n += 1;
            let n = *n;
            let ban = n >= shared.cfg.password_attempts;
            if ban {
                st.attempts.remove(&ip);
                st.banned.insert(ip);
            }
            (n, ban)
        };
        info!(%ip, attempts, "wrong password");
        shared.events.emit(EventKind::AuthFailed { ip, attempts });
        if now_banned {
            warn!(%ip, attempts, "address banned");
            shared.events.emit(EventKind::Banned { ip });
        }
        let _ = write_msg(&mut w, &Message::Authenticated(false), io_limit).await;
        let _ = timeout(io_limit, w.shutdown()).await;
        return;
    }
    let banned_meanwhile = {
        let mut st = shared.lock();
        st.attempts.remove(&ip);
        st.banned.contains(&ip)
    };
    if banned_meanwhile {
        // Another connection from this IP got it banned mid-handshake.
        let _ = write_msg(&mut w, &Message::Authenticated(false), io_limit).await;
        return fail("address was banned during the handshake".into());
    }
    if let Err(e) = write_msg(&mut w, &Message::Authenticated(true), io_limit).await {
        return fail(e);
    }

    // Peer address.
    let peer_addr = match tokio::time::timeout_at(deadline, reader.next()).await {
        Ok(Ok(Message::PeerAddress(a))) if a.port() != 0 && !a.ip().is_unspecified() => a,
        Ok(Ok(Message::PeerAddress(a))) => return fail(format!("unusable peer address {a}")),
        Ok(Ok(other)) => return fail(format!("expected peer_address, got {}", other.kind())),
        Ok(Err(e)) => return fail(format!("reading the peer address: {e}")),
        Err(_) => return fail("no peer address before the handshake timeout".into()),
    };

    // Pending until the distribution connection arrives.
    let (tx, rx) = oneshot::channel();
    let (token, provisional) = {
        let mut st = shared.lock();
        let token = st.next_token;
        st.next_token += 1;
        st.pending.insert(token, Pending { ip, v2, tx });
        let mut list: Vec<SocketAddr> = shared.members_tx.borrow().members.to_vec();
        list.retain(|m| *m != peer_addr);
        list.push(peer_addr);
        (token, list)
    };
    let guard = PendingGuard { shared: &shared, token };
    // The joiner's own first list includes itself, as the reference sends it;
    // unversioned, because it is not a committed list.
    if let Err(e) = write_msg(&mut w, &Message::Distro { members: provisional, version: None }, io_limit).await {
        return fail(e);
    }
    if !v2 {
        sleep(shared.cfg.v1_pacing).await;
    }
    let mut dist_addr = shared.dist_addr;
    if dist_addr.ip().is_unspecified()
        && let Some(l) = local_ip
    {
        dist_addr.set_ip(l);
    }
    if let Err(e) = write_msg(&mut w, &Message::DistAddr { addr: dist_addr, token: Some(token) }, io_limit).await {
        return fail(e);
    }
    let (dist_reader, mut dist_w) = match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(_)) => return fail("pending entry dropped".into()),
        Err(_) => return fail("no distribution connection before the handshake timeout".into()),
    };
    drop(guard);

    // Commit: only now does the joiner become a member.
    let member_cancel = shared.cancel.child_token();
    let (id, phase, joined_version) = {
        let mut st = shared.lock();
        if st.banned.contains(&ip) {
            drop(st);
            return fail("address was banned during the handshake".into());
        }
        let replaced: Vec<u64> = st.members.iter().filter(|m| m.peer_addr == peer_addr).map(|m| m.id).collect();
        for old in replaced {
            if let Some(pos) = st.members.iter().position(|m| m.id == old) {
                let m = st.members.remove(pos);
                m.cancel.cancel();
                shared.events.emit(EventKind::MemberRemoved { member: m.peer_addr, reason: RemovalReason::Replaced });
            }
        }
        let id = st.next_member;
        st.next_member += 1;
        st.members.push(MemberEntry { id, peer_addr, cancel: member_cancel.clone() });
        let interval_ms = shared.cfg.heartbeat_interval.as_millis().max(1) as u64;
        let phase = Duration::from_millis(st.rng.random_range(0..interval_ms));
        info!(member = %peer_addr, %ip, v2, "member joined");
        shared.events.emit(EventKind::MemberJoined { member: peer_addr, source: ip });
        shared.publish(&mut st);
        (id, phase, st.version)
    };
    drop(permit);

    // Distribution writer for this member.
    let min_gap = if v2 { shared.cfg.distribution_interval } else { shared.cfg.v1_pacing };
    let mut lists = shared.dist_tx.subscribe();
    let dist_shared = shared.clone();
    let dist_cancel = member_cancel.clone();
    shared.tracker.spawn(async move {
        let mut dist_reader = dist_reader;
        let reason = loop {
            let bytes = lists.borrow_and_update().clone();
            let write = timeout(dist_shared.heartbeat_timeout, dist_w.write_all(&bytes));
            tokio::select! {
                biased;
                _ = dist_cancel.cancelled() => return,
                r = write => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break RemovalReason::Closed,
                    Err(_) => break RemovalReason::DistributionStalled,
                },
            }
            sleep_or_cancel(min_gap.max(dist_shared.round_gap(bytes.len())), &dist_cancel).await;
            // Wait for the next change (deterministically: see
            // `dist_changed`); meanwhile watch the socket for EOF. The
            // `Notified` future receives `notify_waiters` from its creation
            // on, so a change published between the check and the wait is
            // not missed.
            let changed = dist_shared.dist_changed.notified();
            match lists.has_changed() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(_) => return,
            }
            tokio::select! {
                biased;
                _ = dist_cancel.cancelled() => return,
                _ = changed => {}
                r = dist_reader.next() => match r {
                    Err(DecodeError::Eof { .. }) | Err(DecodeError::Io(_)) => break RemovalReason::Closed,
                    Err(e) => break RemovalReason::ProtocolError(format!("on the distribution socket: {e}")),
                    Ok(_) => {}
                },
            }
        };
        dist_shared.remove_member(id, reason);
    });

    // Heartbeats on the auth connection.
    // A protocol-2 member must report (at least) the list that admitted it.
    let acks = v2.then_some(joined_version - 1);
    let reason = heartbeat(&shared, &mut reader, &mut w, peer_addr, phase, acks, &member_cancel).await;
    if let Some(reason) = reason {
        shared.remove_member(id, reason);
    }
    let _ = timeout(Duration::from_millis(100), w.shutdown()).await;
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => {}
        _ = sleep(d) => {}
    }
}

/// Runs a member's heartbeats until it must be removed (Some(reason)) or was
/// removed elsewhere (None).
///
/// `acks` is given for a protocol-2 member: the version it is known to hold
/// so far (one below the list that admitted it). Once its answers carry list
/// versions, it is held to them: a member still lacking a list published
/// more than the distribution timeout ago is removed as `DistributionLost`.
/// (A member that answers with plain heartbeats is not: it does not report.)
#[allow(clippy::too_many_arguments)]
async fn heartbeat<N: Network>(
    shared: &Shared<N>,
    reader: &mut MessageReader<ReadHalf<N::Stream>>,
    w: &mut WriteHalf<N::Stream>,
    member: SocketAddr,
    phase: Duration,
    acks: Option<u64>,
    cancel: &CancellationToken,
) -> Option<RemovalReason> {
    let interval = shared.cfg.heartbeat_interval;
    let limit = shared.heartbeat_timeout;
    let mut held: Option<u64> = None;
    let mut last_heard = Instant::now();
    let mut missed_reported = false;
    let mut ticks = tokio::time::interval_at(Instant::now() + phase, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            msg = reader.next() => match msg {
                Ok(Message::Heartbeat) => {
                    last_heard = Instant::now();
                    missed_reported = false;
                }
                Ok(Message::VersionedHeartbeat { version }) => {
                    last_heard = Instant::now();
                    missed_reported = false;
                    if let Some(floor) = acks {
                        held = Some(held.unwrap_or(floor).max(version));
                    }
                }
                Ok(other) => debug!(%member, "ignored {} on the auth connection", other.kind()),
                Err(DecodeError::Eof { .. }) | Err(DecodeError::Io(_)) => return Some(RemovalReason::Closed),
                Err(e) => return Some(RemovalReason::ProtocolError(e.to_string())),
            },
            _ = ticks.tick() => {
                let silent = last_heard.elapsed();
                if silent > limit {
                    return Some(RemovalReason::HeartbeatTimeout);
                }
                if silent > interval + interval / 2 && !missed_reported {
                    missed_reported = true;
                    shared.events.emit(EventKind::HeartbeatMissed { peer: member, silent_for: silent });
                }
                if let Some((missing, age)) = held.and_then(|h| shared.distribution_overdue(h)) {
                    warn!(%member, held = ?held, missing, ?age, "member still lacks a published list: distribution connection lost");
                    return Some(RemovalReason::DistributionLost);
                }
                // A member that stopped reading blocks this write; bound it
                // by what is left of its timeout.
                let left = limit.saturating_sub(silent).max(Duration::from_millis(1));
                match timeout(left, w.write_all(&Message::Heartbeat.encode())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Some(RemovalReason::Closed),
                    Err(_) => return Some(RemovalReason::HeartbeatTimeout),
                }
            }
        }
    }
}
