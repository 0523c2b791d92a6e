//! The TOML schema of a scenario file: one serde type per section, with its defaults.
//!
//! Every struct is `deny_unknown_fields`, so a misspelt key is an error that names its line
//! (the toml crate's spans), never a silently ignored setting. Timeline entries are one flat
//! struct with an `action` and optional fields rather than a serde-tagged enum, because the
//! tagged form buffers the table and loses the key spans; [`Scenario::validate`] then rejects
//! fields that do not apply to the action, again with the entry's line. The schema is
//! documented for users in `scenarios/README.md`; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;

use pyile::units::{ByteRate, Dur, EventRate};
use serde::Deserialize;
use toml::Spanned;

use super::random;
use super::seeds::SeedSet;
use crate::metrics::MetricId;

/// Group and target names with a fixed meaning, which a joiner group cannot be called.
pub const RESERVED_NAMES: &[&str] = &["authenticator", "joiners", "any", "attackers", "all"];

fn default_seeds() -> SeedSet {
    SeedSet(vec![1])
}
fn default_tick() -> Dur {
    Dur::from_millis(1)
}
fn default_settle() -> Dur {
    Dur::from_secs(15)
}
fn yes() -> bool {
    true
}

/// One scenario file, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name; used in report file names (`[A-Za-z0-9_-]`).
    pub name: String,
    /// What the scenario exercises.
    #[serde(default)]
    pub description: String,
    /// Seeds run when the command line gives none (and by CI).
    #[serde(default = "default_seeds")]
    pub seeds: SeedSet,
    /// Simulated time to run.
    pub duration: Dur,
    /// Turmoil tick: the simulated time one `step()` advances. Cost scales with 1/tick.
    #[serde(default = "default_tick")]
    pub tick: Dur,
    /// Whether CI runs this scenario (`false` for the large ones).
    #[serde(default = "yes")]
    pub ci: bool,
    /// Length of the final fault-free window over which liveness is checked; `"0s"` disables
    /// liveness checks (for scenarios that end in a fault state on purpose).
    #[serde(default = "default_settle")]
    pub settle: Dur,
    /// The simulated network.
    #[serde(default)]
    pub network: Network,
    /// Authenticator settings.
    #[serde(default)]
    pub authenticator: AuthSettings,
    /// Joiner groups (`[[joiners]]`).
    #[serde(default)]
    pub joiners: Vec<Spanned<JoinerGroup>>,
    /// Timed events (`[[timeline]]`).
    #[serde(default)]
    pub timeline: Vec<Spanned<TimelineEntry>>,
    /// Expectations on the run's metrics (`[[expect]]`).
    #[serde(default)]
    pub expect: Vec<Spanned<Expect>>,
    /// Values drawn per seed: `"dotted.path" = { min = .., max = .. }` or `{ one_of = [..] }`.
    #[serde(default)]
    pub random: BTreeMap<String, Spanned<random::RandomSpec>>,
}

/// `[network]`: link behaviour between every pair of simulated hosts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Minimum one-way latency of a segment.
    #[serde(default = "Network::default_min_latency")]
    pub min_latency: Dur,
    /// Maximum one-way latency (turmoil draws from an exponential curve between the two).
    #[serde(default = "Network::default_max_latency")]
    pub max_latency: Dur,
    /// Probability that a link breaks on a send (turmoil `fail_rate`); turmoil TCP has no
    /// retransmission, so any loss kills the stream it hits.
    #[serde(default)]
    pub fail_rate: f64,
    /// Turmoil `tcp_capacity`: per-socket segment buffer and per-listener accept backlog.
    /// More unaccepted connections than this on one listener panics the simulation.
    #[serde(default = "Network::default_tcp_capacity")]
    pub tcp_capacity: usize,
}

impl Network {
    fn default_min_latency() -> Dur {
        Dur::from_millis(1)
    }
    fn default_max_latency() -> Dur {
        Dur::from_millis(10)
    }
    fn default_tcp_capacity() -> usize {
        1024
    }
}

impl Default for Network {
    fn default() -> Self {
        Network {
            min_latency: Self::default_min_latency(),
            max_latency: Self::default_max_latency(),
            fail_rate: 0.0,
            tcp_capacity: Self::default_tcp_capacity(),
        }
    }
}

