//! What a run measures: one HdrHistogram per latency and one counter per outcome.
//!
//! Recording happens from many tasks at once through a shared [`Metrics`]; a single
//! [`Collector`] (owned by whoever writes reports) periodically cuts an [`Interval`] — the
//! histograms and counter increments since the last cut — and folds it into the run's
//! [`Totals`]. Every histogram has fixed bounds (1 µs to 1 h, 3 significant digits), so memory
//! is constant however long the run.
//!
//! Latencies are durations from the operation's *intended* start (see [`crate::plan`]) to the
//! moment observed, never from when loadgen got round to starting it: a stalled server or a
//! lagging generator then shows in the numbers (no coordinated omission). How late loadgen
//! itself started each operation is recorded separately as [`Latency::ScheduleLag`].
//!
//! Hostile traffic (`--attack`) is measured apart from the honest joiners, per attack kind:
//! [`AttackCounter`]s and one histogram, [`AttackMetric::ClosedAfter`] (from a hostile
//! connection's connect to the authenticator closing it). Their names are
//! `attack.<kind>.<metric>` (`attack.silent.open_at_end`), so honest metrics keep theirs and
//! `--fail-on` can gate either.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::attack::AttackKind;

/// Highest recordable latency in microseconds (one hour); larger values are clamped to it.
pub const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept by every histogram.
pub const SIGFIG: u8 = 3;

/// A latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Latency {
    /// Intended join start to TCP connection to the authenticator established.
    TcpConnect,
    /// ... to the `{"banned": …}` status received.
    BannedStatus,
    /// ... to the `{"authenticated": …}` result received.
    AuthResult,
    /// ... to the first member list (`distro`) received on the auth connection.
    FirstList,
    /// ... to the distribution socket connected: the join is complete.
    JoinComplete,
    /// ... to the joiner's member list containing every loadgen joiner (of this process) that
    /// completed its join before this one started.
    Convergence,
    /// Time between two heartbeats from the authenticator, as one joiner sees them.
    HeartbeatInterval,
    /// Intended broadcast start to receipt at each recipient (one sample per recipient).
    MessageDelivery,
    /// A crashed joiner (churn's crash half: it hung, sockets open, answering nothing): from
    /// the moment it went silent to the first member list without its address that another
    /// loadgen joiner of this process took. One sample per crash detected within
    /// `--crash-bound`; the others are [`Counter::CrashUndetected`] or
    /// [`Counter::CrashUnobserved`].
    CrashDetection,
    /// How late loadgen started an operation compared with the plan.
    ScheduleLag,
    /// How late a probe task on loadgen's runtime woke from a short sleep, sampled all
    /// through the run ([`crate::driver::probe_runtime`]): the queueing inside loadgen
    /// itself, which every latency above includes. Low while the others are high, the time
    /// went elsewhere (the network, the authenticator); high with them, loadgen's own
    /// thousands of tasks held its joiners up.
    RuntimeLag,
}

impl Latency {
    /// Every latency, in report order.
    pub const ALL: [Latency; 11] = [
        Latency::TcpConnect,
        Latency::BannedStatus,
        Latency::AuthResult,
        Latency::FirstList,
        Latency::JoinComplete,
        Latency::Convergence,
        Latency::HeartbeatInterval,
        Latency::MessageDelivery,
        Latency::CrashDetection,
        Latency::ScheduleLag,
        Latency::RuntimeLag,
    ];

