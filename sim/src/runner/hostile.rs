//! Hostile hosts: the software of an `attack`'s hosts, raw wire protocol on `turmoil::net`.
//!
//! Each [`Cmd::Attack`] opens one connection to the authenticator's auth port and plays the
//! kind's script ([`AttackKind`]): the banned status is always read first, then the script
//! stalls, drips, oversends, sends garbage, stops half way through the handshake, announces
//! another host's address, chatters on a distribution socket, or hangs up at once. Every
//! address and parameter comes from the driver in the [`AttackScript`] (garbage bytes from
//! the script's seed), so a connection's behaviour is a function of the run's seed.
//!
//! The host reports [`Obs::AttackOpened`] when the connection is up and [`Obs::AttackClosed`]
//! when it ends: closed by the authenticator (an EOF or a reset on either of its
//! connections, or a refused connect) or hung up by the script itself, with the stage it had
//! reached, and for members (a chatterer, an admitted spoofer) the lists it received. The
//! authenticator's side of the story (`HandshakeFailed` and its reason, admissions) comes
//! from its own events.

use std::net::SocketAddr;
use std::time::Duration;

use pyile::wire::MessageReader;
use rand::RngExt;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use turmoil::net::TcpStream;

use super::hosts::{Clock, Cmd, HostCtx, Obs};
use crate::rng::rng_for;
use crate::scenario::AttackKind;

/// What one hostile connection does; decided by the driver when the attack fires.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackScript {
    /// The script.
    pub kind: AttackKind,
    /// oversize/garbage: bytes sent instead of a password.
    pub bytes: u32,
    /// slowloris: gap between dripped bytes; dist_chatter: gap between writes.
    pub interval: Duration,
    /// When a member (chatterer, admitted spoofer) hangs up, in simulated time (None: never).
    pub until: Option<Duration>,
    /// The peer address it announces (no_dist, dist_chatter: its own; spoof_address: the
    /// victim's).
    pub peer: Option<SocketAddr>,
    /// Seed of its garbage.
    pub seed: u64,
}

/// How a hostile connection ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Closed by the authenticator (EOF, reset, refused); false: the script hung up.
    pub by_auth: bool,
    /// Where in the script, and how.
    pub detail: String,
    /// Whether it completed a handshake (connected its distribution socket).
    pub member: bool,
    /// Member lists received on its distribution connection from its own admission on.
    pub lists: u64,
    /// Their bytes.
    pub list_bytes: u64,
}

impl Outcome {
    fn closed(detail: String) -> Outcome {
        Outcome { by_auth: true, detail, ..Outcome::default() }
    }

    fn hung_up(detail: &str) -> Outcome {
        Outcome { by_auth: false, detail: detail.into(), ..Outcome::default() }
    }
}

/// A hostile host: runs one task per [`Cmd::Attack`].
pub(super) async fn host(ctx: HostCtx) -> turmoil::Result {
    let clock = Clock::start();
    let inbox = &ctx.shared.inboxes[ctx.host];
    loop {
        for cmd in inbox.drain() {
            if let Cmd::Attack { conn, script } = cmd {
                tokio::task::spawn_local(connection(ctx.clone(), clock, conn, script));
            }
        }
        inbox.notify.notified().await;
    }
}

async fn connection(ctx: HostCtx, clock: Clock, conn: u64, script: AttackScript) {
    let (shared, host) = (ctx.shared.clone(), ctx.host);
    let stream = match TcpStream::connect(shared.auth_addr).await {
        Ok(s) => s,
        Err(e) => {
            let outcome = Outcome::closed(format!("connect failed: {e}"));
            shared.push(host, Obs::AttackClosed { at: clock.now(), host, conn, outcome });
            return;
        }
    };
    if let Ok(local) = stream.local_addr() {
        shared.push(host, Obs::AttackOpened { at: clock.now(), host, conn, local });
    }
    let (rd, wr) = tokio::io::split(stream);
    let mut c = Conn { rd: MessageReader::new(rd), wr, stage: "connected" };
    let password = shared.settings.password.clone();
    let outcome = match play(&mut c, &script, &password, clock, conn).await {
        Ok(o) | Err(o) => o,
    };
    drop(c);
    shared.push(host, Obs::AttackClosed { at: clock.now(), host, conn, outcome });
}

