//! Chat messages between members: the peer listener and the sender.
//!
//! Both roles are members, so both run this: a listener on their peer
//! address that accepts one message per connection (only from an IP that is
//! some member's, as the reference), answers with the reference's echo and
//! closes; and a sender that opens one temporary connection per message from
//! the node's own IP (the receiver checks the source IP), writes the message
//! and waits briefly for the echo, which is how delivery is confirmed.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::error::Error;
use crate::event::{EventKind, EventSink};
use crate::member_list::MemberList;
use crate::net::{Listener, Network};
use crate::wire::{Chat, Message, MessageReader, Recipient};

/// How many incoming message connections one node handles at once; more are
/// closed straight away.
const MAX_INCOMING: usize = 256;
/// How many messages of one broadcast are in flight at once.
const BROADCAST_CONCURRENCY: usize = 64;

/// The outcome of one message that reached the receiver's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered with the echo: it handled the message.
    Echoed,
    /// Written, but no echo came back in time (the reference sender never
    /// waits for one; a reference receiver that refuses sends none).
    Unconfirmed,
}

/// What one broadcast achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Members the message was written to.
    pub sent: usize,
    /// Of those, members that echoed it.
    pub delivered: usize,
    /// Members that could not be reached.
    pub failed: usize,
}

/// Stops a node's tasks without closing its sockets (what [`Joiner::hang`](crate::Joiner::hang)
/// is made of): each task, once told to freeze, stops reading and writing, hands the sockets
/// it owns to `held` and ends. Nothing is shut down, so the other ends see no FIN or RST.
#[derive(Clone, Default)]
pub(crate) struct Freeze {
    token: CancellationToken,
    /// One entry per socket (a reader and writer pair of one connection is one entry).
    held: Arc<Mutex<Vec<Box<dyn Send>>>>,
}

impl Freeze {
    /// Tells every task to freeze.
    pub(crate) fn start(&self) {
        self.token.cancel();
    }
    /// Whether the node was told to freeze.
    pub(crate) fn is_frozen(&self) -> bool {
        self.token.is_cancelled()
    }
    /// Resolves once the node is told to freeze.
    pub(crate) async fn frozen(&self) {
        self.token.cancelled().await
    }
    /// Keeps a frozen task's socket open (until [`Freeze::take`]'s owner drops it).
    pub(crate) fn keep(&self, socket: impl Send + 'static) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(socket));
    }
    /// The sockets kept so far.
    pub(crate) fn take(&self) -> Vec<Box<dyn Send>> {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What a node needs to send and receive chat messages.
pub(crate) struct PeerCore<N: Network> {
    pub net: N,
    /// Source IP for outgoing connections (None: let the network choose).
    pub local_ip: Option<IpAddr>,
    pub peer_addr: SocketAddr,
    pub alias: String,
    pub members: watch::Receiver<MemberList>,
    pub events: EventSink,
    /// Bound on connect, write and echo wait of one message.
    pub io_timeout: Duration,
    pub max_value_len: usize,
    pub cancel: CancellationToken,
    /// Set by a joiner's `hang`; the authenticator never freezes.
    pub freeze: Freeze,
}

impl<N: Network> PeerCore<N> {
    /// Runs the peer listener until the node is cancelled.
    pub(crate) fn spawn_listener(self: &Arc<Self>, listener: N::Listener, tracker: &TaskTracker) {
        let core = self.clone();
        let inner_tracker = tracker.clone();
        tracker.spawn(async move {
            let permits = Arc::new(Semaphore::new(MAX_INCOMING));
            loop {
                let accepted = tokio::select! {
                    biased;
                    _ = core.cancel.cancelled() => break,
                    _ = core.freeze.frozen() => break,
                    r = listener.accept() => r,
                };
                let (stream, source) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(peer = %core.peer_addr, "peer listener accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    warn!(%source, "too many message connections at once; closing this one");
                    continue;
                };
                let core = core.clone();
                inner_tracker.spawn(async move {
                    let mut stream = stream;
                    let frozen = tokio::select! {
                        biased;
                        _ = core.cancel.cancelled() => false,
                        _ = core.freeze.frozen() => true,
                        _ = core.handle_incoming(&mut stream, source) => false,
                    };
                    if frozen {
                        core.freeze.keep(stream);
                    }
                    drop(permit);
                });
            }
            // Frozen (and not leaving): the listening socket stays open, unaccepted.
            if core.freeze.is_frozen() && !core.cancel.is_cancelled() {
                core.freeze.keep(listener);
            }
        });
    }

    async fn handle_incoming(&self, stream: &mut N::Stream, source: SocketAddr) {
        if !self.members.borrow().contains_ip(source.ip()) {
            debug!(%source, "message connection from a non-member IP refused");
            self.events.emit(EventKind::MessageRefused { source });
            return;
        }
        let (r, mut w) = tokio::io::split(stream);
        let mut reader = MessageReader::with_limit(r, self.max_value_len);
        let value = match timeout(self.io_timeout, reader.next_value()).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                warn!(%source, "bad message: {e}");
                return;
            }
            Err(_) => {
                warn!(%source, "message connection silent for {:?}; closed", self.io_timeout);
                return;
            }
        };
        let chat = match Message::from_json(value.clone()) {
            Ok(Message::Chat(c)) => c,
            Ok(other) => {
                warn!(%source, "expected a chat message, got {}", other.kind());
                return;
            }
            Err(e) => {
                warn!(%source, "bad message: {e}");
                return;
            }
        };
        self.events.emit(EventKind::MessageReceived {
            from: chat.from,
            source,
            alias: chat.alias,
            broadcast: chat.to == Recipient::Broadcast,
            data: chat.data,
        });
        let echo = Message::Echo { data: value, alias: self.alias.clone() }.encode();
        // The reference sender closes without reading the echo: ignore errors.
        let _ = timeout(self.io_timeout, async {
            w.write_all(&echo).await?;
            w.shutdown().await
        })
        .await;
    }

