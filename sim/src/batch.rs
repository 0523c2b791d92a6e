//! Running many (scenario, seed) jobs: one simulation per thread across the cores, the
//! determinism double-run, the progress bar, and turning each run into a report row.
//!
//! Turmoil simulations are single-threaded and `!Send`, so parallelism is one whole
//! simulation per worker thread; results are stored by job index, so the output order (and
//! therefore every report) does not depend on which thread finished first. The runner is
//! passed in as a function so this module is tested without turmoil.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::{MetricId, Metrics};
use crate::report::RunRecord;
use crate::report::view::ViewBuilder;
use crate::runner::RunOutput;
use crate::scenario::{LoadedScenario, Resolved, ScenarioError};
use crate::trace::{Determinism, Trace, TraceError, TraceSummary, trace_path};
use crate::verdict::judge;

/// A job could not produce a report row at all (as opposed to a run that failed its checks,
/// which is a row with verdict `fail`).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The scenario did not resolve for this seed (a `[random]` draw made it invalid).
    #[error("seed {seed}: {source}")]
    Scenario {
        /// The seed.
        seed: u64,
        /// Cause.
        source: ScenarioError,
    },
    /// The trace could not be written.
    #[error(transparent)]
    Trace(#[from] TraceError),
}

/// The function that runs one resolved scenario (normally [`crate::runner::run`]).
pub type RunFn = fn(&Resolved, Trace) -> Result<RunOutput, TraceError>;

/// How to run a batch.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// Run each seed twice and compare the traces.
    pub check_determinism: bool,
    /// Trace file template (see [`trace_path`]).
    pub trace: Option<PathBuf>,
    /// Worker threads.
    pub threads: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Git revision for the reports.
    pub git_rev: String,
    /// Collect what the HTML report draws (kept only for each scenario's first failing
    /// seed, else its first: see [`run_batch`]).
    pub views: bool,
}

impl BatchOptions {
    /// One thread, each seed run twice (a trace mismatch is a failure), quiet, no trace
    /// files, no HTML views: how tests and replays run scenarios.
    pub fn checked(git_rev: &str) -> Self {
        BatchOptions {
            check_determinism: true,
            trace: None,
            threads: 1,
            progress: false,
            git_rev: git_rev.into(),
            views: false,
        }
    }
}

/// One (scenario, seed) to run.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// The scenario.
    pub scenario: &'a LoadedScenario,
    /// The seed.
    pub seed: u64,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Runs the runner, turning a panic (turmoil panics on e.g. a full accept backlog) into a
/// run error instead of taking the whole batch down.
fn guarded(runner: RunFn, resolved: &Resolved, trace: Trace) -> Result<RunOutput, TraceError> {
    match catch_unwind(AssertUnwindSafe(|| runner(resolved, trace))) {
        Ok(r) => r,
        Err(p) => Ok(RunOutput {
            metrics: Metrics::new(),
            findings: Vec::new(),
            trace: TraceSummary { hash: 0, events: 0, lines: None, divergence: None, view: None },
            error: Some(format!("simulation panicked: {}", panic_message(&*p))),
        }),
    }
}

/// Runs one job (twice with `check_determinism`) and builds its report row.
pub fn run_job(job: Job<'_>, opts: &BatchOptions, several_runs: bool, runner: RunFn) -> Result<RunRecord, BatchError> {
    let src = job.scenario;
    let resolved = src.resolve(job.seed).map_err(|source| BatchError::Scenario { seed: job.seed, source })?;
    let name = &resolved.scenario.name;
    let mut first = Trace::new();
    if let Some(t) = &opts.trace {
        first = first.write_to(&trace_path(t, name, job.seed, several_runs))?;
    }
    if opts.check_determinism {
        first = first.keep_lines();
    }
    if opts.views {
        first = first.collect_view(ViewBuilder::new(&resolved));
    }
    let mut out = guarded(runner, &resolved, first)?;
    let determinism = if opts.check_determinism && out.error.is_none() {
        let lines = out.trace.lines.take().unwrap_or_default();
        let second = guarded(runner, &resolved, Trace::new().compare_with(lines))?;
        Determinism::from_runs(&out.trace, &second.trace)
    } else {
        out.trace.lines = None;
        Determinism::Unchecked
    };
    let mut metrics = out.metrics;
    let verdict = judge(&resolved.scenario.expect, &mut metrics, &out.findings, &determinism, out.error.as_deref());
    Ok(RunRecord {
        scenario: name.clone(),
        seed: job.seed,
        verdict: verdict.cell().into(),
        determinism: determinism.cell().into(),
        metrics,
        trace_hash: out.trace.hash_hex(),
        trace_events: out.trace.events,
        scenario_file: src.display_path(),
        scenario_hash: src.hash.clone(),
        git_rev: opts.git_rev.clone(),
        random: resolved.drawn_cell(),
        failures: verdict.failures,
        view: out.trace.view.take().map(|v| Arc::new(*v)),
    })
}

