//! The HTML report of a load run: `loadgen --html X.html` for the run itself, `loadgen report
//! INPUT --html X.html` for an existing run's files, `loadgen merge LOG... --html X.html` for
//! merged interval logs. One self-contained page (built with [`pyile_plots`]):
//!
//! - the run's parameters (`X.csv.params.json`, or the logs' `#loadgen-params`) and outcome;
//! - the summary table (every latency's count and percentiles, every non-zero counter) and
//!   the generator's schedule verdict;
//! - per operation (each latency with samples), p50/p90/p99/max per interval over time;
//! - throughput (joins completed per second), errors per second and joined joiners over time;
//! - HdrHistogram's percentile-distribution plot of every latency;
//! - schedule lag over time against the 10 ms limit;
//! - attack metrics per kind when an `--attack` ran.
//!
//! A report is built from one of three sources, each turned into a [`LoadReport`]: the
//! run's own totals and intervals (exact), interval logs (exact: histograms are added, per
//! interval too — intervals of several logs are matched by their start time since each log's
//! own start), or the CSV files (`X.csv`, `X.intervals.csv`: the percentile distribution then
//! has only the CSV's percentiles).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use pyile_plots::chart::{LineChart, PercentileChart, RefLine, Series, SeriesKind, color};
use pyile_plots::units::{Scale, time_scale};
use pyile_plots::{Cell, Page, PlotError};

use crate::error::{Error, Result};
use crate::hlog;
use crate::human::format_micros;
use crate::metrics::{Interval, Latency, Metric, Totals};
use crate::report::{self, LAG_P99_LIMIT_US, Stats};

/// The parameters shown first (the rest is folded), in this order.
const KEY_PARAMS: &[&str] = &[
    "outcome",
    "target",
    "peers",
    "join_rate_per_s",
    "arrival_s",
    "hold_s",
    "churn_per_s",
    "broadcast_per_s",
    "wrong_password_per_s",
    "attacks",
    "seed",
    "shard.index",
    "shard.count",
    "interval_s",
    "fail_on",
    "command_line",
    "merged_from",
];

/// One metric's count and statistics (µs) in an interval or the whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRow {
    /// Stable metric name (`join_complete`, `errors`, `attack.silent.attempted`).
    pub metric: String,
    /// Samples, or the counter's value.
    pub count: u64,
    /// Latency statistics; `None` for counters and empty latencies.
    pub stats: Option<Stats>,
}

/// One reporting interval.
#[derive(Clone, Debug, PartialEq)]
pub struct IntervalRows {
    /// Start, seconds since the run's time zero.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
    /// Metrics by name.
    pub rows: BTreeMap<String, MetricRow>,
    /// Joiners joined at the end of the interval (not in interval logs).
    pub active: Option<u64>,
}

impl IntervalRows {
    /// The rows of a live [`Interval`].
    pub fn of(interval: &Interval) -> IntervalRows {
        let rows = report::rows(&interval.data)
            .into_iter()
            .map(|r| (r.metric.to_string(), MetricRow { metric: r.metric.to_string(), count: r.count, stats: r.stats }))
            .collect();
        IntervalRows {
            start_s: interval.start.as_secs_f64(),
            end_s: interval.end.as_secs_f64(),
            rows,
            active: Some(interval.active.max(0) as u64),
        }
    }

    fn count(&self, metric: &str) -> u64 {
        self.rows.get(metric).map_or(0, |r| r.count)
    }

    fn stats(&self, metric: &str) -> Option<Stats> {
        self.rows.get(metric).and_then(|r| r.stats)
    }
}

/// Everything the page shows.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    /// Page title.
    pub title: String,
    /// Parameters, flattened (`shard.index`, `plan.joins`, ...).
    pub params: Vec<(String, String)>,
    /// The final rows.
    pub totals: Vec<MetricRow>,
    /// Per latency with samples: (quantile, µs) points of its distribution.
    pub distributions: Vec<(String, Vec<(f64, f64)>)>,
    /// Whether the distributions are from whole histograms (else the CSV's percentiles).
    pub exact_distributions: bool,
    /// Intervals, in time order.
    pub intervals: Vec<IntervalRows>,
    /// Lines shown under the parameters (merge warnings, the data's source).
    pub notes: Vec<String>,
}

