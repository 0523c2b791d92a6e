//! Many joiners at once on real loopback sockets (port 0), and the
//! leave/shutdown guarantees: no task or socket outlives its node.
//!
//! Joiners are spread over several source IPs (127.0.1.x) with
//! `JoinerConfig::local_ip`, as loadgen does, so no single address runs out
//! of ephemeral ports.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use pyile::{Authenticator, AuthenticatorConfig, EventKind, Joiner, JoinerConfig, LostReason, RemovalReason, TokioNet};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Raises the open-file soft limit to at least `needed` (up to the hard
/// limit); panics if the hard limit is too low for the test.
fn raise_fd_limit(needed: u64) {
    let got = rlimit::increase_nofile_limit(needed).expect("raise RLIMIT_NOFILE");
    assert!(got >= needed, "open-file limit is {got}, this test needs {needed}");
}

/// The i-th of `ips` loopback source addresses 127.0.1.1, 127.0.1.2, ...
fn source_ip(i: usize, ips: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, (i % ips) as u8 + 1))
}

/// The i-th of five source addresses 127.0.2.1..5 that no other test of this file binds:
/// the 1,000-joiner test runs beside this one on 127.0.1.x, and one of its peer listeners
/// could take a port this test's joiners gave up, so that "the port refuses connections
/// after the joiner ended" would fail for the other test's listener.
fn own_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, (i % 5) as u8 + 1))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_joiners_join_converge_and_leave() {
    const N: usize = 1000;
    const IPS: usize = 20;
    // Generous bounds: this is a correctness test on a 2-core machine, not a benchmark.
    const JOIN_BOUND: Duration = Duration::from_secs(60);
    const CONVERGE_BOUND: Duration = Duration::from_secs(90);
    const LEAVE_BOUND: Duration = Duration::from_secs(60);
    // Per joiner: auth + dist connection and peer listener on the joiner's
    // side, auth + dist connection on the authenticator's: 5 fds.
    raise_fd_limit((N * 5 + 1024) as u64);

    let mut auth = Authenticator::start(
        TokioNet,
        AuthenticatorConfig::new("pw")
            .listen("127.0.0.1:0".parse().unwrap())
            .handshake_timeout(Duration::from_secs(30))
            .heartbeat_interval(Duration::from_secs(2))
            .heartbeat_timeout(Duration::from_secs(20))
            // 50 joiners at once from each address are a flood to the per-source rule
            // (default 16): this test measures scale, as if each were its own host.
            .max_handshakes_per_source(N)
            .event_capacity(1 << 16),
    )
    .await
    .unwrap();
    let target = auth.auth_addr();
    let idle_tasks = auth.task_count();
    let mut events = auth.events().unwrap();
    // Count what the authenticator reports, as it happens.
    let counter = tokio::spawn(async move {
        let (mut joined, mut removed_closed, mut other) = (0usize, 0usize, Vec::new());
        while let Some(ev) = events.recv().await {
            match ev.kind {
                EventKind::MemberJoined { .. } => joined += 1,
                EventKind::MemberRemoved { reason: RemovalReason::Closed, .. } => removed_closed += 1,
                EventKind::MemberRemoved { .. } | EventKind::HandshakeFailed { .. } | EventKind::Lagged { .. } => {
                    other.push(ev.kind)
                }
                _ => {}
            }
        }
        (joined, removed_closed, other)
    });

    let cfg = JoinerConfig::new("pw")
        .handshake_timeout(Duration::from_secs(30))
        .heartbeat_interval(Duration::from_secs(2))
        .heartbeat_timeout(Duration::from_secs(20))
        // One PBKDF2 for the run, not one per joiner (RFC 5802 lets a client cache its keys;
        // loadgen does the same): this test is about scale, and an unoptimised build spends
        // ~0.1 s of CPU on each PBKDF2 of 4,096 iterations.
        .scram_key_cache(pyile::scram::KeyCache::new());

    // --- Join, all at once. ------------------------------------------------
    let start = Instant::now();
    let mut joins = JoinSet::new();
    for i in 0..N {
        let cfg = cfg.clone().alias(format!("j{i}")).local_ip(source_ip(i, IPS));
        joins.spawn(async move {
            let t0 = Instant::now();
            let r = Joiner::join(TokioNet, target, cfg).await;
            let took = t0.elapsed();
            r.map(|mut j| {
                // Not consumed here: drop the stream so events are not buffered.
                drop(j.events());
                // Record when this joiner first holds the full list.
                let mut watch = j.watch_members();
                let full = tokio::spawn(async move {
                    let _ = watch.wait_for(|l| l.len() == N + 1).await;
                    Instant::now()
                });
                (j, took, full)
            })
        });
    }
    let mut joiners = Vec::with_capacity(N);
    let mut join_times = Vec::with_capacity(N);
    let mut full_at = Vec::with_capacity(N);
    let mut errors = Vec::new();
    let joined_all = tokio::time::timeout(JOIN_BOUND, async {
        while let Some(r) = joins.join_next().await {
            match r.unwrap() {
                Ok((j, took, full)) => {
                    joiners.push(j);
                    join_times.push(took);
                    full_at.push(full);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
    })
    .await;
    assert!(joined_all.is_ok(), "joins not done within {JOIN_BOUND:?}: {} joined", joiners.len());
    let join_elapsed = start.elapsed();
    assert!(errors.is_empty(), "{} of {N} joins failed, e.g. {:?}", errors.len(), &errors[..errors.len().min(5)]);
    assert_eq!(joiners.len(), N);

    // --- Converge: every joiner holds the full list. ------------------------
    let converged = tokio::time::timeout(CONVERGE_BOUND.saturating_sub(join_elapsed), async {
        let mut last = start;
        for f in full_at {
            last = last.max(f.await.unwrap());
        }
        last
    })
    .await;
    let have_full = joiners.iter().filter(|j| j.members().len() == N + 1).count();
    let converged_at = converged
        .unwrap_or_else(|_| panic!("not converged within {CONVERGE_BOUND:?}: {have_full} of {N} hold the full list"));
    let converge_elapsed = converged_at - start;
    join_times.sort();
    eprintln!(
        "scale: {N} concurrent joiners over {IPS} source IPs: all joined in {join_elapsed:.2?} \
         (per join p50 {:.2?}, p99 {:.2?}, max {:.2?}); all hold the full {}-entry list after {converge_elapsed:.2?}",
        pct(&join_times, 0.5),
        pct(&join_times, 0.99),
        pct(&join_times, 1.0),
        N + 1,
    );

    // Everyone holds exactly the authenticator's list, authenticator first.
    let list = auth.members();
    assert_eq!(list.len(), N + 1);
    assert_eq!(list.first().unwrap(), auth.peer_addr());
    let mut addrs: Vec<SocketAddr> = joiners.iter().map(|j| j.peer_addr()).collect();
    addrs.push(auth.peer_addr());
    addrs.sort();
    let mut listed = list.to_vec();
    listed.sort();
    assert_eq!(listed, addrs, "the list is not exactly the joiners and the authenticator");
    for j in &joiners {
        assert_eq!(j.members(), list, "joiner {} holds another list", j.peer_addr());
        assert!(j.is_connected());
    }
    assert_eq!(auth.pending_joins(), 0);

    // --- Everyone leaves. ---------------------------------------------------
    let leave_start = Instant::now();
    let mut leaves = JoinSet::new();
    for j in joiners {
        leaves.spawn(async move {
            j.leave().await;
            j.task_count()
        });
    }
    let left_all = tokio::time::timeout(LEAVE_BOUND, async {
        while let Some(r) = leaves.join_next().await {
            assert_eq!(r.unwrap(), 0, "a joiner has tasks left after leave()");
        }
    })
    .await;
    assert!(left_all.is_ok(), "joiners did not leave within {LEAVE_BOUND:?}");
    assert!(
        eventually(LEAVE_BOUND, || auth.members().len() == 1 && auth.task_count() == idle_tasks).await,
        "after all left: {} members, {} tasks (idle: {idle_tasks})",
        auth.members().len(),
        auth.task_count()
    );
    eprintln!("scale: all {N} left and the authenticator is back to idle after {:.2?}", leave_start.elapsed());
    assert_eq!(auth.members().to_vec(), vec![auth.peer_addr()]);

    auth.leave().await;
    assert_eq!(auth.task_count(), 0);
    let (joined, removed_closed, other) = counter.await.unwrap();
    assert_eq!(joined, N);
    assert_eq!(removed_closed, N, "every member was removed because it closed its connection");
    assert!(other.is_empty(), "unexpected events: {:?}", &other[..other.len().min(5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_and_shutdown_end_every_task_and_socket() {
    const N: usize = 20;
    let mut auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut auth_events = auth.events().unwrap();
    let mut joiners = Vec::new();
    for i in 0..N {
        let mut j = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", &format!("j{i}")).local_ip(own_ip(i)))
            .await
            .unwrap();
        let events = j.events().unwrap();
        joiners.push((j, events));
    }
    assert!(eventually(Duration::from_secs(3), || joiners.iter().all(|(j, _)| j.members().len() == N + 1)).await);

    // One joiner leaves: its tasks end, its peer socket closes, the
    // authenticator removes it (Closed) and the others see the list shrink.
    let (gone, mut gone_events) = joiners.remove(0);
    let gone_addr = gone.peer_addr();
    gone.leave().await;
    assert_eq!(gone.task_count(), 0);
    assert!(!gone.is_connected());
    assert!(refuses(gone_addr).await, "the peer socket of a joiner that left still accepts");
    let ev = wait_for(&mut gone_events, Duration::from_secs(1), |k| matches!(k, EventKind::Left)).await;
    assert!(ev.is_some(), "no Left event");
    let removed =
        wait_for(&mut auth_events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberRemoved { .. })).await;
    assert!(
        matches!(removed.as_ref().map(|e| &e.kind), Some(EventKind::MemberRemoved { member, reason: RemovalReason::Closed }) if *member == gone_addr),
        "{removed:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), || joiners
            .iter()
            .all(|(j, _)| j.members().len() == N && !j.members().contains(&gone_addr)))
        .await
    );

    // The authenticator leaves: all of its tasks end, its three sockets close,
    // and every member sees its connection end and leaves by itself.
    let (a_auth, a_dist, a_peer) = (auth.auth_addr(), auth.dist_addr(), auth.peer_addr());
    auth.leave().await;
    assert_eq!(auth.task_count(), 0);
    for (what, addr) in [("auth", a_auth), ("distribution", a_dist), ("peer", a_peer)] {
        assert!(refuses(addr).await, "the authenticator's {what} socket still accepts after leave()");
    }
    assert!(
        wait_for(&mut auth_events, Duration::from_secs(1), |k| matches!(k, EventKind::Left)).await.is_some(),
        "no Left event from the authenticator"
    );
    // Left is the last event: the stream ends there.
    let end = tokio::time::timeout(Duration::from_secs(1), auth_events.recv()).await;
    assert!(matches!(end, Ok(None)), "the authenticator's event stream goes on after Left: {end:?}");
    for (j, events) in &mut joiners {
        tokio::time::timeout(Duration::from_secs(2), j.closed()).await.expect("member did not notice the loss");
        let lost = wait_for(events, Duration::from_secs(1), |k| matches!(k, EventKind::AuthenticatorLost { .. })).await;
        assert!(
            matches!(lost.as_ref().map(|e| &e.kind), Some(EventKind::AuthenticatorLost { reason: LostReason::Closed })),
            "member {} saw {lost:?}",
            j.peer_addr()
        );
        assert!(wait_for(events, Duration::from_secs(1), |k| matches!(k, EventKind::Left)).await.is_some());
        let end = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
        assert!(matches!(end, Ok(None)), "a joiner's event stream goes on after Left: {end:?}");
        assert_eq!(j.task_count(), 0);
        assert!(!j.is_connected());
        assert!(refuses(j.peer_addr()).await, "peer socket of {} outlived it", j.peer_addr());
    }
}
