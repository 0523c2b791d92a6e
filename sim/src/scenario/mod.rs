//! Scenario files: the TOML schema, loading with line-numbered errors, and validation.
//!
//! A scenario says what to simulate (network, authenticator settings, joiner groups packed
//! onto simulated hosts), what happens when (the `[[timeline]]`), what must hold
//! (`[[expect]]`), and which values vary per seed (`[random]`, resolved by [`random`]).
//! The schema is documented for users in `scenarios/README.md`; keep the two in step.
//!
//! Every struct is `deny_unknown_fields`, so a misspelt key is an error that names its line
//! (the toml crate's spans), never a silently ignored setting. Timeline entries are one flat
//! struct with an `action` and optional fields rather than a serde-tagged enum, because the
//! tagged form buffers the table and loses the key spans; [`Scenario::validate`] then rejects
//! fields that do not apply to the action, again with the entry's line.

pub mod random;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use pyile::units::{ByteRate, Dur};
use serde::Deserialize;
use toml::Spanned;

use crate::hash::Fnv64;
use crate::metrics::{MetricId, Unit};

/// Group and target names with a fixed meaning, which a joiner group cannot be called.
pub const RESERVED_NAMES: &[&str] = &["authenticator", "joiners", "any", "attackers", "all"];

/// A scenario file could not be used. Every variant prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read scenario: {source}")]
    Read {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A problem at a known place in the file (syntax, unknown key, invalid value).
    #[error("{path}:{line}:{col}: {msg}")]
    At {
        /// File path.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// A problem with the scenario as a whole.
    #[error("{path}: {msg}")]
    Whole {
        /// File path.
        path: String,
        /// What is wrong.
        msg: String,
    },
}

/// A set of seeds: `[1, 2, 3]` or a range string `"1..20"` (end exclusive) / `"1..=20"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedSet(pub Vec<u64>);

impl SeedSet {
    /// Parses `N`, `A..B` (end exclusive), `A..=B`, or a comma list of those.
    pub fn parse(s: &str) -> Result<SeedSet, String> {
        let mut seeds = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let num = |t: &str| {
                t.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("bad seed {t:?} in {s:?} (write 7, 1..20, 1..=20 or 1,5,9)"))
            };
            if let Some((a, b)) = part.split_once("..=") {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(format!("empty seed range {part:?}"));
                }
                seeds.extend(a..=b);
            } else if let Some((a, b)) = part.split_once("..") {
                let (a, b) = (num(a)?, num(b)?);
                if b <= a {
                    return Err(format!("empty seed range {part:?} (the end is exclusive; use ..= to include it)"));
                }
                seeds.extend(a..b);
            } else {
                seeds.push(num(part)?);
            }
        }
        if seeds.is_empty() {
            return Err(format!("no seeds in {s:?}"));
        }
        let mut seen = BTreeSet::new();
        seeds.retain(|s| seen.insert(*s));
        Ok(SeedSet(seeds))
    }
}

impl<'de> Deserialize<'de> for SeedSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SeedSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of seeds like [1, 2, 3] or a range string like \"1..20\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SeedSet, E> {
                SeedSet::parse(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<SeedSet, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = a.next_element::<u64>()? {
                    v.push(s);
                }
                if v.is_empty() {
                    return Err(serde::de::Error::custom("seeds must not be empty"));
                }
                Ok(SeedSet(v))
            }
        }
        d.deserialize_any(V)
    }
}

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
        }
    }

    /// Fields this action requires.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Action::Join | Action::Leave | Action::Churn => &["group"],
            Action::Crash | Action::Restart | Action::Partition | Action::Hold => &["target"],
            Action::Loss => &["fail_rate", "until"],
            _ => &[],
        }
    }

    /// Whether this action is a fault (it must end before the settle window).
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            Action::Crash | Action::Partition | Action::Hold | Action::BanFlood | Action::Churn | Action::Loss
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
    /// join/leave: how many joiners (default: all eligible); broadcast: messages at `at`.
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
    /// churn/broadcast: end of the window.
    #[serde(default)]
    pub until: Option<Dur>,
    /// churn: joins per second.
    #[serde(default)]
    pub join_rate: Option<f64>,
    /// churn: leaves per second.
    #[serde(default)]
    pub leave_rate: Option<f64>,
    /// churn: joins/leaves per arrival (a burst lands within `burst_spread`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// churn: spread of one burst (small: the burst lands while a distribution is in flight).
    #[serde(default)]
    pub burst_spread: Option<Dur>,
    /// broadcast: messages per second; ban_flood: attempts per second per attacker.
    #[serde(default)]
    pub rate: Option<f64>,
    /// ban_flood: attacker hosts (each its own IP).
    #[serde(default)]
    pub attackers: Option<u32>,
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
        self.rate.unwrap_or(10.0)
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
            _ => Some(self.at),
        }
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

