//! The software each simulated host runs: pyile's authenticator, a joiner agent (many
//! joiners on one host), a ban-flood attacker, or a hostile host (in
//! [`hostile`](super::hostile): raw wire protocol). It is where pyile's `Authenticator` and
//! `Joiner` are started and driven; the runner's `observe` reads their events.
//!
//! Hosts and the driver share an [`Rc<Shared>`] (a turmoil simulation is one thread): the
//! driver pushes [`Cmd`]s into a host's [`Inbox`] between steps, the host's tasks push
//! [`Obs`]ervations, stamped in simulated time, which the driver drains after each step.
//! Every host has its own tokio runtime and clock (recreated on restart), so pyile's
//! `tokio::time::Instant` stamps are converted to simulated time by a per-incarnation
//! `Clock` right here, where they are comparable.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use pyile::{Authenticator, AuthenticatorConfig, EventKind, Joiner, JoinerConfig, Network, TurmoilNet};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::hostile::{AttackScript, Outcome};
use crate::layout::{HostRole, Layout};
use crate::rng::derive_seed;
use crate::scenario::Scenario;

/// Events per node's channel: large, so the event reader never falls behind.
const EVENT_CAPACITY: usize = 1 << 16;

/// A command from the driver to a host.
#[derive(Clone, Debug)]
pub enum Cmd {
    /// Start join attempt `inst` of joiner slot `joiner` (group `group`).
    Join {
        /// Instance id.
        inst: u64,
        /// Joiner slot.
        joiner: usize,
        /// Group index.
        group: usize,
    },
    /// Instance `inst` leaves gracefully.
    Leave {
        /// Instance id.
        inst: u64,
    },
    /// Broadcast `size` bytes from instance `inst` (None: from the authenticator).
    Broadcast {
        /// The driver's number for this broadcast.
        id: u64,
        /// Sender instance.
        inst: Option<u64>,
        /// Payload size.
        size: u32,
    },
    /// An attacker's password attempt.
    Attempt {
        /// With the correct password?
        correct: bool,
    },
    /// A hostile host opens connection `conn` and plays `script`.
    Attack {
        /// Connection id (unique in the run).
        conn: u64,
        /// What it does.
        script: AttackScript,
    },
    /// The host is about to crash: cancel every node now, in a fixed order.
    ///
    /// turmoil's `crash` drops the host's tokio runtime, and tokio shuts `tokio::spawn`ed
    /// tasks down in an order keyed by the process-wide task-id counter
    /// (tokio runtime/task/list.rs `close_and_shutdown_all`), so the order in which a crashed
    /// host's sockets send FIN — and every latency drawn after — would differ between runs.
    /// Cancelling first lets the tasks end in run-queue (FIFO) order within this tick; the
    /// driver calls `sim.crash` after the step to kill whatever is left.
    Crash,
}

/// A host's command queue. It lives outside the host's software, so it survives restarts.
#[derive(Default)]
pub struct Inbox {
    queue: RefCell<VecDeque<Cmd>>,
    pub(super) notify: Notify,
}

impl Inbox {
    /// Queues a command and wakes the host.
    pub fn send(&self, cmd: Cmd) {
        self.queue.borrow_mut().push_back(cmd);
        self.notify.notify_one();
    }

    /// Drops queued commands (the host crashed).
    pub fn clear(&self) {
        self.queue.borrow_mut().clear();
    }

    pub(super) fn drain(&self) -> Vec<Cmd> {
        self.queue.borrow_mut().drain(..).collect()
    }
}

