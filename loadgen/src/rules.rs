//! `--fail-on` thresholds: parsing, and evaluation against a run's (or a merge's) totals.
//!
//! A rule names a condition under which the run *fails*:
//! `<metric>[.<statistic>] <op> <value>`, e.g. `join_complete.p99>50ms`, `errors>0`,
//! `timed_out>=1`, `joined<500`, `message_delivery.max>=2s`.
//!
//! - metric: any name from [`crate::metrics`] (`join_complete`, `errors`, …), including the
//!   attack metrics `attack.<kind>.<metric>` (`attack.silent.open_at_end>0`,
//!   `attack.oversize.closed_after.p99>1s`);
//! - statistic: for a latency `count`, `min`, `max`, `mean`, `p50`, `p90`, `p95`, `p99`,
//!   `p999` (99.9th), `p9999` (99.99th); a counter takes none (or `count`);
//! - op: `>`, `>=`, `<`, `<=`, `==`, `!=`;
//! - value: a duration with its unit for latency statistics (`50ms`), a plain number for
//!   counts.
//!
//! A latency statistic of a histogram with no samples cannot be compared: such a rule counts
//! as violated ("no samples"), so a gate on `join_complete.p99` cannot pass a run in which
//! nobody joined.

use std::fmt;
use std::str::FromStr;

use pyile::units::parse_duration;

use crate::error::Error;
use crate::human::format_micros;
use crate::metrics::{AttackMetric, Metric, Totals};

/// What is read from a metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    /// Number of samples, or a counter's value.
    Count,
    /// Smallest sample.
    Min,
    /// Largest sample.
    Max,
    /// Mean sample.
    Mean,
    /// A percentile (0–100).
    Percentile(f64),
}

impl Stat {
    fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "count" => Stat::Count,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "mean" => Stat::Mean,
            "p50" => Stat::Percentile(50.0),
            "p90" => Stat::Percentile(90.0),
            "p95" => Stat::Percentile(95.0),
            "p99" => Stat::Percentile(99.0),
            "p999" => Stat::Percentile(99.9),
            "p9999" => Stat::Percentile(99.99),
            _ => return None,
        })
    }
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Cmp {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

/// One parsed `--fail-on` rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    text: String,
    metric: Metric,
    stat: Stat,
    cmp: Cmp,
    /// Microseconds for latency statistics, a plain number for counts.
    threshold: f64,
}

impl Rule {
    /// The rule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The observed value (microseconds for latency statistics), `None` if there is none.
    pub fn observe(&self, totals: &Totals) -> Option<f64> {
        let empty;
        let h = match self.metric {
            Metric::Counter(c) => return Some(totals.counter(c) as f64),
            Metric::Attack(k, AttackMetric::Counter(c)) => return Some(totals.attack_counter(k, c) as f64),
            Metric::Latency(l) => totals.histogram(l),
            Metric::Attack(k, AttackMetric::ClosedAfter) => match totals.attack(k) {
                Some(a) => &a.closed_after,
                None => {
                    empty = crate::metrics::new_histogram();
                    &empty
                }
            },
        };
        if self.stat == Stat::Count {
            return Some(h.len() as f64);
        }
        if h.is_empty() {
            return None;
        }
        Some(match self.stat {
            Stat::Count => unreachable!(),
            Stat::Min => h.min() as f64,
            Stat::Max => h.max() as f64,
            Stat::Mean => h.mean(),
            Stat::Percentile(p) => h.value_at_percentile(p) as f64,
        })
    }

    /// Evaluates the rule; `Some` if the run fails it.
    pub fn check(&self, totals: &Totals) -> Option<Violation> {
        match self.observe(totals) {
            None => Some(Violation { rule: self.text.clone(), observed: "no samples".into() }),
            Some(v) if self.cmp.holds(v, self.threshold) => {
                let observed = if self.is_latency() { format_micros(v) } else { format!("{v}") };
                Some(Violation { rule: self.text.clone(), observed })
            }
            Some(_) => None,
        }
    }

