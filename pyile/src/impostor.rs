//! An impostor authenticator: something listening where joiners expect their authenticator
//! (a hijacked name, a mistyped address, a machine on the path) that does **not** know the
//! password and poses as an authenticator to find out what joiners give away.
//!
//! It exists so that the simulator and the load generator can show what protocol 2's mutual
//! proof (see [`crate::scram`]) buys, under load and faults, rather than assert it once in a
//! unit test: a protocol-2 joiner facing an impostor that offers SCRAM must refuse it
//! ([`crate::Error::ImpostorAuthenticator`]) after sending only a proof, which is useless
//! without an offline dictionary attack; a joiner started with
//! [`require_mutual_auth`](crate::JoinerConfig::require_mutual_auth) facing an impostor that
//! poses as a v1 authenticator (a downgrade) must stop before its password leaves it
//! ([`crate::Error::MutualAuthUnavailable`]). A v1 joiner, or a protocol-2 joiner without
//! `require_mutual_auth`, hands a v1-posing impostor its password in clear: v1 cannot do
//! better, and the [`Capture`] says so.
//!
//! The impostor plays one exchange per connection and reports it as a [`Capture`]:
//!
//! - [`ImpostorKind::Scram`] greets like a protocol-2 authenticator offering SCRAM, sends a
//!   well-formed challenge (its own salt; 4,096 iterations), and accepts whatever proof
//!   comes with a forged `scram_signature` (it cannot compute the real one);
//! - [`ImpostorKind::V1`] greets like the reference (`{"banned":false}`) and accepts whatever
//!   `shadow` comes.
//!
//! Either way it then waits for the joiner's next message: a joiner that sends its peer
//! address went on with the handshake, i.e. it **trusted** the impostor. Then the impostor
//! closes. Every connection is bounded by [`ImpostorConfig`]'s deadline and value size, like
//! the real authenticator's handshakes.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use crate::net::{Listener, NetStream};
use crate::scram::{ServerExchange, Verifier};
use crate::wire::{Message, MessageReader, PROTOCOL_VERSION};

/// The bound on one value the impostor reads (the authenticator's handshake default).
const HANDSHAKE_VALUE_LEN: usize = 2048;

/// What an impostor poses as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImpostorKind {
    /// A protocol-2 authenticator offering SCRAM (it forges the server signature).
    Scram,
    /// A v1 (reference) authenticator: a downgrade, to collect cleartext passwords.
    V1,
}

impl ImpostorKind {
    /// The name used in scenario files, flags and traces.
    pub fn name(self) -> &'static str {
        match self {
            ImpostorKind::Scram => "scram",
            ImpostorKind::V1 => "v1",
        }
    }

    /// Parses [`ImpostorKind::name`].
    pub fn parse(s: &str) -> Option<ImpostorKind> {
        match s {
            "scram" => Some(ImpostorKind::Scram),
            "v1" => Some(ImpostorKind::V1),
            _ => None,
        }
    }
}

/// An impostor's settings.
#[derive(Clone, Debug)]
pub struct ImpostorConfig {
    kind: ImpostorKind,
    deadline: Duration,
    max_value_len: usize,
    seed: u64,
}

impl ImpostorConfig {
    /// An impostor of `kind`, its nonces and salt from `seed` (so simulations replay), with a
    /// 5 s deadline per connection and the wire's default value bound.
    pub fn new(kind: ImpostorKind, seed: u64) -> Self {
        ImpostorConfig { kind, deadline: Duration::from_secs(5), max_value_len: HANDSHAKE_VALUE_LEN, seed }
    }

    /// How long one connection may take, from accept to close.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// What it poses as.
    pub fn kind(&self) -> ImpostorKind {
        self.kind
    }
}

/// What one joiner gave an impostor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The joiner's address.
    pub source: SocketAddr,
    /// Its first message announced protocol 2 (`"pyile":2`).
    pub protocol2: bool,
    /// The password it sent in clear (`shadow`), if it did.
    pub cleartext: Option<String>,
    /// Whether it sent a SCRAM proof (useless to the impostor but for an offline dictionary
    /// attack at the challenge's iterations).
    pub proof: bool,
    /// Whether it went on with the handshake (sent its peer address) after the impostor
    /// accepted it: it took the impostor for its authenticator.
    pub trusted: bool,
    /// Why the exchange ended before that, if it did (the joiner closed, a timeout, ...).
    pub ended: Option<String>,
}

