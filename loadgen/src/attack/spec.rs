//! The `--attack` grammar: what hostile traffic a run adds, how much, and for how long.
//!
//! `KIND:AMOUNT[,KEY=VALUE]...`, e.g. `silent:200/s,hold=30s`, `oversize:50/s,bytes=1MiB`,
//! `dist-chatter:10,every=10ms`, `reconnect-storm:8,for=5s`.
//!
//! - AMOUNT is a rate (`200/s`, `600/m`: new hostile connections arriving as a Poisson
//!   process, as `pyile::units::EventRate` reads it) or a count (`1500`: that many
//!   connections, opened evenly over `ramp`; for `reconnect-storm`, that many loops each
//!   connecting and closing as fast as the authenticator lets them).
//! - Every value is read by `pyile::units`: durations (`Dur`), sizes (`ByteSize`).
//!
//! Keys (each at most once):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `hold` | a connection closes itself this long after connecting | held until the authenticator closes it or the run ends |
//! | `after` | the attack starts this long after the run | `0s` |
//! | `for` | connections start only during this long | until the run ends |
//! | `ramp` | count mode: the connections open evenly over this long | `1s` |
//! | `max` | connections of this kind open at once (more are skipped and counted) | the count; for a rate, rate × (`hold` or the window), at most 4,096 |
//! | `ips` | source addresses of this kind, from `--attack-source-ips` | 4 |
//! | `every` | `slowloris`: gap between two bytes; `dist-chatter`: gap between two values | 2s; 100ms |
//! | `bytes` | `oversize`: size of the unfinished value; `garbage`: bytes of garbage | 1MiB; 64B |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use pyile::units::{ByteSize, Dur, EventRate};

/// What a hostile connection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackKind {
    /// Connects, sends nothing, holds the connection.
    Silent,
    /// Sends the start of a password value one byte every `every`.
    Slowloris,
    /// Sends an unfinished JSON value of `bytes` bytes, then holds.
    Oversize,
    /// Sends `bytes` bytes that are not JSON, then holds.
    Garbage,
    /// Sends the right password, never its `peer_address`; holds.
    HalfHandshake,
    /// Completes the auth-socket handshake, never connects its distribution socket; holds.
    NoDist,
    /// Joins as a real member and keeps writing `{"<3": true}` on its distribution socket.
    DistChatter,
    /// With the right password, announces an honest member's peer address; if the
    /// authenticator goes on, connects its distribution socket and stays as a member.
    SpoofAddress,
    /// Connects and closes (with a reset) as fast as allowed.
    ReconnectStorm,
    /// A handshake with a wrong password (the ban flood of `--wrong-password-rate`).
    WrongPassword,
}

impl AttackKind {
    /// Every kind, in report order.
    pub const ALL: [AttackKind; 10] = [
        AttackKind::Silent,
        AttackKind::Slowloris,
        AttackKind::Oversize,
        AttackKind::Garbage,
        AttackKind::HalfHandshake,
        AttackKind::NoDist,
        AttackKind::DistChatter,
        AttackKind::SpoofAddress,
        AttackKind::ReconnectStorm,
        AttackKind::WrongPassword,
    ];

    /// The name in `--attack` (`half-handshake`).
    pub fn flag_name(self) -> &'static str {
        match self {
            AttackKind::Silent => "silent",
            AttackKind::Slowloris => "slowloris",
            AttackKind::Oversize => "oversize",
            AttackKind::Garbage => "garbage",
            AttackKind::HalfHandshake => "half-handshake",
            AttackKind::NoDist => "no-dist",
            AttackKind::DistChatter => "dist-chatter",
            AttackKind::SpoofAddress => "spoof-address",
            AttackKind::ReconnectStorm => "reconnect-storm",
            AttackKind::WrongPassword => "wrong-password",
        }
    }

    /// The name in metric names (`attack.half_handshake.open_at_end`).
    pub fn metric_name(self) -> &'static str {
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
            AttackKind::WrongPassword => "wrong_password",
        }
    }

    /// Position in [`AttackKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Looks a kind up by its flag or metric name.
    pub fn from_name(name: &str) -> Option<AttackKind> {
        AttackKind::ALL.into_iter().find(|k| k.flag_name() == name || k.metric_name() == name)
    }

    /// Descriptors (and source ports) one attacker of this kind holds: its auth connection,
    /// plus a distribution connection and a peer listener for a member.
    pub fn fds_per_attacker(self) -> u64 {
        match self {
            AttackKind::DistChatter => 3,
            AttackKind::SpoofAddress => 2,
            _ => 1,
        }
    }

    fn default_every(self) -> Option<Duration> {
        match self {
            AttackKind::Slowloris => Some(Duration::from_secs(2)),
            AttackKind::DistChatter => Some(Duration::from_millis(100)),
            _ => None,
        }
    }

    fn default_bytes(self) -> Option<u64> {
        match self {
            AttackKind::Oversize => Some(1 << 20),
            AttackKind::Garbage => Some(64),
            _ => None,
        }
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag_name())
    }
}

