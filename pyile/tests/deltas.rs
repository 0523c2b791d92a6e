//! Member-list deltas over loopback (`docs/protocol-2.md`): who gets a whole list and why,
//! who gets deltas, and what a joiner does with a bad one.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use pyile::wire::{Message, MessageReader};
use pyile::{Authenticator, EventKind, Joiner, LostReason, MemberList, TokioNet};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;

/// What a hand-driven member saw on its distribution connection.
#[derive(Default, Debug)]
struct Seen {
    /// Every value, in order.
    values: Vec<Message>,
    /// The list as applied (whole lists taken, deltas applied unless told to ignore them).
    list: Option<MemberList>,
}

/// Joins by hand from 127.0.0.x (`v2`: announcing protocol 2, versioned heartbeat answers
/// reporting the list held). Deltas are applied unless `ignore_deltas`. Returns the shared
/// view of what arrived; the tasks end when the authenticator closes.
async fn raw_member(auth: SocketAddr, host: u8, v2: bool, ignore_deltas: bool) -> watch::Receiver<Seen> {
    let local = ip(&format!("127.0.0.{host}"));
    let peer = TcpListener::bind(SocketAddr::new(local, 0)).await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let mut client = RawClient::connect(local, auth).await;
    let hs = client.handshake("pw", peer_addr, v2).await;
    let dist = connect_from(local, hs.dist_addr).await.unwrap();
    let (dist_r, mut dist_w) = dist.into_split();
    if v2 {
        dist_w.write_all(&Message::DistToken(hs.token.unwrap()).encode()).await.unwrap();
    }
    // A protocol-2 member's first list, in the handshake, is a committed one: the deltas
    // start from it.
    let first = v2.then(|| MemberList::new(hs.first_version, hs.first_list.clone()));
    let (tx, rx) = watch::channel(Seen { values: Vec::new(), list: first });
    let held = rx.clone();
    tokio::spawn(async move {
        let _keep = (peer, dist_w);
        let mut reader: MessageReader<OwnedReadHalf> = MessageReader::new(dist_r);
        while let Ok(m) = reader.next().await {
            tx.send_modify(|s| {
                match &m {
                    Message::Distro { members, version, .. } => {
                        let list = MemberList::new(*version, members.clone());
                        if s.list.as_ref().is_none_or(|l| l.is_superseded_by(&list)) {
                            s.list = Some(list);
                        }
                    }
                    Message::Delta(d) if !ignore_deltas => {
                        let next = s.list.as_ref().expect("a delta before any list").apply(d, usize::MAX);
                        s.list = Some(next.expect("a delta that does not apply"));
                    }
                    _ => {}
                }
                s.values.push(m);
            });
        }
    });
    let RawClient { mut reader, mut w, .. } = client;
    tokio::spawn(async move {
        while let Ok(m) = reader.next().await {
            if m.as_heartbeat().is_some() {
                let version = held.borrow().list.as_ref().and_then(|l| l.version).unwrap_or(0);
                let answer = Message::heartbeat(v2.then_some(version));
                if w.write_all(&answer.encode()).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn joiner(auth: &Authenticator, alias: &str) -> Joiner {
    Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", alias)).await.unwrap()
}

/// A reference-style (v1) member only ever gets whole lists; a protocol-2 member gets one
/// whole list, the committed one in its handshake, then only deltas (its own admission
/// first), and applying them gives the authenticator's list. No protocol-2 member, raw or
/// `Joiner`, is ever sent a second whole list.
#[tokio::test]
async fn a_v1_member_never_sees_a_delta_and_a_v2_member_gets_one_list_then_deltas() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let v1 = raw_member(auth.auth_addr(), 11, false, false).await;
    let v2 = raw_member(auth.auth_addr(), 12, true, false).await;
    let mut js = Vec::new();
    for i in 0..4 {
        js.push(joiner(&auth, &format!("j{i}")).await);
        tokio::time::sleep(Duration::from_millis(120)).await; // past the v1 pacing: a list each
    }
    js.pop().unwrap().leave().await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 6).await, "{:?}", auth.members());
    let want = auth.members();
    for (name, seen) in [("v1", &v1), ("v2", &v2)] {
        assert!(
            eventually(Duration::from_secs(3), || seen.borrow().list.as_ref() == Some(&want)).await,
            "{name} holds {:?}, the authenticator {want:?}",
            seen.borrow().list
        );
    }
    let v1 = v1.borrow();
    assert!(v1.values.iter().all(|m| matches!(m, Message::Distro { version: Some(_), .. })), "{:?}", v1.values);
    let v2 = v2.borrow();
    assert!(v2.values.len() >= 3 && v2.values.iter().all(|m| matches!(m, Message::Delta(_))), "{:?}", v2.values);
    let s = auth.distribution_stats();
    assert_eq!(s.snapshots_first, 0, "{s:?}");
    assert_eq!(s.snapshots_behind + s.snapshots_reported, 0, "{s:?}");
    assert!(s.v1_lists >= 4 && s.deltas >= 4, "{s:?}");
    // Every value each watcher read was one write (and the joiners had theirs).
    assert!(s.writes >= (v1.values.len() + v2.values.len()) as u64, "{s:?}");
    auth.leave().await;
}

/// A member whose heartbeat answers show it lacks a delta written to it long before gets a
/// whole list (here: it refuses every delta, so it gets one after each change).
#[tokio::test]
async fn a_member_that_reports_an_old_version_gets_a_snapshot() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let stubborn = raw_member(auth.auth_addr(), 13, true, true).await;
    let _j = joiner(&auth, "j").await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 3).await, "{:?}", auth.members());
    let want = auth.members();
    assert!(
        eventually(Duration::from_secs(2), || stubborn.borrow().list.as_ref() == Some(&want)).await,
        "no snapshot came: {:?}",
        stubborn.borrow().values
    );
    let s = auth.distribution_stats();
    assert!(s.snapshots_reported >= 1, "{s:?}");
    // A delta, then the whole list that replaced it.
    let seen = stubborn.borrow();
    assert!(matches!(seen.values[..], [Message::Delta(_), .., Message::Distro { .. }]), "{:?}", seen.values);
    auth.leave().await;
}

