//! The hostile clients: what one connection of each [`AttackKind`] does on the wire, over raw
//! tokio sockets bound to its attack's source address, and how it ended, into [`Metrics`].
//!
//! They speak plain v1 (no extension keys), so the same attack runs against our
//! authenticator and the reference. Whatever the authenticator sends back is read through
//! `pyile::wire::MessageReader`, bounded per value, and every wait is bounded: by the
//! connection's `hold`, by the end of the run, and during a handshake by the step timeout
//! (loadgen's `--handshake-timeout`). A connection ends exactly one way: closed by the
//! authenticator (with the time since connecting), closed by us, still open when the run
//! ended, or failed (something unexpected); every one is counted under its kind.
//!
//! Closing is always a reset (zero linger), so attacks leave no `TIME_WAIT` ports behind on
//! loadgen's side. Every wait looks at the end of the run first (`biased`), so nothing that
//! arrives after the run ended (lists caused by the honest joiners leaving) is counted.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use pyile::wire::{DecodeError, Message, MessageReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::spec::{Amount, AttackKind, AttackSpec};
use crate::metrics::{AttackCounter as C, Metrics};

/// Bound on one value read from the authenticator (a member list of ~40,000 members).
pub const MAX_READ_VALUE: usize = 1 << 20;
/// Bound on the connects of one `reconnect-storm` loop.
pub const MAX_STORM_CONNECTS: u64 = 1_000_000;
/// Pause of a `reconnect-storm` loop after a failed connect (so a refusing port is not spun on).
pub const STORM_BACKOFF: Duration = Duration::from_millis(5);
/// Size of one write of an `oversize` value.
const CHUNK: usize = 64 * 1024;

/// The honest members an attack may impersonate (`spoof-address`), and those it did.
#[derive(Debug, Default)]
pub struct Victims {
    /// Peer addresses of the honest joiners of this process that are joined now.
    pub joined: Mutex<BTreeSet<SocketAddr>>,
    /// Peer addresses some `spoof-address` connection announced.
    pub impersonated: Mutex<BTreeSet<SocketAddr>>,
}

impl Victims {
    /// The victim of attack connection `seq`: one of the joined honest members, chosen by
    /// `seq` (so spoofers spread over the members, the same way on every run).
    pub fn pick(&self, seq: u64) -> Option<SocketAddr> {
        let joined = lock(&self.joined);
        let n = joined.len() as u64;
        (n > 0).then(|| *joined.iter().nth((seq % n) as usize).expect("index below len"))
    }

    /// Whether `member` was impersonated.
    pub fn was_impersonated(&self, member: SocketAddr) -> bool {
        lock(&self.impersonated).contains(&member)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every hostile connection of a run shares.
#[derive(Debug)]
pub struct AttackContext {
    /// The authenticator's auth address.
    pub target: SocketAddr,
    /// The right password (for the kinds that get past it).
    pub password: String,
    /// A password that is certainly wrong.
    pub wrong_password: String,
    /// Bound on a connect and on each answer awaited during a handshake.
    pub step_timeout: Duration,
    /// Where the counts go.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the run ends: open connections close and count as open at the end.
    pub ending: CancellationToken,
    /// Members to impersonate.
    pub victims: Arc<Victims>,
    /// One entry per `--attack`, in plan order.
    pub attacks: Vec<RunningAttack>,
}

/// One `--attack` while it runs.
#[derive(Debug)]
pub struct RunningAttack {
    /// Its flag.
    pub spec: AttackSpec,
    /// Bounds its connections open at once (its `max`).
    pub open: Arc<Semaphore>,
    /// When its window ends (a `reconnect-storm` loop stops there).
    pub window_end: Instant,
}

impl RunningAttack {
    /// The attack `spec` in a run whose time zero is `start`, whose window (from `from` to `to`,
    /// offsets of the run) bounds its connections and sets its default concurrency.
    pub fn new(spec: AttackSpec, start: Instant, from: Duration, to: Duration) -> RunningAttack {
        let max = spec.concurrency(to.saturating_sub(from)) as usize;
        RunningAttack { spec, open: Arc::new(Semaphore::new(max)), window_end: start + to }
    }
}

/// How one connection ended.
enum End {
    /// The authenticator closed it (EOF or reset) at this instant.
    ClosedByAuth(Instant),
    /// Its `hold` expired and we closed it.
    HoldExpired,
    /// The run ended with it open.
    RunEnded,
    /// Something unexpected.
    Failed(String),
}

/// An `AsyncRead` that counts what it reads as the attack's received bytes.
struct Counted<R> {
    inner: R,
    kind: AttackKind,
    metrics: Arc<Metrics>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.metrics.attack_add(self.kind, C::ReceivedBytes, n as u64);
        }
        r
    }
}