/// How much of an attack.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    /// New connections per second (Poisson arrivals).
    Rate(EventRate),
    /// This many connections (or, for `reconnect-storm`, loops), opened evenly over `ramp`.
    Count(u32),
}

/// Default `ips` of a kind.
pub const DEFAULT_IPS: u32 = 4;
/// Largest default `max` for a rate.
pub const DEFAULT_MAX_FOR_RATE: u32 = 4096;
/// Largest `max`, `ips` or count one `--attack` may ask for.
pub const MAX_CONNECTIONS: u32 = 1_000_000;
/// Largest `bytes`.
pub const MAX_BYTES: u64 = 1 << 30;
/// Shortest `every`.
pub const MIN_EVERY: Duration = Duration::from_millis(1);

/// One parsed `--attack`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackSpec {
    text: String,
    /// What the connections do.
    pub kind: AttackKind,
    /// How many.
    pub amount: Amount,
    /// Each connection closes itself this long after connecting (`None`: it is held).
    pub hold: Option<Duration>,
    /// Start of the attack, from the start of the run.
    pub after: Duration,
    /// Length of the window in which connections start (`None`: to the end of the run).
    pub window: Option<Duration>,
    /// Count mode: connections open evenly over this long.
    pub ramp: Duration,
    /// Bound on connections of this attack open at once (`None`: the default, see
    /// [`AttackSpec::concurrency`]).
    pub max: Option<u32>,
    /// Source addresses this attack uses.
    pub ips: u32,
    /// `slowloris` / `dist-chatter`: the gap between two writes.
    pub every: Duration,
    /// `oversize` / `garbage`: how many bytes to send.
    pub bytes: u64,
}

impl AttackSpec {
    /// The flag as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// When its connections start, as offsets of a run that ends at `run_end`: from `after`
    /// for `for` (or to the end of the run).
    pub fn window_in(&self, run_end: Duration) -> (Duration, Duration) {
        let from = self.after;
        let to = self.window.map_or(run_end, |w| (from + w).min(run_end));
        (from, to.max(from))
    }

    /// The bound on connections open at once, for an attack window of `window`.
    pub fn concurrency(&self, window: Duration) -> u32 {
        if let Some(m) = self.max {
            return m;
        }
        match self.amount {
            Amount::Count(n) => n,
            Amount::Rate(r) if self.kind == AttackKind::ReconnectStorm => (r.per_sec().ceil() as u32).clamp(1, 64),
            Amount::Rate(r) => {
                let span = self.hold.unwrap_or(window).min(window).as_secs_f64().max(1.0);
                ((r.per_sec() * span).ceil() as u32).clamp(1, DEFAULT_MAX_FOR_RATE)
            }
        }
    }
}

impl fmt::Display for AttackSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn kinds_list() -> String {
    AttackKind::ALL.iter().map(|k| k.flag_name()).collect::<Vec<_>>().join(", ")
}

impl FromStr for AttackSpec {
    type Err = String;

