//! The joiner: authenticates with an authenticator, answers its heartbeats,
//! follows member-list distributions and exchanges chat messages.
//!
//! [`Joiner::join`] runs the whole handshake under one deadline and returns
//! only once the distribution connection is up. After that three tasks run:
//! heartbeats on the auth connection (the authenticator is declared lost
//! after `heartbeat_timeout` of silence, or when it closes), the
//! distribution reader (which takes a list only if it is newer than the one
//! held, so the view never regresses) and the peer listener. When the
//! authenticator is lost the joiner leaves by itself, as the reference does.
//!
//! With an authenticator that announced protocol 2 (and `announce_extensions`
//! on), every heartbeat answer carries the version of the newest committed
//! list held ([`Message::VersionedHeartbeat`]): the authenticator removes a
//! member whose answers keep showing a list it should long have received
//! (`RemovalReason::DistributionLost`), which is how a dead distribution
//! connection under a live auth connection is noticed. The joiner then sees
//! its auth connection close and is gone, like any removed member.
//!
//! A protocol-2 joiner receives deltas after its first whole list (`docs/protocol-2.md`)
//! and applies each in O(change × log n) ([`MemberList::apply`]); the resulting list is an
//! ordinary [`MemberList`] (an O(1) clone), so [`Joiner::members`], the peer listener and
//! `MemberListChanged` events look exactly as with whole lists. A delta for another version
//! than the one held is skipped (the authenticator learns the held version from the next
//! heartbeat answer and sends a whole list), and so is one that arrives while the joiner
//! still holds only its provisional handshake list; a malformed one (removing an address not held,
//! adding one already held, going backwards, growing the list past
//! [`JoinerConfig::max_members`]) means a broken or hostile authenticator: the joiner
//! leaves with a [`LostReason::Error`] naming it.
//!
//! With a protocol-2 authenticator a joiner given an alias ([`JoinerConfig::alias`]) joins
//! under it: the authenticator refuses a second live member with the same alias
//! ([`Error::AliasTaken`]). Its deltas announce every join (with the alias) and every leave
//! (with the reason), which the joiner turns into [`EventKind::PeerJoined`] and
//! [`EventKind::PeerLeft`], in the authenticator's order; a whole list that skips versions
//! is reported as [`EventKind::AnnouncementsSkipped`]. [`Joiner::aliases`] holds the aliases.
//!
//! With [`JoinerConfig::one_connection`] a protocol-2 joiner asks for its lists on the auth
//! connection: no distribution connection and no distribution task; the heartbeat task, that
//! connection's only reader, takes snapshots and deltas between the heartbeats through the
//! same `Follower` the distribution task uses, so events and errors are identical.
//!
//! [`Joiner::close`] is a graceful leave: it tells a protocol-2 authenticator it is leaving
//! (`{"leaving": true}`), so the others hear "left", not "closed". [`Joiner::leave`] (or a
//! drop) closes every socket without a word, as a killed process would: the authenticator
//! sees the close and removes the member at once, as `closed`. [`Joiner::hang`] is the other way to go, a process that hung
//! or died without its kernel closing anything: every task stops reading and answering, and
//! the sockets stay open in the returned [`Hung`] until it is dropped, so the authenticator
//! can only notice through its heartbeat timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::dedup::ExactlyOnceConfig;
use crate::error::Error;
use crate::event::{DEFAULT_EVENT_CAPACITY, EventKind, EventSink, EventStream, HandshakeStage, LostReason};
use crate::member_list::{AliasMap, Delta, DeltaError, Departure, MemberList, SharedLists, Step};
use crate::net::{Listener, NetStream, Network};
use crate::peer::{BroadcastReport, Delivery, ExactlyOnce, Freeze, PeerCore};
use crate::scram::{ClientExchange, DEFAULT_MAX_ITERATIONS, KeyCache};
use crate::wire::{DEFAULT_MAX_VALUE_LEN, DecodeError, Message, MessageReader, PROTOCOL_VERSION, Recipient, Refusal};

/// Settings of a [`Joiner`]; build with [`JoinerConfig::new`] and the
/// chained setters.
#[derive(Clone, Debug)]
pub struct JoinerConfig {
    password: String,
    alias: String,
    present_alias: bool,
    local_ip: Option<IpAddr>,
    peer_port: u16,
    handshake_timeout: Duration,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    io_timeout: Duration,
    max_value_len: usize,
    max_members: usize,
    event_capacity: usize,
    announce: bool,
    announcements: bool,
    seed: Option<u64>,
    require_mutual_auth: bool,
    max_iterations: u32,
    shared_lists: Option<SharedLists>,
    key_cache: Option<KeyCache>,
    exactly_once: ExactlyOnceConfig,
    one_connection: bool,
}

/// Default [`JoinerConfig::max_members`].
pub const DEFAULT_MAX_MEMBERS: usize = 100_000;

