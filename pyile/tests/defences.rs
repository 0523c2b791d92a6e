//! The authenticator's defences against hostile traffic, on real loopback sockets (port 0).
//!
//! Each test runs the attack against an authenticator with the defence and checks it holds,
//! and — where the defence is a setting — against one with it switched off and checks the
//! attack then works, so the test is known to see what it guards. Attackers connect from
//! their own loopback addresses (127.0.3.x and up), honest joiners from 127.0.0.1.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use pyile::wire::{Message, MessageReader};
use pyile::{Authenticator, AuthenticatorConfig, Error, EventKind, Joiner, TokioNet};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio::time::Instant;

const PW: &str = "sesame";

async fn start(cfg: AuthenticatorConfig) -> Authenticator {
    Authenticator::start(TokioNet, cfg).await.expect("start the authenticator")
}

fn raise_fd_limit(needed: u64) {
    let got = rlimit::increase_nofile_limit(needed).expect("raise RLIMIT_NOFILE");
    assert!(got >= needed, "open-file limit is {got}, this test needs {needed}");
}

/// Sends the first `n` bytes of a password that never ends; true if the authenticator closed
/// the connection within `limit` after that.
async fn unfinished_password(auth: SocketAddr, from: IpAddr, n: usize, limit: Duration) -> bool {
    let mut c = RawClient::connect(from, auth).await;
    c.expect_not_banned().await;
    let mut value = b"{\"shadow\": \"".to_vec();
    value.resize(n, b'a');
    // The write itself may fail once the authenticator gave up on the connection.
    let _ = c.w.write_all(&value).await;
    closed_within(c.reader.get_mut(), limit).await
}

#[tokio::test]
async fn a_value_before_the_password_is_bounded_by_the_handshake_limit() {
    let on = start(auth_config(PW)).await;
    assert!(
        unfinished_password(on.auth_addr(), ip("127.0.3.1"), 64 * 1024, Duration::from_secs(1)).await,
        "a 64 KiB unfinished password was still being buffered after 1 s"
    );
    // Switched off (the member-list bound, 1 MiB, as before): the connection stays open.
    let off = start(auth_config(PW).handshake_value_limit(1 << 20)).await;
    assert!(!unfinished_password(off.auth_addr(), ip("127.0.3.2"), 64 * 1024, Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_connection_that_sends_no_password_is_dropped_at_the_password_deadline() {
    let silent = |auth| async move {
        let mut c = RawClient::connect(ip("127.0.3.3"), auth).await;
        c.expect_not_banned().await;
        let t = Instant::now();
        closed_within(c.reader.get_mut(), Duration::from_millis(1500)).await.then(|| t.elapsed())
    };
    let on = start(auth_config(PW).password_timeout(Duration::from_millis(300))).await;
    let closed = silent(on.auth_addr()).await.expect("still open 1.5 s after the banned status");
    assert!(closed >= Duration::from_millis(250), "closed after {closed:?}");
    // Without it only the whole handshake's deadline (3 s here) applies.
    let off = start(auth_config(PW).password_timeout(Duration::from_secs(3))).await;
    assert_eq!(silent(off.auth_addr()).await, None);
}

/// 40 silent connections from each of 30 addresses, then 50 honest joiners from others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_30_addresses_do_not_lock_honest_joiners_out() {
    raise_fd_limit(8_000);
    let auth = start(auth_config(PW).max_handshakes(512).handshake_timeout(Duration::from_secs(30))).await;
    let addr = auth.auth_addr();
    let mut silent = Vec::new();
    for i in 0..30 * 40 {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 4, (i % 30) as u8 + 1));
        if let Ok(s) = connect_from(from, addr).await {
            silent.push(s);
        }
    }
    assert_eq!(silent.len(), 1200);
    // Every source holds at most its 16 slots: 480 of the 512.
    assert!(
        eventually(Duration::from_secs(2), || auth.handshakes_in_progress() == 480).await,
        "{} in progress",
        auth.handshakes_in_progress()
    );
    let mut joins = JoinSet::new();
    for i in 0..50u8 {
        joins.spawn(async move {
            let t = Instant::now();
            let cfg = joiner_config(PW, &format!("honest{i}")).local_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 5, i + 1)));
            Joiner::join(TokioNet, addr, cfg).await.map(|j| (j, t.elapsed()))
        });
    }
    let mut joined = Vec::new();
    while let Some(r) = joins.join_next().await {
        joined.push(r.unwrap().expect("an honest joiner was locked out"));
    }
    let slowest = joined.iter().map(|(_, t)| *t).max().unwrap();
    assert!(slowest < Duration::from_secs(2), "slowest honest join {slowest:?}");
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 51).await, "{:?}", auth.members());
    drop(silent);
}

