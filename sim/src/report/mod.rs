//! Reports: one CSV row per (scenario, seed), a summary over seeds, the printed table, and
//! (in [`compare`]) the regression check against committed baselines.
//!
//! Files, per scenario, in the output directory (`reports/` by default, `--out`):
//! - `<scenario>.runs.csv`: a header row, then one row per seed: identity, verdict,
//!   determinism, every metric of the catalogue (empty cell = no samples), provenance
//!   (trace hash, scenario file and its FNV-1a hash, git revision, drawn `[random]` values)
//!   and the failure reasons. Column names are stable: baselines and CI compare by them.
//! - `<scenario>.summary.csv`: per metric, n/min/p50/p90/max over the seeds.
//! - `<scenario>.html` (unless `--no-html`): the page with plots, see [`html`]; what it draws
//!   of one seed is collected from the trace events by [`view`].
//!
//! `reports/baseline/` holds the same `*.runs.csv` files, refreshed deliberately with
//! `sim baseline`.

pub mod compare;
pub mod html;
pub mod view;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::metrics::{Group, MetricId, Metrics, format_value, percentile_sorted};

/// A report could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// File-system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The CSV layer failed.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: String,
        /// Cause.
        source: csv::Error,
    },
    /// A CSV cell or header did not make sense.
    #[error("{path}:{line}: {msg}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        msg: String,
    },
    /// An HTML page could not be drawn or written.
    #[error(transparent)]
    Html(#[from] pyile_plots::PlotError),
    /// No runs CSV where one was expected.
    #[error("{0}: no *.runs.csv files found")]
    Empty(String),
}

/// Columns before the metrics.
pub const LEAD_COLUMNS: &[&str] = &["scenario", "seed", "verdict", "determinism"];
/// Columns after the metrics.
pub const TAIL_COLUMNS: &[&str] =
    &["trace_hash", "trace_events", "scenario_file", "scenario_hash", "git_rev", "random", "failures"];

/// Separator of the failure reasons inside the `failures` cell.
pub const FAILURE_SEP: &str = " | ";

/// One run: a row of `<scenario>.runs.csv`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRecord {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// `pass` or `fail`.
    pub verdict: String,
    /// `unchecked`, `ok` or `mismatch`.
    pub determinism: String,
    /// Metric values.
    pub metrics: Metrics,
    /// Trace hash (16 hex digits).
    pub trace_hash: String,
    /// Events in the trace.
    pub trace_events: u64,
    /// The scenario file as given on the command line.
    pub scenario_file: String,
    /// FNV-1a 64 of the scenario file (hex).
    pub scenario_hash: String,
    /// `git rev-parse HEAD` (with `-dirty` if the tree had changes), or `unknown`.
    pub git_rev: String,
    /// Drawn `[random]` values (`path=value;...`).
    pub random: String,
    /// Why it failed (empty when it passed).
    pub failures: Vec<String>,
    /// What the HTML report draws of this run (only right after running it, and only for the
    /// seed the report shows; never read from or written to CSV).
    pub view: Option<std::sync::Arc<view::RunView>>,
}

impl RunRecord {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }

    /// The command that replays this run exactly.
    pub fn replay_command(&self) -> String {
        let rev = if self.git_rev.is_empty() || self.git_rev == "unknown" {
            String::new()
        } else {
            format!("at git {}: ", self.git_rev)
        };
        format!(
            "{rev}cargo run --release -p sim -- {} --seed {} --scenario-hash {} --trace reports/trace-{}-{}.jsonl",
            self.scenario_file, self.seed, self.scenario_hash, self.scenario, self.seed
        )
    }

    /// The header row.
    pub fn header() -> Vec<String> {
        LEAD_COLUMNS
            .iter()
            .copied()
            .chain(MetricId::ALL.iter().map(|m| m.name()))
            .chain(TAIL_COLUMNS.iter().copied())
            .map(String::from)
            .collect()
    }

    /// The cells of this row, in [`RunRecord::header`] order.
    pub fn cells(&self) -> Vec<String> {
        let mut v = vec![self.scenario.clone(), self.seed.to_string(), self.verdict.clone(), self.determinism.clone()];
        for id in MetricId::ALL {
            v.push(self.metrics.get(*id).map(format_number).unwrap_or_default());
        }
        v.extend([
            self.trace_hash.clone(),
            self.trace_events.to_string(),
            self.scenario_file.clone(),
            self.scenario_hash.clone(),
            self.git_rev.clone(),
            self.random.clone(),
            self.failures.join(FAILURE_SEP),
        ]);
        v
    }
}