impl JoinerConfig {
    /// Defaults: peer port 0, 5 s handshake, authenticator lost after 7 s
    /// without a heartbeat (the reference beats every 2 s).
    pub fn new(password: impl Into<String>) -> Self {
        JoinerConfig {
            password: password.into(),
            alias: "joiner".into(),
            present_alias: false,
            local_ip: None,
            peer_port: 0,
            handshake_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(7),
            io_timeout: Duration::from_secs(2),
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            max_members: DEFAULT_MAX_MEMBERS,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            announce: true,
            announcements: true,
            seed: None,
            require_mutual_auth: false,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            shared_lists: None,
            key_cache: None,
            exactly_once: ExactlyOnceConfig::default(),
            one_connection: false,
        }
    }
    /// Alias sent with chat messages and, to a protocol-2 authenticator, in the handshake:
    /// the join is then refused while another live member holds it ([`Error::AliasTaken`]),
    /// and the other members see it announced. Without it the joiner chats as "joiner" and
    /// joins without an alias.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = alias.into();
        self.present_alias = true;
        self
    }
    /// Local IP for every outgoing connection and for the peer listener.
    pub fn local_ip(mut self, ip: IpAddr) -> Self {
        self.local_ip = Some(ip);
        self
    }
    /// [`JoinerConfig::local_ip`] when given; unchanged (any local IP) when `None`.
    pub fn local_ip_opt(mut self, ip: Option<IpAddr>) -> Self {
        if ip.is_some() {
            self.local_ip = ip;
        }
        self
    }
    /// Port of the peer listener (0: any free port).
    pub fn peer_port(mut self, port: u16) -> Self {
        self.peer_port = port;
        self
    }
    /// Bound on the whole handshake.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
    /// The authenticator's expected heartbeat interval (for missed-beat events).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }
    /// Silence after which the authenticator is considered lost.
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = d;
        self
    }
    /// Bound on one chat message's connect, write and echo.
    pub fn io_timeout(mut self, d: Duration) -> Self {
        self.io_timeout = d;
        self
    }
    /// Bound on one incoming JSON value.
    pub fn max_value_len(mut self, n: usize) -> Self {
        self.max_value_len = n;
        self
    }
    /// Bound on the length of the member list deltas may build (a whole list is bounded by
    /// [`JoinerConfig::max_value_len`] already); past it the joiner leaves with an error.
    pub fn max_members(mut self, n: usize) -> Self {
        self.max_members = n;
        self
    }
    /// Capacity of the event channel.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }
    /// Whether to announce protocol 2 to the authenticator (default true).
    /// Off, this joiner behaves as a plain v1 (reference) joiner on the wire.
    pub fn announce_extensions(mut self, on: bool) -> Self {
        self.announce = on;
        self
    }
    /// Whether to emit [`EventKind::PeerJoined`] and [`EventKind::PeerLeft`] for every join and
    /// leave a delta announces (default true). A process that never reads them (a load
    /// generator with thousands of joiners) turns them off; the aliases are kept either way.
    pub fn announcements(mut self, on: bool) -> Self {
        self.announcements = on;
        self
    }
    /// Seed of the RNG that draws this joiner's SCRAM nonces (simulations replay exactly);
    /// by default a fresh one from the OS.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Refuse to send the password to an authenticator that does not offer the SCRAM
    /// exchange (a reference authenticator, an older one, or an impostor posing as one):
    /// the join fails with [`Error::MutualAuthUnavailable`] before any password is sent.
    /// Off by default, so a reference authenticator still gets v1's cleartext `shadow`.
    pub fn require_mutual_auth(mut self, on: bool) -> Self {
        self.require_mutual_auth = on;
        self
    }
    /// Most PBKDF2 iterations this joiner computes for an authenticator's challenge
    /// (default [`DEFAULT_MAX_ITERATIONS`]); a challenge asking for more fails the join.
    pub fn max_iterations(mut self, n: u32) -> Self {
        self.max_iterations = n;
        self
    }
    /// Lists to share with the other joiners of this process that follow the same
    /// authenticator (a load generator's, a simulation's): what one builds from a snapshot or
    /// a delta, the others take instead of building a copy. See [`SharedLists`].
    pub fn shared_lists(mut self, lists: SharedLists) -> Self {
        self.shared_lists = Some(lists);
        self
    }
    /// Exactly-once chat delivery between protocol-2 nodes: the duplicate filter's bounds and
    /// the sender's retries (default [`ExactlyOnceConfig::default`]; see [`crate::dedup`]).
    /// Unused when [`JoinerConfig::announce_extensions`] is off (the joiner then speaks v1).
    pub fn exactly_once(mut self, cfg: ExactlyOnceConfig) -> Self {
        self.exactly_once = cfg;
        self
    }
    /// Asks a protocol-2 authenticator for the member lists on the auth connection (default
    /// false): one connection to the authenticator instead of two, its snapshots and deltas
    /// between the heartbeats (`{"one_connection":true}` in the first handshake message;
    /// `docs/protocol-2-extensions.md`). An authenticator that does not announce protocol 2
    /// is never asked, and one that answers with a distribution address gets the usual two
    /// connections: the joiner follows whatever it is told.
    pub fn one_connection(mut self, on: bool) -> Self {
        self.one_connection = on;
        self
    }
    /// SCRAM client keys to share with the other joiners of this process: computed once per
    /// password, salt and iteration count instead of one PBKDF2 per join. See [`KeyCache`].
    pub fn scram_key_cache(mut self, cache: KeyCache) -> Self {
        self.key_cache = Some(cache);
        self
    }
}

/// This start's message epoch ([`crate::dedup`]): from the joiner's seed (its own stream of
/// the seeded RNG, so it replays in simulations), else from the OS.
fn message_epoch(seed: Option<u64>) -> u64 {
    use rand::Rng;
    match seed {
        Some(seed) => {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            rng.set_stream(0xD3D0);
            rng.next_u64()
        }
        None => rand::make_rng::<ChaCha20Rng>().next_u64(),
    }
}

/// A joined member. Drop or [`Joiner::leave`] to leave.
pub struct Joiner<N: Network = crate::net::TokioNet> {
    peer: Arc<PeerCore<N>>,
    aliases: Arc<std::sync::Mutex<AliasMap>>,
    /// Fired by [`Joiner::close`]: the heartbeat task says it is leaving (protocol 2).
    leaving: Option<CancellationToken>,
    auth_addr: SocketAddr,
    dist_local: Option<SocketAddr>,
    /// Whether it has a distribution connection (false: its lists come on the auth connection).
    dist_connection: bool,
    members: watch::Receiver<MemberList>,
    events: Option<EventStream>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    done: watch::Receiver<bool>,
}

