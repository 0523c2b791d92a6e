//! Chat messages between members: the peer listener and the sender.
//!
//! Both roles are members, so both run this: a listener on their peer
//! address that accepts one message per connection (only from an IP that is
//! some member's, as the reference), answers with the reference's echo and
//! closes; and a sender that opens one temporary connection per message from
//! the node's own IP (the receiver checks the source IP), writes the message
//! and waits briefly for the echo, which is how delivery is confirmed.
//!
//! Between protocol-2 nodes (issue 12 part 3, [`crate::dedup`]): every message sent carries
//! a `msg_id` (this node's epoch, drawn once per start from its seeded RNG, and a sequence
//! number); the listener drops an id it has seen ([`EventKind::MessageDuplicate`]) and still
//! echoes it, adding `"pyile":2`; the sender remembers (bounded) which receivers echoed that,
//! and only to those retries a message that got no echo. A retry to a receiver that does not
//! drop duplicates (the reference) could deliver twice, so it gets one attempt, as in v1.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::dedup::{DedupWindow, ExactlyOnceConfig, MessageId, Verdict};
use crate::error::Error;
use crate::event::{EventKind, EventSink};
use crate::member_list::MemberList;
use crate::net::{Listener, Network};
use crate::wire::{Chat, ChatId, Message, MessageReader, PROTOCOL_VERSION, Recipient};

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
    /// Retries made (to receivers known to drop duplicates; see [`crate::dedup`]).
    pub retries: usize,
    /// The id every copy carried (protocol-2 senders; `None` from a v1-only node).
    pub msg_id: Option<ChatId>,
}

/// Receivers known to drop duplicates (they echoed `"pyile":2`, or sent us a `msg_id` from
/// their own IP): the only ones a message is retried to. Bounded: past `cap` the oldest
/// entry is forgotten (that receiver then gets one attempt until it echoes again).
#[derive(Debug, Default)]
pub(crate) struct KnownDedup {
    set: HashSet<SocketAddr>,
    order: VecDeque<SocketAddr>,
}

