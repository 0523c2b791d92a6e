//! The driver against an in-process authenticator (the `pyile` library) on loopback: every
//! planned joiner joins from the source address the plan gave it, and outcomes are counted.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use loadgen::driver::{self, DriverConfig};
use loadgen::metrics::{Collector, Counter, Latency, Metrics};
use loadgen::plan::{Arrival, OpKind, Plan, PlanConfig};
use loadgen::sources::SourceRange;
use pyile::{Authenticator, AuthenticatorConfig, EventKind, RemovalReason, TokioNet};
use tokio_util::sync::CancellationToken;

fn addrs(range: &str) -> Vec<IpAddr> {
    range.parse::<SourceRange>().unwrap().addrs().to_vec()
}

/// The authenticator these tests run against: password "pw", on loopback port 0, a
/// heartbeat every 200 ms.
fn auth_config() -> AuthenticatorConfig {
    AuthenticatorConfig::new("pw").listen("127.0.0.1:0".parse().unwrap()).heartbeat_interval(Duration::from_millis(200))
}

async fn start_auth(cfg: AuthenticatorConfig) -> Authenticator {
    Authenticator::start(TokioNet, cfg).await.unwrap()
}

/// The driver settings these tests share: password "pw", every joiner on protocol 2, no
/// impostor.
fn driver_config(target: SocketAddr) -> DriverConfig {
    DriverConfig {
        target,
        password: "pw".into(),
        wrong_password: DriverConfig::wrong_password_for("pw"),
        handshake_timeout: Duration::from_secs(3),
        heartbeat_timeout: Duration::from_secs(2),
        start_wall: SystemTime::now(),
        drain_timeout: Duration::from_secs(5),
        crash_bound: Duration::from_secs(6),
        protocol2_share: 1.0,
        duplicate_alias_rate: 0.0,
        impostor_share: 0.0,
        impostor: pyile::impostor::ImpostorKind::Scram,
        require_mutual_auth: false,
        one_connection: false,
    }
}