    /// The stable name used in CSV files, interval-log tags and `--fail-on` rules.
    pub fn name(self) -> &'static str {
        match self {
            Latency::TcpConnect => "tcp_connect",
            Latency::BannedStatus => "banned_status",
            Latency::AuthResult => "auth_result",
            Latency::FirstList => "first_list",
            Latency::JoinComplete => "join_complete",
            Latency::Convergence => "convergence",
            Latency::HeartbeatInterval => "heartbeat_interval",
            Latency::MessageDelivery => "message_delivery",
            Latency::CrashDetection => "crash_detection",
            Latency::ScheduleLag => "schedule_lag",
            Latency::RuntimeLag => "runtime_lag",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An outcome counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    /// Joins completed.
    Joined,
    /// Joins whose TCP connection was refused.
    Refused,
    /// Joins that did not complete within `--handshake-timeout`.
    TimedOut,
    /// Joiners (not attackers) told they are banned.
    Banned,
    /// Joiners (not attackers) told their password is wrong.
    WrongPassword,
    /// Joins or joiners that failed on something that is not Pyile v1.
    ProtocolError,
    /// Joined joiners whose authenticator connection was closed under them (removed, or the
    /// authenticator went away) while they meant to stay.
    Removed,
    /// Joined joiners that heard no heartbeat within `--heartbeat-timeout`.
    LostAuthenticator,
    /// Any other failure (I/O errors and the like).
    OtherError,
    /// Sum of every error counter (those above, and `crash_undetected`); the default
    /// `--fail-on` rule is `errors>0`.
    Errors,
    /// Graceful leaves performed (every socket closed: the authenticator sees the close).
    Left,
    /// Crashes performed: the joiner hung (`pyile::Joiner::hang`), answering nothing with
    /// every socket left open, so only the authenticator's heartbeat timeout can notice.
    Crashed,
    /// Crashes whose address was still in the member lists when `--crash-bound` expired (an
    /// error: the authenticator did not remove a dead member in time).
    CrashUndetected,
    /// Crashes that could not be judged: the run was stopped first, or no other loadgen
    /// joiner of this process held the address in its list to see it go.
    CrashUnobserved,
    /// Messages sent (one per recipient of a broadcast).
    MessagesSent,
    /// Messages echoed back by their recipient.
    MessagesDelivered,
    /// Messages that failed or were never echoed.
    MessagesLost,
    /// Messages delivered to loadgen's joiners (each delivery of a broadcast counts once).
    MessagesReceived,
    /// Copies of protocol-2 messages loadgen's joiners' duplicate filters dropped (an id
    /// already delivered, e.g. a retry whose first echo was lost).
    MessagesDuplicatesDropped,
    /// Retries loadgen's joiners made of unconfirmed messages (to receivers known to drop
    /// duplicates).
    MessageRetries,
    /// Wrong-password attempts made from attacker addresses.
    Attacks,
    /// Attacks answered `{"authenticated": false}`.
    AttackRejected,
    /// Attacks answered `{"banned": true}`.
    AttackBanned,
    /// Planned operations skipped because their joiner was not there (e.g. a broadcast from a
    /// joiner whose join failed).
    Skipped,
    /// Protocol events dropped because loadgen fell behind reading them.
    EventsLagged,
    /// Joins that reused a live joiner's alias (`--duplicate-alias-rate`) and were refused
    /// with `alias_taken`, as they must be: not an error. A refusal of a join that did not
    /// reuse one is an error (`other_error`).
    AliasTaken,
    /// Joins pointed at loadgen's impostor authenticator (`--impostor-rate`).
    ImpostorJoins,
    /// Of those, joins the joiner gave up because the impostor could not prove it knows the
    /// password (or, with `--require-mutual-auth`, offered no proof): protocol 2 working.
    ImpostorRefused,
    /// Cleartext passwords the impostor received: v1's weakness (protocol-1 joiners, or a
    /// v1-posing impostor and no `--require-mutual-auth`).
    ImpostorPasswords,
    /// The impostor received the password in clear, or was taken for the authenticator, where
    /// protocol 2 promises neither (an error).
    ImpostorExposed,
}

impl Counter {
    /// Every counter, in report order.
    pub const ALL: [Counter; 30] = [
        Counter::Joined,
        Counter::Refused,
        Counter::TimedOut,
        Counter::Banned,
        Counter::WrongPassword,
        Counter::ProtocolError,
        Counter::Removed,
        Counter::LostAuthenticator,
        Counter::OtherError,
        Counter::Errors,
        Counter::Left,
        Counter::Crashed,
        Counter::CrashUndetected,
        Counter::CrashUnobserved,
        Counter::MessagesSent,
        Counter::MessagesDelivered,
        Counter::MessagesLost,
        Counter::MessagesReceived,
        Counter::MessagesDuplicatesDropped,
        Counter::MessageRetries,
        Counter::Attacks,
        Counter::AttackRejected,
        Counter::AttackBanned,
        Counter::Skipped,
        Counter::EventsLagged,
        Counter::AliasTaken,
        Counter::ImpostorJoins,
        Counter::ImpostorRefused,
        Counter::ImpostorPasswords,
        Counter::ImpostorExposed,
    ];

