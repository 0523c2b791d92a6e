//! The command line: `loadgen [run flags]`, `loadgen merge LOG… [--out CSV] [--html FILE]` and
//! `loadgen report CSV|LOG… [--html FILE]`.
//!
//! Only parsing and the checks that need nothing but the arguments live here; turning the
//! arguments into a plan, sources and reports is the binary's wiring. Durations take a unit
//! (`30s`, `500ms`, `2m`, `1m30s`) and rates are per second unless written `/m` or `/h`: both
//! are parsed by `pyile::units`, like the `pyile` binary's flags and the simulator's scenarios,
//! and so is the password source.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pyile::impostor::ImpostorKind;
use pyile::units::{EventRate, parse_duration, resolve_password};

use crate::attack::AttackSpec;
use crate::error::Error;
use crate::plan::{Arrival, Shard};
use crate::rules::FailOn;
use crate::sources::SourceRange;

/// Many real Pyile joiners against one live authenticator, with honest latency histograms.
///
/// Joins arrive on a fixed schedule (an open model): latencies are measured from each
/// operation's intended start, so a slow authenticator or a lagging generator shows up in the
/// numbers. Exit status: 0 when every --fail-on rule holds, 1 when one is violated, 2 on error
/// (a target that fails the handshake checked before the run, or a run stopped because every
/// join failed and nobody was a member).
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// `merge`, `report`, `floor`, or nothing to run a load test.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Load-test flags (when no subcommand is given).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Add the histograms of several --hdr-log files exactly (shards of one run, or runs of
    /// one benchmark), print the summary, write the CSV and apply --fail-on.
    Merge(MergeArgs),
    /// Write the HTML report of an existing run: from its final CSV (X.csv, with
    /// X.intervals.csv and X.csv.params.json beside it) or from its --hdr-log interval
    /// log(s) (several logs are added like `merge` does; the whole percentile distribution).
    Report(ReportArgs),
    /// Measure this machine's floor: the CPU one small value costs over loopback TCP with no
    /// protocol, written to every member connection every interval (the authenticator's
    /// distribution) and read by follower processes (loadgen's joiners). Prints both sides'
    /// CPU per value: what no protocol code can take away here.
    Floor(FloorArgs),
}

/// Flags of `loadgen floor`.
#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Member connections in all.
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// Follower processes the connections are split over (like --shard).
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    /// How often a value goes to every member (the distribution interval).
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Bytes in each value (a one-join delta is 86).
    #[arg(long, default_value_t = 86)]
    pub bytes: usize,
    /// Sending before the measured window opens.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,
    /// The measured window.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub window: Duration,
    /// No status line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Internal: run as a follower of the sender at this address.
    #[arg(long, hide = true, requires = "conns", value_name = "ADDR")]
    pub follow: Option<std::net::SocketAddr>,
    /// Internal: the follower's connections.
    #[arg(long, hide = true)]
    pub conns: Option<usize>,
}

impl FloorArgs {
    /// The measurement these flags ask for.
    pub fn config(&self) -> crate::floor::FloorConfig {
        crate::floor::FloorConfig {
            members: self.members,
            shards: self.shards,
            interval: self.interval,
            bytes: self.bytes,
            warmup: self.warmup,
            window: self.window,
        }
    }
}

/// Flags of `loadgen report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// One final CSV (`--out` of a run or a merge), or one or more interval logs.
    #[arg(required = true, value_name = "CSV|LOG")]
    pub inputs: Vec<PathBuf>,

    /// Where to write the page [default: the first input with the extension .html].
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl ReportArgs {
    /// The page's path.
    pub fn html_path(&self) -> PathBuf {
        self.html.clone().unwrap_or_else(|| self.inputs[0].with_extension("html"))
    }

    /// Whether the input is a final CSV (else interval logs).
    pub fn is_csv(&self) -> bool {
        self.inputs.len() == 1 && self.inputs[0].extension().is_some_and(|e| e == "csv")
    }
}