/// Flattens JSON parameters into `key.sub = value` pairs (arrays joined with `, `).
pub fn flatten_params(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        use serde_json::Value::{Array, Object};
        match v {
            Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
                let items: Vec<String> = a.iter().map(scalar).collect();
                // A command line reads as one, the other lists as lists.
                let sep = if prefix == "command_line" { " " } else { ", " };
                out.push((prefix.to_string(), items.join(sep)));
            }
            Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), x, out);
                }
            }
            other => out.push((prefix.to_string(), scalar(other))),
        }
    }
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// The quantile at which a distribution of `count` samples ends (its maximum): 1 − 1/count,
/// as far as HdrHistogram's percentile output goes, at most 99.9999 %.
pub fn max_quantile(count: u64) -> f64 {
    (1.0 - 1.0 / count.max(2) as f64).min(0.999_999)
}

/// (quantile, µs) points of a histogram, as HdrHistogram's percentile output lists them,
/// ending with the maximum at [`max_quantile`].
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let end = max_quantile(h.len());
    let mut pts: Vec<(f64, f64)> = vec![(0.0, h.min() as f64)];
    pts.extend(
        h.iter_quantiles(4)
            .map(|v| (v.quantile_iterated_to(), h.highest_equivalent(v.value_iterated_to()) as f64))
            .filter(|(q, _)| *q < end),
    );
    pts.push((end, h.max() as f64));
    pts
}

impl LoadReport {
    /// A report from totals (a run's, or merged logs') and its intervals.
    pub fn from_totals(
        title: &str,
        totals: &Totals,
        intervals: Vec<IntervalRows>,
        params: Option<&serde_json::Value>,
    ) -> LoadReport {
        let rows = report::rows(totals)
            .into_iter()
            .map(|r| MetricRow { metric: r.metric.to_string(), count: r.count, stats: r.stats })
            .collect();
        let mut distributions: Vec<(String, Vec<(f64, f64)>)> = Latency::ALL
            .iter()
            .filter(|l| !totals.histogram(**l).is_empty())
            .map(|l| (l.name().to_string(), distribution(totals.histogram(*l))))
            .collect();
        for (k, a) in totals.attacks() {
            if !a.closed_after.is_empty() {
                let name = Metric::Attack(k, crate::metrics::AttackMetric::ClosedAfter).name().to_string();
                distributions.push((name, distribution(&a.closed_after)));
            }
        }
        LoadReport {
            title: title.to_string(),
            params: params.map(flatten_params).unwrap_or_default(),
            totals: rows,
            distributions,
            exact_distributions: true,
            intervals,
            notes: Vec::new(),
        }
    }

    /// A report from interval logs (one run, or the shards of one run): totals and intervals
    /// are the exact sums of the logs' histograms.
    pub fn from_logs(title: &str, logs: &[PathBuf]) -> Result<LoadReport> {
        let merged = hlog::merge(logs)?;
        let intervals = log_intervals(logs)?;
        let params = match merged.sources.as_slice() {
            [(_, Some(p))] => Some(p.clone()),
            many => Some(serde_json::json!({
                "merged_from": many.iter().map(|(path, p)| serde_json::json!({"log": path, "params": p})).collect::<Vec<_>>(),
            })),
        };
        let mut r = LoadReport::from_totals(title, &merged.totals, intervals, params.as_ref());
        r.notes.push(format!(
            "From {} interval log(s): {}. Intervals of several logs are added by start time (seconds since each log's start).",
            logs.len(),
            logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ));
        r.notes.extend(merged.warnings.iter().map(|w| format!("warning: {w}")));
        Ok(r)
    }