    /// The stable name used in CSV files, interval-log tags and `--fail-on` rules.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Joined => "joined",
            Counter::Refused => "refused",
            Counter::TimedOut => "timed_out",
            Counter::Banned => "banned",
            Counter::WrongPassword => "wrong_password",
            Counter::ProtocolError => "protocol_error",
            Counter::Removed => "removed",
            Counter::LostAuthenticator => "lost_authenticator",
            Counter::OtherError => "other_error",
            Counter::Errors => "errors",
            Counter::Left => "left",
            Counter::Crashed => "crashed",
            Counter::CrashUndetected => "crash_undetected",
            Counter::CrashUnobserved => "crash_unobserved",
            Counter::MessagesSent => "messages_sent",
            Counter::MessagesDelivered => "messages_delivered",
            Counter::MessagesLost => "messages_lost",
            Counter::MessagesReceived => "messages_received",
            Counter::MessagesDuplicatesDropped => "messages_duplicates_dropped",
            Counter::MessageRetries => "message_retries",
            Counter::Attacks => "attacks",
            Counter::AttackRejected => "attack_rejected",
            Counter::AttackBanned => "attack_banned",
            Counter::Skipped => "skipped",
            Counter::EventsLagged => "events_lagged",
            Counter::AliasTaken => "alias_taken",
            Counter::ImpostorJoins => "impostor_joins",
            Counter::ImpostorRefused => "impostor_refused",
            Counter::ImpostorPasswords => "impostor_passwords_captured",
            Counter::ImpostorExposed => "impostor_exposed",
        }
    }

    /// Whether this counter is an error (and so also counts in [`Counter::Errors`]).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Counter::Refused
                | Counter::TimedOut
                | Counter::Banned
                | Counter::WrongPassword
                | Counter::ProtocolError
                | Counter::Removed
                | Counter::LostAuthenticator
                | Counter::OtherError
                | Counter::CrashUndetected
                | Counter::ImpostorExposed
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A counter of one attack kind (`attack.<kind>.<name>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackCounter {
    /// Hostile connections attempted (for a `reconnect-storm` loop, each connect).
    Attempted,
    /// Attempts whose TCP connect was refused or failed.
    ConnectFailed,
    /// Planned connections not made: the attack's `max` were open, or (`spoof-address`)
    /// no honest member of this process to impersonate was joined.
    Skipped,
    /// Connections the authenticator closed (EOF or reset); how long after connecting is
    /// [`AttackMetric::ClosedAfter`].
    ClosedByAuth,
    /// Connections loadgen closed itself (`hold=` expired, or a `reconnect-storm` close).
    ClosedByUs,
    /// Connections still open when the run ended.
    OpenAtEnd,
    /// Connections that met something the attack did not expect (an I/O error of ours, an
    /// answer that is not Pyile v1).
    Failed,
    /// Bytes written: taken by loadgen's kernel, not necessarily read by the authenticator
    /// (what an `oversize` connection writes before the reset reaches it counts).
    SentBytes,
    /// Bytes read.
    ReceivedBytes,
    /// Attackers that became members (`dist-chatter`; `spoof-address` if the authenticator
    /// let it in): they received a member list on their distribution connection.
    Admitted,
    /// Answered `{"authenticated": false}`.
    Rejected,
    /// Answered `{"banned": true}`.
    Banned,
    /// Values written where they should have no effect (`dist-chatter`, on the distribution
    /// socket).
    ValuesWritten,
    /// Member lists received on the distribution socket after the first (`dist-chatter`:
    /// divided by `values_written`, the amplification; lists caused by honest joins and
    /// leaves count too).
    ListsReceived,
    /// Honest members impersonated by `spoof-address` that lost their membership afterwards.
    VictimsEvicted,
}

impl AttackCounter {
    /// Every counter, in report order.
    pub const ALL: [AttackCounter; 15] = [
        AttackCounter::Attempted,
        AttackCounter::ConnectFailed,
        AttackCounter::Skipped,
        AttackCounter::ClosedByAuth,
        AttackCounter::ClosedByUs,
        AttackCounter::OpenAtEnd,
        AttackCounter::Failed,
        AttackCounter::SentBytes,
        AttackCounter::ReceivedBytes,
        AttackCounter::Admitted,
        AttackCounter::Rejected,
        AttackCounter::Banned,
        AttackCounter::ValuesWritten,
        AttackCounter::ListsReceived,
        AttackCounter::VictimsEvicted,
    ];

    /// The stable name after `attack.<kind>.` (a byte count says so: `sent_bytes`).
    pub fn name(self) -> &'static str {
        match self {
            AttackCounter::Attempted => "attempted",
            AttackCounter::ConnectFailed => "connect_failed",
            AttackCounter::Skipped => "skipped",
            AttackCounter::ClosedByAuth => "closed_by_auth",
            AttackCounter::ClosedByUs => "closed_by_us",
            AttackCounter::OpenAtEnd => "open_at_end",
            AttackCounter::Failed => "failed",
            AttackCounter::SentBytes => "sent_bytes",
            AttackCounter::ReceivedBytes => "received_bytes",
            AttackCounter::Admitted => "admitted",
            AttackCounter::Rejected => "rejected",
            AttackCounter::Banned => "banned",
            AttackCounter::ValuesWritten => "values_written",
            AttackCounter::ListsReceived => "lists_received",
            AttackCounter::VictimsEvicted => "victims_evicted",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What is measured of one attack kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackMetric {
    /// Histogram: connect to the authenticator closing the connection (`closed_after`).
    ClosedAfter,
    /// A counter.
    Counter(AttackCounter),
}

impl AttackMetric {
    /// Every attack metric: the histogram, then the counters.
    pub fn all() -> impl Iterator<Item = AttackMetric> {
        std::iter::once(AttackMetric::ClosedAfter).chain(AttackCounter::ALL.into_iter().map(AttackMetric::Counter))
    }

    /// The stable name after `attack.<kind>.`.
    pub fn name(self) -> &'static str {
        match self {
            AttackMetric::ClosedAfter => "closed_after",
            AttackMetric::Counter(c) => c.name(),
        }
    }

    fn index(self) -> usize {
        match self {
            AttackMetric::ClosedAfter => 0,
            AttackMetric::Counter(c) => 1 + c.index(),
        }
    }
}

/// Either kind of metric, as named in files and rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A histogram.
    Latency(Latency),
    /// A counter.
    Counter(Counter),
    /// A metric of one attack kind.
    Attack(AttackKind, AttackMetric),
}

/// `attack.<kind>.<metric>` for every kind and metric, built once (names are `&'static`).
fn attack_names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        AttackKind::ALL
            .iter()
            .flat_map(|k| AttackMetric::all().map(move |m| (k, m)))
            .map(|(k, m)| &*Box::leak(format!("attack.{}.{}", k.metric_name(), m.name()).into_boxed_str()))
            .collect()
    })
}

