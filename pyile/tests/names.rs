//! Unique names, join/leave announcements and graceful leaves (issue 12, parts 1, 2 and 5)
//! on real loopback sockets: protocol-2 joiners join under an alias the authenticator keeps
//! unique among live members, hear every join and leave (with its reason) in order, and
//! tell a graceful leave from a crash.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pyile::{Authenticator, Departure, Error, EventKind, EventStream, Joiner, RemovalReason, TokioNet};

async fn join(auth: &Authenticator, alias: &str) -> Result<Joiner, Error> {
    Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", alias)).await
}

/// The announcements in `events` over the next `window`: (peer, alias, reason) with
/// `reason` None for a join.
async fn announcements(
    events: &mut EventStream,
    window: Duration,
) -> Vec<(SocketAddr, Option<String>, Option<Departure>)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        match ev.kind {
            EventKind::PeerJoined { peer, alias, .. } => out.push((peer, alias.map(|a| a.to_string()), None)),
            EventKind::PeerLeft { peer, alias, reason, .. } => {
                out.push((peer, alias.map(|a| a.to_string()), Some(reason)))
            }
            EventKind::AnnouncementsSkipped { from, to } => panic!("announcements skipped v{from} -> v{to}"),
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_joins_with_one_alias_give_exactly_one_member() {
    let auth = Arc::new(Authenticator::start(TokioNet, auth_config("pw")).await.unwrap());
    for round in 0..10 {
        let alias = format!("bob{round}");
        // Eight joins released at once, on four threads: they reach the password check together.
        let gate = Arc::new(tokio::sync::Barrier::new(8));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (auth, gate, alias) = (auth.clone(), gate.clone(), alias.clone());
            set.spawn(async move {
                gate.wait().await;
                join(&auth, &alias).await
            });
        }
        let mut members = Vec::new();
        let mut refused = 0;
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok(j) => members.push(j),
                Err(Error::AliasTaken { alias: a }) => {
                    assert_eq!(a, alias);
                    refused += 1;
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!((members.len(), refused), (1, 7), "round {round}: exactly one bob");
        // The authenticator admits a joiner once its distribution connection arrives, just
        // after the joiner's side of the handshake ends.
        assert!(eventually(Duration::from_secs(2), || auth.members().len() == 2).await, "round {round}");
        let listed: Vec<_> = auth.aliases().into_iter().filter(|(_, a)| **a == *alias).collect();
        assert_eq!(listed.len(), 1, "round {round}: {listed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(auth.members().len(), 2, "round {round}: the authenticator and one bob");
        for j in members {
            j.close().await;
        }
        assert!(eventually(Duration::from_secs(2), || auth.members().len() == 1).await);
        assert!(auth.aliases().is_empty(), "round {round}: the alias is freed");
    }
}

#[tokio::test]
async fn a_taken_alias_is_refused_with_a_reason_and_freed_when_its_member_goes() {
    let auth = Authenticator::start(TokioNet, auth_config("pw").password_attempts(2)).await.unwrap();
    let bob = join(&auth, "bob").await.unwrap();
    let err = join(&auth, "bob").await.err().expect("a second bob");
    assert!(matches!(err, Error::AliasTaken { ref alias } if alias == "bob"), "{err:?}");
    assert_eq!(err.kind(), "alias_taken");
    assert_eq!(err.to_string(), "alias \"bob\" is taken: another member of this network uses it; choose another alias");
    // Refusals are not wrong passwords: however many, the source is not banned.
    for _ in 0..4 {
        assert!(matches!(join(&auth, "bob").await, Err(Error::AliasTaken { .. })));
    }
    assert!(auth.banned().is_empty());
    // Freed by a graceful leave...
    bob.close().await;
    let bob = join(&auth, "bob").await.expect("bob again after a leave");
    // ...and by a crash once the authenticator has removed it.
    bob.leave().await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 1).await);
    let bob = join(&auth, "bob").await.expect("bob again after a crash");
    // A failed handshake holding the alias frees it too: a joiner that gives up before
    // sending its peer address.
    drop(bob);
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 1).await);
    let mut raw = RawClient::connect(ip("127.0.0.1"), auth.auth_addr()).await;
    raw.expect_not_banned().await;
    raw.send(&pyile::wire::Message::Shadow {
        password: "pw".into(),
        version: Some(2),
        alias: Some("carol".into()),
        one_connection: false,
    })
    .await;
    assert_eq!(raw.recv(Duration::from_secs(2)).await, pyile::wire::Message::Authenticated(true));
    assert!(matches!(join(&auth, "carol").await, Err(Error::AliasTaken { .. })), "held by the handshake");
    drop(raw);
    assert!(
        eventually(Duration::from_secs(3), || auth.handshakes_in_progress() == 0).await,
        "the abandoned handshake ends"
    );
    join(&auth, "carol").await.expect("carol is free once that handshake failed");
}

#[tokio::test]
async fn bad_aliases_are_refused_without_counting_toward_bans() {
    let auth = Authenticator::start(TokioNet, auth_config("pw").password_attempts(2).max_alias_len(8)).await.unwrap();
    for bad in ["", "123456789", "a\nb", "tab\there", "\u{7f}"] {
        let err = join(&auth, bad).await.err().unwrap_or_else(|| panic!("{bad:?} admitted"));
        assert!(matches!(err, Error::BadAlias { .. }), "{bad:?}: {err:?}");
        assert_eq!(err.kind(), "bad_alias");
    }
    assert!(auth.banned().is_empty());
    // Eight bytes of UTF-8 are fine, whatever the characters.
    join(&auth, "zoë·ok").await.expect("a multi-byte alias within the bound");
}

