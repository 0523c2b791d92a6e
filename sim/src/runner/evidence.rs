//! Evidence that network faults really fired: counts of segments turmoil dropped and held.
//!
//! turmoil 0.7.2 exposes no counters, but it emits a `trace!` event for every segment it
//! sends, holds or drops (`turmoil::top`, top.rs:346/390/394: messages `Send`, `Hold`,
//! `Drop`). This minimal `tracing` subscriber, installed as the thread's default for the
//! duration of one simulation, enables exactly those call sites and counts them; everything
//! else stays disabled, so the cost is one counter bump per segment.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
}

fn wanted(m: &Metadata<'_>) -> bool {
    m.is_event() && m.target() == "turmoil" && m.module_path() == Some("turmoil::top")
}

struct MessageVisitor<'a>(&'a Evidence);

impl Visit for MessageVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() != "message" {
            return;
        }
        let counter = match format!("{value:?}").as_str() {
            "Send" => &self.0.sent,
            "Drop" => &self.0.dropped,
            "Hold" => &self.0.held,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
        e.record(&mut MessageVisitor(self));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