/// A plan of joins only: `peers` joiners at `rate` a second from `ips`, held `hold`.
fn joins_only(seed: u64, peers: u32, rate: f64, hold: Duration, ips: &str) -> Plan {
    Plan::build(&PlanConfig {
        seed,
        peers,
        arrival: Arrival::Rate(rate),
        hold,
        churn_rate: 0.0,
        broadcast_rate: 0.0,
        wrong_password_rate: 0.0,
        joiner_ips: addrs(ips),
        attacker_ips: vec![],
        shards: 1,
        attacks: vec![],
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_bind_their_planned_source_addresses_and_attackers_get_banned() {
    let mut auth = start_auth(auth_config().password_attempts(2)).await;
    let mut auth_events = auth.events().unwrap();

    let cfg = PlanConfig {
        seed: 5,
        peers: 24,
        arrival: Arrival::Rate(100.0),
        hold: Duration::from_millis(1500),
        churn_rate: 0.0,
        broadcast_rate: 2.0,
        wrong_password_rate: 10.0,
        joiner_ips: addrs("127.0.5.1-127.0.5.4"),
        attacker_ips: addrs("127.0.6.1"),
        shards: 1,
        attacks: vec![],
    };
    let plan = Plan::build(&cfg).unwrap();
    let planned: HashMap<u32, IpAddr> = plan
        .ops
        .iter()
        .filter_map(|op| match op.kind {
            OpKind::Join { joiner, source } => Some((joiner.slot, source.unwrap())),
            _ => None,
        })
        .collect();
    let attacks = plan.summary().wrong_passwords;
    assert!(attacks >= 5, "the plan should hold a ban flood, has {attacks}");

    let start = Instant::now() + Duration::from_millis(50);
    let metrics = Arc::new(Metrics::new(start));
    let driver_cfg = DriverConfig {
        target: auth.auth_addr(),
        password: "pw".into(),
        wrong_password: DriverConfig::wrong_password_for("pw"),
        handshake_timeout: Duration::from_secs(3),
        heartbeat_timeout: Duration::from_secs(2),
        start_wall: SystemTime::now() + Duration::from_millis(50),
        drain_timeout: Duration::from_secs(5),
        crash_bound: Duration::from_secs(6),
        protocol2_share: 1.0,
        duplicate_alias_rate: 0.0,
        impostor_share: 0.0,
        impostor: pyile::impostor::ImpostorKind::Scram,
        require_mutual_auth: false,
        one_connection: false,
    };
    driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new()).await;

    // What the authenticator saw: every member came from a planned joiner address, with its
    // peer listener on that same address, and all four addresses were used.
    let mut sources = HashSet::new();
    let mut members = 0;
    let mut banned = HashSet::new();
    while let Some(ev) = auth_events.try_recv() {
        match ev.kind {
            EventKind::MemberJoined { member, source } => {
                assert_eq!(member.ip(), source, "peer listener not on the source address");
                assert!(cfg.joiner_ips.contains(&source), "{source} is not a joiner address");
                sources.insert(source);
                members += 1;
            }
            EventKind::Banned { ip } => {
                banned.insert(ip);
            }
            _ => {}
        }
    }
    assert_eq!(members, 24);
    assert_eq!(sources, cfg.joiner_ips.iter().copied().collect::<HashSet<_>>());
    assert_eq!(planned.values().copied().collect::<HashSet<_>>(), sources);
    assert_eq!(banned, HashSet::from(["127.0.6.1".parse().unwrap()]), "only the attacker is banned");

    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let t = collector.totals();
    assert_eq!(t.counter(Counter::Joined), 24);
    assert_eq!(t.counter(Counter::Errors), 0, "no joiner failed");
    assert_eq!(t.counter(Counter::Attacks), attacks);
    assert_eq!(t.counter(Counter::AttackRejected), 2, "two wrong passwords, then the ban");
    assert_eq!(t.counter(Counter::AttackBanned), attacks - 2);
    for l in
        [Latency::TcpConnect, Latency::BannedStatus, Latency::AuthResult, Latency::FirstList, Latency::JoinComplete]
    {
        assert_eq!(t.histogram(l).len(), 24, "{}", l.name());
    }
    // Stages happen in order, so their medians do too.
    let p50 = |l: Latency| t.histogram(l).value_at_quantile(0.5);
    assert!(p50(Latency::TcpConnect) <= p50(Latency::AuthResult));
    assert!(p50(Latency::AuthResult) <= p50(Latency::JoinComplete));
    assert_eq!(t.histogram(Latency::Convergence).len(), 24);
    assert!(t.histogram(Latency::HeartbeatInterval).len() > 24);
    assert_eq!(t.histogram(Latency::ScheduleLag).len(), plan.ops.len() as u64);
    if plan.summary().broadcasts > 0 {
        assert!(t.counter(Counter::MessagesSent) > 0);
        assert_eq!(t.counter(Counter::MessagesDelivered), t.counter(Counter::MessagesSent));
        // Every delivery to one of our joiners is measured (the authenticator is not ours).
        let to_joiners = t.counter(Counter::MessagesSent) - plan.summary().broadcasts;
        assert_eq!(t.histogram(Latency::MessageDelivery).len(), to_joiners);
    }
    assert_eq!(metrics.active(), 0, "every joiner left at the end");
    auth.leave().await;
}

/// Churn's crash half is a silent death, not a close: the authenticator removes every crashed
/// joiner by its heartbeat timeout (a close would be `Closed`, at once), and loadgen measures
/// how long that took, from the silence to a list without the address, within the bounds
/// the timeout sets. Graceful leaves stay graceful (`Closed`) and are counted apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_crashes_are_silent_and_the_authenticator_s_detection_is_measured() {
    let interval = Duration::from_millis(100);
    let timeout = Duration::from_millis(1000);
    let crash_bound = Duration::from_secs(6);
    let mut auth = start_auth(auth_config().heartbeat_interval(interval).heartbeat_timeout(timeout)).await;
    // Every removal and its reason, read while the run goes on (the channel is bounded).
    let mut auth_events = auth.events().unwrap();
    let removals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = tokio::spawn({
        let removals = removals.clone();
        async move {
            while let Some(ev) = auth_events.recv().await {
                if let EventKind::MemberRemoved { member, reason } = ev.kind {
                    removals.lock().unwrap().push((member, reason));
                }
            }
        }
    });

    let cfg = PlanConfig {
        seed: 7,
        peers: 12,
        arrival: Arrival::Rate(100.0),
        hold: Duration::from_secs(5),
        churn_rate: 3.0,
        broadcast_rate: 0.0,
        wrong_password_rate: 0.0,
        joiner_ips: addrs("127.0.5.1-127.0.5.12"),
        attacker_ips: vec![],
        shards: 1,
        attacks: vec![],
    };
    let plan = Plan::build(&cfg).unwrap();
    let planned = plan.summary();
    assert!(planned.crashes >= 3 && planned.leaves >= 3, "the plan should crash and leave: {planned:?}");

    let start = Instant::now() + Duration::from_millis(50);
    let metrics = Arc::new(Metrics::new(start));
    let driver_cfg = DriverConfig {
        target: auth.auth_addr(),
        password: "pw".into(),
        wrong_password: DriverConfig::wrong_password_for("pw"),
        handshake_timeout: Duration::from_secs(3),
        heartbeat_timeout: Duration::from_secs(2),
        start_wall: SystemTime::now() + Duration::from_millis(50),
        drain_timeout: Duration::from_secs(5),
        crash_bound,
        protocol2_share: 1.0,
        duplicate_alias_rate: 0.0,
        impostor_share: 0.0,
        impostor: pyile::impostor::ImpostorKind::Scram,
        require_mutual_auth: false,
        one_connection: false,
    };
    driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new()).await;
    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let t = collector.totals();

    // Every planned departure happened, each the way it was planned.
    assert_eq!(t.counter(Counter::Errors), 0, "no joiner failed");
    assert_eq!(t.counter(Counter::Crashed), planned.crashes);
    assert_eq!(t.counter(Counter::Left), planned.leaves);
    // Every crash is accounted for, and the authenticator removed each within the bound.
    let detection = t.histogram(Latency::CrashDetection);
    assert_eq!(
        detection.len() + t.counter(Counter::CrashUndetected) + t.counter(Counter::CrashUnobserved),
        planned.crashes,
        "detected + undetected + unobserved = crashed"
    );
    assert_eq!(t.counter(Counter::CrashUndetected), 0);
    assert!(detection.len() + 1 >= planned.crashes, "{} of {} crashes seen removed", detection.len(), planned.crashes);
    // No faster than the timeout allows (the last answer came at most about a heartbeat
    // before the silence; half the timeout leaves room for a slow machine), never past
    // the bound. A graceful close is seen within milliseconds.
    let (min, max) = (Duration::from_micros(detection.min()), Duration::from_micros(detection.max()));
    eprintln!("{} crashes, {} detected in {min:?}..{max:?}", planned.crashes, detection.len());
    assert!(min >= timeout / 2, "a crash was detected {min:?} after its silence: something was closed");
    assert!(max <= crash_bound, "{max:?}");

    // What the authenticator saw: a heartbeat timeout for each crash (never a close), and
    // a close for each graceful leave (and for everyone at the end).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let removals = removals.lock().unwrap().clone();
    let by = |r: fn(&RemovalReason) -> bool| removals.iter().filter(|(_, reason)| r(reason)).count() as u64;
    let timeouts = by(|r| matches!(r, RemovalReason::HeartbeatTimeout));
    let closed = by(|r| matches!(r, RemovalReason::Closed));
    assert!(
        timeouts >= planned.crashes,
        "{timeouts} heartbeat-timeout removals for {} crashes: {removals:?}",
        planned.crashes
    );
    assert!(closed >= planned.leaves, "{closed} closes for {} graceful leaves", planned.leaves);
    assert_eq!(metrics.active(), 0, "every joiner left at the end");
    auth.leave().await;
    reader.abort();
}