impl Metric {
    /// Looks a metric up by its stable name (an attack kind may also be written as in
    /// `--attack`: `attack.no-dist.open_at_end`).
    pub fn from_name(name: &str) -> Option<Metric> {
        if let Some(rest) = name.strip_prefix("attack.") {
            let (kind, metric) = rest.split_once('.')?;
            let kind = AttackKind::from_name(kind)?;
            return AttackMetric::all().find(|m| m.name() == metric).map(|m| Metric::Attack(kind, m));
        }
        Latency::ALL
            .into_iter()
            .find(|l| l.name() == name)
            .map(Metric::Latency)
            .or_else(|| Counter::ALL.into_iter().find(|c| c.name() == name).map(Metric::Counter))
    }

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Latency(l) => l.name(),
            Metric::Counter(c) => c.name(),
            Metric::Attack(k, m) => attack_names()[k.index() * (1 + AttackCounter::ALL.len()) + m.index()],
        }
    }

    /// Whether the metric is a histogram (its rules name a statistic).
    pub fn is_histogram(self) -> bool {
        matches!(self, Metric::Latency(_) | Metric::Attack(_, AttackMetric::ClosedAfter))
    }

    /// Every stable name of the honest metrics, for error messages.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        Latency::ALL.iter().map(|l| l.name()).chain(Counter::ALL.iter().map(|c| c.name()))
    }

    /// Every `attack.<kind>.<metric>` name.
    pub fn attack_names() -> impl Iterator<Item = &'static str> {
        attack_names().iter().copied()
    }
}