    /// A report from a run's CSV files: `X.csv`, and beside it `X.intervals.csv` and
    /// `X.csv.params.json` when present.
    pub fn from_csv(title: &str, csv_path: &Path) -> Result<LoadReport> {
        let totals = read_rows(csv_path, false)?.into_iter().map(|(_, r)| r).collect::<Vec<_>>();
        let intervals_path = report::intervals_path(csv_path);
        let mut intervals: Vec<IntervalRows> = Vec::new();
        if intervals_path.exists() {
            for ((start, end), row) in read_rows(&intervals_path, true)? {
                if intervals.last().is_none_or(|i| i.start_s != start || i.end_s != end) {
                    intervals.push(IntervalRows { start_s: start, end_s: end, rows: BTreeMap::new(), active: None });
                }
                let last = intervals.last_mut().expect("pushed");
                if row.metric == "active" {
                    last.active = Some(row.count);
                }
                last.rows.insert(row.metric.clone(), row);
            }
        }
        let params_path = report::params_path(csv_path);
        let params: Option<serde_json::Value> = if params_path.exists() {
            let text = std::fs::read_to_string(&params_path).map_err(|e| Error::file(&params_path, e))?;
            Some(serde_json::from_str(&text).map_err(|e| Error::hlog(&params_path, format!("not JSON: {e}")))?)
        } else {
            None
        };
        let distributions = totals
            .iter()
            .filter(|r| Latency::ALL.iter().any(|l| l.name() == r.metric) || r.metric.ends_with(".closed_after"))
            .filter_map(|r| {
                let s = r.stats?;
                let end = max_quantile(r.count);
                let mut pts: Vec<(f64, f64)> =
                    [(0.0, s.min), (0.5, s.p50), (0.9, s.p90), (0.99, s.p99), (0.999, s.p999)]
                        .into_iter()
                        .filter(|(q, _)| *q < end)
                        .map(|(q, v)| (q, v as f64))
                        .collect();
                pts.push((end, s.max as f64));
                Some((r.metric.clone(), pts))
            })
            .collect();
        let mut notes = vec![format!(
            "From {}{}{}. The percentile distribution has only the CSV's percentiles (min, p50, p90, p99, p99.9, \
             max); `loadgen report` on the run's --hdr-log draws the whole distribution.",
            csv_path.display(),
            if intervals.is_empty() { String::new() } else { format!(", {}", intervals_path.display()) },
            if params.is_some() { format!(", {}", params_path.display()) } else { String::new() },
        )];
        if intervals.is_empty() {
            notes.push(format!("{} is missing: no charts over time.", intervals_path.display()));
        }
        Ok(LoadReport {
            title: title.to_string(),
            params: params.as_ref().map(flatten_params).unwrap_or_default(),
            totals,
            distributions,
            exact_distributions: false,
            intervals,
            notes,
        })
    }