/// An authenticator that never removes a silent member: every crash is still listed when
/// the bound expires, counted as `crash_undetected` (an error), and its sockets are closed
/// then, so the authenticator finally sees it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_still_listed_at_the_bound_are_undetected_errors_and_then_closed() {
    let mut auth = start_auth(auth_config().heartbeat_timeout(Duration::from_secs(3600))).await;
    let mut auth_events = auth.events().unwrap();
    let cfg = PlanConfig {
        seed: 7,
        peers: 8,
        arrival: Arrival::Rate(100.0),
        hold: Duration::from_secs(2),
        churn_rate: 3.0,
        broadcast_rate: 0.0,
        wrong_password_rate: 0.0,
        joiner_ips: addrs("127.0.5.1-127.0.5.8"),
        attacker_ips: vec![],
        shards: 1,
        attacks: vec![],
    };
    let plan = Plan::build(&cfg).unwrap();
    let crashes = plan.summary().crashes;
    assert!(crashes >= 1, "{:?}", plan.summary());
    let start = Instant::now() + Duration::from_millis(50);
    let metrics = Arc::new(Metrics::new(start));
    let driver_cfg = DriverConfig {
        target: auth.auth_addr(),
        password: "pw".into(),
        wrong_password: DriverConfig::wrong_password_for("pw"),
        handshake_timeout: Duration::from_secs(3),
        heartbeat_timeout: Duration::from_secs(2),
        start_wall: SystemTime::now() + Duration::from_millis(50),
        drain_timeout: Duration::from_secs(5),
        crash_bound: Duration::from_millis(800),
        protocol2_share: 1.0,
        duplicate_alias_rate: 0.0,
        impostor_share: 0.0,
        impostor: pyile::impostor::ImpostorKind::Scram,
        require_mutual_auth: false,
        one_connection: false,
    };
    driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new()).await;
    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let t = collector.totals();
    assert_eq!(t.counter(Counter::Crashed), crashes);
    assert_eq!(t.counter(Counter::CrashUndetected), crashes);
    assert_eq!(t.histogram(Latency::CrashDetection).len(), 0);
    assert_eq!(t.counter(Counter::Errors), crashes, "an undetected crash is an error");
    // Closed at the bound: nobody is left listed (the authenticator itself aside).
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        while auth.members().len() > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "still listed: {:?}", auth.members());
    let mut timeouts = 0;
    while let Some(ev) = auth_events.try_recv() {
        if let EventKind::MemberRemoved { reason: RemovalReason::HeartbeatTimeout, .. } = ev.kind {
            timeouts += 1;
        }
    }
    assert_eq!(timeouts, 0);
    auth.leave().await;
}

