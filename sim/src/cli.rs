//! The command line: `sim SCENARIO... [--seed N | --seeds A..B] [--check-determinism]
//! [--trace FILE] [--out DIR] [--no-html]`, `sim compare NEW BASE`, `sim baseline`,
//! `sim metrics`.
//!
//! This module parses arguments, loads scenarios, prints the cost warning, hands jobs to
//! [`crate::batch`], writes the reports and prints the summary. Every error it returns is
//! one line (`main` prints it after `error: `); exit status 0 means every run passed (or the
//! comparison passed), 1 means a run or comparison failed, 2 means the command could not run.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::batch::{BatchError, BatchOptions, Job, run_batch};
use crate::cost;
use crate::metrics::{Better, MetricId};
use crate::report::compare::{Tolerances, compare};
use crate::report::html::{self, compare_html_path};
use crate::report::{ReportError, RunRecord, load_runs, render_table, write_reports};
use crate::scenario::{LoadedScenario, ScenarioError, SeedSet};

/// Default report directory.
pub const DEFAULT_OUT: &str = "reports";
/// Default baseline directory.
pub const DEFAULT_BASELINE: &str = "reports/baseline";
/// Default scenario directory (for `sim baseline` without files).
pub const DEFAULT_SCENARIOS: &str = "scenarios";

/// The command could not run. Every variant prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A scenario file is unusable.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A report could not be read or written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A job could not run.
    #[error("{scenario}: {source}")]
    Batch {
        /// Scenario name.
        scenario: String,
        /// Cause.
        source: BatchError,
    },
    /// `--scenario-hash` does not match the file.
    #[error(
        "{path}: file hash {actual} differs from --scenario-hash {expected}: the scenario changed since the run being replayed"
    )]
    HashMismatch {
        /// The file.
        path: String,
        /// Expected hash.
        expected: String,
        /// Actual hash.
        actual: String,
    },
    /// Bad arguments that clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// File-system trouble outside reports.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// What the command amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed.
    Pass,
    /// A run or comparison failed (exit 1).
    Fail,
}

/// Deterministic simulations of Pyile networks on turmoil, driven by scenario files.
#[derive(Debug, Parser)]
#[command(name = "sim", version, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare new runs with baseline runs (files or directories of *.runs.csv). Also writes
    /// NEW/compare.html (or X.compare.html beside a NEW file X.runs.csv): every metric of
    /// every seed with both values, the tolerance and a mark on each regression.
    Compare {
        /// New runs.
        new: PathBuf,
        /// Baseline runs.
        base: PathBuf,
        /// Override a metric's tolerance: `METRIC=REL[,ABS]` (REL 0.3 = 30 %). Repeatable.
        #[arg(long = "tolerance", value_name = "METRIC=REL[,ABS]")]
        tolerances: Vec<String>,
    },
    /// Refresh the baselines deliberately: run the CI scenarios on their seeds with the
    /// determinism check (or copy runs from --from) and write them to the baseline directory.
    Baseline {
        /// Scenario files (default: every scenarios/*.toml with ci = true).
        scenarios: Vec<PathBuf>,
        /// Take existing runs from this directory instead of running.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Baseline directory.
        #[arg(long, default_value = DEFAULT_BASELINE)]
        dir: PathBuf,
        /// Write even if a run failed or the tree has uncommitted changes.
        #[arg(long)]
        force: bool,
        /// Seeds instead of each scenario's own.
        #[arg(long)]
        seeds: Option<String>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List the metrics (CSV columns) with their units and directions.
    Metrics,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Scenario files to run.
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run these seeds: N, A..B (end exclusive), A..=B, or a comma list. Default: the
    /// scenario's own `seeds`.
    #[arg(long)]
    seeds: Option<String>,
    /// Run each seed twice and compare the traces; a difference fails the run.
    #[arg(long)]
    check_determinism: bool,
    /// Write each run's event trace as JSON lines here (`{scenario}`/`{seed}` expand; with
    /// several runs and no placeholders, `.<scenario>.<seed>` is added before the extension).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Report directory.
    #[arg(long, default_value = DEFAULT_OUT)]
    out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Do not write `<out>/<scenario>.html` (by default each scenario gets one self-contained
    /// page next to its CSVs: verdicts per seed, membership over time with the fault windows
    /// shaded for the first failing seed (else the first), latency distributions across seeds).
    #[arg(long)]
    no_html: bool,
    /// Refuse to run unless the scenario file has this FNV-1a hash (exact replays).
    #[arg(long, value_name = "HEX")]
    scenario_hash: Option<String>,
}

/// `git rev-parse HEAD`, with `-dirty` when tracked files changed; `unknown` without git.
pub fn git_revision() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(rev) if !rev.is_empty() => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        _ => "unknown".into(),
    }
}

