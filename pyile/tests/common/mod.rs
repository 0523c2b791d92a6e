//! Helpers shared by the integration tests: fast test settings and waiting
//! on events with a bound.
#![allow(dead_code)]

use std::time::Duration;

use pyile::{AuthenticatorConfig, Event, EventKind, EventStream, JoinerConfig};

/// Short heartbeat settings so tests cover several intervals quickly.
pub const INTERVAL: Duration = Duration::from_millis(100);

pub fn auth_config(password: &str) -> AuthenticatorConfig {
    AuthenticatorConfig::new(password)
        .listen("127.0.0.1:0".parse().unwrap())
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(INTERVAL * 3)
        .handshake_timeout(Duration::from_secs(3))
}

pub fn joiner_config(password: &str, alias: &str) -> JoinerConfig {
    JoinerConfig::new(password)
        .alias(alias)
        .local_ip("127.0.0.1".parse().unwrap())
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(INTERVAL * 5)
        .handshake_timeout(Duration::from_secs(5))
}

/// Waits (at most `limit`) for the first event matching `pred`.
pub async fn wait_for(
    events: &mut EventStream,
    limit: Duration,
    mut pred: impl FnMut(&EventKind) -> bool,
) -> Option<Event> {
    tokio::time::timeout(limit, async {
        while let Some(ev) = events.recv().await {
            if pred(&ev.kind) {
                return Some(ev);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// Waits (at most `limit`) until `cond` holds, polling every 10 ms.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

// ---------------------------------------------------------------------------
// Hand-driven raw-protocol clients (hostile and scale tests).
// ---------------------------------------------------------------------------

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use pyile::wire::{Message, MessageReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Parses an IP literal.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Connects to `remote` from `local` (any port), as a client on its own
/// loopback address.
pub async fn connect_from(local: IpAddr, remote: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if local.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(remote).await
}

/// Reads and discards bytes until the remote end closes (EOF or reset);
/// true if that happened within `limit`.
pub async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Whether a TCP connect to `addr` is refused (nothing listens there).
pub async fn refuses(addr: SocketAddr) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// An auth connection driven by hand, speaking the raw v1 protocol.
pub struct RawClient {
    pub reader: MessageReader<OwnedReadHalf>,
    pub w: OwnedWriteHalf,
    pub local: SocketAddr,
}

/// What a raw handshake obtained up to `dist_addr`.
#[derive(Debug)]
pub struct RawHandshake {
    pub first_list: Vec<SocketAddr>,
    /// Its version: a protocol-2 joiner's first list is committed, a v1 one's provisional.
    pub first_version: Option<u64>,
    pub dist_addr: SocketAddr,
    pub token: Option<u64>,
}

impl RawClient {
    /// Connects from `local` to the auth socket at `auth`.
    pub async fn connect(local: IpAddr, auth: SocketAddr) -> RawClient {
        let stream = connect_from(local, auth).await.expect("connect to the auth socket");
        let local = stream.local_addr().unwrap();
        let (r, w) = stream.into_split();
        RawClient { reader: MessageReader::new(r), w, local }
    }

    /// Writes one message.
    pub async fn send(&mut self, msg: &Message) {
        self.w.write_all(&msg.encode()).await.expect("raw write");
    }

    /// Reads one message within `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Message {
        match tokio::time::timeout(limit, self.reader.next()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => panic!("raw client {}: read failed: {e}", self.local),
            Err(_) => panic!("raw client {}: nothing within {limit:?}", self.local),
        }
    }

    /// Reads `{"banned": false}`.
    pub async fn expect_not_banned(&mut self) {
        let m = self.recv(Duration::from_secs(2)).await;
        assert!(matches!(m, Message::Banned { banned: false, .. }), "expected banned false, got {m:?}");
    }

    /// Banned status, shadow (announcing protocol 2 if `v2`), authenticated.
    pub async fn authenticate(&mut self, password: &str, v2: bool) {
        self.expect_not_banned().await;
        self.send(&Message::Shadow {
            password: password.into(),
            version: v2.then_some(2),
            alias: None,
            one_connection: false,
        })
        .await;
        let m = self.recv(Duration::from_secs(2)).await;
        assert_eq!(m, Message::Authenticated(true), "raw client {}", self.local);
    }

    /// The whole auth-socket handshake, by hand: banned, shadow,
    /// authenticated, peer_address, distro, dist_addr.
    pub async fn handshake(&mut self, password: &str, peer_addr: SocketAddr, v2: bool) -> RawHandshake {
        self.authenticate(password, v2).await;
        self.send(&Message::PeerAddress(peer_addr)).await;
        let (first_list, first_version) = match self.recv(Duration::from_secs(2)).await {
            Message::Distro { members, version, .. } => (members, version),
            other => panic!("expected distro, got {other:?}"),
        };
        if v2 {
            // A protocol-2 joiner's first list is a committed one (docs/protocol-2.md).
            assert!(first_version.is_some(), "a protocol-2 joiner's first list is unversioned");
        } else {
            assert!(first_list.contains(&peer_addr), "own first list lacks the joiner itself");
            assert!(first_version.is_none(), "a v1 joiner's first list carries a version");
        }
        let (dist_addr, token) = match self.recv(Duration::from_secs(2)).await {
            Message::DistAddr { addr, token } => (addr, token),
            other => panic!("expected dist_addr, got {other:?}"),
        };
        assert!(token.is_some() || !v2, "no dist token for a protocol-2 joiner");
        RawHandshake { first_list, first_version, dist_addr, token }
    }
}

enum RawCmd {
    Send(Vec<u8>),
    Silence(oneshot::Sender<Option<Instant>>),
}

/// A member that joined by hand (full handshake, distribution connection
/// with its token) and answers heartbeats in a background task until told
/// to send raw bytes or to go silent.
pub struct RawMember {
    /// Its advertised peer address (a real listener that never accepts).
    pub peer_addr: SocketAddr,
    /// The distribution connection (never read).
    pub dist: TcpStream,
    _peer_listener: TcpListener,
    cmd: mpsc::UnboundedSender<RawCmd>,
    answers: Arc<Mutex<u64>>,
    closed_at: Arc<Mutex<Option<Instant>>>,
}

impl RawMember {
    /// Joins the authenticator at `auth` from `local` with the raw protocol.
    pub async fn join(auth: SocketAddr, local: IpAddr, password: &str) -> RawMember {
        let peer_listener = TcpListener::bind(SocketAddr::new(local, 0)).await.unwrap();
        let peer_addr = peer_listener.local_addr().unwrap();
        let mut client = RawClient::connect(local, auth).await;
        let hs = client.handshake(password, peer_addr, true).await;
        let mut dist = connect_from(local, hs.dist_addr).await.expect("connect to the distribution socket");
        dist.write_all(&Message::DistToken(hs.token.unwrap()).encode()).await.unwrap();

        let (cmd, mut cmd_rx) = mpsc::unbounded_channel();
        let answers = Arc::new(Mutex::new(0u64));
        let closed_at = Arc::new(Mutex::new(None));
        let (answers2, closed2) = (answers.clone(), closed_at.clone());
        tokio::spawn(async move {
            let RawClient { mut reader, mut w, .. } = client;
            let mut last_answer = None;
            loop {
                tokio::select! {
                    c = cmd_rx.recv() => match c {
                        None => return,
                        Some(RawCmd::Send(bytes)) => {
                            let _ = w.write_all(&bytes).await;
                        }
                        Some(RawCmd::Silence(tx)) => {
                            let _ = tx.send(last_answer);
                            // Half-open: keep both sockets, never read or write again.
                            while cmd_rx.recv().await.is_some() {}
                            return;
                        }
                    },
                    m = reader.next() => match m {
                        Ok(Message::Heartbeat) => {
                            if w.write_all(&Message::Heartbeat.encode()).await.is_ok() {
                                last_answer = Some(Instant::now());
                                *answers2.lock().unwrap() += 1;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => {
                            *closed2.lock().unwrap() = Some(Instant::now());
                            // Keep the write half until dropped.
                            while let Some(c) = cmd_rx.recv().await {
                                if let RawCmd::Silence(tx) = c {
                                    let _ = tx.send(last_answer);
                                }
                            }
                            return;
                        }
                    },
                }
            }
        });
        RawMember { peer_addr, dist, _peer_listener: peer_listener, cmd, answers, closed_at }
    }

    /// Writes raw bytes on its auth connection.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        let _ = self.cmd.send(RawCmd::Send(bytes));
    }

    /// Heartbeats answered so far.
    pub fn answers(&self) -> u64 {
        *self.answers.lock().unwrap()
    }

    /// When the authenticator closed its auth connection, if it did.
    pub fn closed_at(&self) -> Option<Instant> {
        *self.closed_at.lock().unwrap()
    }

    /// Stops reading and answering (the sockets stay open); returns when
    /// the last heartbeat answer was written.
    pub async fn go_silent(&self) -> Option<Instant> {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmd.send(RawCmd::Silence(tx));
        rx.await.ok().flatten()
    }
}
