//! One-connection protocol-2 members over loopback (`docs/protocol-2-extensions.md`, "One
//! connection"): the member lists come on the auth connection, between the heartbeats, so a
//! member costs its authenticator one socket instead of two.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use pyile::wire::{Message, MessageReader};
use pyile::{Authenticator, EventKind, Joiner, JoinerConfig, LostReason, MemberList, RemovalReason, TokioNet};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn one(alias: &str) -> JoinerConfig {
    joiner_config("pw", alias).one_connection(true)
}

async fn join(auth: &Authenticator, cfg: JoinerConfig) -> Joiner {
    Joiner::join(TokioNet, auth.auth_addr(), cfg).await.unwrap()
}

/// The aliases a joiner heard join, in order (from its events so far).
fn joined(events: &mut pyile::EventStream) -> (Vec<String>, u64) {
    let (mut names, mut skipped) = (Vec::new(), 0);
    while let Some(ev) = events.try_recv() {
        match ev.kind {
            EventKind::PeerJoined { alias, .. } => names.push(alias.map(|a| a.to_string()).unwrap_or_default()),
            EventKind::AnnouncementsSkipped { .. } => skipped += 1,
            _ => {}
        }
    }
    (names, skipped)
}

/// A one-connection member joins beside a two-connection one and a v1 one, hears every later
/// join through deltas on its auth connection (never a snapshot for having missed one), and
/// all of them hold the authenticator's list; it opened no distribution connection.
#[tokio::test]
async fn a_one_connection_member_gets_deltas_and_converges_with_two_connection_and_v1_members() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut single = join(&auth, one("single")).await;
    let mut single_events = single.events().unwrap();
    let double = join(&auth, joiner_config("pw", "double")).await;
    let v1 = join(&auth, joiner_config("pw", "v1").announce_extensions(false)).await;
    assert!(single.is_protocol2() && single.is_one_connection());
    assert!(!double.is_one_connection() && !v1.is_one_connection());
    assert_eq!(single.distribution_local_addr(), None);
    assert!(double.distribution_local_addr().is_some());
    assert_eq!(single.open_sockets(), 2, "the auth connection and the peer listener");
    assert_eq!(double.open_sockets(), 3, "the auth and distribution connections and the peer listener");
    assert_eq!(single.task_count() + 1, double.task_count(), "no distribution task");

    // Churn: joins (some one-connection) and leaves, graceful and not.
    let mut more = Vec::new();
    for i in 0..4 {
        let cfg = if i % 2 == 0 { one(&format!("m{i}")) } else { joiner_config("pw", &format!("m{i}")) };
        more.push(join(&auth, cfg).await);
    }
    more.remove(0).close().await;
    more.remove(0).leave().await;
    assert!(eventually(Duration::from_secs(3), || auth.members().len() == 6).await, "{:?}", auth.members());
    let want = auth.members();
    for j in [&single, &double, &v1].into_iter().chain(&more) {
        assert!(
            eventually(Duration::from_secs(3), || j.members() == want).await,
            "{} holds {:?}, the authenticator {want:?}",
            j.peer_addr(),
            j.members()
        );
    }
    assert_eq!(single.aliases(), double.aliases(), "the same aliases through either connection");
    let (names, skipped) = joined(&mut single_events);
    // From its own on: its first deltas start from the committed list of its handshake.
    assert_eq!(
        names,
        ["single", "double", "", "m0", "m1", "m2", "m3"].map(String::from),
        "announced joins (v1 has no alias)"
    );
    assert_eq!(skipped, 0, "no whole list replaced its deltas");

    // One socket per one-connection member at the authenticator: two-connection members
    // (double, v1, m1, m3) opened the only distribution connections.
    assert_eq!(auth.distribution_connections_accepted(), 4);
    let s = auth.distribution_stats();
    assert_eq!(s.snapshots_first, 0, "protocol-2 members' first lists are in their handshakes: {s:?}");
    assert_eq!(s.snapshots_reported + s.snapshots_behind, 0, "{s:?}");
    assert!(s.deltas >= 6 && s.v1_lists >= 1, "{s:?}");
    drop(more);
    auth.leave().await;
}