/// `[authenticator]`: what the authenticator is configured with.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The shared password.
    #[serde(default = "AuthSettings::default_password")]
    pub password: String,
    /// Wrong attempts from one IP before it is banned.
    #[serde(default = "AuthSettings::default_attempts")]
    pub password_attempts: u32,
    /// Time between heartbeats.
    #[serde(default = "AuthSettings::default_interval")]
    pub heartbeat_interval: Dur,
    /// Silence after which a member is removed (default: 3 intervals).
    #[serde(default)]
    pub heartbeat_timeout: Option<Dur>,
    /// Bound on one whole handshake.
    #[serde(default = "AuthSettings::default_handshake")]
    pub handshake_timeout: Dur,
    /// Bytes per second one full distribution round (the list to every member) may cost;
    /// under churn each member's lists are spaced by members × list bytes / budget (pyile's
    /// `AuthenticatorConfig::distribution_budget`). `"unbounded"`: no pacing beyond the
    /// distribution interval.
    #[serde(default = "AuthSettings::default_distribution_budget")]
    pub distribution_budget: ByteRate,
    /// The auth port.
    #[serde(default = "AuthSettings::default_port")]
    pub port: u16,
}

impl AuthSettings {
    fn default_password() -> String {
        "pyile".into()
    }
    fn default_attempts() -> u32 {
        3
    }
    fn default_interval() -> Dur {
        Dur::from_secs(2)
    }
    fn default_handshake() -> Dur {
        Dur::from_secs(5)
    }
    fn default_port() -> u16 {
        4702
    }
    fn default_distribution_budget() -> ByteRate {
        ByteRate(pyile::DEFAULT_DISTRIBUTION_BUDGET)
    }

    /// The effective heartbeat timeout (explicit, or 3 × interval).
    pub fn heartbeat_timeout(&self) -> Dur {
        self.heartbeat_timeout.unwrap_or(Dur(self.heartbeat_interval.0 * 3))
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            password: Self::default_password(),
            password_attempts: Self::default_attempts(),
            heartbeat_interval: Self::default_interval(),
            heartbeat_timeout: None,
            handshake_timeout: Self::default_handshake(),
            distribution_budget: Self::default_distribution_budget(),
            port: Self::default_port(),
        }
    }
}

/// `[[joiners]]`: a group of joiners packed `joiners_per_host` to a simulated host.
///
/// A crash or partition of a host hits every joiner on it, and bans are per host IP.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinerGroup {
    /// Group name, referenced by timeline entries.
    pub name: String,
    /// Number of joiners.
    pub count: u32,
    /// Joiners per simulated host (the cost of a simulation grows with hosts, not joiners).
    #[serde(default = "one")]
    pub joiners_per_host: u32,
    /// When the whole group joins; absent: the group joins only through timeline entries.
    #[serde(default)]
    pub join_at: Option<Dur>,
    /// Gap between successive joins of the group at `join_at`.
    #[serde(default)]
    pub stagger: Dur,
    /// Password the group's joiners use (default: the authenticator's).
    #[serde(default)]
    pub password: Option<String>,
    /// Joiner handshake timeout (default: the authenticator's handshake timeout).
    #[serde(default)]
    pub handshake_timeout: Option<Dur>,
    /// Silence from the authenticator after which a joiner considers it lost
    /// (default: the authenticator's heartbeat timeout + one interval).
    #[serde(default)]
    pub heartbeat_timeout: Option<Dur>,
    /// When a joiner of this group ends without having been told to leave (it lost the
    /// authenticator, or its join failed), it joins again after this delay, repeatedly.
    /// Absent: it stays out (until a timeline `join`).
    #[serde(default)]
    pub rejoin_after: Option<Dur>,
    /// One alias every joiner of the group joins with (protocol 2: the authenticator admits
    /// one live member per alias and refuses the others with `alias_taken`). Absent: each
    /// join attempt has its own, `name#inst`.
    #[serde(default)]
    pub alias: Option<String>,
    /// The group's joiners are pointed at an impostor authenticator (its own host, which
    /// does not know the password) posing as this, instead of the real one: `"scram"` (a
    /// protocol-2 authenticator offering SCRAM; it forges the server signature) or `"v1"`
    /// (a reference authenticator: a downgrade, to collect cleartext passwords).
    #[serde(default)]
    pub impostor: Option<ImpostorPose>,
    /// The group's joiners refuse to send the password to an authenticator that does not
    /// offer protocol 2's mutual proof (`pyile join --require-mutual-auth`).
    #[serde(default)]
    pub require_mutual_auth: bool,
    /// The group's joiners ask a protocol-2 authenticator for their member lists on the auth
    /// connection: one connection each instead of two (`JoinerConfig::one_connection`).
    #[serde(default)]
    pub one_connection: bool,
}