impl<N: Network> Joiner<N> {
    /// Connects to the authenticator at `target` and runs the handshake.
    pub async fn join(net: N, target: SocketAddr, cfg: JoinerConfig) -> Result<Self, Error> {
        let (events, stream) = EventSink::channel(cfg.event_capacity);
        let limit = cfg.handshake_timeout;
        let deadline = Instant::now() + limit;
        let timed_out = |what: &'static str| Error::Timeout { what, after: limit };

        let auth = match timeout_at(deadline, net.connect(cfg.local_ip, target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(Error::Connection { addr: target, source }),
            Err(_) => return Err(timed_out("connecting to the authenticator")),
        };
        events.emit(EventKind::Handshake(HandshakeStage::Connected));
        let my_ip = match cfg.local_ip {
            Some(ip) => ip,
            None => auth.local_addr().map_err(|source| Error::Io { what: "read the local address", source })?.ip(),
        };
        let listener = net
            .bind(SocketAddr::new(my_ip, cfg.peer_port))
            .await
            .map_err(|source| Error::Io { what: "bind the peer socket", source })?;
        let mut peer_addr =
            listener.local_addr().map_err(|source| Error::Io { what: "read the peer socket address", source })?;
        if peer_addr.ip().is_unspecified() {
            peer_addr.set_ip(my_ip);
        }

        let (r, mut w) = tokio::io::split(auth);
        let mut reader = MessageReader::with_limit(r, cfg.max_value_len);
        let recv = |what: &'static str| {
            move |r: Result<Result<Message, DecodeError>, tokio::time::error::Elapsed>| match r {
                Ok(Ok(m)) => Ok(m),
                Ok(Err(source)) => Err(Error::Receive { addr: target, source }),
                Err(_) => Err(Error::Timeout { what, after: limit }),
            }
        };
        let send = |r: Result<std::io::Result<()>, tokio::time::error::Elapsed>, what: &'static str| match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(Error::Send { addr: target, source }),
            Err(_) => Err(Error::Timeout { what, after: limit }),
        };