/// A scenario file as loaded: its text (for line numbers and the file hash) and its parse.
#[derive(Clone, Debug)]
pub struct LoadedScenario {
    /// The path as given.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// FNV-1a 64 of the file's bytes, hex: identifies the exact file a run used.
    pub hash: String,
    /// The parse, before `[random]` resolution.
    pub scenario: Scenario,
}

/// Converts byte offsets of a source text into 1-based line and column.
pub struct LineIndex<'a> {
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    /// Indexes `text`.
    pub fn new(text: &'a str) -> Self {
        LineIndex { text }
    }

    /// 1-based (line, column) of byte offset `pos` (clamped to the text).
    pub fn locate(&self, pos: usize) -> (usize, usize) {
        let pos = pos.min(self.text.len());
        let before = &self.text[..pos];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

impl LoadedScenario {
    /// Reads and parses a scenario file; syntax errors and unknown keys name their line.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::from_text(path, text)
    }

    /// Parses scenario text (`path` is only used in messages and reports).
    pub fn from_text(path: impl AsRef<Path>, text: String) -> Result<Self, ScenarioError> {
        let path = path.as_ref().to_path_buf();
        let scenario = parse_toml::<Scenario>(&path, &text)?;
        let mut h = Fnv64::new();
        h.update(text.as_bytes());
        let loaded = LoadedScenario { hash: h.hex(), path, text, scenario };
        // Structural checks that do not depend on random draws, so they fail without a seed.
        loaded.check_random_paths()?;
        Ok(loaded)
    }

    /// The path for messages.
    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }

    /// An error located at a span of this file.
    pub fn error_at(&self, span: Range<usize>, msg: impl Into<String>) -> ScenarioError {
        let (line, col) = LineIndex::new(&self.text).locate(span.start);
        ScenarioError::At { path: self.display_path(), line, col, msg: msg.into() }
    }

    /// An error about the whole file.
    pub fn error(&self, msg: impl Into<String>) -> ScenarioError {
        ScenarioError::Whole { path: self.display_path(), msg: msg.into() }
    }

    /// Resolves `[random]` for `seed` and validates the result.
    pub fn resolve(&self, seed: u64) -> Result<Resolved, ScenarioError> {
        let resolved = random::resolve(self, seed)?;
        resolved.scenario.validate(self)?;
        Ok(resolved)
    }
}

/// Deserializes TOML text, turning the toml crate's error into a one-line located error.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ScenarioError> {
    toml::from_str::<T>(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                let (line, col) = LineIndex::new(text).locate(span.start);
                ScenarioError::At { path: path.display().to_string(), line, col, msg }
            }
            None => ScenarioError::Whole { path: path.display().to_string(), msg },
        }
    })
}

/// A scenario with its `[random]` values drawn for one seed.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The seed the values were drawn for.
    pub seed: u64,
    /// The scenario with every random value substituted (its spans are meaningless; use the
    /// [`LoadedScenario`]'s for messages).
    pub scenario: Scenario,
    /// `(path, value)` of every drawn value, sorted by path: written to the report.
    pub drawn: Vec<(String, String)>,
}

