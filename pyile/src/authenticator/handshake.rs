//! The handshake: the accept loops, one task per auth connection walking a joiner through
//! banned status, password, peer address, first list and distribution address, and the
//! pairing of each distribution connection with the handshake it completes.
//!
//! Unlike the reference, which handles every handshake inside one accept loop (so one silent
//! joiner stalls all others), each connection gets its own task and every read and write has
//! a deadline. A joiner becomes a member only when its distribution connection arrives;
//! until then it is a pending entry in the state that disappears if the handshake fails.
//! Once admitted, the same task runs the member's heartbeats until it is removed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::distribution::{AuthWriter, DistSink};
use super::state::{AdmitRefusal, PasswordCheck, SourceFull};
use super::{Shared, distribution, heartbeat};
use crate::event::{EventKind, RemovalReason};
use crate::net::{Listener, NetStream, Network};
use crate::scram::ServerExchange;
use crate::wire::{Message, MessageReader, PROTOCOL_VERSION, encode_distro};

/// Accepts auth connections; each gets a handshake slot from the state (see
/// [`AuthState::begin_handshake`](super::state::AuthState::begin_handshake)) or is closed.
pub(super) async fn accept_auth<N: Network>(shared: Arc<Shared<N>>, listener: N::Listener) {
    while let Some((stream, source)) = accept_next(&shared, &listener, "auth").await {
        let slot = CancellationToken::new();
        let begun = shared.lock().begin_handshake(source.ip(), slot.clone());
        let id = match begun {
            Ok((id, shed)) => {
                if let Some(shed) = shed {
                    shed.attached.cancel();
                }
                id
            }
            Err(SourceFull) => {
                shared.refusals.log(&source, "too many handshakes in progress from this source; closed");
                shared.events.emit(EventKind::HandshakeFailed {
                    source,
                    error: "too many handshakes in progress from this source".into(),
                });
                continue;
            }
        };
        let s = shared.clone();
        shared.tracker.spawn(async move {
            let cancel = s.cancel.clone();
            let guard = HandshakeGuard { shared: s.clone(), id: Some(id) };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = slot.cancelled() => {
                    s.refusals.log(&source, "handshake shed: every handshake slot was taken");
                    s.events.emit(EventKind::HandshakeFailed {
                        source,
                        error: "shed: every handshake slot was taken".into(),
                    });
                }
                _ = serve_joiner(s.clone(), stream, source, guard) => {}
            }
        });
    }
}