    /// Writes the page to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let page = self.page().map_err(|e| Error::Run(format!("{}: {e}", path.display())))?;
        page.write(path).map_err(|e| match e {
            PlotError::Io { source, .. } => Error::file(path, source),
            other => Error::Run(other.to_string()),
        })
    }

    fn total(&self, metric: &str) -> Option<&MetricRow> {
        self.totals.iter().find(|r| r.metric == metric)
    }

    /// The page.
    pub fn page(&self) -> std::result::Result<Page, PlotError> {
        let mut page = Page::new(&self.title);
        let outcome = self.params.iter().find(|(k, _)| k == "outcome").map(|(_, v)| v.as_str());
        page.lead(&format!(
            "Outcome: {}. Latencies are measured from each operation's intended start (no coordinated omission); \
             times on the x axes are seconds since the run's time zero.",
            outcome.unwrap_or("not recorded")
        ));
        page.section("Parameters");
        if self.params.is_empty() {
            page.note("No parameters recorded.");
        } else {
            let key = |k: &str| KEY_PARAMS.iter().position(|p| k == *p || k.starts_with(&format!("{p}[")));
            let mut main: Vec<&(String, String)> = self.params.iter().filter(|(k, _)| key(k).is_some()).collect();
            main.sort_by_key(|(k, _)| key(k));
            let rest: Vec<&(String, String)> = self.params.iter().filter(|(k, _)| key(k).is_none()).collect();
            let pairs = |v: &[&(String, String)]| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>();
            if main.is_empty() {
                page.params(&pairs(&rest));
            } else {
                page.params(&pairs(&main));
                if !rest.is_empty() {
                    page.details_params("every other parameter", &pairs(&rest));
                }
            }
        }
        for n in &self.notes {
            page.note(n);
        }
        self.summary_section(&mut page);
        self.latency_sections(&mut page)?;
        self.throughput_section(&mut page)?;
        self.distribution_section(&mut page)?;
        self.lag_section(&mut page)?;
        self.attack_section(&mut page)?;
        Ok(page)
    }

    fn summary_section(&self, page: &mut Page) {
        page.section("Summary");
        if let Some(v) = self.total(report::GENERATOR_OVERLOADED).filter(|r| r.stats.is_some()) {
            let s = v.stats.expect("filtered");
            let text = if v.count == 1 {
                format!(
                    "The generator fell behind its schedule (schedule lag p99 {}, max {}): these latencies measure \
                     the generator's machine as much as the authenticator.",
                    format_micros(s.p99 as f64),
                    format_micros(s.max as f64)
                )
            } else {
                format!(
                    "The generator kept its schedule (schedule lag p99 {}, max {}).",
                    format_micros(s.p99 as f64),
                    format_micros(s.max as f64)
                )
            };
            page.para(&text);
        }
        let fmt = |v: u64| format_micros(v as f64);
        let mut rows = Vec::new();
        for r in &self.totals {
            if r.metric == report::GENERATOR_OVERLOADED || r.metric.starts_with("attack.") {
                continue;
            }
            match r.stats {
                Some(s) => rows.push(vec![
                    Cell::new(r.metric.clone()).class("mono"),
                    Cell::num(r.count.to_string()),
                    Cell::num(fmt(s.min)),
                    Cell::num(fmt(s.p50)),
                    Cell::num(fmt(s.p90)),
                    Cell::num(fmt(s.p99)),
                    Cell::num(fmt(s.p999)),
                    Cell::num(fmt(s.max)),
                ]),
                None if r.count > 0 => {
                    let mut row = vec![Cell::new(r.metric.clone()).class("mono"), Cell::num(r.count.to_string())];
                    row.extend((0..6).map(|_| Cell::new("")));
                    if r.metric == "errors" {
                        row[1] = row[1].clone().class("bad");
                    }
                    rows.push(row);
                }
                None => {}
            }
        }
        page.table(&["metric", "count", "min", "p50", "p90", "p99", "p99.9", "max"], &rows);
        page.note("Counters that stayed 0 are left out; the CSV has every row.");
    }

    fn latencies_over_time(&self) -> Vec<&'static str> {
        // The whole join first, then its stages and the other operations.
        let join = Latency::JoinComplete;
        std::iter::once(join)
            .chain(Latency::ALL.into_iter().filter(|l| *l != join))
            .map(|l| l.name())
            .filter(|n| *n != Latency::ScheduleLag.name() && *n != Latency::RuntimeLag.name())
            .filter(|n| self.intervals.iter().any(|i| i.stats(n).is_some()))
            .collect()
    }

    fn percentile_chart(&self, metric: &str, title: &str) -> Option<(LineChart, Scale)> {
        let pts: Vec<(f64, Stats)> =
            self.intervals.iter().filter_map(|i| i.stats(metric).map(|s| (i.end_s, s))).collect();
        if pts.is_empty() {
            return None;
        }
        let max = pts.iter().map(|(_, s)| s.max).max().unwrap_or(0) as f64 / 1e6;
        let scale = time_scale(max);
        let us = |v: u64| scale.apply(v as f64 / 1e6);
        let mut c = LineChart::new(title, "time since start (s)", format!("latency ({})", scale.name));
        type Pick = fn(&Stats) -> u64;
        // The largest first, so an equal smaller percentile is drawn over it and stays visible.
        let picks: [(&str, Pick); 4] = [("max", |s| s.max), ("p99", |s| s.p99), ("p90", |s| s.p90), ("p50", |s| s.p50)];
        for (i, (name, f)) in picks.iter().enumerate() {
            let pts = pts.iter().map(|(t, s)| (*t, us(f(s)))).collect();
            c.series.push(Series::new(*name, SeriesKind::Line, pts).color(color(3 - i)));
        }
        c.x_range = self.time_range();
        c.height = Some(320);
        Some((c, scale))
    }

    fn time_range(&self) -> Option<(f64, f64)> {
        let lo = self.intervals.first()?.start_s;
        let hi = self.intervals.iter().map(|i| i.end_s).fold(lo, f64::max);
        Some((lo, hi.max(lo + 1.0)))
    }

    fn latency_sections(&self, page: &mut Page) -> std::result::Result<(), PlotError> {
        page.section("Latency per interval, per operation");
        let names = self.latencies_over_time();
        if names.is_empty() {
            page.note("No intervals with latency samples.");
            return Ok(());
        }
        page.note("Each point is one reporting interval's percentile, drawn at the interval's end.");
        for name in names {
            if let Some((c, _)) = self.percentile_chart(name, &format!("{name}: p50, p90, p99, max per interval")) {
                page.figure(&c.render()?);
            }
        }
        Ok(())
    }

    fn throughput_section(&self, page: &mut Page) -> std::result::Result<(), PlotError> {
        page.section("Throughput and errors over time");
        if self.intervals.is_empty() {
            page.note("No intervals.");
            return Ok(());
        }
        let rate = |i: &IntervalRows, m: &str| i.count(m) as f64 / (i.end_s - i.start_s).max(1e-3);
        let mut c = LineChart::new("joins and errors per second", "time since start (s)", "events per second (1/s)");
        c.x_range = self.time_range();
        let per_s = |m: &str| self.intervals.iter().map(|i| (i.end_s, rate(i, m))).collect::<Vec<_>>();
        c.series.push(Series::new("joins completed /s", SeriesKind::Line, per_s("joined")).color(color(0)));
        c.series.push(Series::new("errors /s", SeriesKind::Line, per_s("errors")).color("#d62728"));
        if self.intervals.iter().any(|i| i.count("left") > 0) {
            c.series.push(Series::new("leaves /s", SeriesKind::Line, per_s("left")).color(color(4)));
        }
        page.figure(&c.render()?);
        if self.intervals.iter().any(|i| i.count("messages_delivered") > 0) {
            let mut m = LineChart::new("messages per second", "time since start (s)", "messages per second (1/s)");
            m.x_range = self.time_range();
            m.height = Some(300);
            m.series.push(Series::new("messages sent /s", SeriesKind::Line, per_s("messages_sent")).color(color(0)));
            m.series.push(
                Series::new("messages delivered /s", SeriesKind::Line, per_s("messages_delivered")).color(color(2)),
            );
            m.series.push(Series::new("messages lost /s", SeriesKind::Line, per_s("messages_lost")).color("#d62728"));
            page.figure(&m.render()?);
        }
        if self.intervals.iter().any(|i| i.active.is_some()) {
            let mut a = LineChart::new("joiners joined", "time since start (s)", "joiners (count)");
            a.x_range = self.time_range();
            let pts = self.intervals.iter().filter_map(|i| i.active.map(|n| (i.end_s, n as f64))).collect();
            a.series.push(Series::new("joined at the interval's end", SeriesKind::Line, pts).color(color(0)));
            a.height = Some(300);
            page.figure(&a.render()?);
        }
        Ok(())
    }

    fn distribution_section(&self, page: &mut Page) -> std::result::Result<(), PlotError> {
        page.section("Percentile distribution");
        page.note(
            "Every latency of the run (the heartbeat interval, a period of about the authenticator's heartbeat \
             interval, and the schedule lag are left out; both are over time above and below).",
        );
        let honest: Vec<&(String, Vec<(f64, f64)>)> = self
            .distributions
            .iter()
            .filter(|(n, _)| !n.starts_with("attack."))
            .filter(|(n, _)| {
                n != Latency::ScheduleLag.name()
                    && n != Latency::RuntimeLag.name()
                    && n != Latency::HeartbeatInterval.name()
            })
            .collect();
        if honest.is_empty() {
            page.note("No latency samples.");
            return Ok(());
        }
        let (scale, series) = percentile_series(&honest);
        let c = PercentileChart {
            title: "latency by percentile, whole run".into(),
            y_label: format!("latency ({})", scale.name),
            series,
            refs: Vec::new(),
            caption: Some(if self.exact_distributions {
                "As HdrHistogram's plotter draws it: the x axis is 1/(1-q) on a log scale, so each decade of \
                 nines gets the same room."
                    .into()
            } else {
                "From the CSV's percentiles only (min, p50, p90, p99, p99.9, max).".into()
            }),
        };
        page.figure(&c.render()?);
        Ok(())
    }

    fn lag_section(&self, page: &mut Page) -> std::result::Result<(), PlotError> {
        page.section("Schedule lag");
        page.note(
            "How late loadgen started each operation compared with its plan. Above 10 ms at p99 (or above 1 ms and a \
             tenth of the join p99) the generator fell behind, and its latencies measure its own machine.",
        );
        let Some((mut c, scale)) = self.percentile_chart(Latency::ScheduleLag.name(), "schedule lag per interval")
        else {
            page.note("No schedule lag samples.");
            return Ok(());
        };
        c.refs.push(RefLine {
            y: scale.apply(LAG_P99_LIMIT_US as f64 / 1e6),
            label: "10 ms: the p99 above which the generator fell behind".into(),
            color: "#d62728".into(),
        });
        page.figure(&c.render()?);
        Ok(())
    }

    fn attack_section(&self, page: &mut Page) -> std::result::Result<(), PlotError> {
        let mut kinds: Vec<String> = Vec::new();
        for r in self.totals.iter().filter(|r| r.metric.starts_with("attack.")) {
            let kind = r.metric.split('.').nth(1).unwrap_or("").to_string();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            return Ok(());
        }
        page.section("Attacks");
        let counters: Vec<&str> = crate::metrics::AttackCounter::ALL.iter().map(|c| c.name()).collect();
        // One column per kind, one row per counter (`attack.<kind>.<counter>` in the CSV).
        let mut head = vec!["metric"];
        head.extend(kinds.iter().map(String::as_str));
        let mut rows: Vec<Vec<Cell>> = counters
            .iter()
            .map(|c| {
                let mut row = vec![Cell::new(*c).class("mono")];
                for k in &kinds {
                    let n = self.total(&format!("attack.{k}.{c}")).map_or(0, |r| r.count);
                    let cell = Cell::num(n.to_string());
                    row.push(if *c == "open_at_end" && n > 0 { cell.class("bad") } else { cell });
                }
                row
            })
            .collect();
        let mut closed_row = vec![Cell::new("closed_after p50 / p99 / max").class("mono")];
        for k in &kinds {
            let closed = self.total(&format!("attack.{k}.closed_after")).and_then(|r| r.stats);
            closed_row.push(Cell::num(closed.map_or("-".into(), |s| {
                let f = |v: u64| format_micros(v as f64);
                format!("{} / {} / {}", f(s.p50), f(s.p99), f(s.max))
            })));
        }
        rows.push(closed_row);
        page.table(&head, &rows);
        if !self.intervals.is_empty() {
            let mut c = LineChart::new(
                "hostile connections per second",
                "time since start (s)",
                "connections per second (1/s)",
            );
            c.x_range = self.time_range();
            for (i, k) in kinds.iter().enumerate() {
                for (j, (what, label)) in
                    [("attempted", "attempted"), ("closed_by_auth", "closed by the authenticator")].iter().enumerate()
                {
                    let m = format!("attack.{k}.{what}");
                    let pts = self
                        .intervals
                        .iter()
                        .map(|iv| (iv.end_s, iv.count(&m) as f64 / (iv.end_s - iv.start_s).max(1e-3)))
                        .collect();
                    c.series.push(Series::new(format!("{k}: {label}"), SeriesKind::Line, pts).color(color(i * 2 + j)));
                }
            }
            page.figure(&c.render()?);
        }
        let closed: Vec<&(String, Vec<(f64, f64)>)> =
            self.distributions.iter().filter(|(n, _)| n.starts_with("attack.")).collect();
        if !closed.is_empty() {
            let (scale, series) = percentile_series(&closed);
            let c = PercentileChart {
                title: "hostile connection open to closed by the authenticator".into(),
                y_label: format!("time to close ({})", scale.name),
                series,
                refs: Vec::new(),
                caption: None,
            };
            page.figure(&c.render()?);
        }
        Ok(())
    }
}

