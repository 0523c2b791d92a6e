//! Reports: stable CSV columns and formatting, round trips, summaries, the printed table, and
//! `compare` against baselines (tolerances, regressions, safety and determinism failures).

use super::compare::{Tolerances, compare};
use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sim-report-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn record(scenario: &str, seed: u64, join_p90: f64) -> RunRecord {
    let mut metrics = Metrics::new();
    metrics.set(MetricId::JoinLatencyP90, join_p90);
    metrics.set(MetricId::Converged, 1.0);
    metrics.set(MetricId::SafetyViolations, 0.0);
    metrics.set(MetricId::EventsProcessed, 1000.0 + seed as f64);
    RunRecord {
        scenario: scenario.into(),
        seed,
        verdict: "pass".into(),
        determinism: "ok".into(),
        metrics,
        trace_hash: format!("{:016x}", seed),
        trace_events: 1000 + seed,
        scenario_file: format!("scenarios/{scenario}.toml"),
        scenario_hash: "00112233aabbccdd".into(),
        git_rev: "abc123".into(),
        random: "network.max_latency=12ms".into(),
        failures: vec![],
        view: None,
    }
}

#[test]
fn header_is_stable() {
    let h = RunRecord::header();
    assert_eq!(&h[..4], LEAD_COLUMNS.iter().map(|s| s.to_string()).collect::<Vec<_>>().as_slice());
    assert_eq!(h[4], "hosts");
    assert!(h.contains(&"join_latency_p90_s".to_string()));
    assert!(h.contains(&"detection_latency_max_s".to_string()));
    assert_eq!(h.last().unwrap(), "failures");
    assert_eq!(h.len(), LEAD_COLUMNS.len() + MetricId::ALL.len() + TAIL_COLUMNS.len());
}

#[test]
fn numbers_are_formatted_stably() {
    assert_eq!(format_number(3.0), "3");
    assert_eq!(format_number(0.25), "0.25");
    assert_eq!(format_number(1.0 / 3.0), "0.333333");
    assert_eq!(format_number(2.000_000_4), "2");
    assert_eq!(format_number(-1.5), "-1.5");
}

