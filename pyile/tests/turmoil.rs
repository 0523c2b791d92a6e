//! The same `Authenticator` and `Joiner` code, inside a deterministic turmoil
//! simulation (`TurmoilNet`).
//!
//! Each node runs on its own simulated host (`auth`, `j1`, `j2`, ...). Hosts
//! record every event of their node, stamped in *simulated* time, into a trace
//! shared with the test body (everything in a turmoil sim runs on one thread,
//! so an `Rc<RefCell<..>>` is enough), and publish a view of their node
//! (peer address, member list held, whether it is a member). The test body
//! drives the simulation with `sim.step()` loops, injects faults with
//! `sim.partition`/`sim.repair`, and sends commands (leave, broadcast,
//! rejoin) to joiner hosts over channels.
//!
//! Time: events carry `tokio::time::Instant`s of the host's own (paused,
//! simulated) runtime clock, which are neither comparable across hosts nor
//! reproducible in absolute value. Each host converts them to simulated time
//! since the start of the simulation: it notes its clock and
//! `turmoil::sim_elapsed()` once at start and adds the difference.
#![cfg(feature = "turmoil")]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use pyile::{
    Authenticator, AuthenticatorConfig, DEFAULT_AUTH_PORT, Event, EventKind, Joiner, JoinerConfig, LostReason,
    RemovalReason, TurmoilNet,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use turmoil::Sim;

const PASSWORD: &str = "sesame";
/// The authenticator's heartbeat interval and timeout in these tests.
const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(600);
/// A joiner declares the authenticator lost after this much silence.
const JOINER_TIMEOUT: Duration = Duration::from_millis(1000);
/// One-way link latency range (each segment draws from it, seeded).
const MIN_LATENCY: Duration = Duration::from_millis(1);
const MAX_LATENCY: Duration = Duration::from_millis(20);
const TICK: Duration = Duration::from_millis(1);
/// Fixed epoch: 2024-01-01T00:00:00Z (the default is the wall clock).
const EPOCH_SECS: u64 = 1_704_067_200;

// ---------------------------------------------------------------------------
// Shared state between the hosts and the test body
// ---------------------------------------------------------------------------

/// What a host observed.
#[derive(Clone, Debug)]
enum What {
    /// An event of the host's node.
    Event(EventKind),
    /// Something the host's driver did (join attempt, broadcast result).
    Note(String),
}

/// One trace record.
#[derive(Clone, Debug)]
struct Rec {
    /// Simulated time since the start of the simulation.
    at: Duration,
    host: &'static str,
    what: What,
}

/// A host's view of its node, for the test body.
#[derive(Clone, Debug, Default)]
struct View {
    peer_addr: Option<SocketAddr>,
    members: Vec<SocketAddr>,
    /// Whether the node is currently a member (joiner) / running (authenticator).
    up: bool,
}

#[derive(Default)]
struct State {
    trace: Vec<Rec>,
    views: BTreeMap<&'static str, View>,
}

type Shared = Rc<RefCell<State>>;

/// Converts a host's `tokio::time::Instant`s into simulated time.
#[derive(Clone, Copy)]
struct SimClock {
    t0: Instant,
    s0: Duration,
}

impl SimClock {
    /// Must be called inside a host.
    fn here() -> Self {
        SimClock { t0: Instant::now(), s0: turmoil::sim_elapsed().expect("called outside a simulated host") }
    }
    fn at(&self, i: Instant) -> Duration {
        self.s0 + i.saturating_duration_since(self.t0)
    }
    fn now(&self) -> Duration {
        self.at(Instant::now())
    }
}

