//! Protocol 2's password that never crosses the wire (the SCRAM-SHA-256-style exchange of
//! `pyile::scram`), on real loopback sockets: a join through a recording proxy whose bytes
//! never hold the password; failed proofs counted toward a ban like wrong passwords; an
//! impostor authenticator caught by the joiner (three ways); v1 cleartext passwords checked
//! against a stored verifier; and `pyile hash-password` / `pyile auth --password-hash-file`.
//!
//! Each defence was also checked by switching it off in the library and watching the test
//! that guards it fail (see `docs/protocol-2-extensions.md`).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pyile::scram::{ClientExchange, DEFAULT_MAX_ITERATIONS, ServerExchange, Verifier};
use pyile::wire::{Message, MessageReader};
use pyile::{Authenticator, AuthenticatorConfig, Error, EventKind, Joiner, TokioNet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PW: &str = "correct horse battery staple";

async fn start(cfg: AuthenticatorConfig) -> Authenticator {
    Authenticator::start(TokioNet, cfg).await.expect("start the authenticator")
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn verifier(password: &str) -> Verifier {
    Verifier::new(password, 4096, &mut rng(9)).unwrap()
}

/// A TCP proxy in front of `target` that records every byte the joiner sends.
async fn recording_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { return };
            let (mut out_r, mut out_w) = outbound.into_split();
            let rec = rec.clone();
            tokio::spawn(async move {
                let (mut in_r, mut in_w) = inbound.split();
                let up = async {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = in_r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        rec.lock().unwrap().extend_from_slice(&buf[..n]);
                        if out_w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = tokio::io::copy(&mut out_r, &mut in_w);
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_protocol2_join_proves_the_password_and_never_sends_it() {
    let stored = AuthenticatorConfig::with_verifier(verifier(PW))
        .listen("127.0.0.1:0".parse().unwrap())
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(INTERVAL * 3);
    // A cleartext-configured authenticator (verifier derived at start), then one holding
    // only a stored verifier.
    for cfg in [auth_config(PW), stored] {
        let auth = start(cfg).await;
        let (proxy, seen) = recording_proxy(auth.auth_addr()).await;
        let mut joiner = Joiner::join(TokioNet, proxy, joiner_config(PW, "alice")).await.expect("join");
        let mut events = joiner.events().unwrap();
        let ok = wait_for(&mut events, Duration::ZERO, |k| {
            matches!(k, EventKind::Handshake(pyile::HandshakeStage::Authenticated { ok: true }))
        })
        .await;
        assert!(ok.is_some(), "no successful authentication event");
        let sent = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        assert!(sent.contains("scram_client_nonce") && sent.contains("scram_proof"), "no SCRAM exchange: {sent}");
        assert!(!sent.contains(PW) && !sent.contains("shadow"), "the password crossed the wire: {sent}");
        joiner.leave().await;
        auth.leave().await;
    }
}

#[tokio::test]
async fn failed_proofs_count_toward_the_ban_like_wrong_passwords() {
    let mut auth = start(auth_config(PW).password_attempts(2)).await;
    let mut events = auth.events().unwrap();
    for attempt in 1..=2u32 {
        let r = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("wrong", "mallory")).await;
        assert!(matches!(r, Err(Error::Authentication)), "attempt {attempt}: {:?}", r.err());
        let ev = wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::AuthFailed { .. })).await;
        assert!(matches!(ev.map(|e| e.kind), Some(EventKind::AuthFailed { attempts, .. }) if attempts == attempt));
    }
    assert!(wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::Banned { .. })).await.is_some());
    // Banned now, even with the right password.
    let r = Joiner::join(TokioNet, auth.auth_addr(), joiner_config(PW, "mallory")).await;
    assert!(matches!(r, Err(Error::Banned)), "{:?}", r.err());
    auth.leave().await;
}

