//! pyile's protocol on turmoil where a scenario cannot say what to do: hand-driven
//! simulations on the runner's own harness ([`sim::runner::bench::Bench`]: the same turmoil
//! setup and the same authenticator and joiner host software a scenario run uses).
//!
//! - A member whose distribution stream dies while its auth connection lives is removed as
//!   `DistributionLost` within the distribution timeout, and rejoins. The fault must kill
//!   exactly that stream, so the cut is timed on an observed heartbeat.
//! - Heartbeat versions: a hand-written authenticator or joiner, speaking the wire protocol
//!   as the reference does (or announcing protocol 2), next to the runner's joiner or
//!   authenticator.
//!
//! (What a scenario can say is in `tests/protocol.rs`.)

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use pyile::{AuthenticatorConfig, EventKind, LostReason, RemovalReason};
use sim::layout::AUTH_HOST;
use sim::runner::bench::Bench;
use sim::runner::hosts::Obs;
use sim::scenario::LoadedScenario;

const PASSWORD: &str = "sesame";
/// The authenticator's heartbeat interval and timeout (as in [`SCENARIO`]).
const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(600);
/// Maximum one-way latency, and the turmoil tick.
const MAX_LATENCY: Duration = Duration::from_millis(20);
const TICK: Duration = Duration::from_millis(1);

/// The network, the authenticator and three joiner slots `j1.0`, `j2.0`, `j3.0` (hosts
/// `j1-0`, ...); a bench schedules nothing, so nobody joins by itself.
const SCENARIO: &str = r#"name = "bench"
duration = "60s"
settle = "0s"

[network]
min_latency = "1ms"
max_latency = "20ms"

[authenticator]
password = "sesame"
heartbeat_interval = "200ms"
heartbeat_timeout = "600ms"
handshake_timeout = "2s"

[[joiners]]
name = "j1"
count = 1
heartbeat_timeout = "1s"

[[joiners]]
name = "j2"
count = 1
heartbeat_timeout = "1s"

[[joiners]]
name = "j3"
count = 1
heartbeat_timeout = "1s"
"#;

fn bench(text: &str, seed: u64) -> Bench {
    let src = LoadedScenario::from_text("bench.toml", text.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let b = Bench::new(&src.resolve(seed).unwrap_or_else(|e| panic!("{e}")));
    let s = b.settings();
    assert_eq!((s.password.as_str(), s.heartbeat_interval, s.heartbeat_timeout), (PASSWORD, INTERVAL, TIMEOUT));
    b
}

// ---------------------------------------------------------------------------
// Reading the observations
// ---------------------------------------------------------------------------

type Log = [(usize, Obs)];

fn auth_events(log: &Log) -> impl Iterator<Item = (Duration, &EventKind)> {
    log.iter().filter_map(|(_, o)| match o {
        Obs::Auth { at, kind } => Some((*at, kind)),
        _ => None,
    })
}

fn events_of(log: &Log, inst: u64) -> impl Iterator<Item = (Duration, &EventKind)> {
    log.iter().filter_map(move |(_, o)| match o {
        Obs::Joiner { at, inst: i, kind } if *i == inst => Some((*at, kind)),
        _ => None,
    })
}

fn auth_peer(log: &Log) -> Option<SocketAddr> {
    log.iter().find_map(|(_, o)| match o {
        Obs::AuthStarted { peer, .. } => Some(*peer),
        _ => None,
    })
}

fn peer(log: &Log, inst: u64) -> Option<SocketAddr> {
    events_of(log, inst).find_map(|(_, k)| match k {
        EventKind::Joined { peer_addr, .. } => Some(*peer_addr),
        _ => None,
    })
}

/// The authenticator's list: the last it published (itself alone before any).
fn auth_list(log: &Log) -> Vec<SocketAddr> {
    let last = auth_events(log).filter_map(|(_, k)| match k {
        EventKind::MemberListChanged { list, .. } => Some(list.to_vec()),
        _ => None,
    });
    last.last().unwrap_or_else(|| auth_peer(log).into_iter().collect())
}

/// The list instance `inst` holds.
fn held(log: &Log, inst: u64) -> Vec<SocketAddr> {
    let lists = events_of(log, inst).filter_map(|(_, k)| match k {
        EventKind::Joined { list, .. } | EventKind::MemberListChanged { list, .. } => Some(list.to_vec()),
        _ => None,
    });
    lists.last().unwrap_or_default()
}

/// Whether instance `inst` has joined and not ended.
fn up(log: &Log, inst: u64) -> bool {
    peer(log, inst).is_some()
        && !log.iter().any(|(_, o)| matches!(o, Obs::JoinerEnded { inst: i, .. } if *i == inst))
        && !events_of(log, inst).any(|(_, k)| matches!(k, EventKind::Left))
}

/// Every named instance is up and holds exactly the authenticator's list, which has the
/// authenticator first and exactly those instances.
fn converged(log: &Log, insts: &[u64]) -> bool {
    let Some(auth) = auth_peer(log) else { return false };
    let mut expected = vec![auth];
    for &i in insts {
        match peer(log, i) {
            Some(p) if up(log, i) => expected.push(p),
            _ => return false,
        }
    }
    let list = auth_list(log);
    let mut sorted = list.clone();
    if sorted.first() != expected.first() {
        return false;
    }
    sorted[1..].sort();
    expected[1..].sort();
    sorted == expected && insts.iter().all(|&i| held(log, i) == list)
}

fn heartbeats(log: &Log, inst: u64) -> impl Iterator<Item = Duration> + '_ {
    events_of(log, inst).filter(|(_, k)| matches!(k, EventKind::HeartbeatReceived { .. })).map(|(at, _)| at)
}