/// What a host observed, in simulated time.
#[derive(Clone, Debug)]
pub enum Obs {
    /// An authenticator incarnation is up.
    AuthStarted {
        /// When.
        at: Duration,
        /// Its own peer address (first in every list).
        peer: SocketAddr,
    },
    /// The authenticator could not start.
    AuthStartFailed {
        /// When.
        at: Duration,
        /// Why.
        error: String,
    },
    /// An authenticator event.
    Auth {
        /// When.
        at: Duration,
        /// What.
        kind: EventKind,
    },
    /// A join attempt started.
    JoinStarted {
        /// When.
        at: Duration,
        /// Instance.
        inst: u64,
    },
    /// A join attempt failed.
    JoinFailed {
        /// When.
        at: Duration,
        /// Instance.
        inst: u64,
        /// Why.
        error: String,
        /// The authenticator refused its password (a wrong-password attempt, counted from the
        /// joiner's side).
        refused: bool,
        /// The authenticator refused its alias as taken.
        alias_taken: bool,
        /// The joiner refused the authenticator as an impostor (it could not prove it knows
        /// the password, or offered no proof to a joiner that requires one).
        impostor: bool,
    },
    /// An impostor authenticator's exchange with one joiner ended.
    ImpostorCapture {
        /// When.
        at: Duration,
        /// The group whose impostor it is.
        group: usize,
        /// What the joiner gave it.
        capture: pyile::impostor::Capture,
    },
    /// A joiner event.
    Joiner {
        /// When.
        at: Duration,
        /// Instance.
        inst: u64,
        /// What.
        kind: EventKind,
    },
    /// A joiner's distribution connection is up, from this local address (pushed as soon as
    /// the join returns, in the step that sent its token: before the authenticator can have
    /// written a list to it).
    DistConnected {
        /// Instance.
        inst: u64,
        /// The joiner's end of its distribution connection.
        local: SocketAddr,
    },
    /// A joiner instance has ended (after its `Left`).
    JoinerEnded {
        /// When.
        at: Duration,
        /// Instance.
        inst: u64,
        /// Tasks the joiner still ran (`Joiner::task_count`, 0 once it has left; None: its
        /// host crashed and took it).
        tasks: Option<usize>,
    },
    /// A broadcast finished.
    BroadcastDone {
        /// When.
        at: Duration,
        /// The driver's number for this broadcast.
        id: u64,
        /// The sender's peer address.
        from: SocketAddr,
        /// The id its copies carried (protocol-2 senders).
        msg_id: Option<(u64, u64)>,
        /// Retries the sender made.
        retries: usize,
        /// Sender instance (None: the authenticator).
        inst: Option<u64>,
        /// Written to.
        sent: usize,
        /// Echoed by.
        delivered: usize,
        /// Could not reach.
        failed: usize,
    },
    /// An attacker started an attempt.
    AttemptStarted {
        /// When.
        at: Duration,
        /// Attacker host.
        host: usize,
    },
    /// An attacker's attempt ended.
    AttemptDone {
        /// When.
        at: Duration,
        /// Attacker host.
        host: usize,
        /// When the attempt started.
        started: Duration,
        /// With the correct password?
        correct: bool,
        /// Whether the join succeeded.
        admitted: bool,
        /// The authenticator refused the password (not: banned, or another failure).
        refused: bool,
        /// The error, if refused.
        error: Option<String>,
    },
    /// A hostile connection is up.
    AttackOpened {
        /// When.
        at: Duration,
        /// Attacker host.
        host: usize,
        /// Connection id.
        conn: u64,
        /// Its local address (the authenticator's `HandshakeFailed` names it as the source).
        local: SocketAddr,
    },
    /// A hostile connection ended (or could not connect).
    AttackClosed {
        /// When.
        at: Duration,
        /// Attacker host.
        host: usize,
        /// Connection id.
        conn: u64,
        /// How.
        outcome: Outcome,
    },
}

/// Protocol settings the hosts need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Run seed.
    pub seed: u64,
    /// The authenticator's password.
    pub password: String,
    /// Attempts before a ban.
    pub password_attempts: u32,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Authenticator heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Authenticator handshake timeout.
    pub handshake_timeout: Duration,
    /// Authenticator distribution budget, bytes per second (0 = unbounded).
    pub distribution_budget: u64,
    /// Auth port.
    pub port: u16,
    /// Authenticator handshakes in progress per source IP: the default per packed joiner
    /// (joiners packed on one host stand for as many machines, and share its IP).
    pub max_handshakes_per_source: usize,
    /// Per group.
    pub groups: Vec<GroupSettings>,
    /// Whether the authenticator accepts a peer address off the connection's source IP
    /// (pyile's NAT option; off in every scenario, on only to sabotage it in tests).
    pub foreign_peer_addresses: bool,
    /// The authenticator's bound on handshakes in progress (None: pyile's default).
    pub max_handshakes: Option<usize>,
    /// Joiner slot names.
    pub joiner_names: Vec<String>,
    /// Per joiner slot, its group's shared alias (scenario key `alias`), if it has one.
    pub joiner_aliases: Vec<Option<String>>,
}

