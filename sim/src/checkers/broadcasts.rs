//! Exactly-once broadcast (issue 12 part 3): per broadcast, duplicates and losses.
//!
//! Protocol-2 senders give every chat message an id (`msg_id`: epoch and sequence, one per
//! broadcast, shared by its copies and their retries), receivers drop an id they have seen,
//! and senders retry unconfirmed copies to receivers that drop duplicates. This checks the
//! outcome from the receivers' own reports, not the sender's:
//!
//! - `broadcast_duplicated` (safety): some receiver (joiner instance or authenticator)
//!   delivered one sender's id twice. Counted in `broadcast_duplicates_delivered`.
//! - `broadcast_losses` (metric, not a violation: a lossy network can defeat every retry):
//!   per finished broadcast, the members in the sender's list when it started (but the
//!   sender) that were members for the whole delivery window — joined before it started, and
//!   neither removed, leaving, stopped nor ended before it finished — and never delivered it.
//!   `broadcast_copies_checked` counts the (broadcast, member) pairs judged. The
//!   authenticator's receipts count for duplicates only (its lifetime is not tracked here).
//!
//! Also `msgs_duplicates_dropped` (copies the receivers' filters dropped) and `msgs_retries`
//! (retries the senders made), so a run shows the filter and the retries at work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use pyile::MemberList;

use super::monitor::Monitor;
use crate::metrics::MetricId;
use crate::verdict::Severity;

/// A message id as the checker sees it: sender peer address, epoch, sequence.
type Id = (SocketAddr, u64, u64);

/// Who received: a joiner instance, or the authenticator (`None`).
type Receiver = Option<u64>;

/// One broadcast the driver ordered.
#[derive(Clone, Debug)]
struct Started {
    at: Duration,
    sender: Option<u64>,
    /// The sender's member list when it started (None: none seen yet).
    list: Option<MemberList>,
}

/// One broadcast that finished, with the id its copies carried.
#[derive(Clone, Debug)]
struct Done {
    at: Duration,
    started: Started,
    id: Id,
}

/// The checker's state.
#[derive(Debug, Default)]
pub(super) struct BroadcastState {
    /// Latest member list of each node that may send (joiner instance, or the authenticator).
    lists: BTreeMap<Option<u64>, MemberList>,
    started: BTreeMap<u64, Started>,
    done: Vec<Done>,
    receipts: BTreeMap<(Receiver, Id), u32>,
    removed: BTreeMap<SocketAddr, Duration>,
}

impl Monitor {
    /// The member list `node` (a joiner instance, or the authenticator) holds from now on.
    pub fn chat_list(&mut self, node: Option<u64>, list: &MemberList) {
        self.broadcasts.lists.insert(node, list.clone());
    }

    /// The driver ordered broadcast `id` from `sender` (None: the authenticator) at `t`.
    pub fn broadcast_started(&mut self, t: Duration, id: u64, sender: Option<u64>) {
        let list = self.broadcasts.lists.get(&sender).cloned();
        self.broadcasts.started.insert(id, Started { at: t, sender, list });
    }

    /// Broadcast `id` finished at `t`; its copies carried `msg_id` (None: a v1 sender, not
    /// judged) from `from`, after `retries` retries.
    pub fn broadcast_finished(
        &mut self,
        t: Duration,
        id: u64,
        from: SocketAddr,
        msg_id: Option<(u64, u64)>,
        retries: usize,
    ) {
        self.count(MetricId::MsgsRetries, retries as f64);
        let started = self.broadcasts.started.remove(&id);
        if let (Some(started), Some((epoch, seq))) = (started, msg_id) {
            self.broadcasts.done.push(Done { at: t, started, id: (from, epoch, seq) });
        }
    }

    /// `receiver` delivered a chat message from `from` with `msg_id` (None: a v1 message).
    pub fn chat_delivered(&mut self, t: Duration, receiver: Receiver, from: SocketAddr, msg_id: Option<(u64, u64)>) {
        let Some((epoch, seq)) = msg_id else { return };
        let count = self.broadcasts.receipts.entry((receiver, (from, epoch, seq))).or_default();
        *count += 1;
        let n = *count;
        if n > 1 {
            self.count(MetricId::BroadcastDuplicatesDelivered, 1.0);
            let who = receiver.map_or_else(|| "auth".to_owned(), |i| format!("joiner instance {i}"));
            self.find(
                Severity::Safety,
                "broadcast_duplicated",
                format!("{who} {from} {epoch} {seq}"),
                t,
                format!("{who} delivered message {from} epoch {epoch} seq {seq} {n} times"),
            );
        }
    }

    /// A receiver's filter dropped a copy it had seen.
    pub fn chat_duplicate_dropped(&mut self) {
        self.count(MetricId::MsgsDuplicatesDropped, 1.0);
    }

    /// The authenticator removed `member` at `t` (it is no member from then on).
    pub fn chat_member_removed(&mut self, t: Duration, member: SocketAddr) {
        self.broadcasts.removed.entry(member).or_insert(t);
    }

    /// End of run: losses among the members that were members throughout each broadcast.
    pub(super) fn finish_broadcasts(&mut self) {
        let mut checked = 0u64;
        let mut lost = 0u64;
        for d in &self.broadcasts.done {
            let Some(list) = &d.started.list else { continue };
            for addr in list.iter().filter(|a| **a != d.id.0) {
                let Some(&inst) = self.by_addr.get(addr) else { continue };
                if Some(inst) == d.started.sender {
                    continue;
                }
                let Some(i) = self.instances.get(&inst) else { continue };
                let gone = [i.ended, i.leaving, i.stopped_at, self.broadcasts.removed.get(addr).copied()]
                    .into_iter()
                    .flatten()
                    .min();
                let throughout = i.joined_at.is_some_and(|j| j <= d.started.at) && gone.is_none_or(|g| g > d.at);
                if !throughout {
                    continue;
                }
                checked += 1;
                if !self.broadcasts.receipts.contains_key(&(Some(inst), d.id)) {
                    lost += 1;
                }
            }
        }
        self.count(MetricId::BroadcastCopiesChecked, checked as f64);
        self.count(MetricId::BroadcastLosses, lost as f64);
    }
}