/// Runs every job on `opts.threads` threads; results in job order.
pub fn run_batch(jobs: &[Job<'_>], opts: &BatchOptions, runner: RunFn) -> Vec<Result<RunRecord, BatchError>> {
    let several_runs = jobs.len() > 1;
    let pb = if opts.progress {
        ProgressBar::with_draw_target(Some(jobs.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs [{elapsed_precise} < {eta}] {msg}")
            .expect("valid template"),
    );
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<RunRecord, BatchError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let threads = opts.threads.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let r = run_job(*job, opts, several_runs, runner);
                    if !matches!(&r, Ok(rec) if rec.passed()) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    pb.set_message(format!(
                        "{} seed {} done, {} failed",
                        job.scenario.scenario.name,
                        job.seed,
                        failed.load(Ordering::Relaxed)
                    ));
                    pb.inc(1);
                    let mut results = results.lock().expect("no worker panics while holding the lock");
                    results[i] = Some(r);
                    drop_unshown_views(jobs, &mut results, i);
                }
            });
        }
    });
    pb.finish_and_clear();
    results.into_inner().expect("workers done").into_iter().map(|r| r.expect("every job ran")).collect()
}

/// Keeps the HTML views that may still be shown: each scenario shows its first failing seed,
/// else its first, so once job `done` finished, a view survives only on its scenario's first
/// job and on its lowest finished failing job. Memory stays a few views per scenario however
/// many seeds run.
fn drop_unshown_views(jobs: &[Job<'_>], results: &mut [Option<Result<RunRecord, BatchError>>], done: usize) {
    let same = |i: usize| std::ptr::eq(jobs[i].scenario, jobs[done].scenario);
    let mine: Vec<usize> = (0..jobs.len()).filter(|&i| same(i)).collect();
    let first = mine[0];
    let first_failing = mine.iter().copied().find(|&i| matches!(&results[i], Some(Ok(rec)) if !rec.passed()));
    for &i in &mine {
        if i == first || Some(i) == first_failing {
            continue;
        }
        if let Some(Ok(rec)) = &mut results[i] {
            rec.view = None;
        }
    }
}

/// Wall-clock metrics for a run (the only place wall time enters a report).
pub fn set_wall_metrics(m: &mut Metrics, sim_secs: f64, wall_secs: f64) {
    m.set(MetricId::SimSeconds, sim_secs);
    m.set(MetricId::WallSeconds, wall_secs);
    if wall_secs > 0.0 {
        m.set(MetricId::SimWallRatio, sim_secs / wall_secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TraceEvent;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    const TEXT: &str = r#"name = "fake"
duration = "10s"
seeds = [1, 2, 3]
settle = "0s"

[[joiners]]
name = "g"
count = 4
joiners_per_host = 2

[[expect]]
metric = "join_latency_max_s"
max = "1s"
"#;

    fn opts(check: bool) -> BatchOptions {
        BatchOptions {
            check_determinism: check,
            trace: None,
            threads: 2,
            progress: false,
            git_rev: "rev".into(),
            views: false,
        }
    }

    /// A deterministic fake: events and join latency derived from the seed only.
    fn det_runner(r: &Resolved, mut t: Trace) -> Result<RunOutput, TraceError> {
        for i in 0..20 {
            t.record(&TraceEvent::new(Duration::from_millis(i * r.seed), "sim", "tick", serde_json::Value::Null))?;
        }
        let mut metrics = Metrics::new();
        metrics.set(MetricId::JoinLatencyMax, r.seed as f64 * 0.4); // seed 3 → 1.2 s > 1 s
        Ok(RunOutput { metrics, findings: vec![], trace: t.finish()?, error: None })
    }

    static CALLS: AtomicU64 = AtomicU64::new(0);

    /// Differs on every call from event 5 on.
    fn flaky_runner(_: &Resolved, mut t: Trace) -> Result<RunOutput, TraceError> {
        let call = CALLS.fetch_add(1, Ordering::SeqCst);
        for i in 0..10u64 {
            let kind = if i >= 5 { format!("k{call}") } else { "same".into() };
            t.record(&TraceEvent::new(Duration::from_millis(i), "sim", kind, serde_json::Value::Null))?;
        }
        let mut metrics = Metrics::new();
        metrics.set(MetricId::JoinLatencyMax, 0.1);
        Ok(RunOutput { metrics, findings: vec![], trace: t.finish()?, error: None })
    }

    fn panicking_runner(_: &Resolved, _: Trace) -> Result<RunOutput, TraceError> {
        panic!("192.168.0.1:4702 server socket buffer full");
    }

    #[test]
    fn batch_results_are_in_job_order_with_verdicts() {
        let src = LoadedScenario::from_text("s/fake.toml", TEXT.into()).unwrap();
        let jobs: Vec<Job> = src.scenario.seeds.0.iter().map(|&seed| Job { scenario: &src, seed }).collect();
        let out = run_batch(&jobs, &opts(true), det_runner);
        let recs: Vec<RunRecord> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(recs.iter().map(|r| r.seed).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(recs.iter().map(|r| r.verdict.as_str()).collect::<Vec<_>>(), ["pass", "pass", "fail"]);
        assert!(recs.iter().all(|r| r.determinism == "ok"));
        assert_eq!(recs[2].failures, ["expect join_latency_max_s <= 1s: got 1.20s"]);
        assert_eq!(recs[0].trace_events, 20);
        assert_eq!(recs[0].scenario_file, "s/fake.toml");
        assert_eq!(recs[0].scenario_hash, src.hash);
        assert_eq!(recs[0].git_rev, "rev");
        assert_ne!(recs[0].trace_hash, recs[1].trace_hash);
    }

    #[test]
    fn nondeterminism_is_caught_and_fails_the_run() {
        let src = LoadedScenario::from_text("s/fake.toml", TEXT.into()).unwrap();
        let rec = run_job(Job { scenario: &src, seed: 1 }, &opts(true), false, flaky_runner).unwrap();
        assert_eq!(rec.determinism, "mismatch");
        assert_eq!(rec.verdict, "fail");
        assert!(rec.failures[0].contains("event #5"), "{:?}", rec.failures);
        // Without the check the same runner passes: the check is what catches it.
        let rec = run_job(Job { scenario: &src, seed: 1 }, &opts(false), false, flaky_runner).unwrap();
        assert_eq!((rec.determinism.as_str(), rec.verdict.as_str()), ("unchecked", "pass"));
    }

    #[test]
    fn a_panicking_simulation_becomes_a_failed_row() {
        let src = LoadedScenario::from_text("s/fake.toml", TEXT.into()).unwrap();
        let rec = run_job(Job { scenario: &src, seed: 1 }, &opts(true), false, panicking_runner).unwrap();
        assert_eq!(rec.verdict, "fail");
        assert!(rec.failures[0].contains("simulation panicked: 192.168.0.1:4702 server socket buffer full"));
    }

    #[test]
    fn views_are_kept_for_the_first_seed_and_the_first_failing_one_only() {
        let src = LoadedScenario::from_text("s/fake.toml", TEXT.into()).unwrap();
        let other = LoadedScenario::from_text("s/fake2.toml", TEXT.replace("\"fake\"", "\"fake2\"")).unwrap();
        let mut jobs: Vec<Job> = [1, 2, 3, 4].iter().map(|&seed| Job { scenario: &src, seed }).collect();
        jobs.extend([1, 2].iter().map(|&seed| Job { scenario: &other, seed }));
        let o = BatchOptions { views: true, ..opts(false) };
        let recs: Vec<RunRecord> = run_batch(&jobs, &o, det_runner).into_iter().map(Result::unwrap).collect();
        // Seeds 3 and 4 fail (join latency 1.2 s, 1.6 s > 1 s): seed 1 and seed 3 keep theirs.
        let kept: Vec<(String, u64)> =
            recs.iter().filter(|r| r.view.is_some()).map(|r| (r.scenario.clone(), r.seed)).collect();
        assert_eq!(kept, [("fake".to_string(), 1), ("fake".to_string(), 3), ("fake2".to_string(), 1)]);
        assert_eq!(recs[0].view.as_ref().unwrap().seed, 1);
    }

    #[test]
    fn trace_files_are_written_per_run() {
        let src = LoadedScenario::from_text("s/fake.toml", TEXT.into()).unwrap();
        let dir = std::env::temp_dir().join(format!("sim-batch-test-{}", std::process::id()));
        let mut o = opts(false);
        o.trace = Some(dir.join("t.jsonl"));
        let jobs: Vec<Job> = [1, 2].iter().map(|&seed| Job { scenario: &src, seed }).collect();
        let recs: Vec<RunRecord> = run_batch(&jobs, &o, det_runner).into_iter().map(Result::unwrap).collect();
        for r in &recs {
            let p = dir.join(format!("t.fake.{}.jsonl", r.seed));
            assert_eq!(format!("{:016x}", crate::trace::hash_file(&p).unwrap()), r.trace_hash);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