/// The alias join attempt `inst` of joiner slot `slot` presents: its group's shared one, or
/// its own `name#inst`.
pub fn alias_of(s: &Settings, slot: usize, inst: u64) -> String {
    match &s.joiner_aliases[slot] {
        Some(a) => a.clone(),
        None => format!("{}#{inst}", s.joiner_names[slot]),
    }
}

/// A joiner group's settings.
#[derive(Clone, Debug)]
pub struct GroupSettings {
    /// The password its joiners use.
    pub password: String,
    /// Joiner handshake timeout.
    pub handshake_timeout: Duration,
    /// Joiner heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Whether its joiners require the mutual proof.
    pub require_mutual_auth: bool,
    /// Whether its joiners take their lists on the auth connection.
    pub one_connection: bool,
    /// What the impostor its joiners are pointed at poses as, if they are.
    pub impostor: Option<pyile::impostor::ImpostorKind>,
}

impl Settings {
    /// What the hosts of a run of `sc` with `seed` are configured with (joiner slots named as
    /// in `layout`). A joiner group's heartbeat timeout defaults to the authenticator's
    /// timeout + one interval.
    pub fn new(sc: &Scenario, layout: &Layout, seed: u64) -> Settings {
        let a = &sc.authenticator;
        let groups = sc
            .joiners
            .iter()
            .map(|g| {
                let g = g.get_ref();
                GroupSettings {
                    password: g.password.clone().unwrap_or_else(|| a.password.clone()),
                    handshake_timeout: g.handshake_timeout.unwrap_or(a.handshake_timeout).get(),
                    heartbeat_timeout: g
                        .heartbeat_timeout
                        .map(|d| d.get())
                        .unwrap_or(a.heartbeat_timeout().get() + a.heartbeat_interval.get()),
                    require_mutual_auth: g.require_mutual_auth,
                    one_connection: g.one_connection,
                    impostor: g.impostor.map(|p| p.kind()),
                }
            })
            .collect();
        Settings {
            seed,
            password: a.password.clone(),
            password_attempts: a.password_attempts,
            heartbeat_interval: a.heartbeat_interval.get(),
            heartbeat_timeout: a.heartbeat_timeout().get(),
            handshake_timeout: a.handshake_timeout.get(),
            distribution_budget: a.distribution_budget.bytes_per_sec(),
            port: a.port,
            max_handshakes_per_source: pyile::authenticator::config::DEFAULT_MAX_HANDSHAKES_PER_SOURCE
                * sc.joiners.iter().map(|g| g.get_ref().joiners_per_host.max(1) as usize).max().unwrap_or(1),
            groups,
            foreign_peer_addresses: false,
            max_handshakes: None,
            joiner_names: layout.joiners.iter().map(|j| j.name.clone()).collect(),
            joiner_aliases: layout.joiners.iter().map(|j| sc.joiners[j.group].get_ref().alias.clone()).collect(),
        }
    }
}

/// The turmoil simulation a run of `sc` with `seed` happens in: seeded from the run's seed, a
/// fixed epoch, the scenario's tick, latencies, `fail_rate` and `tcp_capacity`, and room to
/// run an hour past the scenario's end. No hosts yet.
pub fn build_sim(sc: &Scenario, seed: u64) -> turmoil::Sim<'static> {
    let net = &sc.network;
    let mut b = turmoil::Builder::new();
    b.rng_seed(derive_seed(seed, "turmoil"))
        .epoch(UNIX_EPOCH + Duration::from_secs(super::EPOCH_SECS))
        .simulation_duration(sc.duration.get() + Duration::from_secs(3600))
        .tick_duration(sc.tick.get())
        .min_message_latency(net.min_latency.get())
        .max_message_latency(net.max_latency.get())
        .fail_rate(net.fail_rate)
        .tcp_capacity(net.tcp_capacity);
    b.build()
}