/// Flags of a load-test run.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Joiners alive at once after the arrival phase (in the whole plan, across shards).
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub peers: u32,

    /// The authenticator's auth address (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:4702", value_parser = parse_target, value_name = "ADDR")]
    pub target: SocketAddr,

    /// The password, read from FILE (a trailing newline is ignored). Wins over --password.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// The password itself (visible in the process list: prefer --password-file or the
    /// environment variable).
    #[arg(long, env = "PYILE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Joins per second during the arrival phase, evenly spaced [default: 100/s].
    #[arg(long, value_name = "J/s", conflicts_with = "ramp")]
    pub rate: Option<EventRate>,

    /// Spread all --peers joins evenly over this long instead of giving --rate.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub ramp: Option<Duration>,

    /// After the arrival phase, keep every joiner joined and heartbeating this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub hold: Duration,

    /// Churn during the hold phase: departures per second, each replaced at once by a new
    /// joiner from the same source address. Half are graceful leaves (the joiner closes every
    /// socket; the authenticator sees the close; counted in `left`), half are crashes (the
    /// joiner hangs: it stops reading and answering heartbeats but keeps its auth and
    /// distribution connections and peer listener open, with no FIN or RST, so only the
    /// authenticator's heartbeat timeout can notice; counted in `crashed`). For each crash,
    /// `crash_detection` is the time from the silence to the first member list without its
    /// address taken by another joiner of this process; a crash still listed after
    /// --crash-bound is `crash_undetected` (an error), one that could not be judged (no
    /// other joiner of ours held the address, or the run was stopped) `crash_unobserved`.
    #[arg(long, default_value = "0", value_name = "L/s")]
    pub churn: EventRate,

    /// How long a crashed joiner's sockets stay open waiting for the authenticator to remove
    /// it; then they are closed and the crash counts as `crash_undetected`. At the end of the
    /// plan the run waits for crashes still within their bound. [default: 3 x
    /// --heartbeat-timeout]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub crash_bound: Option<Duration>,

    /// Broadcasts per second during the hold phase, from random loadgen joiners to every
    /// member.
    #[arg(long, default_value = "0", value_name = "M/s")]
    pub broadcast_rate: EventRate,

    /// Handshakes with a wrong password per second for the whole run, from dedicated
    /// attacker addresses (a ban flood that must not touch the joiners). Counted in
    /// attacks/attack_rejected/attack_banned; `--attack wrong-password:W/s` is the same flood
    /// from --attack-source-ips, counted as attack.wrong_password.*.
    #[arg(long, default_value = "0", value_name = "W/s")]
    pub wrong_password_rate: EventRate,

    /// Hostile traffic beside the honest joiners (repeatable): KIND:AMOUNT[,KEY=VALUE]...,
    /// e.g. 'silent:200/s,hold=30s', 'oversize:50/s,bytes=1MiB', 'dist-chatter:10,every=10ms'.
    ///
    /// KIND is what each connection does: silent (connects, sends nothing, holds),
    /// slowloris (the start of a password, one byte every `every`), oversize (an unfinished
    /// JSON value of `bytes`, then holds), garbage (`bytes` of invalid bytes, then holds),
    /// half-handshake (right password, never sends peer_address), no-dist (the whole
    /// auth-socket handshake, never connects its distribution socket), dist-chatter (a real
    /// member writing {"<3": true} on its distribution socket every `every`), spoof-address
    /// (right password, announces an honest member's peer address, and joins there if let),
    /// reconnect-storm (connect and reset as fast as allowed), wrong-password.
    ///
    /// AMOUNT is a rate (200/s, 600/m: Poisson arrivals) or a count (1500: that many
    /// connections, opened evenly over `ramp`; for reconnect-storm, that many loops).
    ///
    /// KEYs: hold=DURATION (each connection closes itself after this; default: held until
    /// the authenticator closes it or the run ends), after=DURATION (start; default 0s),
    /// for=DURATION (connections start only this long; default: to the end), ramp=DURATION
    /// (a count's spread; default 1s), max=N (open at once, more are skipped; default: the
    /// count, or rate x hold up to 4096), ips=N (source addresses, from
    /// --attack-source-ips; default 4), every=DURATION (slowloris 2s, dist-chatter 100ms),
    /// bytes=SIZE (oversize 1MiB, garbage 64B; B, KB, KiB, MB, MiB, GB, GiB).
    ///
    /// Measured per kind apart from the honest joiners, as `attack.<kind>.<metric>` rows of
    /// the CSV (attempted, connect_failed, skipped, closed_by_auth, closed_after [a
    /// histogram: connect to closed by the authenticator], closed_by_us, open_at_end,
    /// failed, sent_bytes, received_bytes, admitted, rejected, banned, values_written,
    /// lists_received, victims_evicted), X.attacks.csv (one row per kind) and --fail-on
    /// ('attack.silent.open_at_end>0').
    #[arg(long = "attack", value_name = "KIND:AMOUNT[,KEY=VALUE]...")]
    pub attacks: Vec<AttackSpec>,

    /// Source addresses of --attack: each --attack takes its `ips` from here in order, so
    /// attacks share no address with each other or with the joiners. [default:
    /// 127.0.8.1-127.0.15.254 for an IPv4 loopback target; required otherwise]
    #[arg(long, value_name = "RANGE", value_parser = parse_sources)]
    pub attack_source_ips: Option<SourceRange>,

    /// How many addresses, taken from the end of --source-ips, are the attackers'.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub attacker_ips: usize,

    /// Source addresses to spread joiners over: A-B, A/prefix, A, or a comma list.
    /// Against a loopback target every one must be loopback. [default: 127.0.1.1-127.0.3.254
    /// for an IPv4 loopback target, ::1 for IPv6 loopback, the system's choice otherwise]
    #[arg(long, value_name = "RANGE", value_parser = parse_sources)]
    pub source_ips: Option<SourceRange>,

    /// Seed of every random choice in the plan (same seed, same plan).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Run only shard I of N (zero-based) of the plan; the N shards together run the whole
    /// plan, with disjoint joiners and source addresses.
    #[arg(long, default_value = "0/1", value_name = "I/N")]
    pub shard: Shard,

    /// Write the final CSV here; X.intervals.csv and X.csv.params.json go beside it.
    #[arg(long, value_name = "CSV")]
    pub out: Option<PathBuf>,

    /// Length of one reporting interval (per-interval CSV rows, interval-log entries,
    /// progress updates).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,

    /// Write a self-contained HTML report of the run here (parameters, latency percentiles
    /// per interval for each operation, throughput and errors over time, the percentile
    /// distribution, schedule lag, attacks). `loadgen report` makes one from existing files.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Write an HdrHistogram interval log here (input of `loadgen merge`).
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<PathBuf>,

    /// Fail (exit 1) if this holds at the end, e.g. 'join_complete.p99>50ms', 'timed_out>=1'.
    /// Repeatable; 'none' drops the default. A rule is METRIC[.STAT] OP VALUE: METRIC is a
    /// row name of the CSV, STAT one of count min max mean p50 p90 p95 p99 p999 p9999 (for
    /// latencies only), OP one of > >= < <= == !=, and a latency VALUE takes a unit (50ms).
    #[arg(long, value_name = "RULE", default_value = "errors>0")]
    pub fail_on: Vec<FailOn>,

    /// Start the plan's time zero at this wall-clock time (seconds since the Unix epoch), so
    /// that shards on several machines follow one timetable; at most an hour ahead.
    /// [default: now]
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub start_at: Option<f64>,

    /// Hide the progress display and the notes before the run (as `sim --quiet`); the summary,
    /// warnings, errors and violated rules are still printed.
    #[arg(long, short)]
    pub quiet: bool,

    /// A joiner that hears no heartbeat for this long counts its authenticator as lost.
    #[arg(long, default_value = "7s", value_parser = parse_duration, value_name = "DURATION")]
    pub heartbeat_timeout: Duration,

    /// Bound on one whole handshake, from connecting until the distribution socket is up.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub handshake_timeout: Duration,

    /// The protocol every joiner speaks: 2 (announces protocol 2: a whole list, then member-list
    /// deltas, unpaced) or 1 (plain v1, what a reference joiner does: whole lists on every
    /// change, paced by the authenticator's distribution budget).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2), conflicts_with = "protocol_mix")]
    pub protocol: u8,

    /// A mix instead: this fraction of the joiners speaks protocol 2, the rest protocol 1
    /// (spread evenly over the slots, the same in every shard; 0.5: every second joiner).
    #[arg(long, value_name = "FRACTION", value_parser = parse_fraction)]
    pub protocol_mix: Option<f64>,

    /// This fraction of the protocol-2 joins present the alias of a live joiner of this
    /// process: the authenticator must refuse each with `alias_taken`, counted as
    /// `alias_taken`, not as an error (a refusal of any other join is an error). Chosen by a
    /// hash of the joiner, the same in every shard.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = parse_fraction)]
    pub duplicate_alias_rate: f64,
    /// This fraction of the joins go to an impostor authenticator that loadgen runs on
    /// 127.0.0.1 (it does not know the password; `pyile::impostor`) instead of --target,
    /// spread over the slots like --protocol-mix. Counted in impostor_joins,
    /// impostor_refused (the joiner caught it), impostor_passwords_captured (v1's weakness)
    /// and impostor_exposed (an error: the password in clear, or the impostor trusted, where
    /// protocol 2 promises neither).
    #[arg(long, default_value = "0", value_name = "FRACTION", value_parser = parse_fraction)]
    pub impostor_rate: f64,

    /// What the impostor poses as: scram (a protocol-2 authenticator offering SCRAM, with a
    /// forged signature) or v1 (a reference authenticator: a downgrade).
    #[arg(long, default_value = "scram", value_parser = parse_impostor, value_name = "KIND")]
    pub impostor: ImpostorKind,

    /// Joiners refuse to send the password to an authenticator that does not offer protocol
    /// 2's mutual proof (as `pyile join --require-mutual-auth`).
    #[arg(long)]
    pub require_mutual_auth: bool,

    /// Protocol-2 joiners ask the authenticator for their member lists (snapshots and deltas)
    /// on the auth connection, between the heartbeats, instead of opening a distribution
    /// connection: one socket per member at the authenticator instead of two (past ~10,000
    /// members a 20,000-descriptor limit allows only this). join_complete then ends when the
    /// joiner has echoed the authenticator's `lists_here`. Protocol-1 joiners are unaffected.
    #[arg(long)]
    pub one_connection: bool,

    /// Build and check the plan, print this shard's operations as CSV on stdout, and exit
    /// without connecting.
    #[arg(long)]
    pub dry_run: bool,
}

