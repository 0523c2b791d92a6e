//! The HTML reports: `<out>/<scenario>.html` after a run (unless `--no-html`) and
//! `<NEW>/compare.html` from `sim compare NEW BASE`.
//!
//! A scenario page shows, from the run's own records and its trace-fed [`RunView`]:
//! - the parameters (scenario file and hash, git revision, seeds, size, heartbeat bounds);
//! - a verdict table per seed with the failure reasons and the replay command;
//! - for the chosen seed (the first failing one, else the first): membership over time (the
//!   authenticator's member count, each live joiner's view — or min/median/max over the live
//!   joiners when there are more than [`view::MAX_JOINER_SERIES`] — with every fault window
//!   shaded and labelled and every removal marked by reason), and the fault windows as a table;
//! - across seeds: join latency, convergence, detection latency against the heartbeat bound
//!   (timeout + one interval), distribution bytes per list change;
//! - the summary table of every metric.
//!
//! A compare page shows, per scenario and metric, the baseline and new values of each seed,
//! the tolerance, and a mark on each regression, after the failures and notes of the
//! comparison. Pages are built with [`pyile_plots`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pyile_plots::chart::{Band, LineChart, RefLine, Series, SeriesKind, Window, color};
use pyile_plots::units::{byte_scale, tick, time_scale};
use pyile_plots::{Cell, Page, PlotError};

use super::compare::{CompareOutcome, Tolerances};
use super::view::{self, RunView};
use super::{ReportError, RunRecord, summarize};
use crate::metrics::{Better, MetricId, Unit, format_value};

/// `<dir>/<scenario>.html`.
pub fn scenario_html_path(dir: &Path, scenario: &str) -> PathBuf {
    dir.join(format!("{scenario}.html"))
}

/// `<new>/compare.html`, or beside a NEW file: `<file stem>.compare.html`.
pub fn compare_html_path(new: &Path) -> PathBuf {
    if new.is_dir() {
        new.join("compare.html")
    } else {
        let stem = new.file_name().map(|s| s.to_string_lossy().trim_end_matches(".runs.csv").to_string());
        new.with_file_name(format!("{}.compare.html", stem.unwrap_or_else(|| "runs".into())))
    }
}

/// Shading colour of a fault window by kind.
pub fn window_color(kind: &str) -> &'static str {
    match kind {
        "partition" => "#d62728",
        "hold" => "#9467bd",
        "loss" => "#e07b00",
        "crash" => "#555555",
        "ban_flood" => "#8c564b",
        "churn" => "#2a8a3e",
        "attack" => "#a07800",
        _ => "#7f7f7f",
    }
}

const REASON_COLORS: [&str; 6] = ["#c2185b", "#00838f", "#6d4c41", "#37474f", "#827717", "#4527a0"];

/// Writes one page per scenario of `records` into `dir`; returns the files written.
pub fn write_scenario_pages(dir: &Path, records: &[RunRecord]) -> Result<Vec<PathBuf>, ReportError> {
    let mut by: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for r in records {
        by.entry(&r.scenario).or_default().push(r);
    }
    let mut written = Vec::new();
    for (name, mut rs) in by {
        rs.sort_by_key(|r| r.seed);
        let path = scenario_html_path(dir, name);
        scenario_page(&rs)?.write(&path)?;
        written.push(path);
    }
    Ok(written)
}

/// The seed a scenario page shows: the first failing one, else the first.
pub fn chosen<'a>(records: &[&'a RunRecord]) -> Option<&'a RunRecord> {
    records.iter().find(|r| !r.passed()).or(records.first()).copied()
}

fn secs_cell(v: f64) -> String {
    pyile::units::Dur(std::time::Duration::from_secs_f64(v.max(0.0))).to_string()
}