/// One connection's two halves and how far its script got.
struct Conn {
    rd: MessageReader<ReadHalf<TcpStream>>,
    wr: WriteHalf<TcpStream>,
    stage: &'static str,
}

impl Conn {
    async fn send(&mut self, bytes: &[u8]) -> Result<(), Outcome> {
        match self.wr.write_all(bytes).await {
            Ok(()) => Ok(()),
            Err(e) => Err(Outcome::closed(format!("{}: write failed: {e}", self.stage))),
        }
    }

    async fn send_json(&mut self, v: Value) -> Result<(), Outcome> {
        self.send(&serde_json::to_vec(&v).expect("plain JSON")).await
    }

    async fn read(&mut self) -> Result<Value, Outcome> {
        self.rd.next_value().await.map_err(|e| Outcome::closed(format!("{}: {e}", self.stage)))
    }

    /// Reads a value that must have `key` equal to `want`.
    async fn expect(&mut self, key: &str, want: Value, stage: &'static str) -> Result<Value, Outcome> {
        let v = self.read().await?;
        if v.get(key) != Some(&want) {
            return Err(Outcome::closed(format!("{}: got {v} instead of {key} = {want}", self.stage)));
        }
        self.stage = stage;
        Ok(v)
    }

    /// Waits for the authenticator to close the connection (whatever it sends meanwhile).
    async fn until_closed(&mut self) -> Outcome {
        loop {
            if let Err(o) = self.read().await {
                return o;
            }
        }
    }
}

fn addr_json(a: SocketAddr) -> Value {
    json!([a.ip().to_string(), a.port()])
}