    /// Sends one chat message to `to` on a temporary connection.
    pub(crate) async fn send_to(&self, to: SocketAddr, data: &str, recipient: Recipient) -> Result<Delivery, Error> {
        if self.cancel.is_cancelled() {
            return Err(Error::Closed);
        }
        let stream = match timeout(self.io_timeout, self.net.connect(self.local_ip, to)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(Error::Connection { addr: to, source }),
            Err(_) => return Err(Error::Timeout { what: "connecting to the member", after: self.io_timeout }),
        };
        let (r, mut w) = tokio::io::split(stream);
        let msg = Message::Chat(Chat {
            data: data.to_owned(),
            alias: self.alias.clone(),
            to: recipient,
            from: self.peer_addr,
        })
        .encode();
        match timeout(self.io_timeout, w.write_all(&msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(Error::Send { addr: to, source }),
            Err(_) => return Err(Error::Timeout { what: "sending the message", after: self.io_timeout }),
        }
        let mut reader = MessageReader::with_limit(r, self.max_value_len);
        match timeout(self.io_timeout, reader.next()).await {
            Ok(Ok(Message::Echo { .. })) => Ok(Delivery::Echoed),
            _ => Ok(Delivery::Unconfirmed),
        }
    }

    /// Sends `data` to every member but this node.
    pub(crate) async fn broadcast(self: &Arc<Self>, data: &str) -> BroadcastReport {
        let targets: Vec<SocketAddr> = self.members.borrow().iter().copied().filter(|m| *m != self.peer_addr).collect();
        let mut report = BroadcastReport::default();
        let permits = Arc::new(Semaphore::new(BROADCAST_CONCURRENCY));
        let mut set = tokio::task::JoinSet::new();
        for to in targets {
            let core = self.clone();
            let data = data.to_owned();
            let permits = permits.clone();
            set.spawn(async move {
                let _permit = permits.acquire_owned().await;
                core.send_to(to, &data, Recipient::Broadcast).await
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(d)) => {
                    report.sent += 1;
                    if d == Delivery::Echoed {
                        report.delivered += 1;
                    }
                }
                Ok(Err(e)) => {
                    debug!("broadcast to a member failed: {e}");
                    report.failed += 1;
                }
                Err(_) => report.failed += 1,
            }
        }
        report
    }
}