    fn is_latency(&self) -> bool {
        self.metric.is_histogram() && self.stat != Stat::Count
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Rule {
    type Err = Error;

    fn from_str(text: &str) -> Result<Rule, Error> {
        let reject = |reason: String| Error::Rule { rule: text.to_string(), reason };
        let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = s
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| reject("no comparison; write e.g. join_complete.p99>50ms or errors>0".into()))?;
        let (lhs, rest) = s.split_at(at);
        let (cmp, value) =
            [(">=", Cmp::Ge), ("<=", Cmp::Le), ("==", Cmp::Eq), ("!=", Cmp::Ne), (">", Cmp::Gt), ("<", Cmp::Lt)]
                .into_iter()
                .find_map(|(op, cmp)| rest.strip_prefix(op).map(|v| (cmp, v)))
                .ok_or_else(|| reject(format!("unknown comparison in {rest:?} (use > >= < <= == !=)")))?;

        // The metric is the whole left side, or all of it but a last `.statistic` (attack
        // metrics have dots of their own: attack.silent.closed_after.p99).
        let (name, stat) = match (Metric::from_name(lhs), lhs.rsplit_once('.')) {
            (Some(_), _) | (None, None) => (lhs, None),
            (None, Some((n, st))) => (n, Some(st)),
        };
        let metric = Metric::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Metric::all_names().collect();
            reject(format!(
                "unknown metric {name:?}; known: {}, and attack.<kind>.<metric> (kinds: {}; metrics: {})",
                known.join(", "),
                crate::attack::AttackKind::ALL.map(|k| k.metric_name()).join(", "),
                AttackMetric::all().map(|m| m.name()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let stat = match (metric.is_histogram(), stat) {
            (false, None | Some("count")) => Stat::Count,
            (false, Some(st)) => {
                return Err(reject(format!("{name} is a counter; it has no statistic {st:?}")));
            }
            (true, None) => {
                return Err(reject(format!("{name} is a latency: name a statistic, e.g. {name}.p99")));
            }
            (true, Some(st)) => Stat::parse(st).ok_or_else(|| {
                reject(format!("unknown statistic {st:?} (count min max mean p50 p90 p95 p99 p999 p9999)"))
            })?,
        };
        let latency = metric.is_histogram() && stat != Stat::Count;
        let threshold = if latency {
            parse_duration(value).map_err(|e| reject(e.to_string()))?.as_secs_f64() * 1e6
        } else {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| reject(format!("{value:?} is not a number")))?
        };
        Ok(Rule { text: text.trim().to_string(), metric, stat, cmp, threshold })
    }
}

/// A rule the run failed, with what was observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule as written.
    pub rule: String,
    /// The observed value, formatted (`73.2ms`, `4`, `no samples`).
    pub observed: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed --fail-on {:?}: observed {}", self.rule, self.observed)
    }
}

/// A `--fail-on` argument: a rule, or `none` to drop the default `errors>0`.
#[derive(Clone, Debug, PartialEq)]
pub struct FailOn(pub Option<Rule>);

impl FromStr for FailOn {
    type Err = Error;

