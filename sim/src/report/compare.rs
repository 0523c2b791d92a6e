//! `sim compare NEW BASE`: new runs against baseline runs, with per-metric tolerances.
//!
//! Runs are matched by (scenario, seed). A new run fails the comparison when it failed its
//! own checks (a safety violation, a determinism mismatch, an expectation), when a baseline
//! run has no new counterpart, or when a metric that has a direction ([`Better::Lower`] /
//! [`Better::Higher`]) is worse than the baseline beyond its tolerance:
//! `new > base × (1 + rel) + abs` for lower-is-better metrics, symmetrically for higher.
//! Informational metrics (counts, wall time) never fail. Each failure carries the replay
//! command of the new run.
//!
//! Runs are deterministic, so a metric moves only when the code (or the scenario) does: the
//! catalogue's tolerances are tight (latencies 10 % + a few ms, costs 10–25 %), and a change
//! that moves a metric on purpose refreshes the baselines in the same commit, saying why. For
//! the same reason a run whose trace hash differs from its baseline's while its scenario file
//! did not change is reported prominently even when every metric is within tolerance: the
//! protocol's behaviour changed, and whoever changed it should know and say so.

use std::collections::BTreeMap;

use super::RunRecord;
use crate::metrics::{Better, MetricId, format_value};

/// Per-metric tolerances: the catalogue's defaults, with overrides.
#[derive(Clone, Debug, Default)]
pub struct Tolerances {
    overrides: BTreeMap<MetricId, (f64, f64)>,
}

impl Tolerances {
    /// The defaults of [`crate::metrics`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses an override `metric=REL` or `metric=REL,ABS` (REL a fraction: 0.3 = 30 %).
    pub fn set_from_str(&mut self, s: &str) -> Result<(), String> {
        let (name, vals) = s.split_once('=').ok_or_else(|| format!("tolerance {s:?}: write METRIC=REL[,ABS]"))?;
        let id = MetricId::from_name(name.trim()).ok_or_else(|| format!("tolerance {s:?}: unknown metric {name:?}"))?;
        let mut parts = vals.split(',').map(|p| p.trim().parse::<f64>());
        let rel = parts.next().and_then(Result::ok).ok_or_else(|| format!("tolerance {s:?}: bad REL"))?;
        let abs = match parts.next() {
            None => id.def().abs_tol,
            Some(Ok(a)) => a,
            Some(Err(_)) => return Err(format!("tolerance {s:?}: bad ABS")),
        };
        if rel < 0.0 || abs < 0.0 {
            return Err(format!("tolerance {s:?}: must be >= 0"));
        }
        self.overrides.insert(id, (rel, abs));
        Ok(())
    }

    /// (relative, absolute) tolerance of a metric.
    pub fn of(&self, id: MetricId) -> (f64, f64) {
        self.overrides.get(&id).copied().unwrap_or((id.def().rel_tol, id.def().abs_tol))
    }

    /// Whether `new` is worse than `base` beyond tolerance for metric `id`.
    pub fn is_regression(&self, id: MetricId, new: f64, base: f64) -> bool {
        let (rel, abs) = self.of(id);
        match id.def().better {
            Better::Lower => new > base * (1.0 + rel) + abs,
            Better::Higher => new < base * (1.0 - rel) - abs,
            Better::Info => false,
        }
    }
}

/// One reason the comparison fails.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareFailure {
    /// Scenario.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// What is wrong, with the numbers.
    pub what: String,
    /// How to replay the new run (empty if there is no new run).
    pub replay: String,
}

/// The result of a comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompareOutcome {
    /// Runs matched with a baseline.
    pub compared: usize,
    /// Failures, in (scenario, seed) order.
    pub failures: Vec<CompareFailure>,
    /// Things worth knowing that do not fail (new seeds, changed scenario files).
    pub notes: Vec<String>,
    /// Runs whose trace differs from their baseline's although their scenario file is
    /// unchanged: scenario → seeds.
    pub changed_behaviour: BTreeMap<String, Vec<u64>>,
}