/// What a group's impostor authenticator poses as (see [`JoinerGroup::impostor`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImpostorPose {
    /// A protocol-2 authenticator offering SCRAM.
    Scram,
    /// A v1 (reference) authenticator.
    V1,
}

impl ImpostorPose {
    /// pyile's kind for it.
    pub fn kind(self) -> pyile::impostor::ImpostorKind {
        match self {
            ImpostorPose::Scram => pyile::impostor::ImpostorKind::Scram,
            ImpostorPose::V1 => pyile::impostor::ImpostorKind::V1,
        }
    }
}

fn one() -> u32 {
    1
}

impl JoinerGroup {
    /// Simulated hosts this group needs.
    pub fn hosts(&self) -> u32 {
        self.count.div_ceil(self.joiners_per_host.max(1))
    }
}

/// What a timeline entry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Idle joiners of `group` join.
    Join,
    /// Active joiners of `group` leave gracefully.
    Leave,
    /// Hosts of `target` crash (their streams are closed with FIN: peers see EOF at once).
    Crash,
    /// Crashed hosts of `target` restart.
    Restart,
    /// Messages between `target`'s hosts and every other host are dropped (`direction`).
    Partition,
    /// Every partition is repaired. Streams a partition killed stay dead (turmoil has no
    /// retransmission); the protocol must notice and recover.
    Heal,
    /// Messages between `target`'s hosts and every other host are held (silent, not lost).
    Hold,
    /// Every held message is delivered.
    Release,
    /// Attacker hosts make wrong password attempts, then try the correct one.
    BanFlood,
    /// Joiners of `group` join and leave at random (Poisson) times between `at` and `until`.
    Churn,
    /// Chat traffic: broadcasts from `from` between `at` and `until`, or `count` at once.
    Broadcast,
    /// Links touching `target`'s hosts (default: every link) lose segments at `fail_rate`
    /// between `at` and `until`; each loss kills the stream it hits.
    Loss,
    /// Attacker hosts speak hostile raw wire protocol to the authenticator (`kind`).
    Attack,
}

/// What an `attack` does on each of its connections (see `scenarios/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// Connects, reads the banned status, then sends nothing and keeps the connection open.
    Silent,
    /// Sends its password one byte every `interval`, never finishing the value.
    Slowloris,
    /// Sends a `shadow` value of `bytes` bytes, past the authenticator's value bound.
    Oversize,
    /// Sends `bytes` of (seeded) bytes that are not JSON instead of a password.
    Garbage,
    /// Correct password, then never sends its peer address.
    HalfHandshake,
    /// Correct password and peer address, then never connects to the distribution socket.
    NoDist,
    /// A full (reference-style) membership that keeps writing on its distribution socket,
    /// counting the lists it receives; hangs up at `until`. An insider: it is admitted.
    DistChatter,
    /// Correct password, then announces another host's address (a live member's, or an
    /// unused one on an honest host's IP) as its peer address; if admitted, stays on.
    SpoofAddress,
    /// Connects, reads the banned status and hangs up at once: connection churn.
    ReconnectStorm,
}

impl AttackKind {
    /// The snake_case name used in files and traces.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Silent => "silent",
            AttackKind::Slowloris => "slowloris",
            AttackKind::Oversize => "oversize",
            AttackKind::Garbage => "garbage",
            AttackKind::HalfHandshake => "half_handshake",
            AttackKind::NoDist => "no_dist",
            AttackKind::DistChatter => "dist_chatter",
            AttackKind::SpoofAddress => "spoof_address",
            AttackKind::ReconnectStorm => "reconnect_storm",
        }
    }

    /// Whether its hosts are admitted by design (insiders with the password); every other
    /// kind's hosts must never be.
    pub fn insider(self) -> bool {
        self == AttackKind::DistChatter
    }

    /// Default `bytes` (oversize: twice the 2 KiB value bound; garbage: 64).
    pub fn default_bytes(self) -> Option<u32> {
        match self {
            AttackKind::Oversize => Some(2 * pyile::authenticator::config::DEFAULT_HANDSHAKE_VALUE_LIMIT as u32),
            AttackKind::Garbage => Some(64),
            _ => None,
        }
    }

    /// Default `interval` (slowloris: a byte every 250 ms; dist_chatter: a write every 100 ms).
    pub fn default_interval(self) -> Option<Dur> {
        match self {
            AttackKind::Slowloris => Some(Dur::from_millis(250)),
            AttackKind::DistChatter => Some(Dur::from_millis(100)),
            _ => None,
        }
    }
}

