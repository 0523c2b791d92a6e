//! Helpers shared by the integration tests: fast test settings and waiting
//! on events with a bound.
#![allow(dead_code)]

use std::time::Duration;

use pyile::{AuthenticatorConfig, Event, EventKind, EventStream, JoinerConfig};

/// Short heartbeat settings so tests cover several intervals quickly.
pub const INTERVAL: Duration = Duration::from_millis(100);

pub fn auth_config(password: &str) -> AuthenticatorConfig {
    AuthenticatorConfig::new(password)
        .listen("127.0.0.1:0".parse().unwrap())
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(INTERVAL * 3)
        .handshake_timeout(Duration::from_secs(3))
}

pub fn joiner_config(password: &str, alias: &str) -> JoinerConfig {
    JoinerConfig::new(password)
        .alias(alias)
        .local_ip("127.0.0.1".parse().unwrap())
        .heartbeat_interval(INTERVAL)
        .heartbeat_timeout(INTERVAL * 5)
        .handshake_timeout(Duration::from_secs(5))
}

/// Waits (at most `limit`) for the first event matching `pred`.
pub async fn wait_for(
    events: &mut EventStream,
    limit: Duration,
    mut pred: impl FnMut(&EventKind) -> bool,
) -> Option<Event> {
    tokio::time::timeout(limit, async {
        while let Some(ev) = events.recv().await {
            if pred(&ev.kind) {
                return Some(ev);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// Waits (at most `limit`) until `cond` holds, polling every 10 ms.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}