/// A one-connection member that hangs (stops reading and answering, sockets open) is removed
/// by the heartbeat timeout, and its hung sockets are two: the auth connection and the peer
/// listener.
#[tokio::test]
async fn a_hung_one_connection_member_is_removed_by_the_heartbeat_timeout() {
    let mut auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut auth_events = auth.events().unwrap();
    let alice = join(&auth, joiner_config("pw", "alice")).await;
    let bob = join(&auth, one("bob")).await;
    let bob_peer = bob.peer_addr();
    assert!(eventually(Duration::from_secs(3), || alice.members().contains(&bob_peer)).await);
    let hung = bob.hang().await;
    assert_eq!(hung.open_sockets(), 2, "{hung:?}");
    assert_eq!(bob.open_sockets(), 0);
    // Changes keep coming to the hung member (its lists now queue unread).
    let _carol = join(&auth, joiner_config("pw", "carol")).await;
    let removed = wait_for(
        &mut auth_events,
        Duration::from_secs(5),
        |k| matches!(k, EventKind::MemberRemoved { member, .. } if *member == bob_peer),
    )
    .await
    .expect("the authenticator removes the hung member");
    assert!(
        matches!(removed.kind, EventKind::MemberRemoved { reason: RemovalReason::HeartbeatTimeout, .. }),
        "{:?}",
        removed.kind
    );
    assert!(eventually(Duration::from_secs(3), || !alice.members().contains(&bob_peer)).await);
    drop(hung);
    alice.leave().await;
}

/// A one-connection member that leaves gracefully is removed as `left` and announced so; one
/// that closes its socket without a word as `closed`.
#[tokio::test]
async fn a_graceful_one_connection_leave_is_left_and_a_crash_is_closed() {
    let mut auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut events = auth.events().unwrap();
    let mut watcher = join(&auth, one("watcher")).await;
    let mut w_events = watcher.events().unwrap();
    let bob = join(&auth, one("bob")).await;
    let carol = join(&auth, one("carol")).await;
    let (b, c) = (bob.peer_addr(), carol.peer_addr());
    bob.close().await;
    assert_eq!(bob.task_count(), 0);
    let removed = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberRemoved { .. })).await;
    assert!(
        matches!(removed.as_ref().map(|e| &e.kind), Some(EventKind::MemberRemoved { member, reason: RemovalReason::Left }) if *member == b),
        "{removed:?}"
    );
    carol.leave().await;
    let removed = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberRemoved { .. })).await;
    assert!(
        matches!(removed.as_ref().map(|e| &e.kind), Some(EventKind::MemberRemoved { member, reason: RemovalReason::Closed }) if *member == c),
        "{removed:?}"
    );
    // The other one-connection member heard both, with their reasons.
    let mut left = Vec::new();
    while left.len() < 2 {
        let ev = wait_for(&mut w_events, Duration::from_secs(2), |k| matches!(k, EventKind::PeerLeft { .. })).await;
        let Some(EventKind::PeerLeft { peer, reason, .. }) = ev.map(|e| e.kind) else { panic!("{left:?}") };
        left.push((peer, reason.as_str().to_owned()));
    }
    assert_eq!(left, vec![(b, "left".to_owned()), (c, "closed".to_owned())]);
    watcher.leave().await;
}