#[tokio::test]
async fn a_raw_proof_for_the_wrong_password_is_refused_and_counted() {
    // By hand, so the test sees the wire: the proof is refused with a plain
    // {"authenticated": false}, and a garbage proof counts as well.
    let mut auth = start(auth_config(PW).password_attempts(2)).await;
    let mut events = auth.events().unwrap();
    for proof in [None, Some("AAAA")] {
        let mut c = RawClient::connect(ip("127.0.5.1"), auth.auth_addr()).await;
        let m = c.recv(Duration::from_secs(2)).await;
        assert!(matches!(m, Message::Banned { banned: false, version: Some(2), scram: true }), "{m:?}");
        let x = ClientExchange::start(&mut rng(1));
        c.send(&Message::ScramStart { nonce: x.nonce().into(), version: Some(2), alias: None, one_connection: false })
            .await;
        let Message::ScramChallenge(ch) = c.recv(Duration::from_secs(2)).await else { panic!("no challenge") };
        let answer = x.answer("guess", &ch, DEFAULT_MAX_ITERATIONS).unwrap();
        let proof = proof.map_or(answer.proof.clone(), str::to_owned);
        c.send(&Message::ScramProof { nonce: answer.nonce.clone(), proof }).await;
        assert_eq!(c.recv(Duration::from_secs(2)).await, Message::Authenticated(false));
        assert!(
            wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::AuthFailed { .. }))
                .await
                .is_some()
        );
    }
    let mut c = RawClient::connect(ip("127.0.5.1"), auth.auth_addr()).await;
    assert!(matches!(c.recv(Duration::from_secs(2)).await, Message::Banned { banned: true, .. }));
    auth.leave().await;
}

/// How a fake authenticator answers a joiner's proof.
#[derive(Clone, Copy, Debug)]
enum Impostor {
    /// Offers SCRAM with a verifier of a guessed password and signs with it.
    WrongVerifier,
    /// Offers SCRAM and accepts with a plain `{"authenticated": true}`.
    NoSignature,
    /// Poses as a v1 authenticator to get the cleartext password.
    PosesAsV1,
}

/// A fake authenticator that does not know the password; returns what it received.
async fn impostor(kind: Impostor) -> (SocketAddr, tokio::task::JoinHandle<Vec<Message>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut reader = MessageReader::new(r);
        let mut got = Vec::new();
        let scram = !matches!(kind, Impostor::PosesAsV1);
        w.write_all(&Message::Banned { banned: false, version: scram.then_some(2), scram }.encode()).await.unwrap();
        let guess = verifier("guess");
        let Ok(Ok(first)) = tokio::time::timeout(Duration::from_secs(2), reader.next()).await else { return got };
        got.push(first.clone());
        let Message::ScramStart { nonce, .. } = first else { return got };
        let x = ServerExchange::start(&guess, &nonce, &mut rng(2)).unwrap();
        w.write_all(&Message::ScramChallenge(x.challenge().clone()).encode()).await.unwrap();
        let Ok(proof) = reader.next().await else { return got };
        got.push(proof);
        let reply = match kind {
            Impostor::WrongVerifier => {
                Message::ScramAccepted { signature: "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".into() }
            }
            _ => Message::Authenticated(true),
        };
        let _ = w.write_all(&reply.encode()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), reader.next()).await;
        got
    });
    (addr, task)
}

#[tokio::test]
async fn the_joiner_detects_an_impostor_authenticator() {
    for kind in [Impostor::WrongVerifier, Impostor::NoSignature] {
        let (addr, task) = impostor(kind).await;
        let r = Joiner::join(TokioNet, addr, joiner_config(PW, "alice")).await;
        match r {
            Err(e @ Error::ImpostorAuthenticator { .. }) => {
                assert!(e.to_string().starts_with("impostor authenticator at "), "{e}");
                assert_eq!(e.kind(), "impostor_authenticator");
            }
            other => panic!("{kind:?}: expected an impostor error, got {:?}", other.err()),
        }
        let got = task.await.unwrap();
        assert!(
            got.iter().all(|m| !matches!(m, Message::Shadow { .. } | Message::PeerAddress(_))),
            "{kind:?}: {got:?}"
        );
    }
    // Posing as v1: a joiner that requires the exchange never sends the password.
    let (addr, task) = impostor(Impostor::PosesAsV1).await;
    let r = Joiner::join(TokioNet, addr, joiner_config(PW, "alice").require_mutual_auth(true)).await;
    assert!(matches!(r, Err(Error::MutualAuthUnavailable)), "{:?}", r.err());
    assert!(task.await.unwrap().is_empty(), "the joiner sent something to a v1 authenticator");
}