/// A metric value for a CSV cell: integers without a fraction, others to 6 decimals
/// (microseconds, for times), trailing zeros trimmed. Stable across platforms.
pub fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io { path: path.display().to_string(), source }
}

fn csv_err(path: &Path) -> impl FnOnce(csv::Error) -> ReportError + '_ {
    move |source| ReportError::Csv { path: path.display().to_string(), source }
}

/// Writes rows (header first) to `path`, creating its directory.
pub fn write_runs_csv(path: &Path, records: &[RunRecord]) -> Result<(), ReportError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut w = csv::Writer::from_path(path).map_err(csv_err(path))?;
    w.write_record(RunRecord::header()).map_err(csv_err(path))?;
    for r in records {
        w.write_record(r.cells()).map_err(csv_err(path))?;
    }
    w.flush().map_err(io_err(path))
}

/// Reads a runs CSV. Columns are found by name: unknown columns are ignored (a newer
/// metric in a newer file), missing metric columns read as no value.
pub fn read_runs_csv(path: &Path) -> Result<Vec<RunRecord>, ReportError> {
    let mut rd = csv::Reader::from_path(path).map_err(csv_err(path))?;
    let headers = rd.headers().map_err(csv_err(path))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    for required in ["scenario", "seed", "verdict"] {
        if col(required).is_none() {
            return Err(ReportError::Parse {
                path: path.display().to_string(),
                line: 1,
                msg: format!("missing column `{required}`: not a runs CSV"),
            });
        }
    }
    let metric_cols: Vec<(MetricId, usize)> =
        MetricId::ALL.iter().filter_map(|m| col(m.name()).map(|i| (*m, i))).collect();
    let mut out = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(csv_err(path))?;
        let line = rec.position().map_or(0, |p| p.line());
        let bad = |msg: String| ReportError::Parse { path: path.display().to_string(), line, msg };
        let get = |name: &str| col(name).and_then(|i| rec.get(i)).unwrap_or("").to_string();
        let seed = get("seed").parse::<u64>().map_err(|_| bad(format!("bad seed {:?}", get("seed"))))?;
        let mut metrics = Metrics::new();
        for (id, i) in &metric_cols {
            let cell = rec.get(*i).unwrap_or("");
            if !cell.is_empty() {
                let v = cell.parse::<f64>().map_err(|_| bad(format!("bad {} value {cell:?}", id.name())))?;
                metrics.set(*id, v);
            }
        }
        let failures = get("failures");
        out.push(RunRecord {
            scenario: get("scenario"),
            seed,
            verdict: get("verdict"),
            determinism: get("determinism"),
            metrics,
            trace_hash: get("trace_hash"),
            trace_events: get("trace_events").parse().unwrap_or(0),
            scenario_file: get("scenario_file"),
            scenario_hash: get("scenario_hash"),
            git_rev: get("git_rev"),
            random: get("random"),
            failures: if failures.is_empty() {
                Vec::new()
            } else {
                failures.split(FAILURE_SEP).map(String::from).collect()
            },
            view: None,
        });
    }
    Ok(out)
}