/// Default join rate when neither --rate nor --ramp is given.
pub const DEFAULT_RATE: f64 = 100.0;

impl RunArgs {
    /// The arrival schedule from --rate / --ramp.
    pub fn arrival(&self) -> Arrival {
        match (self.rate, self.ramp) {
            (_, Some(ramp)) => Arrival::Ramp(ramp),
            (Some(rate), None) => Arrival::Rate(rate.per_sec()),
            (None, None) => Arrival::Rate(DEFAULT_RATE),
        }
    }

    /// The fraction of joiners that speak protocol 2 (--protocol-mix, else --protocol).
    pub fn protocol2_share(&self) -> f64 {
        self.protocol_mix.unwrap_or(if self.protocol == 2 { 1.0 } else { 0.0 })
    }

    /// --crash-bound, or three times --heartbeat-timeout.
    pub fn crash_bound(&self) -> Duration {
        self.crash_bound.unwrap_or(self.heartbeat_timeout * 3)
    }

    /// The password: --password-file, else --password / `PYILE_PASSWORD`
    /// ([`resolve_password`]).
    pub fn password(&self) -> Result<String, Error> {
        Ok(resolve_password(self.password_file.as_deref(), self.password.as_deref())?)
    }
}

/// Flags of `loadgen merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Interval logs written with --hdr-log.
    #[arg(required = true, value_name = "LOG")]
    pub logs: Vec<PathBuf>,

    /// Write the merged final CSV here (and X.csv.params.json beside it).
    #[arg(long, value_name = "CSV")]
    pub out: Option<PathBuf>,

    /// Write a self-contained HTML report of the merged logs here (per-interval charts add
    /// the logs' histograms interval by interval).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Fail (exit 1) if this holds for the merged totals; as for a run.
    #[arg(long, value_name = "RULE", default_value = "errors>0")]
    pub fail_on: Vec<FailOn>,

    /// Accepted as in a run; a merge shows no progress, so it changes nothing (the summary,
    /// warnings, errors and violated rules are always printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// How far ahead `--start-at` may be.
