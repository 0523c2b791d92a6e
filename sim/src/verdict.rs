//! Pass or fail for one run: checker findings, `[[expect]]` bounds, determinism, run errors.
//!
//! The runner and checkers produce facts (metrics, [`Finding`]s, the determinism outcome);
//! this module alone decides what they mean, so the rules are in one place and the CLI,
//! the CSV and `sim compare` all agree. A safety finding or a determinism mismatch always
//! fails; a liveness finding fails; an expectation fails when its metric is out of bounds or,
//! unless `allow_missing`, has no samples.

use std::fmt;
use std::time::Duration;

use pyile::units::Dur;
use toml::Spanned;

use crate::metrics::{MetricId, Metrics, format_value};
use crate::scenario::Expect;
use crate::trace::Determinism;

/// Whether a finding is about safety (never allowed) or liveness (progress within a bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something that must never happen happened.
    Safety,
    /// Something that must happen did not happen in time.
    Liveness,
}

/// One checker finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Safety or liveness.
    pub severity: Severity,
    /// The checker's stable name (`banned_member`, `view_regressed`, `not_converged`, ...).
    pub check: &'static str,
    /// Simulated time of the violation.
    pub at: Duration,
    /// What exactly (addresses, versions).
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Safety => "safety",
            Severity::Liveness => "liveness",
        };
        write!(f, "{sev} {} at {}: {}", self.check, Dur(self.at), self.detail)
    }
}

/// The outcome of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Human-readable reasons; empty means pass.
    pub failures: Vec<String>,
}

impl Verdict {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// `pass` or `fail` (the CSV `verdict` cell).
    pub fn cell(&self) -> &'static str {
        if self.passed() { "pass" } else { "fail" }
    }
}

/// How many findings of each kind are spelled out before "and N more".
const SHOWN_FINDINGS: usize = 3;

/// Checks one expectation against the metrics; `Some(reason)` if it fails.
pub fn check_expect(x: &Expect, m: &Metrics) -> Option<String> {
    let id = x.metric_id()?; // validated at load time
    let why = x.why.as_deref().map(|w| format!(" ({w})")).unwrap_or_default();
    let Some(v) = m.get(id) else {
        return (!x.allow_missing).then(|| format!("expect {}: no samples{why}", x.metric));
    };
    let shown = format_value(id, v);
    if let Some(lo) = x.min
        && v < lo.value()
    {
        return Some(format!("expect {} >= {lo}: got {shown}{why}", x.metric));
    }
    if let Some(hi) = x.max
        && v > hi.value()
    {
        return Some(format!("expect {} <= {hi}: got {shown}{why}", x.metric));
    }
    None
}

/// Judges a run. Also records the finding counts in `metrics`
/// (`safety_violations`, `liveness_violations`).
pub fn judge(
    expect: &[Spanned<Expect>],
    metrics: &mut Metrics,
    findings: &[Finding],
    determinism: &Determinism,
    run_error: Option<&str>,
) -> Verdict {
    let mut failures = Vec::new();
    if let Some(e) = run_error {
        failures.push(format!("run error: {e}"));
    }
    if let Determinism::Differs(d) = determinism {
        failures.push(format!("determinism: two runs of this seed differ at {d}"));
    }
    for sev in [Severity::Safety, Severity::Liveness] {
        let of: Vec<&Finding> = findings.iter().filter(|f| f.severity == sev).collect();
        let id = match sev {
            Severity::Safety => MetricId::SafetyViolations,
            Severity::Liveness => MetricId::LivenessViolations,
        };
        metrics.set(id, of.len() as f64);
        for f in of.iter().take(SHOWN_FINDINGS) {
            failures.push(f.to_string());
        }
        if of.len() > SHOWN_FINDINGS {
            failures.push(format!("... and {} more {sev:?} findings", of.len() - SHOWN_FINDINGS).to_lowercase());
        }
    }
    for x in expect {
        if let Some(f) = check_expect(x.get_ref(), metrics) {
            failures.push(f);
        }
    }
    Verdict { failures }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Bound;
    use crate::trace::Divergence;

    fn expect(metric: &str, min: Option<Bound>, max: Option<Bound>) -> Spanned<Expect> {
        Spanned::new(0..0, Expect { metric: metric.into(), min, max, allow_missing: false, why: None })
    }

    #[test]
    fn bounds_pass_and_fail() {
        let mut m = Metrics::new();
        m.set(MetricId::DetectionLatencyMax, 9.5);
        m.set(MetricId::Converged, 1.0);
        let within = expect("converged", Some(Bound::Number(1.0)), None);
        let over = expect("detection_latency_max_s", None, Some(Bound::Duration(Dur::from_secs(9))));
        assert_eq!(check_expect(within.get_ref(), &m), None);
        let f = check_expect(over.get_ref(), &m).unwrap();
        assert_eq!(f, "expect detection_latency_max_s <= 9s: got 9.50s");
        let under = expect("converged", Some(Bound::Number(2.0)), None);
        assert!(check_expect(under.get_ref(), &m).unwrap().contains(">= 2"));
    }

    #[test]
    fn missing_samples_fail_unless_allowed() {
        let m = Metrics::new();
        let mut x = expect("detection_latency_max_s", None, Some(Bound::Number(9.0))).into_inner();
        assert!(check_expect(&x, &m).unwrap().contains("no samples"));
        x.allow_missing = true;
        assert_eq!(check_expect(&x, &m), None);
    }

    #[test]
    fn safety_findings_and_determinism_fail_and_are_counted() {
        let mut m = Metrics::new();
        let v = judge(&[], &mut m, &[], &Determinism::Same, None);
        assert!(v.passed());
        assert_eq!(v.cell(), "pass");
        assert_eq!(m.get(MetricId::SafetyViolations), Some(0.0));

        let findings: Vec<Finding> = (0..5)
            .map(|i| Finding {
                severity: Severity::Safety,
                check: "banned_member",
                at: Duration::from_millis(1000 + i),
                detail: format!("192.168.0.{i} in list v3"),
            })
            .collect();
        let v = judge(&[], &mut m, &findings, &Determinism::Same, None);
        assert_eq!(v.cell(), "fail");
        assert_eq!(m.get(MetricId::SafetyViolations), Some(5.0));
        assert_eq!(v.failures.len(), 4, "three shown and a summary: {:?}", v.failures);
        assert_eq!(v.failures[0], "safety banned_member at 1s: 192.168.0.0 in list v3");
        assert!(v.failures[3].contains("2 more safety"));

        let d = Determinism::Differs(Divergence { index: 4, expected: Some("a".into()), actual: Some("b".into()) });
        let v = judge(&[], &mut Metrics::new(), &[], &d, Some("host j3 panicked"));
        assert_eq!(v.failures.len(), 2);
        assert!(v.failures[0].starts_with("run error: host j3 panicked"));
        assert!(v.failures[1].contains("event #4"));
    }
}