/// A writer behind by more versions than the history keeps sends a whole list; behind by
/// fewer, one merged delta; and a joiner that reconnects starts from its handshake's
/// committed list again, with deltas.
#[tokio::test]
async fn a_lagging_joiner_gets_a_merge_or_a_snapshot_and_a_reconnecting_one_a_snapshot() {
    let cfg = auth_config("pw").distribution_interval(Duration::from_millis(400)).delta_history(3);
    let auth = Authenticator::start(TokioNet, cfg).await.unwrap();
    let alice = joiner(&auth, "alice").await;
    assert!(eventually(Duration::from_secs(2), || alice.members().len() == 2).await);
    // Two joins inside alice's 400 ms gap: one merged delta when it ends.
    let burst = |n: usize, tag: &'static str| {
        let addr = auth.auth_addr();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..n {
                set.spawn(Joiner::join(TokioNet, addr, joiner_config("pw", &format!("{tag}{i}"))));
            }
            set.join_all().await.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        }
    };
    let mut first = burst(2, "a").await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 4).await);
    assert!(eventually(Duration::from_secs(2), || alice.members() == auth.members()).await);
    let s = auth.distribution_stats();
    assert!(s.merged >= 1 && s.snapshots_behind == 0, "{s:?}");
    // A merged write carried two deltas or more: fewer writes than values.
    assert!(s.writes >= 1 && s.writes < s.deltas + s.snapshots_first + s.v1_lists, "{s:?}");
    // Five inside the next gap: past the history of 3, a whole list.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let second = burst(5, "b").await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 9).await);
    assert!(eventually(Duration::from_secs(2), || alice.members() == auth.members()).await);
    let s = auth.distribution_stats();
    assert!(s.snapshots_behind >= 1, "{s:?}");
    // A reconnect: a new handshake, a committed list in it, deltas after.
    let before = auth.distribution_stats();
    let again = first.remove(0);
    again.leave().await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 8).await);
    let back = joiner(&auth, "a0-again").await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 9).await);
    assert!(eventually(Duration::from_secs(2), || back.members() == auth.members()).await);
    let after = auth.distribution_stats();
    assert_eq!(after.snapshots_first + after.snapshots_reported, 0, "{after:?}");
    assert!(after.deltas > before.deltas, "{before:?} → {after:?}");
    assert!(eventually(Duration::from_secs(2), || alice.members() == auth.members()).await);
    drop((first, second));
    auth.leave().await;
}

