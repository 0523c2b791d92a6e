//! Reports a person or a CI job reads after a run: the final CSV, the per-interval CSV, the
//! run-parameters sidecar and the printed summary table.
//!
//! File formats (stable; scripts depend on them):
//! - `--out X.csv`: header `metric,count,min_us,p50_us,p90_us,p99_us,p999_us,max_us,mean_us`,
//!   one row per latency (all of them, in a fixed order; empty statistics when there were no
//!   samples) then one row per counter (count only), then, for each attack kind that ran,
//!   its `attack.<kind>.closed_after` histogram row and its `attack.<kind>.<counter>` rows.
//! - `X.attacks.csv` (beside `--out`, when an `--attack` ran): one row per attack kind, the
//!   columns [`ATTACK_COLUMNS`] (times in microseconds, sizes in bytes, as their names say).
//! - `X.intervals.csv` (beside `--out`, one block of rows per `--interval`): the same columns
//!   preceded by `start_s,end_s`, with the interval's samples and counter increments, plus a
//!   row `active` whose count is the number of joined joiners at the end of the interval.
//! - `X.csv.params.json`: the run parameters, written when the run starts and rewritten with
//!   its end time and outcome when it ends, so an interrupted run still says what it was.
//!
//! The interval logs that make exact merging possible are in [`crate::hlog`].

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::human::format_micros;
use crate::metrics::{AttackCounter, AttackMetric, AttackTotals, Counter, Interval, Latency, Metric, Totals};
use crate::plan::{PlanSummary, Shard};

/// Columns of the final CSV.
pub const COLUMNS: [&str; 9] =
    ["metric", "count", "min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"];

/// Statistics of one histogram, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Smallest sample.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Stats {
    /// The statistics of `h`, `None` if it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Stats> {
        (!h.is_empty()).then(|| Stats {
            min: h.min(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        })
    }
}

/// One row of the final CSV: a latency (with statistics if it had samples) or a counter.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Stable metric name.
    pub metric: &'static str,
    /// Samples or counter value.
    pub count: u64,
    /// Statistics; always `None` for counters.
    pub stats: Option<Stats>,
}

impl Row {
    fn cells(&self) -> Vec<String> {
        let mut cells = vec![self.metric.to_string(), self.count.to_string()];
        match self.stats {
            Some(s) => {
                cells.extend([s.min, s.p50, s.p90, s.p99, s.p999, s.max].map(|v| v.to_string()));
                cells.push(format!("{:.1}", s.mean));
            }
            None => cells.extend(std::iter::repeat_n(String::new(), 7)),
        }
        cells
    }
}

/// The rows of `totals`: every latency, then every counter, in the crate's fixed order.
pub fn rows(totals: &Totals) -> Vec<Row> {
    let latencies = Latency::ALL.into_iter().map(|l| {
        let h = totals.histogram(l);
        Row { metric: l.name(), count: h.len(), stats: Stats::of(h) }
    });
    let counters = Counter::ALL.into_iter().map(|c| Row { metric: c.name(), count: totals.counter(c), stats: None });
    let attacks = totals.attacks().flat_map(|(k, a)| {
        let hist = Row {
            metric: Metric::Attack(k, AttackMetric::ClosedAfter).name(),
            count: a.closed_after.len(),
            stats: Stats::of(&a.closed_after),
        };
        let counters = AttackCounter::ALL.into_iter().map(move |c| Row {
            metric: Metric::Attack(k, AttackMetric::Counter(c)).name(),
            count: a.counter(c),
            stats: None,
        });
        std::iter::once(hist).chain(counters)
    });
    let lag = totals.histogram(Latency::ScheduleLag);
    let verdict = Row {
        metric: GENERATOR_OVERLOADED,
        count: schedule_verdict(totals).is_some_and(|v| v.overloaded).into(),
        stats: Stats::of(lag),
    };
    latencies.chain(counters).chain(std::iter::once(verdict)).chain(attacks).collect()
}