/// State shared by the driver and every host.
pub struct Shared {
    /// Observations not yet drained, with the host that made them.
    pub obs: RefCell<Vec<(usize, Obs)>>,
    /// One inbox per host.
    pub inboxes: Vec<Inbox>,
    /// Where joiners connect.
    pub auth_addr: SocketAddr,
    /// Where each group's joiners connect: `auth_addr`, or their impostor's address.
    pub targets: Vec<SocketAddr>,
    /// Settings.
    pub settings: Settings,
    /// The running authenticator incarnation, for its distribution counters at the end.
    pub auth_live: RefCell<Option<Rc<Authenticator<TurmoilNet>>>>,
    /// Distribution counters of the incarnations that crashed.
    pub dist_stats: RefCell<pyile::DistStats>,
    /// The member lists the joiners build, one per version, shared by them all (a pure
    /// saving of the simulator's memory and wall time: every joiner still gets a list equal
    /// to the one it would have built, so traces do not change).
    pub lists: pyile::SharedLists,
    /// SCRAM client keys, computed once per password, salt and iteration count (wall time
    /// only; simulated time does not see CPU).
    pub scram_keys: pyile::scram::KeyCache,
}

impl Shared {
    /// A fresh state for `hosts` hosts.
    pub fn new(hosts: usize, auth_addr: SocketAddr, settings: Settings) -> Self {
        Shared {
            obs: RefCell::new(Vec::new()),
            inboxes: (0..hosts).map(|_| Inbox::default()).collect(),
            auth_addr,
            targets: vec![auth_addr; settings.groups.len()],
            settings,
            auth_live: RefCell::new(None),
            dist_stats: RefCell::new(pyile::DistStats::default()),
            lists: pyile::SharedLists::new(),
            scram_keys: pyile::scram::KeyCache::new(),
        }
    }

    /// What every authenticator incarnation's distribution writers sent so far.
    pub fn dist_stats(&self) -> pyile::DistStats {
        let mut s = *self.dist_stats.borrow();
        if let Some(a) = self.auth_live.borrow().as_ref() {
            s.add(&a.distribution_stats());
        }
        s
    }

    pub(super) fn push(&self, host: usize, o: Obs) {
        self.obs.borrow_mut().push((host, o));
    }
}

/// Maps one host incarnation's tokio instants to simulated time.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    origin: Instant,
    origin_sim: Duration,
}

impl Clock {
    pub(super) fn start() -> Self {
        Clock { origin: Instant::now(), origin_sim: turmoil::sim_elapsed().unwrap_or_default() }
    }
    fn at(&self, i: Instant) -> Duration {
        self.origin_sim + i.saturating_duration_since(self.origin)
    }
    pub(super) fn now(&self) -> Duration {
        self.at(Instant::now())
    }
}

/// What a host is.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// The authenticator.
    Authenticator,
    /// A joiner agent.
    Joiners,
    /// A ban-flood attacker.
    Attacker,
    /// A hostile host (an `attack`'s).
    Hostile,
    /// A group's impostor authenticator.
    Impostor {
        /// Group index.
        group: usize,
    },
}

impl Role {
    /// The software for a host of the layout.
    pub fn of(role: &HostRole) -> Role {
        match role {
            HostRole::Authenticator => Role::Authenticator,
            HostRole::Joiners { .. } => Role::Joiners,
            HostRole::Attacker { .. } => Role::Attacker,
            HostRole::Hostile { .. } => Role::Hostile,
            HostRole::Impostor { group } => Role::Impostor { group: *group },
        }
    }
}

/// Everything one host's software needs; cloned into each incarnation.
#[derive(Clone)]
pub struct HostCtx {
    /// Shared state.
    pub shared: Rc<Shared>,
    /// Host index.
    pub host: usize,
    /// Host IP.
    pub ip: IpAddr,
    /// Role.
    pub role: Role,
    /// Incarnations so far (restarts).
    pub incarnation: Rc<Cell<u64>>,
}