/// An empty histogram with the crate's fixed bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG).expect("constant histogram bounds are valid")
}

/// The metrics of one attack kind.
#[derive(Clone, Debug)]
pub struct AttackTotals {
    /// Connect to closed by the authenticator, microseconds.
    pub closed_after: Histogram<u64>,
    counters: [u64; AttackCounter::ALL.len()],
}

impl Default for AttackTotals {
    fn default() -> Self {
        AttackTotals { closed_after: new_histogram(), counters: [0; AttackCounter::ALL.len()] }
    }
}

impl AttackTotals {
    /// The value of `counter`.
    pub fn counter(&self, counter: AttackCounter) -> u64 {
        self.counters[counter.index()]
    }
}

/// Histograms and counters: the contents of one interval or of a whole run.
#[derive(Clone, Debug)]
pub struct Totals {
    histograms: Vec<Histogram<u64>>,
    counters: [u64; Counter::ALL.len()],
    /// Attack kinds that ran (or were measured), in [`AttackKind::ALL`] order.
    attacks: BTreeMap<AttackKind, AttackTotals>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            histograms: Latency::ALL.iter().map(|_| new_histogram()).collect(),
            counters: [0; Counter::ALL.len()],
            attacks: BTreeMap::new(),
        }
    }
}

impl Totals {
    /// The histogram of `latency` (microseconds).
    pub fn histogram(&self, latency: Latency) -> &Histogram<u64> {
        &self.histograms[latency.index()]
    }

    /// The value of `counter`.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter.index()]
    }

    /// Records one latency sample (clamped to [`MAX_MICROS`]).
    pub fn record(&mut self, latency: Latency, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.histograms[latency.index()].saturating_record(us.min(MAX_MICROS));
    }

    /// Adds a whole histogram of `latency` samples. Exact: bucket counts add.
    pub fn add_histogram(&mut self, latency: Latency, h: &Histogram<u64>) -> Result<(), String> {
        self.histograms[latency.index()].add(h).map_err(|e| format!("{}: {e:?}", latency.name()))
    }

    /// Adds `n` to `counter` (only that counter; see [`Metrics::add`] for the error sum).
    pub fn add_count(&mut self, counter: Counter, n: u64) {
        self.counters[counter.index()] += n;
    }

    /// Adds everything in `other` to `self`, exactly.
    pub fn merge(&mut self, other: &Totals) -> Result<(), String> {
        for l in Latency::ALL {
            self.add_histogram(l, other.histogram(l))?;
        }
        for (mine, theirs) in self.counters.iter_mut().zip(other.counters) {
            *mine += theirs;
        }
        for (&kind, theirs) in &other.attacks {
            let mine = self.attack_mut(kind);
            mine.closed_after.add(&theirs.closed_after).map_err(|e| format!("attack {kind}: {e:?}"))?;
            for (m, t) in mine.counters.iter_mut().zip(theirs.counters) {
                *m += t;
            }
        }
        Ok(())
    }

    /// The metrics of attack `kind`, if it ran.
    pub fn attack(&self, kind: AttackKind) -> Option<&AttackTotals> {
        self.attacks.get(&kind)
    }

    /// The attack kinds that ran, in report order, with their metrics.
    pub fn attacks(&self) -> impl Iterator<Item = (AttackKind, &AttackTotals)> {
        self.attacks.iter().map(|(k, t)| (*k, t))
    }

    /// The metrics of attack `kind`, created empty if it has none yet.
    pub fn attack_mut(&mut self, kind: AttackKind) -> &mut AttackTotals {
        self.attacks.entry(kind).or_default()
    }

    /// The value of attack `kind`'s `counter` (0 if it did not run).
    pub fn attack_counter(&self, kind: AttackKind, counter: AttackCounter) -> u64 {
        self.attack(kind).map_or(0, |a| a.counter(counter))
    }

    /// Adds `n` to attack `kind`'s `counter`.
    pub fn add_attack_count(&mut self, kind: AttackKind, counter: AttackCounter, n: u64) {
        self.attack_mut(kind).counters[counter.index()] += n;
    }
}