pub const MAX_START_DELAY: Duration = Duration::from_secs(3600);

impl RunArgs {
    /// The run's time zero, as a monotonic and a wall-clock instant: `--start-at`, else
    /// `lead` from now (so the first operations are not late because of setup).
    pub fn time_zero(&self, lead: Duration) -> Result<(std::time::Instant, std::time::SystemTime), Error> {
        let (now, now_wall) = (std::time::Instant::now(), std::time::SystemTime::now());
        let Some(at) = self.start_at else {
            return Ok((now + lead, now_wall + lead));
        };
        let wall = Duration::try_from_secs_f64(at)
            .ok()
            .map(|d| std::time::UNIX_EPOCH + d)
            .ok_or_else(|| Error::Config(format!("--start-at {at}: not a time")))?;
        match wall.duration_since(now_wall) {
            Ok(ahead) if ahead <= MAX_START_DELAY => Ok((now + ahead, wall)),
            Ok(ahead) => Err(Error::Config(format!(
                "--start-at is {}s ahead; at most {}s",
                ahead.as_secs(),
                MAX_START_DELAY.as_secs()
            ))),
            Err(past) => Err(Error::Config(format!("--start-at is {:.1}s in the past", past.duration().as_secs_f64()))),
        }
    }
}

/// Resolves HOST:PORT to one socket address (the first the resolver gives).
fn parse_impostor(s: &str) -> Result<ImpostorKind, String> {
    ImpostorKind::parse(s).ok_or_else(|| format!("`{s}`: expected scram or v1"))
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1 (e.g. 0.5)")),
    }
}