/// A member that writes on its distribution connection gets no list for it.
#[tokio::test]
async fn writing_on_the_distribution_connection_never_causes_a_resend() {
    let auth = start(auth_config(PW)).await;
    let member = RawMember::join(auth.auth_addr(), ip("127.0.3.4"), PW).await;
    let mut dist = MessageReader::new(member.dist);
    // Its first value: the delta of its own admission (the handshake brought a committed list).
    let first = tokio::time::timeout(Duration::from_secs(2), dist.next()).await.unwrap().unwrap();
    assert!(matches!(first, Message::Delta(_)), "{first:?}");
    // Valid values (anything else is a protocol error that removes the member).
    for _ in 0..200 {
        dist.get_mut().write_all(&Message::Heartbeat.encode()).await.unwrap();
    }
    let mut lists = 0;
    let deadline = Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(m)) = tokio::time::timeout_at(deadline, dist.next()).await {
        assert!(matches!(m, Message::Distro { .. } | Message::Delta(_)), "{m:?}");
        lists += 1;
    }
    assert_eq!(lists, 0, "200 values written, {lists} lists sent back");
    assert_eq!(auth.members().len(), 2, "the member stays a member");
}

#[tokio::test]
async fn a_member_cannot_announce_or_evict_another_hosts_address() {
    for nat in [false, true] {
        let mut auth = start(auth_config(PW).foreign_peer_addresses(nat)).await;
        let mut events = auth.events().unwrap();
        let victim = RawMember::join(auth.auth_addr(), ip("127.0.3.5"), PW).await;
        let mut spoof = RawClient::connect(ip("127.0.3.6"), auth.auth_addr()).await;
        spoof.authenticate(PW, true).await;
        spoof.send(&Message::PeerAddress(victim.peer_addr)).await;
        if nat {
            // Listed provisionally to itself, but never admitted over the victim.
            let _ = spoof.recv(Duration::from_secs(2)).await;
            let Message::DistAddr { addr, token } = spoof.recv(Duration::from_secs(2)).await else { panic!() };
            let mut dist = connect_from(ip("127.0.3.6"), addr).await.unwrap();
            dist.write_all(&Message::DistToken(token.unwrap()).encode()).await.unwrap();
        }
        let failed = wait_for(
            &mut events,
            Duration::from_secs(2),
            |k| matches!(k, EventKind::HandshakeFailed { source, .. } if source.ip() == ip("127.0.3.6")),
        )
        .await
        .expect("the spoofing handshake did not fail");
        let EventKind::HandshakeFailed { error, .. } = failed.kind else { unreachable!() };
        let expected = if nat { "belongs to another member" } else { "not on the connection's source IP" };
        assert!(error.contains(expected), "nat={nat}: {error}");
        assert_eq!(auth.members().to_vec(), vec![auth.peer_addr(), victim.peer_addr], "nat={nat}");
    }
}

#[tokio::test]
async fn an_unspecified_listen_address_needs_an_advertised_one() {
    let any = "0.0.0.0:0".parse().unwrap();
    match Authenticator::start(TokioNet, auth_config(PW).listen(any)).await {
        Err(Error::Config(msg)) => assert!(msg.contains("advertise"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started on 0.0.0.0 without an advertised address"),
    }
    let auth = start(auth_config(PW).listen(any).advertise(ip("127.0.0.1"))).await;
    assert_eq!(auth.peer_addr().ip(), ip("127.0.0.1"));
    assert_eq!(auth.members().first().unwrap(), auth.peer_addr());
}

#[tokio::test]
async fn a_ban_expires_when_configured() {
    let auth = start(auth_config(PW).password_attempts(1).ban_for(Duration::from_millis(300))).await;
    let from = ip("127.0.3.7");
    let cfg = |pw: &str| joiner_config(pw, "x").local_ip(from);
    assert!(matches!(Joiner::join(TokioNet, auth.auth_addr(), cfg("wrong")).await, Err(Error::Authentication)));
    assert!(matches!(Joiner::join(TokioNet, auth.auth_addr(), cfg(PW)).await, Err(Error::Banned)));
    assert_eq!(auth.banned(), vec![from]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(auth.banned().is_empty());
    let j = Joiner::join(TokioNet, auth.auth_addr(), cfg(PW)).await.expect("join after the ban expired");
    j.leave().await;
}