/// The histograms being recorded into (swapped out whole by the [`Collector`]).
#[derive(Debug)]
struct Hists {
    latency: Vec<Histogram<u64>>,
    closed_after: BTreeMap<AttackKind, Histogram<u64>>,
}

impl Hists {
    fn new(kinds: &[AttackKind]) -> Hists {
        Hists {
            latency: Latency::ALL.iter().map(|_| new_histogram()).collect(),
            closed_after: kinds.iter().map(|&k| (k, new_histogram())).collect(),
        }
    }
}

/// The shared recording side: cheap to call from any task.
#[derive(Debug)]
pub struct Metrics {
    current: Mutex<Hists>,
    counters: [AtomicU64; Counter::ALL.len()],
    attack_counters: [[AtomicU64; AttackCounter::ALL.len()]; AttackKind::ALL.len()],
    /// Attack kinds reported even when nothing happened to them.
    attack_kinds: Vec<AttackKind>,
    active: AtomicI64,
    start: Instant,
}

impl Metrics {
    /// Fresh metrics; `start` is the run's time zero (intended offsets are measured from it).
    pub fn new(start: Instant) -> Self {
        Self::with_attacks(start, &[])
    }

    /// Fresh metrics that report the attack `kinds` (with zeros if nothing happens to them).
    pub fn with_attacks(start: Instant, kinds: &[AttackKind]) -> Self {
        let mut attack_kinds = kinds.to_vec();
        attack_kinds.sort();
        attack_kinds.dedup();
        Metrics {
            current: Mutex::new(Hists::new(&attack_kinds)),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            attack_counters: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            attack_kinds,
            active: AtomicI64::new(0),
            start,
        }
    }

    /// Adds `n` to attack `kind`'s `counter`.
    pub fn attack_add(&self, kind: AttackKind, counter: AttackCounter, n: u64) {
        self.attack_counters[kind.index()][counter.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to attack `kind`'s `counter`.
    pub fn attack_incr(&self, kind: AttackKind, counter: AttackCounter) {
        self.attack_add(kind, counter, 1);
    }

    /// Current value of attack `kind`'s `counter` since the start.
    pub fn attack_counter(&self, kind: AttackKind, counter: AttackCounter) -> u64 {
        self.attack_counters[kind.index()][counter.index()].load(Ordering::Relaxed)
    }

    /// Records that the authenticator closed a connection of attack `kind` `d` after it was
    /// made (and counts it in [`AttackCounter::ClosedByAuth`]).
    pub fn attack_closed(&self, kind: AttackKind, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(MAX_MICROS);
        {
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            current.closed_after.entry(kind).or_insert_with(new_histogram).saturating_record(us);
        }
        self.attack_incr(kind, AttackCounter::ClosedByAuth);
    }

    /// The run's time zero.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one latency sample.
    pub fn record(&self, latency: Latency, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(MAX_MICROS);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.latency[latency.index()].saturating_record(us);
    }

    /// Records `observed - intended` (zero if the observation precedes the intention), and
    /// returns it. `intended` is an absolute instant, usually `start() + op.at`.
    pub fn record_since(&self, latency: Latency, intended: Instant, observed: Instant) -> Duration {
        let d = observed.saturating_duration_since(intended);
        self.record(latency, d);
        d
    }

    /// Adds one to `counter` (and to [`Counter::Errors`] if it is an error).
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `n` to `counter` (and to [`Counter::Errors`] if it is an error).
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter.index()].fetch_add(n, Ordering::Relaxed);
        if counter.is_error() {
            self.counters[Counter::Errors.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Current value of `counter` since the start.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter.index()].load(Ordering::Relaxed)
    }

    /// Changes the number of joiners currently joined (a gauge, not a counter).
    pub fn add_active(&self, delta: i64) {
        self.active.fetch_add(delta, Ordering::Relaxed);
    }

    /// Joiners currently joined.
    pub fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }
}

