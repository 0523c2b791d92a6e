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
//! Distribution never blocks on a slow member: the current version lives in a
//! `watch` channel (a one-slot queue that always holds the newest one), and
//! each member has its own writer that sends what brings its member up to the
//! newest version when it gets to it, so a burst of changes coalesces instead
//! of queueing stale lists. Reference joiners get whole lists, spaced (see the
//! interop hazard in the wire notes); joiners that announce protocol 2 get a
//! whole list first, then deltas (`docs/protocol-2.md`), unpaced by the budget.
//! No change costs O(members) under the state lock: the list is a persistent
//! structure, members are found by address through an index, and only the
//! change is encoded there.
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
//!
//! A protocol-2 joiner may ask for its lists on its auth connection (one socket per member:
//! `docs/protocol-2-extensions.md`, "One connection"); its distribution writer then shares
//! the auth connection's write half with its heartbeats, everything else unchanged.
//!
//! The module is split so that a change to a rule touches one file:
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | [`AuthenticatorConfig`] and the bounds derived from it |
//! | [`state`] | the rules: members, pending handshakes, bans, versions, pacing (no I/O) |
//! | `handshake` | the accept loops, one handshake per connection, distribution pairing |
//! | `distribution` | publishing a list and each member's distribution writer |
//! | `heartbeat` | each member's heartbeats and the silence and lost-list verdicts |
//! | `refusals` | rate-limited logging of refused and failed connections |
//!
//! This file holds the [`Authenticator`] handle and the state the tasks share.

mod distribution;
mod handshake;
mod heartbeat;
mod refusals;

pub mod config;
pub mod state;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

pub use config::{
    AuthenticatorConfig, DEFAULT_AUTH_PORT, DEFAULT_DELTA_HISTORY, DEFAULT_DELTA_RATE, DEFAULT_DISTRIBUTION_BUDGET,
    DEFAULT_MAX_ALIAS_LEN,
};
pub use distribution::{DistStats, SnapshotReason};
use state::AuthState;

use crate::error::Error;
use crate::event::{EventKind, EventSink, EventStream, RemovalReason};
use crate::member_list::MemberList;
use crate::net::{Listener, Network};
use crate::peer::{BroadcastReport, Delivery, ExactlyOnce, Freeze, PeerCore};
use crate::scram::Verifier;
use crate::wire::{MessageReader, Recipient};

/// A distribution connection, as handed from the pairing task to the handshake waiting for it.
type DistConn<S> = (MessageReader<ReadHalf<S>>, WriteHalf<S>);

/// The rules' state, with what the tasks attach: each member's cancellation token (ends its
/// writer and heartbeats), each pending handshake's channel for its distribution connection,
/// and each handshake's cancellation token (ends it when it is shed).
type State<S> = AuthState<CancellationToken, oneshot::Sender<DistConn<S>>, CancellationToken>;

/// What every task of one authenticator shares.
struct Shared<N: Network> {
    cfg: AuthenticatorConfig,
    heartbeat_timeout: Duration,
    auth_addr: SocketAddr,
    dist_addr: SocketAddr,
    /// Time zero of [`Shared::now`], the clock the state machine runs on.
    epoch: Instant,
    state: Mutex<State<N::Stream>>,
    /// Current committed list (also read by the peer listener).
    members_tx: watch::Sender<MemberList>,
    /// Current committed version, as the distribution writers need it.
    dist_tx: watch::Sender<Arc<distribution::Version>>,
    /// Recent deltas, encoded once each, for writers that fell behind.
    history: Mutex<distribution::History>,
    /// What the writers sent.
    dist_counters: distribution::DistCounters,
    /// Distribution connections accepted so far.
    dist_accepted: std::sync::atomic::AtomicU64,
    /// Wakes the distribution writers when `dist_tx` changes. Writers wait
    /// on this rather than on `watch::Receiver::changed`, because a watch
    /// channel wakes its receivers in an order drawn from tokio's unseeded
    /// RNG (`BigNotify`): the order of the distribution writes, and with it
    /// every simulated latency drawn after them, would differ from run to
    /// run. `Notify` wakes its waiters in the order they registered.
    dist_changed: Notify,
    events: EventSink,
    /// Rate-limited log of refused and failed connections.
    refusals: refusals::RefusalLog,
    cancel: CancellationToken,
    tracker: TaskTracker,
    peer: Arc<PeerCore<N>>,
    /// What protocol-2 joiners prove they know: the configured verifier, or one derived from
    /// the cleartext password at start.
    verifier: Verifier,
    /// Source of the authenticator's SCRAM nonces (seeded from the config's seed, apart from
    /// the state's RNG so heartbeat phases do not depend on how many joiners used SCRAM).
    scram_rng: Mutex<ChaCha8Rng>,
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
            auth_listener.local_addr().map_err(|source| Error::Io { what: "read the auth socket address", source })?;
        let ip_only = SocketAddr::new(cfg.listen.ip(), 0);
        let dist_listener =
            net.bind(ip_only).await.map_err(|source| Error::Io { what: "bind the distribution socket", source })?;
        let peer_listener =
            net.bind(ip_only).await.map_err(|source| Error::Io { what: "bind the peer socket", source })?;
        let dist_addr = dist_listener
            .local_addr()
            .map_err(|source| Error::Io { what: "read the distribution socket address", source })?;
        let mut peer_addr =
            peer_listener.local_addr().map_err(|source| Error::Io { what: "read the peer socket address", source })?;
        // The member list needs an address other members reach: never guess it (a guessed
        // 127.0.0.1 sends every remote member's messages to its own loopback).
        match (cfg.advertise, peer_addr.ip().is_unspecified()) {
            (Some(ip), _) => peer_addr.set_ip(ip),
            (None, false) => {}
            (None, true) => {
                return Err(Error::Config(format!(
                    "listening on {} needs the address members reach this authenticator at: set \
                     advertise (pyile auth --advertise IP), or listen on that address",
                    cfg.listen.ip()
                )));
            }
        }