/// Columns of `X.attacks.csv`.
pub const ATTACK_COLUMNS: [&str; 20] = [
    "kind",
    "attempted",
    "connect_failed",
    "skipped",
    "closed_by_auth",
    "closed_by_us",
    "open_at_end",
    "failed",
    "closed_after_p50_us",
    "closed_after_p99_us",
    "closed_after_max_us",
    "sent_bytes",
    "received_bytes",
    "admitted",
    "rejected",
    "banned",
    "values_written",
    "lists_received",
    "lists_per_value",
    "victims_evicted",
];

/// One row of `X.attacks.csv`.
fn attack_cells(kind: crate::attack::AttackKind, a: &AttackTotals) -> Vec<String> {
    let c = |x: AttackCounter| a.counter(x).to_string();
    let q = |p: f64| {
        if a.closed_after.is_empty() { String::new() } else { a.closed_after.value_at_quantile(p).to_string() }
    };
    let per_value = match a.counter(AttackCounter::ValuesWritten) {
        0 => String::new(),
        v => format!("{:.4}", a.counter(AttackCounter::ListsReceived) as f64 / v as f64),
    };
    vec![
        kind.flag_name().to_string(),
        c(AttackCounter::Attempted),
        c(AttackCounter::ConnectFailed),
        c(AttackCounter::Skipped),
        c(AttackCounter::ClosedByAuth),
        c(AttackCounter::ClosedByUs),
        c(AttackCounter::OpenAtEnd),
        c(AttackCounter::Failed),
        q(0.5),
        q(0.99),
        q(1.0),
        c(AttackCounter::SentBytes),
        c(AttackCounter::ReceivedBytes),
        c(AttackCounter::Admitted),
        c(AttackCounter::Rejected),
        c(AttackCounter::Banned),
        c(AttackCounter::ValuesWritten),
        c(AttackCounter::ListsReceived),
        per_value,
        c(AttackCounter::VictimsEvicted),
    ]
}

/// `reports/x.csv` -> `reports/x.attacks.csv`.
pub fn attacks_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.attacks.csv"))
}

/// Writes `X.attacks.csv`: a header row, then one row per attack kind of `totals`.
pub fn write_attacks_csv(path: &Path, totals: &Totals) -> Result<()> {
    ensure_parent(path)?;
    let mut w = csv::Writer::from_path(path).map_err(|e| Error::csv(path, e))?;
    let res: csv::Result<()> = (|| {
        w.write_record(ATTACK_COLUMNS)?;
        for (k, a) in totals.attacks() {
            w.write_record(attack_cells(k, a))?;
        }
        w.flush()?;
        Ok(())
    })();
    res.map_err(|e| Error::csv(path, e))
}

/// Creates the parent directory of `path` if needed.
fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir).map_err(|e| Error::file(dir, e)),
        _ => Ok(()),
    }
}

/// Writes the final CSV of `totals` to `path`.
pub fn write_final_csv(path: &Path, totals: &Totals) -> Result<()> {
    ensure_parent(path)?;
    let mut w = csv::Writer::from_path(path).map_err(|e| Error::csv(path, e))?;
    let res: csv::Result<()> = (|| {
        w.write_record(COLUMNS)?;
        for row in rows(totals) {
            w.write_record(row.cells())?;
        }
        w.flush()?;
        Ok(())
    })();
    res.map_err(|e| Error::csv(path, e))
}

/// `reports/x.csv` -> `reports/x.intervals.csv`.
pub fn intervals_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.intervals.csv"))
}

/// `reports/x.csv` -> `reports/x.csv.params.json`.
pub fn params_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".params.json");
    out.with_file_name(name)
}

/// The per-interval CSV, written (and flushed) one interval at a time.
pub struct IntervalCsv {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl IntervalCsv {
    /// Creates the file and writes its header.
    pub fn create(path: &Path) -> Result<IntervalCsv> {
        ensure_parent(path)?;
        let mut writer = csv::Writer::from_path(path).map_err(|e| Error::csv(path, e))?;
        let header = ["start_s", "end_s"].into_iter().chain(COLUMNS);
        writer.write_record(header).map_err(|e| Error::csv(path, e))?;
        Ok(IntervalCsv { path: path.to_path_buf(), writer })
    }

