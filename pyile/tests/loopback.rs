//! The authenticator and joiners on real loopback sockets (port 0).

mod common;

use std::time::Duration;

use common::*;
use pyile::{Authenticator, Delivery, Error, EventKind, Joiner, RemovalReason, TokioNet};

#[tokio::test]
async fn join_heartbeat_message_and_leave() {
    let mut auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut auth_events = auth.events().unwrap();
    let mut alice = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "alice")).await.unwrap();
    let mut bob = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "bob")).await.unwrap();
    let mut a_events = alice.events().unwrap();
    let mut b_events = bob.events().unwrap();

    // Everyone converges on [auth, alice, bob].
    let expected = vec![auth.peer_addr(), alice.peer_addr(), bob.peer_addr()];
    assert!(
        eventually(Duration::from_secs(3), || alice.members().to_vec() == expected
            && bob.members().to_vec() == expected)
        .await
    );
    assert_eq!(auth.members().to_vec(), expected);

    // Heartbeats flow for several intervals and nobody is removed.
    let mut beats = 0;
    while beats < 5 {
        let ev = wait_for(&mut b_events, INTERVAL * 4, |k| matches!(k, EventKind::HeartbeatReceived { .. })).await;
        assert!(ev.is_some(), "heartbeat {beats} missing");
        beats += 1;
    }
    assert_eq!(auth.members().len(), 3);

    // Broadcast from alice reaches bob and the authenticator.
    let report = alice.broadcast("hello all").await;
    assert_eq!((report.sent, report.delivered, report.failed), (2, 2, 0));
    let got = wait_for(&mut b_events, Duration::from_secs(2), |k| matches!(k, EventKind::MessageReceived { .. })).await;
    match got.map(|e| e.kind) {
        Some(EventKind::MessageReceived { from, alias, broadcast, data, .. }) => {
            assert_eq!(
                (from, alias.as_str(), broadcast, data.as_str()),
                (alice.peer_addr(), "alice", true, "hello all")
            );
        }
        other => panic!("bob got {other:?}"),
    }
    assert!(
        wait_for(
            &mut auth_events,
            Duration::from_secs(2),
            |k| matches!(k, EventKind::MessageReceived { data, .. } if data == "hello all")
        )
        .await
        .is_some()
    );

    // Direct message from bob to alice, echoed.
    assert_eq!(bob.send(alice.peer_addr(), "psst").await.unwrap(), Delivery::Echoed);
    let got = wait_for(&mut a_events, Duration::from_secs(2), |k| matches!(k, EventKind::MessageReceived { .. })).await;
    assert!(
        matches!(got.map(|e| e.kind), Some(EventKind::MessageReceived { broadcast: false, ref data, .. }) if data == "psst")
    );

    // Bob leaves: the authenticator removes him and alice sees the list shrink.
    let bob_peer = bob.peer_addr();
    bob.leave().await;
    assert_eq!(bob.task_count(), 0);
    assert!(tokio::net::TcpStream::connect(bob_peer).await.is_err(), "bob's peer socket outlived him");
    let removed =
        wait_for(&mut auth_events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberRemoved { .. })).await;
    assert!(
        matches!(removed.map(|e| e.kind), Some(EventKind::MemberRemoved { member, reason: RemovalReason::Closed }) if member == bob_peer)
    );
    assert!(
        eventually(Duration::from_secs(2), || alice.members().to_vec() == vec![auth.peer_addr(), alice.peer_addr()])
            .await
    );

    // The authenticator leaves: alice notices and ends by herself.
    auth.leave().await;
    assert_eq!(auth.task_count(), 0);
    tokio::time::timeout(Duration::from_secs(2), alice.closed()).await.expect("alice noticed the loss");
    assert!(
        wait_for(&mut a_events, Duration::from_secs(1), |k| matches!(k, EventKind::AuthenticatorLost { .. }))
            .await
            .is_some()
    );
    assert_eq!(alice.task_count(), 0);
}