impl KnownDedup {
    fn insert(&mut self, addr: SocketAddr, cap: usize) {
        if self.set.insert(addr) {
            self.order.push_back(addr);
            while self.order.len() > cap.max(1) {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
    fn contains(&self, addr: &SocketAddr) -> bool {
        self.set.contains(addr)
    }
}

/// A protocol-2 node's exactly-once state (see the module docs).
#[derive(Debug)]
pub(crate) struct ExactlyOnce {
    pub cfg: ExactlyOnceConfig,
    /// This start's epoch (drawn once from the node's seeded RNG).
    pub epoch: u64,
    next_seq: AtomicU64,
    filter: Mutex<DedupWindow>,
    known: Mutex<KnownDedup>,
}

impl ExactlyOnce {
    /// The state of a node started with `cfg` whose epoch is `epoch`.
    pub(crate) fn new(cfg: ExactlyOnceConfig, epoch: u64) -> Self {
        ExactlyOnce {
            cfg,
            epoch,
            next_seq: AtomicU64::new(0),
            filter: Mutex::new(cfg.window_filter()),
            known: Mutex::new(KnownDedup::default()),
        }
    }
    fn next_id(&self) -> ChatId {
        ChatId { epoch: self.epoch, seq: self.next_seq.fetch_add(1, Ordering::Relaxed) }
    }
    fn learn(&self, addr: SocketAddr) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, self.cfg.max_streams);
    }
    fn knows(&self, addr: &SocketAddr) -> bool {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).contains(addr)
    }
    fn check(&self, id: MessageId) -> Verdict {
        self.filter.lock().unwrap_or_else(|e| e.into_inner()).check(id)
    }
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
    /// Exactly-once state of a protocol-2 node; `None` for a node that speaks plain v1 (a
    /// joiner with `announce_extensions(false)`): no `msg_id`, no filter, no retries.
    pub exactly_once: Option<ExactlyOnce>,
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
        // Protocol 2: drop an id seen before (and still echo it, so the sender stops
        // retrying); a message without an id (the reference's) is delivered as in v1.
        let dedup = match (&self.exactly_once, chat.msg_id) {
            (Some(eo), Some(id)) => {
                if source.ip() == chat.from.ip() {
                    // A node that sends ids drops duplicates too: retries to it are safe.
                    eo.learn(chat.from);
                }
                Some((eo.check(MessageId { sender: chat.from, epoch: id.epoch, seq: id.seq }), id))
            }
            _ => None,
        };
        match dedup {
            Some((verdict @ (Verdict::Duplicate | Verdict::TooOld), msg_id)) => {
                debug!(%source, from = %chat.from, ?msg_id, "duplicate message dropped");
                self.events.emit(EventKind::MessageDuplicate {
                    from: chat.from,
                    source,
                    msg_id,
                    too_old: verdict == Verdict::TooOld,
                });
            }
            _ => self.events.emit(EventKind::MessageReceived {
                from: chat.from,
                source,
                alias: chat.alias,
                broadcast: chat.to == Recipient::Broadcast,
                data: chat.data,
                msg_id: chat.msg_id,
            }),
        }
        let version = dedup.is_some().then_some(PROTOCOL_VERSION);
        let echo = Message::Echo { data: value, alias: self.alias.clone(), version }.encode();
        // The reference sender closes without reading the echo: ignore errors.
        let _ = timeout(self.io_timeout, async {
            w.write_all(&echo).await?;
            w.shutdown().await
        })
        .await;
    }

    /// Sends one chat message to `to` (with a fresh id on a protocol-2 node, retried while
    /// unconfirmed if `to` is known to drop duplicates).
    pub(crate) async fn send_to(&self, to: SocketAddr, data: &str, recipient: Recipient) -> Result<Delivery, Error> {
        let msg_id = self.exactly_once.as_ref().map(ExactlyOnce::next_id);
        self.send_with_retries(to, data, &recipient, msg_id).await.0
    }

    /// Sends one message, then retries it while it is unconfirmed, `to` is known to drop
    /// duplicates, is still a member, and retries remain. Returns the last outcome and the
    /// retries made.
    async fn send_with_retries(
        &self,
        to: SocketAddr,
        data: &str,
        recipient: &Recipient,
        msg_id: Option<ChatId>,
    ) -> (Result<Delivery, Error>, u32) {
        let mut retries = 0;
        loop {
            let r = self.send_once(to, data, recipient.clone(), msg_id).await;
            let Some(eo) = self.exactly_once.as_ref().filter(|_| msg_id.is_some()) else {
                return (r, retries);
            };
            if matches!(r, Ok(Delivery::Echoed))
                || retries >= eo.cfg.retries
                || !eo.knows(&to)
                || !self.members.borrow().contains(&to)
            {
                return (r, retries);
            }
            let backoff = eo.cfg.retry_backoff.saturating_mul(1 << retries.min(16));
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return (r, retries),
                _ = tokio::time::sleep(backoff) => {}
            }
            retries += 1;
            debug!(%to, ?msg_id, retries, "message unconfirmed; retrying");
        }
    }

    /// One attempt: a temporary connection, the message, the echo.
    async fn send_once(
        &self,
        to: SocketAddr,
        data: &str,
        recipient: Recipient,
        msg_id: Option<ChatId>,
    ) -> Result<Delivery, Error> {
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
            msg_id,
        })
        .encode();
        match timeout(self.io_timeout, w.write_all(&msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(Error::Send { addr: to, source }),
            Err(_) => return Err(Error::Timeout { what: "sending the message", after: self.io_timeout }),
        }
        let mut reader = MessageReader::with_limit(r, self.max_value_len);
        match timeout(self.io_timeout, reader.next()).await {
            Ok(Ok(Message::Echo { version, .. })) => {
                if let (Some(eo), Some(v)) = (&self.exactly_once, version)
                    && msg_id.is_some()
                    && v >= PROTOCOL_VERSION
                {
                    eo.learn(to);
                }
                Ok(Delivery::Echoed)
            }
            _ => Ok(Delivery::Unconfirmed),
        }
    }

    /// Sends `data` to every member but this node.
    pub(crate) async fn broadcast(self: &Arc<Self>, data: &str) -> BroadcastReport {
        let targets: Vec<SocketAddr> = self.members.borrow().iter().copied().filter(|m| *m != self.peer_addr).collect();
        // One id for every copy: a receiver tells a retry from a new message by it.
        let msg_id = self.exactly_once.as_ref().map(ExactlyOnce::next_id);
        let mut report = BroadcastReport { msg_id, ..BroadcastReport::default() };
        let permits = Arc::new(Semaphore::new(BROADCAST_CONCURRENCY));
        let mut set = tokio::task::JoinSet::new();
        for to in targets {
            let core = self.clone();
            let data = data.to_owned();
            let permits = permits.clone();
            set.spawn(async move {
                let _permit = permits.acquire_owned().await;
                core.send_with_retries(to, &data, &Recipient::Broadcast, msg_id).await
            });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok((r, retries)) => {
                    report.retries += retries as usize;
                    match r {
                        Ok(d) => {
                            report.sent += 1;
                            if d == Delivery::Echoed {
                                report.delivered += 1;
                            }
                        }
                        Err(e) => {
                            debug!("broadcast to a member failed: {e}");
                            report.failed += 1;
                        }
                    }
                }
                Err(_) => report.failed += 1,
            }
        }
        report
    }
}
