//! The HTML scenario report from real (small) runs: the chosen seed is the first failing one,
//! the membership chart has the right series and one shaded window per fault the timeline
//! applied, the across-seed charts exist, and collecting the view changes no trace hash.

use sim::batch::{BatchOptions, Job, run_batch, run_job};
use sim::report::RunRecord;
use sim::report::html::{scenario_page, write_scenario_pages};
use sim::runner::run;
use sim::scenario::LoadedScenario;

const SCENARIO: &str = r#"name = "t_html"
duration = "40s"
settle = "10s"

[network]
min_latency = "1ms"
max_latency = "5ms"

[authenticator]
heartbeat_interval = "2s"
heartbeat_timeout = "6s"

[[joiners]]
name = "steady"
count = 2
joiners_per_host = 2
join_at = "0s"

[[joiners]]
name = "cut"
count = 2
joiners_per_host = 2
join_at = "0s"
stagger = "10ms"
rejoin_after = "1s"

[[timeline]]
at = "8s"
action = "partition"
target = "cut"
heal_after = "10s"

[[timeline]]
at = "20s"
action = "loss"
fail_rate = 0.001
until = "24s"
"#;

fn opts(views: bool) -> BatchOptions {
    BatchOptions { check_determinism: false, views, ..BatchOptions::checked("t") }
}

/// The `data-series`/`data-windows` of every figure, in page order.
fn figures(html: &str) -> Vec<(usize, usize)> {
    html.match_indices("<figure class=\"chart\"")
        .map(|(i, _)| {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            let attr = |name: &str| {
                let at = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                tag[at..at + tag[at..].find('"').unwrap()].parse::<usize>().unwrap()
            };
            (attr("data-series"), attr("data-windows"))
        })
        .collect()
}

#[test]
fn the_page_shows_the_first_failing_seed_with_its_faults_shaded() {
    let src = LoadedScenario::from_text("t_html.toml", SCENARIO.to_string()).unwrap();
    let mut recs: Vec<RunRecord> =
        [1, 2, 3].iter().map(|&seed| run_job(Job { scenario: &src, seed }, &opts(true), true, run).unwrap()).collect();
    assert!(recs.iter().all(|r| r.passed() && r.view.is_some()), "{:?}", recs[0].failures);

    // All passed: the first seed is shown.
    let refs: Vec<&RunRecord> = recs.iter().collect();
    let html = scenario_page(&refs).unwrap().finish();
    assert!(html.contains("Seed 1 (every seed passed: the first)"));

    // Seed 2 failed (as an expectation would say): it is the one shown, its reason listed.
    recs[1].verdict = "fail".into();
    recs[1].failures = vec!["expect something: got worse".into()];
    recs[2].verdict = "fail".into();
    let refs: Vec<&RunRecord> = recs.iter().collect();
    let html = scenario_page(&refs).unwrap().finish();
    assert!(html.contains("Seed 2 (the first failing seed): membership over time"), "the first failing, not seed 3");
    assert!(html.contains("seed 2: members over time"));
    assert!(html.contains("expect something: got worse"));
    assert_eq!(html.matches("<td class=\"bad\">fail</td>").count(), 2);
    assert!(html.contains("--seed 2 --scenario-hash"), "the replay command");

    // Membership: 4 joiners (one series each), the authenticator, and the removals (the cut
    // pair by heartbeat timeout) as one marker series per reason; 2 shaded windows (the
    // partition and the loss); then the 4 charts across seeds.
    let figs = figures(&html);
    assert_eq!(figs.len(), 5, "{figs:?}");
    let v = recs[1].view.as_ref().unwrap();
    assert_eq!(v.windows.len(), 2, "{:?}", v.windows);
    assert_eq!((v.windows[0].kind.as_str(), v.windows[0].start, v.windows[0].end), ("partition", 8.0, 18.0));
    assert_eq!((v.windows[1].kind.as_str(), v.windows[1].start, v.windows[1].end), ("loss", 20.0, 24.0));
    assert!(v.removal_counts.contains_key("HeartbeatTimeout"), "{:?}", v.removal_counts);
    assert_eq!(figs[0], (4 + 1 + v.removal_counts.len(), 2));
    assert!(html.contains("partition cut") && html.contains("loss 0.1% all"), "window labels");
    assert!(html.contains("bound: heartbeat timeout 6s + one interval 2s"));
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "self-contained");
}

#[test]
fn views_change_no_trace_and_only_the_shown_seed_keeps_one() {
    let src = LoadedScenario::from_text("t_html.toml", SCENARIO.to_string()).unwrap();
    let jobs: Vec<Job> = [1, 2].iter().map(|&seed| Job { scenario: &src, seed }).collect();
    let with: Vec<RunRecord> = run_batch(&jobs, &opts(true), run).into_iter().map(Result::unwrap).collect();
    let without: Vec<RunRecord> = run_batch(&jobs, &opts(false), run).into_iter().map(Result::unwrap).collect();
    for (a, b) in with.iter().zip(&without) {
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.trace_events, b.trace_events);
    }
    assert!(with[0].view.is_some() && with[1].view.is_none(), "all passed: only the first seed's view is kept");
    assert!(without.iter().all(|r| r.view.is_none()));

    let dir = std::env::temp_dir().join(format!("sim-html-test-{}", std::process::id()));
    let files = write_scenario_pages(&dir, &with).unwrap();
    assert_eq!(files, [dir.join("t_html.html")]);
    assert!(std::fs::read_to_string(&files[0]).unwrap().starts_with("<!DOCTYPE html>"));
    std::fs::remove_dir_all(dir).unwrap();
}