/// A one-connection member joined by hand that refuses every delta: its heartbeat answers keep
/// reporting the version it holds, so the authenticator sends it whole lists on its auth
/// connection (reason `reported`), and it ends up holding the authenticator's list.
#[tokio::test]
async fn a_one_connection_member_that_reports_an_old_version_gets_a_snapshot() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let local = ip("127.0.0.21");
    let peer = TcpListener::bind(SocketAddr::new(local, 0)).await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut c = RawClient::connect(local, auth.auth_addr()).await;
    c.expect_not_banned().await;
    c.send(&Message::Shadow { password: "pw".into(), version: Some(2), alias: None, one_connection: true }).await;
    assert_eq!(c.recv(Duration::from_secs(2)).await, Message::Authenticated(true));
    c.send(&Message::PeerAddress(peer_addr)).await;
    // A committed first list (it ignores it: it holds nothing, and reports 0).
    assert!(matches!(c.recv(Duration::from_secs(2)).await, Message::Distro { version: Some(_), .. }));
    assert_eq!(c.recv(Duration::from_secs(2)).await, Message::ListsHere);
    c.send(&Message::ListsHere).await;
    let (tx, held) = watch::channel((None::<MemberList>, Vec::<Message>::new()));
    let RawClient { mut reader, mut w, .. } = c;
    let member = tokio::spawn(async move {
        let _keep = peer;
        while let Ok(m) = reader.next().await {
            if m.as_heartbeat().is_some() {
                let version = tx.borrow().0.as_ref().and_then(|l| l.version).unwrap_or(0);
                if w.write_all(&Message::heartbeat(Some(version)).encode()).await.is_err() {
                    return;
                }
                continue;
            }
            tx.send_modify(|(list, seen)| {
                if let Message::Distro { members, version, .. } = &m {
                    let l = MemberList::new(*version, members.clone());
                    if list.as_ref().is_none_or(|h| h.is_superseded_by(&l)) {
                        *list = Some(l);
                    }
                }
                seen.push(m);
            });
        }
    });
    let _j = join(&auth, joiner_config("pw", "j")).await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 3).await, "{:?}", auth.members());
    let want = auth.members();
    assert!(
        eventually(Duration::from_secs(3), || held.borrow().0.as_ref() == Some(&want)).await,
        "no snapshot came: {:?}",
        held.borrow().1
    );
    assert!(auth.distribution_stats().snapshots_reported >= 1, "{:?}", auth.distribution_stats());
    let seen = &held.borrow().1;
    assert!(
        matches!(seen[..], [Message::Delta(_), .., Message::Distro { .. }]),
        "a delta, then the whole list that replaced it: {seen:?}"
    );
    assert_eq!(auth.distribution_connections_accepted(), 1, "only j's");
    member.abort();
    auth.leave().await;
}