/// The host's software: a future per incarnation.
pub fn software(ctx: HostCtx) -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
    ctx.incarnation.set(ctx.incarnation.get() + 1);
    match ctx.role {
        Role::Authenticator => Box::pin(authenticator(ctx)),
        Role::Joiners => Box::pin(joiner_agent(ctx)),
        Role::Attacker => Box::pin(attacker(ctx)),
        Role::Hostile => Box::pin(super::hostile::host(ctx)),
        Role::Impostor { group } => Box::pin(impostor(ctx, group)),
    }
}

fn payload(size: u32) -> String {
    "x".repeat(size as usize)
}

async fn authenticator(ctx: HostCtx) -> turmoil::Result {
    let clock = Clock::start();
    let s = &ctx.shared.settings;
    let mut cfg = AuthenticatorConfig::new(s.password.clone())
        .listen(SocketAddr::new(ctx.ip, s.port))
        .password_attempts(s.password_attempts)
        .heartbeat_interval(s.heartbeat_interval)
        .heartbeat_timeout(s.heartbeat_timeout)
        .handshake_timeout(s.handshake_timeout)
        .distribution_budget(s.distribution_budget)
        .max_handshakes_per_source(s.max_handshakes_per_source)
        .seed(derive_seed(s.seed, &format!("auth:{}", ctx.incarnation.get())))
        .alias("auth")
        .event_capacity(EVENT_CAPACITY)
        .foreign_peer_addresses(s.foreign_peer_addresses);
    if let Some(n) = s.max_handshakes {
        cfg = cfg.max_handshakes(n);
    }
    let mut auth = match Authenticator::start(TurmoilNet::new(ctx.ip), cfg).await {
        Ok(a) => a,
        Err(e) => {
            ctx.shared.push(ctx.host, Obs::AuthStartFailed { at: clock.now(), error: pyile::error::report(&e) });
            return Ok(());
        }
    };
    ctx.shared.push(ctx.host, Obs::AuthStarted { at: clock.now(), peer: auth.peer_addr() });
    let mut events = auth.events().expect("events taken once");
    let auth = Rc::new(auth);
    *ctx.shared.auth_live.borrow_mut() = Some(auth.clone());
    let inbox = &ctx.shared.inboxes[ctx.host];
    let host = ctx.host;
    'serve: loop {
        for cmd in inbox.drain() {
            if let Cmd::Crash = cmd {
                break 'serve;
            }
            if let Cmd::Broadcast { id, size, .. } = cmd {
                let (a, shared) = (auth.clone(), ctx.shared.clone());
                tokio::task::spawn_local(async move {
                    let r = a.broadcast(&payload(size)).await;
                    shared.push(
                        host,
                        Obs::BroadcastDone {
                            at: clock.now(),
                            id,
                            from: a.peer_addr(),
                            msg_id: r.msg_id.map(|m| (m.epoch, m.seq)),
                            retries: r.retries,
                            inst: None,
                            sent: r.sent,
                            delivered: r.delivered,
                            failed: r.failed,
                        },
                    );
                });
            }
        }
        tokio::select! {
            biased;
            ev = events.recv() => match ev {
                Some(ev) => ctx.shared.push(ctx.host, Obs::Auth { at: clock.at(ev.at), kind: ev.kind }),
                None => break,
            },
            _ = inbox.notify.notified() => {}
        }
    }
    // Crash: end every task now (deterministically), then wait to be killed.
    drop(events);
    if let Some(a) = ctx.shared.auth_live.borrow_mut().take() {
        ctx.shared.dist_stats.borrow_mut().add(&a.distribution_stats());
    }
    auth.leave().await;
    std::future::pending::<()>().await;
    Ok(())
}

type Live = Rc<RefCell<BTreeMap<u64, Rc<Joiner<TurmoilNet>>>>>;

/// The peer port joiner instance `inst` listens on. The runner chooses it (below turmoil's
/// ephemeral range, 49152 and up), so the checkers know every joiner's address before the
/// joiner announces it: ground truth that does not come from the authenticator. Five digits,
/// like the ephemeral ports real joiners get, so lists keep their real size.
pub(super) fn peer_port(inst: u64) -> u16 {
    (10_000 + inst % 39_000) as u16
}