        // Banned status (and whether the authenticator speaks protocol 2).
        let (auth_v2, scram_offered) = match recv(
            "waiting for the authenticator's greeting (the port accepted the connection but sent no banned status: is it a Pyile authenticator?)",
        )(timeout_at(deadline, reader.next()).await)?
        {
            Message::Banned { banned, version, scram } => {
                events.emit(EventKind::Handshake(HandshakeStage::BannedStatus { banned }));
                if banned {
                    events.emit(EventKind::Banned { ip: my_ip });
                    return Err(Error::Banned);
                }
                (version.is_some_and(|v| v >= PROTOCOL_VERSION), scram)
            }
            other => return Err(Error::Unexpected { addr: target, expected: "banned", got: other.kind() }),
        };
        // Extension keys only between two protocol-2 peers: a reference
        // authenticator gets exactly the v1 bytes.
        let v2 = auth_v2 && cfg.announce;
        // Password: the SCRAM exchange with an authenticator that offers it (the password
        // never crosses the wire, and the authenticator proves it knows it too), else v1's
        // cleartext `shadow`.
        let scram = v2 && scram_offered;
        // The alias, to a protocol-2 authenticator only; so is the request for one connection.
        let presented = (v2 && cfg.present_alias).then(|| cfg.alias.clone());
        let ask_one = v2 && cfg.one_connection;
        let refused = |r: Refusal| match r {
            Refusal::AliasTaken => Error::AliasTaken { alias: cfg.alias.clone() },
            Refusal::BadAlias => Error::BadAlias { alias: cfg.alias.clone() },
            Refusal::Other(reason) => Error::Refused { reason },
        };
        if cfg.require_mutual_auth && !scram {
            return Err(Error::MutualAuthUnavailable);
        }
        let ok = if scram {
            let exchange = match cfg.seed {
                Some(seed) => ClientExchange::start(&mut ChaCha20Rng::seed_from_u64(seed)),
                None => ClientExchange::start(&mut rand::make_rng::<ChaCha20Rng>()),
            };
            let start = Message::ScramStart {
                nonce: exchange.nonce().to_owned(),
                version: Some(PROTOCOL_VERSION),
                alias: presented.clone(),
                one_connection: ask_one,
            };
            send(timeout_at(deadline, w.write_all(&start.encode())).await, "sending the SCRAM nonce")?;
            let challenge = match recv("waiting for the SCRAM challenge")(timeout_at(deadline, reader.next()).await)? {
                Message::ScramChallenge(c) => c,
                other => {
                    return Err(Error::Unexpected { addr: target, expected: "scram challenge", got: other.kind() });
                }
            };
            let answer = answer_off_runtime(exchange, &cfg, challenge).await?;
            let proof = Message::ScramProof { nonce: answer.nonce.clone(), proof: answer.proof.clone() };
            send(timeout_at(deadline, w.write_all(&proof.encode())).await, "sending the SCRAM proof")?;
            match recv("waiting for the password check")(timeout_at(deadline, reader.next()).await)? {
                Message::ScramAccepted { signature } if answer.verify_server(&signature) => true,
                // Accepted without proof, or with a wrong one: it does not know the password.
                Message::ScramAccepted { .. } | Message::Authenticated(true) => {
                    return Err(Error::ImpostorAuthenticator { addr: target });
                }
                Message::Authenticated(false) => false,
                Message::Refused(r) => return Err(refused(r)),
                other => return Err(Error::Unexpected { addr: target, expected: "authenticated", got: other.kind() }),
            }
        } else {
            let shadow = Message::Shadow {
                password: cfg.password.clone(),
                version: cfg.announce.then_some(PROTOCOL_VERSION),
                alias: presented.clone(),
                one_connection: ask_one,
            };
            send(timeout_at(deadline, w.write_all(&shadow.encode())).await, "sending the password")?;
            match recv("waiting for the password check")(timeout_at(deadline, reader.next()).await)? {
                Message::Authenticated(ok) => ok,
                Message::Refused(r) if v2 => return Err(refused(r)),
                other => return Err(Error::Unexpected { addr: target, expected: "authenticated", got: other.kind() }),
            }
        };
        events.emit(EventKind::Handshake(HandshakeStage::Authenticated { ok }));
        if !ok {
            events.emit(EventKind::AuthFailed { ip: my_ip, attempts: 1 });
            return Err(Error::Authentication);
        }
        // Peer address, first list, distribution address.
        send(
            timeout_at(deadline, w.write_all(&Message::PeerAddress(peer_addr).encode())).await,
            "sending the peer address",
        )?;
        // The first list: a reference authenticator's provisional one (this joiner in it,
        // unversioned), or a protocol-2 one's committed list of some version, which the
        // deltas that follow start from; the joiner's own view is then that list with itself
        // last, exactly the provisional list, until the first delta brings the real one.
        let lists = ListBuilder { max_members: cfg.max_members, shared: cfg.shared_lists.clone() };
        let first = match timeout_at(deadline, reader.next_with(|b| lists.decode(b))).await {
            Ok(Ok(incoming)) => incoming,
            Ok(Err(source)) => return Err(Error::Receive { addr: target, source }),
            Err(_) => return Err(Error::Timeout { what: "waiting for the first member list", after: limit }),
        };
        let (first, committed) = match first {
            Incoming::List(list, aliases) if list.version.is_some() => {
                (list.provisional_for(peer_addr), Some((list, aliases)))
            }
            Incoming::List(list, _) => (list, None),
            Incoming::Other(other) => {
                return Err(Error::Unexpected { addr: target, expected: "distro", got: other.kind() });
            }
            Incoming::Step(_) | Incoming::Delta(..) => {
                return Err(Error::Unexpected { addr: target, expected: "distro", got: "delta" });
            }
        };
        let received = committed.as_ref().map_or(&first, |(list, _)| list);
        events.emit(EventKind::Handshake(HandshakeStage::FirstList(received.clone())));
        // The distribution address, or (asked for) lists on this connection.
        let dist = match recv("waiting for the distribution address")(timeout_at(deadline, reader.next()).await)? {
            Message::DistAddr { addr: dist_addr, token } => {
                let dist = match timeout_at(deadline, net.connect(cfg.local_ip, dist_addr)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(source)) => return Err(Error::Connection { addr: dist_addr, source }),
                    Err(_) => return Err(timed_out("connecting to the distribution socket")),
                };
                let dist_local = dist.local_addr().ok();
                let (dist_r, mut dist_w) = tokio::io::split(dist);
                if let (Some(t), true) = (token, cfg.announce) {
                    send(
                        timeout_at(deadline, dist_w.write_all(&Message::DistToken(t).encode())).await,
                        "sending the distribution token",
                    )?;
                }
                Some((dist_local, dist_r, dist_w))
            }
            Message::ListsHere if ask_one => {
                // Echoed: the authenticator admits the member once it reads this.
                send(timeout_at(deadline, w.write_all(&Message::ListsHere.encode())).await, "confirming lists_here")?;
                None
            }
            other => return Err(Error::Unexpected { addr: target, expected: "dist_addr", got: other.kind() }),
        };
        let dist_local = dist.as_ref().and_then(|(local, ..)| *local);
        let dist_connection = dist.is_some();
        // The lists' source is set up: the equivalent point for both kinds of member.
        events.emit(EventKind::Handshake(HandshakeStage::DistConnected));
        debug!(%peer_addr, auth = %target, members = first.len(), "joined");
        events.emit(EventKind::Joined { peer_addr, list: first.clone() });

        let (members_tx, members) = watch::channel(first);
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let peer = Arc::new(PeerCore {
            net,
            local_ip: cfg.local_ip.or(Some(my_ip)),
            peer_addr,
            alias: cfg.alias.clone(),
            members: members.clone(),
            events: events.clone(),
            io_timeout: cfg.io_timeout,
            max_value_len: cfg.max_value_len,
            cancel: cancel.clone(),
            freeze: Freeze::default(),
            exactly_once: cfg.announce.then(|| ExactlyOnce::new(cfg.exactly_once, message_epoch(cfg.seed))),
        });
        peer.spawn_listener(listener, &tracker);
        let lost = Lost { events: events.clone(), cancel: cancel.clone(), declared: Arc::new(AtomicBool::new(false)) };
        let held = v2.then(|| members.clone());
        let leaving = v2.then(CancellationToken::new);
        let aliases = Arc::new(std::sync::Mutex::new(AliasMap::new()));
        let announcer = Announcer {
            events: events.clone(),
            aliases: aliases.clone(),
            announce: cfg.announcements,
            shared: cfg.shared_lists.clone(),
        };
        let committed = committed.map(|(list, list_aliases)| {
            // Its aliases are the ones held from the start (no announcements: nothing changed).
            announcer.took_list(None, &list, list_aliases);
            list
        });
        let follower = Follower {
            members: members_tx,
            announcer,
            lists,
            committed_first: std::sync::Mutex::new(committed),
            unannounced: Default::default(),
        };
        // Lists on their own connection get their own task; on the auth connection, the
        // heartbeat task, its only reader, takes them too.
        let (on_auth, dist) = match dist {
            Some((_, dist_r, dist_w)) => (None, Some((dist_r, dist_w, follower))),
            None => (Some(follower), None),
        };
        tracker.spawn(heartbeats::<N>(
            reader,
            w,
            target,
            cfg.clone(),
            held,
            lost.clone(),
            peer.freeze.clone(),
            leaving.clone(),
            on_auth,
        ));
        if let Some((dist_r, dist_w, follower)) = dist {
            tracker.spawn(distribution::<N>(
                MessageReader::with_limit(dist_r, cfg.max_value_len),
                dist_w,
                follower,
                lost,
                peer.freeze.clone(),
            ));
        }

        let (done_tx, done) = watch::channel(false);
        let (reap_cancel, reap_tracker, reap_events) = (cancel.clone(), tracker.clone(), events);
        tokio::spawn(async move {
            reap_cancel.cancelled().await;
            reap_tracker.close();
            reap_tracker.wait().await;
            reap_events.emit(EventKind::Left);
            let _ = done_tx.send(true);
        });
        Ok(Joiner {
            peer,
            aliases,
            leaving,
            auth_addr: target,
            dist_local,
            dist_connection,
            members,
            events: Some(stream),
            cancel,
            tracker,
            done,
        })
    }

    /// Where this joiner receives chat messages (its entry in the list).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer.peer_addr
    }
    /// The authenticator it joined.
    pub fn auth_addr(&self) -> SocketAddr {
        self.auth_addr
    }
    /// The local address of its distribution connection (what a simulator
    /// needs to tell which stream a fault killed); None for a one-connection member, whose
    /// lists come on the auth connection.
    pub fn distribution_local_addr(&self) -> Option<SocketAddr> {
        self.dist_local
    }
    /// Whether its lists come on the auth connection ([`JoinerConfig::one_connection`],
    /// granted by a protocol-2 authenticator): it holds no distribution connection.
    pub fn is_one_connection(&self) -> bool {
        !self.dist_connection
    }
    /// Sockets it holds open while connected: the auth connection, the distribution
    /// connection (none for a one-connection member) and the peer listener, not counting
    /// chat connections being handled; 0 once it has ended. The connections among them
    /// (all but the listener) are what it costs its authenticator in sockets.
    pub fn open_sockets(&self) -> usize {
        if !self.is_connected() {
            return 0;
        }
        2 + usize::from(self.dist_connection)
    }
    /// The member list it currently holds.
    pub fn members(&self) -> MemberList {
        self.members.borrow().clone()
    }
    /// The members' aliases by peer address, as the protocol-2 authenticator's lists and
    /// deltas announced them (empty with a reference authenticator: v1 lists carry none).
    pub fn aliases(&self) -> AliasMap {
        self.aliases.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    /// Whether it speaks protocol 2 with its authenticator (aliases, announcements, graceful
    /// leaves).
    pub fn is_protocol2(&self) -> bool {
        self.leaving.is_some()
    }
    /// The member listed with `alias`, if any.
    pub fn find_alias(&self, alias: &str) -> Option<SocketAddr> {
        let aliases = self.aliases.lock().unwrap_or_else(|p| p.into_inner());
        aliases.iter().find(|(_, a)| &***a == alias).map(|(m, _)| *m)
    }
    /// A receiver that sees every list this joiner takes.
    pub fn watch_members(&self) -> watch::Receiver<MemberList> {
        self.members.clone()
    }
    /// Takes the event stream (once).
    pub fn events(&mut self) -> Option<EventStream> {
        self.events.take()
    }
    /// Whether it is still a member (it has not left or lost the authenticator).
    pub fn is_connected(&self) -> bool {
        !self.cancel.is_cancelled()
    }
    /// Tasks still running (0 once left).
    pub fn task_count(&self) -> usize {
        self.tracker.len()
    }
    /// Sends a chat message to every other member.
    pub async fn broadcast(&self, data: &str) -> BroadcastReport {
        self.peer.broadcast(data).await
    }
    /// Sends a chat message to one member.
    pub async fn send(&self, to: SocketAddr, data: &str) -> Result<Delivery, Error> {
        self.peer.send_to(to, data, Recipient::Direct(to)).await
    }
    /// Resolves once the joiner has ended: left, or lost the authenticator.
    pub async fn closed(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
    /// Leaves abruptly: closes every socket and ends every task without a word, as a killed
    /// process would (the authenticator removes the member as `closed`).
    pub async fn leave(&self) {
        self.cancel.cancel();
        self.closed().await;
    }
    /// Leaves gracefully: tells a protocol-2 authenticator it is leaving (`{"leaving":
    /// true}`), waits (at most the io timeout) for it to close the connection, then closes
    /// every socket; the other members hear it "left". With a reference authenticator this
    /// is [`Joiner::leave`].
    pub async fn close(&self) {
        match &self.leaving {
            Some(leaving) if self.is_connected() => {
                leaving.cancel();
                self.closed().await;
            }
            _ => self.leave().await,
        }
    }

    /// Hangs, like a process that stopped or died without its kernel closing anything:
    /// every task stops reading and answering (heartbeats, member lists, chat messages),
    /// but no socket is shut down or closed. The auth and distribution connections, the
    /// peer listener and any chat connection being handled stay open in the returned
    /// [`Hung`] until it is dropped, so the authenticator sees neither FIN nor RST and can
    /// only remove this member when its heartbeat timeout expires.
    ///
    /// Returns once every task has stopped (a heartbeat answer being written finishes
    /// first, within the joiner's io timeout): from then on nothing more is sent or read.
    /// The joiner has then ended as far as this process is concerned: [`Joiner::closed`]
    /// resolves, `Left` is the last event, [`Joiner::is_connected`] is false and sends fail
    /// with [`Error::Closed`]. A joiner that had already left or lost its authenticator has
    /// closed its sockets: the `Hung` then holds none.
    pub async fn hang(&self) -> Hung {
        self.peer.freeze.start();
        self.tracker.close();
        self.tracker.wait().await;
        let sockets = self.peer.freeze.take();
        // The tasks have ended without touching their sockets: ending the joiner now only
        // emits `Left` and marks it gone.
        self.cancel.cancel();
        self.closed().await;
        Hung { peer_addr: self.peer.peer_addr, sockets }
    }
}

/// The sockets of a joiner that [`Joiner::hang`]ed, held open and unread. Dropping it (or
/// [`Hung::close`]) closes them all, as the death of the process would.
pub struct Hung {
    peer_addr: SocketAddr,
    sockets: Vec<Box<dyn Send>>,
}

impl Hung {
    /// The peer address the hung joiner was listed under.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }
    /// How many sockets are held open: the auth and distribution connections, the peer
    /// listener and the chat connections that were being handled (3 or more for a joiner
    /// that hung while joined, 2 or more for a one-connection one; 0 if it had already ended).
    pub fn open_sockets(&self) -> usize {
        self.sockets.len()
    }
    /// Closes every socket (the same as dropping it).
    pub fn close(self) {}
}

impl std::fmt::Debug for Hung {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hung").field("peer_addr", &self.peer_addr).field("open_sockets", &self.sockets.len()).finish()
    }
}