/// A hand-written authenticator: `v2` announces protocol 2 in `banned`; `grant` answers a
/// request for one connection with `lists_here` (else with a distribution address). Returns
/// the joiner's first handshake message, as raw JSON.
async fn fake_authenticator(auth_l: TcpListener, dist_l: TcpListener, v2: bool, grant: bool) -> serde_json::Value {
    let dist_addr = dist_l.local_addr().unwrap();
    let me: SocketAddr = "127.0.0.1:4999".parse().unwrap();
    let (s, _) = auth_l.accept().await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = MessageReader::new(r);
    let banned = Message::Banned { banned: false, version: v2.then_some(2), scram: false };
    w.write_all(&banned.encode()).await.unwrap();
    let first = r.next_value().await.unwrap();
    w.write_all(&Message::Authenticated(true).encode()).await.unwrap();
    let Message::PeerAddress(peer) = r.next().await.unwrap() else { panic!() };
    w.write_all(&Message::Distro { members: vec![me, peer], version: None, aliases: None }.encode()).await.unwrap();
    let asked = first.get("one_connection") == Some(&serde_json::Value::Bool(true));
    let list = Message::Distro { members: vec![me, peer], version: v2.then_some(1), aliases: None }.encode();
    let keep = if asked && grant {
        w.write_all(&Message::ListsHere.encode()).await.unwrap();
        assert_eq!(r.next().await.unwrap(), Message::ListsHere, "the joiner's echo");
        w.write_all(&list).await.unwrap();
        None
    } else {
        let token = v2.then_some(1);
        w.write_all(&Message::DistAddr { addr: dist_addr, token }.encode()).await.unwrap();
        let (d, _) = dist_l.accept().await.unwrap();
        let (dr, mut dw) = d.into_split();
        if v2 {
            let mut dr = MessageReader::new(dr);
            assert_eq!(dr.next().await.unwrap(), Message::DistToken(1));
        }
        dw.write_all(&list).await.unwrap();
        Some(dw)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop((w, keep));
    first
}

/// A joiner that asks for one connection never asks an authenticator that did not announce
/// protocol 2 (it sends exactly its usual `shadow` and takes the v1 distribution connection),
/// and follows a protocol-2 authenticator that answers with a distribution address anyway.
#[tokio::test]
async fn a_one_connection_joiner_falls_back_to_two_connections() {
    for (v2, grant) in [(false, false), (true, false), (true, true)] {
        let auth_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dist_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth_addr = auth_l.local_addr().unwrap();
        let fake = tokio::spawn(fake_authenticator(auth_l, dist_l, v2, grant));
        let j = Joiner::join(TokioNet, auth_addr, one("asker")).await.unwrap();
        let one_connection = v2 && grant;
        assert_eq!(j.is_one_connection(), one_connection, "v2 {v2}, grant {grant}");
        assert_eq!(j.open_sockets(), if one_connection { 2 } else { 3 });
        assert!(
            eventually(Duration::from_secs(1), || j.members().version == v2.then_some(1) && j.members().len() == 2)
                .await,
            "v2 {v2}, grant {grant}: {:?}",
            j.members()
        );
        j.leave().await;
        let first = fake.await.unwrap();
        let expected = if v2 {
            serde_json::json!({"alias": "asker", "one_connection": true, "pyile": 2, "shadow": "pw"})
        } else {
            // Exactly what it sends without asking: nothing but the announcement.
            serde_json::json!({"pyile": 2, "shadow": "pw"})
        };
        assert_eq!(first, expected, "v2 {v2}");
    }
}

/// A malformed delta on the auth connection is the same clear error as on a distribution
/// connection.
#[tokio::test]
async fn a_malformed_delta_on_the_auth_connection_is_a_clear_error() {
    let auth_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth_addr = auth_l.local_addr().unwrap();
    let me: SocketAddr = "127.0.0.1:4999".parse().unwrap();
    let fake = tokio::spawn(async move {
        let (s, _) = auth_l.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = MessageReader::new(r);
        w.write_all(&Message::Banned { banned: false, version: Some(2), scram: false }.encode()).await.unwrap();
        assert!(matches!(r.next().await.unwrap(), Message::Shadow { one_connection: true, .. }));
        w.write_all(&Message::Authenticated(true).encode()).await.unwrap();
        let Message::PeerAddress(peer) = r.next().await.unwrap() else { panic!() };
        let list = |version| Message::Distro { members: vec![me, peer], version, aliases: None }.encode();
        w.write_all(&list(None)).await.unwrap();
        w.write_all(&Message::ListsHere.encode()).await.unwrap();
        w.write_all(&list(Some(1))).await.unwrap();
        w.write_all(&Message::Heartbeat.encode()).await.unwrap();
        let bad = pyile::Delta {
            base: 1,
            version: 2,
            removed: vec!["127.0.0.9:9".parse().unwrap()],
            added: vec![],
            ..Default::default()
        };
        w.write_all(&Message::Delta(bad).encode()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(w);
    });
    let mut j = Joiner::join(TokioNet, auth_addr, one("victim")).await.unwrap();
    let mut events = j.events().unwrap();
    let lost = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::AuthenticatorLost { .. }))
        .await
        .expect("the joiner kept a broken list");
    let EventKind::AuthenticatorLost { reason: LostReason::Error(e) } = lost.kind else { panic!("{lost:?}") };
    assert!(e.contains("malformed delta") && e.contains("127.0.0.9:9"), "{e}");
    assert_eq!(j.members().version, Some(1), "the list held before the bad delta");
    fake.abort();
}