    /// Parses `KIND:AMOUNT[,KEY=VALUE]...`; an error names the part that is wrong.
    fn from_str(text: &str) -> Result<AttackSpec, String> {
        let text = text.trim();
        let mut parts = text.split(',').map(str::trim);
        let head = parts.next().unwrap_or_default();
        let (kind_name, amount) = head
            .split_once(':')
            .ok_or_else(|| format!("{head:?}: write KIND:AMOUNT, e.g. silent:200/s or dist-chatter:10"))?;
        let kind = AttackKind::from_name(kind_name.trim())
            .ok_or_else(|| format!("unknown attack kind {:?}; known: {}", kind_name.trim(), kinds_list()))?;
        let amount = amount.trim();
        let amount = if amount.contains('/') {
            let r: EventRate = amount.parse().map_err(|e| format!("{kind}: {e}"))?;
            if r.is_zero() {
                return Err(format!("{kind}: the rate {amount:?} must be more than 0"));
            }
            Amount::Rate(r)
        } else {
            match amount.parse::<u32>() {
                Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => Amount::Count(n),
                _ => {
                    return Err(format!(
                        "{kind}: amount {amount:?} is neither a rate (200/s) nor a count from 1 to {MAX_CONNECTIONS}"
                    ));
                }
            }
        };
        let mut spec = AttackSpec {
            text: text.to_string(),
            kind,
            amount,
            hold: None,
            after: Duration::ZERO,
            window: None,
            ramp: Duration::from_secs(1),
            max: None,
            ips: DEFAULT_IPS,
            every: kind.default_every().unwrap_or(Duration::ZERO),
            bytes: kind.default_bytes().unwrap_or(0),
        };
        let mut seen: Vec<&str> = Vec::new();
        for part in parts {
            let (key, value) =
                part.split_once('=').ok_or_else(|| format!("{kind}: option {part:?} is not KEY=VALUE"))?;
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(format!("{kind}: option {key} given twice"));
            }
            seen.push(key);
            let dur = || value.parse::<Dur>().map(Dur::get).map_err(|e| format!("{kind}: {key}: {e}"));
            let count = |lo: u32| match value.parse::<u32>() {
                Ok(n) if (lo..=MAX_CONNECTIONS).contains(&n) => Ok(n),
                _ => Err(format!("{kind}: {key}={value:?} must be a whole number from {lo} to {MAX_CONNECTIONS}")),
            };
            match key {
                "hold" if kind == AttackKind::ReconnectStorm => {
                    return Err(format!("{kind} closes every connection at once: it takes no hold="));
                }
                "hold" => spec.hold = Some(dur()?),
                "after" => spec.after = dur()?,
                "for" => {
                    spec.window = Some(dur()?)
                        .filter(|d| !d.is_zero())
                        .map_or_else(|| Err(format!("{kind}: for= must be more than 0s")), |d| Ok(Some(d)))?
                }
                "ramp" if matches!(spec.amount, Amount::Rate(_)) => {
                    return Err(format!("{kind}: ramp= spreads a count; a rate ({amount:?}) is already spread"));
                }
                "ramp" => spec.ramp = dur()?,
                "max" => spec.max = Some(count(1)?),
                "ips" => spec.ips = count(1)?,
                "every" => {
                    if kind.default_every().is_none() {
                        return Err(format!("{kind} takes no every= (only slowloris and dist-chatter do)"));
                    }
                    spec.every = dur()?;
                    if spec.every < MIN_EVERY {
                        return Err(format!("{kind}: every= must be at least 1ms"));
                    }
                }
                "bytes" => {
                    if kind.default_bytes().is_none() {
                        return Err(format!("{kind} takes no bytes= (only oversize and garbage do)"));
                    }
                    let b: ByteSize = value.parse().map_err(|e| format!("{kind}: bytes: {e}"))?;
                    if b.bytes() == 0 || b.bytes() > MAX_BYTES {
                        return Err(format!("{kind}: bytes={value} must be from 1B to 1GiB"));
                    }
                    spec.bytes = b.bytes();
                }
                _ => {
                    return Err(format!(
                        "{kind}: unknown option {key:?} (hold, after, for, ramp, max, ips, every, bytes)"
                    ));
                }
            }
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> AttackSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<AttackSpec>().unwrap_err()
    }

