//! Every `--attack` kind against an in-process authenticator (the `pyile` library) on
//! loopback, beside honest joiners: the attack does what it says (the authenticator saw it,
//! and ended it the way its defences should, when they should), it is counted under its
//! kind, and the honest joiners still join with no error.
//!
//! The authenticator runs with short deadlines (password 400 ms, handshake 1 s) so each test
//! takes a few seconds; honest joiners come from 127.0.30.x, attackers from 127.0.31.x.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use loadgen::attack::AttackKind;
use loadgen::driver::{self, DriverConfig};
use loadgen::metrics::{AttackCounter as C, Collector, Counter, Metrics, Totals};
use loadgen::plan::{Arrival, Plan, PlanConfig, PlannedAttack};
use loadgen::sources::SourceRange;
use pyile::{Authenticator, AuthenticatorConfig, EventKind, RemovalReason, TokioNet};
use tokio_util::sync::CancellationToken;

const PW: &str = "attack-pw";
const PASSWORD_TIMEOUT: Duration = Duration::from_millis(400);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
const PEERS: u32 = 10;

fn addrs(range: &str) -> Vec<IpAddr> {
    range.parse::<SourceRange>().unwrap().addrs().to_vec()
}

fn auth_config() -> AuthenticatorConfig {
    AuthenticatorConfig::new(PW)
        .listen("127.0.0.1:0".parse().unwrap())
        .heartbeat_interval(Duration::from_millis(200))
        .password_timeout(PASSWORD_TIMEOUT)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .event_capacity(1 << 18)
}

/// What one run showed.
struct Run {
    totals: Totals,
    /// The authenticator's events during the run.
    events: Vec<EventKind>,
    auth: Authenticator,
    kind: AttackKind,
}

impl Run {
    fn count(&self, c: C) -> u64 {
        self.totals.attack_counter(self.kind, c)
    }

    /// `HandshakeFailed` errors from attacker addresses.
    fn failures(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EventKind::HandshakeFailed { source, error } if attacker(source.ip()) => Some(error.as_str()),
                _ => None,
            })
            .collect()
    }

    fn failures_containing(&self, needle: &str) -> usize {
        self.failures().iter().filter(|e| e.contains(needle)).count()
    }

    /// Connect to closed by the authenticator: (count, min, max).
    fn closed_after(&self) -> (u64, Duration, Duration) {
        let h = &self.totals.attack(self.kind).expect("the attack is reported").closed_after;
        if h.is_empty() {
            return (0, Duration::ZERO, Duration::ZERO);
        }
        (h.len(), Duration::from_micros(h.min()), Duration::from_micros(h.max()))
    }

    /// Removals for any reason but the member closing its connection (everyone leaves at the
    /// end of a run), as `member: reason`.
    fn removals_but_leaving(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                EventKind::MemberRemoved { member, reason } if *reason != RemovalReason::Closed => {
                    Some(format!("{member}: {reason:?}"))
                }
                _ => None,
            })
            .collect()
    }

    /// Every honest joiner joined, and none failed or was removed.
    fn honest_ok(&self) {
        let t = &self.totals;
        assert_eq!(t.counter(Counter::Joined), PEERS as u64, "honest joins");
        assert_eq!(t.counter(Counter::Errors), 0, "honest errors");
        let joined = self
            .events
            .iter()
            .filter(|e| matches!(e, EventKind::MemberJoined { source, .. } if !attacker(*source)))
            .count();
        assert_eq!(joined, PEERS as usize);
    }
}

fn attacker(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[2] == 31)
}

/// Runs `PEERS` honest joiners (20/s, then `hold`) and the attack `spec` against an
/// authenticator with `cfg`.
async fn run(cfg: AuthenticatorConfig, spec: &str, hold: Duration) -> Run {
    run_stopping(cfg, spec, hold, None).await
}