#[tokio::test]
async fn wrong_password_until_ban_and_correct_password_clears_count() {
    let mut auth = Authenticator::start(TokioNet, auth_config("pw").password_attempts(3)).await.unwrap();
    let mut events = auth.events().unwrap();
    let target = auth.auth_addr();
    let ip2 = "127.0.0.2".parse().unwrap();
    let cfg = |pw: &str| joiner_config(pw, "mallory").local_ip(ip2);

    // Two failures, then a success clears the count ...
    for _ in 0..2 {
        assert!(matches!(Joiner::join(TokioNet, target, cfg("nope")).await, Err(Error::Authentication)));
    }
    let ok = Joiner::join(TokioNet, target, cfg("pw")).await.unwrap();
    ok.leave().await;
    // ... so two more failures still do not ban (no off-by-one) ...
    for _ in 0..2 {
        assert!(matches!(Joiner::join(TokioNet, target, cfg("nope")).await, Err(Error::Authentication)));
    }
    assert!(auth.banned().is_empty());
    // ... and the third consecutive failure does.
    assert!(matches!(Joiner::join(TokioNet, target, cfg("nope")).await, Err(Error::Authentication)));
    assert_eq!(auth.banned(), vec![ip2]);
    assert!(
        wait_for(&mut events, Duration::from_secs(1), |k| matches!(k, EventKind::Banned { ip } if *ip == ip2))
            .await
            .is_some()
    );
    // Banned: even the right password gets {"banned": true}.
    assert!(matches!(Joiner::join(TokioNet, target, cfg("pw")).await, Err(Error::Banned)));
    // Other IPs are unaffected.
    let other = Joiner::join(TokioNet, target, joiner_config("pw", "carol")).await.unwrap();
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 2).await);
    other.leave().await;
    auth.leave().await;
}

#[tokio::test]
async fn attempts_of_one_bans_on_first_failure() {
    let auth = Authenticator::start(TokioNet, auth_config("pw").password_attempts(1)).await.unwrap();
    let ip: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let cfg = |pw: &str| joiner_config(pw, "m").local_ip(ip);
    assert!(matches!(Joiner::join(TokioNet, auth.auth_addr(), cfg("x")).await, Err(Error::Authentication)));
    assert!(matches!(Joiner::join(TokioNet, auth.auth_addr(), cfg("pw")).await, Err(Error::Banned)));
    auth.leave().await;
}

