//! Hostile input on real loopback sockets (port 0): bad connections on the
//! auth and distribution ports while honest joiners join, bad input from a
//! member after it joined, a half-open member, and a message connection from
//! a non-member IP.
//!
//! Every hostile connection comes from its own loopback address (127.0.2.x),
//! so each `HandshakeFailed` event can be attributed to the kind of abuse
//! that caused it.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use pyile::wire::Message;
use pyile::{Authenticator, Event, EventKind, EventStream, Joiner, RemovalReason, TokioNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Every event that is ready now or arrives within the next `window`.
async fn drain(events: &mut EventStream, window: Duration) -> Vec<Event> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        out.push(ev);
    }
    out
}

/// Largest amount of data the kernel may hold between a writer and a reader
/// on one loopback TCP connection (receive plus send buffer maxima).
fn kernel_buffer_allowance() -> usize {
    let max_of = |path: &str| -> Option<usize> {
        let s = std::fs::read_to_string(path).ok()?;
        s.split_whitespace().last()?.parse().ok()
    };
    match (max_of("/proc/sys/net/ipv4/tcp_rmem"), max_of("/proc/sys/net/ipv4/tcp_wmem")) {
        (Some(r), Some(w)) => r + w,
        _ => 64 << 20,
    }
}

/// Writes `{"shadow": "aaaa…` forever from `local` until the authenticator
/// closes the connection; returns how many bytes the kernel accepted, or
/// panics if the connection is still open after `give_up` bytes or `limit`.
async fn endless_string(auth: SocketAddr, local: IpAddr, give_up: usize, limit: Duration) -> usize {
    let mut stream = connect_from(local, auth).await.unwrap();
    let mut written = 0usize;
    let chunk = vec![b'a'; 16 * 1024];
    let result = tokio::time::timeout(limit, async {
        // Not even reading the banned status first: a flood from the first byte.
        stream.write_all(br#"{"shadow": ""#).await?;
        written += 12;
        while written < give_up {
            let n = stream.write(&chunk).await?;
            written += n;
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    match result {
        Ok(Err(_closed)) => written,
        Ok(Ok(())) => panic!("endless string: still open after {written} bytes (unbounded buffering?)"),
        Err(_) => panic!("endless string: still open after {limit:?} and {written} bytes"),
    }
}

/// One garbage connection: read the banned status, write `payload`, and
/// expect the authenticator to close within `limit`.
async fn garbage(auth: SocketAddr, local: IpAddr, payload: &'static [u8], limit: Duration) -> bool {
    let mut c = RawClient::connect(local, auth).await;
    c.expect_not_banned().await;
    let _ = c.w.write_all(payload).await;
    closed_within(c.reader.get_mut(), limit).await
}

const GARBAGE: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: pyile\r\n\r\n",
    b"\x00\x01\x02\xff\xfe\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"[1, 2, 3]",
    b"{shadow: pw}",
    b"{\"shadow\": \"pw\",}",
    b"{\"hello\": \"world\"}",
    b"{\"banned\": true}",
    b"{\"shadow\": 12345}",
    b"\"just a string\"",
    b"}}}}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_auth_and_dist_ports_while_honest_joiners_join() {
    const HONEST: usize = 20;
    let hs_timeout = Duration::from_secs(2);
    let max_len: usize = 256 * 1024;
    let mut auth = Authenticator::start(
        TokioNet,
        // 20 honest joiners join at once from one address: above the default per-source cap.
        auth_config("pw")
            .handshake_timeout(hs_timeout)
            .max_value_len(max_len)
            .max_handshakes_per_source(64)
            .event_capacity(1 << 16),
    )
    .await
    .unwrap();
    let mut events = auth.events().unwrap();
    let target = auth.auth_addr();
    let dist = auth.dist_addr();
    let idle_tasks = auth.task_count();

    let garbage_ip = ip("127.0.2.1");
    let endless_ip = ip("127.0.2.2");
    let silent_ip = ip("127.0.2.3");
    let mid_ip = ip("127.0.2.4");
    let nodist_v2_ip = ip("127.0.2.5");
    let nodist_v1_ip = ip("127.0.2.6");
    let dist_only_ip = ip("127.0.2.8");
    let hostile_ips = [garbage_ip, endless_ip, silent_ip, mid_ip, nodist_v2_ip, nodist_v1_ip, dist_only_ip];

    // --- Stalled handshakes, each stopped at a different step. -------------
    let stalled_at = Instant::now();
    // (c) connects and sends nothing.
    let mut silent = RawClient::connect(silent_ip, target).await;
    silent.expect_not_banned().await;
    // (d) right password, then silence (no peer address).
    let mut mid = RawClient::connect(mid_ip, target).await;
    mid.authenticate("pw", true).await;
    // (e) the whole auth-socket handshake by hand, but no distribution
    // connection: once announcing protocol 2, once as a plain v1 joiner.
    let ghost_v2: SocketAddr = "127.0.2.5:1111".parse().unwrap();
    let ghost_v1: SocketAddr = "127.0.2.6:2222".parse().unwrap();
    let mut nodist_v2 = RawClient::connect(nodist_v2_ip, target).await;
    let hs_v2 = nodist_v2.handshake("pw", ghost_v2, true).await;
    let mut nodist_v1 = RawClient::connect(nodist_v1_ip, target).await;
    let hs_v1 = nodist_v1.handshake("pw", ghost_v1, false).await;
    assert_eq!(hs_v2.dist_addr, dist);
    assert_eq!(hs_v1.dist_addr, dist);
    assert_eq!(auth.pending_joins(), 2, "both no-dist handshakes are pending");
    assert_eq!(auth.members().len(), 1, "a pending joiner is not a member");

    // --- (f) bad connections on the distribution socket. -----------------
    // From the IP of the pending protocol-2 joiner (the authenticator waits
    // for a token there), from an IP with nothing pending, and from the
    // honest joiners' IP while they join.
    let mut dist_garbage_v2ip = connect_from(nodist_v2_ip, dist).await.unwrap();
    dist_garbage_v2ip.write_all(b"\x16\x03\x01 not a token at all").await.unwrap();
    let mut dist_silent_v2ip = connect_from(nodist_v2_ip, dist).await.unwrap();
    let mut dist_garbage_other = connect_from(dist_only_ip, dist).await.unwrap();
    dist_garbage_other.write_all(b"{\"dist_token\": \"nope\"}").await.unwrap();
    let mut dist_silent_other = connect_from(dist_only_ip, dist).await.unwrap();

    // --- (a) garbage flood and (b) endless strings, concurrently. ---------
    let mut floods = JoinSet::new();
    for round in 0..5 {
        for payload in GARBAGE {
            floods.spawn(async move {
                tokio::time::sleep(Duration::from_millis(10 * round)).await;
                assert!(
                    garbage(target, garbage_ip, payload, Duration::from_secs(1)).await,
                    "garbage {:?} did not get the connection closed",
                    String::from_utf8_lossy(payload)
                );
            });
        }
    }
    let mut endless = JoinSet::new();
    for _ in 0..3 {
        endless.spawn(endless_string(target, endless_ip, 256 << 20, Duration::from_secs(10)));
    }

    // --- Honest joiners, concurrently, while all of the above is open. ----
    let honest_start = Instant::now();
    let mut dist_garbage_honest_ip = connect_from(ip("127.0.0.1"), dist).await.unwrap();
    dist_garbage_honest_ip.write_all(b"garbage on the dist socket").await.unwrap();
    let mut dist_silent_honest_ip = connect_from(ip("127.0.0.1"), dist).await.unwrap();
    let mut joins = JoinSet::new();
    for i in 0..HONEST {
        joins.spawn(async move {
            let t0 = Instant::now();
            let j = Joiner::join(TokioNet, target, joiner_config("pw", &format!("honest{i}"))).await;
            (i, t0.elapsed(), j)
        });
    }
    let mut honest = Vec::new();
    let mut slowest = Duration::ZERO;
    while let Some(r) = joins.join_next().await {
        let (i, took, j) = r.unwrap();
        let j = j.unwrap_or_else(|e| panic!("honest joiner {i} failed: {e}"));
        assert!(took < Duration::from_secs(1), "honest joiner {i} took {took:?} to join");
        slowest = slowest.max(took);
        honest.push(j);
    }
    let honest_done = Instant::now();
    eprintln!(
        "hostile: {HONEST} honest joins done in {:?} (slowest {slowest:?}) with bad connections open",
        honest_done - honest_start
    );

    // The committed list: the authenticator and exactly the honest joiners.
    let mut expected: Vec<SocketAddr> = vec![auth.peer_addr()];
    expected.extend(honest.iter().map(|j| j.peer_addr()));
    let sorted = |mut v: Vec<SocketAddr>| {
        v.sort();
        v
    };
    assert!(
        eventually(Duration::from_secs(3), || sorted(auth.members().to_vec()) == sorted(expected.clone())).await,
        "authenticator list {:?}",
        auth.members()
    );
    assert_eq!(auth.members().first().unwrap(), auth.peer_addr(), "the authenticator comes first");
    let want = auth.members();
    assert!(
        eventually(Duration::from_secs(3), || honest.iter().all(|j| j.members().to_vec() == want.to_vec())).await,
        "honest joiners did not converge on the authenticator's list"
    );
    // All of that happened while the stalled handshakes were still open.
    assert_eq!(auth.pending_joins(), 2, "the no-dist handshakes were still pending while honest joiners joined");
    assert!(
        Instant::now() < stalled_at + hs_timeout,
        "honest joiners converged only after the stalled handshakes timed out"
    );

    // (a) and (b) ended by the authenticator, within their bound.
    while let Some(r) = floods.join_next().await {
        r.unwrap();
    }
    // Before the password the bound is the handshake limit, not the list limit (max_len).
    let hs_limit = pyile::authenticator::config::DEFAULT_HANDSHAKE_VALUE_LIMIT;
    let allowance = kernel_buffer_allowance();
    while let Some(r) = endless.join_next().await {
        let written = r.unwrap();
        eprintln!(
            "hostile: endless JSON string closed after {written} bytes accepted (value bound {hs_limit}, kernel buffers up to {allowance})"
        );
        assert!(written > hs_limit, "closed before the bound was even reached ({written} bytes)");
        assert!(written <= hs_limit + allowance + 64 * 1024, "{written} bytes accepted: unbounded buffering");
    }
    // (f) garbage on the dist socket is closed at once; silent dist
    // connections with nothing to wait for too.
    assert!(
        closed_within(&mut dist_garbage_v2ip, Duration::from_secs(1)).await,
        "dist garbage (pending v2 IP) still open"
    );
    assert!(closed_within(&mut dist_garbage_other, Duration::from_secs(1)).await, "dist garbage (other IP) still open");
    assert!(closed_within(&mut dist_silent_other, Duration::from_secs(1)).await, "silent dist (other IP) still open");
    assert!(
        closed_within(&mut dist_garbage_honest_ip, Duration::from_secs(1)).await,
        "dist garbage (honest IP) still open"
    );

    // --- After the handshake timeout: no trace of the half-done handshakes.
    let grace = Duration::from_secs(1);
    let left = (stalled_at + hs_timeout + grace).saturating_duration_since(Instant::now());
    assert!(
        closed_within(silent.reader.get_mut(), left).await,
        "silent connection not closed after the handshake timeout"
    );
    assert!(closed_within(mid.reader.get_mut(), grace).await, "mid-handshake connection not closed");
    assert!(closed_within(nodist_v2.reader.get_mut(), grace).await, "no-dist v2 connection not closed");
    assert!(closed_within(nodist_v1.reader.get_mut(), grace).await, "no-dist v1 connection not closed");
    assert!(closed_within(&mut dist_silent_v2ip, grace).await, "silent dist (pending v2 IP) not closed");
    assert!(closed_within(&mut dist_silent_honest_ip, grace * 2).await, "silent dist (honest IP) not closed");
    assert_eq!(auth.pending_joins(), 0, "a failed handshake left a pending entry");
    assert!(
        eventually(Duration::from_secs(1), || auth.task_count() == idle_tasks + 2 * HONEST).await,
        "tasks: {} (idle {idle_tasks} + 2 per member expected)",
        auth.task_count()
    );
    assert_eq!(sorted(auth.members().to_vec()), sorted(expected.clone()), "ghost members");
    assert!(honest.iter().all(|j| j.members().to_vec() == want.to_vec()), "honest joiners saw a change");

    // --- The events tell the same story. -----------------------------------
    let evs = drain(&mut events, Duration::from_millis(200)).await;
    let mut failures: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for ev in &evs {
        match &ev.kind {
            EventKind::HandshakeFailed { source, error } => {
                failures.entry(source.ip()).or_default().push(error.clone())
            }
            EventKind::MemberJoined { source, member } => {
                assert!(!hostile_ips.contains(source), "hostile {source} became member {member}")
            }
            EventKind::MemberListChanged { list, .. } => {
                assert!(!list.contains(&ghost_v1) && !list.contains(&ghost_v2), "ghost in a published list: {list:?}")
            }
            EventKind::MemberRemoved { member, reason } => panic!("unexpected removal of {member}: {reason:?}"),
            EventKind::Lagged { dropped } => panic!("{dropped} events lost"),
            _ => {}
        }
    }
    let joined = evs.iter().filter(|e| matches!(e.kind, EventKind::MemberJoined { .. })).count();
    assert_eq!(joined, HONEST);
    let one = |ip: IpAddr, what: &str| {
        let errs = failures.get(&ip).unwrap_or_else(|| panic!("no HandshakeFailed from {ip} ({what})"));
        assert_eq!(errs.len(), 1, "{what}: {errs:?}");
        errs[0].clone()
    };
    assert!(one(silent_ip, "silent").contains("no password"), "{failures:?}");
    assert!(one(mid_ip, "mid-handshake").contains("no peer address"), "{failures:?}");
    assert!(one(nodist_v2_ip, "no dist (v2)").contains("no distribution connection"), "{failures:?}");
    assert!(one(nodist_v1_ip, "no dist (v1)").contains("no distribution connection"), "{failures:?}");
    let endless_errs = &failures[&endless_ip];
    assert_eq!(endless_errs.len(), 3);
    assert!(endless_errs.iter().all(|e| e.contains(&format!("exceeds {hs_limit} bytes"))), "{endless_errs:?}");
    let garbage_errs = &failures[&garbage_ip];
    assert_eq!(garbage_errs.len(), 5 * GARBAGE.len(), "{garbage_errs:?}");
    assert!(!failures.contains_key(&ip("127.0.0.1")), "an honest handshake failed: {failures:?}");

    for j in &honest {
        j.leave().await;
    }
    auth.leave().await;
    assert_eq!(auth.task_count(), 0);
}

/// Joins `n` honest joiners from 127.0.0.1, one after another.
async fn join_honest(auth: &Authenticator, n: usize) -> Vec<Joiner> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", &format!("j{i}"))).await.unwrap());
    }
    out
}

#[tokio::test]
async fn malformed_or_oversized_input_from_a_member_removes_only_that_member() {
    // Values on a member's auth connection are bounded by the handshake limit.
    let max_len = 4096;
    let mut auth = Authenticator::start(TokioNet, auth_config("pw").handshake_value_limit(max_len)).await.unwrap();
    let mut events = auth.events().unwrap();
    let honest = join_honest(&auth, 2).await;
    let malformed = RawMember::join(auth.auth_addr(), ip("127.0.2.20"), "pw").await;
    let oversized = RawMember::join(auth.auth_addr(), ip("127.0.2.21"), "pw").await;
    let unknown = RawMember::join(auth.auth_addr(), ip("127.0.2.22"), "pw").await;
    let not_object = RawMember::join(auth.auth_addr(), ip("127.0.2.23"), "pw").await;
    let raws = [&malformed, &oversized, &unknown, &not_object];
    assert!(eventually(Duration::from_secs(2), || auth.members().len() == 7).await, "{:?}", auth.members());
    assert!(eventually(Duration::from_secs(2), || honest.iter().all(|j| j.members().len() == 7)).await);
    // They are working members: they answer heartbeats.
    assert!(eventually(Duration::from_secs(2), || raws.iter().all(|m| m.answers() >= 2)).await);

    malformed.send_raw(br#"{"<3": tru}"#.to_vec());
    let mut big = br#"{"<3": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', max_len + 1024));
    big.extend(br#""}"#);
    oversized.send_raw(big);
    unknown.send_raw(br#"{"hello": "is it me"}"#.to_vec());
    not_object.send_raw(b"<3<3<3\n".to_vec());

    let mut removed: BTreeMap<SocketAddr, RemovalReason> = BTreeMap::new();
    while removed.len() < 4 {
        let ev = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::MemberRemoved { .. }))
            .await
            .unwrap_or_else(|| panic!("only {} removals: {removed:?}", removed.len()));
        if let EventKind::MemberRemoved { member, reason } = ev.kind {
            removed.insert(member, reason);
        }
    }
    let reason_of = |m: &RawMember| match removed.get(&m.peer_addr) {
        Some(RemovalReason::ProtocolError(e)) => e.clone(),
        other => panic!("{} removed with {other:?}, expected ProtocolError", m.peer_addr),
    };
    assert!(reason_of(&malformed).contains("invalid JSON"), "{removed:?}");
    assert!(reason_of(&oversized).contains(&format!("exceeds {max_len} bytes")), "{removed:?}");
    assert!(reason_of(&unknown).contains("unknown message"), "{removed:?}");
    assert!(reason_of(&not_object).contains("invalid JSON"), "{removed:?}");

    // Only they were removed; the honest members stay and get the new list.
    let expected: Vec<SocketAddr> =
        [auth.peer_addr()].into_iter().chain(honest.iter().map(|j| j.peer_addr())).collect();
    assert_eq!(auth.members().to_vec(), expected);
    assert!(eventually(Duration::from_secs(2), || honest.iter().all(|j| j.members().to_vec() == expected)).await);
    // The authenticator closed their connections.
    assert!(eventually(Duration::from_secs(2), || raws.iter().all(|m| m.closed_at().is_some())).await);
    // And nobody else is removed over several heartbeat intervals.
    let later = drain(&mut events, INTERVAL * 5).await;
    assert!(!later.iter().any(|e| matches!(e.kind, EventKind::MemberRemoved { .. })), "{later:?}");
    assert!(honest.iter().all(|j| j.is_connected()));
    for j in &honest {
        j.leave().await;
    }
    auth.leave().await;
}

#[tokio::test]
async fn half_open_member_is_removed_by_heartbeat_timeout() {
    let interval = Duration::from_millis(200);
    let limit = interval * 3;
    // Scheduling allowance on top of the protocol bound (timeout + one interval).
    let slack = Duration::from_millis(150);
    let mut auth =
        Authenticator::start(TokioNet, auth_config("pw").heartbeat_interval(interval).heartbeat_timeout(limit))
            .await
            .unwrap();
    let mut events = auth.events().unwrap();
    let jcfg = |a: &str| joiner_config("pw", a).heartbeat_interval(interval).heartbeat_timeout(interval * 6);
    let alice = Joiner::join(TokioNet, auth.auth_addr(), jcfg("alice")).await.unwrap();
    let bob = Joiner::join(TokioNet, auth.auth_addr(), jcfg("bob")).await.unwrap();
    let mut zombie = RawMember::join(auth.auth_addr(), ip("127.0.2.30"), "pw").await;
    assert!(eventually(Duration::from_secs(2), || alice.members().len() == 4 && bob.members().len() == 4).await);
    // It answers heartbeats for a while, then goes half-open.
    assert!(eventually(Duration::from_secs(3), || zombie.answers() >= 3).await);
    let last_answer = zombie.go_silent().await.expect("it answered");

    let ev = wait_for(&mut events, limit + interval * 3, |k| matches!(k, EventKind::MemberRemoved { .. }))
        .await
        .expect("the half-open member was not removed");
    let took = ev.at - last_answer;
    eprintln!(
        "hostile: half-open member removed {took:?} after its last answer (timeout {limit:?}, interval {interval:?})"
    );
    match ev.kind {
        EventKind::MemberRemoved { member, reason } => {
            assert_eq!(member, zombie.peer_addr);
            assert_eq!(reason, RemovalReason::HeartbeatTimeout);
        }
        _ => unreachable!(),
    }
    assert!(took > limit, "removed before the heartbeat timeout ({took:?})");
    assert!(took <= limit + interval + slack, "removed only after {took:?}");

    let expected = vec![auth.peer_addr(), alice.peer_addr(), bob.peer_addr()];
    assert_eq!(auth.members().to_vec(), expected);
    assert!(
        eventually(Duration::from_secs(1), || alice.members().to_vec() == expected
            && bob.members().to_vec() == expected)
        .await,
        "the others did not receive the new list"
    );
    assert!(alice.is_connected() && bob.is_connected());
    // Its sockets are closed on the authenticator's side: the distribution
    // connection ends (after the lists it never read).
    assert!(
        closed_within(&mut zombie.dist, Duration::from_secs(2)).await,
        "removed member's dist connection still open"
    );
    drop(zombie);
    alice.leave().await;
    bob.leave().await;
    auth.leave().await;
}

#[tokio::test]
async fn message_from_a_non_member_ip_is_refused() {
    let auth = Authenticator::start(TokioNet, auth_config("pw")).await.unwrap();
    let mut alice = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("pw", "alice")).await.unwrap();
    let mut a_events = alice.events().unwrap();
    assert!(eventually(Duration::from_secs(2), || alice.members().len() == 2).await);
    let chat = |from: SocketAddr| {
        Message::Chat(pyile::wire::Chat {
            data: "let me in".into(),
            alias: "eve".into(),
            to: pyile::wire::Recipient::Direct(alice.peer_addr()),
            from,
            msg_id: None,
        })
        .encode()
    };

    // From 127.0.0.9, an IP no member has: refused, no echo, no delivery.
    let mut eve = connect_from(ip("127.0.0.9"), alice.peer_addr()).await.unwrap();
    let eve_addr = eve.local_addr().unwrap();
    let _ = eve.write_all(&chat(eve_addr)).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), eve.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "refused connection not closed");
    assert!(answer.is_empty(), "a non-member got an answer: {:?}", String::from_utf8_lossy(&answer));
    let ev = wait_for(&mut a_events, Duration::from_secs(2), |k| {
        matches!(k, EventKind::MessageRefused { .. } | EventKind::MessageReceived { .. })
    })
    .await
    .expect("no event for the refused connection");
    assert!(matches!(ev.kind, EventKind::MessageRefused { source } if source == eve_addr), "{ev:?}");

    // Control: the same message from a member's IP (127.0.0.1) is taken and echoed.
    let mut ok = connect_from(ip("127.0.0.1"), alice.peer_addr()).await.unwrap();
    let ok_addr = ok.local_addr().unwrap();
    ok.write_all(&chat(ok_addr)).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), ok.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("let me in"), "no echo for a member IP");
    let evs = drain(&mut a_events, Duration::from_millis(300)).await;
    let received: Vec<_> = evs.iter().filter(|e| matches!(e.kind, EventKind::MessageReceived { .. })).collect();
    assert_eq!(received.len(), 1, "{evs:?}");
    assert!(matches!(&received[0].kind, EventKind::MessageReceived { source, .. } if *source == ok_addr));
    assert!(!evs.iter().any(|e| matches!(e.kind, EventKind::MessageRefused { .. })));

    alice.leave().await;
    auth.leave().await;
}