    /// Appends one interval's rows.
    pub fn write(&mut self, interval: &Interval) -> Result<()> {
        let times = [format!("{:.3}", interval.start.as_secs_f64()), format!("{:.3}", interval.end.as_secs_f64())];
        let active = Row { metric: "active", count: interval.active.max(0) as u64, stats: None };
        let res: csv::Result<()> = (|| {
            for row in rows(&interval.data).into_iter().chain([active]) {
                self.writer.write_record(times.iter().cloned().chain(row.cells()))?;
            }
            self.writer.flush()?;
            Ok(())
        })();
        res.map_err(|e| Error::csv(&self.path, e))
    }
}

/// The parameters of a run, as written to the `.params.json` sidecar and into interval logs.
#[derive(Clone, Debug, Serialize)]
pub struct RunParams {
    /// Version of loadgen.
    pub loadgen_version: String,
    /// The command line, password arguments redacted.
    pub command_line: Vec<String>,
    /// Authenticator address.
    pub target: String,
    /// Slots of the whole plan.
    pub peers: u32,
    /// Seed of the plan.
    pub seed: u64,
    /// This process's share.
    pub shard: Shard,
    /// Joins per second during the arrival phase.
    pub join_rate_per_s: f64,
    /// Arrival phase length, seconds.
    pub arrival_s: f64,
    /// Hold phase length, seconds.
    pub hold_s: f64,
    /// Churn events per second (whole plan).
    pub churn_per_s: f64,
    /// Broadcasts per second (whole plan).
    pub broadcast_per_s: f64,
    /// Wrong-password attempts per second (whole plan).
    pub wrong_password_per_s: f64,
    /// Joiner source addresses.
    pub source_ips: String,
    /// Attacker source addresses.
    pub attacker_ips: Vec<String>,
    /// The `--attack`s, each with its source addresses.
    pub attacks: Vec<AttackParams>,
    /// Joiner handshake timeout, seconds.
    pub handshake_timeout_s: f64,
    /// Joiner heartbeat timeout, seconds.
    pub heartbeat_timeout_s: f64,
    /// How long a crashed joiner waits to be removed before it counts as undetected, seconds.
    pub crash_bound_s: f64,
    /// Fraction of the joiners that speak protocol 2 (deltas); the rest speak plain v1.
    pub protocol2_share: f64,
    /// Reporting interval, seconds.
    pub interval_s: f64,
    /// `--fail-on` rules in force.
    pub fail_on: Vec<String>,
    /// This shard's planned operations.
    pub plan: PlanSummary,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Wall-clock end, once ended.
    pub finished_unix_ms: Option<u64>,
    /// `passed`, `failed: <rules>` or `error: <message>`, once ended.
    pub outcome: Option<String>,
}

/// One `--attack` in the parameters sidecar.
#[derive(Clone, Debug, Serialize)]
pub struct AttackParams {
    /// The flag as given.
    pub attack: String,
    /// The addresses dealt to it.
    pub source_ips: Vec<String>,
}

/// Writes `params` as pretty JSON to `path`.
pub fn write_json<T: Serialize>(path: &Path, params: &T) -> Result<()> {
    ensure_parent(path)?;
    let file = File::create(path).map_err(|e| Error::file(path, e))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, params).map_err(|e| Error::file(path, e.into()))?;
    w.write_all(b"\n").and_then(|_| w.flush()).map_err(|e| Error::file(path, e))
}

/// Schedule lag p99 above which the generator has certainly fallen behind (µs).
pub const LAG_P99_LIMIT_US: u64 = 10_000;
/// Schedule lag p99 below which it never counts as behind (µs): timer granularity.
pub const LAG_P99_FLOOR_US: u64 = 1_000;

