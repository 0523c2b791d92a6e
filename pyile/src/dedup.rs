//! Exactly-once broadcast (issue 12, part 3): the receiver's bounded duplicate filter and
//! the settings of the whole mechanism.
//!
//! Why: v1 has no message id, so a sender that got no echo cannot tell "lost on the way" from
//! "delivered, echo lost", and a retry may deliver twice. Systems that dedup by content
//! (suhuiii/P2P-Experiments: (text, second) in a window of 10) merge two identical messages
//! sent in one second and let a late duplicate through. Protocol 2 gives every chat message a
//! sender-unique id (`"msg_id":{"epoch":E,"seq":S}`, see `docs/protocol-2-extensions.md`), the
//! receiver drops an id it has seen, and the sender retries only receivers known to drop
//! duplicates (they echoed `"pyile":2`), so a retry can never deliver twice.
//!
//! A message id is `(sender, epoch, seq)`: the sender's peer address, an epoch the sender
//! draws once per start (so a restarted sender whose sequence starts again at 0 is a new
//! stream, not a flood of duplicates), and a per-sender sequence number. [`DedupWindow`]
//! answers "deliver or drop" for each arriving id, in bounded memory:
//!
//! - per stream, the ids within `window` of the highest sequence seen are remembered: any
//!   interleaving of duplicates and reordering within that window delivers each id once;
//! - an id more than `window` below the highest seen is **dropped** (too old to tell: at most
//!   once, never twice), and counted in [`DedupWindow::too_old`];
//! - at most `max_streams` streams are remembered; past that the least recently used one is
//!   forgotten, after which a late duplicate of its messages would be delivered again
//!   (counted in [`DedupWindow::evicted`]); a new epoch from the same sender replaces the
//!   old stream.
//!
//! All bounds come from configuration ([`ExactlyOnceConfig`]), never from peers.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

/// Default [`ExactlyOnceConfig::window`].
pub const DEFAULT_WINDOW: u64 = 256;
/// Default [`ExactlyOnceConfig::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 1024;
/// Default [`ExactlyOnceConfig::retries`].
pub const DEFAULT_RETRIES: u32 = 2;
/// Default [`ExactlyOnceConfig::retry_backoff`].
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Settings of exactly-once chat delivery between protocol-2 nodes (a node's own
/// configuration; nothing here is taken from a peer). Set on a node with
/// [`JoinerConfig::exactly_once`](crate::JoinerConfig::exactly_once) or
/// [`AuthenticatorConfig::exactly_once`](crate::AuthenticatorConfig::exactly_once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactlyOnceConfig {
    /// Sequence numbers remembered below the highest of each sender's stream.
    pub window: u64,
    /// Senders' streams remembered (least recently used forgotten past it); also the bound
    /// on the receivers a sender remembers as known to drop duplicates.
    pub max_streams: usize,
    /// Retries of a message that got no echo, to a receiver known to drop duplicates
    /// (0: never retry). A receiver not known to (the reference, or one never heard from)
    /// gets exactly one attempt, as in v1.
    pub retries: u32,
    /// Wait before the first retry; it doubles for each further one.
    pub retry_backoff: Duration,
}

impl Default for ExactlyOnceConfig {
    fn default() -> Self {
        ExactlyOnceConfig {
            window: DEFAULT_WINDOW,
            max_streams: DEFAULT_MAX_STREAMS,
            retries: DEFAULT_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
        }
    }
}

impl ExactlyOnceConfig {
    /// A filter sized by this configuration.
    pub fn window_filter(&self) -> DedupWindow {
        DedupWindow::new(self.window, self.max_streams)
    }
}

/// One message's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageId {
    /// The sender's peer address.
    pub sender: SocketAddr,
    /// The sender's epoch (drawn once per start).
    pub epoch: u64,
    /// The sender's sequence number within the epoch.
    pub seq: u64,
}

/// What the filter decided for one id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen: deliver.
    Deliver,
    /// Seen before within the window: drop.
    Duplicate,
    /// More than `window` below the highest sequence of its stream: dropped, as it cannot be
    /// told from a duplicate.
    TooOld,
}

#[derive(Debug)]
struct Stream {
    epoch: u64,
    high: u64,
    seen: BTreeSet<u64>,
    used: u64,
}

/// A bounded duplicate filter (see the module docs for its guarantees).
#[derive(Debug)]
pub struct DedupWindow {
    window: u64,
    max_streams: usize,
    streams: HashMap<SocketAddr, Stream>,
    clock: u64,
    too_old: u64,
    evicted: u64,
}

impl DedupWindow {
    /// A filter remembering `window` sequence numbers (at least 1) below the highest of each
    /// stream, for at most `max_streams` streams (at least 1).
    pub fn new(window: u64, max_streams: usize) -> Self {
        DedupWindow {
            window: window.max(1),
            max_streams: max_streams.max(1),
            streams: HashMap::new(),
            clock: 0,
            too_old: 0,
            evicted: 0,
        }
    }

    /// Decides for one arriving id, and remembers it.
    pub fn check(&mut self, id: MessageId) -> Verdict {
        self.clock += 1;
        let now = self.clock;
        if !self.streams.contains_key(&id.sender)
            && self.streams.len() >= self.max_streams
            && let Some(oldest) = self.streams.iter().min_by_key(|(_, s)| s.used).map(|(a, _)| *a)
        {
            self.streams.remove(&oldest);
            self.evicted += 1;
        }
        let s = self.streams.entry(id.sender).or_insert_with(|| Stream {
            epoch: id.epoch,
            high: id.seq,
            seen: BTreeSet::new(),
            used: now,
        });
        s.used = now;
        if s.epoch != id.epoch {
            // The sender restarted: a new stream replaces the old one.
            *s = Stream { epoch: id.epoch, high: id.seq, seen: BTreeSet::new(), used: now };
        }
        if id.seq.saturating_add(self.window) < s.high {
            self.too_old += 1;
            return Verdict::TooOld;
        }
        if !s.seen.insert(id.seq) {
            return Verdict::Duplicate;
        }
        if id.seq > s.high {
            s.high = id.seq;
            let floor = s.high.saturating_sub(self.window);
            s.seen = s.seen.split_off(&floor);
        }
        Verdict::Deliver
    }

