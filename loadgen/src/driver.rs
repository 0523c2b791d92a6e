//! The driver: runs a [`Plan`] with real `pyile::Joiner`s over `tokio::net`, on the current
//! (multi-threaded) tokio runtime, and feeds what happens into [`Metrics`].
//!
//! One scheduler walks the plan and starts each operation at its intended instant (recording
//! how late it was as `schedule_lag`); every operation runs in its own task, so a slow one
//! never delays the next (open model). Each joined joiner gets one task that reads its event
//! stream until it has left: heartbeat intervals, member lists (convergence), received
//! messages (delivery latency) and the loss of the authenticator all come from there.
//!
//! Every latency is measured from the operation's intended instant, using the timestamps the
//! protocol library puts on its events. Message delivery spans processes (a broadcast reaches
//! every shard's joiners), so a message carries its intended send time as wall-clock
//! microseconds and receivers convert their event timestamps to wall-clock time with the same
//! anchor the plan uses; on one machine that is exact, across machines it includes clock skew.
//!
//! Churn's crash half is a silent death: the joiner hangs (`pyile::Joiner::hang`), stops
//! reading and answering and keeps every socket open, so the authenticator can only notice by
//! its heartbeat timeout. A watcher per crash then follows the member list of another joiner
//! of this process that still lists the crashed address, and records how long after the
//! silence began a list without it arrived ([`Latency::CrashDetection`]); the hung sockets are
//! closed then, or when `crash_bound` expires first ([`Counter::CrashUndetected`]). When the
//! plan ends, the run waits for the crashes still being watched (each at most `crash_bound`)
//! before the joiners leave.
//!
//! Hostile connections (`--attack`) run as their own tasks too ([`crate::attack::client`]);
//! the driver only hands them the honest members they may impersonate and tells them when an
//! impersonated member lost its membership.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pyile::impostor::{Capture, ImpostorConfig, ImpostorKind};
use pyile::scram::KeyCache;
use pyile::{
    EventKind, EventStream, HandshakeStage, Joiner, JoinerConfig, LostReason, MemberList, Network, SharedLists,
    TokioNet,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::attack::{AttackContext, AttackKind, RunningAttack, Victims, client};
use crate::metrics::{AttackCounter, Counter, Latency, Metrics};
use crate::plan::{JoinerId, LeaveMode, Op, OpKind, Plan};

/// Prefix of the messages loadgen broadcasts: `loadgen <intended unix µs> <op seq>`.
const MESSAGE_PREFIX: &str = "loadgen ";

/// What the driver needs besides the plan.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// The authenticator's auth address.
    pub target: SocketAddr,
    /// The right password.
    pub password: String,
    /// The password attackers use (must differ from `password`).
    pub wrong_password: String,
    /// Bound on one handshake.
    pub handshake_timeout: Duration,
    /// Silence after which a joiner counts its authenticator as lost.
    pub heartbeat_timeout: Duration,
    /// Wall-clock time of the run's time zero (`Metrics::start`).
    pub start_wall: SystemTime,
    /// After the plan ends, how long to wait for operations still in flight.
    pub drain_timeout: Duration,
    /// How long a crashed (hung) joiner's sockets stay open waiting for the authenticator to
    /// remove it from the member list; past it the crash counts as undetected and its sockets
    /// are closed.
    pub crash_bound: Duration,
    /// Fraction of the joiner slots that speak protocol 2 (a whole list, then deltas); the
    /// others speak plain v1, as a reference joiner does (whole lists, paced). 1.0: all.
    pub protocol2_share: f64,
    /// Fraction of the protocol-2 joins that present the alias of a live joiner of this
    /// process (`--duplicate-alias-rate`): the authenticator must refuse them with
    /// `alias_taken`, counted as [`Counter::AliasTaken`], not as an error.
    pub duplicate_alias_rate: f64,
    /// Fraction of the joiner slots pointed at an impostor authenticator loadgen runs on
    /// 127.0.0.1 (0: none), and what it poses as.
    pub impostor_share: f64,
    /// What the impostor poses as.
    pub impostor: ImpostorKind,
    /// Joiners refuse an authenticator that does not offer the mutual proof.
    pub require_mutual_auth: bool,
    /// Protocol-2 joiners take their member lists on the auth connection (`--one-connection`):
    /// one socket each at the authenticator instead of two.
    pub one_connection: bool,
}