    fn from_str(s: &str) -> Result<FailOn, Error> {
        if s.trim().eq_ignore_ascii_case("none") { Ok(FailOn(None)) } else { s.parse().map(|r| FailOn(Some(r))) }
    }
}

/// The rules among `args` (`none` entries contribute nothing).
pub fn rules_of(args: &[FailOn]) -> Vec<Rule> {
    args.iter().filter_map(|a| a.0.clone()).collect()
}

/// Every violated rule, in the order given.
pub fn evaluate(rules: &[Rule], totals: &Totals) -> Vec<Violation> {
    rules.iter().filter_map(|r| r.check(totals)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Counter, Latency};
    use std::time::Duration;

    fn rule(s: &str) -> Rule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn reason(s: &str) -> String {
        s.parse::<Rule>().unwrap_err().to_string()
    }

    /// 100 joins of 1..=100 ms, 2 timeouts.
    fn totals() -> Totals {
        let mut t = Totals::default();
        for ms in 1..=100 {
            t.record(Latency::JoinComplete, Duration::from_millis(ms));
        }
        t.add_count(Counter::Joined, 100);
        t.add_count(Counter::TimedOut, 2);
        t.add_count(Counter::Errors, 2);
        t
    }

    #[test]
    fn rules_parse() {
        let r = rule("join_complete.p99>50ms");
        assert_eq!(r.metric, Metric::Latency(Latency::JoinComplete));
        assert_eq!(r.stat, Stat::Percentile(99.0));
        assert_eq!(r.cmp, Cmp::Gt);
        assert_eq!(r.threshold, 50_000.0);
        let r = rule(" errors > 0 ");
        assert_eq!(
            (r.metric, r.stat, r.cmp, r.threshold),
            (Metric::Counter(Counter::Errors), Stat::Count, Cmp::Gt, 0.0)
        );
        assert_eq!(r.text(), "errors > 0");
        assert_eq!(rule("timed_out>=1").cmp, Cmp::Ge);
        assert_eq!(rule("joined.count<500").stat, Stat::Count);
        assert_eq!(rule("join_complete.count<500").threshold, 500.0);
        assert_eq!(rule("message_delivery.p999>=1.5s").threshold, 1_500_000.0);
        assert_eq!(rule("convergence.p9999!=0us").stat, Stat::Percentile(99.99));
        assert_eq!(rule("tcp_connect.mean<=2ms").cmp, Cmp::Le);
        assert_eq!(rule("refused==3").cmp, Cmp::Eq);
    }

    #[test]
    fn malformed_rules_say_why() {
        assert!(reason("join_complete.p99").contains("no comparison"));
        assert!(reason("join_complete.p99>50").contains("missing unit"));
        assert!(reason("join_complete>50ms").contains("name a statistic"));
        assert!(reason("join_completed.p99>50ms").contains("unknown metric"));
        assert!(reason("join_complete.p42>50ms").contains("unknown statistic"));
        assert!(reason("errors.p99>0").contains("is a counter"));
        assert!(reason("errors>lots").contains("not a number"));
        assert!(reason("errors=>1").contains("unknown comparison"));
        assert!(reason("errors=1").contains("unknown comparison"));
    }

    #[test]
    fn rules_evaluate_against_totals() {
        let t = totals();
        // p99 of 1..=100 ms is 99 ms (within the histogram's 3 significant digits).
        let v = rule("join_complete.p99>50ms").check(&t).unwrap();
        assert_eq!(v.rule, "join_complete.p99>50ms");
        assert!(v.observed.starts_with("99"), "{}", v.observed);
        assert!(rule("join_complete.p99>100ms").check(&t).is_none());
        assert!(rule("join_complete.p50>=50ms").check(&t).is_some());
        assert!(rule("join_complete.p50>51ms").check(&t).is_none());
        assert!(rule("join_complete.max<100ms").check(&t).is_none());
        assert!(rule("join_complete.min<=1ms").check(&t).is_some());
        assert!(rule("join_complete.mean>40ms").check(&t).is_some());
        assert!(rule("join_complete.mean>60ms").check(&t).is_none());
        assert_eq!(rule("errors>0").check(&t).unwrap().observed, "2");
        assert!(rule("timed_out>=2").check(&t).is_some());
        assert!(rule("timed_out>=3").check(&t).is_none());
        assert!(rule("refused>0").check(&t).is_none());
        assert!(rule("joined<100").check(&t).is_none());
        assert!(rule("joined<101").check(&t).is_some());
        assert!(rule("join_complete.count!=100").check(&t).is_none());
    }

    #[test]
    fn attack_metrics_can_be_gated() {
        use crate::attack::AttackKind;
        use crate::metrics::AttackCounter;
        let r = rule("attack.silent.open_at_end>0");
        assert_eq!(r.metric, Metric::Attack(AttackKind::Silent, AttackMetric::Counter(AttackCounter::OpenAtEnd)));
        assert_eq!(r.stat, Stat::Count);
        let r = rule("attack.no-dist.closed_after.p99>6s");
        assert_eq!(r.metric, Metric::Attack(AttackKind::NoDist, AttackMetric::ClosedAfter));
        assert_eq!((r.stat, r.threshold), (Stat::Percentile(99.0), 6e6));
        assert!(reason("attack.silent.closed_after>1s").contains("name a statistic"));
        assert!(reason("attack.silent.open_at_end.p99>1").contains("is a counter"));
        assert!(reason("attack.sleepy.open_at_end>0").contains("attack.<kind>.<metric> (kinds: silent,"));
        assert!(reason("attack.silent.nope>0").contains("unknown metric"));

        let mut t = totals();
        // An attack that did not run counts zero, and its histogram has no samples.
        assert!(r.check(&t).unwrap().observed.contains("no samples"));
        assert!(rule("attack.silent.open_at_end>0").check(&t).is_none());
        t.add_attack_count(AttackKind::Silent, AttackCounter::OpenAtEnd, 3);
        t.attack_mut(AttackKind::NoDist).closed_after.record(5_000_000).unwrap();
        assert_eq!(rule("attack.silent.open_at_end>0").check(&t).unwrap().observed, "3");
        assert!(r.check(&t).is_none());
        assert!(rule("attack.no_dist.closed_after.min<4s").check(&t).is_none());
        assert!(rule("attack.no_dist.closed_after.max>=5s").check(&t).is_some());
        // The honest gate is untouched by attack numbers.
        assert!(rule("errors>2").check(&t).is_none());
    }

    #[test]
    fn a_latency_rule_without_samples_is_violated() {
        let t = totals();
        let v = rule("message_delivery.p99>1s").check(&t).unwrap();
        assert_eq!(v.observed, "no samples");
        // Counting samples needs none.
        assert!(rule("message_delivery.count>0").check(&t).is_none());
    }

    #[test]
    fn evaluate_lists_every_violation_in_order() {
        let rules = vec![rule("errors>0"), rule("joined<10"), rule("join_complete.p99>50ms")];
        let got: Vec<String> = evaluate(&rules, &totals()).into_iter().map(|v| v.rule).collect();
        assert_eq!(got, ["errors>0", "join_complete.p99>50ms"]);
        assert!(evaluate(&[], &totals()).is_empty());
    }

    #[test]
    fn none_drops_the_default() {
        let args: Vec<FailOn> = ["none", "errors>5"].iter().map(|s| s.parse().unwrap()).collect();
        let rules = rules_of(&args);
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].text(), "errors>5");
        assert!("NONE".parse::<FailOn>().unwrap().0.is_none());
    }
}