/// An authenticator that sends a delta removing an address the joiner does not hold is
/// broken or hostile: the joiner leaves, and says why.
#[tokio::test]
async fn a_malformed_delta_is_a_clear_error() {
    let auth_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dist_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (auth_addr, dist_addr) = (auth_l.local_addr().unwrap(), dist_l.local_addr().unwrap());
    let me: SocketAddr = "127.0.0.1:4999".parse().unwrap();
    let fake = tokio::spawn(async move {
        let (s, _) = auth_l.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = MessageReader::new(r);
        let send = |m: Message| m.encode();
        w.write_all(&send(Message::Banned { banned: false, version: Some(2), scram: false })).await.unwrap();
        assert!(matches!(r.next().await.unwrap(), Message::Shadow { .. }));
        w.write_all(&send(Message::Authenticated(true))).await.unwrap();
        let Message::PeerAddress(peer) = r.next().await.unwrap() else { panic!() };
        w.write_all(&send(Message::Distro { members: vec![me, peer], version: None, aliases: None })).await.unwrap();
        w.write_all(&send(Message::DistAddr { addr: dist_addr, token: Some(1) })).await.unwrap();
        let (d, _) = dist_l.accept().await.unwrap();
        let (dr, mut dw) = d.into_split();
        let mut dr = MessageReader::new(dr);
        assert_eq!(dr.next().await.unwrap(), Message::DistToken(1));
        dw.write_all(&send(Message::Distro { members: vec![me, peer], version: Some(1), aliases: None }))
            .await
            .unwrap();
        let bad = pyile::Delta {
            base: 1,
            version: 2,
            removed: vec!["127.0.0.9:9".parse().unwrap()],
            added: vec![],
            ..Default::default()
        };
        dw.write_all(&send(Message::Delta(bad))).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop((w, dw));
    });
    let mut j = Joiner::join(TokioNet, auth_addr, joiner_config("pw", "victim")).await.unwrap();
    let mut events = j.events().unwrap();
    let lost = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::AuthenticatorLost { .. }))
        .await
        .expect("the joiner kept a broken list");
    let EventKind::AuthenticatorLost { reason: LostReason::Error(e) } = lost.kind else { panic!("{lost:?}") };
    assert!(e.contains("malformed delta") && e.contains("127.0.0.9:9"), "{e}");
    assert_eq!(j.members().version, Some(1), "the list held before the bad delta");
    fake.abort();
}

/// Joiners of one process sharing their lists (a load generator's, a simulation's): each
/// delta is decoded and applied once, and the others take that step, so all of them hold the
/// one list and the one alias map of each version, equal to the authenticator's, and still
/// announce every join and leave (unless told not to).
#[tokio::test]
async fn joiners_sharing_lists_take_each_others_steps_and_hold_one_list_and_alias_map() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let lists = pyile::SharedLists::new();
    let cfg = |alias: &str| joiner_config("pw", alias).shared_lists(lists.clone());
    let mut watcher = Joiner::join(TokioNet, auth.auth_addr(), cfg("watcher")).await.unwrap();
    let mut quiet = Joiner::join(TokioNet, auth.auth_addr(), cfg("quiet").announcements(false)).await.unwrap();
    let mut js = Vec::new();
    for i in 0..8 {
        js.push(Joiner::join(TokioNet, auth.auth_addr(), cfg(&format!("s{i}"))).await.unwrap());
        tokio::time::sleep(Duration::from_millis(30)).await; // a delta each, mostly
    }
    for j in js.drain(..3) {
        j.close().await;
    }
    assert!(eventually(Duration::from_secs(3), || auth.members().len() == 8).await, "{:?}", auth.members());
    let want = auth.members();
    let all: Vec<&Joiner> = [&watcher, &quiet].into_iter().chain(js.iter()).collect();
    assert!(
        eventually(Duration::from_secs(3), || all.iter().all(|j| j.members() == want)).await,
        "every joiner holds the authenticator's list"
    );
    let (first, rest) = all.split_first().unwrap();
    for j in rest {
        assert!(j.members().same_as(&first.members()), "one list per version, not one per joiner");
        assert!(j.aliases().ptr_eq(&first.aliases()), "one alias map per version, not one per joiner");
    }
    let aliases: Vec<(SocketAddr, String)> = first.aliases().iter().map(|(a, s)| (*a, s.to_string())).collect();
    let want_aliases: Vec<(SocketAddr, String)> = auth.aliases().iter().map(|(a, s)| (*a, s.to_string())).collect();
    assert_eq!(aliases, want_aliases, "the aliases the steps carried are the authenticator's");
    let (shared, built) = lists.counts();
    assert!(shared > built, "steps and lists were shared: {shared} taken, {built} built");

    // The watcher announced every join from its own on (its first deltas start from the
    // committed list its handshake brought) and every leave; the quiet one none.
    let joins_and_leaves = |j: &mut Joiner| {
        let mut events = j.events().unwrap();
        let (mut joined, mut left) = (Vec::new(), Vec::new());
        while let Some(ev) = events.try_recv() {
            match ev.kind {
                EventKind::PeerJoined { alias, .. } => joined.push(alias.map(|a| a.to_string())),
                EventKind::PeerLeft { alias, .. } => left.push(alias.map(|a| a.to_string())),
                _ => {}
            }
        }
        (joined, left)
    };
    let (joined, left) = joins_and_leaves(&mut watcher);
    let mut expected: Vec<Option<String>> = vec![Some("watcher".into()), Some("quiet".into())];
    expected.extend((0..8).map(|i| Some(format!("s{i}"))));
    assert_eq!(joined, expected);
    assert_eq!(left, (0..3).map(|i| Some(format!("s{i}"))).collect::<Vec<_>>());
    assert_eq!(joins_and_leaves(&mut quiet), (vec![], vec![]), "announcements(false) emits none");
    auth.leave().await;
}