/// Join attempts of instances `insts`: (started, joined, failed).
fn attempts(log: &Log, insts: &[u64]) -> (usize, usize, usize) {
    let count =
        |f: &dyn Fn(&Obs) -> Option<u64>| log.iter().filter(|(_, o)| f(o).is_some_and(|i| insts.contains(&i))).count();
    (
        count(&|o| match o {
            Obs::JoinStarted { inst, .. } => Some(*inst),
            _ => None,
        }),
        insts.iter().filter(|&&i| peer(log, i).is_some()).count(),
        count(&|o| match o {
            Obs::JoinFailed { inst, .. } => Some(*inst),
            _ => None,
        }),
    )
}

fn dump(log: &Log) -> String {
    log.iter().map(|(h, o)| format!("{h} {o:?}")).collect::<Vec<_>>().join("\n")
}

// ---------------------------------------------------------------------------
// A dead distribution stream under a live auth connection
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
    /// Rejoin → everyone converged again.
    rejoin: Duration,
    /// The authenticator's distribution timeout (detection is after it, within one more
    /// interval).
    bound: Duration,
}

/// Kills j1's distribution stream and nothing else, the way a lost segment does in turmoil
/// (which never retransmits): the authenticator→j1 direction is cut (`partition_oneway`,
/// which also drops what is in flight that way) for the few milliseconds in which the
/// authenticator writes one member list — the one without j2, which leaves — and no
/// heartbeat. The list is lost, so j1's distribution stream waits forever for that segment,
/// while its auth connection keeps heartbeating both ways. The authenticator must notice from
/// j1's heartbeat answers (they keep reporting the older list), remove it as
/// `DistributionLost` within the distribution timeout of that list's publication, and close
/// its connections; j1 sees the close and can rejoin.
fn dead_distribution_stream(seed: u64, settle: Duration) -> DeadDistRun {
    let mut b = bench(SCENARIO, seed);
    b.start_all();
    let (s1, s2, s3) = (b.slot("j1.0"), b.slot("j2.0"), b.slot("j3.0"));
    let j1_host = b.layout.joiners[s1].host;
    let (i1, i2, i3) = (b.join(s1), b.join(s2), b.join(s3));
    let ok = b.run_until(Duration::from_secs(3), |log| converged(log, &[i1, i2, i3]));
    assert!(ok, "joiners did not all join and converge in 3 s of simulated time:\n{}", dump(b.log()));
    for i in [i1, i2, i3] {
        assert_eq!(attempts(b.log(), &[i]), (1, 1, 0), "instance {i}: expected one successful join");
    }
    let (j1_old, j2) = (peer(b.log(), i1).unwrap(), peer(b.log(), i2).unwrap());
    let without_j2: Vec<SocketAddr> = auth_list(b.log()).into_iter().filter(|m| *m != j2).collect();
    b.run_for(settle);

    // Right after j1 received a heartbeat (and its answer is delivered), nothing travels from
    // the authenticator to j1 until the next heartbeat, about an interval later.
    let before = heartbeats(b.log(), i1).count();
    assert!(b.run_until(INTERVAL * 2, |log| heartbeats(log, i1).count() > before), "no heartbeat:\n{}", dump(b.log()));
    b.run_for(MAX_LATENCY + TICK * 2);
    let cut_at = b.elapsed();
    let beats_at_cut = heartbeats(b.log(), i1).count();
    b.sim.partition_oneway(b.ips[AUTH_HOST], b.ips[j1_host]);
    b.leave(i2);
    let published = |log: &Log| {
        auth_events(log).find_map(|(at, k)| match k {
            EventKind::MemberListChanged { list, .. } if at >= cut_at && list.to_vec() == *without_j2 => Some(at),
            _ => None,
        })
    };
    let ok = b.run_until(INTERVAL / 2, |log| published(log).is_some());
    assert!(ok, "j2's leave was not published:\n{}", dump(b.log()));
    // A few ticks for the distribution writers to write that list.
    b.run_for(TICK * 3);
    b.sim.repair_oneway(b.ips[AUTH_HOST], b.ips[j1_host]);
    let cut = b.elapsed() - cut_at;
    let published_at = published(b.log()).unwrap();
    assert_eq!(
        heartbeats(b.log(), i1).count(),
        beats_at_cut,
        "a heartbeat crossed the cut: the auth stream would be dead too"
    );
    assert!(cut < INTERVAL / 2, "cut {cut:?}");

    // j3 got the list; j1 did not, and keeps heartbeating with the old one.
    let ok = b.run_until(INTERVAL, |log| held(log, i3) == without_j2);
    assert!(ok, "j3 did not get the list without j2:\n{}", dump(b.log()));
    let ok = b.run_until(TIMEOUT * 2 + INTERVAL * 4, |log| {
        auth_events(log).any(|(_, k)| matches!(k, EventKind::MemberRemoved { member, .. } if *member == j1_old))
    });
    assert!(ok, "j1, whose distribution stream is dead, was never removed:\n{}", dump(b.log()));
    let log = b.log();
    let removals: Vec<_> = auth_events(log)
        .filter_map(|(at, k)| match k {
            EventKind::MemberRemoved { member, reason } if at >= cut_at => Some((at, *member, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(removals.len(), 2, "{removals:?}");
    assert_eq!((removals[0].1, removals[0].2.clone()), (j2, RemovalReason::Left));
    let (removed_at, member, reason) = removals[1].clone();
    assert_eq!((member, reason), (j1_old, RemovalReason::DistributionLost), "{}", dump(log));
    // Its auth connection was alive all along: heartbeats reached it until the removal, and
    // the authenticator never missed an answer.
    let late_beats = heartbeats(log, i1).filter(|&at| at > published_at + TIMEOUT).count();
    assert!(late_beats >= 1, "j1 got no heartbeat after the cut: not a live auth connection");
    assert!(!auth_events(log).any(|(_, k)| matches!(k, EventKind::HeartbeatMissed { peer, .. } if *peer == j1_old)));
    // Until then, j1 held the stale list.
    assert!(!events_of(log, i1).any(|(at, k)| at >= cut_at && matches!(k, EventKind::MemberListChanged { .. })));
    let detection = removed_at - published_at;
    // Within the bound (the distribution timeout, checked once per heartbeat interval), and
    // not before it.
    let bound = AuthenticatorConfig::new(PASSWORD)
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(TIMEOUT)
        .distribution_budget(b.settings().distribution_budget)
        .effective_distribution_timeout();
    assert!(detection > bound, "removed too early: {detection:?}");
    assert!(detection <= bound + INTERVAL + TICK * 2, "detection took {detection:?}");

    // j1 sees its auth connection close and leaves.
    let ok = b.run_until(INTERVAL, |log| !up(log, i1));
    assert!(ok, "j1 did not notice its removal:\n{}", dump(b.log()));
    let lost: Vec<_> = events_of(b.log(), i1)
        .filter_map(|(at, k)| match k {
            EventKind::AuthenticatorLost { reason } => Some((at, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].1, LostReason::Closed);
    let lost_at = lost[0].0;

    // It rejoins and everyone converges; the new membership stays healthy.
    let rejoin_at = b.elapsed();
    let i1b = b.join(s1);
    let ok = b.run_until(Duration::from_secs(3), |log| converged(log, &[i1b, i3]));
    assert!(ok, "j1 did not rejoin:\n{}", dump(b.log()));
    let rejoin = b.elapsed() - rejoin_at;
    b.run_for(TIMEOUT + INTERVAL * 3);
    let log = b.log();
    assert_eq!(attempts(log, &[i1, i1b]), (2, 2, 0), "j1: two successful joins");
    assert_eq!(auth_events(log).filter(|(_, k)| matches!(k, EventKind::MemberRemoved { .. })).count(), 2);
    assert!(converged(log, &[i1b, i3]));
    // No task outlived a joiner that ended (j2 left, j1 lost the authenticator).
    let ended: Vec<_> = log
        .iter()
        .filter_map(|(_, o)| match o {
            Obs::JoinerEnded { inst, tasks, .. } => Some((*inst, *tasks)),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [(i2, Some(0)), (i1, Some(0))]);
    DeadDistRun { cut, detection, joiner_noticed: lost_at - removed_at, rejoin, bound }
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
        runs[0].bound,
        stat(|r| r.joiner_noticed),
        stat(|r| r.rejoin),
        wall.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Reference (v1) peers see plain heartbeats, both ways
// ---------------------------------------------------------------------------

/// A raw peer's record of the JSON values it received, in order.
type Values = Rc<RefCell<Vec<serde_json::Value>>>;

type Reader = pyile::wire::MessageReader<turmoil::net::TcpStream>;

async fn read_value(r: &mut Reader) -> serde_json::Value {
    r.next_value().await.expect("a JSON value")
}

async fn write_value(r: &mut Reader, v: serde_json::Value) {
    use tokio::io::AsyncWriteExt;
    r.get_mut().write_all(&serde_json::to_vec(&v).unwrap()).await.expect("write");
}

/// A raw authenticator on the bench's authenticator host that speaks exactly what the
/// reference writes (`announce`: adds our extension announcement to `banned`, as a
/// protocol-2 authenticator does), serves one joiner, sends it list version 7 on the
/// distribution connection, and records every heartbeat answer.
fn add_raw_authenticator(b: &mut Bench, answers: &Values, announce: bool) {
    let answers = answers.clone();
    let (name, port) = (b.layout.hosts[AUTH_HOST].name.clone(), b.auth_addr().port());
    b.sim.host(name.as_str(), move || {
        let answers = answers.clone();
        async move {
            use serde_json::json;
            let auth = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
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

/// Our joiner's heartbeat answers carry its list version only to an authenticator that
/// announced protocol 2: a reference authenticator gets exactly `{"<3": true}`.
#[test]
fn joiner_reports_its_list_version_only_to_a_protocol_2_authenticator() {
    for announce in [false, true] {
        let mut b = bench(SCENARIO, 7);
        let answers: Values = Rc::default();
        add_raw_authenticator(&mut b, &answers, announce);
        let s1 = b.slot("j1.0");
        b.start(b.layout.joiners[s1].host);
        b.join(s1);
        let ok = b.run_until(Duration::from_secs(5), |_| answers.borrow().len() == 6);
        assert!(ok, "announce {announce}: {} answers\n{}", answers.borrow().len(), dump(b.log()));
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

/// A raw joiner on a new host "ref" that speaks exactly what the reference writes
/// (`announce`: announces protocol 2 in `shadow`, and then answers with list versions as our
/// joiner does), and records every heartbeat it receives.
fn add_raw_joiner(b: &mut Bench, beats: &Values, announce: bool) {
    let beats = beats.clone();
    let target = b.auth_addr();
    b.sim.host("ref", move || {
        let beats = beats.clone();
        async move {
            use serde_json::json;
            let me = turmoil::lookup("ref");
            let _peer = turmoil::net::TcpListener::bind(("0.0.0.0", 49_500)).await?;
            let s = turmoil::net::TcpStream::connect(target).await?;
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

/// Our authenticator's heartbeats are exactly the reference's `{"<3": true}`, to a reference
/// joiner and to a protocol-2 one alike (only joiners report versions), and both kinds of
/// answer keep a member in.
#[test]
fn authenticator_heartbeats_are_plain_and_both_answers_are_accepted() {
    for announce in [false, true] {
        let mut b = bench(SCENARIO, 8);
        let beats: Values = Rc::default();
        b.start(AUTH_HOST);
        add_raw_joiner(&mut b, &beats, announce);
        let window = TIMEOUT * 4;
        b.run_for(window);
        let got: Vec<String> = beats.borrow().iter().map(|v| v.to_string()).collect();
        assert!(
            got.len() as u32 >= (window.as_millis() / INTERVAL.as_millis()) as u32 - 2,
            "announce {announce}: {got:?}"
        );
        assert!(got.iter().all(|b| b == r#"{"<3":true}"#), "{got:?}");
        let log = b.log();
        assert!(auth_events(log).any(|(_, k)| matches!(k, EventKind::MemberJoined { .. })));
        let removed: Vec<_> = auth_events(log).filter(|(_, k)| matches!(k, EventKind::MemberRemoved { .. })).collect();
        assert!(removed.is_empty(), "announce {announce}: {removed:?}");
    }
}
