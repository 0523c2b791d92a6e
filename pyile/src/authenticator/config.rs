//! The authenticator's settings: [`AuthenticatorConfig`] and the bounds derived from it
//! (heartbeat timeout, distribution gap and timeout), so every task and the state machine
//! read one definition of each.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::dedup::ExactlyOnceConfig;
use crate::event::DEFAULT_EVENT_CAPACITY;
use crate::scram::{DEFAULT_ITERATIONS, MIN_ITERATIONS, Verifier};
use crate::wire::DEFAULT_MAX_VALUE_LEN;

/// Default auth port.
pub const DEFAULT_AUTH_PORT: u16 = 4702;

/// Default [`AuthenticatorConfig::distribution_budget`]: 64 MiB/s, about half
/// a gigabit link. Rounds stay under the 10 ms distribution interval up to
/// ~150 members; under constant churn 500 members wait ~80 ms between lists,
/// 2,000 members ~1.3 s, 4,000 members ~5 s. Past ~4,300 members (2 s
/// heartbeats) the gap stays at its cap, the heartbeat timeout, and a round
/// costs more than the budget.
pub const DEFAULT_DISTRIBUTION_BUDGET: u64 = 64 << 20;

/// Default [`AuthenticatorConfig::delta_rate`]: 100,000 writes a second to protocol-2
/// members, what this toolkit's reference machine (2 cores, loopback) sustains beside the
/// rest of a join storm. Up to 1,000 members it never stretches the 10 ms interval; at
/// 10,000 members under constant churn each member gets a write every 100 ms.
pub const DEFAULT_DELTA_RATE: u64 = 100_000;

/// Default [`AuthenticatorConfig::handshake_value_limit`]: the reference's `recv(2048)`.
pub const DEFAULT_HANDSHAKE_VALUE_LIMIT: usize = 2048;

/// Default [`AuthenticatorConfig::max_handshakes_per_source`].
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 16;

/// Settings of an [`Authenticator`](super::Authenticator); build with [`AuthenticatorConfig::new`]
/// and the chained setters.
#[derive(Clone, Debug)]
pub struct AuthenticatorConfig {
    pub(super) password: String,
    pub(super) listen: SocketAddr,
    pub(super) password_attempts: u32,
    pub(super) heartbeat_interval: Duration,
    pub(super) heartbeat_timeout: Option<Duration>,
    pub(super) handshake_timeout: Duration,
    pub(super) io_timeout: Duration,
    pub(super) v1_pacing: Duration,
    pub(super) distribution_interval: Duration,
    pub(super) distribution_budget: u64,
    pub(super) delta_rate: u64,
    pub(super) max_value_len: usize,
    pub(super) max_handshakes: usize,
    pub(super) event_capacity: usize,
    pub(super) seed: u64,
    pub(super) alias: String,
    pub(super) handshake_value_limit: usize,
    pub(super) password_timeout: Duration,
    pub(super) max_handshakes_per_source: usize,
    pub(super) max_bans: usize,
    pub(super) ban_for: Option<Duration>,
    pub(super) foreign_peer_addresses: bool,
    pub(super) advertise: Option<IpAddr>,
    pub(super) verifier: Option<Verifier>,
    pub(super) scram_iterations: u32,
    pub(super) delta_history: usize,
    pub(super) max_alias_len: usize,
    pub(super) exactly_once: ExactlyOnceConfig,
}

/// Default [`AuthenticatorConfig::max_alias_len`].
pub const DEFAULT_MAX_ALIAS_LEN: usize = 64;

/// Default [`AuthenticatorConfig::delta_history`].
pub const DEFAULT_DELTA_HISTORY: usize = 4096;