/// Deltas written back to back (changes within a member's distribution interval) are read
/// together: the joiner applies and announces each, but reports the run as one list change.
#[tokio::test]
async fn a_run_of_deltas_read_together_is_one_list_change_with_every_join_announced() {
    let auth = Authenticator::start(TokioNet, auth_config("pw").distribution_interval(Duration::from_millis(600)))
        .await
        .unwrap();
    let mut watcher = joiner(&auth, "watcher").await;
    let mut events = watcher.events().unwrap();
    // Past the watcher's own first writes and their gap: the joins below come in one gap.
    tokio::time::sleep(Duration::from_millis(800)).await;
    while events.try_recv().is_some() {}
    let mut js = Vec::new();
    for i in 0..5 {
        js.push(joiner(&auth, &format!("b{i}")).await);
    }
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 7).await, "{:?}", auth.members());
    let want = auth.members();
    assert!(eventually(Duration::from_secs(3), || watcher.members() == want).await, "{:?}", watcher.members());
    let (mut changes, mut joined) = (Vec::new(), 0);
    while let Some(ev) = events.try_recv() {
        match ev.kind {
            EventKind::MemberListChanged { list, .. } => changes.push(list.len()),
            EventKind::PeerJoined { .. } => joined += 1,
            _ => {}
        }
    }
    assert_eq!(joined, 5, "every join announced");
    assert_eq!(changes.last(), Some(&want.len()), "the last change reported is the list held");
    assert!(changes.len() < 5, "5 deltas in one or two writes, reported as {} changes: {changes:?}", changes.len());
    drop(js);
    auth.leave().await;
}

/// A protocol-2 joiner's first list, in its handshake, is a committed one, and its first
/// deltas apply to it: it holds the authenticator's versioned list (itself and everyone's
/// aliases in it) right after joining, long before a heartbeat answer could ask for a whole
/// list, and the authenticator never wrote one. (Applying the first deltas to the
/// provisional list instead skips them, and the joiner waits for a snapshot its answers
/// bring: caught here.)
#[tokio::test]
async fn a_joiners_first_list_is_committed_and_its_first_deltas_apply_to_it() {
    let slow_beats = |c: pyile::AuthenticatorConfig| {
        c.heartbeat_interval(Duration::from_secs(5)).heartbeat_timeout(Duration::from_secs(15))
    };
    let auth = Authenticator::start(TokioNet, slow_beats(auth_config("pw"))).await.unwrap();
    let alice = joiner(&auth, "alice").await;
    let bob = joiner(&auth, "bob").await;
    let carol = joiner(&auth, "carol").await;
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 4).await, "{:?}", auth.members());
    let want = auth.members();
    for j in [&alice, &bob, &carol] {
        assert!(
            eventually(Duration::from_millis(500), || j.members() == want).await,
            "{} holds {:?}, the authenticator {want:?}",
            j.peer_addr(),
            j.members()
        );
        assert!(j.members().version.is_some());
        for (other, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
            assert_eq!(j.aliases().get(&other.peer_addr()).map(|a| a.to_string()), Some(name.to_string()));
        }
    }
    let s = auth.distribution_stats();
    assert_eq!(s.snapshots_first + s.snapshots_behind + s.snapshots_reported, 0, "{s:?}");
    assert!(s.deltas >= 3, "{s:?}");
    auth.leave().await;
}
