//! Rate-limited logging of refused and failed connections.
//!
//! Under a flood every refusal is one event on the event stream (bounded, never blocking)
//! but must not be one log line each: 10,000 refused connections a second would fill a disk
//! and drown the lines that matter. So at most [`LINES_PER_SECOND`] such lines are written a
//! second; the rest are counted, and the next line that gets through says how many were
//! left out.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

/// Log lines about refused or failed connections per second, at most.
pub const LINES_PER_SECOND: u32 = 20;

/// The limiter: one per authenticator.
#[derive(Debug)]
pub(super) struct RefusalLog {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    lines: u32,
    suppressed: u64,
}

impl RefusalLog {
    pub(super) fn new() -> Self {
        RefusalLog { window: Mutex::new(Window { start: Instant::now(), lines: 0, suppressed: 0 }) }
    }

    /// Logs one refusal of `source` (at info: refusals are the authenticator working), unless
    /// this second's lines are used up; `what` is only formatted for a line that is written.
    pub(super) fn log(&self, source: &SocketAddr, what: impl fmt::Display) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.lines = 0;
        }
        if w.lines >= LINES_PER_SECOND {
            w.suppressed += 1;
            return;
        }
        w.lines += 1;
        let suppressed = std::mem::take(&mut w.suppressed);
        drop(w);
        if suppressed > 0 {
            info!(%source, "{what} ({suppressed} similar lines left out)");
        } else {
            info!(%source, "{what}");
        }
    }
}