impl DriverConfig {
    /// Whether joiner slot `slot` speaks protocol 2: slots are spread evenly by the share
    /// (0.5: every second slot), the same in every shard.
    pub fn speaks_protocol2(&self, slot: u32) -> bool {
        let f = self.protocol2_share.clamp(0.0, 1.0);
        ((f64::from(slot) + 1.0) * f).floor() > (f64::from(slot) * f).floor()
    }

    /// Whether join `id` reuses a live alias: its slot and generation hashed (FNV-1a), below
    /// the rate; the same in every shard and every run.
    pub fn duplicates_alias(&self, id: JoinerId) -> bool {
        if self.duplicate_alias_rate <= 0.0 {
            return false;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.slot.to_le_bytes().into_iter().chain(id.generation.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        ((h >> 11) as f64 / (1u64 << 53) as f64) < self.duplicate_alias_rate
    }

    /// Whether joiner slot `slot` is pointed at the impostor: a fixed hash of the slot below
    /// the share, the same in every shard, and independent of [`Self::speaks_protocol2`]'s
    /// even spread (so a mix sends both protocols to the impostor).
    pub fn goes_to_impostor(&self, slot: u32) -> bool {
        let mut x = u64::from(slot).wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        ((x >> 11) as f64 / (1u64 << 53) as f64) < self.impostor_share
    }

    /// Whether protocol 2 promises that the password never reaches an impostor that got
    /// `capture`: it offered SCRAM to a protocol-2 joiner, or the joiners require the proof.
    pub fn promises_password_stays(&self, capture: &Capture) -> bool {
        (self.impostor == ImpostorKind::Scram && capture.protocol2) || self.require_mutual_auth
    }

    /// A wrong password that is certainly not `password`.
    pub fn wrong_password_for(password: &str) -> String {
        format!("{password}-loadgen-wrong")
    }
}

/// Where a planned joiner is.
enum Slot {
    /// Handshake in progress; a leave planned meanwhile is remembered and done on arrival.
    Joining(Option<LeaveMode>),
    /// Joined.
    Joined(Arc<Joiner>),
}

/// What a joiner does once its handshake is done.
enum AfterJoin {
    /// Stay joined (the normal case).
    Stay,
    /// Leave at once: the plan churned it while it was joining.
    Churn(LeaveMode),
    /// Leave at once: the run ended while it was joining.
    RunEnded,
}

struct Shared {
    cfg: DriverConfig,
    metrics: Arc<Metrics>,
    slots: Mutex<HashMap<JoinerId, Slot>>,
    /// Peer addresses of this process's joined joiners (for convergence, and the members
    /// `spoof-address` attacks impersonate).
    victims: Arc<Victims>,
    /// The hostile side of the run.
    attack: Arc<AttackContext>,
    tracker: TaskTracker,
    /// The crashes being watched (see [`watch_crash`]); waited for when the plan ends.
    crash_watches: TaskTracker,
    /// Set once the plan has ended: joins that finish later leave at once.
    ending: CancellationToken,
    /// The run was stopped (interrupted or given up): crashes still watched are unobserved.
    stop: CancellationToken,
    /// The member lists every joiner of this process builds, built once and shared: the
    /// generator's own cost per change stays O(change), not O(change × joiners), so what it
    /// measures is the authenticator.
    lists: SharedLists,
    /// SCRAM client keys, computed once for the run's password (RFC 5802 allows a client
    /// to cache them): one PBKDF2 per join would make 100 joiners at once wait for the
    /// generator's own CPU.
    scram_keys: KeyCache,
    /// The impostor authenticator's address, when `--impostor-rate` is above 0.
    impostor: Option<SocketAddr>,
}

/// Runs `plan` to its end (or until `stop` is cancelled), then makes every joiner leave and
/// waits for operations in flight (at most `drain_timeout`).
pub async fn run(plan: &Plan, cfg: DriverConfig, metrics: Arc<Metrics>, stop: CancellationToken) {
    let start = metrics.start();
    let ending = CancellationToken::new();
    let victims = Arc::new(Victims::default());
    let attack = Arc::new(AttackContext {
        target: cfg.target,
        password: cfg.password.clone(),
        wrong_password: cfg.wrong_password.clone(),
        step_timeout: cfg.handshake_timeout,
        metrics: metrics.clone(),
        ending: ending.clone(),
        victims: victims.clone(),
        attacks: plan
            .attacks
            .iter()
            .map(|spec| {
                let (from, to) = spec.window_in(plan.end);
                RunningAttack::new(spec.clone(), start, from, to)
            })
            .collect(),
    });
    let impostor = if cfg.impostor_share > 0.0 { start_impostor(&cfg, metrics.clone()).await } else { None };
    let shared = Arc::new(Shared {
        impostor,
        cfg,
        metrics,
        slots: Mutex::new(HashMap::new()),
        victims,
        attack,
        tracker: TaskTracker::new(),
        crash_watches: TaskTracker::new(),
        ending,
        stop: stop.clone(),
        lists: SharedLists::new(),
        scram_keys: KeyCache::new(),
    });
    let probe = tokio::spawn(probe_runtime(shared.metrics.clone(), RUNTIME_PROBE_EVERY, shared.ending.clone()));
    for op in &plan.ops {
        let intended = start + op.at;
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(intended.into()) => {}
        }
        shared.metrics.record_since(Latency::ScheduleLag, intended, Instant::now());
        dispatch(&shared, op, intended);
    }
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep_until((start + plan.end).into()) => {}
    }
    // Crashes late in the plan: give each its bound to be detected while the other joiners
    // are still members to see it (each watch ends by `crash_bound`, or at once on `stop`).
    shared.crash_watches.close();
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = shared.crash_watches.wait() => {}
    }
    shared.ending.cancel();
    let joiners: Vec<Arc<Joiner>> = lock(&shared.slots)
        .drain()
        .filter_map(|(_, slot)| match slot {
            Slot::Joined(j) => Some(j),
            Slot::Joining(_) => None,
        })
        .collect();
    for j in joiners {
        shared.tracker.spawn(async move { j.leave().await });
    }
    shared.tracker.close();
    let drained = async {
        shared.tracker.wait().await;
        shared.crash_watches.wait().await;
    };
    let _ = tokio::time::timeout(shared.cfg.drain_timeout, drained).await;
    probe.abort();
}