/// One hostile TCP connection.
struct Conn {
    reader: MessageReader<Counted<OwnedReadHalf>>,
    w: OwnedWriteHalf,
    local: SocketAddr,
    connected: Instant,
    kind: AttackKind,
    metrics: Arc<Metrics>,
}

/// Connects from `source` to `to` within `limit`, with no delay and a zero linger.
async fn connect_raw(source: IpAddr, to: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let socket = if source.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = tokio::time::timeout(limit, socket.connect(to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    stream.set_zero_linger()?;
    Ok(stream)
}

impl Conn {
    async fn open(ctx: &AttackContext, kind: AttackKind, source: IpAddr, to: SocketAddr) -> Option<Conn> {
        ctx.metrics.attack_incr(kind, C::Attempted);
        match connect_raw(source, to, ctx.step_timeout).await {
            Ok(stream) => Some(Conn::wrap(ctx, kind, stream)),
            Err(e) => {
                tracing::debug!(%kind, %source, "attack connect failed: {e}");
                ctx.metrics.attack_incr(kind, C::ConnectFailed);
                None
            }
        }
    }

    fn wrap(ctx: &AttackContext, kind: AttackKind, stream: TcpStream) -> Conn {
        let local = stream.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (r, w) = stream.into_split();
        let counted = Counted { inner: r, kind, metrics: ctx.metrics.clone() };
        Conn {
            reader: MessageReader::with_limit(counted, MAX_READ_VALUE),
            w,
            local,
            connected: Instant::now(),
            kind,
            metrics: ctx.metrics.clone(),
        }
    }

    /// Writes `bytes`; a failed write means the authenticator closed the connection.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), End> {
        match self.w.write_all(bytes).await {
            Ok(()) => {
                self.metrics.attack_add(self.kind, C::SentBytes, bytes.len() as u64);
                Ok(())
            }
            Err(_) => Err(End::ClosedByAuth(Instant::now())),
        }
    }

    /// The next message, within the step timeout, the hold and the run.
    async fn recv(&mut self, ctx: &AttackContext, hold: Option<Instant>) -> Result<Message, End> {
        let step = tokio::time::sleep(ctx.step_timeout);
        tokio::select! {
            biased;
            _ = ctx.ending.cancelled() => Err(End::RunEnded),
            _ = sleep_until(hold) => Err(End::HoldExpired),
            _ = step => Err(End::Failed(format!("no answer within {:?}", ctx.step_timeout))),
            m = self.reader.next() => m.map_err(read_end),
        }
    }

    /// Reads the banned status; `Err` if banned (counted) or the connection ended.
    async fn expect_not_banned(&mut self, ctx: &AttackContext, hold: Option<Instant>) -> Result<(), End> {
        match self.recv(ctx, hold).await? {
            Message::Banned { banned: false, .. } => Ok(()),
            Message::Banned { banned: true, .. } => {
                ctx.metrics.attack_incr(self.kind, C::Banned);
                Err(self.hold(ctx, hold).await)
            }
            other => Err(End::Failed(format!("expected the banned status, got {}", other.kind()))),
        }
    }

    /// Banned status, password, result: `Ok` once authenticated.
    async fn authenticate(&mut self, ctx: &AttackContext, password: &str, hold: Option<Instant>) -> Result<(), End> {
        self.expect_not_banned(ctx, hold).await?;
        self.send(
            &Message::Shadow { password: password.into(), version: None, alias: None, one_connection: false }.encode(),
        )
        .await?;
        match self.recv(ctx, hold).await? {
            Message::Authenticated(true) => Ok(()),
            Message::Authenticated(false) => {
                ctx.metrics.attack_incr(self.kind, C::Rejected);
                Err(self.hold(ctx, hold).await)
            }
            other => Err(End::Failed(format!("expected the password result, got {}", other.kind()))),
        }
    }

    /// After `peer_address`: the first list and the distribution address.
    async fn until_dist_addr(&mut self, ctx: &AttackContext, hold: Option<Instant>) -> Result<SocketAddr, End> {
        loop {
            match self.recv(ctx, hold).await? {
                Message::Distro { .. } => {}
                Message::DistAddr { addr, .. } => return Ok(addr),
                other => return Err(End::Failed(format!("expected distro/dist_addr, got {}", other.kind()))),
            }
        }
    }

    /// Holds the connection, reading and dropping whatever comes, until the authenticator
    /// closes it, `hold` passes or the run ends.
    async fn hold(&mut self, ctx: &AttackContext, hold: Option<Instant>) -> End {
        tokio::select! {
            biased;
            _ = ctx.ending.cancelled() => End::RunEnded,
            _ = sleep_until(hold) => End::HoldExpired,
            at = drain(self.reader.get_mut()) => End::ClosedByAuth(at),
        }
    }
}

/// A read error means the authenticator closed (EOF or reset), except for what is not v1.
fn read_end(e: DecodeError) -> End {
    match e {
        DecodeError::Eof { .. } | DecodeError::Io(_) => End::ClosedByAuth(Instant::now()),
        other => End::Failed(format!("unexpected answer: {other}")),
    }
}

/// Reads and drops bytes until EOF or an error; returns when that happened.
async fn drain(r: &mut (impl AsyncRead + Unpin)) -> Instant {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Runs one planned connection of attack `attack` (index into `ctx.attacks`) from
/// `source`; `seq` is its operation number (it picks a `spoof-address` victim).
pub async fn run(ctx: Arc<AttackContext>, attack: usize, seq: u64, source: IpAddr) {
    let a = &ctx.attacks[attack];
    let kind = a.spec.kind;
    let Ok(_permit) = a.open.clone().try_acquire_owned() else {
        ctx.metrics.attack_incr(kind, C::Skipped);
        return;
    };
    if kind == AttackKind::ReconnectStorm {
        let loops = matches!(a.spec.amount, Amount::Count(_));
        return storm(&ctx, source, if loops { Some(a.window_end) } else { None }).await;
    }
    let end = match kind {
        AttackKind::SpoofAddress => {
            let Some(victim) = ctx.victims.pick(seq) else {
                ctx.metrics.attack_incr(kind, C::Skipped);
                return;
            };
            lock(&ctx.victims.impersonated).insert(victim);
            let Some(mut conn) = Conn::open(&ctx, kind, source, ctx.target).await else { return };
            let connected = conn.connected;
            let end = member(&ctx, &a.spec, &mut conn, source, victim).await;
            (end, connected)
        }
        AttackKind::DistChatter => {
            let Ok(listener) = TcpListener::bind(SocketAddr::new(source, 0)).await else {
                ctx.metrics.attack_incr(kind, C::Failed);
                return;
            };
            let Some(mut conn) = Conn::open(&ctx, kind, source, ctx.target).await else { return };
            let connected = conn.connected;
            let peer = listener.local_addr().unwrap_or(conn.local);
            let end = member(&ctx, &a.spec, &mut conn, source, peer).await;
            drop(listener);
            (end, connected)
        }
        _ => {
            let Some(mut conn) = Conn::open(&ctx, kind, source, ctx.target).await else { return };
            let connected = conn.connected;
            (simple(&ctx, &a.spec, &mut conn).await, connected)
        }
    };
    record(&ctx, kind, end);
}

fn record(ctx: &AttackContext, kind: AttackKind, (end, connected): (End, Instant)) {
    let m = &ctx.metrics;
    match end {
        End::ClosedByAuth(at) => m.attack_closed(kind, at.saturating_duration_since(connected)),
        End::HoldExpired => m.attack_incr(kind, C::ClosedByUs),
        End::RunEnded => m.attack_incr(kind, C::OpenAtEnd),
        End::Failed(why) => {
            tracing::debug!(%kind, "attack connection failed: {why}");
            m.attack_incr(kind, C::Failed);
        }
    }
}

/// The kinds with one connection and no membership.
async fn simple(ctx: &AttackContext, spec: &AttackSpec, conn: &mut Conn) -> End {
    let hold = spec.hold.map(|h| conn.connected + h);
    let result: Result<(), End> = async {
        match spec.kind {
            AttackKind::Silent => {}
            AttackKind::Slowloris => return Err(slowloris(ctx, conn, spec.every, hold).await),
            AttackKind::Oversize => {
                let mut value = Vec::with_capacity(spec.bytes.min(CHUNK as u64) as usize);
                value.extend_from_slice(b"{\"shadow\": \"");
                let mut left = spec.bytes;
                while left > 0 {
                    let take = (CHUNK - value.len()).min(left as usize);
                    value.resize(value.len() + take, b'a');
                    left -= take as u64;
                    write_watching(ctx, conn, &value, hold).await?;
                    value.clear();
                }
            }
            AttackKind::Garbage => {
                // Bytes that can start no JSON value (never `{`, never whitespace), a chunk at
                // a time so `bytes=1GiB` costs no more memory than `bytes=64KiB`.
                let mut chunk = Vec::with_capacity(CHUNK.min(spec.bytes as usize));
                let mut at = 0u64;
                while at < spec.bytes {
                    let n = (spec.bytes - at).min(CHUNK as u64);
                    chunk.clear();
                    chunk.extend((at..at + n).map(|i| 0x80 | (i as u8).wrapping_mul(37)));
                    write_watching(ctx, conn, &chunk, hold).await?;
                    at += n;
                }
            }
            AttackKind::HalfHandshake => conn.authenticate(ctx, &ctx.password, hold).await?,
            AttackKind::WrongPassword => {
                conn.authenticate(ctx, &ctx.wrong_password, hold).await?;
                return Err(End::Failed("the authenticator accepted a wrong password".into()));
            }
            AttackKind::NoDist => {
                conn.authenticate(ctx, &ctx.password, hold).await?;
                // Our own address, on a port of ours (the auth connection's): the only
                // peer address an authenticator that checks sources accepts.
                conn.send(&Message::PeerAddress(conn.local).encode()).await?;
                conn.until_dist_addr(ctx, hold).await?;
            }
            other => unreachable!("{other} is not a simple attack"),
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => conn.hold(ctx, hold).await,
        Err(end) => end,
    }
}

/// Writes `bytes` while watching for the authenticator closing, the hold and the run.
async fn write_watching(ctx: &AttackContext, conn: &mut Conn, bytes: &[u8], hold: Option<Instant>) -> Result<(), End> {
    let Conn { reader, w, kind, metrics, .. } = conn;
    tokio::select! {
        biased;
        _ = ctx.ending.cancelled() => Err(End::RunEnded),
        _ = sleep_until(hold) => Err(End::HoldExpired),
        at = drain(reader.get_mut()) => Err(End::ClosedByAuth(at)),
        r = w.write_all(bytes) => match r {
            Ok(()) => {
                metrics.attack_add(*kind, C::SentBytes, bytes.len() as u64);
                Ok(())
            }
            Err(_) => Err(End::ClosedByAuth(Instant::now())),
        },
    }
}

/// The start of a password value, one byte every `every`, never finished.
async fn slowloris(ctx: &AttackContext, conn: &mut Conn, every: Duration, hold: Option<Instant>) -> End {
    const START: &[u8] = b"{\"shadow\": \"";
    let mut sent = 0usize;
    let mut next = tokio::time::Instant::now();
    loop {
        let tick = tokio::time::sleep_until(next);
        tokio::select! {
            biased;
            _ = ctx.ending.cancelled() => return End::RunEnded,
            _ = sleep_until(hold) => return End::HoldExpired,
            at = drain(conn.reader.get_mut()) => return End::ClosedByAuth(at),
            _ = tick => {
                let byte = START.get(sent).copied().unwrap_or(b'a');
                if let Err(end) = conn.send(&[byte]).await {
                    return end;
                }
                sent += 1;
                next += every;
            }
        }
    }
}

/// A member by the raw protocol: the auth handshake announcing `peer` (for `spoof-address`
/// an honest member's address: if the authenticator goes on, it joins there), the distribution
/// connection, heartbeats answered; `dist-chatter` also writes a heartbeat value on the
/// distribution socket every `spec.every`. Lists on the distribution socket are counted.
async fn member(ctx: &AttackContext, spec: &AttackSpec, conn: &mut Conn, source: IpAddr, peer: SocketAddr) -> End {
    let hold = spec.hold.map(|h| conn.connected + h);
    let dist_addr = match async {
        conn.authenticate(ctx, &ctx.password, hold).await?;
        conn.send(&Message::PeerAddress(peer).encode()).await?;
        conn.until_dist_addr(ctx, hold).await
    }
    .await
    {
        Ok(a) => a,
        Err(end) => return end,
    };
    let kind = spec.kind;
    let dist = match connect_raw(source, dist_addr, ctx.step_timeout).await {
        Ok(s) => s,
        Err(e) => return End::Failed(format!("distribution connect to {dist_addr}: {e}")),
    };
    let mut dist = Conn::wrap(ctx, kind, dist);
    let chatter = kind == AttackKind::DistChatter;
    let value = Message::Heartbeat.encode();
    let mut next = tokio::time::Instant::now() + spec.every;
    let mut lists = 0u64;
    loop {
        let tick = tokio::time::sleep_until(next);
        tokio::select! {
            biased;
            _ = ctx.ending.cancelled() => return End::RunEnded,
            _ = sleep_until(hold) => return End::HoldExpired,
            m = conn.reader.next() => match m {
                Ok(m) if m.as_heartbeat().is_some() => {
                    if let Err(end) = conn.send(&Message::Heartbeat.encode()).await {
                        return end;
                    }
                }
                Ok(_) => {}
                Err(e) => return read_end(e),
            },
            m = dist.reader.next() => match m {
                Ok(Message::Distro { .. }) => {
                    lists += 1;
                    let counter = if lists == 1 { C::Admitted } else { C::ListsReceived };
                    ctx.metrics.attack_incr(kind, counter);
                }
                Ok(_) => {}
                Err(e) => return read_end(e),
            },
            _ = tick, if chatter => {
                if let Err(end) = dist.send(&value).await {
                    return end;
                }
                ctx.metrics.attack_incr(kind, C::ValuesWritten);
                next += spec.every;
            }
        }
    }
}

/// `reconnect-storm`: connect and reset at once; with `until`, again and again until then.
async fn storm(ctx: &AttackContext, source: IpAddr, until: Option<Instant>) {
    let kind = AttackKind::ReconnectStorm;
    let m = &ctx.metrics;
    for _ in 0..MAX_STORM_CONNECTS {
        if ctx.ending.is_cancelled() {
            return;
        }
        m.attack_incr(kind, C::Attempted);
        let connected = tokio::select! {
            biased;
            _ = ctx.ending.cancelled() => return,
            r = connect_raw(source, ctx.target, ctx.step_timeout) => r,
        };
        match connected {
            // Dropped with zero linger: a reset.
            Ok(stream) => {
                drop(stream);
                m.attack_incr(kind, C::ClosedByUs);
            }
            Err(_) => {
                m.attack_incr(kind, C::ConnectFailed);
                tokio::time::sleep(STORM_BACKOFF).await;
            }
        }
        match until {
            Some(t) if Instant::now() < t => tokio::task::yield_now().await,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victims_are_picked_by_sequence_among_the_joined() {
        let v = Victims::default();
        assert_eq!(v.pick(3), None);
        let a: SocketAddr = "127.0.1.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.1.2:4000".parse().unwrap();
        lock(&v.joined).extend([b, a]);
        assert_eq!((v.pick(0), v.pick(1), v.pick(2)), (Some(a), Some(b), Some(a)));
        assert!(!v.was_impersonated(a));
        lock(&v.impersonated).insert(a);
        assert!(v.was_impersonated(a) && !v.was_impersonated(b));
    }

    #[test]
    fn the_default_concurrency_is_the_semaphore() {
        let start = Instant::now();
        let a =
            RunningAttack::new("silent:5/s,hold=2s".parse().unwrap(), start, Duration::ZERO, Duration::from_secs(60));
        assert_eq!(a.open.available_permits(), 10);
        assert_eq!(a.window_end, start + Duration::from_secs(60));
        let a = RunningAttack::new("silent:5/s,max=3".parse().unwrap(), start, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(a.open.available_permits(), 3);
    }
}