#[tokio::test]
async fn v1_joiners_and_joiners_without_alias_have_none() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let plain =
        Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "x").announce_extensions(false)).await.unwrap();
    assert!(!plain.is_protocol2());
    let anonymous =
        Joiner::join(TokioNet, auth.auth_addr(), pyile::JoinerConfig::new("pw").local_ip("127.0.0.1".parse().unwrap()))
            .await
            .unwrap();
    // A v1 joiner sending "x" and another presenting nothing leave "x" free.
    let x = join(&auth, "x").await.expect("x is free");
    assert!(eventually(Duration::from_secs(2), || x.members().len() == 4 && x.aliases().len() == 1).await);
    assert_eq!(x.find_alias("x"), Some(x.peer_addr()));
    assert_eq!(x.aliases().get(&anonymous.peer_addr()), None);
    assert_eq!(auth.aliases().len(), 1);
}

#[tokio::test]
async fn members_hear_every_join_and_leave_with_its_alias_and_reason() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut alice = join(&auth, "alice").await.unwrap();
    let mut events = alice.events().unwrap();
    let bob = join(&auth, "bob").await.unwrap();
    let carol = join(&auth, "carol").await.unwrap();
    assert!(eventually(Duration::from_secs(2), || alice.find_alias("carol") == Some(carol.peer_addr())).await);
    let (a, b, c) = (alice.peer_addr(), bob.peer_addr(), carol.peer_addr());
    bob.close().await; // graceful
    carol.leave().await; // a crash: the connections close without a word
    let heard = announcements(&mut events, Duration::from_millis(500)).await;
    // Its own join first: its first deltas start from the committed list of its handshake.
    assert_eq!(
        heard,
        vec![
            (a, Some("alice".into()), None),
            (b, Some("bob".into()), None),
            (c, Some("carol".into()), None),
            (b, Some("bob".into()), Some(Departure::Left)),
            (c, Some("carol".into()), Some(Departure::Closed)),
        ]
    );
    assert_eq!(alice.aliases().len(), 1, "only alice is left with an alias: {:?}", alice.aliases());
}

#[tokio::test]
async fn a_graceful_leave_is_removed_as_left_and_a_crash_is_not() {
    let mut auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut events = auth.events().unwrap();
    let bob = join(&auth, "bob").await.unwrap();
    let carol = join(&auth, "carol").await.unwrap();
    let (b, c) = (bob.peer_addr(), carol.peer_addr());
    bob.close().await;
    assert_eq!(bob.task_count(), 0);
    let removed = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberRemoved { .. })).await;
    assert!(
        matches!(removed.as_ref().map(|e| &e.kind), Some(EventKind::MemberRemoved { member, reason: RemovalReason::Left }) if *member == b),
        "{removed:?}"
    );
    // The joiner that left did not report its authenticator lost: it left.
    carol.leave().await;
    let removed = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberRemoved { .. })).await;
    assert!(
        matches!(removed.as_ref().map(|e| &e.kind), Some(EventKind::MemberRemoved { member, reason: RemovalReason::Closed }) if *member == c),
        "{removed:?}"
    );
}

#[tokio::test]
async fn a_member_behind_gets_every_missed_delta_not_one_merge() {
    // A long distribution interval: each writer sleeps 250 ms after a write, so a member is
    // several versions behind when it writes again. A join and a leave within that window
    // must both be announced (a merged delta would hide them), in the authenticator's order.
    let mut auth = Authenticator::start(
        TokioNet,
        auth_config("pw").distribution_interval(Duration::from_millis(250)).heartbeat_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let mut auth_events = auth.events().unwrap();
    let mut watcher = join(&auth, "watcher").await.unwrap();
    let mut events = watcher.events().unwrap();
    // Wait for its first whole list, then churn inside one interval.
    assert!(eventually(Duration::from_secs(2), || watcher.members().version.is_some()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = join(&auth, "a").await.unwrap();
    let b = join(&auth, "b").await.unwrap();
    let (pa, pb) = (a.peer_addr(), b.peer_addr());
    a.close().await;
    let c = join(&auth, "c").await.unwrap();
    b.leave().await;
    let pc = c.peer_addr();
    let heard = announcements(&mut events, Duration::from_millis(1500)).await;
    assert_eq!(
        heard,
        vec![
            (watcher.peer_addr(), Some("watcher".into()), None),
            (pa, Some("a".into()), None),
            (pb, Some("b".into()), None),
            (pa, Some("a".into()), Some(Departure::Left)),
            (pc, Some("c".into()), None),
            (pb, Some("b".into()), Some(Departure::Closed)),
        ]
    );
    let stats = auth.distribution_stats();
    assert!(stats.merged > 0, "the watcher was behind: several deltas in one write ({stats:?})");
    assert_eq!(stats.snapshots_behind + stats.snapshots_reported, 0, "{stats:?}");
    // The authenticator's own account agrees.
    let mut removed = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(50), auth_events.recv()).await {
        if let EventKind::MemberRemoved { member, reason } = ev.kind {
            removed.push((member, reason));
        }
    }
    assert_eq!(removed, vec![(pa, RemovalReason::Left), (pb, RemovalReason::Closed)]);
}
