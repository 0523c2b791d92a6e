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

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

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
    /// How late loadgen started an operation compared with the plan.
    ScheduleLag,
}

impl Latency {
    /// Every latency, in report order.
    pub const ALL: [Latency; 9] = [
        Latency::TcpConnect,
        Latency::BannedStatus,
        Latency::AuthResult,
        Latency::FirstList,
        Latency::JoinComplete,
        Latency::Convergence,
        Latency::HeartbeatInterval,
        Latency::MessageDelivery,
        Latency::ScheduleLag,
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
            Latency::ScheduleLag => "schedule_lag",
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
    /// Sum of every error counter above; the default `--fail-on` rule is `errors>0`.
    Errors,
    /// Graceful leaves performed.
    Left,
    /// Crash-style drops performed.
    Dropped,
    /// Messages sent (one per recipient of a broadcast).
    MessagesSent,
    /// Messages echoed back by their recipient.
    MessagesDelivered,
    /// Messages that failed or were never echoed.
    MessagesLost,
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
}

impl Counter {
    /// Every counter, in report order.
    pub const ALL: [Counter; 20] = [
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
        Counter::Dropped,
        Counter::MessagesSent,
        Counter::MessagesDelivered,
        Counter::MessagesLost,
        Counter::Attacks,
        Counter::AttackRejected,
        Counter::AttackBanned,
        Counter::Skipped,
        Counter::EventsLagged,
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
            Counter::Dropped => "dropped",
            Counter::MessagesSent => "messages_sent",
            Counter::MessagesDelivered => "messages_delivered",
            Counter::MessagesLost => "messages_lost",
            Counter::Attacks => "attacks",
            Counter::AttackRejected => "attack_rejected",
            Counter::AttackBanned => "attack_banned",
            Counter::Skipped => "skipped",
            Counter::EventsLagged => "events_lagged",
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
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Either kind of metric, as named in files and rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A histogram.
    Latency(Latency),
    /// A counter.
    Counter(Counter),
}

impl Metric {
    /// Looks a metric up by its stable name.
    pub fn from_name(name: &str) -> Option<Metric> {
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
        }
    }

    /// Every stable name, for error messages.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        Latency::ALL.iter().map(|l| l.name()).chain(Counter::ALL.iter().map(|c| c.name()))
    }
}

/// An empty histogram with the crate's fixed bounds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG).expect("constant histogram bounds are valid")
}

/// Histograms and counters: the contents of one interval or of a whole run.
#[derive(Clone, Debug)]
pub struct Totals {
    histograms: Vec<Histogram<u64>>,
    counters: [u64; Counter::ALL.len()],
}

impl Default for Totals {
    fn default() -> Self {
        Totals { histograms: Latency::ALL.iter().map(|_| new_histogram()).collect(), counters: [0; Counter::ALL.len()] }
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
        Ok(())
    }
}

/// The shared recording side: cheap to call from any task.
#[derive(Debug)]
pub struct Metrics {
    current: Mutex<Vec<Histogram<u64>>>,
    counters: [AtomicU64; Counter::ALL.len()],
    active: AtomicI64,
    start: Instant,
}

impl Metrics {
    /// Fresh metrics; `start` is the run's time zero (intended offsets are measured from it).
    pub fn new(start: Instant) -> Self {
        Metrics {
            current: Mutex::new(Latency::ALL.iter().map(|_| new_histogram()).collect()),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            active: AtomicI64::new(0),
            start,
        }
    }

    /// The run's time zero.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one latency sample.
    pub fn record(&self, latency: Latency, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).min(MAX_MICROS);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current[latency.index()].saturating_record(us);
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
    spare: Vec<Histogram<u64>>,
}

impl Default for Collector {
    fn default() -> Self {
        Collector {
            totals: Totals::default(),
            last_cut: Duration::ZERO,
            last_counters: [0; Counter::ALL.len()],
            spare: Latency::ALL.iter().map(|_| new_histogram()).collect(),
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
        for (i, h) in self.spare.iter_mut().enumerate() {
            data.histograms[i].add(&*h).expect("histograms with equal bounds add");
            h.reset();
        }
        for c in Counter::ALL {
            let value = metrics.counter(c);
            data.counters[c.index()] = value - self.last_counters[c.index()];
            self.last_counters[c.index()] = value;
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