impl Action {
    /// The snake_case name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Action::Join => "join",
            Action::Leave => "leave",
            Action::Crash => "crash",
            Action::Restart => "restart",
            Action::Partition => "partition",
            Action::Heal => "heal",
            Action::Hold => "hold",
            Action::Release => "release",
            Action::BanFlood => "ban_flood",
            Action::Churn => "churn",
            Action::Broadcast => "broadcast",
            Action::Loss => "loss",
            Action::Attack => "attack",
        }
    }

    /// Fields (besides `at`, `action`, `note`) this action accepts.
    pub fn allowed_fields(self) -> &'static [&'static str] {
        match self {
            Action::Join | Action::Leave => &["group", "count", "stagger", "pick"],
            Action::Crash => &["target", "hosts", "fraction", "pick"],
            Action::Restart => &["target", "hosts", "fraction", "pick", "rejoin"],
            Action::Partition => &["target", "hosts", "fraction", "pick", "direction", "heal_after"],
            Action::Hold => &["target", "hosts", "fraction", "pick", "release_after"],
            Action::Heal | Action::Release => &[],
            Action::BanFlood => &["attackers", "attempts", "rate", "then_correct"],
            Action::Churn => &["group", "until", "join_rate", "leave_rate", "burst", "burst_spread"],
            Action::Broadcast => &["from", "until", "rate", "count", "size"],
            Action::Loss => &["target", "hosts", "fraction", "pick", "fail_rate", "until"],
            Action::Attack => &["kind", "attackers", "count", "rate", "until", "bytes", "interval"],
        }
    }

    /// Fields this action requires.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Action::Join | Action::Leave | Action::Churn => &["group"],
            Action::Crash | Action::Restart | Action::Partition | Action::Hold => &["target"],
            Action::Loss => &["fail_rate", "until"],
            Action::Attack => &["kind"],
            _ => &[],
        }
    }

    /// Whether this action is a fault (it must end before the settle window).
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Action::Crash
                | Action::Partition
                | Action::Hold
                | Action::BanFlood
                | Action::Churn
                | Action::Loss
                | Action::Attack
        )
    }
}

/// For partitions: which direction of traffic is dropped, seen from the `target` side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Both directions (a full partition).
    #[default]
    Both,
    /// Only what the target side sends is dropped (it still hears the rest).
    Outbound,
    /// Only what the target side would receive is dropped (it still talks).
    Inbound,
}

/// How hosts or joiners are chosen when an entry selects some of many.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// Uniformly at random from the seeded timeline RNG.
    #[default]
    Random,
    /// Lowest-numbered first (predictable, for hand-written scenarios).
    First,
}