/// A joiner host's crash, as its joins in progress see it.
///
/// A flag and a [`Notify`], not a `tokio::sync::watch`: watch spreads its waiters over
/// several internal `Notify`s picked by tokio's own RNG, which is not seeded by turmoil (only
/// under `tokio_unstable`), so joins cut short by a crash would wake — and send their FINs —
/// in an order that differs between runs. `Notify::notify_waiters` wakes its list in a fixed
/// order.
#[derive(Default)]
struct Crashed {
    flag: Cell<bool>,
    notify: Notify,
}

impl Crashed {
    fn crash(&self) {
        self.flag.set(true);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.flag.get()
    }

    /// Resolves once the host crashed.
    async fn wait(&self) {
        loop {
            // Registered before the check: a crash in between still wakes this future.
            let woken = self.notify.notified();
            if self.is_set() {
                return;
            }
            woken.await;
        }
    }
}

async fn joiner_agent(ctx: HostCtx) -> turmoil::Result {
    let clock = Clock::start();
    let live: Live = Rc::default();
    let inbox = &ctx.shared.inboxes[ctx.host];
    let host = ctx.host;
    let crashed = Rc::new(Crashed::default());
    loop {
        for cmd in inbox.drain() {
            match cmd {
                Cmd::Crash => {
                    crashed.crash();
                    let nodes = std::mem::take(&mut *live.borrow_mut());
                    for (_, j) in nodes {
                        tokio::task::spawn_local(async move { j.leave().await });
                    }
                }
                Cmd::Join { inst, joiner, group } => {
                    let crashed = crashed.clone();
                    tokio::task::spawn_local(run_joiner(
                        ctx.clone(),
                        clock,
                        live.clone(),
                        crashed,
                        inst,
                        joiner,
                        group,
                    ));
                }
                // A graceful leave says so (protocol 2); a crash (above) closes without a word.
                Cmd::Leave { inst } => {
                    if let Some(j) = live.borrow().get(&inst).cloned() {
                        tokio::task::spawn_local(async move { j.close().await });
                    }
                }
                Cmd::Broadcast { id, inst: Some(inst), size } => {
                    if let Some(j) = live.borrow().get(&inst).cloned() {
                        let shared = ctx.shared.clone();
                        tokio::task::spawn_local(async move {
                            let r = j.broadcast(&payload(size)).await;
                            shared.push(
                                host,
                                Obs::BroadcastDone {
                                    at: clock.now(),
                                    id,
                                    from: j.peer_addr(),
                                    msg_id: r.msg_id.map(|m| (m.epoch, m.seq)),
                                    retries: r.retries,
                                    inst: Some(inst),
                                    sent: r.sent,
                                    delivered: r.delivered,
                                    failed: r.failed,
                                },
                            );
                        });
                    }
                }
                _ => {}
            }
        }
        inbox.notify.notified().await;
    }
}