    /// Ids dropped as too old so far.
    pub fn too_old(&self) -> u64 {
        self.too_old
    }

    /// Streams forgotten to stay within `max_streams` so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Sequence numbers remembered in all (bounded by `max_streams × (window + 1)`).
    pub fn remembered(&self) -> usize {
        self.streams.values().map(|s| s.seen.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 4000))
    }

    fn id(s: u8, epoch: u64, seq: u64) -> MessageId {
        MessageId { sender: addr(s), epoch, seq }
    }

    #[test]
    fn duplicates_dropped_and_a_restart_is_a_new_stream() {
        let mut w = DedupWindow::new(8, 4);
        assert_eq!(w.check(id(1, 7, 0)), Verdict::Deliver);
        assert_eq!(w.check(id(1, 7, 0)), Verdict::Duplicate);
        assert_eq!(w.check(id(1, 7, 1)), Verdict::Deliver);
        // Restarted sender: seq 0 again, new epoch.
        assert_eq!(w.check(id(1, 8, 0)), Verdict::Deliver);
        assert_eq!(w.check(id(1, 8, 0)), Verdict::Duplicate);
    }

    #[test]
    fn beyond_the_window_is_dropped_as_too_old() {
        let mut w = DedupWindow::new(4, 4);
        assert_eq!(w.check(id(1, 0, 0)), Verdict::Deliver);
        assert_eq!(w.check(id(1, 0, 10)), Verdict::Deliver);
        assert_eq!(w.check(id(1, 0, 0)), Verdict::TooOld);
        assert_eq!(w.check(id(1, 0, 5)), Verdict::TooOld);
        assert_eq!(w.check(id(1, 0, 6)), Verdict::Deliver);
        assert_eq!(w.too_old(), 2);
    }

    #[test]
    fn streams_are_bounded_and_the_least_recently_used_goes() {
        let mut w = DedupWindow::new(4, 2);
        w.check(id(1, 0, 0));
        w.check(id(2, 0, 0));
        w.check(id(1, 0, 1));
        w.check(id(3, 0, 0)); // evicts sender 2
        assert_eq!(w.evicted(), 1);
        assert_eq!(w.check(id(1, 0, 0)), Verdict::Duplicate);
        // Documented: a forgotten stream's duplicate is delivered again.
        assert_eq!(w.check(id(2, 0, 0)), Verdict::Deliver);
    }

    proptest! {
        /// Any interleaving of duplicates and reordering that stays within the window
        /// delivers every id exactly once; memory stays bounded.
        #[test]
        fn within_the_window_each_id_is_delivered_once(
            n in 1u64..60,
            window in 1u64..16,
            senders in 1u8..4,
            dups in proptest::collection::vec((0usize..1000, 0usize..1000), 0..80),
            swaps in proptest::collection::vec(0usize..1000, 0..80),
        ) {
            // Each sender's messages in order, then duplicates inserted and neighbours
            // swapped, keeping every arrival within `window` of its stream's highest seq.
            let mut arrivals: Vec<MessageId> = (0..n).flat_map(|q| (0..senders).map(move |s| id(s, 1, q))).collect();
            for (at, from) in dups {
                let at = at % arrivals.len();
                let src = arrivals[from % (at + 1)];
                arrivals.insert(at, src);
            }
            for i in swaps {
                let i = i % arrivals.len();
                if i + 1 < arrivals.len() {
                    arrivals.swap(i, i + 1);
                }
            }
            // Keep only arrivals within the window of what the stream has seen so far.
            let mut high: HashMap<SocketAddr, u64> = HashMap::new();
            let arrivals: Vec<MessageId> = arrivals.into_iter().filter(|m| {
                let h = high.entry(m.sender).or_insert(m.seq);
                if m.seq + window < *h { return false; }
                *h = (*h).max(m.seq);
                true
            }).collect();
            let mut w = DedupWindow::new(window, senders as usize);
            let mut delivered = HashSet::new();
            for m in &arrivals {
                match w.check(*m) {
                    Verdict::Deliver => prop_assert!(delivered.insert(*m), "{m:?} delivered twice"),
                    Verdict::Duplicate => prop_assert!(delivered.contains(m), "{m:?} dropped unseen"),
                    Verdict::TooOld => prop_assert!(false, "{m:?} within the window called too old"),
                }
                prop_assert!(w.remembered() <= senders as usize * (window as usize + 1));
            }
            let distinct: HashSet<MessageId> = arrivals.iter().copied().collect();
            prop_assert_eq!(delivered, distinct);
        }

        /// Beyond the window, within one epoch per sender and no more senders than
        /// `max_streams`: whatever arrives, in any order, nothing is delivered twice (what is
        /// too old to tell is dropped instead).
        #[test]
        fn whatever_arrives_nothing_is_delivered_twice(
            window in 1u64..8,
            arrivals in proptest::collection::vec((0u8..3, 0u64..40), 0..200),
        ) {
            let mut w = DedupWindow::new(window, 3);
            let mut delivered = HashSet::new();
            for (s, q) in arrivals {
                if w.check(id(s, 1, q)) == Verdict::Deliver {
                    prop_assert!(delivered.insert((s, q)), "({s}, {q}) delivered twice");
                }
            }
        }
    }
}