/// Whether the generator fell behind its schedule: its schedule lag p99 is over 10 ms, or over
/// 1 ms and over a tenth of the join p99 (then the latencies measure the generator's machine
/// as much as the authenticator).
pub fn fell_behind(lag_p99_us: u64, join_p99_us: Option<u64>) -> bool {
    lag_p99_us > LAG_P99_LIMIT_US || (lag_p99_us > LAG_P99_FLOOR_US && join_p99_us.is_some_and(|j| lag_p99_us * 10 > j))
}

/// How well the generator kept its schedule, from its `schedule_lag` histogram.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleVerdict {
    /// Schedule lag p99 (µs).
    pub lag_p99_us: u64,
    /// Largest schedule lag (µs).
    pub lag_max_us: u64,
    /// Join p99 (µs), if anything joined.
    pub join_p99_us: Option<u64>,
    /// [`fell_behind`].
    pub overloaded: bool,
}

/// The verdict of `totals`; `None` when nothing was scheduled.
pub fn schedule_verdict(totals: &Totals) -> Option<ScheduleVerdict> {
    let lag = Stats::of(totals.histogram(Latency::ScheduleLag))?;
    let join_p99_us = Stats::of(totals.histogram(Latency::JoinComplete)).map(|s| s.p99);
    Some(ScheduleVerdict {
        lag_p99_us: lag.p99,
        lag_max_us: lag.max,
        join_p99_us,
        overloaded: fell_behind(lag.p99, join_p99_us),
    })
}

/// The `runtime_lag` p99 above which the summary says loadgen's own queueing is in its
/// latencies (the probe sleeps 10 ms; a calm runtime wakes it within a millisecond).
pub const RUNTIME_LAG_P99_LIMIT_US: u64 = 10_000;

/// The summary's line on loadgen's own runtime, from its `runtime_lag` histogram: kept up,
/// or held its joiners up (p99 over [`RUNTIME_LAG_P99_LIMIT_US`]). None without samples.
pub fn runtime_verdict(totals: &Totals) -> Option<String> {
    let s = Stats::of(totals.histogram(Latency::RuntimeLag))?;
    let lag = format!("runtime lag p99 {}, max {}", format_micros(s.p99 as f64), format_micros(s.max as f64));
    Some(if s.p99 > RUNTIME_LAG_P99_LIMIT_US {
        format!("loadgen's runtime held its joiners up ({lag}): its own queueing is in every latency above\n")
    } else {
        format!("loadgen's runtime kept up ({lag})\n")
    })
}

/// Name of the final CSV's verdict row: count 1 when the generator fell behind its schedule,
/// 0 when it kept it, then the schedule lag's statistics.
pub const GENERATOR_OVERLOADED: &str = "generator_overloaded";