/// What happened during one interval.
#[derive(Clone, Debug)]
pub struct Interval {
    /// Start, from the run's time zero.
    pub start: Duration,
    /// End, from the run's time zero.
    pub end: Duration,
    /// Samples recorded and counter increments during the interval.
    pub data: Totals,
    /// Joiners joined at the end of the interval.
    pub active: i64,
}

/// The reading side: cuts intervals out of [`Metrics`] and keeps the run's totals.
#[derive(Debug)]
pub struct Collector {
    totals: Totals,
    last_cut: Duration,
    last_counters: [u64; Counter::ALL.len()],
    last_attack_counters: [[u64; AttackCounter::ALL.len()]; AttackKind::ALL.len()],
    spare: Hists,
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            totals: Totals::default(),
            last_cut: Duration::ZERO,
            last_counters: [0; Counter::ALL.len()],
            last_attack_counters: [[0; AttackCounter::ALL.len()]; AttackKind::ALL.len()],
            spare: Hists::new(&[]),
        }
    }
}

impl Collector {
    /// A collector for a run that has not recorded anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the current interval at `now` and returns it; its contents are added to the
    /// totals. Samples recorded concurrently land in this interval or the next, never both.
    pub fn cut(&mut self, metrics: &Metrics, now: Instant) -> Interval {
        {
            let mut current = metrics.current.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *current, &mut self.spare);
        }
        let mut data = Totals::default();
        for (i, h) in self.spare.latency.iter_mut().enumerate() {
            data.histograms[i].add(&*h).expect("histograms with equal bounds add");
            h.reset();
        }
        for c in Counter::ALL {
            let value = metrics.counter(c);
            data.counters[c.index()] = value - self.last_counters[c.index()];
            self.last_counters[c.index()] = value;
        }
        for kind in AttackKind::ALL {
            let last = &mut self.last_attack_counters[kind.index()];
            let now: Vec<u64> = AttackCounter::ALL.iter().map(|&c| metrics.attack_counter(kind, c)).collect();
            let hist = self.spare.closed_after.get_mut(&kind);
            let ran = metrics.attack_kinds.contains(&kind) || now.iter().any(|&v| v > 0) || hist.is_some();
            if !ran {
                continue;
            }
            let a = data.attack_mut(kind);
            for c in AttackCounter::ALL {
                a.counters[c.index()] = now[c.index()] - last[c.index()];
                last[c.index()] = now[c.index()];
            }
            if let Some(h) = hist {
                a.closed_after.add(&*h).expect("histograms with equal bounds add");
                h.reset();
            }
        }
        self.totals.merge(&data).expect("histograms with equal bounds add");
        let end = now.saturating_duration_since(metrics.start()).max(self.last_cut);
        let interval = Interval { start: self.last_cut, end, data, active: metrics.active() };
        self.last_cut = end;
        interval
    }

    /// Everything cut so far.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn names_round_trip_and_are_unique() {
        let names: Vec<&str> = Metric::all_names().collect();
        let unique: std::collections::HashSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        for name in names {
            assert_eq!(Metric::from_name(name).unwrap().name(), name);
        }
        assert_eq!(Metric::from_name("join_complete"), Some(Metric::Latency(Latency::JoinComplete)));
        assert_eq!(Metric::from_name("errors"), Some(Metric::Counter(Counter::Errors)));
        assert_eq!(Metric::from_name("nope"), None);
        for (i, l) in Latency::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
        }
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn latency_is_measured_from_the_intended_start() {
        let t0 = Instant::now();
        let m = Metrics::new(t0);
        let intended = t0 + Duration::from_millis(100);
        // The operation was started late (at 130 ms) and finished at 150 ms: 50 ms, not 20 ms.
        let d = m.record_since(Latency::JoinComplete, intended, t0 + Duration::from_millis(150));
        assert_eq!(d, Duration::from_millis(50));
        // An observation before the intended start (clock granularity) counts as zero.
        m.record_since(Latency::TcpConnect, intended, t0);
        let mut c = Collector::new();
        let i = c.cut(&m, t0 + Duration::from_secs(1));
        let h = i.data.histogram(Latency::JoinComplete);
        assert_eq!(h.len(), 1);
        assert!(h.equivalent(h.max(), 50_000));
        assert_eq!(i.data.histogram(Latency::TcpConnect).max(), 0);
    }

    #[test]
    fn errors_sum_every_error_counter() {
        let m = Metrics::new(Instant::now());
        m.incr(Counter::Refused);
        m.add(Counter::TimedOut, 3);
        m.incr(Counter::Joined);
        m.add(Counter::MessagesLost, 5);
        m.incr(Counter::AttackBanned);
        assert_eq!(m.counter(Counter::Errors), 4);
        assert_eq!(m.counter(Counter::Joined), 1);
    }

    #[test]
    fn intervals_hold_deltas_and_totals_hold_everything() {
        let t0 = Instant::now();
        let m = Metrics::new(t0);
        let mut c = Collector::new();
        m.record(Latency::JoinComplete, Duration::from_millis(5));
        m.incr(Counter::Joined);
        m.add_active(1);
        let first = c.cut(&m, t0 + Duration::from_secs(1));
        m.record(Latency::JoinComplete, Duration::from_millis(7));
        m.record(Latency::JoinComplete, Duration::from_millis(9));
        m.add(Counter::Joined, 2);
        m.add_active(2);
        let second = c.cut(&m, t0 + Duration::from_secs(2));
        let third = c.cut(&m, t0 + Duration::from_secs(3));

        assert_eq!((first.start, first.end), (Duration::ZERO, Duration::from_secs(1)));
        assert_eq!((second.start, second.end), (Duration::from_secs(1), Duration::from_secs(2)));
        assert_eq!(first.data.histogram(Latency::JoinComplete).len(), 1);
        assert_eq!(second.data.histogram(Latency::JoinComplete).len(), 2);
        assert_eq!(third.data.histogram(Latency::JoinComplete).len(), 0);
        assert_eq!(first.data.counter(Counter::Joined), 1);
        assert_eq!(second.data.counter(Counter::Joined), 2);
        assert_eq!(third.data.counter(Counter::Joined), 0);
        assert_eq!((first.active, second.active), (1, 3));
        let t = c.totals();
        assert_eq!(t.histogram(Latency::JoinComplete).len(), 3);
        assert_eq!(t.counter(Counter::Joined), 3);
        let max = t.histogram(Latency::JoinComplete).max();
        assert!(t.histogram(Latency::JoinComplete).equivalent(max, 9_000));
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let t0 = Instant::now();
        let m = Arc::new(Metrics::new(t0));
        let mut c = Collector::new();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        m.record(Latency::MessageDelivery, Duration::from_micros(t * 1000 + i % 997));
                        m.incr(Counter::MessagesDelivered);
                    }
                })
            })
            .collect();
        let mut seen = 0;
        while !threads.iter().all(|t| t.is_finished()) {
            seen += c.cut(&m, Instant::now()).data.histogram(Latency::MessageDelivery).len();
        }
        for t in threads {
            t.join().unwrap();
        }
        seen += c.cut(&m, Instant::now()).data.histogram(Latency::MessageDelivery).len();
        assert_eq!(seen, 40_000);
        assert_eq!(c.totals().histogram(Latency::MessageDelivery).len(), 40_000);
        assert_eq!(c.totals().counter(Counter::MessagesDelivered), 40_000);
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut t = Totals::default();
        t.record(Latency::Convergence, Duration::from_secs(10 * 3600));
        let h = t.histogram(Latency::Convergence);
        assert_eq!(h.len(), 1);
        assert!(h.equivalent(h.max(), MAX_MICROS));
    }
}