/// How often [`probe_runtime`] samples.
pub const RUNTIME_PROBE_EVERY: Duration = Duration::from_millis(10);

/// Sleeps `every`, again and again until `until` is cancelled, and records how late each
/// wake came as [`Latency::RuntimeLag`]: a task that does nothing else waits only for the
/// runtime's timer (a millisecond's resolution) and for the tasks queued before it. So
/// its lateness is loadgen's own queueing, in the same runtime as the joiners' (every
/// latency loadgen measures includes it), and says whether a slow run was slow here.
pub async fn probe_runtime(metrics: Arc<Metrics>, every: Duration, until: CancellationToken) {
    let mut next = Instant::now() + every;
    loop {
        tokio::select! {
            _ = until.cancelled() => return,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
        let now = Instant::now();
        metrics.record_since(Latency::RuntimeLag, next, now);
        // The next sample from now: a long stall is one late sample, not a burst of them.
        next = now + every;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn dispatch(shared: &Arc<Shared>, op: &Op, intended: Instant) {
    let s = shared.clone();
    match op.kind {
        OpKind::Join { joiner, source } => {
            lock(&shared.slots).insert(joiner, Slot::Joining(None));
            shared.tracker.spawn(join(s, joiner, source, intended));
        }
        OpKind::Leave { joiner, mode } => {
            let mut slots = lock(&shared.slots);
            match slots.remove(&joiner) {
                Some(Slot::Joining(_)) => {
                    slots.insert(joiner, Slot::Joining(Some(mode)));
                }
                Some(Slot::Joined(j)) => {
                    shared.tracker.spawn(leave(s, j, mode));
                }
                None => shared.metrics.incr(Counter::Skipped),
            }
        }
        OpKind::Broadcast { from } => {
            let sender = match lock(&shared.slots).get(&from) {
                Some(Slot::Joined(j)) => Some(j.clone()),
                _ => None,
            };
            match sender {
                Some(j) => {
                    let wall = shared.cfg.start_wall + (intended - shared.metrics.start());
                    let text = format!("{MESSAGE_PREFIX}{} {}", unix_micros(wall), op.seq);
                    shared.tracker.spawn(broadcast(s, j, text));
                }
                None => shared.metrics.incr(Counter::Skipped),
            }
        }
        OpKind::WrongPassword { source, .. } => {
            shared.tracker.spawn(attack(s, source));
        }
        OpKind::Attack { attack, source, .. } => {
            shared.tracker.spawn(client::run(shared.attack.clone(), attack as usize, op.seq, source));
        }
    }
}

fn unix_micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The counter for a failed join (or a failed attack that was not a rejection or a ban).
pub fn failure_counter(e: &pyile::Error) -> Counter {
    match e.kind() {
        "wrong_password" => Counter::WrongPassword,
        "banned" => Counter::Banned,
        "refused" => Counter::Refused,
        "timed_out" => Counter::TimedOut,
        "protocol_error" => Counter::ProtocolError,
        _ => Counter::OtherError,
    }
}

/// A joiner's settings; `alias` (a planned joiner's own, `loadgen-j3.0`) is presented to a
/// protocol-2 authenticator, which keeps it unique: `None` for the probes that are not
/// members of the load (the preflight, attackers).
fn joiner_config(cfg: &DriverConfig, password: &str, alias: Option<String>, source: Option<IpAddr>) -> JoinerConfig {
    let jc = JoinerConfig::new(password);
    let jc = match alias {
        Some(a) => jc.alias(a),
        None => jc,
    };
    jc.handshake_timeout(cfg.handshake_timeout).heartbeat_timeout(cfg.heartbeat_timeout).local_ip_opt(source)
}

/// Starts the impostor authenticator on 127.0.0.1 (loopback only) and a task that counts
/// what each joiner gave it. None (and an error counted) if it cannot listen.
async fn start_impostor(cfg: &DriverConfig, metrics: Arc<Metrics>) -> Option<SocketAddr> {
    let listener = match TokioNet.bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot start the impostor authenticator: {e}");
            metrics.incr(Counter::OtherError);
            return None;
        }
    };
    let addr = pyile::Listener::local_addr(&listener).ok()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let icfg = ImpostorConfig::new(cfg.impostor, 0x1_4b05_7012).deadline(cfg.handshake_timeout);
    tokio::spawn(pyile::impostor::serve(listener, icfg, tx));
    let cfg = cfg.clone();
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            let password = c.cleartext.as_deref() == Some(cfg.password.as_str());
            if password {
                metrics.incr(Counter::ImpostorPasswords);
            }
            if cfg.promises_password_stays(&c) && (password || c.trusted) {
                tracing::warn!(source = %c.source, password, trusted = c.trusted, "impostor got what protocol 2 promises it cannot");
                metrics.incr(Counter::ImpostorExposed);
            }
        }
    });
    Some(addr)
}

