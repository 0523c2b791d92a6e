//! RUNNER SLOT: runs one resolved scenario for one seed on turmoil and reports what happened.
//!
//! Interface used by [`crate::batch`]: [`run`] takes a resolved scenario and a [`Trace`] to
//! record into, and returns the run's metrics, checker findings and trace summary.

use crate::metrics::Metrics;
use crate::scenario::Resolved;
use crate::trace::{Trace, TraceError, TraceSummary};
use crate::verdict::Finding;

/// What one run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Metric values (the runner sets wall time and the sim/wall ratio too).
    pub metrics: Metrics,
    /// Checker findings.
    pub findings: Vec<Finding>,
    /// The finished trace.
    pub trace: TraceSummary,
    /// Why the run could not complete (host software error, simulation panic).
    pub error: Option<String>,
}

/// Runs `resolved` once, recording into `trace`.
pub fn run(resolved: &Resolved, trace: Trace) -> Result<RunOutput, TraceError> {
    let _ = resolved;
    Ok(RunOutput {
        metrics: Metrics::new(),
        findings: Vec::new(),
        trace: trace.finish()?,
        error: Some("the pyile runner is not wired in yet".into()),
    })
}