/// The kind's script; `Err` is an early end (the authenticator closed, or refused a step).
async fn play(c: &mut Conn, s: &AttackScript, password: &str, clock: Clock, conn: u64) -> Result<Outcome, Outcome> {
    c.expect("banned", json!(false), "banned_status").await?;
    match s.kind {
        AttackKind::ReconnectStorm => Ok(Outcome::hung_up("banned_status: hung up")),
        AttackKind::Silent => Ok(c.until_closed().await),
        AttackKind::Slowloris => drip(c, s.interval).await,
        AttackKind::Oversize => {
            let fill = (s.bytes as usize).saturating_sub(r#"{"shadow":""}"#.len());
            c.send(format!(r#"{{"shadow":"{}"}}"#, "x".repeat(fill)).as_bytes()).await?;
            c.stage = "oversize_sent";
            Ok(c.until_closed().await)
        }
        AttackKind::Garbage => {
            const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789:,. =";
            let mut rng = rng_for(s.seed, "garbage");
            let mut g = vec![b'{'];
            g.extend((2..s.bytes.max(2)).map(|_| CHARS[rng.random_range(0..CHARS.len())]));
            g.push(b'}');
            c.send(&g).await?;
            c.stage = "garbage_sent";
            Ok(c.until_closed().await)
        }
        AttackKind::HalfHandshake => {
            c.send_json(json!({"shadow": password})).await?;
            c.expect("authenticated", json!(true), "authenticated").await?;
            Ok(c.until_closed().await)
        }
        AttackKind::NoDist => {
            handshake_to_dist_addr(c, s, password, false).await?;
            Ok(c.until_closed().await)
        }
        AttackKind::SpoofAddress | AttackKind::DistChatter => member(c, s, password, clock, conn).await,
    }
}

/// slowloris: a `shadow` value one byte per `interval`, never finished.
async fn drip(c: &mut Conn, interval: Duration) -> Result<Outcome, Outcome> {
    const PREFIX: &[u8] = br#"{"shadow": ""#;
    c.stage = "dripping";
    for k in 0usize.. {
        tokio::select! {
            biased;
            r = c.rd.next_value() => if let Err(e) = r {
                return Ok(Outcome::closed(format!("dripping ({k} bytes sent): {e}")));
            },
            _ = tokio::time::sleep(interval) => {
                c.send(&[PREFIX.get(k).copied().unwrap_or(b'a')]).await?;
            }
        }
    }
    unreachable!("an endless drip")
}

/// Password (announcing protocol 2 with `v2`), `peer` as the peer address, the first list,
/// and the distribution address with its pairing token (protocol 2).
async fn handshake_to_dist_addr(
    c: &mut Conn,
    s: &AttackScript,
    password: &str,
    v2: bool,
) -> Result<(SocketAddr, Option<u64>), Outcome> {
    let shadow = if v2 { json!({"shadow": password, "pyile": 2}) } else { json!({"shadow": password}) };
    c.send_json(shadow).await?;
    c.expect("authenticated", json!(true), "authenticated").await?;
    let peer = s.peer.expect("the driver gives member scripts a peer address");
    c.send_json(json!({"peer_address": addr_json(peer)})).await?;
    c.stage = "peer_address_sent";
    let first = c.read().await?;
    if first.get("distro").is_none() {
        return Err(Outcome::closed(format!("peer_address_sent: got {first} instead of the first list")));
    }
    c.stage = "first_list";
    let v = c.read().await?;
    let a = &v["dist_addr"];
    let addr = a[0].as_str().and_then(|ip| ip.parse().ok()).zip(a[1].as_u64().and_then(|p| u16::try_from(p).ok()));
    let Some((ip, port)) = addr else {
        return Err(Outcome::closed(format!("first_list: got {v} instead of dist_addr")));
    };
    c.stage = "dist_addr";
    Ok((SocketAddr::new(ip, port), v["dist_token"].as_u64()))
}

/// A protocol-2 member (its distribution connection paired by token, so two from one IP
/// are never crossed): answers heartbeats with the version of the newest list it holds
/// (whole lists and deltas alike: it follows versions, not contents), counts lists, and (dist_chatter) writes a known message on the distribution socket every
/// `interval`, which the authenticator must drop; hangs up at `until`.
async fn member(c: &mut Conn, s: &AttackScript, password: &str, clock: Clock, conn: u64) -> Result<Outcome, Outcome> {
    let (dist_to, token) = handshake_to_dist_addr(c, s, password, true).await?;
    let dist = TcpStream::connect(dist_to)
        .await
        .map_err(|e| Outcome::closed(format!("dist_addr: distribution connect failed: {e}")))?;
    let (drd, dwr) = tokio::io::split(dist);
    let mut d = Conn { rd: MessageReader::new(drd), wr: dwr, stage: "member_dist" };
    if let Some(t) = token {
        d.send_json(json!({"dist_token": t})).await?;
    }
    let mut held = 0u64;
    c.stage = "member";
    let mut out = Outcome { member: true, ..Outcome::default() };
    let peer = s.peer.expect("checked");
    let own = addr_json(peer);
    let mut admitted = false;
    let hang_up = async {
        match s.until {
            Some(u) => tokio::time::sleep(u.saturating_sub(clock.now())).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(hang_up);
    let chatter = s.kind == AttackKind::DistChatter;
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + s.interval, s.interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0u64;
    let end = loop {
        tokio::select! {
            biased;
            _ = &mut hang_up => break Outcome::hung_up("member: hung up"),
            v = c.rd.next_value() => match v {
                Ok(v) if v.get("<3").is_some() => {
                    if let Err(o) = c.send_json(json!({"<3": true, "version": held})).await {
                        break o;
                    }
                }
                Ok(_) => {}
                Err(e) => break Outcome::closed(format!("member: auth connection: {e}")),
            },
            v = d.rd.next_value() => match v {
                Ok(v) => if v.get("distro").is_some() || v.get("delta").is_some() {
                    // Counted from its own admission on (what was published while it was a
                    // member): the deltas before it bring the committed list of its
                    // handshake up to the version that admitted it.
                    let listed = if v.get("delta").is_some() { &v["added"] } else { &v["distro"] };
                    admitted = admitted || listed.as_array().is_some_and(|a| a.contains(&own));
                    if admitted {
                        out.lists += 1;
                        out.list_bytes += d.rd.last_len() as u64;
                    }
                    held = held.max(v["version"].as_u64().unwrap_or(0));
                },
                Err(e) => break Outcome::closed(format!("member: distribution connection: {e}")),
            },
            _ = ticks.tick(), if chatter => {
                // Messages the authenticator knows, none of which it may act on here.
                let v = match k % 4 {
                    0 => json!({"<3": true}),
                    1 => json!({"distro": [addr_json(peer), [peer.ip().to_string(), 1]]}),
                    2 => json!({"dist_token": conn}),
                    _ => json!({"peer_address": addr_json(peer)}),
                };
                k += 1;
                if let Err(o) = d.send_json(v).await {
                    break o;
                }
            }
        }
    };
    out.by_auth = end.by_auth;
    out.detail = end.detail;
    Ok(out)
}