/// Under a burst of changes a reference (v1) member's lists are spaced by the
/// distribution budget (so a join storm coalesces instead of flooding every
/// member), while a change after a quiet spell is still sent at once. A
/// protocol-2 member in the same burst gets deltas, unpaced by the budget:
/// every change within the distribution interval.
#[tokio::test]
async fn a_burst_of_changes_coalesces_within_the_distribution_budget() {
    let interval = Duration::from_secs(1);
    // A budget of 1 byte/s makes every round cost the cap (the heartbeat timeout).
    let cfg = auth_config("pw").heartbeat_interval(interval).heartbeat_timeout(interval * 2).distribution_budget(1);
    let gap = cfg.max_distribution_gap();
    assert_eq!(gap, interval * 2);
    let auth = Authenticator::start(TokioNet, cfg).await.unwrap();
    let joiner_cfg =
        |alias: &str| joiner_config("pw", alias).heartbeat_interval(interval).heartbeat_timeout(interval * 5);
    let mut alice =
        Joiner::join(TokioNet, auth.auth_addr(), joiner_cfg("alice").announce_extensions(false)).await.unwrap();
    let mut lists = alice.events().unwrap();
    let mut bob = Joiner::join(TokioNet, auth.auth_addr(), joiner_cfg("bob")).await.unwrap();
    let mut bob_lists = bob.events().unwrap();
    assert!(eventually(gap * 2, || alice.members().len() == 3 && bob.members().len() == 3).await);
    tokio::time::sleep(gap + interval / 2).await; // quiet: alice's writer is idle again
    while lists.try_recv().is_some() {}
    while bob_lists.try_recv().is_some() {}
    let before = auth.distribution_stats();

    // A burst of 12 joins, 30 ms apart: wider than the 10 ms distribution
    // interval, well inside the budget's gap.
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..12 {
        joins.spawn(Joiner::join(TokioNet, auth.auth_addr(), joiner_cfg(&format!("j{i}"))));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let burst: Vec<Joiner> = joins.join_all().await.into_iter().map(Result::unwrap).collect();
    // Bob, protocol 2, has the whole burst as soon as the last join is done.
    assert!(eventually(interval / 4, || bob.members() == auth.members()).await, "bob lags: {:?}", bob.members());
    assert!(eventually(gap * 2, || alice.members().len() == 15).await, "alice never saw the whole burst");
    let mut received = 0;
    while let Some(ev) = lists.try_recv() {
        received += matches!(ev.kind, EventKind::MemberListChanged { .. }) as usize;
    }
    // 12 changes; the first goes out at once, the rest coalesce once per gap.
    assert!(received <= 4, "alice received {received} lists for a burst of 12 changes");
    let mut bob_received = 0;
    while let Some(ev) = bob_lists.try_recv() {
        bob_received += matches!(ev.kind, EventKind::MemberListChanged { .. }) as usize;
    }
    assert!(bob_received >= 8, "bob received {bob_received} lists for a burst of 12 changes 30 ms apart");
    // Bob's came as deltas (no snapshot in the burst), alice's as whole lists.
    let after = auth.distribution_stats();
    assert!(after.deltas >= before.deltas + bob_received as u64 - 1, "{before:?} → {after:?}");
    assert_eq!(after.snapshots_first, 0, "the burst's joiners got their committed first lists in the handshake");
    assert_eq!(after.snapshots_behind + after.snapshots_reported, 0, "{after:?}");
    assert!(after.v1_lists - before.v1_lists <= 4, "{after:?}");

    // Quiet again, then one change: it is sent at once, not after a gap.
    tokio::time::sleep(gap + interval / 2).await;
    let start = tokio::time::Instant::now();
    let late = Joiner::join(TokioNet, auth.auth_addr(), joiner_cfg("late")).await.unwrap();
    assert!(eventually(Duration::from_secs(3), || alice.members().len() == 16).await);
    assert!(start.elapsed() < interval / 2, "a lone change took {:?}", start.elapsed());
    assert!(eventually(Duration::from_secs(1), || bob.members() == auth.members()).await);

    for j in burst.into_iter().chain([late]) {
        j.leave().await;
    }
    bob.leave().await;
    alice.leave().await;
    auth.leave().await;
}

#[tokio::test]
async fn a_port_that_accepts_but_never_greets_is_named_in_the_error() {
    // Something listens, but it is not an authenticator: it never sends the banned status.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = silent.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let cfg = joiner_config("pw", "x").handshake_timeout(Duration::from_millis(300));
    let err = Joiner::join(TokioNet, target, cfg).await.err().expect("joined a port that never greets");
    assert_eq!(err.kind(), "timed_out");
    let text = pyile::error::report(&err);
    assert!(text.starts_with("timed out after 300ms waiting for the authenticator's greeting"), "{text}");
    assert!(text.contains("is it a Pyile authenticator?"), "{text}");
}

/// `hang` is a silent death: nothing is closed, so the authenticator only removes the
/// member when its heartbeat timeout expires, never as `Closed`; the sockets stay open until
/// the `Hung` is dropped. (A `leave` or a drop in its place is removed as `Closed` at once
/// and fails every assertion on the reason and the delay.)
#[tokio::test]
async fn a_hung_joiner_keeps_its_sockets_open_until_the_heartbeat_timeout_removes_it() {
    let timeout = INTERVAL * 3; // auth_config's heartbeat timeout
    let mut auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut auth_events = auth.events().unwrap();
    let alice = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "alice")).await.unwrap();
    let mut bob = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "bob")).await.unwrap();
    let mut b_events = bob.events().unwrap();
    let bob_peer = bob.peer_addr();
    assert!(eventually(Duration::from_secs(3), || alice.members().contains(&bob_peer)).await);

    // The last heartbeat bob answers: the authenticator hears nothing from him after it.
    let mut last_beat = None;
    for _ in 0..3 {
        let ev = wait_for(&mut b_events, INTERVAL * 4, |k| matches!(k, EventKind::HeartbeatReceived { .. })).await;
        last_beat = Some(ev.expect("bob hears heartbeats").at);
    }
    let hung = bob.hang().await;
    while let Some(ev) = b_events.try_recv() {
        if matches!(ev.kind, EventKind::HeartbeatReceived { .. }) {
            last_beat = Some(ev.at);
        }
    }
    let last_beat = last_beat.unwrap();
    assert_eq!(hung.peer_addr(), bob_peer);
    assert_eq!(hung.open_sockets(), 3, "auth and distribution connections and the peer listener: {hung:?}");
    assert!(!bob.is_connected());
    assert_eq!(bob.task_count(), 0);
    assert!(matches!(bob.send(alice.peer_addr(), "from beyond").await, Err(Error::Closed)));
    // The peer listener is still bound and listening (the kernel completes the connect).
    let probe = tokio::net::TcpStream::connect(bob_peer).await;
    assert!(probe.is_ok(), "bob's peer socket was closed by the hang: {probe:?}");
    drop(probe);

    let removed = wait_for(
        &mut auth_events,
        Duration::from_secs(5),
        |k| matches!(k, EventKind::MemberRemoved { member, .. } if *member == bob_peer),
    )
    .await
    .expect("the authenticator removes the hung member");
    assert!(
        matches!(removed.kind, EventKind::MemberRemoved { reason: RemovalReason::HeartbeatTimeout, .. }),
        "removed as {:?}, not by the heartbeat timeout: something was closed",
        removed.kind
    );
    let silent = removed.at.saturating_duration_since(last_beat);
    assert!(silent >= timeout, "removed {silent:?} after bob's last answer, before the {timeout:?} timeout");
    assert!(eventually(Duration::from_secs(3), || !alice.members().contains(&bob_peer)).await);

    // Dropping the Hung closes what it held.
    drop(hung);
    assert!(
        eventually(Duration::from_secs(2), || std::net::TcpStream::connect(bob_peer).is_err()).await,
        "bob's peer socket outlived the Hung"
    );
    alice.leave().await;
    auth.leave().await;
}

/// A consumer done with list events (loadgen's joiners, once converged) stops them: the
/// joiner's list still follows every change, but no `MemberListChanged` arrives, while other
/// events (heartbeats) still do.
#[tokio::test]
async fn a_stream_that_stops_list_changes_gets_none_while_the_list_still_follows() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut alice = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "alice")).await.unwrap();
    let mut events = alice.events().unwrap();
    let bob = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "bob")).await.unwrap();
    assert!(
        wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberListChanged { .. }))
            .await
            .is_some(),
        "list events come until stopped"
    );
    events.stop_list_changes();
    while events.try_recv().is_some() {}
    let carol = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "carol")).await.unwrap();
    bob.close().await;
    assert!(
        eventually(Duration::from_secs(2), || alice.members() == auth.members() && alice.members().len() == 3).await
    );
    let mut beats = 0;
    let until = tokio::time::Instant::now() + INTERVAL * 5;
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, events.recv()).await {
        assert!(!matches!(ev.kind, EventKind::MemberListChanged { .. }), "a list event after the stop: {ev:?}");
        beats += usize::from(matches!(ev.kind, EventKind::HeartbeatReceived { .. }));
    }
    assert!(beats > 0, "other events still come");
    drop(carol);
}