/// `--protocol-mix 0.5`: every second slot speaks protocol 2 (deltas), the others plain v1
/// (whole lists), in every shard alike; both kinds converge on the authenticator's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_mix_loads_both_distribution_paths() {
    let share = |f: f64| DriverConfig { protocol2_share: f, ..driver_config("127.0.0.1:1".parse().unwrap()) };
    let v2 = |f: f64| (0..100).filter(|&s| share(f).speaks_protocol2(s)).count();
    assert_eq!((v2(0.0), v2(0.5), v2(0.25), v2(1.0)), (0, 50, 25, 100));
    assert!(share(0.5).speaks_protocol2(1) && !share(0.5).speaks_protocol2(0));

    let auth = start_auth(auth_config()).await;
    let plan = joins_only(9, 12, 50.0, Duration::from_millis(1000), "127.0.7.1-127.0.7.4");
    let metrics = Arc::new(Metrics::new(Instant::now() + Duration::from_millis(50)));
    let driver_cfg = DriverConfig { target: auth.auth_addr(), ..share(0.5) };
    driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new()).await;
    let s = auth.distribution_stats();
    assert_eq!(s.snapshots_first, 0, "six protocol-2 joiners, committed first lists: {s:?}");
    assert!(s.deltas > 0 && s.v1_lists > 0, "{s:?}");
    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let t = collector.totals();
    assert_eq!(t.counter(Counter::Joined), 12);
    assert_eq!(t.counter(Counter::Errors), 0);
    auth.leave().await;
}