fn parse_target(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?}: {e} (write HOST:PORT, e.g. 127.0.0.1:4702)"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn parse_sources(s: &str) -> Result<SourceRange, String> {
    s.parse::<SourceRange>().map_err(|e| match e {
        Error::SourceIps { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// Redacts password values from a command line (for the parameters sidecar).
pub fn redacted_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("***".into());
            hide_next = false;
        } else if arg == "--password" {
            out.push(arg);
            hide_next = true;
        } else if arg.starts_with("--password=") {
            out.push("--password=***".into());
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let cli = parse(&["--peers", "500", "--target", "127.0.0.1:4702"]).unwrap();
        assert!(cli.command.is_none());
        let r = cli.run;
        assert_eq!(r.peers, 500);
        assert_eq!(r.target, "127.0.0.1:4702".parse().unwrap());
        assert_eq!(r.arrival(), Arrival::Rate(DEFAULT_RATE));
        assert_eq!(r.hold, Duration::from_secs(10));
        assert_eq!(r.shard, Shard::WHOLE);
        assert_eq!(r.interval, Duration::from_secs(1));
        assert_eq!(r.fail_on.len(), 1);
        assert_eq!(r.fail_on[0].0.as_ref().unwrap().text(), "errors>0");
        assert!(r.source_ips.is_none());
    }

    #[test]
    fn every_flag_parses() {
        let cli = parse(&[
            "--peers",
            "2000",
            "--target",
            "localhost:4702",
            "--password",
            "pw",
            "--ramp",
            "30s",
            "--hold",
            "1m",
            "--churn",
            "5/s",
            "--broadcast-rate",
            "120/m",
            "--wrong-password-rate",
            "3",
            "--attacker-ips",
            "8",
            "--source-ips",
            "127.0.1.1-127.0.3.254",
            "--seed",
            "42",
            "--shard",
            "2/4",
            "--out",
            "reports/x.csv",
            "--interval",
            "500ms",
            "--hdr-log",
            "reports/x.hlog",
            "--fail-on",
            "join_complete.p99>50ms",
            "--fail-on",
            "timed_out>=1",
            "--quiet",
            "--heartbeat-timeout",
            "3s",
            "--handshake-timeout",
            "2s",
            "--crash-bound",
            "9s",
        ])
        .unwrap();
        let r = cli.run;
        assert_eq!(r.target.port(), 4702);
        assert!(r.target.ip().is_loopback());
        assert_eq!(r.arrival(), Arrival::Ramp(Duration::from_secs(30)));
        assert_eq!(r.hold, Duration::from_secs(60));
        assert_eq!((r.churn.per_sec(), r.broadcast_rate.per_sec(), r.wrong_password_rate.per_sec()), (5.0, 2.0, 3.0));
        assert_eq!(r.source_ips.as_ref().unwrap().len(), 766);
        assert_eq!(r.shard, Shard { index: 2, count: 4 });
        assert_eq!(r.interval, Duration::from_millis(500));
        assert_eq!(r.fail_on.len(), 2);
        assert!(r.quiet);
        assert_eq!(r.password().unwrap(), "pw");
        assert_eq!((r.heartbeat_timeout, r.handshake_timeout), (Duration::from_secs(3), Duration::from_secs(2)));
        assert_eq!(r.crash_bound(), Duration::from_secs(9));
        let derived = parse(&["--heartbeat-timeout", "2s"]).unwrap().run;
        assert_eq!(derived.crash_bound(), Duration::from_secs(6));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--rate", "10/s", "--ramp", "30s"][..],
            &["--hold", "60"],
            &["--shard", "4/4"],
            &["--source-ips", "127.0.0.9-127.0.0.1"],
            &["--fail-on", "join_complete.p99>50"],
            &["--rate", "fast"],
            &["--target", "no-port"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn durations_and_rates_use_the_shared_units() {
        let r = parse(&["--hold", "1m30s", "--rate", "6000/m", "--churn", "3600/h", "--interval", "1.5s"]).unwrap().run;
        assert_eq!(r.hold, Duration::from_secs(90));
        assert_eq!(r.arrival(), Arrival::Rate(100.0));
        assert_eq!(r.churn.per_sec(), 1.0);
        assert_eq!(r.interval, Duration::from_millis(1500));
        for args in [&["--hold", "0.5us"][..], &["--interval", "30s1m"], &["--churn=-1/s"], &["--rate", "10/fortnight"]]
        {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.to_string().contains("write e.g."), "{args:?}: {e}");
        }
    }

    #[test]
    fn merge_takes_logs_and_rules() {
        let cli = parse(&["merge", "a.hlog", "b.hlog", "--out", "m.csv", "--fail-on", "errors>0"]).unwrap();
        let Some(Command::Merge(m)) = cli.command else { panic!("not merge") };
        assert_eq!(m.logs, [PathBuf::from("a.hlog"), PathBuf::from("b.hlog")]);
        assert_eq!(m.out, Some(PathBuf::from("m.csv")));
        assert!(parse(&["merge"]).is_err());
        assert!(parse(&["--peers", "5", "merge", "a.hlog"]).is_err());
    }

    #[test]
    fn attacks_parse_repeatably_and_errors_name_the_problem() {
        let r = parse(&[
            "--attack",
            "silent:200/s,hold=30s",
            "--attack",
            "oversize:50/s,bytes=1MiB",
            "--attack",
            "dist-chatter:10,every=10ms",
            "--attack-source-ips",
            "127.0.9.0/24",
        ])
        .unwrap()
        .run;
        let kinds: Vec<&str> = r.attacks.iter().map(|a| a.kind.flag_name()).collect();
        assert_eq!(kinds, ["silent", "oversize", "dist-chatter"]);
        assert_eq!(r.attack_source_ips.unwrap().len(), 254);
        let e = parse(&["--attack", "oversize:50/s,bytes=1M"]).unwrap_err().to_string();
        assert!(e.contains("oversize: bytes: invalid byte size \"1M\": unknown unit"), "{e}");
        let e = parse(&["--attack", "silentt:5"]).unwrap_err().to_string();
        assert!(e.contains("unknown attack kind \"silentt\""), "{e}");
        assert!(parse(&[]).unwrap().run.attacks.is_empty());
    }

    #[test]
    fn password_sources_in_order() {
        let dir = std::env::temp_dir().join(format!("loadgen-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let f = file.to_str().unwrap();
        let r = parse(&["--password-file", f, "--password", "flag"]).unwrap().run;
        assert_eq!(r.password().unwrap(), "from-file");
        std::fs::write(&file, "\n").unwrap();
        assert!(parse(&["--password-file", f]).unwrap().run.password().unwrap_err().to_string().contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = parse(&["--password-file", "/nonexistent/pw"]).unwrap().run;
        assert!(missing.password().is_err());
    }

    #[test]
    fn start_at_sets_a_shared_time_zero() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let at = |t: f64| parse(&["--start-at", &t.to_string()]).unwrap().run.time_zero(Duration::ZERO);
        let (mono, wall) = at(now + 30.0).unwrap();
        let ahead = mono.saturating_duration_since(std::time::Instant::now()).as_secs_f64();
        assert!((29.0..=30.5).contains(&ahead), "{ahead}");
        assert!((wall.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() - (now + 30.0)).abs() < 1e-3);
        assert!(at(now - 5.0).unwrap_err().to_string().contains("in the past"));
        assert!(at(now + 7200.0).unwrap_err().to_string().contains("at most"));
        assert!(at(f64::NAN).is_err());
        let (mono, _) = parse(&[]).unwrap().run.time_zero(Duration::from_millis(100)).unwrap();
        assert!(mono > std::time::Instant::now());
    }

    #[test]
    fn passwords_are_redacted_from_the_recorded_command_line() {
        let args = ["loadgen", "--password", "hunter2", "--password=hunter3", "--peers", "5"].map(String::from);
        assert_eq!(redacted_args(args), ["loadgen", "--password", "***", "--password=***", "--peers", "5"]);
    }
}