fn threads(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

/// Loads every file, reporting all bad ones (one line each) before giving up.
fn load_all(paths: &[PathBuf]) -> Result<Vec<LoadedScenario>, Vec<CliError>> {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for p in paths {
        match LoadedScenario::load(p) {
            Ok(s) => ok.push(s),
            Err(e) => errs.push(e.into()),
        }
    }
    if errs.is_empty() { Ok(ok) } else { Err(errs) }
}

struct RunPlan {
    seeds: Option<SeedSet>,
    check_determinism: bool,
    trace: Option<PathBuf>,
    threads: usize,
    quiet: bool,
    /// Collect what the HTML report draws.
    views: bool,
}

/// Runs scenarios; returns the rows, or every error.
fn run_scenarios(scenarios: &[LoadedScenario], plan: &RunPlan) -> Result<Vec<RunRecord>, Vec<CliError>> {
    let mut jobs = Vec::new();
    let mut errs = Vec::new();
    for sc in scenarios {
        let seeds = plan.seeds.clone().unwrap_or_else(|| sc.scenario.seeds.clone());
        // Cost warning from the first seed's resolved values (random draws may change counts).
        match sc.resolve(seeds.0[0]) {
            Ok(r) => {
                let s = &r.scenario;
                let est = cost::scenario_estimate(s, seeds.0[0]);
                let passes = if plan.check_determinism { 2 } else { 1 };
                if let Some(w) = est.warning(&s.name, seeds.0.len() as u64, passes, plan.threads as u64) {
                    eprintln!("{w}");
                }
            }
            Err(e) => {
                errs.push(CliError::Scenario(e));
                continue;
            }
        }
        jobs.extend(seeds.0.iter().map(|&seed| Job { scenario: sc, seed }));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let opts = BatchOptions {
        check_determinism: plan.check_determinism,
        trace: plan.trace.clone(),
        threads: plan.threads,
        progress: !plan.quiet && std::io::stderr().is_terminal(),
        git_rev: git_revision(),
        views: plan.views,
    };
    let mut records = Vec::new();
    for (job, r) in jobs.iter().zip(run_batch(&jobs, &opts, crate::runner::run)) {
        match r {
            Ok(rec) => records.push(rec),
            Err(source) => errs.push(CliError::Batch { scenario: job.scenario.scenario.name.clone(), source }),
        }
    }
    if errs.is_empty() { Ok(records) } else { Err(errs) }
}

fn outcome(records: &[RunRecord]) -> Outcome {
    if records.iter().all(RunRecord::passed) { Outcome::Pass } else { Outcome::Fail }
}

fn cmd_run(a: RunArgs) -> Result<Outcome, Vec<CliError>> {
    let scenarios = load_all(&a.scenarios)?;
    if let Some(expected) = &a.scenario_hash {
        for sc in &scenarios {
            if !sc.hash.eq_ignore_ascii_case(expected) {
                return Err(vec![CliError::HashMismatch {
                    path: sc.display_path(),
                    expected: expected.clone(),
                    actual: sc.hash.clone(),
                }]);
            }
        }
    }
    let seeds = match (a.seed, &a.seeds) {
        (Some(s), _) => Some(SeedSet(vec![s])),
        (None, Some(spec)) => Some(SeedSet::parse(spec).map_err(|e| vec![CliError::Usage(format!("--seeds: {e}"))])?),
        (None, None) => None,
    };
    let plan = RunPlan {
        seeds,
        check_determinism: a.check_determinism,
        trace: a.trace,
        threads: threads(a.threads),
        quiet: a.quiet,
        views: !a.no_html,
    };
    let records = run_scenarios(&scenarios, &plan)?;
    print!("{}", render_table(&records));
    let mut files = write_reports(&a.out, &records).map_err(|e| vec![e.into()])?;
    if !a.no_html {
        files.extend(html::write_scenario_pages(&a.out, &records).map_err(|e| vec![e.into()])?);
    }
    println!("wrote {}", files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(outcome(&records))
}

fn cmd_compare(new: &Path, base: &Path, tolerances: &[String]) -> Result<Outcome, Vec<CliError>> {
    let mut tol = Tolerances::new();
    for t in tolerances {
        tol.set_from_str(t).map_err(|e| vec![CliError::Usage(format!("--tolerance: {e}"))])?;
    }
    let new_runs = load_runs(new).map_err(|e| vec![e.into()])?;
    let base_runs = load_runs(base).map_err(|e| vec![e.into()])?;
    let out = compare(&new_runs, &base_runs, &tol);
    print!("{}", out.render());
    let page = compare_html_path(new);
    html::compare_page(&new_runs, &base_runs, &tol, &out, (new, base))
        .map_err(ReportError::from)
        .and_then(|p| p.write(&page).map_err(ReportError::from))
        .map_err(|e| vec![e.into()])?;
    println!("compare: the table of every metric, with each regression marked: {}", page.display());
    Ok(if out.passed() { Outcome::Pass } else { Outcome::Fail })
}

fn ci_scenarios() -> Result<Vec<PathBuf>, Vec<CliError>> {
    let dir = Path::new(DEFAULT_SCENARIOS);
    let io = |source| vec![CliError::Io { path: dir.display().to_string(), source }];
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn cmd_baseline(
    scenarios: Vec<PathBuf>,
    from: Option<PathBuf>,
    dir: &Path,
    force: bool,
    seeds: Option<String>,
    n_threads: Option<usize>,
    quiet: bool,
) -> Result<Outcome, Vec<CliError>> {
    let records = match from {
        Some(src) => load_runs(&src).map_err(|e| vec![e.into()])?,
        None => {
            let explicit = !scenarios.is_empty();
            let paths = if explicit { scenarios } else { ci_scenarios()? };
            let mut loaded = load_all(&paths)?;
            if !explicit {
                loaded.retain(|s| s.scenario.ci);
            }
            let seeds = seeds
                .map(|s| SeedSet::parse(&s).map_err(|e| vec![CliError::Usage(format!("--seeds: {e}"))]))
                .transpose()?;
            let plan = RunPlan {
                seeds,
                check_determinism: true,
                trace: None,
                threads: threads(n_threads),
                quiet,
                views: false,
            };
            let records = run_scenarios(&loaded, &plan)?;
            print!("{}", render_table(&records));
            records
        }
    };
    // A baseline says which code produced it: refuse one from uncommitted code.
    if let Some(dirty) = records.iter().find(|r| r.git_rev.ends_with("-dirty")).filter(|_| !force) {
        return Err(vec![CliError::Usage(format!(
            "not writing baselines: made from a dirty tree (git {}): commit first, so the baseline names the \
             code it measures (or pass --force)",
            dirty.git_rev
        ))]);
    }
    if outcome(&records) == Outcome::Fail && !force {
        let bad: Vec<String> =
            records.iter().filter(|r| !r.passed()).map(|r| format!("{} seed {}", r.scenario, r.seed)).collect();
        return Err(vec![CliError::Usage(format!(
            "not writing baselines: {} failing run(s) ({}); fix them or pass --force",
            bad.len(),
            bad.join(", ")
        ))]);
    }
    let files = write_reports(dir, &records).map_err(|e| vec![e.into()])?;
    println!("baseline: wrote {}", files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(Outcome::Pass)
}

fn cmd_metrics() -> Outcome {
    println!("{:<30} {:<8} {:<7} {:>6} {:>8}  description", "metric", "unit", "better", "rel", "abs");
    for id in MetricId::ALL {
        let d = id.def();
        let better = match d.better {
            Better::Lower => "lower",
            Better::Higher => "higher",
            Better::Info => "info",
        };
        println!(
            "{:<30} {:<8} {:<7} {:>6} {:>8}  {}",
            d.name,
            format!("{:?}", d.unit).to_lowercase(),
            better,
            d.rel_tol,
            d.abs_tol,
            d.doc
        );
    }
    Outcome::Pass
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<Outcome, Vec<CliError>> {
    match cli.command {
        None => cmd_run(cli.run),
        Some(Command::Compare { new, base, tolerances }) => cmd_compare(&new, &base, &tolerances),
        Some(Command::Baseline { scenarios, from, dir, force, seeds, threads, quiet }) => {
            cmd_baseline(scenarios, from, &dir, force, seeds, threads, quiet)
        }
        Some(Command::Metrics) => Ok(cmd_metrics()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_shapes() {
        let c =
            Cli::try_parse_from(["sim", "scenarios/churn.toml", "--seeds", "1..500", "--check-determinism"]).unwrap();
        assert!(c.command.is_none());
        assert_eq!(c.run.scenarios, [PathBuf::from("scenarios/churn.toml")]);
        assert_eq!(c.run.seeds.as_deref(), Some("1..500"));
        assert!(c.run.check_determinism);
        assert_eq!(c.run.out, PathBuf::from("reports"));

        let c = Cli::try_parse_from(["sim", "a.toml", "b.toml", "--seed", "7", "--trace", "t.jsonl", "--out", "o"])
            .unwrap();
        assert_eq!(c.run.scenarios.len(), 2);
        assert_eq!(c.run.seed, Some(7));

        let c = Cli::try_parse_from(["sim", "compare", "reports", "reports/baseline", "--tolerance", "converged=0"])
            .unwrap();
        assert!(matches!(c.command, Some(Command::Compare { .. })));
        let c = Cli::try_parse_from(["sim", "baseline"]).unwrap();
        assert!(matches!(c.command, Some(Command::Baseline { .. })));

        assert!(Cli::try_parse_from(["sim"]).is_err(), "a scenario is required");
        assert!(Cli::try_parse_from(["sim", "a.toml", "--seed", "1", "--seeds", "1..3"]).is_err());
    }

    #[test]
    fn bad_scenarios_are_all_reported_one_line_each() {
        let dir = std::env::temp_dir().join(format!("sim-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.toml");
        let b = dir.join("b.toml");
        std::fs::write(&a, "name = \"a\"\nduration = \"1s\"\nwat = 1\n").unwrap();
        let errs = load_all(&[a.clone(), b.clone()]).unwrap_err();
        assert_eq!(errs.len(), 2);
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(lines[0].ends_with("a.toml:3:1: unknown field `wat`, expected one of `name`, `description`, `seeds`, `duration`, `tick`, `ci`, `settle`, `network`, `authenticator`, `joiners`, `timeline`, `expect`, `random`"), "{}", lines[0]);
        assert!(lines[1].contains("b.toml: cannot read scenario"), "{}", lines[1]);
        assert!(lines.iter().all(|l| !l.contains('\n')));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn baselines_from_a_dirty_tree_are_refused() {
        let tmp = std::env::temp_dir().join(format!("sim-dirty-baseline-{}", std::process::id()));
        let (from, to) = (tmp.join("from"), tmp.join("to"));
        std::fs::create_dir_all(&from).unwrap();
        let runs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/baseline/churn.runs.csv"))
            .unwrap();
        let mut rdr = csv::Reader::from_reader(runs.as_bytes());
        let headers = rdr.headers().unwrap().clone();
        let rev = headers.iter().position(|h| h == "git_rev").unwrap();
        let mut w = csv::Writer::from_path(from.join("churn.runs.csv")).unwrap();
        w.write_record(&headers).unwrap();
        for rec in rdr.records() {
            let rec = rec.unwrap();
            let row: Vec<String> =
                rec.iter().enumerate().map(|(i, f)| if i == rev { "abc123-dirty".into() } else { f.into() }).collect();
            w.write_record(&row).unwrap();
        }
        w.flush().unwrap();
        let err = cmd_baseline(vec![], Some(from.clone()), &to, false, None, Some(1), true).unwrap_err();
        assert!(err[0].to_string().contains("dirty tree"), "{}", err[0]);
        assert!(!to.exists(), "nothing written");
        assert_eq!(cmd_baseline(vec![], Some(from), &to, true, None, Some(1), true).unwrap(), Outcome::Pass);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