/// `--one-connection`: the protocol-2 joiners take their lists on the auth connection (no
/// distribution connection reaches the authenticator from them); the protocol-1 ones open
/// theirs as always; every join completes without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_joiners_open_no_distribution_connection() {
    let auth = start_auth(auth_config()).await;
    let plan = joins_only(13, 12, 50.0, Duration::from_millis(1000), "127.0.9.1-127.0.9.4");
    let metrics = Arc::new(Metrics::new(Instant::now() + Duration::from_millis(50)));
    let driver_cfg = DriverConfig { protocol2_share: 0.5, one_connection: true, ..driver_config(auth.auth_addr()) };
    driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new()).await;
    assert_eq!(auth.distribution_connections_accepted(), 6, "only the six protocol-1 joiners'");
    let s = auth.distribution_stats();
    assert_eq!(s.snapshots_first, 0, "six protocol-2 joiners, committed first lists: {s:?}");
    assert!(s.deltas > 0 && s.v1_lists > 0, "{s:?}");
    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let t = collector.totals();
    assert_eq!(t.counter(Counter::Joined), 12);
    assert_eq!(t.counter(Counter::Errors), 0);
    auth.leave().await;
}

/// `--impostor-rate`: a share of the joins goes to loadgen's own impostor authenticator on
/// 127.0.0.1. Protocol-2 joiners refuse a SCRAM-posing impostor (nothing exposed); joiners
/// that require mutual authentication refuse a v1-posing one; v1 joiners hand a v1-posing
/// impostor their password (v1's weakness: counted, not an error). The other joins are
/// untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostor_joins_are_refused_where_protocol_2_promises_and_counted_where_not() {
    let auth = start_auth(auth_config()).await;
    let run = |kind, mix: f64, mutual: bool| {
        let target = auth.auth_addr();
        async move {
            let plan = joins_only(11, 20, 100.0, Duration::from_millis(500), "127.0.8.1-127.0.8.4");
            let metrics = Arc::new(Metrics::new(Instant::now() + Duration::from_millis(50)));
            let driver_cfg = DriverConfig {
                protocol2_share: mix,
                impostor_share: 0.5,
                impostor: kind,
                require_mutual_auth: mutual,
                one_connection: false,
                ..driver_config(target)
            };
            driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new()).await;
            let mut collector = Collector::new();
            collector.cut(&metrics, Instant::now());
            let t = collector.totals();
            let c = |k| t.counter(k);
            (
                c(Counter::ImpostorJoins),
                c(Counter::ImpostorRefused),
                c(Counter::ImpostorPasswords),
                c(Counter::ImpostorExposed),
                c(Counter::Joined),
                c(Counter::Errors),
            )
        }
    };
    use pyile::impostor::ImpostorKind::{Scram, V1};
    let (to_impostor, refused, passwords, exposed, joined, errors) = run(Scram, 1.0, false).await;
    assert!((5..=15).contains(&to_impostor), "about half of 20: {to_impostor}");
    assert_eq!((refused, passwords, exposed, errors), (to_impostor, 0, 0, 0));
    assert_eq!(joined + to_impostor, 20);

    let (to_impostor, refused, passwords, exposed, _, errors) = run(V1, 1.0, true).await;
    assert_eq!((refused, passwords, exposed, errors), (to_impostor, 0, 0, 0));

    // A protocol mix without mutual authentication: the v1-posing impostor gets passwords.
    let (to_impostor, refused, passwords, exposed, _, errors) = run(V1, 0.5, false).await;
    assert!(passwords > 0 && passwords == to_impostor, "{passwords} of {to_impostor}");
    assert_eq!((refused, exposed, errors), (0, 0, 0));
    auth.leave().await;
}