#[test]
fn runs_csv_round_trips() {
    let dir = temp_dir("roundtrip");
    let mut a = record("churn", 1, 0.123456);
    a.verdict = "fail".into();
    a.failures = vec!["expect x <= 1s: got 2s (why, \"quoted\")".into(), "safety banned_member at 3s: 1.2.3.4".into()];
    let mut b = record("churn", 2, 0.2);
    b.metrics = Metrics::new(); // no samples at all
    let path = dir.join("churn.runs.csv");
    write_runs_csv(&path, &[a.clone(), b.clone()]).unwrap();
    let back = read_runs_csv(&path).unwrap();
    assert_eq!(back, vec![a, b]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("scenario,seed,verdict,determinism,hosts,"));
    assert_eq!(text.lines().count(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn reading_finds_columns_by_name_and_rejects_non_runs_files() {
    let dir = temp_dir("columns");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("x.runs.csv");
    std::fs::write(&p, "seed,future_metric,scenario,verdict,join_latency_p50_s\n4,9,churn,pass,0.5\n").unwrap();
    let r = read_runs_csv(&p).unwrap();
    assert_eq!((r[0].seed, r[0].scenario.as_str()), (4, "churn"));
    assert_eq!(r[0].metrics.get(MetricId::JoinLatencyP50), Some(0.5));
    std::fs::write(&p, "a,b\n1,2\n").unwrap();
    let e = read_runs_csv(&p).unwrap_err().to_string();
    assert!(e.contains("not a runs CSV"), "{e}");
    std::fs::write(&p, "scenario,seed,verdict,converged\nchurn,1,pass,yes\n").unwrap();
    let e = read_runs_csv(&p).unwrap_err().to_string();
    assert!(e.contains(":2:") && e.contains("converged"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn summary_over_seeds() {
    let rs: Vec<RunRecord> = (1..=10).map(|s| record("churn", s, s as f64 / 10.0)).collect();
    let sums = summarize(&rs);
    assert_eq!(sums.len(), 1);
    let s = &sums[0];
    assert_eq!((s.runs, s.passed, s.determinism_ok), (10, 10, 10));
    let m = s.metrics.iter().find(|m| m.metric == MetricId::JoinLatencyP90).unwrap();
    assert_eq!((m.n, m.min, m.p50, m.p90, m.max), (10, 0.1, 0.5, 0.9, 1.0));
    assert!(s.metrics.iter().all(|m| m.metric != MetricId::DetectionLatencyMax), "no samples, no row");
}

#[test]
fn reports_are_written_per_scenario() {
    let dir = temp_dir("write");
    let rs = vec![record("b", 2, 0.1), record("a", 1, 0.1), record("b", 1, 0.3)];
    let files = write_reports(&dir, &rs).unwrap();
    let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["a.runs.csv", "a.summary.csv", "b.runs.csv", "b.summary.csv"]);
    let b = read_runs_csv(&dir.join("b.runs.csv")).unwrap();
    assert_eq!(b.iter().map(|r| r.seed).collect::<Vec<_>>(), [1, 2], "sorted by seed");
    let summary = std::fs::read_to_string(dir.join("b.summary.csv")).unwrap();
    assert!(summary.starts_with("scenario,metric,n,min,p50,p90,max\n"));
    assert!(summary.contains("b,join_latency_p90_s,2,0.1,0.1,0.3,0.3\n"), "{summary}");
    assert_eq!(load_runs(&dir).unwrap().len(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn table_shows_metrics_and_failing_runs_with_replay() {
    let mut bad = record("churn", 7, 0.9);
    bad.verdict = "fail".into();
    bad.failures = vec!["expect join_latency_p90_s <= 500ms: got 900ms".into()];
    let t = render_table(&[record("churn", 1, 0.1), bad]);
    assert!(t.starts_with("churn: 2 run(s), 1 passed, 1 failed, determinism 2/2 ok\n"), "{t}");
    assert!(t.contains("join_latency_p90_s"));
    assert!(t.contains("FAIL seed 7:"));
    assert!(t.contains(
        "replay: at git abc123: cargo run --release -p sim -- scenarios/churn.toml --seed 7 --scenario-hash 00112233aabbccdd"
    ));
}

#[test]
fn compare_passes_within_tolerance() {
    let base = vec![record("churn", 1, 0.20), record("churn", 2, 0.20)];
    // join_latency_p90_s: rel 10 % + abs 2 ms → 0.222 is the limit.
    let new = vec![record("churn", 1, 0.221), record("churn", 2, 0.10)];
    let out = compare(&new, &base, &Tolerances::new());
    assert!(out.passed(), "{}", out.render());
    assert_eq!(out.compared, 2);
}

#[test]
fn compare_fails_a_regression_with_numbers_and_replay() {
    let base = vec![record("churn", 1, 0.20)];
    let new = vec![record("churn", 1, 0.31)];
    let out = compare(&new, &base, &Tolerances::new());
    assert_eq!(out.failures.len(), 1);
    let f = &out.failures[0];
    assert_eq!(f.what, "join_latency_p90_s worse than baseline: 310ms vs 200ms (tolerance 10% + 2ms)");
    assert!(f.replay.contains("--seed 1"));
    let text = out.render();
    assert!(text.contains("FAIL churn seed 1: join_latency_p90_s") && text.ends_with("FAIL\n"), "{text}");
    // A looser override lets it pass.
    let mut tol = Tolerances::new();
    tol.set_from_str("join_latency_p90_s=1.0").unwrap();
    assert!(compare(&new, &base, &tol).passed());
}

#[test]
fn compare_higher_is_better_and_info_metrics() {
    let base = vec![record("churn", 1, 0.2)];
    let mut new = record("churn", 1, 0.2);
    new.metrics.set(MetricId::WallSeconds, 1e9); // informational: never fails
    assert!(compare(&[new.clone()], &base, &Tolerances::new()).passed());
    new.metrics.set(MetricId::Converged, 0.0);
    let out = compare(&[new], &base, &Tolerances::new());
    assert_eq!(out.failures.len(), 1);
    assert!(out.failures[0].what.starts_with("converged worse than baseline: 0 vs 1"), "{:?}", out.failures);
}

#[test]
fn compare_fails_safety_determinism_missing_runs_and_vanished_metrics() {
    let base = vec![record("churn", 1, 0.2), record("churn", 2, 0.2), record("churn", 3, 0.2)];
    let mut unsafe_run = record("churn", 1, 0.2);
    unsafe_run.verdict = "fail".into();
    unsafe_run.metrics.set(MetricId::SafetyViolations, 2.0);
    unsafe_run.failures = vec!["safety banned_member at 3s: 192.168.0.9".into()];
    let mut nondet = record("churn", 2, 0.2);
    nondet.determinism = "mismatch".into();
    nondet.metrics = Metrics::new();
    let new_seed = record("churn", 9, 0.2);
    let out = compare(&[unsafe_run, nondet, new_seed], &base, &Tolerances::new());
    let whats: Vec<String> = out.failures.iter().map(|f| format!("{}: {}", f.seed, f.what)).collect();
    assert!(whats.iter().any(|w| w.starts_with("1: 2 safety violation(s): safety banned_member")), "{whats:?}");
    assert!(whats.iter().any(|w| w.starts_with("2: determinism mismatch")), "{whats:?}");
    assert!(whats.iter().any(|w| w == "2: join_latency_p90_s has no value (baseline 200ms)"), "{whats:?}");
    assert!(whats.iter().any(|w| w == "3: baseline run missing from the new runs"), "{whats:?}");
    assert!(out.notes.iter().any(|n| n.contains("seed 9: no baseline run")), "{:?}", out.notes);
}

#[test]
fn compare_notes_changed_behaviour_and_files() {
    let base = vec![record("churn", 1, 0.2)];
    let mut new = record("churn", 1, 0.2);
    new.trace_hash = "ffffffffffffffff".into();
    new.scenario_hash = "0000000000000000".into();
    let out = compare(&[new.clone()], &base, &Tolerances::new());
    assert!(out.passed());
    assert!(out.notes.iter().any(|n| n.contains("scenario file changed")));
    assert!(out.changed_behaviour.is_empty(), "a changed scenario explains a changed trace");
    // The same scenario file, another trace: the behaviour changed, said loudly (not a failure).
    new.scenario_hash = base[0].scenario_hash.clone();
    let out = compare(&[new], &base, &Tolerances::new());
    assert!(out.passed());
    assert_eq!(out.changed_behaviour.get("churn"), Some(&vec![1]));
    let text = out.render();
    assert!(text.contains("!! BEHAVIOUR CHANGED: 1 of 1 run(s)") && text.contains("!!   churn: seed(s) 1"), "{text}");
    assert!(text.ends_with("1 with changed behaviour: PASS\n"), "{text}");
}

/// The gate against the committed baselines: every CI run's latencies 20 % worse, or its
/// distribution and event costs doubled, must fail the comparison for that run — and the
/// baselines compared with themselves must pass.
#[test]
fn the_committed_baselines_catch_a_20_percent_latency_and_a_2x_cost_regression() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/baseline");
    let base = load_runs(&dir).unwrap();
    assert!(base.len() >= 20, "{} baseline runs", base.len());
    let tol = Tolerances::new();
    assert!(compare(&base, &base, &tol).passed());
    let latencies = [
        MetricId::JoinLatencyP50,
        MetricId::JoinLatencyP90,
        MetricId::ConvergenceP50,
        MetricId::ConvergenceP90,
        MetricId::DetectionLatencyP50,
    ];
    let costs = [MetricId::DistMsgsPerChange, MetricId::DistBytesPerChange, MetricId::EventsProcessed];
    // Latencies from 25 ms up (below that the few-ms absolute slack dominates); costs always.
    for (ids, factor, floor, what) in
        [(&latencies[..], 1.2, 0.025, "20 % slower"), (&costs[..], 2.0, 0.0, "2x the cost")]
    {
        for id in ids {
            let mut judged = 0;
            for b in &base {
                let Some(v) = b.metrics.get(*id).filter(|v| *v > 0.0 && *v >= floor) else { continue };
                let mut n = b.clone();
                n.metrics.set(*id, v * factor);
                let out = compare(&[n], std::slice::from_ref(b), &tol);
                assert!(!out.passed(), "{} seed {}: {id} {what} ({v} -> {}) passed", b.scenario, b.seed, v * factor);
                judged += 1;
            }
            assert!(judged >= 1, "{id}: no baseline run judged");
        }
    }
}

#[test]
fn tolerance_overrides_parse() {
    let mut t = Tolerances::new();
    t.set_from_str("convergence_max_s=0.5,0.2").unwrap();
    assert_eq!(t.of(MetricId::ConvergenceMax), (0.5, 0.2));
    t.set_from_str("join_latency_max_s=0.1").unwrap();
    assert_eq!(t.of(MetricId::JoinLatencyMax), (0.1, MetricId::JoinLatencyMax.def().abs_tol));
    for bad in ["nope=1", "converged", "converged=x", "converged=0.1,y", "converged=-1"] {
        assert!(t.set_from_str(bad).is_err(), "{bad}");
    }
}

#[test]
fn table_rows_stand_in_blocks_under_their_titles_with_a_pointer_to_sim_metrics() {
    use crate::metrics::Group;
    let t = render_table(&[record("churn", 1, 0.1), record("churn", 2, 0.2)]);
    let mut block = None;
    let mut seen = Vec::new();
    for line in t.lines().skip(2) {
        if let Some(title) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ') && !l.starts_with('(')) {
            let g = [Group::Outcome, Group::Latency, Group::Cost, Group::Faults, Group::Attacks, Group::Run]
                .into_iter()
                .find(|g| g.title() == title)
                .unwrap_or_else(|| panic!("not a block title: {title:?}\n{t}"));
            assert!(seen.last().is_none_or(|last| *last < g), "blocks out of order:\n{t}");
            seen.push(g);
            block = Some(g);
        } else if let Some(row) = line.strip_prefix("    ") {
            let name = row.split_whitespace().next().unwrap();
            let id = MetricId::ALL.iter().find(|m| m.name() == name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(Some(id.group()), block, "{name} under the wrong block:\n{t}");
        }
    }
    assert!(seen.contains(&Group::Outcome) && seen.contains(&Group::Latency), "{t}");
    assert!(t.contains("`sim metrics` says what each row measures"), "{t}");
}

#[test]
fn failed_joins_or_lost_messages_come_with_a_word_on_why() {
    let quiet = render_table(&[record("churn", 1, 0.1)]);
    assert!(!quiet.contains("failed joins:") && !quiet.contains("lost messages:"), "{quiet}");
    let mut r = record("churn", 1, 0.1);
    r.metrics.set(MetricId::JoinsFailed, 3.0);
    r.metrics.set(MetricId::JoinsFailedInFaults, 2.0);
    r.metrics.set(MetricId::MsgsLost, 1.0);
    let t = render_table(&[r]);
    assert!(t.contains("failed joins: up to 3 a run, up to 2 of them while a fault impaired"), "{t}");
    assert!(t.contains("lost messages: a message counts as lost"), "{t}");
}

#[test]
fn compare_page_marks_each_regression_with_both_values_and_the_tolerance() {
    let base = vec![record("a", 1, 0.020), record("a", 2, 0.020), record("b", 1, 0.5)];
    // a seed 2 and b seed 1 got much slower; a seed 1 got faster.
    let new = vec![record("a", 1, 0.010), record("a", 2, 0.400), record("b", 1, 2.0)];
    let tol = Tolerances::new();
    let out = compare(&new, &base, &tol);
    let page = html::compare_page(&new, &base, &tol, &out, (Path::new("new"), Path::new("base"))).unwrap();
    let text = page.finish();
    assert!(text.contains("<title>sim compare: FAIL</title>"));
    assert_eq!(text.matches("✗ worse").count(), 2, "one mark per regressed (metric, seed)");
    assert!(text.contains("a: 2 seed(s), 1 regression(s)") && text.contains("b: 1 seed(s), 1 regression(s)"));
    // Both values and the tolerance of the regressed metric, the new value marked.
    assert!(
        text.contains(
            "<td class=\"num\">20ms</td><td class=\"num bad\">400ms</td><td class=\"bad nowrap\">✗ worse</td>"
        )
    );
    assert!(text.contains("<td class=\"num nowrap\">10% + 2ms</td>"), "join_latency_p90_s tolerance");
    assert!(text.contains(">better<"), "an improvement is shown too");
    assert!(text.contains("--seed 2"), "failures carry the replay command");

    let same = compare(&base, &base, &tol);
    let text = html::compare_page(&base, &base, &tol, &same, (Path::new("n"), Path::new("b"))).unwrap().finish();
    assert!(text.contains("<title>sim compare: PASS</title>"));
    assert!(!text.contains("✗"));
}

#[test]
fn compare_page_sits_in_the_new_directory_or_beside_the_new_file() {
    let dir = temp_dir("compare-path");
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(html::compare_html_path(&dir), dir.join("compare.html"));
    assert_eq!(html::compare_html_path(&dir.join("churn.runs.csv")), dir.join("churn.compare.html"));
    std::fs::remove_dir_all(dir).unwrap();
}