/// Reads a final CSV (or, with `timed`, an intervals CSV) into rows keyed by interval times.
fn read_rows(path: &Path, timed: bool) -> Result<Vec<((f64, f64), MetricRow)>> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| Error::csv(path, e))?;
    let headers = rd.headers().map_err(|e| Error::csv(path, e))?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            Error::hlog(
                path,
                format!("no column `{name}`: not a loadgen {} CSV", if timed { "intervals" } else { "final" }),
            )
        })
    };
    let names = ["metric", "count", "min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"];
    let idx: Vec<usize> = names.iter().map(|n| col(n)).collect::<Result<_>>()?;
    let times = if timed { Some((col("start_s")?, col("end_s")?)) } else { None };
    let mut out = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| Error::csv(path, e))?;
        let line = rec.position().map_or(0, |p| p.line());
        let bad = |what: &str| Error::hlog(path, format!("line {line}: bad {what}"));
        let get = |i: usize| rec.get(idx[i]).unwrap_or("");
        let num = |i: usize| get(i).parse::<u64>().map_err(|_| bad(names[i]));
        let count = num(1)?;
        let stats = if get(3).is_empty() {
            None
        } else {
            Some(Stats {
                min: num(2)?,
                p50: num(3)?,
                p90: num(4)?,
                p99: num(5)?,
                p999: num(6)?,
                max: num(7)?,
                mean: get(8).parse().map_err(|_| bad("mean_us"))?,
            })
        };
        let t = match times {
            Some((a, b)) => {
                let f = |i: usize, n: &str| rec.get(i).unwrap_or("").parse::<f64>().map_err(|_| bad(n));
                (f(a, "start_s")?, f(b, "end_s")?)
            }
            None => (0.0, 0.0),
        };
        out.push((t, MetricRow { metric: get(0).to_string(), count, stats }));
    }
    Ok(out)
}