/// `--duplicate-alias-rate 0.5`: about half the joins present a live joiner's alias; the
/// authenticator refuses each (`alias_taken`, expected, not an error) and never lists an
/// alias twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_aliases_are_refused_and_counted_apart_from_errors() {
    let dup = |f: f64| DriverConfig {
        protocol2_share: 1.0,
        duplicate_alias_rate: f,
        ..driver_config("127.0.0.1:1".parse().unwrap())
    };
    let ids = |f: f64| {
        (0..1000).filter(|&slot| dup(f).duplicates_alias(loadgen::plan::JoinerId { slot, generation: 0 })).count()
    };
    assert_eq!(ids(0.0), 0);
    assert_eq!(ids(1.0), 1000);
    assert!((400..600).contains(&ids(0.5)), "{}", ids(0.5));

    let mut auth = start_auth(auth_config()).await;
    let mut auth_events = auth.events().unwrap();
    let cfg = PlanConfig {
        seed: 11,
        peers: 20,
        arrival: Arrival::Rate(40.0),
        hold: Duration::from_millis(1000),
        churn_rate: 0.0,
        broadcast_rate: 0.0,
        wrong_password_rate: 0.0,
        joiner_ips: addrs("127.0.8.1-127.0.8.4"),
        attacker_ips: vec![],
        shards: 1,
        attacks: vec![],
    };
    let plan = Plan::build(&cfg).unwrap();
    let metrics = Arc::new(Metrics::new(Instant::now() + Duration::from_millis(50)));
    let driver_cfg = DriverConfig { target: auth.auth_addr(), ..dup(0.5) };
    driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new()).await;
    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let t = collector.totals();
    let (joined, taken) = (t.counter(Counter::Joined), t.counter(Counter::AliasTaken));
    assert!(taken > 0, "some joins reused a live alias");
    assert_eq!(joined + taken, 20, "every join either joined or was refused for its alias");
    assert_eq!(t.counter(Counter::Errors), 0, "an expected refusal is not an error");
    let mut refused = 0;
    let mut live = std::collections::BTreeMap::new();
    while let Some(ev) = auth_events.try_recv() {
        match ev.kind {
            EventKind::AliasRefused { .. } => refused += 1,
            EventKind::MemberAlias { member, alias } => {
                assert!(!live.values().any(|a| *a == alias), "{alias} listed twice");
                live.insert(member, alias);
            }
            EventKind::MemberRemoved { member, .. } => {
                live.remove(&member);
            }
            _ => {}
        }
    }
    assert_eq!(refused, taken);
    auth.leave().await;
}

/// The runtime probe reports loadgen's own queueing: on a one-thread runtime, a task that
/// holds the thread for 80 ms shows as one sample at least that late, while the samples
/// around it stay within the timer's millisecond.
#[tokio::test(flavor = "current_thread")]
async fn the_runtime_probe_sees_a_task_that_holds_the_runtime_up() {
    let metrics = Arc::new(Metrics::new(Instant::now()));
    let until = CancellationToken::new();
    let probe = tokio::spawn(driver::probe_runtime(metrics.clone(), Duration::from_millis(5), until.clone()));
    tokio::time::sleep(Duration::from_millis(60)).await;
    // A task that does not yield: everything queued behind it waits.
    tokio::spawn(async { std::thread::sleep(Duration::from_millis(80)) }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    until.cancel();
    probe.await.unwrap();
    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let h = collector.totals().histogram(Latency::RuntimeLag);
    assert!(h.len() >= 10, "{} samples", h.len());
    assert!(h.max() >= 70_000, "the stall: max {} us", h.max());
    assert!(
        h.value_at_quantile(0.5) <= 3_000,
        "p50 {} us: a calm runtime wakes it within the timer's ms",
        h.value_at_quantile(0.5)
    );
}