/// [`run`], stopping the authenticator `stop_at` after the start if given.
async fn run_stopping(cfg: AuthenticatorConfig, spec: &str, hold: Duration, stop_at: Option<Duration>) -> Run {
    let mut auth = Authenticator::start(TokioNet, cfg).await.unwrap();
    let mut auth_events = auth.events().unwrap();
    let spec: loadgen::attack::AttackSpec = spec.parse().unwrap();
    let kind = spec.kind;
    let ips = addrs("127.0.31.1-127.0.31.200")[..spec.ips as usize].to_vec();
    let plan_cfg = PlanConfig {
        seed: 3,
        peers: PEERS,
        arrival: Arrival::Rate(20.0),
        hold,
        churn_rate: 0.0,
        broadcast_rate: 0.0,
        wrong_password_rate: 0.0,
        joiner_ips: addrs("127.0.30.1-127.0.30.4"),
        attacker_ips: vec![],
        shards: 1,
        attacks: vec![PlannedAttack { spec, ips }],
    };
    let plan = Plan::build(&plan_cfg).unwrap();
    let start = Instant::now() + Duration::from_millis(50);
    let metrics = Arc::new(Metrics::with_attacks(start, &[kind]));
    let driver_cfg = DriverConfig {
        target: auth.auth_addr(),
        password: PW.into(),
        wrong_password: DriverConfig::wrong_password_for(PW),
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
    let driving = driver::run(&plan, driver_cfg, metrics.clone(), CancellationToken::new());
    let stopping = async {
        if let Some(at) = stop_at {
            tokio::time::sleep_until((start + at).into()).await;
            auth.leave().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(driving, stopping) })
        .await
        .expect("the run ends by itself");
    let mut collector = Collector::new();
    collector.cut(&metrics, Instant::now());
    let mut events = Vec::new();
    while let Some(ev) = auth_events.try_recv() {
        assert!(!matches!(ev.kind, EventKind::Lagged { .. }), "the test lost authenticator events");
        events.push(ev.kind);
    }
    let totals = collector.totals().clone();
    // Every attempt ended exactly one way.
    let a = totals.attack(kind).expect("the attack is reported");
    let ends = [C::ConnectFailed, C::ClosedByAuth, C::ClosedByUs, C::OpenAtEnd, C::Failed];
    assert_eq!(
        ends.iter().map(|&c| a.counter(c)).sum::<u64>(),
        a.counter(C::Attempted),
        "{kind}: attempts and endings differ: {:?}",
        C::ALL.map(|c| (c.name(), a.counter(c)))
    );
    Run { totals, events, auth, kind }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_dropped_at_the_password_deadline() {
    let r = run(auth_config(), "silent:20,ips=2", Duration::from_secs(2)).await;
    assert_eq!(r.count(C::Attempted), 20);
    assert_eq!(r.count(C::ClosedByAuth), 20, "every silent connection was closed");
    let (n, min, max) = r.closed_after();
    assert_eq!(n, 20);
    assert!(min >= PASSWORD_TIMEOUT - Duration::from_millis(20), "closed after {min:?}");
    assert!(max < PASSWORD_TIMEOUT + Duration::from_millis(500), "closed after {max:?}");
    assert_eq!(r.failures_containing("no password before the password timeout"), 20, "{:?}", r.failures());
    assert_eq!((r.count(C::SentBytes), r.count(C::OpenAtEnd)), (0, 0));
    // Each got the banned status before it was dropped.
    assert!(r.count(C::ReceivedBytes) >= 20 * 15);
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_one_address_meet_the_per_source_cap() {
    // A long password deadline: only the cap ends the extra ones early.
    let cfg = auth_config().password_timeout(Duration::from_secs(5)).handshake_timeout(Duration::from_secs(5));
    let r = run(cfg, "silent:40,ips=1,ramp=200ms,hold=1500ms", Duration::from_millis(1500)).await;
    assert_eq!(r.count(C::Attempted), 40);
    assert_eq!(r.failures_containing("too many handshakes in progress from this source"), 24, "{:?}", r.failures());
    assert_eq!(r.count(C::ClosedByAuth), 24);
    let (_, _, max) = r.closed_after();
    assert!(max < Duration::from_millis(500), "the cap closes at once, not after {max:?}");
    assert_eq!(r.count(C::ClosedByUs), 16, "16 held until their hold= expired");
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_dropped_at_the_password_deadline_however_slowly_it_writes() {
    let r = run(auth_config(), "slowloris:6,ips=2,every=100ms", Duration::from_secs(2)).await;
    assert_eq!(r.count(C::ClosedByAuth), 6);
    assert_eq!(r.failures_containing("no password before the password timeout"), 6, "{:?}", r.failures());
    let (_, min, max) = r.closed_after();
    assert!(min >= PASSWORD_TIMEOUT - Duration::from_millis(20) && max < Duration::from_secs(1), "{min:?}..{max:?}");
    // One byte every 100 ms for ~400 ms each.
    assert!((6 * 3..=6 * 7).contains(&r.count(C::SentBytes)), "sent {}", r.count(C::SentBytes));
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_value_is_cut_at_the_handshake_value_limit() {
    let r = run(auth_config(), "oversize:6,ips=2,bytes=256KiB", Duration::from_secs(2)).await;
    assert_eq!(r.count(C::ClosedByAuth), 6);
    assert_eq!(r.failures_containing("exceeds 2048 bytes"), 6, "{:?}", r.failures());
    let (_, _, max) = r.closed_after();
    assert!(max < PASSWORD_TIMEOUT, "closed on the size, not a deadline: {max:?}");
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_at_once() {
    let r = run(auth_config(), "garbage:6,ips=2,bytes=100B", Duration::from_secs(2)).await;
    assert_eq!(r.count(C::ClosedByAuth), 6);
    assert_eq!(r.failures_containing("reading the password: invalid JSON"), 6, "{:?}", r.failures());
    assert_eq!(r.count(C::SentBytes), 600);
    let (_, _, max) = r.closed_after();
    assert!(max < PASSWORD_TIMEOUT, "{max:?}");
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_handshake_ends_at_the_handshake_deadline() {
    let r = run(auth_config(), "half-handshake:6,ips=2", Duration::from_secs(2)).await;
    assert_eq!(r.count(C::ClosedByAuth), 6);
    assert_eq!(r.count(C::Rejected), 0, "the password was right");
    assert_eq!(r.failures_containing("no peer address before the handshake timeout"), 6, "{:?}", r.failures());
    let (_, min, max) = r.closed_after();
    assert!(min >= HANDSHAKE_TIMEOUT - Duration::from_millis(20) && max < HANDSHAKE_TIMEOUT * 2, "{min:?}..{max:?}");
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_distribution_connection_ends_at_the_handshake_deadline_and_never_joins() {
    let r = run(auth_config(), "no-dist:6,ips=2", Duration::from_secs(2)).await;
    assert_eq!(r.count(C::ClosedByAuth), 6);
    assert_eq!(
        r.failures_containing("no distribution connection before the handshake timeout"),
        6,
        "{:?}",
        r.failures()
    );
    let (_, min, _) = r.closed_after();
    assert!(min >= HANDSHAKE_TIMEOUT - Duration::from_millis(20), "{min:?}");
    assert!(!r.events.iter().any(|e| matches!(e, EventKind::MemberJoined { source, .. } if attacker(*source))));
    // A joiner's leave ends on its side; the authenticator removes it when it reads the
    // close, a moment later (on a loaded machine, not always before this line).
    let left = tokio::time::timeout(Duration::from_secs(5), async {
        while r.auth.members().len() > 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(left.is_ok(), "everyone left at the end, but still listed: {:?}", r.auth.members());
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatter_on_the_distribution_socket_gets_no_list_back() {
    // One chatterer, after the honest joins: no membership change while it chatters.
    let r = run(auth_config(), "dist-chatter:1,ips=1,every=5ms,after=1s", Duration::from_secs(2)).await;
    assert_eq!(r.count(C::Admitted), 1, "the chatterer is a real member");
    assert!(r.count(C::ValuesWritten) >= 100, "wrote {}", r.count(C::ValuesWritten));
    assert_eq!(r.count(C::ListsReceived), 0, "{} values written, lists came back", r.count(C::ValuesWritten));
    assert_eq!(r.count(C::OpenAtEnd), 1, "still a member at the end");
    assert!(r.events.iter().any(|e| matches!(e, EventKind::MemberJoined { source, .. } if attacker(*source))));
    assert_eq!(r.removals_but_leaving(), Vec::<String>::new(), "no one was removed");
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_peer_address_is_refused_and_evicts_no_one() {
    for nat in [false, true] {
        let cfg = auth_config().foreign_peer_addresses(nat);
        let r = run(cfg, "spoof-address:4,ips=2,after=1s", Duration::from_secs(2)).await;
        assert_eq!(r.count(C::Attempted), 4, "nat={nat}");
        assert_eq!(r.count(C::ClosedByAuth), 4, "nat={nat}");
        assert_eq!(r.count(C::Admitted), 0, "nat={nat}");
        let expected = if nat { "belongs to another member" } else { "is not on the connection's source IP" };
        assert_eq!(r.failures_containing(expected), 4, "nat={nat}: {:?}", r.failures());
        assert_eq!(r.count(C::VictimsEvicted), 0, "nat={nat}");
        assert_eq!(r.removals_but_leaving(), Vec::<String>::new(), "nat={nat}");
        r.honest_ok();
    }
}

/// The eviction watch sees an impersonated member lose its membership, and only those: here
/// the authenticator stops, so every honest joiner loses it, but only the impersonated ones
/// count as victims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impersonated_member_that_loses_its_membership_counts_as_evicted() {
    let r = run_stopping(
        auth_config(),
        "spoof-address:3,ips=1,after=1s,ramp=10ms",
        Duration::from_secs(3),
        Some(Duration::from_millis(2500)),
    )
    .await;
    assert_eq!(r.count(C::Attempted), 3);
    assert_eq!(r.totals.counter(Counter::Joined), PEERS as u64);
    assert_eq!(r.totals.counter(Counter::Removed), PEERS as u64, "every joiner lost the stopped authenticator");
    // Three spoofs with consecutive sequence numbers pick three different members.
    assert_eq!(r.count(C::VictimsEvicted), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_is_survived() {
    let r = run(auth_config(), "reconnect-storm:4,ips=2,for=1s", Duration::from_secs(2)).await;
    let attempted = r.count(C::Attempted);
    assert!(attempted >= 100, "only {attempted} connects in 1 s");
    assert_eq!(r.count(C::ClosedByUs) + r.count(C::ConnectFailed), attempted);
    assert!(r.count(C::ClosedByUs) > 0);
    // The authenticator saw them: accepted and failed handshakes from the storm's addresses.
    assert!(r.failures().len() as u64 >= r.count(C::ClosedByUs) / 2, "{} failures", r.failures().len());
    assert!(r.auth.handshakes_in_progress() <= 1);
    r.honest_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_get_their_addresses_banned() {
    let cfg = auth_config().password_attempts(2);
    let r = run(cfg, "wrong-password:20/s,ips=1", Duration::from_secs(2)).await;
    let attempted = r.count(C::Attempted);
    assert!(attempted >= 20, "{attempted}");
    assert_eq!(r.count(C::Rejected), 2, "two wrong passwords, then the ban");
    assert_eq!(r.count(C::Banned), attempted - 2);
    assert_eq!(r.count(C::ClosedByAuth), attempted);
    assert_eq!(r.auth.banned(), vec!["127.0.31.1".parse::<IpAddr>().unwrap()]);
    r.honest_ok();
}