/// The page of one scenario's runs (`records` sorted by seed, non-empty).
pub fn scenario_page(records: &[&RunRecord]) -> Result<Page, PlotError> {
    let first = records[0];
    let passed = records.iter().filter(|r| r.passed()).count();
    let mut page = Page::new(format!("sim: {}", first.scenario));
    page.lead(&format!(
        "{} run(s), {} passed, {} failed. Simulated time throughout; made by `sim` from the runs' own traces and \
         metrics.",
        records.len(),
        passed,
        records.len() - passed
    ));
    let chosen = chosen(records).expect("records is not empty");
    let view = chosen.view.as_deref();
    let seeds: Vec<String> = records.iter().map(|r| r.seed.to_string()).collect();
    let mut params: Vec<(String, String)> = vec![
        ("scenario file".into(), first.scenario_file.clone()),
        ("scenario hash (FNV-1a)".into(), first.scenario_hash.clone()),
        ("git revision".into(), first.git_rev.clone()),
        ("seeds".into(), abbreviate(&seeds)),
        ("determinism".into(), determinism_line(records)),
    ];
    if let Some(v) = view {
        params.push(("duration".into(), secs_cell(v.duration)));
        params.push(("joiners".into(), v.joiner_count.to_string()));
        params.push((
            "heartbeat".into(),
            format!(
                "interval {}, timeout {} (removal bound: timeout + one interval = {})",
                secs_cell(v.heartbeat_interval),
                secs_cell(v.heartbeat_timeout),
                secs_cell(v.heartbeat_timeout + v.heartbeat_interval)
            ),
        ));
    }
    if let Some(h) = chosen.metrics.get(MetricId::Hosts) {
        params.push(("simulated hosts".into(), format!("{h:.0}")));
    }
    if !chosen.random.is_empty() {
        params.push((format!("[random] drawn for seed {}", chosen.seed), chosen.random.clone()));
    }
    page.params(&params);

    verdict_section(&mut page, records);
    let why = if chosen.passed() { "every seed passed: the first" } else { "the first failing seed" };
    page.section(&format!("Seed {} ({why}): membership over time", chosen.seed));
    match view {
        Some(v) => membership_section(&mut page, v)?,
        None => {
            page.note("No timeline was collected for this seed (reports read back from CSV carry none).");
        }
    }
    across_seeds_section(&mut page, records, view)?;
    metrics_section(&mut page, records);
    Ok(page)
}

fn determinism_line(records: &[&RunRecord]) -> String {
    let checked = records.iter().filter(|r| r.determinism == "ok" || r.determinism == "mismatch").count();
    if checked == 0 {
        "unchecked (run with --check-determinism)".into()
    } else {
        let ok = records.iter().filter(|r| r.determinism == "ok").count();
        format!("{ok} of {checked} seed(s) replayed byte for byte")
    }
}

fn abbreviate(items: &[String]) -> String {
    if items.len() <= 20 {
        items.join(", ")
    } else {
        format!("{}, ... {} ({} seeds)", items[..10].join(", "), items[items.len() - 1], items.len())
    }
}

fn verdict_section(page: &mut Page, records: &[&RunRecord]) {
    page.section("Verdict per seed");
    let rows: Vec<Vec<Cell>> = records
        .iter()
        .map(|r| {
            let verdict = Cell::new(r.verdict.clone()).class(if r.passed() { "good" } else { "bad" });
            let det = Cell::new(r.determinism.clone()).class(if r.determinism == "mismatch" { "bad" } else { "" });
            vec![
                Cell::num(r.seed.to_string()),
                verdict,
                det,
                Cell::new(if r.failures.is_empty() { "-".to_string() } else { r.failures.join("\n") }),
                Cell::new(r.replay_command()).class("mono"),
                Cell::new(r.trace_hash.clone()).class("mono"),
            ]
        })
        .collect();
    page.table(&["seed", "verdict", "determinism", "failure reasons", "replay", "trace hash"], &rows);
}