impl Resolved {
    /// The drawn values as one report cell: `path=value;path=value`.
    pub fn drawn_cell(&self) -> String {
        self.drawn.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
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

    /// Attacker hosts over all ban floods (each flood brings its own attackers).
    pub fn attacker_hosts(&self) -> u64 {
        self.timeline
            .iter()
            .map(|e| e.get_ref())
            .filter(|e| e.action == Action::BanFlood)
            .map(|e| u64::from(e.attackers.unwrap_or(1)))
            .sum()
    }

    /// Simulated hosts: the authenticator, every group's hosts, every attacker.
    pub fn host_count(&self) -> u64 {
        1 + self.joiners.iter().map(|g| u64::from(g.get_ref().hosts())).sum::<u64>() + self.attacker_hosts()
    }

    /// Checks everything the types cannot: ranges, references between sections, fields that
    /// do not apply to an action, expectations naming unknown metrics. `src` supplies the
    /// line numbers (a resolved scenario has the same entries as its source, in order).
    pub fn validate(&self, src: &LoadedScenario) -> Result<(), ScenarioError> {
        let orig = &src.scenario;
        let whole = |msg: String| Err(src.error(msg));
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return whole(format!("name {:?} must be non-empty [A-Za-z0-9_-] (it names report files)", self.name));
        }
        if self.duration.0.is_zero() {
            return whole("duration must be > 0".into());
        }
        if self.tick.0.is_zero() || self.tick.0 > std::time::Duration::from_millis(100) {
            return whole(format!("tick {} must be in (0, 100ms]", self.tick));
        }
        if self.settle >= self.duration {
            return whole(format!("settle {} must be shorter than duration {}", self.settle, self.duration));
        }
        let n = &self.network;
        if n.min_latency > n.max_latency {
            return whole(format!("network: min_latency {} > max_latency {}", n.min_latency, n.max_latency));
        }
        if !(0.0..1.0).contains(&n.fail_rate) {
            return whole(format!("network: fail_rate {} must be in [0, 1)", n.fail_rate));
        }
        if n.tcp_capacity == 0 {
            return whole("network: tcp_capacity must be >= 1".into());
        }
        let a = &self.authenticator;
        if a.password_attempts == 0 {
            return whole("authenticator: password_attempts must be >= 1".into());
        }
        if a.heartbeat_interval.0.is_zero() || a.handshake_timeout.0.is_zero() {
            return whole("authenticator: heartbeat_interval and handshake_timeout must be > 0".into());
        }
        if a.heartbeat_timeout() <= a.heartbeat_interval {
            return whole(format!(
                "authenticator: heartbeat_timeout {} must exceed heartbeat_interval {}",
                a.heartbeat_timeout(),
                a.heartbeat_interval
            ));
        }

        let mut names = BTreeSet::new();
        for (i, g) in self.joiners.iter().enumerate() {
            let g = g.get_ref();
            let at = |msg: String| Err(src.error_at(orig.joiners[i].span(), msg));
            if RESERVED_NAMES.contains(&g.name.as_str()) {
                return at(format!("group name {:?} is reserved ({})", g.name, RESERVED_NAMES.join(", ")));
            }
            if !names.insert(g.name.clone()) {
                return at(format!("duplicate group name {:?}", g.name));
            }
            if g.count == 0 || g.joiners_per_host == 0 {
                return at(format!("group {:?}: count and joiners_per_host must be >= 1", g.name));
            }
            if let Some(t) = g.join_at
                && t >= self.duration
            {
                return at(format!("group {:?}: join_at {} is not before duration {}", g.name, t, self.duration));
            }
        }

        let quiet_from = Dur(self.duration.0 - self.settle.0);
        let mut open_partitions: Vec<usize> = Vec::new();
        let mut open_holds: Vec<usize> = Vec::new();
        let mut order: Vec<usize> = (0..self.timeline.len()).collect();
        order.sort_by_key(|&i| self.timeline[i].get_ref().at); // stable: file order on ties
        for &i in &order {
            let e = self.timeline[i].get_ref();
            let at = |msg: String| Err(src.error_at(orig.timeline[i].span(), msg));
            let act = e.action.name();
            if e.at >= self.duration {
                return at(format!("{act} at {} is not before duration {}", e.at, self.duration));
            }
            for f in e.set_fields() {
                if !e.action.allowed_fields().contains(&f) {
                    let allowed = e.action.allowed_fields();
                    return at(format!(
                        "`{f}` does not apply to action `{act}` (it takes: {})",
                        if allowed.is_empty() { "no options".to_string() } else { allowed.join(", ") }
                    ));
                }
            }
            for f in e.action.required_fields() {
                if !e.set_fields().contains(f) {
                    return at(format!("action `{act}` needs `{f}`"));
                }
            }
            if let Some(g) = &e.group
                && self.group(g).is_none()
            {
                return at(format!(
                    "unknown group {g:?} (groups: {})",
                    names.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            if let Some(t) = &e.target {
                if t != "authenticator" && t != "joiners" && self.group(t).is_none() {
                    return at(format!("unknown target {t:?}: use \"authenticator\", \"joiners\" or a group name"));
                }
                if t == "authenticator" && (e.hosts.is_some() || e.fraction.is_some()) {
                    return at("the authenticator is one host: `hosts`/`fraction` do not apply".into());
                }
            }
            if let Some(f) = &e.from
                && f != "authenticator"
                && f != "any"
                && self.group(f).is_none()
            {
                return at(format!("unknown sender {f:?}: use \"authenticator\", \"any\" or a group name"));
            }
            if e.hosts.is_some() && e.fraction.is_some() {
                return at("give `hosts` or `fraction`, not both".into());
            }
            if let Some(f) = e.fraction
                && !(f > 0.0 && f <= 1.0)
            {
                return at(format!("fraction {f} must be in (0, 1]"));
            }
            for (name, v) in [
                ("hosts", e.hosts),
                ("count", e.count),
                ("burst", e.burst),
                ("attackers", e.attackers),
                ("attempts", e.attempts),
            ] {
                if v == Some(0) {
                    return at(format!("`{name}` must be >= 1"));
                }
            }
            for (name, v) in [("rate", e.rate), ("join_rate", e.join_rate), ("leave_rate", e.leave_rate)] {
                if let Some(v) = v
                    && !(v.is_finite() && v >= 0.0)
                {
                    return at(format!("`{name}` {v} must be a finite rate >= 0 (per second)"));
                }
            }
            if let Some(u) = e.until
                && (u <= e.at || u > self.duration)
            {
                return at(format!("until {u} must be after at {} and not after duration {}", e.at, self.duration));
            }
            match e.action {
                Action::Churn => {
                    if e.until.is_none() {
                        return at("churn needs `until` (the end of its window)".into());
                    }
                    if e.join_rate.unwrap_or(0.0) + e.leave_rate.unwrap_or(0.0) <= 0.0 {
                        return at("churn needs a positive `join_rate` or `leave_rate`".into());
                    }
                }
                Action::Broadcast => {
                    if e.until.is_some() != e.rate.is_some() {
                        return at(
                            "broadcast over a window needs both `until` and `rate`; a one-off broadcast has neither"
                                .into(),
                        );
                    }
                    if e.until.is_some() && e.count.is_some() {
                        return at("broadcast: `count` is for a one-off broadcast, not with `rate`".into());
                    }
                }
                Action::Partition => {
                    if e.heal_after.is_some() {
                        if let Some(end) = e.ends_at(a)
                            && end > self.duration
                        {
                            return at(format!("heal_after ends at {end}, after duration {}", self.duration));
                        }
                    } else {
                        open_partitions.push(i);
                    }
                }
                Action::Hold if e.release_after.is_none() => {
                    open_holds.push(i);
                }
                Action::Loss => {
                    if let Some(f) = e.fail_rate
                        && !(0.0..1.0).contains(&f)
                    {
                        return at(format!("fail_rate {f} must be in [0, 1)"));
                    }
                }
                Action::BanFlood if e.flood_rate() <= 0.0 => {
                    return at("ban_flood needs a positive `rate`".into());
                }
                Action::Heal => open_partitions.clear(),
                Action::Release => open_holds.clear(),
                _ => {}
            }
            if self.settle.0 > std::time::Duration::ZERO && e.action.is_fault() {
                let end = e.ends_at(a).unwrap_or(e.at);
                if end > quiet_from {
                    return at(format!(
                        "fault `{act}` lasts until {end}, inside the final settle window (from {quiet_from}); end it earlier or set settle = \"0s\""
                    ));
                }
            }
            if self.settle.0 > std::time::Duration::ZERO
                && matches!(e.action, Action::Heal | Action::Release)
                && e.at > quiet_from
            {
                return at(format!("`{act}` at {} is inside the final settle window (from {quiet_from})", e.at));
            }
        }
        if self.settle.0 > std::time::Duration::ZERO
            && let Some(&i) = open_partitions.first().or(open_holds.first())
        {
            return Err(src.error_at(
                    orig.timeline[i].span(),
                    format!(
                        "`{}` is never healed/released, so the settle window is not fault-free; add heal_after/release_after, a later heal/release, or set settle = \"0s\"",
                        self.timeline[i].get_ref().action.name()
                    ),
                ));
        }

        for (i, x) in self.expect.iter().enumerate() {
            let x = x.get_ref();
            let at = |msg: String| Err(src.error_at(orig.expect[i].span(), msg));
            let Some(id) = x.metric_id() else {
                return at(format!("unknown metric {:?} (known: {})", x.metric, MetricId::all_names().join(", ")));
            };
            if x.min.is_none() && x.max.is_none() {
                return at(format!("expectation on {} needs `min` or `max`", x.metric));
            }
            for b in [x.min, x.max].into_iter().flatten() {
                if matches!(b, Bound::Duration(_)) && id.def().unit != Unit::Seconds {
                    return at(format!("{} is not a time metric: give a number, not {b}", x.metric));
                }
            }
            if let (Some(lo), Some(hi)) = (x.min, x.max)
                && lo.value() > hi.value()
            {
                return at(format!("min {lo} > max {hi}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