/// A join pointed at the impostor: counted, never a member.
async fn join_impostor(shared: &Shared, impostor: SocketAddr, cfg: JoinerConfig) {
    let m = &shared.metrics;
    m.incr(Counter::ImpostorJoins);
    match Joiner::join(TokioNet, impostor, cfg).await {
        Err(pyile::Error::ImpostorAuthenticator { .. } | pyile::Error::MutualAuthUnavailable) => {
            m.incr(Counter::ImpostorRefused)
        }
        // v1's weakness (the impostor closes after taking the password): counted from its side.
        Err(_) => {}
        Ok(j) => {
            m.incr(Counter::ImpostorExposed);
            j.leave().await;
        }
    }
}

async fn join(shared: Arc<Shared>, id: JoinerId, source: Option<IpAddr>, intended: Instant) {
    let m = &shared.metrics;
    let v2 = shared.cfg.speaks_protocol2(id.slot);
    // A deliberate duplicate takes the alias of a live protocol-2 joiner of this process (the
    // first in slot order); without one it joins under its own.
    let duplicate = (v2 && shared.cfg.duplicates_alias(id))
        .then(|| {
            lock(&shared.slots)
                .iter()
                .filter(|(other, s)| {
                    **other != id && matches!(s, Slot::Joined(_)) && shared.cfg.speaks_protocol2(other.slot)
                })
                .map(|(other, _)| *other)
                .min()
                .map(|other| format!("loadgen-{other}"))
        })
        .flatten();
    let alias = duplicate.clone().unwrap_or_else(|| format!("loadgen-{id}"));
    let cfg = joiner_config(&shared.cfg, &shared.cfg.password, Some(alias), source)
        .announce_extensions(v2)
        // Nothing here reads who joined or left: thousands of joiners would each emit an
        // event per change for nobody.
        .announcements(false)
        .shared_lists(shared.lists.clone())
        .scram_key_cache(shared.scram_keys.clone())
        .require_mutual_auth(shared.cfg.require_mutual_auth)
        .one_connection(shared.cfg.one_connection);
    if let Some(impostor) = shared.impostor
        && shared.cfg.goes_to_impostor(id.slot)
    {
        join_impostor(&shared, impostor, cfg).await;
        lock(&shared.slots).remove(&id);
        return;
    }
    let mut joiner = match Joiner::join(TokioNet, shared.cfg.target, cfg).await {
        Ok(j) => j,
        Err(pyile::Error::AliasTaken { alias }) if duplicate.is_some() => {
            // Expected: it asked for a live member's alias.
            m.incr(Counter::AliasTaken);
            tracing::debug!(%id, alias, "duplicate alias refused, as it must be");
            lock(&shared.slots).remove(&id);
            return;
        }
        Err(e) => {
            m.incr(failure_counter(&e));
            tracing::debug!(%id, "join failed: {}", pyile::error::report(&e));
            lock(&shared.slots).remove(&id);
            return;
        }
    };
    let Some(mut events) = joiner.events() else { unreachable!("a new joiner has its event stream") };
    // The handshake's events are already queued: take them up to `Joined`.
    let mut first_list = None;
    while let Some(ev) = events.try_recv() {
        let at = ev.at.into_std();
        let stage = match ev.kind {
            EventKind::Handshake(HandshakeStage::Connected) => Latency::TcpConnect,
            EventKind::Handshake(HandshakeStage::BannedStatus { .. }) => Latency::BannedStatus,
            EventKind::Handshake(HandshakeStage::Authenticated { .. }) => Latency::AuthResult,
            EventKind::Handshake(HandshakeStage::FirstList(_)) => Latency::FirstList,
            EventKind::Handshake(HandshakeStage::DistConnected) => Latency::JoinComplete,
            EventKind::Joined { list, .. } => {
                first_list = Some((at, list));
                break;
            }
            EventKind::Lagged { dropped } => {
                m.add(Counter::EventsLagged, dropped);
                continue;
            }
            _ => continue,
        };
        m.record_since(stage, intended, at);
    }
    m.incr(Counter::Joined);
    m.add_active(1);

    let peer_addr = joiner.peer_addr();
    let joiner = Arc::new(joiner);
    // Convergence: wait until the list holds every joiner of ours joined before this one.
    let mut missing: Vec<SocketAddr> = {
        let mut joined = lock(&shared.victims.joined);
        let before = joined.iter().copied().collect();
        joined.insert(peer_addr);
        before
    };
    let mut converged = false;
    if let Some((at, list)) = &first_list {
        converged = check_convergence(&shared, &mut missing, list, intended, *at);
    }

    let next = {
        let mut slots = lock(&shared.slots);
        match slots.remove(&id) {
            Some(Slot::Joining(None)) if !shared.ending.is_cancelled() => {
                slots.insert(id, Slot::Joined(joiner.clone()));
                AfterJoin::Stay
            }
            Some(Slot::Joining(Some(mode))) if !shared.ending.is_cancelled() => AfterJoin::Churn(mode),
            _ => AfterJoin::RunEnded,
        }
    };

    shared.tracker.spawn(watch_events(shared.clone(), events, intended, peer_addr, missing, converged));
    // Hold no reference past this point: dropping the slot's must be able to end the joiner.
    match next {
        AfterJoin::Stay => drop(joiner),
        AfterJoin::Churn(mode) => leave(shared, joiner, mode).await,
        AfterJoin::RunEnded => joiner.leave().await,
    }
}

