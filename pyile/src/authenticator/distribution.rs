//! Member-list distribution: publishing each new list once, and one writer per member that
//! sends it the newest list over its distribution connection.
//!
//! Distribution never blocks on a slow member: the current list lives in a `watch` channel
//! (a one-slot queue that always holds the newest list), and each member's writer sends
//! whatever is newest when it gets to it, then waits the gap [`Pacing`] gives it, so a burst
//! of changes coalesces into one list instead of queueing stale ones. The writer also watches
//! the connection for its end, since a member's distribution connection can close while its
//! auth connection lives; anything a member writes there is dropped (one value of at most
//! the handshake value limit at a time), so writing cannot make the authenticator resend.

use std::sync::Arc;

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::state::Pacing;
use crate::event::{EventKind, RemovalReason};
use crate::member_list::MemberList;
use crate::net::Network;
use crate::wire::{DecodeError, Message, MessageReader};

/// A list as it goes on the wire, encoded once per version and shared by every writer.
pub(super) fn encode(list: &MemberList) -> Arc<[u8]> {
    Message::Distro { members: list.members.to_vec(), version: list.version }.encode().into()
}

impl<N: Network> Shared<N> {
    /// Publishes a committed list to the writers, the peer listener and the events. Call it
    /// with the state lock held, so that versions and events come out in one order.
    pub(super) fn announce(&self, list: MemberList) {
        let encoded = encode(&list);
        let bytes = encoded.len();
        self.dist_tx.send_replace(encoded);
        self.dist_changed.notify_waiters();
        self.members_tx.send_replace(list.clone());
        self.events.emit(EventKind::MemberListChanged { list, bytes });
    }
}

/// Starts member `id`'s distribution writer; it removes the member when its connection
/// closes, stalls or misbehaves, and ends quietly when `cancel` fires.
pub(super) fn spawn_writer<N: Network>(
    shared: &Arc<Shared<N>>,
    id: u64,
    v2: bool,
    mut dist_reader: MessageReader<ReadHalf<N::Stream>>,
    mut dist_w: WriteHalf<N::Stream>,
    cancel: CancellationToken,
) {
    let pacing = Pacing::of(&shared.cfg, v2);
    let mut lists = shared.dist_tx.subscribe();
    let shared = shared.clone();
    shared.tracker.clone().spawn(async move {
        let reason = loop {
            let bytes = lists.borrow_and_update().clone();
            let write = timeout(shared.heartbeat_timeout, dist_w.write_all(&bytes));
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = write => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break RemovalReason::Closed,
                    Err(_) => break RemovalReason::DistributionStalled,
                },
            }
            let gap = pacing.gap(bytes.len(), shared.members_tx.borrow().len());
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = sleep(gap) => {}
            }
            // Wait for the next change (deterministically: see `Shared::dist_changed`);
            // meanwhile watch the socket for EOF. The `Notified` future receives
            // `notify_waiters` from its creation on, so a change published between the
            // check and the wait is not missed.
            let changed = shared.dist_changed.notified();
            match lists.has_changed() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(_) => return,
            }
            // The connection is one-way: what a member writes on it is read (so its end is
            // seen) and dropped, and never causes a resend.
            tokio::pin!(changed);
            let ended = loop {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = &mut changed => break None,
                    r = dist_reader.next() => match r {
                        Err(DecodeError::Eof { .. }) | Err(DecodeError::Io(_)) => break Some(RemovalReason::Closed),
                        Err(e) => {
                            break Some(RemovalReason::ProtocolError(format!("on the distribution socket: {e}")));
                        }
                        Ok(_) => {}
                    },
                }
            };
            if let Some(reason) = ended {
                break reason;
            }
        };
        shared.remove_member(id, reason);
    });
}