/// One interval of interval logs: start, end, and the encoded histograms per tag.
type Slot = (f64, f64, BTreeMap<String, Vec<String>>);

/// Per-interval rows of interval logs: every log's histograms of one interval (matched by
/// start time, in units of the interval length) added exactly, one interval at a time.
pub fn log_intervals(logs: &[PathBuf]) -> Result<Vec<IntervalRows>> {
    // (interval number, tag) -> encoded histograms, start and end; histograms are decoded
    // one interval at a time so memory stays at the encoded logs.
    let mut slots: BTreeMap<u64, Slot> = BTreeMap::new();
    for path in logs {
        let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
        let mut length: Option<f64> = None;
        for entry in IntervalLogIterator::new(&bytes) {
            let i = match entry {
                Ok(LogEntry::Interval(i)) => i,
                Ok(_) => continue,
                Err(e) => return Err(Error::hlog(path, format!("not an interval log: {e:?}"))),
            };
            let start = i.start_timestamp().as_secs_f64();
            let len = *length.get_or_insert(i.duration().as_secs_f64().max(1e-3));
            let slot = (start / len).round() as u64;
            let tag = i.tag().map(|t| t.as_str().to_string()).unwrap_or_default();
            let e = slots.entry(slot).or_insert((start, start + i.duration().as_secs_f64(), BTreeMap::new()));
            e.0 = e.0.min(start);
            e.1 = e.1.max(start + i.duration().as_secs_f64());
            e.2.entry(tag).or_default().push(i.encoded_histogram().to_string());
        }
    }
    let mut deserializer = Deserializer::new();
    let mut out = Vec::new();
    for (_, (start, end, tags)) in slots {
        let mut rows = BTreeMap::new();
        for (tag, encoded) in tags {
            let metric = Metric::from_name(&tag).ok_or_else(|| {
                Error::hlog(&logs[0], format!("unknown metric tag {tag:?} (not written by this loadgen?)"))
            })?;
            let mut sum: Option<Histogram<u64>> = None;
            for enc in encoded {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(enc)
                    .map_err(|e| Error::hlog(&logs[0], format!("{tag}: bad base64: {e}")))?;
                let h: Histogram<u64> = deserializer
                    .deserialize(&mut &raw[..])
                    .map_err(|e| Error::hlog(&logs[0], format!("{tag}: bad histogram: {e:?}")))?;
                match &mut sum {
                    None => sum = Some(h),
                    Some(s) => s.add(&h).map_err(|e| Error::hlog(&logs[0], format!("{tag}: {e:?}")))?,
                }
            }
            let h = sum.expect("at least one histogram per tag");
            let stats = if metric.is_histogram() { Stats::of(&h) } else { None };
            rows.insert(tag.clone(), MetricRow { metric: tag, count: h.len(), stats });
        }
        out.push(IntervalRows { start_s: start, end_s: end, rows, active: None });
    }
    Ok(out)
}