/// Reads every `*.runs.csv` of a directory, or one file.
pub fn load_runs(path: &Path) -> Result<Vec<RunRecord>, ReportError> {
    if !path.is_dir() {
        return read_runs_csv(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_err(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".runs.csv"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ReportError::Empty(path.display().to_string()));
    }
    let mut all = Vec::new();
    for f in files {
        all.extend(read_runs_csv(&f)?);
    }
    Ok(all)
}

/// min/p50/p90/max of one metric over a scenario's seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSummary {
    /// The metric.
    pub metric: MetricId,
    /// Seeds that had a value.
    pub n: usize,
    /// Minimum.
    pub min: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Maximum.
    pub max: f64,
}

/// Everything about one scenario's runs.
#[derive(Clone, Debug, PartialEq)]
pub struct ScenarioSummary {
    /// Scenario name.
    pub scenario: String,
    /// Runs.
    pub runs: usize,
    /// Runs that passed.
    pub passed: usize,
    /// Runs checked for determinism, and how many matched.
    pub determinism_checked: usize,
    /// Runs whose determinism check matched.
    pub determinism_ok: usize,
    /// Per metric with at least one value, in catalogue order.
    pub metrics: Vec<MetricSummary>,
}

/// Summarizes runs per scenario (scenarios sorted by name).
pub fn summarize(records: &[RunRecord]) -> Vec<ScenarioSummary> {
    let mut by: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        by.entry(&r.scenario).or_default().push(r);
    }
    by.into_iter()
        .map(|(name, rs)| {
            let metrics = MetricId::ALL
                .iter()
                .filter_map(|id| {
                    let mut v: Vec<f64> = rs.iter().filter_map(|r| r.metrics.get(*id)).collect();
                    if v.is_empty() {
                        return None;
                    }
                    v.sort_by(f64::total_cmp);
                    Some(MetricSummary {
                        metric: *id,
                        n: v.len(),
                        min: v[0],
                        p50: percentile_sorted(&v, 0.5),
                        p90: percentile_sorted(&v, 0.9),
                        max: v[v.len() - 1],
                    })
                })
                .collect();
            ScenarioSummary {
                scenario: name.to_string(),
                runs: rs.len(),
                passed: rs.iter().filter(|r| r.passed()).count(),
                determinism_checked: rs
                    .iter()
                    .filter(|r| r.determinism != "unchecked" && !r.determinism.is_empty())
                    .count(),
                determinism_ok: rs.iter().filter(|r| r.determinism == "ok").count(),
                metrics,
            }
        })
        .collect()
}

/// Writes a summary CSV: `scenario,metric,n,min,p50,p90,max`.
pub fn write_summary_csv(path: &Path, summaries: &[ScenarioSummary]) -> Result<(), ReportError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut w = csv::Writer::from_path(path).map_err(csv_err(path))?;
    w.write_record(["scenario", "metric", "n", "min", "p50", "p90", "max"]).map_err(csv_err(path))?;
    for s in summaries {
        for m in &s.metrics {
            w.write_record([
                s.scenario.clone(),
                m.metric.name().to_string(),
                m.n.to_string(),
                format_number(m.min),
                format_number(m.p50),
                format_number(m.p90),
                format_number(m.max),
            ])
            .map_err(csv_err(path))?;
        }
    }
    w.flush().map_err(io_err(path))
}

/// Writes `<dir>/<scenario>.runs.csv` and `<dir>/<scenario>.summary.csv` for every
/// scenario in `records`; returns the files written.
pub fn write_reports(dir: &Path, records: &[RunRecord]) -> Result<Vec<PathBuf>, ReportError> {
    let mut by: BTreeMap<&str, Vec<RunRecord>> = BTreeMap::new();
    for r in records {
        by.entry(&r.scenario).or_default().push(r.clone());
    }
    let mut written = Vec::new();
    for (name, mut rs) in by {
        rs.sort_by_key(|r| r.seed);
        let runs = dir.join(format!("{name}.runs.csv"));
        write_runs_csv(&runs, &rs)?;
        let summary = dir.join(format!("{name}.summary.csv"));
        write_summary_csv(&summary, &summarize(&rs))?;
        written.push(runs);
        written.push(summary);
    }
    Ok(written)
}