/// `[[timeline]]`: one event, or a stream of events over a window.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    /// Simulated time the entry fires (or its window starts).
    pub at: Dur,
    /// What it does.
    pub action: Action,
    /// join/leave/churn: the joiner group.
    #[serde(default)]
    pub group: Option<String>,
    /// join/leave: how many joiners (default: all eligible); broadcast: messages at `at`;
    /// attack: connections per attacker at `at` (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    /// crash/restart/partition/hold: `"authenticator"`, `"joiners"` (every joiner host) or a
    /// group name.
    #[serde(default)]
    pub target: Option<String>,
    /// crash/restart/partition/hold: how many of the target's hosts (default: all).
    #[serde(default)]
    pub hosts: Option<u32>,
    /// crash/restart/partition/hold: fraction of the target's hosts, rounded up.
    #[serde(default)]
    pub fraction: Option<f64>,
    /// How hosts/joiners are chosen.
    #[serde(default)]
    pub pick: Option<Pick>,
    /// partition: which direction is cut.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// partition: repair after this long.
    #[serde(default)]
    pub heal_after: Option<Dur>,
    /// hold: release after this long.
    #[serde(default)]
    pub release_after: Option<Dur>,
    /// restart: whether the joiners that were on the host join again (default true).
    #[serde(default)]
    pub rejoin: Option<bool>,
    /// join/leave: gap between successive joiners.
    #[serde(default)]
    pub stagger: Option<Dur>,
    /// churn/broadcast/loss/attack: end of the window (attack: of new connections at
    /// `rate`; a dist_chatter or an admitted spoofer hangs up then).
    #[serde(default)]
    pub until: Option<Dur>,
    /// churn: joins per unit of time (a bare number is per second).
    #[serde(default)]
    pub join_rate: Option<EventRate>,
    /// churn: leaves per unit of time.
    #[serde(default)]
    pub leave_rate: Option<EventRate>,
    /// churn: joins/leaves per arrival (a burst lands within `burst_spread`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// churn: spread of one burst (small: the burst lands while a distribution is in flight).
    #[serde(default)]
    pub burst_spread: Option<Dur>,
    /// broadcast: messages per unit of time; ban_flood: attempts per attacker per unit of time;
    /// attack: connections per attacker per unit of time, until `until`.
    #[serde(default)]
    pub rate: Option<EventRate>,
    /// ban_flood/attack: attacker hosts (each its own IP, default 1).
    #[serde(default)]
    pub attackers: Option<u32>,
    /// attack: what each connection does.
    #[serde(default)]
    pub kind: Option<AttackKind>,
    /// attack oversize/garbage: bytes sent instead of a password.
    #[serde(default)]
    pub bytes: Option<u32>,
    /// attack slowloris: gap between dripped bytes; dist_chatter: gap between writes.
    #[serde(default)]
    pub interval: Option<Dur>,
    /// ban_flood: wrong attempts per attacker (default: password_attempts + 2).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// ban_flood: whether each attacker finally tries the correct password (default true).
    #[serde(default)]
    pub then_correct: Option<bool>,
    /// broadcast: sender: `"authenticator"`, `"any"` (default) or a group name.
    #[serde(default)]
    pub from: Option<String>,
    /// broadcast: payload size in bytes.
    #[serde(default)]
    pub size: Option<u32>,
    /// loss: probability that a send breaks the link (turmoil `fail_rate`).
    #[serde(default)]
    pub fail_rate: Option<f64>,
    /// Free text for humans.
    #[serde(default)]
    pub note: Option<String>,
}

impl TimelineEntry {
    /// Names of the optional fields that are set (for per-action validation).
    pub fn set_fields(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! f {
            ($($name:ident),*) => { $( if self.$name.is_some() { v.push(stringify!($name)); } )* };
        }
        f!(
            group,
            count,
            target,
            hosts,
            fraction,
            pick,
            direction,
            heal_after,
            release_after,
            rejoin,
            stagger,
            until,
            join_rate,
            leave_rate,
            burst,
            burst_spread,
            rate,
            attackers,
            kind,
            bytes,
            interval,
            attempts,
            then_correct,
            from,
            size,
            fail_rate
        );
        v
    }

    /// Wrong attempts per attacker of a ban flood (explicit, or `password_attempts + 2`).
    pub fn flood_attempts(&self, auth: &AuthSettings) -> u32 {
        self.attempts.unwrap_or(auth.password_attempts + 2)
    }

    /// Attempts per second per attacker of a ban flood (default 10).
    pub fn flood_rate(&self) -> f64 {
        self.rate.map_or(10.0, EventRate::per_sec)
    }

    /// When the effect of this entry ends, if it is bounded (partition with `heal_after`,
    /// hold with `release_after`, churn/broadcast/loss `until`, a ban flood's last attempt).
    pub fn ends_at(&self, auth: &AuthSettings) -> Option<Dur> {
        match self.action {
            Action::Partition => self.heal_after.map(|d| Dur(self.at.0 + d.0)),
            Action::Hold => self.release_after.map(|d| Dur(self.at.0 + d.0)),
            Action::Churn | Action::Broadcast | Action::Loss => self.until,
            Action::BanFlood => {
                let rate = self.flood_rate();
                let secs = if rate > 0.0 { f64::from(self.flood_attempts(auth)) / rate } else { 0.0 };
                Some(Dur(self.at.0 + std::time::Duration::from_secs_f64(secs)))
            }
            Action::Attack => Some(self.attack_end(auth)),
            _ => Some(self.at),
        }
    }