/// The percentile curves of named distributions (quantile, nanoseconds), one colour each, in
/// the time unit their largest value calls for.
fn percentile_series(dists: &[&(String, Vec<(f64, f64)>)]) -> (Scale, Vec<Series>) {
    let max = dists.iter().flat_map(|(_, p)| p.iter().map(|x| x.1)).fold(0.0, f64::max) / 1e6;
    let scale = time_scale(max);
    let series = dists
        .iter()
        .enumerate()
        .map(|(i, (n, p))| {
            Series::new(n.clone(), SeriesKind::Line, p.iter().map(|&(q, v)| (q, scale.apply(v / 1e6))).collect())
                .color(color(i))
        })
        .collect();
    (scale, series)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counter;
    use serde_json::json;
    use std::time::Duration;

    fn interval(k: u64, joined: u64, ms: u64) -> Interval {
        let mut data = Totals::default();
        for i in 0..joined {
            data.record(Latency::JoinComplete, Duration::from_micros(ms * 1000 + i));
        }
        data.record(Latency::ScheduleLag, Duration::from_micros(300));
        data.add_count(Counter::Joined, joined);
        data.add_count(Counter::Errors, k % 2);
        Interval { start: Duration::from_secs(k), end: Duration::from_secs(k + 1), data, active: (k * 10) as i64 }
    }

    #[test]
    fn params_flatten_to_dotted_keys() {
        let p = flatten_params(&json!({"a": 1, "b": {"c": "x", "d": [1, 2]}, "e": null, "f": [{"g": 1}]}));
        let want = [("a", "1"), ("b.c", "x"), ("b.d", "1, 2"), ("e", "-"), ("f[0].g", "1")];
        assert_eq!(p, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }

    #[test]
    fn a_page_from_totals_has_its_charts() {
        let intervals: Vec<Interval> = (0..5).map(|k| interval(k, 20, 2 + k)).collect();
        let mut totals = Totals::default();
        for i in &intervals {
            totals.merge(&i.data).unwrap();
        }
        let rows = intervals.iter().map(IntervalRows::of).collect();
        let r =
            LoadReport::from_totals("loadgen: t", &totals, rows, Some(&json!({"target": "127.0.0.1:1", "peers": 3})));
        assert_eq!(r.params[1], ("target".to_string(), "127.0.0.1:1".to_string()));
        let html = r.page().unwrap().finish();
        // join_complete over time (4), joins/errors (3 lines: joins, errors, no leaves), joined (1),
        // the distribution (1 latency), the schedule lag (4).
        assert!(html.contains("<figure class=\"chart\" data-series=\"4\""));
        assert_eq!(html.matches("<svg").count(), 5, "no message or attack charts without data");
        assert!(html.contains("The generator kept its schedule"));
        assert!(html.contains("<td class=\"num bad\">2</td>"), "errors stand out");
        let d = &r.distributions[0];
        assert_eq!(d.0, "join_complete");
        assert_eq!(d.1.last().unwrap().0, max_quantile(100));
        assert!(d.1.windows(2).all(|w| w[0].0 <= w[1].0), "in quantile order");
    }
}