/// The summary table printed at the end of a run or a merge.
pub fn summary_table(totals: &Totals) -> String {
    let mut out = String::new();
    let head = ["metric", "count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"];
    out.push_str(&format!("{:<20}{:>8}", head[0], head[1]));
    for h in &head[2..] {
        out.push_str(&format!("{h:>10}"));
    }
    out.push('\n');
    for l in Latency::ALL {
        let h = totals.histogram(l);
        out.push_str(&format!("{:<20}{:>8}", l.name(), h.len()));
        match Stats::of(h) {
            Some(s) => {
                for v in [s.min, s.p50, s.p90, s.p99, s.p999, s.max] {
                    out.push_str(&format!("{:>10}", format_micros(v as f64)));
                }
                out.push_str(&format!("{:>10}", format_micros(s.mean)));
            }
            None if l == Latency::MessageDelivery && totals.counter(Counter::MessagesSent) == 0 => {
                out.push_str("  no messages sent")
            }
            None => out.push_str(&format!("{:>10}", "-")),
        }
        out.push('\n');
    }
    let counters: Vec<String> = Counter::ALL
        .into_iter()
        .filter(|&c| totals.counter(c) > 0 || matches!(c, Counter::Joined | Counter::Errors))
        .map(|c| format!("{} {}", c.name(), totals.counter(c)))
        .collect();
    out.push_str(&format!("counters: {}\n", counters.join(", ")));
    for (k, a) in totals.attacks() {
        let c = |x: AttackCounter| a.counter(x);
        let closed = match Stats::of(&a.closed_after) {
            Some(s) => format!(" (after p50 {}, max {})", format_micros(s.p50 as f64), format_micros(s.max as f64)),
            None => String::new(),
        };
        let mut line = format!(
            "attack {}: attempted {}, connect failed {}, skipped {}, closed by the authenticator {}{}, \
             closed by us {}, open at end {}, failed {}, sent {} B, received {} B",
            k,
            c(AttackCounter::Attempted),
            c(AttackCounter::ConnectFailed),
            c(AttackCounter::Skipped),
            c(AttackCounter::ClosedByAuth),
            closed,
            c(AttackCounter::ClosedByUs),
            c(AttackCounter::OpenAtEnd),
            c(AttackCounter::Failed),
            c(AttackCounter::SentBytes),
            c(AttackCounter::ReceivedBytes),
        );
        for x in [
            AttackCounter::Admitted,
            AttackCounter::Rejected,
            AttackCounter::Banned,
            AttackCounter::ValuesWritten,
            AttackCounter::ListsReceived,
            AttackCounter::VictimsEvicted,
        ] {
            if c(x) > 0 || (k == crate::attack::AttackKind::SpoofAddress && x == AttackCounter::VictimsEvicted) {
                line.push_str(&format!(", {} {}", x.name().replace('_', " "), c(x)));
            }
        }
        if c(AttackCounter::ValuesWritten) > 0 {
            let per = c(AttackCounter::ListsReceived) as f64 / c(AttackCounter::ValuesWritten) as f64;
            line.push_str(&format!(" ({per:.3} lists per value written)"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(line) = runtime_verdict(totals) {
        out.push_str(&line);
    }
    if let Some(v) = schedule_verdict(totals) {
        let lag = format!(
            "schedule lag p99 {}, max {}",
            format_micros(v.lag_p99_us as f64),
            format_micros(v.lag_max_us as f64)
        );
        if v.overloaded {
            out.push_str(&format!(
                "the generator fell behind its schedule ({lag}): these latencies measure this machine, \
                 not the authenticator\n"
            ));
        } else {
            out.push_str(&format!("the generator kept its schedule ({lag})\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Totals {
        let mut t = Totals::default();
        for ms in 1..=10 {
            t.record(Latency::JoinComplete, Duration::from_millis(ms));
        }
        t.add_count(Counter::Joined, 10);
        t.add_count(Counter::Refused, 1);
        t.add_count(Counter::Errors, 1);
        t
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loadgen-report-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn final_csv_has_every_metric_in_order_with_stable_columns() {
        let dir = temp_dir("final");
        let path = dir.join("sub/run.csv");
        write_final_csv(&path, &sample()).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "metric,count,min_us,p50_us,p90_us,p99_us,p999_us,max_us,mean_us");
        assert_eq!(lines.len(), 1 + Latency::ALL.len() + Counter::ALL.len() + 1);
        assert_eq!(lines[1 + Latency::ALL.len() + Counter::ALL.len()], "generator_overloaded,0,,,,,,,");
        let join = lines.iter().find(|l| l.starts_with("join_complete,")).unwrap();
        let cells: Vec<&str> = join.split(',').collect();
        assert_eq!(cells[1], "10");
        assert_eq!(cells[2], "1000"); // min 1 ms
        assert_eq!(cells[3], "5003"); // p50 5 ms, 3 significant digits
        assert_eq!(cells[7], "10007"); // max 10 ms
        let mean: f64 = cells[8].parse().unwrap();
        assert!((mean - 5500.0).abs() < 5.5, "mean {mean}"); // 5.5 ms within histogram precision
        assert_eq!(lines.iter().find(|l| l.starts_with("tcp_connect,")).unwrap(), &"tcp_connect,0,,,,,,,");
        assert!(lines.contains(&"joined,10,,,,,,,"));
        assert!(lines.contains(&"refused,1,,,,,,,"));
        assert!(lines.contains(&"errors,1,,,,,,,"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn attack_rows_and_the_attacks_csv() {
        use crate::attack::AttackKind;
        let dir = temp_dir("attacks");
        let mut t = sample();
        t.add_attack_count(AttackKind::DistChatter, AttackCounter::Attempted, 10);
        t.add_attack_count(AttackKind::DistChatter, AttackCounter::ValuesWritten, 400);
        t.add_attack_count(AttackKind::DistChatter, AttackCounter::ListsReceived, 2);
        t.attack_mut(AttackKind::Silent).closed_after.record(3_000_000).unwrap();
        t.add_attack_count(AttackKind::Silent, AttackCounter::ClosedByAuth, 1);
        let out = dir.join("run.csv");
        write_final_csv(&out, &t).unwrap();
        let text = fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + Latency::ALL.len() + Counter::ALL.len() + 1 + 2 * (1 + AttackCounter::ALL.len()));
        assert!(lines.contains(&"attack.dist_chatter.values_written,400,,,,,,,"));
        assert!(lines.iter().any(|l| l.starts_with("attack.silent.closed_after,1,2998")), "{text}");
        let path = attacks_path(&out);
        assert_eq!(path, dir.join("run.attacks.csv"));
        write_attacks_csv(&path, &t).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows[0], ATTACK_COLUMNS.join(","));
        assert_eq!(rows.len(), 3);
        assert!(rows[1].starts_with("silent,0,0,0,1,0,0,0,300"), "{}", rows[1]);
        assert!(rows[2].starts_with("dist-chatter,10,"), "{}", rows[2]);
        assert!(rows[2].contains(",400,2,0.0050,"), "{}", rows[2]);
        let s = summary_table(&t);
        assert!(s.contains("attack dist-chatter: attempted 10"), "{s}");
        assert!(s.contains("(0.005 lists per value written)"), "{s}");
        assert!(s.contains("attack silent:") && s.contains("closed by the authenticator 1 (after p50 3"), "{s}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sidecar_paths_derive_from_out() {
        assert_eq!(intervals_path(Path::new("reports/x.csv")), Path::new("reports/x.intervals.csv"));
        assert_eq!(params_path(Path::new("reports/x.csv")), Path::new("reports/x.csv.params.json"));
        assert_eq!(intervals_path(Path::new("x")), Path::new("x.intervals.csv"));
    }

    #[test]
    fn interval_csv_has_a_block_per_interval() {
        let dir = temp_dir("intervals");
        let path = dir.join("i.csv");
        let mut w = IntervalCsv::create(&path).unwrap();
        let mut data = Totals::default();
        data.record(Latency::TcpConnect, Duration::from_micros(250));
        data.add_count(Counter::Joined, 1);
        w.write(&Interval { start: Duration::ZERO, end: Duration::from_secs(1), data: data.clone(), active: 1 })
            .unwrap();
        w.write(&Interval {
            start: Duration::from_secs(1),
            end: Duration::from_secs(2),
            data: Totals::default(),
            active: 1,
        })
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "start_s,end_s,metric,count,min_us,p50_us,p90_us,p99_us,p999_us,max_us,mean_us");
        let per_interval = Latency::ALL.len() + Counter::ALL.len() + 2; // and generator_overloaded, active
        assert_eq!(lines.len(), 1 + 2 * per_interval);
        assert!(lines.contains(&"0.000,1.000,tcp_connect,1,250,250,250,250,250,250,250.0"));
        assert!(lines.contains(&"0.000,1.000,joined,1,,,,,,,"));
        assert!(lines.contains(&"1.000,2.000,joined,0,,,,,,,"));
        assert!(lines.contains(&"1.000,2.000,active,1,,,,,,,"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_generator_fell_behind_past_10ms_or_a_tenth_of_the_join_p99() {
        // Timer granularity never counts, whatever the joins took.
        assert!(!fell_behind(1_000, Some(2_000)));
        assert!(!fell_behind(900, None));
        // Over 1 ms and over a tenth of the join p99.
        assert!(fell_behind(1_500, Some(10_000)));
        assert!(!fell_behind(1_500, Some(20_000)));
        // Over 10 ms, always.
        assert!(fell_behind(10_001, Some(10_000_000)));
        assert!(fell_behind(10_001, None));
        assert!(!fell_behind(10_000, None));
    }

    #[test]
    fn the_verdict_is_a_csv_row_and_a_summary_line() {
        let mut t = sample(); // join p99 10 ms
        assert_eq!(schedule_verdict(&t), None);
        assert!(!summary_table(&t).contains("its schedule"));
        t.record(Latency::ScheduleLag, Duration::from_micros(500));
        let v = schedule_verdict(&t).unwrap();
        assert!(!v.overloaded, "{v:?}");
        assert!(summary_table(&t).ends_with("the generator kept its schedule (schedule lag p99 500us, max 500us)\n"));
        let row = rows(&t).into_iter().find(|r| r.metric == GENERATOR_OVERLOADED).unwrap();
        assert_eq!((row.count, row.stats.unwrap().p99), (0, 500));

        for _ in 0..10 {
            t.record(Latency::ScheduleLag, Duration::from_millis(3));
        }
        let v = schedule_verdict(&t).unwrap();
        assert!(v.overloaded, "lag 3 ms against join p99 10 ms: {v:?}");
        let s = summary_table(&t);
        assert!(
            s.lines().last().unwrap().starts_with("the generator fell behind its schedule (schedule lag p99 3.")
                && s.ends_with("): these latencies measure this machine, not the authenticator\n"),
            "{s}"
        );
        let row = rows(&t).into_iter().find(|r| r.metric == GENERATOR_OVERLOADED).unwrap();
        assert_eq!(row.count, 1);
    }

    #[test]
    fn the_runtime_verdict_says_when_loadgen_held_its_joiners_up() {
        let mut t = sample();
        assert_eq!(runtime_verdict(&t), None);
        for _ in 0..100 {
            t.record(Latency::RuntimeLag, Duration::from_millis(1));
        }
        let s = summary_table(&t);
        assert!(s.contains("loadgen's runtime kept up (runtime lag p99 1"), "{s}");
        // Two samples in a hundred 50 ms late: the p99 is past 10 ms.
        for _ in 0..2 {
            t.record(Latency::RuntimeLag, Duration::from_millis(50));
        }
        let s = summary_table(&t);
        assert!(
            s.contains("loadgen's runtime held its joiners up (runtime lag p99 50")
                && s.contains("): its own queueing is in every latency above\n"),
            "{s}"
        );
        // The schedule's verdict stays the last line.
        t.record(Latency::ScheduleLag, Duration::from_micros(500));
        assert!(summary_table(&t).lines().last().unwrap().starts_with("the generator kept its schedule"));
    }

    #[test]
    fn summary_lists_latencies_and_nonzero_counters() {
        let s = summary_table(&sample());
        assert!(s.lines().next().unwrap().starts_with("metric"));
        let join = s.lines().find(|l| l.starts_with("join_complete")).unwrap();
        assert!(join.contains("10.007ms") || join.contains("10.01ms"), "{join}");
        assert!(s.lines().find(|l| l.starts_with("convergence")).unwrap().ends_with('-'));
        let delivery = s.lines().find(|l| l.starts_with("message_delivery")).unwrap();
        assert!(delivery.ends_with("0  no messages sent"), "{delivery}");
        let counters = s.lines().last().unwrap();
        assert_eq!(counters, "counters: joined 10, refused 1, errors 1");
    }
}