/// The membership chart and the fault-window table of one seed.
fn membership_section(page: &mut Page, v: &RunView) -> Result<(), PlotError> {
    let mut chart = LineChart::new(
        format!("seed {}: members over time", v.seed),
        "simulated time (s)",
        "members (count, the authenticator included)",
    );
    chart.x_range = Some((0.0, v.duration));
    chart.height = Some(460);
    let nan = f64::NAN;
    let caption = if v.joiners.is_empty() {
        chart.bands.push(Band {
            name: "joiner views, min to max over live joiners".into(),
            points: v
                .samples
                .iter()
                .filter_map(|s| s.views.map(|(lo, _, hi)| (s.t, f64::from(lo), f64::from(hi))))
                .collect(),
            color: "#59a14f".into(),
        });
        chart.series.push(
            Series::new(
                "median joiner view",
                SeriesKind::Step,
                v.samples.iter().map(|s| (s.t, s.views.map_or(nan, |(_, m, _)| f64::from(m)))).collect(),
            )
            .color("#2a7a33"),
        );
        chart.series.push(
            Series::new("live joiners", SeriesKind::Step, v.samples.iter().map(|s| (s.t, f64::from(s.live))).collect())
                .color("#f28e2b"),
        );
        format!(
            "{} joiners: more than {} are drawn as the min-max band and median of the live joiners' view sizes \
             (members in each joiner's latest list), with the number of live joiners; sampled every {} of \
             simulated time.",
            v.joiner_count,
            view::MAX_JOINER_SERIES,
            secs_cell(sample_step(v))
        )
    } else {
        for (i, name) in v.joiners.iter().enumerate() {
            chart.series.push(
                Series::new(
                    format!("view of {name}"),
                    SeriesKind::Step,
                    v.samples.iter().map(|s| (s.t, s.per_joiner[i].map_or(nan, f64::from))).collect(),
                )
                .color(color(i + 2)),
            );
        }
        format!(
            "Each joiner's view: members in its latest list while it is joined (a gap while it is not); sampled \
             every {} of simulated time.",
            secs_cell(sample_step(v))
        )
    };
    // Wide and light, under the joiners' views, which usually equal it and stay visible on it.
    chart.series.insert(
        0,
        Series::new(
            "authenticator's member list",
            SeriesKind::Step,
            v.samples.iter().map(|s| (s.t, s.auth_members.map_or(nan, f64::from))).collect(),
        )
        .color("#9ab7dc")
        .width(6),
    );
    for (i, (reason, n)) in v.removal_counts.iter().enumerate() {
        chart.series.push(
            Series::new(
                format!("removed: {reason} ({n})"),
                SeriesKind::Triangles,
                v.removals.iter().filter(|r| &r.reason == reason).map(|r| (r.t, f64::from(r.members))).collect(),
            )
            .color(REASON_COLORS[i % REASON_COLORS.len()]),
        );
    }
    chart.windows = v
        .windows
        .iter()
        .map(|w| Window { start: w.start, end: w.end, label: w.label.clone(), color: window_color(&w.kind).into() })
        .collect();
    let shown_removals: u64 = v.removal_counts.values().sum();
    let mut cap = caption;
    if shown_removals > v.removals.len() as u64 {
        cap.push_str(&format!(" The first {} of {shown_removals} removals are marked.", v.removals.len()));
    }
    cap.push_str(" Shaded: the fault windows (table below). Triangles: removals by the authenticator, by reason.");
    page.figure(&chart.caption(cap).render()?);

    if v.windows.is_empty() {
        page.note("No fault windows in this run.");
    } else {
        let rows: Vec<Vec<Cell>> = v
            .windows
            .iter()
            .map(|w| {
                vec![
                    Cell::new(w.kind.clone()),
                    Cell::new(w.label.clone()),
                    Cell::num(secs_cell(w.start)),
                    Cell::num(secs_cell(w.end)),
                    Cell::num(secs_cell(w.end - w.start)),
                ]
            })
            .collect();
        page.table(&["fault", "label", "from", "to", "lasting"], &rows);
    }
    let rows: Vec<Vec<Cell>> =
        v.removal_counts.iter().map(|(r, n)| vec![Cell::new(r.clone()), Cell::num(n.to_string())]).collect();
    if !rows.is_empty() {
        page.table(&["removal reason", "removals"], &rows);
    }
    Ok(())
}

fn sample_step(v: &RunView) -> f64 {
    match v.samples.as_slice() {
        [a, b, ..] => b.t - a.t,
        _ => v.duration,
    }
}

/// Per-seed points of some metrics, in a unit chosen from their largest value.
fn per_seed_chart(
    title: &str,
    records: &[&RunRecord],
    metrics: &[(MetricId, &str)],
    refs: Vec<(f64, String)>,
) -> Option<LineChart> {
    let max = records
        .iter()
        .flat_map(|r| metrics.iter().filter_map(|(m, _)| r.metrics.get(*m)))
        .chain(refs.iter().map(|r| r.0))
        .fold(0.0, f64::max);
    if !records.iter().any(|r| metrics.iter().any(|(m, _)| r.metrics.get(*m).is_some())) {
        return None;
    }
    let unit = metrics[0].0.def().unit;
    let (scale, quantity) = match unit {
        Unit::Seconds => (time_scale(max), "latency"),
        Unit::Bytes => (byte_scale(max), "size"),
        _ => (pyile_plots::units::Scale { divisor: 1.0, name: "count" }, "value"),
    };
    let mut c = LineChart::new(title, "seed", format!("{quantity} ({})", scale.name));
    let (lo, hi) = (records[0].seed as f64, records[records.len() - 1].seed as f64);
    c.x_range = Some((lo - 0.5, hi + 0.5));
    c.x_integers = true;
    c.height = Some(320);
    for (i, (m, label)) in metrics.iter().enumerate() {
        let pts: Vec<(f64, f64)> =
            records.iter().filter_map(|r| r.metrics.get(*m).map(|v| (r.seed as f64, scale.apply(v)))).collect();
        // Triangles for the third statistic: it often sits on the second (max = p90 in few samples).
        let kind = if i == 2 { SeriesKind::Triangles } else { SeriesKind::Points };
        c.series.push(Series::new(*label, kind, pts).color(color(i)));
    }
    for (i, (y, label)) in refs.into_iter().enumerate() {
        c.refs.push(RefLine { y: scale.apply(y), label, color: ["#d62728", "#555555"][i % 2].into() });
    }
    Some(c)
}