/// Up to this many missing members are looked up in a flat list one by one (in an indexed
/// one, always).
const FEW_MISSING: usize = 32;

/// Removes from `missing` the members `list` holds and the joiners that have left; records
/// convergence (at `at`) once nothing is missing. Returns whether it converged.
fn check_convergence(
    shared: &Shared,
    missing: &mut Vec<SocketAddr>,
    list: &MemberList,
    intended: Instant,
    at: Instant,
) -> bool {
    // O(missing × log members) for a changed list (a persistent map with an address index),
    // however many are missing; a list received whole is flat, where a lookup is a scan: then
    // one pass over the list against the missing set, O(members + missing), instead of
    // O(missing × members).
    if missing.len() > FEW_MISSING && !list.is_indexed() {
        let mut set: HashSet<SocketAddr> = missing.iter().copied().collect();
        for a in list.iter() {
            set.remove(a);
        }
        missing.retain(|a| set.contains(a));
    } else {
        missing.retain(|a| !list.contains(a));
    }
    if !missing.is_empty() {
        let joined = lock(&shared.victims.joined);
        missing.retain(|a| joined.contains(a));
    }
    if missing.is_empty() {
        shared.metrics.record_since(Latency::Convergence, intended, at);
        missing.shrink_to_fit();
        true
    } else {
        false
    }
}

