//! Heartbeats on a member's auth connection: one `{"<3": true}` per interval (at the
//! member's own phase), answers read as they come, and the member removed when the rules
//! ([`Liveness`], [`AuthState::distribution_overdue`](super::state::AuthState::distribution_overdue))
//! say it is silent or has lost its distribution connection.
//!
//! For a protocol-2 member the answers also drive snapshots: an answer reporting a version
//! older than one its writer had finished writing before the *previous* heartbeat (so at
//! least an interval ago; both connections are in-order streams on one path) means the
//! member missed or refused a delta, and its writer is asked for a whole list
//! ([`DistProgress::request_snapshot`]). After a request the rule waits two more beats
//! before it can fire again, the time the snapshot needs to arrive and be reported.
//!
//! A one-connection member's lists come on this same connection: its distribution writer
//! shares the write half ([`AuthWriter::Shared`]), and this loop is the connection's only
//! reader, so its end, a `leaving`, or a broken value are seen here for both.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::ReadHalf;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use std::sync::Arc;

use super::Shared;
use super::distribution::{AuthWriter, DistProgress};
use super::state::{Liveness, Tick};
use crate::event::{EventKind, RemovalReason};
use crate::net::Network;
use crate::wire::{DecodeError, Message, MessageReader};

/// One member's heartbeat session.
pub(super) struct Session {
    /// Its peer address (for events and logs).
    pub member: SocketAddr,
    /// Offset of its ticks within an interval.
    pub phase: Duration,
    /// Given for a protocol-2 member (see [`Liveness::new`]).
    pub floor: Option<u64>,
    /// Its writer's progress (protocol-2 members).
    pub progress: Option<Arc<DistProgress>>,
}

/// Versions written before the last two heartbeats, for the snapshot rule.
#[derive(Default)]
struct Written {
    before_last: Option<u64>,
    before_previous: Option<u64>,
}

impl Written {
    fn tick(&mut self, progress: &DistProgress) {
        self.before_previous = self.before_last;
        self.before_last = progress.written();
    }

    /// Whether an answer reporting `held` shows a version written long enough ago missing.
    fn lacks(&self, held: u64) -> bool {
        self.before_previous.is_some_and(|w| held < w)
    }
}

/// Runs a member's heartbeats until it must be removed (Some(reason)) or was removed
/// elsewhere (None).
pub(super) async fn run<N: Network>(
    shared: &Shared<N>,
    reader: &mut MessageReader<ReadHalf<N::Stream>>,
    w: &mut AuthWriter<N::Stream>,
    session: Session,
    cancel: &CancellationToken,
) -> Option<RemovalReason> {
    let Session { member, phase, floor, progress } = session;
    let mut written = Written::default();
    let limit = shared.heartbeat_timeout;
    let mut liveness = Liveness::new(&shared.cfg, shared.now(), floor);
    let mut ticks = tokio::time::interval_at(Instant::now() + phase, shared.cfg.heartbeat_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            msg = reader.next() => match msg {
                Ok(Message::Heartbeat) => liveness.heard(shared.now(), None),
                Ok(Message::VersionedHeartbeat { version }) => {
                    liveness.heard(shared.now(), Some(version));
                    if let Some(p) = &progress
                        && written.lacks(version)
                    {
                        debug!(%member, version, "member reports an old version: snapshot requested");
                        p.request_snapshot();
                        written = Written::default();
                    }
                }
                // A protocol-2 member leaving on purpose: told apart from a crash.
                Ok(Message::Leaving) if floor.is_some() => return Some(RemovalReason::Left),
                Ok(other) => debug!(%member, "ignored {} on the auth connection", other.kind()),
                Err(DecodeError::Eof { .. }) | Err(DecodeError::Io(_)) => return Some(RemovalReason::Closed),
                Err(e) => return Some(RemovalReason::ProtocolError(e.to_string())),
            },
            _ = ticks.tick() => {
                let now = shared.now();
                match liveness.tick(now) {
                    Tick::TimedOut => return Some(RemovalReason::HeartbeatTimeout),
                    Tick::Missed(silent_for) => {
                        shared.events.emit(EventKind::HeartbeatMissed { peer: member, silent_for });
                    }
                    Tick::Alive => {}
                }
                let held = liveness.held();
                if let Some((missing, age)) = held.and_then(|h| shared.lock().distribution_overdue(h, now)) {
                    warn!(%member, ?held, missing, ?age, "member still lacks a published list: distribution lost");
                    return Some(RemovalReason::DistributionLost);
                }
                if let Some(p) = &progress {
                    written.tick(p);
                }
                // A member that stopped reading blocks this write; bound it
                // by what is left of its timeout.
                let left = limit.saturating_sub(liveness.silent(now)).max(Duration::from_millis(1));
                match timeout(left, w.write_all(&Message::Heartbeat.encode())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Some(RemovalReason::Closed),
                    Err(_) => return Some(RemovalReason::HeartbeatTimeout),
                }
            }
        }
    }
}