/// The human summary: per scenario a header line, a metric table, and every failing run
/// with its reasons and replay command.
pub fn render_table(records: &[RunRecord]) -> String {
    let mut out = String::new();
    for s in summarize(records) {
        let det = if s.determinism_checked == 0 {
            "determinism unchecked".to_string()
        } else {
            format!("determinism {}/{} ok", s.determinism_ok, s.determinism_checked)
        };
        let _ = writeln!(
            out,
            "{}: {} run(s), {} passed, {} failed, {det}",
            s.scenario,
            s.runs,
            s.passed,
            s.runs - s.passed
        );
        // Rows in blocks (outcome, latency, cost, faults, attacks, run), catalogue order within.
        let mut metrics: Vec<_> = s.metrics.iter().collect();
        metrics.sort_by_key(|m| m.metric.group());
        let rows: Vec<(Group, [String; 6])> = metrics
            .iter()
            .map(|m| {
                // A flag reads as yes/no in the table (the CSV keeps 1/0).
                let f = |v: f64| match m.metric.def().unit {
                    crate::metrics::Unit::Flag if v == 1.0 => "yes".to_string(),
                    crate::metrics::Unit::Flag if v == 0.0 => "no".to_string(),
                    _ => format_value(m.metric, v),
                };
                let row = [m.metric.name().to_string(), m.n.to_string(), f(m.min), f(m.p50), f(m.p90), f(m.max)];
                (m.metric.group(), row)
            })
            .collect();
        let head = ["metric", "n", "min", "p50", "p90", "max"].map(String::from);
        let mut widths = head.clone().map(|h| h.len());
        for (_, r) in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        // Rows sit two columns deeper than the head, under their block's title.
        let line_of = |r: &[String; 6], indent: &str| {
            let mut line = String::from(indent);
            for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                if i == 0 {
                    let w = w + 4 - indent.len();
                    let _ = write!(line, "{c:<w$}");
                } else {
                    let _ = write!(line, "  {c:>w$}");
                }
            }
            line.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line_of(&head, "  "));
        let mut group = None;
        for (g, r) in &rows {
            if group != Some(*g) {
                group = Some(*g);
                let _ = writeln!(out, "  {}", g.title());
            }
            let _ = writeln!(out, "{}", line_of(r, "    "));
        }
        let _ = writeln!(out, "  (over the runs' seeds; `sim metrics` says what each row measures and in which unit)");
        let worst = |id: MetricId| s.metrics.iter().find(|m| m.metric == id).map_or(0.0, |m| m.max);
        let (failed, in_faults) = (worst(MetricId::JoinsFailed), worst(MetricId::JoinsFailedInFaults));
        if failed > 0.0 {
            let _ = writeln!(
                out,
                "  (failed joins: up to {failed} a run, up to {in_faults} of them while a fault impaired the joiner's \
                 host or the authenticator, which is expected; the verdict comes from the checkers and \
                 [[expect]], and `--trace FILE` shows each failure's time and reason)"
            );
        }
        if worst(MetricId::MsgsLost) > 0.0 {
            let _ = writeln!(
                out,
                "  (lost messages: a message counts as lost when its recipient does not echo it, e.g. because \
                 it left, crashed or was cut off meanwhile)"
            );
        }
        let mut failing: Vec<&RunRecord> = records.iter().filter(|r| r.scenario == s.scenario && !r.passed()).collect();
        failing.sort_by_key(|r| r.seed);
        for r in failing {
            let _ = writeln!(out, "  FAIL seed {}:", r.seed);
            for f in &r.failures {
                let _ = writeln!(out, "    - {f}");
            }
            let _ = writeln!(out, "    replay: {}", r.replay_command());
        }
    }
    out
}

#[cfg(test)]
mod tests;