fn across_seeds_section(page: &mut Page, records: &[&RunRecord], view: Option<&RunView>) -> Result<(), PlotError> {
    page.section("Across seeds");
    page.note("One point per seed and statistic; each seed's statistic is over that run's joins, changes or removals.");
    let charts = [
        per_seed_chart(
            "join latency (connect to first list)",
            records,
            &[(MetricId::JoinLatencyP50, "p50"), (MetricId::JoinLatencyP90, "p90"), (MetricId::JoinLatencyMax, "max")],
            vec![],
        ),
        per_seed_chart(
            "convergence (list change to every live joiner holding it)",
            records,
            &[(MetricId::ConvergenceP50, "p50"), (MetricId::ConvergenceP90, "p90"), (MetricId::ConvergenceMax, "max")],
            vec![],
        ),
        per_seed_chart(
            "detection latency (fault to removal by the authenticator)",
            records,
            &[
                (MetricId::DetectionLatencyP50, "p50"),
                (MetricId::DetectionLatencyMax, "max"),
                (MetricId::AuthLossDetectionMax, "joiners noticing a lost authenticator, max"),
            ],
            view.map(|v| {
                vec![
                    (
                        v.heartbeat_timeout + v.heartbeat_interval,
                        format!(
                            "bound: heartbeat timeout {} + one interval {}",
                            secs_cell(v.heartbeat_timeout),
                            secs_cell(v.heartbeat_interval)
                        ),
                    ),
                    (v.heartbeat_timeout, format!("heartbeat timeout {}", secs_cell(v.heartbeat_timeout))),
                ]
            })
            .unwrap_or_default(),
        ),
        per_seed_chart(
            "distribution bytes per member-list change",
            records,
            &[(MetricId::DistBytesPerChange, "bytes sent per list change")],
            vec![],
        ),
    ];
    let mut drawn = 0;
    for c in charts.into_iter().flatten() {
        page.figure(&c.render()?);
        drawn += 1;
    }
    if drawn < 4 {
        page.note("Charts without samples in any seed (no joins, changes or removals) are left out.");
    }
    Ok(())
}

fn metrics_section(page: &mut Page, records: &[&RunRecord]) {
    page.section("Every metric over the seeds");
    let owned: Vec<RunRecord> = records.iter().map(|r| RunRecord { view: None, ..(*r).clone() }).collect();
    let mut rows = Vec::new();
    for s in summarize(&owned) {
        let mut ms: Vec<_> = s.metrics.iter().collect();
        ms.sort_by_key(|m| m.metric.group());
        for m in ms {
            let f = |v: f64| format_value(m.metric, v);
            rows.push(vec![
                Cell::new(m.metric.group().title()),
                Cell::new(m.metric.name()).class("mono"),
                Cell::num(m.n.to_string()),
                Cell::num(f(m.min)),
                Cell::num(f(m.p50)),
                Cell::num(f(m.p90)),
                Cell::num(f(m.max)),
                Cell::new(m.metric.def().doc),
            ]);
        }
    }
    page.table(&["block", "metric", "n", "min", "p50", "p90", "max", "what it measures"], &rows);
}