async fn watch_events(
    shared: Arc<Shared>,
    mut events: EventStream,
    intended: Instant,
    peer_addr: SocketAddr,
    mut missing: Vec<SocketAddr>,
    mut converged: bool,
) {
    let m = &shared.metrics;
    let mut last_beat: Option<Instant> = None;
    if converged {
        // Convergence is all a joiner's list events are for here: at 10,000 members each
        // would otherwise wake this task ten times a second.
        events.stop_list_changes();
    }
    while let Some(ev) = events.recv().await {
        let at = ev.at.into_std();
        match ev.kind {
            EventKind::HeartbeatReceived { .. } => {
                if let Some(prev) = last_beat.replace(at) {
                    m.record(Latency::HeartbeatInterval, at.saturating_duration_since(prev));
                }
            }
            EventKind::MemberListChanged { list, .. } if !converged => {
                converged = check_convergence(&shared, &mut missing, &list, intended, at);
                if converged {
                    events.stop_list_changes();
                }
            }
            EventKind::MessageDuplicate { .. } => m.incr(Counter::MessagesDuplicatesDropped),
            EventKind::MessageReceived { data, .. } => {
                m.incr(Counter::MessagesReceived);
                let sent = data
                    .strip_prefix(MESSAGE_PREFIX)
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|us| us.parse::<u64>().ok());
                if let Some(sent_us) = sent {
                    let at_wall = shared.cfg.start_wall + at.saturating_duration_since(m.start());
                    let delay = unix_micros(at_wall).saturating_sub(sent_us);
                    m.record(Latency::MessageDelivery, Duration::from_micros(delay));
                }
            }
            EventKind::AuthenticatorLost { reason } => {
                m.incr(match reason {
                    LostReason::Timeout => Counter::LostAuthenticator,
                    LostReason::Closed | LostReason::Error(_) => Counter::Removed,
                });
                if shared.victims.was_impersonated(peer_addr) {
                    m.attack_incr(AttackKind::SpoofAddress, AttackCounter::VictimsEvicted);
                }
            }
            EventKind::Lagged { dropped } => m.add(Counter::EventsLagged, dropped),
            EventKind::Left => break,
            _ => {}
        }
    }
    m.add_active(-1);
    lock(&shared.victims.joined).remove(&peer_addr);
}

