//! Heartbeats on a member's auth connection: one `{"<3": true}` per interval (at the
//! member's own phase), answers read as they come, and the member removed when the rules
//! ([`Liveness`], [`AuthState::distribution_overdue`](super::state::AuthState::distribution_overdue))
//! say it is silent or has lost its distribution connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Shared;
use super::state::{Liveness, Tick};
use crate::event::{EventKind, RemovalReason};
use crate::net::Network;
use crate::wire::{DecodeError, Message, MessageReader};

/// Runs a member's heartbeats until it must be removed (Some(reason)) or was removed
/// elsewhere (None). `floor` is given for a protocol-2 member (see [`Liveness::new`]).
pub(super) async fn run<N: Network>(
    shared: &Shared<N>,
    reader: &mut MessageReader<ReadHalf<N::Stream>>,
    w: &mut WriteHalf<N::Stream>,
    member: SocketAddr,
    phase: Duration,
    floor: Option<u64>,
    cancel: &CancellationToken,
) -> Option<RemovalReason> {
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
                Ok(Message::VersionedHeartbeat { version }) => liveness.heard(shared.now(), Some(version)),
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