impl CompareOutcome {
    /// Whether the comparison passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The report printed by `sim compare`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        for f in &self.failures {
            out.push_str(&format!("FAIL {} seed {}: {}\n", f.scenario, f.seed, f.what));
            if !f.replay.is_empty() {
                out.push_str(&format!("  replay: {}\n", f.replay));
            }
        }
        let changed: usize = self.changed_behaviour.values().map(Vec::len).sum();
        if changed > 0 {
            out.push_str(&format!(
                "\n!! BEHAVIOUR CHANGED: {changed} of {} run(s) produced a different trace than their baseline, \
                 with the same scenario file:\n",
                self.compared
            ));
            for (scenario, seeds) in &self.changed_behaviour {
                let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
                out.push_str(&format!("!!   {scenario}: seed(s) {}\n", seeds.join(", ")));
            }
            out.push_str(
                "!! The protocol or the simulator now behaves differently. If that is intended, refresh the \
                 baselines (`sim baseline`) in the same commit and say why; if not, replay a seed with --trace \
                 and diff it against the baseline commit's trace.\n\n",
            );
        }
        out.push_str(&format!(
            "compare: {} run(s) compared, {} failure(s), {changed} with changed behaviour: {}\n",
            self.compared,
            self.failures.len(),
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        out
    }
}

/// Compares new runs with baseline runs.
pub fn compare(new: &[RunRecord], base: &[RunRecord], tol: &Tolerances) -> CompareOutcome {
    let key = |r: &RunRecord| (r.scenario.clone(), r.seed);
    let base_by: BTreeMap<_, &RunRecord> = base.iter().map(|r| (key(r), r)).collect();
    let new_by: BTreeMap<_, &RunRecord> = new.iter().map(|r| (key(r), r)).collect();
    let mut out = CompareOutcome::default();
    let mut changed_files = BTreeMap::new();

    for ((scenario, seed), n) in &new_by {
        let fail =
            |what: String| CompareFailure { scenario: scenario.clone(), seed: *seed, what, replay: n.replay_command() };
        if n.determinism == "mismatch" {
            out.failures.push(fail("determinism mismatch: two runs of this seed differ".into()));
        }
        if let Some(v) = n.metrics.get(MetricId::SafetyViolations).filter(|v| *v > 0.0) {
            out.failures.push(fail(format!("{v:.0} safety violation(s): {}", n.failures.join("; "))));
        } else if !n.passed() {
            out.failures.push(fail(format!("run failed its checks: {}", n.failures.join("; "))));
        }
        let Some(b) = base_by.get(&(scenario.clone(), *seed)) else {
            out.notes.push(format!("{scenario} seed {seed}: no baseline run (new seed?)"));
            continue;
        };
        out.compared += 1;
        if b.scenario_hash != n.scenario_hash {
            changed_files.insert(scenario.clone(), (b.scenario_hash.clone(), n.scenario_hash.clone()));
        }
        if !b.trace_hash.is_empty() && b.trace_hash != n.trace_hash && b.scenario_hash == n.scenario_hash {
            out.changed_behaviour.entry(scenario.clone()).or_default().push(*seed);
        }
        for id in MetricId::ALL {
            if id.def().better == Better::Info {
                continue;
            }
            match (n.metrics.get(*id), b.metrics.get(*id)) {
                (Some(nv), Some(bv)) if tol.is_regression(*id, nv, bv) => {
                    let (rel, abs) = tol.of(*id);
                    out.failures.push(fail(format!(
                        "{} worse than baseline: {} vs {} (tolerance {:.0}% + {})",
                        id.name(),
                        format_value(*id, nv),
                        format_value(*id, bv),
                        rel * 100.0,
                        format_value(*id, abs)
                    )));
                }
                (None, Some(bv)) => {
                    out.failures.push(fail(format!("{} has no value (baseline {})", id.name(), format_value(*id, bv))))
                }
                _ => {}
            }
        }
    }
    for (scenario, seed) in base_by.keys() {
        if !new_by.contains_key(&(scenario.clone(), *seed)) {
            out.failures.push(CompareFailure {
                scenario: scenario.clone(),
                seed: *seed,
                what: "baseline run missing from the new runs".into(),
                replay: String::new(),
            });
        }
    }
    for (scenario, (b, n)) in changed_files {
        out.notes.push(format!("{scenario}: scenario file changed since the baseline ({b} -> {n})"));
    }
    out.failures.sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
    out
}