/// The page of `sim compare NEW BASE`.
pub fn compare_page(
    new: &[RunRecord],
    base: &[RunRecord],
    tol: &Tolerances,
    outcome: &CompareOutcome,
    (new_path, base_path): (&Path, &Path),
) -> Result<Page, PlotError> {
    let mut page = Page::new(format!("sim compare: {}", if outcome.passed() { "PASS" } else { "FAIL" }));
    page.lead(&format!(
        "{} run(s) compared, {} failure(s). A metric regresses when it is worse than its baseline beyond its \
         tolerance: new > base × (1 + rel) + abs for lower-is-better metrics, new < base × (1 − rel) − abs for \
         higher-is-better ones. Informational metrics are not compared.",
        outcome.compared,
        outcome.failures.len()
    ));
    page.params(&[("new runs", new_path.display().to_string()), ("baseline runs", base_path.display().to_string())]);
    if !outcome.failures.is_empty() {
        page.section("Failures");
        let rows: Vec<Vec<Cell>> = outcome
            .failures
            .iter()
            .map(|f| {
                vec![
                    Cell::new(f.scenario.clone()),
                    Cell::num(f.seed.to_string()),
                    Cell::new(f.what.clone()).class("bad"),
                    Cell::new(f.replay.clone()).class("mono"),
                ]
            })
            .collect();
        page.table(&["scenario", "seed", "what", "replay"], &rows);
    }
    if !outcome.changed_behaviour.is_empty() {
        page.section("Behaviour changed");
        for (scenario, seeds) in &outcome.changed_behaviour {
            let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
            page.note(&format!(
                "{scenario}: seed(s) {} produced a different trace than the baseline with the same scenario file: \
                 refresh the baselines deliberately (sim baseline) and say why, or find out why",
                seeds.join(", ")
            ));
        }
    }
    if !outcome.notes.is_empty() {
        page.section("Notes");
        for n in &outcome.notes {
            page.note(n);
        }
    }
    let key = |r: &RunRecord| (r.scenario.clone(), r.seed);
    let base_by: BTreeMap<_, &RunRecord> = base.iter().map(|r| (key(r), r)).collect();
    let mut scenarios: BTreeMap<&str, Vec<&RunRecord>> = BTreeMap::new();
    for r in new {
        scenarios.entry(&r.scenario).or_default().push(r);
    }
    for (name, mut runs) in scenarios {
        runs.sort_by_key(|r| r.seed);
        let regressions = count_regressions(&runs, &base_by, tol);
        page.section(&format!(
            "{name}: {} seed(s), {}",
            runs.len(),
            match regressions {
                0 => "no regression".to_string(),
                n => format!("{n} regression(s)"),
            }
        ));
        let mut head: Vec<String> = vec!["metric".into(), "better".into(), "tolerance".into()];
        for r in &runs {
            head.extend([format!("seed {} base", r.seed), format!("seed {} new", r.seed), "vs base".into()]);
        }
        let mut rows = Vec::new();
        for id in MetricId::ALL.iter().copied().filter(|id| id.def().better != Better::Info) {
            let (rel, abs) = tol.of(id);
            let mut row = vec![
                Cell::new(id.name()).class("mono"),
                Cell::new(if id.def().better == Better::Lower { "lower" } else { "higher" }),
                Cell::num(format!("{}% + {}", tick(rel * 100.0), format_value(id, abs))).class("nowrap"),
            ];
            let mut any = false;
            for r in &runs {
                let b = base_by.get(&key(r)).and_then(|b| b.metrics.get(id));
                let n = r.metrics.get(id);
                any |= b.is_some() || n.is_some();
                let cell = |v: Option<f64>| Cell::num(v.map_or("-".to_string(), |v| format_value(id, v)));
                let mark = match (n, b) {
                    (Some(n), Some(b)) if tol.is_regression(id, n, b) => Cell::new("✗ worse").class("bad nowrap"),
                    (Some(n), Some(b)) if n != b => {
                        let better = match id.def().better {
                            Better::Lower => n < b,
                            _ => n > b,
                        };
                        Cell::new(if better { "better" } else { "within" }).class(if better { "good" } else { "" })
                    }
                    (Some(_), None) => Cell::new("new"),
                    (None, Some(_)) => Cell::new("gone").class("warn"),
                    _ => Cell::new(""),
                };
                let regressed = mark.class.contains("bad");
                let new_cell = if regressed { cell(n).class("bad") } else { cell(n) };
                row.extend([cell(b), new_cell, mark]);
            }
            if any {
                rows.push(row);
            }
        }
        let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
        page.table(&head_refs, &rows);
    }
    Ok(page)
}

/// Regressed (metric, seed) pairs of one scenario's runs.
pub fn count_regressions(
    runs: &[&RunRecord],
    base_by: &BTreeMap<(String, u64), &RunRecord>,
    tol: &Tolerances,
) -> usize {
    let mut n = 0;
    for r in runs {
        let Some(b) = base_by.get(&(r.scenario.clone(), r.seed)) else { continue };
        for id in MetricId::ALL.iter().copied().filter(|id| id.def().better != Better::Info) {
            if let (Some(nv), Some(bv)) = (r.metrics.get(id), b.metrics.get(id))
                && tol.is_regression(id, nv, bv)
            {
                n += 1;
            }
        }
    }
    n
}
