//! Evidence that network faults really fired: counts of segments turmoil dropped and held,
//! and which watched streams lost a segment.
//!
//! turmoil 0.7.2 exposes no counters, but it emits a `trace!` event for every segment it
//! sends, holds or drops (`turmoil::top`, top.rs:346/390/394: messages `Send`, `Hold`,
//! `Drop`) and for every segment a host receives (`turmoil::host`, host.rs:129:
//! `Delivered`). This minimal `tracing` subscriber, installed as the thread's default for the
//! duration of one simulation, enables exactly those call sites and counts them; everything
//! else stays disabled, so the cost is one counter bump per segment.
//!
//! Which streams a loss killed: a random link failure drops the segment being sent (`Drop`)
//! *and silently clears every segment in flight on that host pair* (top.rs:472), and turmoil
//! TCP never retransmits, so a stream that lost one segment is dead for good. Counting, per
//! watched destination socket, segments sent to it and segments delivered to it catches both
//! kinds of loss: once nothing is in flight any more, `sent > delivered` means the stream lost
//! a segment. The runner watches each joiner's distribution socket (the only destination of
//! the authenticator's list writes), so the checkers can tell whether a member removed for a
//! lost distribution really had a dead distribution stream. Only the destination address is
//! formatted, and only while something is watched.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// Segment counts of one simulation.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    sent: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
    /// Whether `streams` has any entry (skips formatting addresses otherwise).
    watching: Arc<AtomicBool>,
    /// Watched destination sockets: (segments sent to it, segments delivered to it).
    streams: Arc<Mutex<BTreeMap<SocketAddr, (u64, u64)>>>,
}

impl Evidence {
    /// Segments sent onto a link.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Segments dropped (explicit partition, one-way partition, or `fail_rate`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Segments held.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Starts counting the segments sent and delivered to `dst` (call before any segment to
    /// it can be sent, e.g. once the connection's client side knows its address, before the
    /// server has written to it).
    pub fn watch(&self, dst: SocketAddr) {
        self.lock().entry(dst).or_insert((0, 0));
        self.watching.store(true, Ordering::Relaxed);
    }

    /// Segments sent to a watched `dst` that were never delivered (so far): lost, or still
    /// in flight. `None` if `dst` is not watched.
    pub fn undelivered(&self, dst: SocketAddr) -> Option<u64> {
        self.lock().get(&dst).map(|&(sent, delivered)| sent.saturating_sub(delivered))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, (u64, u64)>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn wanted(m: &Metadata<'_>) -> bool {
    m.is_event() && m.target() == "turmoil" && matches!(m.module_path(), Some("turmoil::top") | Some("turmoil::host"))
}

/// The fields of one event that matter here.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    dst: Option<String>,
}

struct FieldVisitor<'a> {
    fields: &'a mut Fields,
    want_dst: bool,
}

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.fields.message = Some(format!("{value:?}")),
            "dst" if self.want_dst => self.fields.dst = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl Evidence {
    fn on_event(&self, e: &Event<'_>) {
        let mut fields = Fields::default();
        e.record(&mut FieldVisitor { fields: &mut fields, want_dst: self.watching.load(Ordering::Relaxed) });
        let Some(message) = fields.message else { return };
        let (counter, stream_sent) = match message.as_str() {
            "Send" => (Some(&self.sent), Some(true)),
            "Drop" => (Some(&self.dropped), None),
            "Hold" => (Some(&self.held), None),
            "Delivered" => (None, Some(false)),
            _ => return,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let (Some(sent), Some(dst)) = (stream_sent, fields.dst) else { return };
        let Ok(dst) = dst.parse::<SocketAddr>() else { return };
        if let Some(entry) = self.lock().get_mut(&dst) {
            if sent {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
}

impl Subscriber for Evidence {
    fn register_callsite(&self, m: &'static Metadata<'static>) -> Interest {
        if wanted(m) { Interest::always() } else { Interest::never() }
    }
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        wanted(m)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        self.on_event(e);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same call shapes as turmoil's (top.rs, host.rs), under the same target and module
    /// path as seen from here: the module path is not turmoil's, so feed `on_event` through a
    /// subscriber that accepts this module too.
    #[test]
    fn counts_sent_and_delivered_per_watched_destination() {
        let ev = Evidence::default();
        let a: SocketAddr = "192.168.0.2:49153".parse().unwrap();
        let b: SocketAddr = "192.168.0.3:49153".parse().unwrap();
        let src: SocketAddr = "192.168.0.1:50000".parse().unwrap();
        ev.watch(a);
        struct Any(Evidence);
        impl Subscriber for Any {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, e: &Event<'_>) {
                self.0.on_event(e);
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
        let d = tracing::Dispatch::new(Any(ev.clone()));
        tracing::dispatcher::with_default(&d, || {
            for dst in [a, a, a, b] {
                tracing::trace!(target: "turmoil", ?src, ?dst, protocol = %"TCP [..]", "Send");
            }
            tracing::trace!(target: "turmoil", ?src, dst = ?a, protocol = %"TCP [..]", "Drop");
            for dst in [a, b] {
                tracing::trace!(target: "turmoil", ?src, ?dst, protocol = %"TCP [..]", "Delivered");
            }
        });
        assert_eq!((ev.sent(), ev.dropped()), (4, 1));
        assert_eq!(ev.undelivered(a), Some(2));
        assert_eq!(ev.undelivered(b), None, "not watched");
    }
}