#[tokio::test]
async fn a_challenge_beyond_the_joiners_iteration_bound_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (r, mut w) = stream.into_split();
        let mut reader = MessageReader::new(r);
        w.write_all(&Message::Banned { banned: false, version: Some(2), scram: true }.encode()).await.unwrap();
        let Ok(Message::ScramStart { nonce, .. }) = reader.next().await else { return };
        let ch = pyile::scram::Challenge {
            nonce: format!("{nonce}xyz"),
            salt: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
            iterations: u32::MAX,
        };
        w.write_all(&Message::ScramChallenge(ch).encode()).await.unwrap();
        let _ = reader.next().await;
    });
    let started = tokio::time::Instant::now();
    let r = Joiner::join(TokioNet, addr, joiner_config(PW, "alice").max_iterations(100_000)).await;
    assert!(matches!(r, Err(Error::Scram(pyile::scram::ScramError::Iterations { .. }))), "{:?}", r.err());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn v1_cleartext_passwords_are_checked_against_a_stored_verifier() {
    let cfg = AuthenticatorConfig::with_verifier(verifier(PW))
        .listen("127.0.0.1:0".parse().unwrap())
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(INTERVAL * 3)
        .password_attempts(2);
    let mut auth = start(cfg).await;
    let mut events = auth.events().unwrap();
    // A v1 (reference-like) joiner sends its password in clear.
    let v1 = joiner_config(PW, "ref").announce_extensions(false);
    let j = Joiner::join(TokioNet, auth.auth_addr(), v1).await.expect("v1 join against the verifier");
    j.leave().await;
    // Protocol 2 against the same verifier.
    let j = Joiner::join(TokioNet, auth.auth_addr(), joiner_config(PW, "p2")).await.expect("p2 join");
    j.leave().await;
    // Wrong cleartext passwords count toward the ban.
    for _ in 0..2 {
        let r = Joiner::join(TokioNet, auth.auth_addr(), joiner_config("nope", "ref").announce_extensions(false)).await;
        assert!(matches!(r, Err(Error::Authentication)), "{:?}", r.err());
    }
    assert!(wait_for(&mut events, Duration::from_secs(2), |k| matches!(k, EventKind::Banned { .. })).await.is_some());
    auth.leave().await;
}

#[test]
fn hash_password_prints_a_verifier_and_auth_takes_it() {
    let bin = env!("CARGO_BIN_EXE_pyile");
    let out = Command::new(bin).args(["hash-password"]).env("PYILE_PASSWORD", PW).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains(PW));
    let v: Verifier = text.parse().expect("hash-password prints a verifier");
    assert!(v.verify_cleartext(PW) && !v.verify_cleartext("other"));
    assert_eq!(v.iterations(), 4096);
    // Two runs, two salts.
    let again = Command::new(bin).args(["hash-password"]).env("PYILE_PASSWORD", PW).output().unwrap();
    assert_ne!(String::from_utf8(again.stdout).unwrap(), text);

    // A malformed verifier file is one error line and a failing exit.
    let dir = std::env::temp_dir().join(format!("pyile-scram-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "SCRAM-SHA-256$12:abc$x:y\n").unwrap();
    let out = Command::new(bin)
        .args(["auth", "--listen", "127.0.0.1:0", "--password-hash-file"])
        .arg(&bad)
        .env_remove("PYILE_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: --password-hash-file") && err.contains("iterations"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pyile::impostor`, the fake authenticator the simulator and loadgen use, reports what each
/// joiner gave it: a protocol-2 joiner gives a SCRAM-posing impostor only a proof and refuses
/// its forged signature; a joiner that requires mutual authentication gives a v1-posing one
/// nothing; a joiner that does not hands a v1-posing impostor its password and trusts it
/// (all v1 can do).
#[tokio::test]
async fn the_library_impostor_reports_what_each_joiner_gave_it() {
    use pyile::impostor::{Capture, ImpostorConfig, ImpostorKind, serve};
    async fn against(kind: ImpostorKind, cfg: pyile::JoinerConfig) -> (Result<Joiner, Error>, Capture) {
        let listener = TokioNet.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = pyile::Listener::local_addr(&listener).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let server = tokio::spawn(serve(listener, ImpostorConfig::new(kind, 7).deadline(Duration::from_secs(2)), tx));
        let r = Joiner::join(TokioNet, addr, cfg).await;
        let capture = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        server.abort();
        (r, capture)
    }
    use pyile::Network;

    let (r, c) = against(ImpostorKind::Scram, joiner_config(PW, "alice")).await;
    assert!(matches!(r, Err(Error::ImpostorAuthenticator { .. })), "{:?}", r.err());
    assert_eq!((c.cleartext.as_deref(), c.proof, c.trusted), (None, true, false), "{c:?}");

    let (r, c) = against(ImpostorKind::V1, joiner_config(PW, "alice").require_mutual_auth(true)).await;
    assert!(matches!(r, Err(Error::MutualAuthUnavailable)), "{:?}", r.err());
    assert_eq!((c.cleartext.as_deref(), c.proof, c.trusted), (None, false, false), "{c:?}");

    let (r, c) = against(ImpostorKind::V1, joiner_config(PW, "alice")).await;
    assert!(r.is_err(), "the impostor closes after the peer address");
    assert_eq!((c.cleartext.as_deref(), c.proof, c.trusted), (Some(PW), false, true), "{c:?}");
}