impl<N: Network> Drop for Joiner<N> {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Declares the authenticator lost (once) and starts leaving.
#[derive(Clone)]
struct Lost {
    events: EventSink,
    cancel: CancellationToken,
    /// Set by the first task to declare the loss: on a multi-threaded runtime the heartbeat
    /// and distribution tasks can both see the authenticator go at the same instant, and a
    /// check of `cancel` alone would let both through (two `AuthenticatorLost` events).
    declared: Arc<AtomicBool>,
}

impl Lost {
    fn lost(&self, reason: LostReason) {
        if self.cancel.is_cancelled() || self.declared.swap(true, Ordering::SeqCst) {
            return;
        }
        warn!(?reason, "authenticator lost");
        self.events.emit(EventKind::AuthenticatorLost { reason });
        self.cancel.cancel();
    }
}

/// Whether an I/O error means the authenticator closed the connection.
/// A close with data still unread on its side (say, our last heartbeat
/// answer when it leaves) arrives as a reset rather than an EOF; the
/// authenticator likewise counts a member's reset as `Closed`.
fn closed_by_peer(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// Answers the authenticator's heartbeats. `held` is the list this joiner
/// holds, given only with a protocol-2 authenticator: then every answer
/// carries that list's version (0 while no committed list is held). `lists` is
/// given for a one-connection member: its snapshots and deltas come on this
/// connection too, between the heartbeats, and are taken exactly as on a
/// distribution connection ([`Follower`]).
#[allow(clippy::too_many_arguments)]
async fn heartbeats<N: Network>(
    mut reader: MessageReader<ReadHalf<N::Stream>>,
    mut w: WriteHalf<N::Stream>,
    auth: SocketAddr,
    cfg: JoinerConfig,
    held: Option<watch::Receiver<MemberList>>,
    lost: Lost,
    freeze: Freeze,
    leaving: Option<CancellationToken>,
    lists: Option<Follower>,
) {
    let next = async |reader: &mut MessageReader<ReadHalf<N::Stream>>| match &lists {
        Some(f) => reader.next_with(|b| f.lists.decode(b)).await,
        None => reader.next().await.map(Incoming::Other),
    };
    let leave_asked = async {
        match &leaving {
            Some(l) => l.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(leave_asked);
    let mut last_heard = Instant::now();
    let mut missed_reported = false;
    let missed_after = cfg.heartbeat_interval + cfg.heartbeat_interval / 2;
    loop {
        let next_deadline = if missed_reported || missed_after >= cfg.heartbeat_timeout {
            last_heard + cfg.heartbeat_timeout
        } else {
            last_heard + missed_after
        };
        let msg = tokio::select! {
            biased;
            _ = lost.cancel.cancelled() => break,
            _ = freeze.frozen() => break,
            _ = &mut leave_asked => {
                // Graceful: nothing the other tasks see from now on is a loss.
                lost.declared.store(true, Ordering::SeqCst);
                let said = timeout(cfg.io_timeout, w.write_all(&Message::Leaving.encode())).await;
                if matches!(said, Ok(Ok(()))) {
                    // The authenticator removes us and closes: wait for that (bounded), so
                    // it reads `leaving` before it sees any of our connections close.
                    let _ = timeout(cfg.io_timeout, async {
                        while reader.next().await.is_ok() {}
                    })
                    .await;
                }
                lost.cancel.cancel();
                break;
            }
            r = timeout_at(next_deadline, next(&mut reader)) => r,
        };
        if let (Some(f), Ok(Ok(Incoming::Other(_)))) = (&lists, &msg) {
            // Another kind of value ends a run of list changes.
            f.flush();
        }
        match msg {
            Ok(Ok(Incoming::Other(m))) if m.as_heartbeat().is_some() => {
                last_heard = Instant::now();
                missed_reported = false;
                lost.events.emit(EventKind::HeartbeatReceived { from: auth });
                let answer = Message::heartbeat(held.as_ref().map(|h| h.borrow().version.unwrap_or(0)));
                match timeout(cfg.io_timeout, w.write_all(&answer.encode())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if closed_by_peer(&e) => return lost.lost(LostReason::Closed),
                    Ok(Err(e)) => return lost.lost(LostReason::Error(format!("heartbeat answer: {e}"))),
                    Err(_) => return lost.lost(LostReason::Error("heartbeat answer timed out".into())),
                }
            }
            Ok(Ok(Incoming::Other(other))) => debug!("ignored {} on the auth connection", other.kind()),
            // Lists (and deltas, and steps): made only by a one-connection member's reader.
            Ok(Ok(incoming)) => {
                if let Some(f) = &lists
                    && let Err(e) = f.take(incoming, reader.last_len(), reader.has_buffered_value())
                {
                    return lost.lost(LostReason::Error(format!("distribution: malformed delta: {e}")));
                }
            }
            Ok(Err(DecodeError::Eof { .. })) => return lost.lost(LostReason::Closed),
            Ok(Err(DecodeError::Io(e))) if closed_by_peer(&e) => return lost.lost(LostReason::Closed),
            Ok(Err(e)) => return lost.lost(LostReason::Error(e.to_string())),
            Err(_) if Instant::now() >= last_heard + cfg.heartbeat_timeout => {
                return lost.lost(LostReason::Timeout);
            }
            Err(_) => {
                missed_reported = true;
                lost.events.emit(EventKind::HeartbeatMissed { peer: auth, silent_for: last_heard.elapsed() });
            }
        }
    }
    if freeze.is_frozen() && !lost.cancel.is_cancelled() {
        return freeze.keep((reader, w));
    }
    let _ = timeout(Duration::from_millis(100), w.shutdown()).await;
}

/// How a joiner builds the lists it follows: bounded, and shared with the process's other
/// joiners when it was given [`SharedLists`].
struct ListBuilder {
    max_members: usize,
    shared: Option<SharedLists>,
}

/// One value from the distribution connection: a whole list already built (with the
/// aliases a protocol-2 one carries), a delta (its step, when another joiner of the process
/// already received the same bytes), or anything else.
enum Incoming {
    List(MemberList, Option<AliasMap>),
    Step(Arc<Step>),
    Delta(Arc<Delta>, Option<Arc<[u8]>>),
    Other(Message),
}

/// How every delta of ours begins on the wire (`encode_delta`): only such values are looked
/// up among the shared steps.
const DELTA_PREFIX: &[u8] = b"{\"delta\":true";

impl ListBuilder {
    /// Decodes one value from the distribution connection; a whole list or a delta other
    /// joiners of the process received as the same bytes is taken from them instead of
    /// parsed again.
    fn decode(&self, bytes: &[u8]) -> Result<Incoming, DecodeError> {
        if let Some(s) = &self.shared {
            if bytes.starts_with(DELTA_PREFIX) {
                if let Some(step) = s.step(bytes) {
                    return Ok(Incoming::Step(step));
                }
            } else if let Some((list, aliases)) = s.decoded(bytes) {
                return Ok(Incoming::List(list, aliases));
            }
        }
        match Message::decode(bytes)? {
            Message::Distro { members, version, aliases } => {
                // Parallel to the members; a shorter or longer array is taken as far as it goes.
                let pairs: Option<Vec<(SocketAddr, Arc<str>)>> =
                    aliases.map(|a| members.iter().zip(a).filter_map(|(m, a)| a.map(|a| (*m, a))).collect());
                let list = self.snapshot(version, members);
                let aliases = pairs.map(|pairs| match &self.shared {
                    Some(s) => s.aliases_from(&list, pairs),
                    None => pairs.into_iter().collect::<AliasMap>(),
                });
                if let Some(s) = &self.shared {
                    s.remember(bytes, &list, aliases.as_ref());
                }
                Ok(Incoming::List(list, aliases))
            }
            Message::Delta(d) => {
                let bytes = self.shared.as_ref().map(|_| Arc::<[u8]>::from(bytes));
                Ok(Incoming::Delta(Arc::new(d), bytes))
            }
            other => Ok(Incoming::Other(other)),
        }
    }

    fn snapshot(&self, version: Option<u64>, members: Vec<SocketAddr>) -> MemberList {
        match &self.shared {
            Some(s) => s.snapshot(version, members),
            None => MemberList::new(version, members),
        }
    }

    fn apply(&self, held: &MemberList, delta: &Delta) -> Result<MemberList, DeltaError> {
        match &self.shared {
            Some(s) => s.apply(held, delta, self.max_members),
            None => held.apply(delta, self.max_members),
        }
    }
}

/// Answers a SCRAM challenge. The PBKDF2 in it takes milliseconds (far more in a debug
/// build), so on a multi-threaded runtime (a process of many joiners) it runs on the blocking
/// pool, and the heartbeats and lists of the process's other joiners are not held up; on a
/// current-thread runtime (a simulation, where another thread would make timing depend on
/// the machine) it runs in place.
async fn answer_off_runtime(
    exchange: ClientExchange,
    cfg: &JoinerConfig,
    challenge: crate::scram::Challenge,
) -> Result<crate::scram::ClientProof, Error> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let (password, max, cache) = (cfg.password.clone(), cfg.max_iterations, cfg.key_cache.clone());
    let answer = move || exchange.answer_cached(&password, &challenge, max, cache.as_ref());
    let answered = if Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread {
        answer()
    } else {
        match tokio::task::spawn_blocking(answer).await {
            Ok(a) => a,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(Error::Io { what: "compute the SCRAM proof", source: std::io::Error::other(e) }),
        }
    };
    answered.map_err(Error::Scram)
}

/// The joiner's aliases and the announcements it makes of what deltas change.
struct Announcer {
    events: EventSink,
    aliases: Arc<std::sync::Mutex<AliasMap>>,
    /// Whether to emit `PeerJoined`/`PeerLeft` ([`JoinerConfig::announcements`]).
    announce: bool,
    /// The process's shared lists, which keep one alias map per version.
    shared: Option<SharedLists>,
}

impl Announcer {
    fn lock(&self) -> std::sync::MutexGuard<'_, AliasMap> {
        self.aliases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A whole list was taken: its aliases replace the ones held (a protocol-2 list), and a
    /// jump past the version held means the joins and leaves between were not announced.
    fn took_list(&self, held: Option<u64>, list: &MemberList, aliases: Option<AliasMap>) {
        let Some(a) = aliases else { return };
        let a = match &self.shared {
            Some(s) => s.aliases_of(list, a),
            None => a,
        };
        *self.lock() = a;
        if let (Some(from), Some(to)) = (held, list.version)
            && to > from
        {
            self.events.emit(EventKind::AnnouncementsSkipped { from, to });
        }
    }

    /// A delta was applied to the list held (`list` is the result): the aliases follow it,
    /// and every leave, then every join, is announced in its order. Returns the aliases before
    /// and after (for recording the step).
    fn applied(&self, list: &MemberList, delta: &Delta) -> (AliasMap, AliasMap) {
        let mut aliases = self.lock();
        let before = aliases.clone();
        for peer in &delta.removed {
            aliases.remove(peer);
        }
        for (peer, alias) in delta.added.iter().zip(&delta.aliases) {
            if let Some(a) = alias {
                aliases.insert(*peer, a.clone());
            }
        }
        if let Some(s) = &self.shared {
            *aliases = s.aliases_of(list, std::mem::take(&mut *aliases));
        }
        let after = aliases.clone();
        drop(aliases);
        self.announce(delta, &before);
        (before, after)
    }

    /// Whether the aliases held are exactly `aliases` (the same structure).
    fn holds(&self, aliases: &AliasMap) -> bool {
        self.lock().ptr_eq(aliases)
    }

    /// Another joiner's step was taken: its aliases, and its announcements.
    fn took_step(&self, step: &Step) {
        *self.lock() = step.result_aliases.clone();
        self.announce(&step.delta, &step.base_aliases);
    }

    /// Announces `delta`'s leaves (with the aliases they had in `before`) and joins.
    fn announce(&self, delta: &Delta, before: &AliasMap) {
        if !self.announce {
            return;
        }
        for (i, peer) in delta.removed.iter().enumerate() {
            let alias = before.get(peer).cloned();
            let reason = delta.reasons.get(i).cloned().unwrap_or_else(|| Departure::Other("unknown".into()));
            self.events.emit(EventKind::PeerLeft { peer: *peer, alias, reason, version: delta.version });
        }
        for (i, peer) in delta.added.iter().enumerate() {
            let alias = delta.aliases.get(i).cloned().flatten();
            self.events.emit(EventKind::PeerJoined { peer: *peer, alias, version: delta.version });
        }
    }
}

/// What a joiner does with the lists it receives, on whichever connection they come (its
/// distribution connection, or its auth connection as a one-connection member): whole lists
/// taken when newer than the one held, deltas applied to the one held, and what each
/// announces.
struct Follower {
    members: watch::Sender<MemberList>,
    announcer: Announcer,
    lists: ListBuilder,
    /// The committed list a protocol-2 authenticator sent as the first list, while the view
    /// held is still the provisional one built from it (this joiner last, unversioned): the
    /// first deltas apply to it. Gone once a delta or a whole list was taken.
    committed_first: std::sync::Mutex<Option<MemberList>>,
    /// Bytes of list changes taken but not yet announced as a `MemberListChanged` (0: none):
    /// within a run of values read together (deltas written back to back) only the run's end
    /// is, with the run's bytes, so a burst of k changes is one event, not k.
    unannounced: std::sync::atomic::AtomicUsize,
}

impl Follower {
    /// One value of `bytes` on the wire: a whole list (taken if newer than the one held, else
    /// reported stale if older), a delta or another joiner's step (applied to the list held if
    /// it is its base, skipped otherwise), or anything else, handed back. Err: a malformed
    /// delta (the joiner must leave).
    /// `more`: the next value was read with this one ([`MessageReader::has_buffered_value`]);
    /// the `MemberListChanged` of a change then waits for the run's end.
    fn take(&self, incoming: Incoming, bytes: usize, more: bool) -> Result<Option<Message>, DeltaError> {
        let r = self.take_one(incoming, bytes, more);
        if !more || !matches!(r, Ok(None)) {
            self.flush();
        }
        r
    }

    /// A change to `list` of `bytes` was taken: announced now, or at the run's end.
    fn changed(&self, list: MemberList, bytes: usize, more: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        if more {
            self.unannounced.fetch_add(bytes, Relaxed);
        } else {
            let bytes = bytes + self.unannounced.swap(0, Relaxed);
            self.announcer.events.emit(EventKind::MemberListChanged { list, bytes });
        }
    }

    /// Announces the changes of a run cut short (by another kind of value, an error or a
    /// stale list): the list held, with their bytes.
    fn flush(&self) {
        let bytes = self.unannounced.swap(0, std::sync::atomic::Ordering::Relaxed);
        if bytes > 0 {
            let list = self.members.borrow().clone();
            self.announcer.events.emit(EventKind::MemberListChanged { list, bytes });
        }
    }

    /// The list a delta applies to: the one held, or while that is the provisional first
    /// list, the committed list it was built from.
    fn base(&self) -> MemberList {
        let held = self.members.borrow().clone();
        if held.version.is_none()
            && let Some(committed) = &*self.committed_first.lock().unwrap_or_else(|p| p.into_inner())
        {
            return committed.clone();
        }
        held
    }

    /// A delta or a whole list was taken: the committed first list is no longer a base.
    fn took(&self) {
        self.committed_first.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn take_one(&self, incoming: Incoming, bytes: usize, more: bool) -> Result<Option<Message>, DeltaError> {
        let (members, announcer, lists) = (&self.members, &self.announcer, &self.lists);
        let events = &announcer.events;
        match incoming {
            Incoming::List(list, aliases) => {
                let version = list.version;
                // Read before the list is replaced: while the view is provisional, the
                // announcements a whole list skips start at the committed first list.
                let committed_version = self.base().version;
                let mut held_version = None;
                let taken = members.send_if_modified(|held| {
                    held_version = held.version;
                    if held.is_superseded_by(&list) {
                        *held = list.clone();
                        true
                    } else {
                        false
                    }
                });
                if taken {
                    let from = held_version.or(committed_version);
                    self.took();
                    announcer.took_list(from, &list, aliases);
                    self.changed(list, bytes, more);
                } else {
                    debug!(?version, ?held_version, "ignored a list older than the one held");
                    if let (Some(version), Some(held)) = (version, held_version)
                        && version < held
                    {
                        events.emit(EventKind::StaleList { version, held });
                    }
                }
            }
            Incoming::Step(step) if self.base().same_as(&step.base) && announcer.holds(&step.base_aliases) => {
                // Another joiner of this process applied these very bytes to this very list.
                let list = step.result.clone();
                members.send_replace(list.clone());
                self.took();
                announcer.took_step(&step);
                self.changed(list, bytes, more);
            }
            incoming @ (Incoming::Step(_) | Incoming::Delta(..)) => {
                let (delta, wire) = match incoming {
                    Incoming::Step(step) => (step.delta.clone(), None),
                    Incoming::Delta(delta, wire) => (delta, wire),
                    _ => unreachable!("matched above"),
                };
                let base = self.base();
                match lists.apply(&base, &delta) {
                    Ok(list) => {
                        members.send_replace(list.clone());
                        self.took();
                        let (base_aliases, result_aliases) = announcer.applied(&list, &delta);
                        if let (Some(s), Some(wire)) = (&lists.shared, wire) {
                            let result = list.clone();
                            s.record_step(
                                &wire,
                                Step { delta: delta.clone(), base, base_aliases, result, result_aliases },
                            );
                        }
                        self.changed(list, bytes, more);
                    }
                    Err(DeltaError::BaseMismatch { base, held }) if delta.version <= held => {
                        debug!(base, version = delta.version, held, "ignored a delta older than the list held");
                        events.emit(EventKind::StaleList { version: delta.version, held });
                    }
                    Err(DeltaError::BaseMismatch { base, held }) => {
                        // Missed a version: the next heartbeat answer tells, a whole list follows.
                        debug!(base, version = delta.version, held, "skipped a delta for another version");
                    }
                    Err(DeltaError::Unversioned) => {
                        // Its first committed list was lost: the heartbeat answers report 0,
                        // and a whole list follows.
                        debug!(version = delta.version, "skipped a delta while holding no committed list");
                    }
                    Err(e) => return Err(e),
                }
            }
            Incoming::Other(other) => return Ok(Some(other)),
        }
        Ok(None)
    }
}

/// Follows the distribution connection: whole lists (taken when newer than the one held)
/// and deltas (applied to the one held).
async fn distribution<N: Network>(
    mut reader: MessageReader<ReadHalf<N::Stream>>,
    mut w: WriteHalf<N::Stream>,
    follower: Follower,
    lost: Lost,
    freeze: Freeze,
) {
    loop {
        let msg = tokio::select! {
            biased;
            _ = lost.cancel.cancelled() => break,
            _ = freeze.frozen() => break,
            r = reader.next_with(|b| follower.lists.decode(b)) => r,
        };
        match msg {
            Ok(incoming) => match follower.take(incoming, reader.last_len(), reader.has_buffered_value()) {
                Ok(None) => {}
                Ok(Some(other)) => debug!("ignored {} on the distribution connection", other.kind()),
                Err(e) => return lost.lost(LostReason::Error(format!("distribution: malformed delta: {e}"))),
            },
            Err(DecodeError::Eof { .. }) => return lost.lost(LostReason::Closed),
            Err(DecodeError::Io(e)) if closed_by_peer(&e) => return lost.lost(LostReason::Closed),
            Err(e) => return lost.lost(LostReason::Error(format!("distribution: {e}"))),
        }
    }
    if freeze.is_frozen() && !lost.cancel.is_cancelled() {
        return freeze.keep((reader, w));
    }
    let _ = timeout(Duration::from_millis(100), w.shutdown()).await;
}