async fn run_joiner(
    ctx: HostCtx,
    clock: Clock,
    live: Live,
    crashed: Rc<Crashed>,
    inst: u64,
    joiner: usize,
    group: usize,
) {
    let s = &ctx.shared.settings;
    let g = &s.groups[group];
    let (password, handshake, hb_timeout) = (g.password.clone(), g.handshake_timeout, g.heartbeat_timeout);
    ctx.shared.push(ctx.host, Obs::JoinStarted { at: clock.now(), inst });
    let cfg = JoinerConfig::new(password)
        .alias(alias_of(s, joiner, inst))
        .local_ip(ctx.ip)
        .peer_port(peer_port(inst))
        .handshake_timeout(handshake)
        .heartbeat_interval(s.heartbeat_interval)
        .heartbeat_timeout(hb_timeout)
        .event_capacity(EVENT_CAPACITY)
        // SCRAM nonces from the run's seed, so traces replay exactly.
        .seed(derive_seed(s.seed, &format!("joiner:{inst}")))
        .shared_lists(ctx.shared.lists.clone())
        .scram_key_cache(ctx.shared.scram_keys.clone())
        .require_mutual_auth(g.require_mutual_auth)
        .one_connection(g.one_connection);
    let target = ctx.shared.targets[group];
    let joined = tokio::select! {
        biased;
        _ = crashed.wait() => return,
        r = Joiner::join(TurmoilNet::new(ctx.ip), target, cfg) => r,
    };
    if crashed.is_set() {
        return; // crashed while joining: dropping `joined` ends it
    }
    match joined {
        Err(e) => ctx.shared.push(
            ctx.host,
            Obs::JoinFailed {
                at: clock.now(),
                inst,
                refused: matches!(e, pyile::Error::Authentication),
                alias_taken: matches!(e, pyile::Error::AliasTaken { .. }),
                impostor: matches!(e, pyile::Error::ImpostorAuthenticator { .. } | pyile::Error::MutualAuthUnavailable),
                error: pyile::error::report(&e),
            },
        ),
        Ok(mut j) => {
            // A one-connection member has no distribution stream: a DistributionLost removal
            // of it is judged by the fault windows alone.
            if let Some(local) = j.distribution_local_addr() {
                ctx.shared.push(ctx.host, Obs::DistConnected { inst, local });
            }
            let mut events = j.events().expect("events taken once");
            live.borrow_mut().insert(inst, Rc::new(j));
            while let Some(ev) = events.recv().await {
                let left = matches!(ev.kind, EventKind::Left);
                ctx.shared.push(ctx.host, Obs::Joiner { at: clock.at(ev.at), inst, kind: ev.kind });
                if left {
                    break;
                }
            }
            let tasks = live.borrow_mut().remove(&inst).map(|j| j.task_count());
            ctx.shared.push(ctx.host, Obs::JoinerEnded { at: clock.now(), inst, tasks });
        }
    }
}

/// A group's impostor authenticator (`pyile::impostor`) on the auth port of its own host:
/// every exchange it plays is reported as an [`Obs::ImpostorCapture`].
async fn impostor(ctx: HostCtx, group: usize) -> turmoil::Result {
    let clock = Clock::start();
    let s = &ctx.shared.settings;
    let Some(kind) = s.groups[group].impostor else { return Ok(()) };
    let listener = TurmoilNet::new(ctx.ip).bind(SocketAddr::new(ctx.ip, s.port)).await?;
    let seed = derive_seed(s.seed, &format!("impostor:{group}:{}", ctx.incarnation.get()));
    let cfg = pyile::impostor::ImpostorConfig::new(kind, seed).deadline(s.handshake_timeout);
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::task::spawn_local(pyile::impostor::serve(listener, cfg, tx));
    while let Some(capture) = rx.recv().await {
        ctx.shared.push(ctx.host, Obs::ImpostorCapture { at: clock.now(), group, capture });
    }
    Ok(())
}

async fn attacker(ctx: HostCtx) -> turmoil::Result {
    let clock = Clock::start();
    let inbox = &ctx.shared.inboxes[ctx.host];
    let mut attempt = 0u64;
    loop {
        for cmd in inbox.drain() {
            let Cmd::Attempt { correct } = cmd else { continue };
            attempt += 1;
            let (shared, ip, host) = (ctx.shared.clone(), ctx.ip, ctx.host);
            tokio::task::spawn_local(async move {
                let s = &shared.settings;
                let password = if correct { s.password.clone() } else { format!("wrong-{host}-{attempt}") };
                let started = clock.now();
                shared.push(host, Obs::AttemptStarted { at: started, host });
                let cfg = JoinerConfig::new(password)
                    .alias(format!("attacker-{host}-{attempt}"))
                    .local_ip(ip)
                    .handshake_timeout(s.handshake_timeout)
                    .event_capacity(64)
                    .seed(derive_seed(s.seed, &format!("attacker:{host}:{attempt}")));
                let r = Joiner::join(TurmoilNet::new(ip), shared.auth_addr, cfg).await;
                let (admitted, refused, error) = match r {
                    Ok(j) => {
                        j.leave().await;
                        (true, false, None)
                    }
                    Err(e) => (false, matches!(e, pyile::Error::Authentication), Some(pyile::error::report(&e))),
                };
                let at = clock.now();
                shared.push(host, Obs::AttemptDone { at, host, started, correct, admitted, refused, error });
            });
        }
        inbox.notify.notified().await;
    }
}