    #[test]
    fn the_examples_parse() {
        let s = spec("silent:200/s,hold=30s");
        assert_eq!(s.kind, AttackKind::Silent);
        assert_eq!(s.amount, Amount::Rate(EventRate::per_second(200.0).unwrap()));
        assert_eq!(s.hold, Some(Duration::from_secs(30)));
        assert_eq!(s.ips, DEFAULT_IPS);
        assert_eq!(s.text(), "silent:200/s,hold=30s");
        // 200/s held 30 s in a 60 s window: 6,000 at once, capped at the default bound.
        assert_eq!(s.concurrency(Duration::from_secs(60)), DEFAULT_MAX_FOR_RATE);
        let s = spec("oversize:50/s,bytes=1MiB");
        assert_eq!((s.kind, s.bytes), (AttackKind::Oversize, 1 << 20));
        assert_eq!(s.concurrency(Duration::from_secs(10)), 500);
        let s = spec("dist-chatter:10,every=10ms");
        assert_eq!(
            (s.kind, s.amount, s.every),
            (AttackKind::DistChatter, Amount::Count(10), Duration::from_millis(10))
        );
        assert_eq!(s.concurrency(Duration::from_secs(10)), 10);
        let s = spec(" silent:3000 , ips=30 , max=2000 , after=1.5s , for=10s , ramp=500ms ");
        assert_eq!(s.amount, Amount::Count(3000));
        assert_eq!((s.ips, s.max, s.after), (30, Some(2000), Duration::from_millis(1500)));
        assert_eq!((s.window, s.ramp), (Some(Duration::from_secs(10)), Duration::from_millis(500)));
        assert_eq!(s.concurrency(Duration::from_secs(60)), 2000);
    }

    #[test]
    fn every_kind_parses_by_both_names_with_its_defaults() {
        for k in AttackKind::ALL {
            assert_eq!(spec(&format!("{}:1", k.flag_name())).kind, k);
            assert_eq!(spec(&format!("{}:2/m", k.metric_name())).kind, k);
            assert_eq!(AttackKind::ALL[k.index()], k);
        }
        assert_eq!(spec("slowloris:5").every, Duration::from_secs(2));
        assert_eq!(spec("dist-chatter:5").every, Duration::from_millis(100));
        assert_eq!(spec("garbage:5").bytes, 64);
        assert_eq!(spec("oversize:5,bytes=1.5MB").bytes, 1_500_000);
        assert_eq!(spec("reconnect-storm:100/s").concurrency(Duration::from_secs(5)), 64);
        assert_eq!(spec("reconnect-storm:8").concurrency(Duration::from_secs(5)), 8);
    }

    #[test]
    fn errors_name_the_problem() {
        for (input, needle) in [
            ("silent", "write KIND:AMOUNT"),
            ("sleepy:10", "unknown attack kind \"sleepy\"; known: silent, slowloris"),
            ("silent:lots", "neither a rate (200/s) nor a count"),
            ("silent:0", "neither a rate"),
            ("silent:-3", "neither a rate"),
            ("silent:0/s", "must be more than 0"),
            ("silent:10/fortnight", "invalid event rate \"10/fortnight\""),
            ("silent:10,hold=30", "silent: hold: invalid duration \"30\": missing unit"),
            ("silent:10,hold", "option \"hold\" is not KEY=VALUE"),
            ("silent:10,hold=1s,hold=2s", "option hold given twice"),
            ("silent:10,colour=red", "unknown option \"colour\""),
            ("silent:10,every=1s", "silent takes no every="),
            ("silent:10,bytes=1MiB", "silent takes no bytes="),
            ("oversize:10,bytes=1M", "oversize: bytes: invalid byte size \"1M\": unknown unit"),
            ("oversize:10,bytes=0B", "from 1B to 1GiB"),
            ("oversize:10,bytes=2GiB", "from 1B to 1GiB"),
            ("slowloris:10,every=0s", "at least 1ms"),
            ("silent:10/s,ramp=1s", "ramp= spreads a count"),
            ("silent:10,max=0", "max=\"0\" must be a whole number from 1"),
            ("silent:10,ips=many", "ips=\"many\" must be a whole number"),
            ("silent:10,for=0s", "for= must be more than 0s"),
            ("reconnect-storm:10,hold=1s", "takes no hold="),
        ] {
            let e = err(input);
            assert!(e.contains(needle), "{input}: {e:?} lacks {needle:?}");
        }
    }
}