        let mut scram_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        scram_rng.set_stream(0x5C7A);
        let verifier = match &cfg.verifier {
            Some(v) => v.clone(),
            None => Verifier::new(&cfg.password, cfg.scram_iterations, &mut scram_rng)
                .map_err(|e| Error::Config(format!("cannot derive the SCRAM verifier: {e}")))?,
        };
        let (events, stream) = EventSink::channel(cfg.event_capacity);
        let state = State::new(&cfg, peer_addr, Duration::ZERO);
        let first = state.list();
        let (members_tx, members_rx) = watch::channel(first.clone());
        let (dist_tx, _) = watch::channel(distribution::Version::new(first.clone(), state.aliases()));
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
            freeze: Freeze::default(),
            exactly_once: Some(ExactlyOnce::new(cfg.exactly_once, {
                // This start's message epoch: its own stream of the seeded RNG.
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(0xD3D0);
                rand::Rng::next_u64(&mut rng)
            })),
        });
        let history = distribution::history(cfg.delta_history);
        let shared = Arc::new(Shared {
            heartbeat_timeout: cfg.effective_heartbeat_timeout(),
            epoch: Instant::now(),
            state: Mutex::new(state),
            cfg,
            auth_addr,
            dist_addr,
            members_tx,
            dist_tx,
            history,
            dist_counters: distribution::DistCounters::default(),
            dist_accepted: std::sync::atomic::AtomicU64::new(0),
            dist_changed: Notify::new(),
            events,
            refusals: refusals::RefusalLog::new(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            peer: peer.clone(),
            verifier,
            scram_rng: Mutex::new(scram_rng),
        });
        debug!(auth = %auth_addr, dist = %dist_addr, peer = %peer_addr, "authenticator listening");

        peer.spawn_listener(peer_listener, &tracker);
        tracker.spawn(handshake::accept_auth(shared.clone(), auth_listener));
        tracker.spawn(handshake::accept_dist(shared.clone(), dist_listener));

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
    /// Banned sources (IPv4 addresses, IPv6 /64 networks), in order.
    pub fn banned(&self) -> Vec<IpAddr> {
        self.shared.lock().banned(self.shared.now()).collect()
    }
    /// Handshakes in progress that have sent their peer address.
    pub fn pending_joins(&self) -> usize {
        self.shared.lock().pending_count()
    }
    /// The members' aliases by peer address (protocol-2 members that joined with one).
    pub fn aliases(&self) -> crate::member_list::AliasMap {
        self.shared.lock().aliases()
    }
    /// Handshakes in progress (from accept to admission).
    pub fn handshakes_in_progress(&self) -> usize {
        self.shared.lock().handshake_count()
    }
    /// What the distribution writers have sent so far: deltas, snapshots and why, whole
    /// lists to reference members, and their bytes.
    pub fn distribution_stats(&self) -> DistStats {
        self.shared.dist_counters.stats()
    }
    /// Tasks still running (0 once left).
    pub fn task_count(&self) -> usize {
        self.shared.tracker.len()
    }
    /// Connections accepted on the distribution socket so far (paired or not): one per
    /// member that joined with two connections, none for a one-connection member.
    pub fn distribution_connections_accepted(&self) -> u64 {
        self.shared.dist_accepted.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Now, on the state machine's clock.
    fn now(&self) -> Duration {
        Instant::now().duration_since(self.epoch)
    }

    /// Removes member `id` if it is still a member; returns whether it was.
    fn remove_member(&self, id: u64, reason: RemovalReason) -> bool {
        let mut st = self.lock();
        let Some((gone, published)) = st.remove(id, reason.departure(), self.now()) else {
            return false;
        };
        gone.attached.cancel();
        info!(member = %gone.peer_addr, ?reason, "member removed");
        self.events.emit(EventKind::MemberRemoved { member: gone.peer_addr, reason });
        // Still under the lock, so that versions and events come out in one order.
        self.announce(published);
        true
    }
}