    /// When an attack's effect ends: a dist_chatter hangs up at `until`; every other kind's
    /// last connection opens at `until` (with a `rate`) or `at`, and the authenticator must
    /// have closed it one handshake timeout later (an admitted spoofer hangs up at `until`).
    pub fn attack_end(&self, auth: &AuthSettings) -> Dur {
        let last_open = if self.rate.is_some() { self.until.unwrap_or(self.at) } else { self.at };
        match self.kind {
            Some(AttackKind::DistChatter) => self.until.unwrap_or(self.at),
            Some(AttackKind::SpoofAddress) => {
                Dur(self.until.unwrap_or(last_open).0.max(last_open.0 + auth.handshake_timeout.0))
            }
            _ => Dur(last_open.0 + auth.handshake_timeout.0),
        }
    }

    /// An attack's `bytes` (explicit, or its kind's default).
    pub fn attack_bytes(&self) -> Option<u32> {
        self.bytes.or(self.kind.and_then(AttackKind::default_bytes))
    }

    /// An attack's `interval` (explicit, or its kind's default).
    pub fn attack_interval(&self) -> Option<Dur> {
        self.interval.or(self.kind.and_then(AttackKind::default_interval))
    }
}

/// A bound in an `[[expect]]`: a number in the metric's unit, or a duration string for
/// metrics measured in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// A plain number.
    Number(f64),
    /// A duration (only for time metrics).
    Duration(Dur),
}

impl Bound {
    /// The bound in the metric's unit (durations in seconds).
    pub fn value(self) -> f64 {
        match self {
            Bound::Number(v) => v,
            Bound::Duration(d) => d.secs_f64(),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Number(v) => write!(f, "{v}"),
            Bound::Duration(d) => write!(f, "{d}"),
        }
    }
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bound;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a duration string like \"9s\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Bound, E> {
                Ok(Bound::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Bound, E> {
                Ok(Bound::Number(v as f64))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Bound, E> {
                Ok(Bound::Number(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bound, E> {
                v.parse().map(Bound::Duration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[expect]]`: a bound on one metric of every run of the scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// A metric name from the catalogue (`sim --list-metrics`).
    pub metric: String,
    /// The metric must be at least this.
    #[serde(default)]
    pub min: Option<Bound>,
    /// The metric must be at most this.
    #[serde(default)]
    pub max: Option<Bound>,
    /// Whether a run without samples for the metric passes (default false: no samples is a
    /// failure, e.g. a fault that was never detected).
    #[serde(default)]
    pub allow_missing: bool,
    /// Why this bound (shown when it fails).
    #[serde(default)]
    pub why: Option<String>,
}

impl Expect {
    /// The metric id (valid after validation).
    pub fn metric_id(&self) -> Option<MetricId> {
        MetricId::from_name(&self.metric)
    }
}

impl Scenario {
    /// The joiner group called `name`.
    pub fn group(&self, name: &str) -> Option<&JoinerGroup> {
        self.joiners.iter().map(|g| g.get_ref()).find(|g| g.name == name)
    }

    /// Total joiners over all groups.
    pub fn joiner_count(&self) -> u64 {
        self.joiners.iter().map(|g| u64::from(g.get_ref().count)).sum()
    }

    /// Attacker hosts over all ban floods and attacks (each brings its own attackers).
    pub fn attacker_hosts(&self) -> u64 {
        self.timeline
            .iter()
            .map(|e| e.get_ref())
            .filter(|e| matches!(e.action, Action::BanFlood | Action::Attack))
            .map(|e| u64::from(e.attackers.unwrap_or(1)))
            .sum()
    }

    /// Simulated hosts: the authenticator, every group's hosts, every attacker.
    pub fn host_count(&self) -> u64 {
        let impostors = self.joiners.iter().filter(|g| g.get_ref().impostor.is_some()).count() as u64;
        1 + self.joiners.iter().map(|g| u64::from(g.get_ref().hosts())).sum::<u64>() + self.attacker_hosts() + impostors
    }
}