impl State {
    fn record(&mut self, clock: SimClock, host: &'static str, ev: Event) {
        self.trace.push(Rec { at: clock.at(ev.at), host, what: What::Event(ev.kind) });
    }
    fn note(&mut self, clock: SimClock, host: &'static str, text: String) {
        self.trace.push(Rec { at: clock.now(), host, what: What::Note(text) });
    }
    fn view(&self, host: &str) -> View {
        self.views.get(host).cloned().unwrap_or_default()
    }
    /// Events of `host`, with their simulated times.
    fn events_of<'a>(&'a self, host: &'a str) -> impl Iterator<Item = (Duration, &'a EventKind)> + 'a {
        self.trace.iter().filter(move |r| r.host == host).filter_map(|r| match &r.what {
            What::Event(k) => Some((r.at, k)),
            What::Note(_) => None,
        })
    }
    fn notes_of<'a>(&'a self, host: &'a str) -> impl Iterator<Item = (Duration, &'a str)> + 'a {
        self.trace.iter().filter(move |r| r.host == host).filter_map(|r| match &r.what {
            What::Note(n) => Some((r.at, n.as_str())),
            What::Event(_) => None,
        })
    }
    /// The trace as text, one line per record: what the determinism test compares.
    fn trace_lines(&self) -> Vec<String> {
        self.trace
            .iter()
            .map(|r| {
                let what = match &r.what {
                    What::Event(k) => format!("{k:?}"),
                    What::Note(n) => format!("note: {n}"),
                };
                format!("{:>9}us {:<4} {what}", r.at.as_micros(), r.host)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Host software
// ---------------------------------------------------------------------------

fn auth_target() -> SocketAddr {
    SocketAddr::new(turmoil::lookup("auth"), DEFAULT_AUTH_PORT)
}

/// The authenticator host: runs the authenticator and records its events.
fn add_authenticator(sim: &mut Sim<'_>, shared: &Shared) {
    let shared = shared.clone();
    sim.host("auth", move || {
        let shared = shared.clone();
        async move {
            let ip = turmoil::lookup("auth");
            let clock = SimClock::here();
            let cfg = AuthenticatorConfig::new(PASSWORD)
                .listen(SocketAddr::new(ip, DEFAULT_AUTH_PORT))
                .heartbeat_interval(INTERVAL)
                .heartbeat_timeout(TIMEOUT)
                .handshake_timeout(Duration::from_secs(2))
                .seed(0x5eed);
            let mut auth = Authenticator::start(TurmoilNet::new(ip), cfg).await?;
            let mut events = auth.events().expect("event stream");
            let publish = |auth: &Authenticator<TurmoilNet>, up: bool| {
                let view = View { peer_addr: Some(auth.peer_addr()), members: auth.members().members.to_vec(), up };
                shared.borrow_mut().views.insert("auth", view);
            };
            publish(&auth, true);
            while let Some(ev) = events.recv().await {
                let left = matches!(ev.kind, EventKind::Left);
                shared.borrow_mut().record(clock, "auth", ev);
                publish(&auth, !left);
                if left {
                    break;
                }
            }
            Ok(())
        }
    });
}

/// Commands from the test body to a joiner host.
#[derive(Debug)]
enum Cmd {
    /// Leave gracefully.
    Leave,
    /// Broadcast this text to every other member.
    Broadcast(String),
    /// Join again (after having left or lost the authenticator).
    Join,
}

/// A joiner host: joins at start, then follows commands. Returns the
/// channel that commands it.
fn add_joiner(sim: &mut Sim<'_>, shared: &Shared, name: &'static str) -> mpsc::UnboundedSender<Cmd> {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = RefCell::new(Some(rx));
    let shared = shared.clone();
    sim.host(name, move || {
        let cmds = rx.borrow_mut().take().expect("joiner hosts are never restarted in these tests");
        run_joiner(shared.clone(), name, cmds)
    });
    tx
}

fn joiner_config(name: &str) -> JoinerConfig {
    JoinerConfig::new(PASSWORD)
        .alias(name)
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(JOINER_TIMEOUT)
        .handshake_timeout(Duration::from_secs(2))
        .io_timeout(Duration::from_millis(500))
}

async fn run_joiner(shared: Shared, name: &'static str, mut cmds: mpsc::UnboundedReceiver<Cmd>) -> turmoil::Result {
    let net = TurmoilNet::new(turmoil::lookup(name));
    let target = auth_target();
    let clock = SimClock::here();
    let note = |text: String| shared.borrow_mut().note(clock, name, text);
    let mut attempt = 0u32;
    loop {
        // One join attempt; on failure, wait for the next `Join` command
        // (the test asserts on the notes: a failed join fails the test).
        attempt += 1;
        match Joiner::join(net, target, joiner_config(name)).await {
            Err(e) => note(format!("join attempt {attempt} failed: {e}")),
            Ok(mut joiner) => {
                note(format!("join attempt {attempt} succeeded as {}", joiner.peer_addr()));
                let mut events = joiner.events().expect("event stream");
                let publish = |joiner: &Joiner<TurmoilNet>, up: bool| {
                    let view =
                        View { peer_addr: Some(joiner.peer_addr()), members: joiner.members().members.to_vec(), up };
                    shared.borrow_mut().views.insert(name, view);
                };
                publish(&joiner, true);
                loop {
                    tokio::select! {
                        biased;
                        cmd = cmds.recv() => match cmd {
                            None => return Ok(()),
                            Some(Cmd::Leave) => {
                                note("leave".into());
                                joiner.leave().await;
                                while let Some(ev) = events.try_recv() {
                                    shared.borrow_mut().record(clock, name, ev);
                                }
                                break;
                            }
                            Some(Cmd::Broadcast(text)) => {
                                let report = joiner.broadcast(&text).await;
                                note(format!(
                                    "broadcast {text:?}: sent {} delivered {} failed {}",
                                    report.sent, report.delivered, report.failed
                                ));
                            }
                            Some(Cmd::Join) => note("join ignored: already a member".into()),
                        },
                        ev = events.recv() => {
                            let ev = ev.expect("a joiner's event stream ends only when it is dropped");
                            let left = matches!(ev.kind, EventKind::Left);
                            shared.borrow_mut().record(clock, name, ev);
                            publish(&joiner, !left);
                            if left {
                                break;
                            }
                        }
                    }
                }
                publish(&joiner, false);
                assert_eq!(joiner.task_count(), 0, "{name}: a task outlived the joiner");
            }
        }
        loop {
            match cmds.recv().await {
                None => return Ok(()),
                Some(Cmd::Join) => break,
                Some(other) => note(format!("{other:?} ignored: not a member")),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Driving the simulation
// ---------------------------------------------------------------------------

fn build_sim<'a>(seed: u64) -> Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .tick_duration(TICK)
        .min_message_latency(MIN_LATENCY)
        .max_message_latency(MAX_LATENCY)
        .simulation_duration(Duration::from_secs(120))
        .build()
}

/// Steps the simulation until `cond` holds or `limit` of simulated time has
/// passed; returns whether it holds.
fn run_until(sim: &mut Sim<'_>, shared: &Shared, limit: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
    let deadline = sim.elapsed() + limit;
    loop {
        if cond(&shared.borrow()) {
            return true;
        }
        if sim.elapsed() >= deadline {
            return false;
        }
        sim.step().expect("simulation step");
    }
}

/// Steps the simulation for `d` of simulated time.
fn run_for(sim: &mut Sim<'_>, d: Duration) {
    let until = sim.elapsed() + d;
    while sim.elapsed() < until {
        sim.step().expect("simulation step");
    }
}

/// Whether every named joiner is up and holds exactly the authenticator's
/// list, which has the authenticator and exactly those joiners.
fn converged(st: &State, joiners: &[&str]) -> bool {
    let auth = st.view("auth");
    let Some(auth_peer) = auth.peer_addr else { return false };
    let mut expected: Vec<SocketAddr> = vec![auth_peer];
    for j in joiners {
        match st.view(j) {
            View { peer_addr: Some(p), up: true, .. } => expected.push(p),
            _ => return false,
        }
    }
    let mut held = auth.members.clone();
    if held.first() != expected.first() {
        return false;
    }
    held[1..].sort();
    expected[1..].sort();
    held == expected && joiners.iter().all(|j| st.view(j).members == auth.members)
}

fn dump(shared: &Shared) -> String {
    shared.borrow().trace_lines().join("\n")
}

/// A setup of an authenticator and `joiners`, all joined and converged.
struct Setup<'a> {
    sim: Sim<'a>,
    shared: Shared,
    cmds: BTreeMap<&'static str, mpsc::UnboundedSender<Cmd>>,
}

fn setup<'a>(seed: u64, joiners: &[&'static str]) -> Setup<'a> {
    let mut sim = build_sim(seed);
    let shared: Shared = Rc::default();
    add_authenticator(&mut sim, &shared);
    let cmds = joiners.iter().map(|&j| (j, add_joiner(&mut sim, &shared, j))).collect();
    let mut s = Setup { sim, shared, cmds };
    let ok = run_until(&mut s.sim, &s.shared, Duration::from_secs(3), |st| converged(st, joiners));
    assert!(ok, "joiners did not all join and converge in 3 s of simulated time:\n{}", dump(&s.shared));
    let st = s.shared.borrow();
    for j in joiners {
        let notes: Vec<&str> = st.notes_of(j).map(|(_, n)| n).collect();
        assert!(
            notes.len() == 1 && notes[0].starts_with("join attempt 1 succeeded"),
            "{j}: expected one successful join, got {notes:?}"
        );
    }
    drop(st);
    s
}

impl Setup<'_> {
    fn send(&self, host: &str, cmd: Cmd) {
        self.cmds[host].send(cmd).expect("joiner host is running");
    }
    fn peer(&self, host: &str) -> SocketAddr {
        self.shared.borrow().view(host).peer_addr.expect("host has a peer address")
    }
}

// ---------------------------------------------------------------------------
// Scenario 1: join, heartbeats, broadcast, graceful leave
// ---------------------------------------------------------------------------

/// Runs scenario 1 with assertions; returns its trace.
fn join_heartbeat_leave(seed: u64) -> Vec<String> {
    let mut s = setup(seed, &["j1", "j2", "j3"]);
    let joined_at = s.sim.elapsed();
    let (auth, j1, j2, j3) = (s.peer("auth"), s.peer("j1"), s.peer("j2"), s.peer("j3"));
    // Members are listed in admission order (concurrent joins: any order).
    let full = s.shared.borrow().view("auth").members;
    let without_j3: Vec<SocketAddr> = full.iter().copied().filter(|m| *m != j3).collect();
    {
        let st = s.shared.borrow();
        assert_eq!(st.view("auth").members.len(), 4);
        assert_eq!(st.view("auth").members[0], auth, "the authenticator is first in its own list");
        // The list holds each host's IP: TurmoilNet advertises real host addresses.
        for (name, peer) in [("j1", j1), ("j2", j2), ("j3", j3)] {
            assert_eq!(peer.ip(), s.sim.lookup(name));
        }
        let joined = st.events_of("auth").filter(|(_, k)| matches!(k, EventKind::MemberJoined { .. })).count();
        assert_eq!(joined, 3);
    }

    // Several heartbeat intervals pass: every joiner gets its heartbeats and
    // nobody is removed or even late.
    let window = INTERVAL * 5;
    run_for(&mut s.sim, window);
    {
        let st = s.shared.borrow();
        for j in ["j1", "j2", "j3"] {
            let beats = st
                .events_of(j)
                .filter(|(at, k)| *at > joined_at && matches!(k, EventKind::HeartbeatReceived { .. }))
                .count();
            assert!(beats >= 4, "{j}: {beats} heartbeats in {window:?}\n{}", dump(&s.shared));
        }
        for host in ["auth", "j1", "j2", "j3"] {
            let bad: Vec<_> = st
                .events_of(host)
                .filter(|(_, k)| {
                    matches!(
                        k,
                        EventKind::MemberRemoved { .. }
                            | EventKind::HeartbeatMissed { .. }
                            | EventKind::AuthenticatorLost { .. }
                            | EventKind::Lagged { .. }
                    )
                })
                .collect();
            assert!(bad.is_empty(), "{host}: {bad:?}");
        }
        assert!(converged(&st, &["j1", "j2", "j3"]));
    }

    // A broadcast from j1 reaches j2, j3 and the authenticator.
    s.send("j1", Cmd::Broadcast("hello from j1".into()));
    let got = |st: &State, host: &str| {
        st.events_of(host).any(|(_, k)| {
            matches!(k, EventKind::MessageReceived { from, alias, broadcast: true, data, .. }
                if *from == j1 && alias == "j1" && data == "hello from j1")
        })
    };
    let ok = run_until(&mut s.sim, &s.shared, Duration::from_secs(2), |st| {
        got(st, "j2") && got(st, "j3") && got(st, "auth") && st.notes_of("j1").any(|(_, n)| n.starts_with("broadcast"))
    });
    assert!(ok, "broadcast not delivered:\n{}", dump(&s.shared));
    {
        let st = s.shared.borrow();
        let report = st.notes_of("j1").find(|(_, n)| n.starts_with("broadcast")).unwrap().1.to_owned();
        assert!(report.ends_with("sent 3 delivered 3 failed 0"), "{report}");
        // The sender does not receive its own broadcast.
        assert!(!got(&st, "j1"));
    }

    // j3 leaves gracefully: the authenticator removes it (Closed) and the
    // others receive the shrunk list.
    let leave_at = s.sim.elapsed();
    s.send("j3", Cmd::Leave);
    let ok = run_until(&mut s.sim, &s.shared, Duration::from_secs(2), |st| {
        converged(st, &["j1", "j2"]) && !st.view("j3").up
    });
    assert!(ok, "j3's leave did not converge:\n{}", dump(&s.shared));
    {
        let st = s.shared.borrow();
        let removed: Vec<_> = st
            .events_of("auth")
            .filter_map(|(at, k)| match k {
                EventKind::MemberRemoved { member, reason } => Some((at, *member, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert_eq!((removed[0].1, removed[0].2.clone()), (j3, RemovalReason::Closed));
        assert!(removed[0].0 - leave_at < INTERVAL, "graceful leave noticed at once, not by timeout");
        assert_eq!(st.view("auth").members, without_j3);
        for j in ["j1", "j2"] {
            let last = st.events_of(j).filter_map(|(_, k)| match k {
                EventKind::MemberListChanged { list, .. } => Some(list.members.to_vec()),
                _ => None,
            });
            assert_eq!(last.last(), Some(without_j3.clone()), "{j}");
        }
        assert!(st.events_of("j3").any(|(_, k)| matches!(k, EventKind::Left)));
        assert!(!st.events_of("j3").any(|(_, k)| matches!(k, EventKind::AuthenticatorLost { .. })));
    }

    // Heartbeats keep flowing for the remaining members, nobody else removed.
    let after = s.sim.elapsed();
    run_for(&mut s.sim, INTERVAL * 3);
    let st = s.shared.borrow();
    for j in ["j1", "j2"] {
        assert!(st.events_of(j).any(|(at, k)| at > after && matches!(k, EventKind::HeartbeatReceived { .. })));
    }
    assert_eq!(
        st.events_of("auth").filter(|(_, k)| matches!(k, EventKind::MemberRemoved { .. })).count(),
        1,
        "only j3 was removed"
    );
    st.trace_lines()
}

#[test]
fn join_heartbeat_broadcast_and_leave() {
    let wall = std::time::Instant::now();
    let trace = join_heartbeat_leave(1);
    if std::env::var_os("PYILE_TRACE").is_some() {
        eprintln!("{}", trace.join("\n"));
    }
    eprintln!("join/heartbeat/leave: {} trace records, wall {:?}", trace.len(), wall.elapsed());
}

// ---------------------------------------------------------------------------
// Scenario 2: partition, detection, rejoin after repair
// ---------------------------------------------------------------------------

/// What one partition run measured, in simulated time.
#[derive(Debug)]
struct PartitionRun {
    /// Partition → the authenticator removes j1.
    detection: Duration,
    /// Removal → j2 and j3 both hold the list without j1.
    convergence: Duration,
    /// Partition → j1 reports AuthenticatorLost.
    joiner_noticed: Duration,
    /// Repair → j1 rejoined and everyone holds the same list.
    rejoin: Duration,
}

/// Runs the partition scenario with assertions: partition j1 from the
/// authenticator `settle` after everyone converged.
fn partition_and_rejoin(seed: u64, settle: Duration) -> PartitionRun {
    let mut s = setup(seed, &["j1", "j2", "j3"]);
    let j1_old = s.peer("j1");
    let full = s.shared.borrow().view("auth").members;
    let without_j1: Vec<SocketAddr> = full.iter().copied().filter(|m| *m != j1_old).collect();
    // Let heartbeats settle, and partition at some phase of them.
    run_for(&mut s.sim, settle);

    let partitioned_at = s.sim.elapsed();
    s.sim.partition("auth", "j1");

    // The authenticator removes j1 for heartbeat timeout; j2 and j3 get the
    // list without it.
    let ok = run_until(&mut s.sim, &s.shared, TIMEOUT + INTERVAL * 3, |st| {
        let auth_view = st.view("auth");
        auth_view.members == without_j1 && ["j2", "j3"].iter().all(|j| st.view(j).members == auth_view.members)
    });
    assert!(ok, "j1 not removed, or the others did not converge:\n{}", dump(&s.shared));
    let (removed_at, converged_at) = {
        let st = s.shared.borrow();
        let removals: Vec<_> = st
            .events_of("auth")
            .filter_map(|(at, k)| match k {
                EventKind::MemberRemoved { member, reason } => Some((at, *member, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(removals.len(), 1, "{removals:?}");
        let (removed_at, member, reason) = removals[0].clone();
        assert_eq!((member, reason), (j1_old, RemovalReason::HeartbeatTimeout));
        // The list without j1, as each of the others received it.
        let got_at = |j: &str| {
            st.events_of(j)
                .find_map(|(at, k)| match k {
                    // (An earlier list may have had the same members, before j1 joined.)
                    EventKind::MemberListChanged { list, .. } if at >= removed_at && *list.members == *without_j1 => {
                        Some(at)
                    }
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{j} never received the list without j1"))
        };
        let converged_at = got_at("j2").max(got_at("j3"));
        (removed_at, converged_at)
    };
    let detection = removed_at - partitioned_at;
    assert!(detection <= TIMEOUT + INTERVAL, "detection took {detection:?}");
    // Not earlier than the timeout allows: the last answer came at most one
    // interval (plus a round trip) before the partition.
    assert!(detection > TIMEOUT - INTERVAL - 2 * MAX_LATENCY, "removed too early: {detection:?}");

    // j1, cut off, notices the loss on its own side (no heartbeats) and leaves.
    let ok = run_until(&mut s.sim, &s.shared, JOINER_TIMEOUT + INTERVAL * 2, |st| !st.view("j1").up);
    assert!(ok, "j1 did not notice the loss:\n{}", dump(&s.shared));
    let lost_at = {
        let st = s.shared.borrow();
        let lost: Vec<_> = st
            .events_of("j1")
            .filter_map(|(at, k)| match k {
                EventKind::AuthenticatorLost { reason } => Some((at, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].1, LostReason::Timeout);
        assert!(st.events_of("j1").any(|(_, k)| matches!(k, EventKind::Left)));
        lost[0].0
    };
    assert!(lost_at - partitioned_at <= JOINER_TIMEOUT + INTERVAL);

    // Repair; a fresh join from j1 succeeds and everyone converges again.
    s.sim.repair("auth", "j1");
    let repaired_at = s.sim.elapsed();
    s.send("j1", Cmd::Join);
    let ok = run_until(&mut s.sim, &s.shared, Duration::from_secs(3), |st| converged(st, &["j1", "j2", "j3"]));
    assert!(ok, "j1 did not rejoin after repair:\n{}", dump(&s.shared));
    let j1_new = s.peer("j1");
    let rejoin = s.sim.elapsed() - repaired_at;
    {
        let st = s.shared.borrow();
        let notes: Vec<&str> = st.notes_of("j1").map(|(_, n)| n).collect();
        assert!(notes.len() == 2 && notes[1].starts_with("join attempt 2 succeeded"), "{notes:?}");
        assert_eq!(st.view("auth").members.len(), 4);
        assert!(st.view("auth").members.contains(&j1_new));
        assert!(!st.view("auth").members.contains(&j1_old) || j1_new == j1_old);
    }

    // The new membership is healthy: heartbeats reach j1 again and nobody
    // else is removed.
    let after = s.sim.elapsed();
    run_for(&mut s.sim, INTERVAL * 4);
    let st = s.shared.borrow();
    let beats =
        st.events_of("j1").filter(|(at, k)| *at > after && matches!(k, EventKind::HeartbeatReceived { .. })).count();
    assert!(beats >= 3, "j1 got {beats} heartbeats after rejoining");
    assert_eq!(st.events_of("auth").filter(|(_, k)| matches!(k, EventKind::MemberRemoved { .. })).count(), 1);
    assert!(converged(&st, &["j1", "j2", "j3"]));
    PartitionRun { detection, convergence: converged_at - removed_at, joiner_noticed: lost_at - partitioned_at, rejoin }
}

#[test]
fn partitioned_member_is_removed_and_rejoins_after_repair() {
    let wall = std::time::Instant::now();
    let run = partition_and_rejoin(2, INTERVAL * 3 + Duration::from_millis(37));
    eprintln!("partition (seed 2): {run:?}, wall {:?}", wall.elapsed());
}

/// The detection bound holds whatever the phase of the partition relative
/// to the heartbeats: sweep seeds (link latencies, heartbeat phase) and
/// partition times.
#[test]
fn partition_detection_bound_holds_across_seeds_and_phases() {
    let wall = std::time::Instant::now();
    let runs: Vec<PartitionRun> =
        (10..26u64).map(|seed| partition_and_rejoin(seed, Duration::from_millis(400 + seed * 13 % 200))).collect();
    let stat = |f: fn(&PartitionRun) -> Duration| {
        let v: Vec<Duration> = runs.iter().map(f).collect();
        (v.iter().min().copied().unwrap(), v.iter().max().copied().unwrap())
    };
    eprintln!(
        "partition sweep, {} runs (min, max): detection {:?} (bound {:?}), convergence {:?}, joiner noticed {:?}, rejoin {:?}; wall {:?}",
        runs.len(),
        stat(|r| r.detection),
        TIMEOUT + INTERVAL,
        stat(|r| r.convergence),
        stat(|r| r.joiner_noticed),
        stat(|r| r.rejoin),
        wall.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Scenario 3: determinism
// ---------------------------------------------------------------------------

#[test]
fn same_seed_same_trace() {
    let wall = std::time::Instant::now();
    // Several repetitions, not just two: a nondeterminism that comes from
    // an unseeded RNG (e.g. tokio's, behind `watch` wake-ups) may agree by
    // chance in any one pair of runs.
    const RUNS: usize = 10;
    let a = join_heartbeat_leave(42);
    for run in 2..=RUNS {
        let b = join_heartbeat_leave(42);
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            panic!(
                "run {run} differs from run 1 at record {i} of {}/{}:\n  run 1:    {:?}\n  run {run}: {:?}",
                a.len(),
                b.len(),
                a.get(i),
                b.get(i)
            );
        }
    }
    // The trace is fine-grained enough to tell runs apart: another seed
    // (other link latencies) gives another trace.
    let c = join_heartbeat_leave(43);
    assert_ne!(a, c, "the trace does not depend on the seed: it records too little");
    eprintln!(
        "determinism: {RUNS} runs, {} identical records, wall {:?} for {} runs",
        a.len(),
        wall.elapsed(),
        RUNS + 1
    );
}

// ---------------------------------------------------------------------------
// Scenario 4: a dead distribution stream under a live auth connection
// ---------------------------------------------------------------------------

/// What one dead-distribution run measured, in simulated time.
#[derive(Debug)]
struct DeadDistRun {
    /// How long the auth→j1 cut that killed j1's distribution stream lasted.
    cut: Duration,
    /// Publication of the list j1 never got → the authenticator removes j1.
    detection: Duration,
    /// Removal → j1 reports the authenticator lost.
    joiner_noticed: Duration,
    /// Rejoin command → everyone converged again.
    rejoin: Duration,
}

/// Kills j1's distribution stream and nothing else, the way a lost segment
/// does in turmoil (which never retransmits): the authenticator→j1 direction
/// is cut (`partition_oneway`, which also drops what is in flight that way)
/// for the few milliseconds in which the authenticator writes one member list
/// — the one without j2, which leaves — and no heartbeat. The list is lost,
/// so j1's distribution stream waits forever for that segment, while its auth
/// connection keeps heartbeating both ways. The authenticator must notice
/// from j1's heartbeat answers (they keep reporting the older list), remove
/// it as `DistributionLost` within the distribution timeout of that list's
/// publication, and close its connections; j1 sees the close and can rejoin.
fn dead_distribution_stream(seed: u64, settle: Duration) -> DeadDistRun {
    let mut s = setup(seed, &["j1", "j2", "j3"]);
    let (j1_old, j2) = (s.peer("j1"), s.peer("j2"));
    let full = s.shared.borrow().view("auth").members;
    let without_j2: Vec<SocketAddr> = full.iter().copied().filter(|m| *m != j2).collect();
    run_for(&mut s.sim, settle);

    // Right after j1 received a heartbeat (and its answer is delivered),
    // nothing travels from the authenticator to j1 until the next heartbeat,
    // about an interval later.
    let beats =
        |st: &State| st.events_of("j1").filter(|(_, k)| matches!(k, EventKind::HeartbeatReceived { .. })).count();
    let before = beats(&s.shared.borrow());
    assert!(
        run_until(&mut s.sim, &s.shared, INTERVAL * 2, |st| beats(st) > before),
        "no heartbeat:\n{}",
        dump(&s.shared)
    );
    run_for(&mut s.sim, MAX_LATENCY + TICK * 2);
    let cut_at = s.sim.elapsed();
    let beats_at_cut = beats(&s.shared.borrow());
    s.sim.partition_oneway("auth", "j1");
    s.send("j2", Cmd::Leave);
    let published = |st: &State| {
        st.events_of("auth").find_map(|(at, k)| match k {
            EventKind::MemberListChanged { list, .. } if at >= cut_at && *list.members == *without_j2 => Some(at),
            _ => None,
        })
    };
    let ok = run_until(&mut s.sim, &s.shared, INTERVAL / 2, |st| published(st).is_some());
    assert!(ok, "j2's leave was not published:\n{}", dump(&s.shared));
    // A few ticks for the distribution writers to write that list.
    run_for(&mut s.sim, TICK * 3);
    s.sim.repair_oneway("auth", "j1");
    let cut = s.sim.elapsed() - cut_at;
    let published_at = published(&s.shared.borrow()).unwrap();
    {
        let st = s.shared.borrow();
        assert_eq!(beats(&st), beats_at_cut, "a heartbeat crossed the cut: the auth stream would be dead too");
        assert!(cut < INTERVAL / 2, "cut {cut:?}");
    }

    // j3 got the list; j1 did not, and keeps heartbeating with the old one.
    let ok = run_until(&mut s.sim, &s.shared, INTERVAL, |st| st.view("j3").members == without_j2);
    assert!(ok, "j3 did not get the list without j2:\n{}", dump(&s.shared));
    let ok = run_until(&mut s.sim, &s.shared, TIMEOUT * 2 + INTERVAL * 4, |st| {
        st.events_of("auth").any(|(_, k)| matches!(k, EventKind::MemberRemoved { member, .. } if *member == j1_old))
    });
    assert!(ok, "j1, whose distribution stream is dead, was never removed:\n{}", dump(&s.shared));
    let removed_at = {
        let st = s.shared.borrow();
        let removals: Vec<_> = st
            .events_of("auth")
            .filter_map(|(at, k)| match k {
                EventKind::MemberRemoved { member, reason } if at >= cut_at => Some((at, *member, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(removals.len(), 2, "{removals:?}");
        assert_eq!((removals[0].1, removals[0].2.clone()), (j2, RemovalReason::Closed));
        let (removed_at, member, reason) = removals[1].clone();
        assert_eq!((member, reason), (j1_old, RemovalReason::DistributionLost), "{}", dump(&s.shared));
        // Its auth connection was alive all along: heartbeats reached it
        // until the removal, and the authenticator never missed an answer.
        let late_beats = st
            .events_of("j1")
            .filter(|(at, k)| *at > published_at + TIMEOUT && matches!(k, EventKind::HeartbeatReceived { .. }))
            .count();
        assert!(late_beats >= 1, "j1 got no heartbeat after the cut: not a live auth connection");
        assert!(
            !st.events_of("auth").any(|(_, k)| matches!(k, EventKind::HeartbeatMissed { peer, .. } if *peer == j1_old))
        );
        // Until then, j1 held the stale list.
        assert!(!st.events_of("j1").any(|(at, k)| at >= cut_at && matches!(k, EventKind::MemberListChanged { .. })));
        removed_at
    };
    let detection = removed_at - published_at;
    // Within the bound (the distribution timeout, checked once per heartbeat
    // interval), and not before it.
    let bound = AuthenticatorConfig::new(PASSWORD)
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(TIMEOUT)
        .effective_distribution_timeout();
    assert!(detection > bound, "removed too early: {detection:?}");
    assert!(detection <= bound + INTERVAL + TICK * 2, "detection took {detection:?}");

    // j1 sees its auth connection close and leaves.
    let ok = run_until(&mut s.sim, &s.shared, INTERVAL, |st| !st.view("j1").up);
    assert!(ok, "j1 did not notice its removal:\n{}", dump(&s.shared));
    let lost_at = {
        let st = s.shared.borrow();
        let lost: Vec<_> = st
            .events_of("j1")
            .filter_map(|(at, k)| match k {
                EventKind::AuthenticatorLost { reason } => Some((at, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(lost[0].1, LostReason::Closed);
        lost[0].0
    };

    // It rejoins and everyone converges; the new membership stays healthy.
    let rejoin_at = s.sim.elapsed();
    s.send("j1", Cmd::Join);
    let ok = run_until(&mut s.sim, &s.shared, Duration::from_secs(3), |st| converged(st, &["j1", "j3"]));
    assert!(ok, "j1 did not rejoin:\n{}", dump(&s.shared));
    let rejoin = s.sim.elapsed() - rejoin_at;
    run_for(&mut s.sim, TIMEOUT + INTERVAL * 3);
    let st = s.shared.borrow();
    let notes: Vec<&str> = st.notes_of("j1").map(|(_, n)| n).collect();
    assert!(notes.len() == 2 && notes[1].starts_with("join attempt 2 succeeded"), "{notes:?}");
    assert_eq!(st.events_of("auth").filter(|(_, k)| matches!(k, EventKind::MemberRemoved { .. })).count(), 2);
    assert!(converged(&st, &["j1", "j3"]));
    DeadDistRun { cut, detection, joiner_noticed: lost_at - removed_at, rejoin }
}

#[test]
fn member_with_dead_distribution_stream_is_removed_and_rejoins() {
    let wall = std::time::Instant::now();
    let runs: Vec<DeadDistRun> = (1..=6u64)
        .map(|seed| dead_distribution_stream(seed, INTERVAL * 2 + Duration::from_millis(seed * 29)))
        .collect();
    let stat = |f: fn(&DeadDistRun) -> Duration| {
        let v: Vec<Duration> = runs.iter().map(f).collect();
        (v.iter().min().copied().unwrap(), v.iter().max().copied().unwrap())
    };
    eprintln!(
        "dead distribution stream, {} runs (min, max): cut {:?}, detection {:?} (bound {:?} + one interval of checks), joiner noticed {:?}, rejoin {:?}; wall {:?}",
        runs.len(),
        stat(|r| r.cut),
        stat(|r| r.detection),
        TIMEOUT + INTERVAL,
        stat(|r| r.joiner_noticed),
        stat(|r| r.rejoin),
        wall.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Scenario 5: reference (v1) peers see plain heartbeats, both ways
// ---------------------------------------------------------------------------

/// A raw peer's record of the JSON values it received, in order.
type Values = Rc<RefCell<Vec<serde_json::Value>>>;

async fn read_value(r: &mut pyile::wire::MessageReader<turmoil::net::TcpStream>) -> serde_json::Value {
    r.next_value().await.expect("a JSON value")
}

async fn write_value(r: &mut pyile::wire::MessageReader<turmoil::net::TcpStream>, v: serde_json::Value) {
    use tokio::io::AsyncWriteExt;
    r.get_mut().write_all(&serde_json::to_vec(&v).unwrap()).await.expect("write");
}

/// A raw authenticator on host "auth" that speaks exactly what the reference
/// writes (`announce`: adds our extension announcement to `banned`, as a
/// protocol-2 authenticator does), serves one joiner, sends it list version 7
/// on the distribution connection, and records every heartbeat answer.
fn add_raw_authenticator(sim: &mut Sim<'_>, answers: &Values, announce: bool) {
    let answers = answers.clone();
    sim.host("auth", move || {
        let answers = answers.clone();
        async move {
            use serde_json::json;
            let auth = turmoil::net::TcpListener::bind(("0.0.0.0", DEFAULT_AUTH_PORT)).await?;
            let dist = turmoil::net::TcpListener::bind(("0.0.0.0", 50_000)).await?;
            let me = turmoil::lookup("auth");
            let (s, _) = auth.accept().await?;
            let mut r = pyile::wire::MessageReader::new(s);
            let banned = if announce { json!({"banned": false, "pyile": 2}) } else { json!({"banned": false}) };
            write_value(&mut r, banned).await;
            let shadow = read_value(&mut r).await;
            assert_eq!(shadow["shadow"], PASSWORD);
            write_value(&mut r, json!({"authenticated": true})).await;
            let peer = read_value(&mut r).await["peer_address"].clone();
            write_value(&mut r, json!({"distro": [[me.to_string(), 49_000], peer.clone()]})).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            write_value(&mut r, json!({"dist_addr": [me.to_string(), 50_000]})).await;
            let (d, _) = dist.accept().await?;
            let mut d = pyile::wire::MessageReader::new(d);
            write_value(&mut d, json!({"distro": [[me.to_string(), 49_000], peer], "version": 7})).await;
            for _ in 0..6 {
                write_value(&mut r, json!({"<3": true})).await;
                let answer = read_value(&mut r).await;
                answers.borrow_mut().push(answer);
                tokio::time::sleep(INTERVAL).await;
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
}

/// Our joiner's heartbeat answers carry its list version only to an
/// authenticator that announced protocol 2: a reference authenticator gets
/// exactly `{"<3": true}`.
#[test]
fn joiner_reports_its_list_version_only_to_a_protocol_2_authenticator() {
    for announce in [false, true] {
        let mut sim = build_sim(7);
        let shared: Shared = Rc::default();
        let answers: Values = Rc::default();
        add_raw_authenticator(&mut sim, &answers, announce);
        let _j1 = add_joiner(&mut sim, &shared, "j1");
        let ok = run_until(&mut sim, &shared, Duration::from_secs(5), |_| answers.borrow().len() == 6);
        assert!(ok, "announce {announce}: {} answers\n{}", answers.borrow().len(), dump(&shared));
        let got: Vec<String> = answers.borrow().iter().map(|v| v.to_string()).collect();
        if announce {
            // The first answer may precede the versioned list; after it, version 7.
            assert!(
                got.iter().all(|a| a == r#"{"<3":true,"version":0}"# || a == r#"{"<3":true,"version":7}"#),
                "{got:?}"
            );
            assert_eq!(got.last().unwrap(), r#"{"<3":true,"version":7}"#);
        } else {
            assert!(got.iter().all(|a| a == r#"{"<3":true}"#), "{got:?}");
        }
    }
}

/// A raw joiner on host "ref" that speaks exactly what the reference writes
/// (`announce`: announces protocol 2 in `shadow`, and then answers with list
/// versions as our joiner does), and records every heartbeat it receives.
fn add_raw_joiner(sim: &mut Sim<'_>, beats: &Values, announce: bool) {
    let beats = beats.clone();
    sim.host("ref", move || {
        let beats = beats.clone();
        async move {
            use serde_json::json;
            let me = turmoil::lookup("ref");
            let _peer = turmoil::net::TcpListener::bind(("0.0.0.0", 49_500)).await?;
            let s = turmoil::net::TcpStream::connect(auth_target()).await?;
            let mut r = pyile::wire::MessageReader::new(s);
            assert_eq!(read_value(&mut r).await["banned"], false);
            let shadow = if announce { json!({"shadow": PASSWORD, "pyile": 2}) } else { json!({"shadow": PASSWORD}) };
            write_value(&mut r, shadow).await;
            assert_eq!(read_value(&mut r).await["authenticated"], true);
            write_value(&mut r, json!({"peer_address": [me.to_string(), 49_500]})).await;
            assert!(read_value(&mut r).await.get("distro").is_some());
            let dist_addr = read_value(&mut r).await;
            let a = &dist_addr["dist_addr"];
            let dist_to = SocketAddr::new(a[0].as_str().unwrap().parse().unwrap(), a[1].as_u64().unwrap() as u16);
            let mut d = pyile::wire::MessageReader::new(turmoil::net::TcpStream::connect(dist_to).await?);
            if announce {
                write_value(&mut d, json!({"dist_token": dist_addr["dist_token"]})).await;
            }
            let mut held = 0;
            loop {
                tokio::select! {
                    v = r.next_value() => {
                        let v = v.expect("heartbeat");
                        beats.borrow_mut().push(v);
                        let answer = if announce { json!({"<3": true, "version": held}) } else { json!({"<3": true}) };
                        write_value(&mut r, answer).await;
                    }
                    v = d.next_value() => {
                        if let Some(n) = v.expect("list").get("version").and_then(|n| n.as_u64()) {
                            held = n;
                        }
                    }
                }
            }
        }
    });
}

/// Our authenticator's heartbeats are exactly the reference's `{"<3": true}`,
/// to a reference joiner and to a protocol-2 one alike (only joiners report
/// versions), and both kinds of answer keep a member in.
#[test]
fn authenticator_heartbeats_are_plain_and_both_answers_are_accepted() {
    for announce in [false, true] {
        let mut sim = build_sim(8);
        let shared: Shared = Rc::default();
        let beats: Values = Rc::default();
        add_authenticator(&mut sim, &shared);
        add_raw_joiner(&mut sim, &beats, announce);
        let window = TIMEOUT * 4;
        run_for(&mut sim, window);
        let got: Vec<String> = beats.borrow().iter().map(|v| v.to_string()).collect();
        assert!(
            got.len() as u32 >= (window.as_millis() / INTERVAL.as_millis()) as u32 - 2,
            "announce {announce}: {got:?}"
        );
        assert!(got.iter().all(|b| b == r#"{"<3":true}"#), "{got:?}");
        let st = shared.borrow();
        assert!(st.events_of("auth").any(|(_, k)| matches!(k, EventKind::MemberJoined { .. })));
        let removed: Vec<_> =
            st.events_of("auth").filter(|(_, k)| matches!(k, EventKind::MemberRemoved { .. })).collect();
        assert!(removed.is_empty(), "announce {announce}: {removed:?}");
    }
}