async fn leave(shared: Arc<Shared>, joiner: Arc<Joiner>, mode: LeaveMode) {
    match mode {
        LeaveMode::Graceful => {
            // Says it is leaving (protocol 2): the others hear "left", not "closed".
            joiner.close().await;
            shared.metrics.incr(Counter::Left);
        }
        LeaveMode::Crash => {
            let hung = joiner.hang().await;
            // From here on it answers nothing: the silence starts now.
            let silent_at = Instant::now();
            drop(joiner);
            shared.metrics.incr(Counter::Crashed);
            let s = shared.clone();
            shared.crash_watches.spawn(async move {
                let deadline = silent_at + s.cfg.crash_bound;
                let m = &s.metrics;
                match watch_crash(&s, hung.peer_addr(), deadline).await {
                    CrashOutcome::Detected(at) => m.record_since(Latency::CrashDetection, silent_at, at),
                    CrashOutcome::Undetected => {
                        tracing::debug!(addr = %hung.peer_addr(), "crashed joiner still listed after the crash bound");
                        m.incr(Counter::CrashUndetected);
                        Duration::ZERO
                    }
                    CrashOutcome::Unobserved => {
                        m.incr(Counter::CrashUnobserved);
                        Duration::ZERO
                    }
                };
                // The process "dies" for good: its sockets close now.
                drop(hung);
            });
        }
    }
}

/// What became of a crashed joiner's address.
enum CrashOutcome {
    /// A list without it was taken by another joiner of ours at this instant.
    Detected(Instant),
    /// Still listed when the bound expired.
    Undetected,
    /// Not judged: the run stopped, or no joiner of ours held the address to see it go.
    Unobserved,
}

/// How many joined joiners one search for an observer looks at.
const OBSERVER_CANDIDATES: usize = 64;
/// Pause between searches for an observer when none holds the address yet.
const OBSERVER_RETRY: Duration = Duration::from_millis(20);

/// Waits (until `deadline`) for the crashed `addr` to be removed, as seen by another loadgen
/// joiner: one that holds `addr` in its current list is followed until it takes a list
/// without `addr`. Lists only move forward, so that list is the authenticator's removal, not
/// an old list from before `addr` joined. If the observer ends first, another is found; if
/// none holds `addr` any more (the removal reached them unseen), the crash is unobserved.
async fn watch_crash(shared: &Shared, addr: SocketAddr, deadline: Instant) -> CrashOutcome {
    let mut seen_listed = false;
    loop {
        let observer = {
            let slots = lock(&shared.slots);
            slots
                .values()
                .filter_map(|slot| match slot {
                    Slot::Joined(j) if j.is_connected() && j.peer_addr() != addr => Some(j.watch_members()),
                    _ => None,
                })
                .take(OBSERVER_CANDIDATES)
                .find(|list| list.borrow().contains(&addr))
        };
        let Some(mut list) = observer else {
            if seen_listed {
                return CrashOutcome::Unobserved;
            }
            // Not listed anywhere yet (it crashed right after joining) or no observer yet.
            tokio::select! {
                _ = shared.stop.cancelled() => return CrashOutcome::Unobserved,
                _ = tokio::time::sleep_until(deadline.into()) => return CrashOutcome::Unobserved,
                _ = tokio::time::sleep(OBSERVER_RETRY) => continue,
            }
        };
        seen_listed = true;
        loop {
            tokio::select! {
                _ = shared.stop.cancelled() => return CrashOutcome::Unobserved,
                _ = tokio::time::sleep_until(deadline.into()) => return CrashOutcome::Undetected,
                changed = list.changed() => {
                    if changed.is_err() {
                        break; // the observer ended: find another
                    }
                    if !list.borrow_and_update().contains(&addr) {
                        return CrashOutcome::Detected(Instant::now());
                    }
                }
            }
        }
    }
}