impl AuthenticatorConfig {
    /// Defaults: listen on `127.0.0.1:4702`, 3 attempts, 2 s heartbeats,
    /// 3 intervals of timeout, 5 s handshakes (the password within 3 s), at most 8,192
    /// handshakes at once and 16 from one source, bans without expiry in a table of 65,536.
    pub fn new(password: impl Into<String>) -> Self {
        AuthenticatorConfig {
            password: password.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_AUTH_PORT)),
            password_attempts: 3,
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: None,
            handshake_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(2),
            v1_pacing: Duration::from_millis(50),
            distribution_interval: Duration::from_millis(10),
            distribution_budget: DEFAULT_DISTRIBUTION_BUDGET,
            delta_rate: DEFAULT_DELTA_RATE,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            max_handshakes: 8192,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            seed: 0,
            alias: "authenticator".into(),
            handshake_value_limit: DEFAULT_HANDSHAKE_VALUE_LIMIT,
            password_timeout: Duration::from_secs(3),
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            max_bans: 65_536,
            ban_for: None,
            foreign_peer_addresses: false,
            advertise: None,
            verifier: None,
            scram_iterations: DEFAULT_ITERATIONS,
            delta_history: DEFAULT_DELTA_HISTORY,
            max_alias_len: DEFAULT_MAX_ALIAS_LEN,
            exactly_once: ExactlyOnceConfig::default(),
        }
    }
    /// Settings that check passwords against a stored [`Verifier`] (made by
    /// `pyile hash-password`) instead of a cleartext password: protocol-2 joiners prove
    /// they know the password without sending it, v1 joiners' cleartext `shadow` is
    /// checked by recomputing the verifier's keys (one PBKDF2 at its iterations per
    /// attempt). Otherwise the defaults of [`AuthenticatorConfig::new`].
    pub fn with_verifier(verifier: Verifier) -> Self {
        let mut cfg = AuthenticatorConfig::new(String::new());
        cfg.verifier = Some(verifier);
        cfg
    }
    /// Longest alias in bytes a protocol-2 joiner may join with (default
    /// [`DEFAULT_MAX_ALIAS_LEN`]); a longer one is refused as `bad_alias`.
    pub fn max_alias_len(mut self, n: usize) -> Self {
        self.max_alias_len = n;
        self
    }
    /// Whether `alias` is usable: 1 to [`AuthenticatorConfig::max_alias_len`] bytes, no
    /// control characters.
    pub fn alias_ok(&self, alias: &str) -> bool {
        !alias.is_empty() && alias.len() <= self.max_alias_len && !alias.chars().any(char::is_control)
    }
    /// PBKDF2 iterations of the verifier an authenticator with a cleartext password derives
    /// at start (with a salt from [`AuthenticatorConfig::seed`]) for protocol-2 joiners'
    /// proofs; at least [`MIN_ITERATIONS`], default [`DEFAULT_ITERATIONS`]. Unused with
    /// [`AuthenticatorConfig::with_verifier`].
    pub fn scram_iterations(mut self, n: u32) -> Self {
        self.scram_iterations = n.max(MIN_ITERATIONS);
        self
    }
    /// How many recent deltas the authenticator keeps for protocol-2 members whose writer
    /// fell behind (at least 1; about 100 bytes each). A writer that missed more versions
    /// than this sends a snapshot instead of the missed deltas (see `docs/protocol-2.md`); it
    /// also bounds what one write of deltas back to back can be.
    pub fn delta_history(mut self, n: usize) -> Self {
        self.delta_history = n.max(1);
        self
    }
    /// Exactly-once chat delivery between protocol-2 nodes: the duplicate filter's bounds and
    /// the sender's retries (default [`ExactlyOnceConfig::default`]; see [`crate::dedup`]).
    pub fn exactly_once(mut self, cfg: ExactlyOnceConfig) -> Self {
        self.exactly_once = cfg;
        self
    }
    /// Address of the auth socket (port 0 picks one). The distribution and
    /// peer sockets bind the same IP on free ports. An unspecified IP
    /// (`0.0.0.0`, `::`) needs [`AuthenticatorConfig::advertise`].
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Failed password attempts from one IP before it is banned (at least 1).
    pub fn password_attempts(mut self, n: u32) -> Self {
        self.password_attempts = n.max(1);
        self
    }
    /// Time between heartbeats to each member.
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.heartbeat_interval = d;
        self
    }
    /// Silence after which a member is removed (default: 3 intervals).
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = Some(d);
        self
    }
    /// Bound on a whole handshake, distribution connection included.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }
    /// Bound on one chat message's connect, write and echo.
    pub fn io_timeout(mut self, d: Duration) -> Self {
        self.io_timeout = d;
        self
    }
    /// Gap between back-to-back writes to a reference (v1) joiner.
    pub fn v1_pacing(mut self, d: Duration) -> Self {
        self.v1_pacing = d;
        self
    }
    /// Minimum gap between two lists to one protocol-2 member (coalescing window): changes
    /// within it reach the member together, in one write.
    pub fn distribution_interval(mut self, d: Duration) -> Self {
        self.distribution_interval = d;
        self
    }
    /// Bytes per second that one full distribution round (the list to every
    /// reference (v1) member) may cost the authenticator; 0 = unbounded. Protocol-2
    /// members receive deltas and are not paced by it. Every change sends
    /// the whole list to every member, so a round costs members × list size
    /// (O(n²): 2,000 members, ~90 MB). While changes keep coming, each
    /// member's writer waits `members × list bytes / budget` (at least the
    /// distribution interval, or the v1 pacing; at most the heartbeat
    /// timeout, see [`AuthenticatorConfig::max_distribution_gap`]) before its
    /// next list, so a
    /// burst of changes coalesces instead of saturating the authenticator,
    /// the network and every member's CPU. A change after a quiet spell is
    /// still sent at once.
    pub fn distribution_budget(mut self, bytes_per_second: u64) -> Self {
        self.distribution_budget = bytes_per_second;
        self
    }
    /// Writes per second that one full round of deltas (one to every protocol-2 member)
    /// may cost; 0 = unbounded. A delta is small, but each is a write, a wake-up and a read
    /// per member: under constant churn, 10,000 members at the 10 ms interval would be a
    /// million writes a second. While changes keep coming, each protocol-2 member's writer
    /// waits `members / rate` (at least the distribution interval, at most
    /// [`AuthenticatorConfig::max_distribution_gap`]) before its next write, and the changes
    /// meanwhile reach it together, in one write. A change after a quiet spell is still sent at
    /// once.
    pub fn delta_rate(mut self, writes_per_second: u64) -> Self {
        self.delta_rate = writes_per_second;
        self
    }
    /// Bound on one incoming JSON value.
    pub fn max_value_len(mut self, n: usize) -> Self {
        self.max_value_len = n;
        self
    }
    /// Bound on handshakes in progress at once. When all are taken, a new connection
    /// sheds the oldest handshake in progress (a flood of silent connections ages out
    /// instead of locking honest joiners out), as long as its source is under
    /// [`AuthenticatorConfig::max_handshakes_per_source`].
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n.max(1);
        self
    }
    /// Capacity of the event channel.
    pub fn event_capacity(mut self, n: usize) -> Self {
        self.event_capacity = n;
        self
    }
    /// Seed of the authenticator's RNG (heartbeat phases). All of its
    /// randomness comes from here.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Alias used when sending chat messages.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = alias.into();
        self
    }
    /// Bound on one JSON value read on the auth and distribution connections: handshake
    /// values, heartbeat answers and the distribution token. The reference reads these
    /// with `recv(2048)`, so no valid one is longer; member lists are never read there.
    pub fn handshake_value_limit(mut self, n: usize) -> Self {
        self.handshake_value_limit = n;
        self
    }
    /// How long a new connection has to send its password (within the handshake timeout).
    pub fn password_timeout(mut self, d: Duration) -> Self {
        self.password_timeout = d;
        self
    }
    /// Bound on handshakes in progress from one source (one IPv4 address, one IPv6 /64);
    /// more connections from it are closed at once (at least 1).
    pub fn max_handshakes_per_source(mut self, n: usize) -> Self {
        self.max_handshakes_per_source = n.max(1);
        self
    }
    /// Bound on the ban table (and on the table of failed attempts); past it the oldest
    /// entry is forgotten (at least 1).
    pub fn max_bans(mut self, n: usize) -> Self {
        self.max_bans = n.max(1);
        self
    }
    /// How long a ban lasts (default: for the authenticator's lifetime, as the reference).
    pub fn ban_for(mut self, d: Duration) -> Self {
        self.ban_for = Some(d);
        self
    }
    /// Accept a `peer_address` whose IP differs from the connection's source IP (joiners
    /// behind NAT that know their public address). Off by default: a joiner may only
    /// announce its own IP, so no one can list, or evict, another host's address.
    pub fn foreign_peer_addresses(mut self, allow: bool) -> Self {
        self.foreign_peer_addresses = allow;
        self
    }
    /// The IP other members reach this authenticator at, listed as its own peer address.
    /// Required when listening on an unspecified address (`0.0.0.0`, `::`); by default the
    /// listen IP.
    pub fn advertise(mut self, ip: IpAddr) -> Self {
        self.advertise = Some(ip);
        self
    }
    /// The effective heartbeat timeout.
    pub fn effective_heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout.unwrap_or(self.heartbeat_interval * 3)
    }
    /// The configured heartbeat interval.
    pub fn interval(&self) -> Duration {
        self.heartbeat_interval
    }
    /// How long after a list's publication a protocol-2 member may still
    /// answer heartbeats without holding it (or a newer one) before it is
    /// removed with `RemovalReason::DistributionLost`: the heartbeat timeout
    /// plus one interval. The extra interval is the heartbeat round a member
    /// needs to report a list it just received, so a stall of the whole link
    /// (a hold) that heartbeats tolerate — shorter than the heartbeat timeout
    /// — never removes a member this way; a longer one is a heartbeat
    /// timeout first.
    ///
    /// Plus the longest gap a member's writer may wait between two lists
    /// ([`AuthenticatorConfig::max_distribution_gap`]): a list a member lacks
    /// only because its writer is still pacing is not lost.
    pub fn effective_distribution_timeout(&self) -> Duration {
        self.effective_heartbeat_timeout() + self.heartbeat_interval + self.max_distribution_gap()
    }
    /// The longest a member's writer waits between two lists under churn:
    /// the heartbeat timeout with a distribution budget or a delta rate, else the distribution
    /// interval or the v1 pacing, whichever is longer.
    pub fn max_distribution_gap(&self) -> Duration {
        if self.distribution_budget > 0 || self.delta_rate > 0 {
            self.effective_heartbeat_timeout().max(self.distribution_interval).max(self.v1_pacing)
        } else {
            self.distribution_interval.max(self.v1_pacing)
        }
    }
}