/// The next connection on `listener`, or None once the authenticator stops. A failed accept
/// (e.g. out of file descriptors) is logged and retried after a short back-off, not spun on.
async fn accept_next<N: Network>(
    shared: &Shared<N>,
    listener: &N::Listener,
    socket: &str,
) -> Option<(N::Stream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return None,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(conn) => return Some(conn),
            Err(e) => {
                warn!("{socket} accept failed: {e}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Frees a handshake slot when the handshake ends, however it ends (or on admission).
struct HandshakeGuard<N: Network> {
    shared: Arc<Shared<N>>,
    id: Option<u64>,
}

impl<N: Network> HandshakeGuard<N> {
    fn finish(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.lock().finish_handshake(id);
        }
    }
}

impl<N: Network> Drop for HandshakeGuard<N> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Accepts distribution connections and pairs each with its pending handshake.
pub(super) async fn accept_dist<N: Network>(shared: Arc<Shared<N>>, listener: N::Listener) {
    while let Some((stream, source)) = accept_next(&shared, &listener, "distribution").await {
        shared.dist_accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let s = shared.clone();
        shared.tracker.spawn(async move {
            let cancel = s.cancel.clone();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = pair_dist(s, stream, source) => {}
            }
        });
    }
}

/// Pairs a distribution connection with the pending joiner it belongs to: by the token a
/// protocol-2 joiner sends first, else the oldest pending reference joiner from the same IP
/// (see [`AuthState::claim_pending`](super::state::AuthState::claim_pending)).
async fn pair_dist<N: Network>(shared: Arc<Shared<N>>, stream: N::Stream, source: SocketAddr) {
    let ip = source.ip();
    let (r, w) = tokio::io::split(stream);
    let mut reader = MessageReader::with_limit(r, shared.cfg.handshake_value_limit);
    let expect_token = shared.lock().expects_token(ip);
    let token = if expect_token {
        match timeout(shared.cfg.handshake_timeout, reader.next()).await {
            Ok(Ok(Message::DistToken(t))) => Some(t),
            Ok(Ok(other)) => {
                shared
                    .refusals
                    .log(&source, format_args!("distribution connection sent {} instead of its token", other.kind()));
                return;
            }
            Ok(Err(e)) => {
                debug!(%source, "distribution connection failed before its token: {e}");
                return;
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let pending = shared.lock().claim_pending(ip, token);
    match pending {
        Some(tx) => {
            let _ = tx.send((reader, w));
        }
        None => shared.refusals.log(&source, "distribution connection matches no pending joiner; closed"),
    }
}

/// Removes a pending entry when its handshake ends, however it ends.
struct PendingGuard<'a, N: Network> {
    shared: &'a Shared<N>,
    token: u64,
}

impl<N: Network> Drop for PendingGuard<'_, N> {
    fn drop(&mut self) {
        self.shared.lock().drop_pending(self.token);
    }
}

/// Writes one message, by the handshake's one deadline.
async fn write_msg<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message, deadline: Instant) -> Result<(), String> {
    match timeout_at(deadline, w.write_all(&msg.encode())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err("write not done by the handshake deadline".into()),
    }
}

/// Handshake on one auth connection, then the member's session.
async fn serve_joiner<N: Network>(
    shared: Arc<Shared<N>>,
    stream: N::Stream,
    source: SocketAddr,
    mut slot: HandshakeGuard<N>,
) {
    let ip = source.ip();
    let local_ip = stream.local_addr().map(|a| a.ip()).ok();
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = MessageReader::with_limit(r, shared.cfg.handshake_value_limit);
    let started = Instant::now();
    let deadline = started + shared.cfg.handshake_timeout;
    let password_deadline = deadline.min(started + shared.cfg.password_timeout);
    let fail = |error: String| {
        shared.refusals.log(&source, format_args!("handshake failed: {error}"));
        shared.events.emit(EventKind::HandshakeFailed { source, error });
    };

    if shared.lock().is_banned(ip, shared.now()) {
        shared.refusals.log(&source, "banned address refused");
        shared.events.emit(EventKind::BanRefused { ip });
        let _ = write_msg(
            &mut w,
            &Message::Banned { banned: true, version: Some(PROTOCOL_VERSION), scram: false },
            deadline,
        )
        .await;
        let _ = timeout_at(deadline, w.shutdown()).await;
        return;
    }
    if let Err(e) =
        write_msg(&mut w, &Message::Banned { banned: false, version: Some(PROTOCOL_VERSION), scram: true }, deadline)
            .await
    {
        return fail(e);
    }

    // Password: a cleartext `shadow` (v1), or a protocol-2 joiner's SCRAM exchange.
    let (check, v2, signature, alias, one_connection) = match timeout_at(password_deadline, reader.next()).await {
        Ok(Ok(Message::Shadow { password, version, alias, one_connection })) => {
            let v2 = version.is_some_and(|v| v >= 2);
            let check = match &shared.cfg.verifier {
                None => shared.lock().check_password(ip, &password, shared.now()),
                Some(verifier) => {
                    // One PBKDF2 at the stored verifier's iterations, outside the lock.
                    let right = verifier.verify_cleartext(&password);
                    shared.lock().record_password(ip, right, shared.now())
                }
            };
            (check, v2, None, alias, one_connection)
        }
        Ok(Ok(Message::ScramStart { nonce, version, alias, one_connection })) => {
            let v2 = version.is_some_and(|v| v >= 2);
            let exchange = {
                let mut rng = shared.scram_rng.lock().unwrap_or_else(|p| p.into_inner());
                ServerExchange::start(&shared.verifier, &nonce, &mut *rng)
            };
            let exchange = match exchange {
                Ok(x) => x,
                Err(e) => return fail(format!("SCRAM start refused: {e}")),
            };
            if let Err(e) =
                write_msg(&mut w, &Message::ScramChallenge(exchange.challenge().clone()), password_deadline).await
            {
                return fail(e);
            }
            let signature = match timeout_at(password_deadline, reader.next()).await {
                Ok(Ok(Message::ScramProof { nonce, proof })) => exchange.finish(&nonce, &proof),
                Ok(Ok(other)) => return fail(format!("expected scram_proof, got {}", other.kind())),
                Ok(Err(e)) => return fail(format!("reading the SCRAM proof: {e}")),
                Err(_) => return fail("no SCRAM proof before the password timeout".into()),
            };
            // A failed proof counts exactly as a wrong cleartext password.
            let check = shared.lock().record_password(ip, signature.is_some(), shared.now());
            (check, v2, signature, alias, one_connection)
        }
        Ok(Ok(other)) => return fail(format!("expected shadow, got {}", other.kind())),
        Ok(Err(e)) => return fail(format!("reading the password: {e}")),
        Err(_) => return fail("no password before the password timeout".into()),
    };
    match check {
        PasswordCheck::Accepted => {}
        PasswordCheck::Wrong { attempts, banned } => {
            shared.refusals.log(&source, format_args!("wrong password (attempt {attempts})"));
            shared.events.emit(EventKind::AuthFailed { ip, attempts });
            if banned {
                warn!(%ip, attempts, "address banned");
                shared.events.emit(EventKind::Banned { ip });
            }
            let _ = write_msg(&mut w, &Message::Authenticated(false), deadline).await;
            let _ = timeout_at(deadline, w.shutdown()).await;
            return;
        }
        PasswordCheck::BannedMeanwhile => {
            // Another connection from this IP got it banned mid-handshake.
            let _ = write_msg(&mut w, &Message::Authenticated(false), deadline).await;
            return fail("address was banned during the handshake".into());
        }
    }
    // A protocol-2 joiner's alias: granted under the state lock (so of two joins racing with
    // one alias exactly one gets it), refused with a reason otherwise. Only a joiner that
    // knows the password learns whether an alias is taken; a refusal is not a failed attempt.
    if let (true, Some(alias)) = (v2, alias) {
        let granted = match slot.id {
            Some(id) => shared.lock().reserve_alias(id, &alias),
            None => Err(crate::wire::Refusal::Other("handshake ended".into())),
        };
        if let Err(refusal) = granted {
            shared.refusals.log(&source, format_args!("alias {alias:?} refused: {}", refusal.as_str()));
            shared.events.emit(EventKind::AliasRefused { source, alias, refusal: refusal.clone() });
            let _ = write_msg(&mut w, &Message::Refused(refusal), deadline).await;
            let _ = timeout_at(deadline, w.shutdown()).await;
            return;
        }
    }
    let accepted = match signature {
        Some(signature) => Message::ScramAccepted { signature },
        None => Message::Authenticated(true),
    };
    if let Err(e) = write_msg(&mut w, &accepted, deadline).await {
        return fail(e);
    }

    // Peer address.
    let peer_addr = match timeout_at(deadline, reader.next()).await {
        Ok(Ok(Message::PeerAddress(a))) if a.port() != 0 && !a.ip().is_unspecified() => {
            if !shared.lock().peer_address_allowed(ip, a) {
                return fail(format!("peer address {a} is not on the connection's source IP {ip}"));
            }
            a
        }
        Ok(Ok(Message::PeerAddress(a))) => return fail(format!("unusable peer address {a}")),
        Ok(Ok(other)) => return fail(format!("expected peer_address, got {}", other.kind())),
        Ok(Err(e)) => return fail(format!("reading the peer address: {e}")),
        Err(_) => return fail("no peer address before the handshake timeout".into()),
    };

    // A protocol-2 joiner that asked for it takes its lists on this connection: no
    // distribution connection, so nothing to wait for (and no pending entry).
    let one_connection = v2 && one_connection;
    // A protocol-2 joiner's first list is the committed list of the current version (its
    // snapshot bytes, encoded once per version and shared): its writer then starts from
    // that version and sends deltas, never a second whole list.
    // Taken (and dropped once written): a member that kept it would pin its version's list
    // and snapshot bytes for its whole membership.
    let mut committed = v2.then(|| shared.dist_tx.borrow().clone());
    let first_version = committed.as_ref().map(|c| c.number());
    let dist_conn = if one_connection {
        let first = FirstList::Committed(committed.take().expect("one connection is protocol 2"));
        if let Err(e) = write_first_list(&mut w, first, deadline).await {
            return fail(e);
        }
        if let Err(e) = write_msg(&mut w, &Message::ListsHere, deadline).await {
            return fail(e);
        }
        // The joiner's echo stands for the distribution connection a two-connection joiner
        // opens: it has its answer, so it becomes a member only now, never before its
        // handshake completed.
        match timeout_at(deadline, reader.next()).await {
            Ok(Ok(Message::ListsHere)) => {}
            Ok(Ok(other)) => return fail(format!("expected lists_here, got {}", other.kind())),
            Ok(Err(e)) => return fail(format!("reading lists_here: {e}")),
            Err(_) => return fail("no lists_here before the handshake timeout".into()),
        }
        None
    } else {
        // Pending until the distribution connection arrives.
        let (tx, rx) = oneshot::channel();
        let (token, provisional) = shared.lock().add_pending(ip, v2, peer_addr, tx);
        let guard = PendingGuard { shared: &shared, token };
        let first = match committed {
            Some(c) => {
                drop(provisional);
                FirstList::Committed(c)
            }
            None => FirstList::Provisional(provisional),
        };
        if let Err(e) = write_first_list(&mut w, first, deadline).await {
            return fail(e);
        }
        if !v2 {
            sleep(shared.cfg.v1_pacing).await;
        }
        let mut dist_addr = shared.dist_addr;
        if dist_addr.ip().is_unspecified()
            && let Some(l) = local_ip
        {
            dist_addr.set_ip(l);
        }
        if let Err(e) = write_msg(&mut w, &Message::DistAddr { addr: dist_addr, token: Some(token) }, deadline).await {
            return fail(e);
        }
        let conn = match timeout_at(deadline, rx).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(_)) => return fail("pending entry dropped".into()),
            Err(_) => return fail("no distribution connection before the handshake timeout".into()),
        };
        drop(guard);
        Some(conn)
    };

    // Commit: only now does the joiner become a member.
    let member_cancel = shared.cancel.child_token();
    let (id, phase, joined_version) = {
        let mut st = shared.lock();
        let adm = match st.admit_from(slot.id, ip, peer_addr, member_cancel.clone(), shared.now()) {
            Ok(adm) => adm,
            Err(refusal) => {
                drop(st);
                return fail(match refusal {
                    AdmitRefusal::Banned => "address was banned during the handshake".into(),
                    AdmitRefusal::AddressTaken => format!("peer address {peer_addr} belongs to another member"),
                });
            }
        };
        for old in &adm.replaced {
            old.attached.cancel();
            shared.events.emit(EventKind::MemberRemoved { member: old.peer_addr, reason: RemovalReason::Replaced });
        }
        let alias = adm.published.delta.aliases.first().cloned().flatten();
        info!(member = %peer_addr, %ip, v2, one_connection, alias = alias.as_deref().unwrap_or(""), "member joined");
        shared.events.emit(EventKind::MemberJoined { member: peer_addr, source: ip });
        if let Some(alias) = alias {
            shared.events.emit(EventKind::MemberAlias { member: peer_addr, alias });
        }
        // Still under the lock, so that versions and events come out in one order.
        let admitted = (adm.id, adm.phase, adm.published.delta.version);
        shared.announce(adm.published);
        admitted
    };
    slot.finish();

    let progress = v2.then(|| Arc::new(distribution::DistProgress::default()));
    // A one-connection member's lists and heartbeats share the auth connection's write half
    // (each value written whole under its lock); the heartbeat loop alone reads it.
    let (sink, mut w) = match dist_conn {
        Some((dist_reader, dist_w)) => (DistSink::Own(dist_reader, dist_w), AuthWriter::Own(w)),
        None => {
            let w = Arc::new(tokio::sync::Mutex::new(w));
            (DistSink::Auth(AuthWriter::Shared(w.clone())), AuthWriter::Shared(w))
        }
    };
    distribution::spawn_writer(&shared, id, progress.clone(), first_version, sink, member_cancel.clone());

    // A protocol-2 member must report (at least) the list that admitted it.
    let floor = v2.then_some(joined_version - 1);
    let session = heartbeat::Session { member: peer_addr, phase, floor, progress };
    let reason = heartbeat::run(&shared, &mut reader, &mut w, session, &member_cancel).await;
    if let Some(reason) = reason {
        shared.remove_member(id, reason);
    }
    let _ = timeout(Duration::from_millis(100), w.shutdown()).await;
}

/// A joiner's first list, sent in the handshake.
enum FirstList {
    /// A reference (v1) joiner's: the committed list with it last, unversioned, as the
    /// reference sends it (it is not a committed list).
    Provisional(crate::member_list::MemberList),
    /// A protocol-2 joiner's: the committed list of the current version, as its snapshot
    /// (`docs/protocol-2.md`, "The first list").
    Committed(Arc<distribution::Version>),
}

/// Writes a joiner's first list, encoded here (or once per version), outside the state lock.
async fn write_first_list<W: AsyncWrite + Unpin>(w: &mut W, first: FirstList, deadline: Instant) -> Result<(), String> {
    let bytes: Arc<[u8]> = match first {
        FirstList::Provisional(list) => encode_distro(list.iter(), None).into(),
        FirstList::Committed(version) => version.snapshot_v2(),
    };
    match timeout_at(deadline, w.write_all(&bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err("write not done by the handshake deadline".into()),
    }
}