async fn broadcast(shared: Arc<Shared>, joiner: Arc<Joiner>, text: String) {
    let report = joiner.broadcast(&text).await;
    let m = &shared.metrics;
    let attempted = (report.sent + report.failed) as u64;
    m.add(Counter::MessagesSent, attempted);
    m.add(Counter::MessagesDelivered, report.delivered as u64);
    m.add(Counter::MessagesLost, attempted - report.delivered as u64);
    m.add(Counter::MessageRetries, report.retries as u64);
}

async fn attack(shared: Arc<Shared>, source: IpAddr) {
    let m = &shared.metrics;
    m.incr(Counter::Attacks);
    let cfg = joiner_config(&shared.cfg, &shared.cfg.wrong_password, None, Some(source));
    match Joiner::join(TokioNet, shared.cfg.target, cfg).await {
        Err(pyile::Error::Authentication) => m.incr(Counter::AttackRejected),
        Err(pyile::Error::Banned) => m.incr(Counter::AttackBanned),
        Err(e) => m.incr(failure_counter(&e)),
        Ok(j) => {
            tracing::error!(%source, "the authenticator accepted a wrong password");
            m.incr(Counter::ProtocolError);
            j.leave().await;
        }
    }
}

/// Checks the target before a run: one full handshake with the right password from `source`
/// (the banned status is read on the way), then a leave. `Err` is one line naming the cause.
pub async fn preflight(cfg: &DriverConfig, source: Option<IpAddr>) -> Result<(), String> {
    let target = cfg.target;
    let jc = joiner_config(cfg, &cfg.password, None, source);
    match Joiner::join(TokioNet, target, jc).await {
        Ok(j) => {
            j.leave().await;
            Ok(())
        }
        Err(e) => Err(preflight_cause(target, source, &e)),
    }
}

/// The one line a failed preflight prints (after `loadgen: error: `).
pub fn preflight_cause(target: SocketAddr, source: Option<IpAddr>, e: &pyile::Error) -> String {
    let from = source.map_or_else(String::new, |ip| format!(" ({ip})"));
    match e {
        pyile::Error::Connection { source: io, .. } => {
            format!("cannot reach the authenticator at {target}: {}", io.kind())
        }
        pyile::Error::Authentication => format!("the authenticator at {target} rejected the password"),
        pyile::Error::Banned => format!("the authenticator at {target} says this address{from} is banned"),
        other => format!("a test handshake with the authenticator at {target} failed: {}", pyile::error::report(other)),
    }
}

/// Whether one reporting interval shows a dead run: nobody is a member (`active`), nothing
/// joined in the interval and at least one join failed or a member lost the authenticator.
/// The binary stops the run once two intervals in a row say so.
pub fn interval_all_failed(interval: &crate::metrics::Totals, active: i64) -> bool {
    active <= 0 && interval.counter(Counter::Joined) == 0 && interval.counter(Counter::Errors) > 0
}

/// The one line a run stopped by [`interval_all_failed`] ends with.
pub fn gave_up_cause(target: SocketAddr, after: Duration, totals: &crate::metrics::Totals) -> String {
    let kinds: Vec<String> = Counter::ALL
        .iter()
        .filter(|c| c.is_error() && **c != Counter::Errors && totals.counter(**c) > 0)
        .map(|c| format!("{} {}", totals.counter(*c), c.name()))
        .collect();
    format!(
        "stopped the run after {:.1}s: every recent join attempt failed and no joiner is a member \
         (is the authenticator at {target} down?); so far {} joined, errors: {}",
        after.as_secs_f64(),
        totals.counter(Counter::Joined),
        kinds.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Totals;

    #[test]
    fn a_dead_interval_has_errors_no_joins_and_no_members() {
        let mut t = Totals::default();
        assert!(!interval_all_failed(&t, 0), "an idle interval is not a dead one");
        t.add_count(Counter::Refused, 3);
        t.add_count(Counter::Errors, 3);
        assert!(interval_all_failed(&t, 0));
        assert!(!interval_all_failed(&t, 1), "someone is still a member");
        t.add_count(Counter::Joined, 1);
        assert!(!interval_all_failed(&t, 0), "a join succeeded");
    }
}