/// Serves impostor exchanges on `listener` until the task is dropped, one task per
/// connection, and sends one [`Capture`] per connection to `captures` (bounded: a slow
/// reader slows the impostor down, never grows a buffer). Returns when `captures` is closed
/// or the listener fails.
pub async fn serve<L: Listener>(listener: L, cfg: ImpostorConfig, captures: mpsc::Sender<Capture>) {
    let mut rng = ChaCha20Rng::seed_from_u64(cfg.seed);
    // The salt of a password the impostor does not know: its challenge looks like any other.
    let guess: String = (0..16).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect();
    let verifier = match Verifier::new(&guess, crate::scram::DEFAULT_ITERATIONS, &mut rng) {
        Ok(v) => std::sync::Arc::new(v),
        Err(e) => {
            debug!("impostor: no verifier: {e}");
            return;
        }
    };
    loop {
        let (stream, source) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                debug!("impostor: accept failed: {e}");
                return;
            }
        };
        if captures.is_closed() {
            return;
        }
        let (cfg, verifier, captures) = (cfg.clone(), verifier.clone(), captures.clone());
        let seed = rng.random::<u64>();
        tokio::spawn(async move {
            let capture = exchange(stream, source, &cfg, &verifier, seed).await;
            let _ = captures.send(capture).await;
        });
    }
}

/// One connection's exchange.
async fn exchange<S: NetStream>(
    stream: S,
    source: SocketAddr,
    cfg: &ImpostorConfig,
    verifier: &Verifier,
    seed: u64,
) -> Capture {
    let mut capture = Capture { source, protocol2: false, cleartext: None, proof: false, trusted: false, ended: None };
    let deadline = Instant::now() + cfg.deadline;
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = MessageReader::with_limit(r, cfg.max_value_len);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let result: Result<(), String> = async {
        let greeting = match cfg.kind {
            ImpostorKind::Scram => Message::Banned { banned: false, version: Some(PROTOCOL_VERSION), scram: true },
            ImpostorKind::V1 => Message::Banned { banned: false, version: None, scram: false },
        };
        write(&mut w, &greeting, deadline).await?;
        match read(&mut reader, deadline).await? {
            Message::Shadow { password, version, .. } => {
                capture.protocol2 = version.is_some_and(|v| v >= PROTOCOL_VERSION);
                capture.cleartext = Some(password);
                write(&mut w, &Message::Authenticated(true), deadline).await?;
            }
            Message::ScramStart { nonce, version, .. } if cfg.kind == ImpostorKind::Scram => {
                capture.protocol2 = version.is_some_and(|v| v >= PROTOCOL_VERSION);
                let server = ServerExchange::start(verifier, &nonce, &mut rng).map_err(|e| e.to_string())?;
                write(&mut w, &Message::ScramChallenge(server.challenge().clone()), deadline).await?;
                match read(&mut reader, deadline).await? {
                    Message::ScramProof { .. } => capture.proof = true,
                    other => return Err(format!("sent {} instead of a proof", other.kind())),
                }
                let mut forged = [0u8; 32];
                rng.fill_bytes(&mut forged);
                let accepted = Message::ScramAccepted { signature: B64.encode(forged) };
                write(&mut w, &accepted, deadline).await?;
            }
            other => return Err(format!("sent {} first", other.kind())),
        }
        match read(&mut reader, deadline).await? {
            Message::PeerAddress(_) => capture.trusted = true,
            other => return Err(format!("sent {} after being accepted", other.kind())),
        }
        Ok(())
    }
    .await;
    capture.ended = result.err();
    let _ = w.shutdown().await;
    capture
}

async fn write<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, m: &Message, deadline: Instant) -> Result<(), String> {
    match timeout_at(deadline, w.write_all(&m.encode())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write failed: {e}")),
        Err(_) => Err("timed out writing".into()),
    }
}

async fn read<R: tokio::io::AsyncRead + Unpin>(r: &mut MessageReader<R>, deadline: Instant) -> Result<Message, String> {
    match timeout_at(deadline, r.next()).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(format!("the joiner closed or sent garbage: {e}")),
        Err(_) => Err("timed out".into()),
    }
}
