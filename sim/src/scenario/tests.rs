//! Scenario loading, validation, seeds and `[random]` resolution, on small inline files and
//! on every shipped scenario.

use std::collections::BTreeSet;
use std::path::PathBuf;

use pyile::units::Dur;

use super::*;

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn load(text: &str) -> Result<LoadedScenario, ScenarioError> {
    LoadedScenario::from_text("t.toml", text.to_string())
}

fn load_resolve(text: &str, seed: u64) -> Result<Resolved, ScenarioError> {
    load(text)?.resolve(seed)
}

/// The (line, message) of a located error; panics on any other outcome.
fn err_line<T: std::fmt::Debug>(r: Result<T, ScenarioError>) -> (usize, String) {
    match r {
        Err(ScenarioError::At { line, msg, .. }) => (line, msg),
        other => panic!("expected a located error, got {other:?}"),
    }
}

const BASE: &str = r#"name = "t"
duration = "60s"
settle = "10s"

[[joiners]]
name = "g"
count = 10
joiners_per_host = 5
join_at = "0s"
"#;

#[test]
fn every_shipped_scenario_parses_resolves_and_validates() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let loaded = LoadedScenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let sc = &loaded.scenario;
        assert_eq!(
            path.file_stem().unwrap().to_str().unwrap(),
            sc.name,
            "a scenario's name matches its file name (report files are named after it)"
        );
        assert!(!sc.expect.is_empty(), "{}: ships without expectations", sc.name);
        for &seed in &sc.seeds.0 {
            let r = loaded.resolve(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert_eq!(r.drawn.len(), sc.random.len());
        }
        if sc.ci {
            assert!(sc.host_count() <= 15, "{}: CI scenarios stay small ({} hosts)", sc.name, sc.host_count());
        }
        names.push(sc.name.clone());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "auth_crash",
            "ban_flood",
            "churn",
            "churn_during_distribution",
            "heartbeat_timeout",
            "hostile_mix",
            "impostor",
            "join_storm_faults",
            "lossy_broadcast",
            "lossy_links",
            "names_and_announcements",
            "one_connection",
            "partition",
            "protocol2_extensions",
            "scale_1000",
            "scale_5000"
        ]
    );
}

#[test]
fn scale_scenario_is_what_the_issue_asks() {
    let s = LoadedScenario::load(scenarios_dir().join("scale_1000.toml")).unwrap().scenario;
    assert_eq!(s.joiner_count(), 1000);
    assert_eq!(s.duration, Dur::from_secs(600));
    assert!(!s.ci);
    for g in &s.joiners {
        assert!((20..=50).contains(&g.get_ref().joiners_per_host));
    }
    assert_eq!(s.host_count(), 26);
}

#[test]
fn unknown_top_level_key_names_its_line() {
    let text = format!("{BASE}colour = \"blue\"\n");
    let (line, msg) = err_line(load(&text));
    assert_eq!(line, 10);
    assert!(msg.contains("unknown field `colour`"), "{msg}");
}

#[test]
fn unknown_key_in_a_section_names_its_line() {
    let text = format!("{BASE}\n[network]\nmax_latency = \"5ms\"\nfail_rat = 0.1\n");
    let (line, msg) = err_line(load(&text));
    assert_eq!(line, 13);
    assert!(msg.contains("`fail_rat`") && msg.contains("fail_rate"), "{msg}");
}

#[test]
fn unknown_key_in_a_timeline_entry_names_its_line() {
    let text = format!("{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"join\"\ngroup = \"g\"\ngruop = \"g\"\n");
    let (line, msg) = err_line(load(&text));
    assert_eq!(line, 15);
    assert!(msg.contains("`gruop`"), "{msg}");
}

#[test]
fn unknown_key_in_a_joiner_group_and_expect_name_their_lines() {
    let text = BASE.replace("join_at = \"0s\"", "join_at = \"0s\"\njoiners_per_hots = 3");
    assert_eq!(err_line(load(&text)).0, 10);
    let text = format!("{BASE}\n[[expect]]\nmetric = \"converged\"\nminn = 1\n");
    assert_eq!(err_line(load(&text)).0, 13);
}

#[test]
fn bad_values_name_their_line() {
    let text = BASE.replace("duration = \"60s\"", "duration = \"60\"");
    let (line, msg) = err_line(load(&text));
    assert_eq!(line, 2);
    assert!(msg.contains("missing unit"), "{msg}");
    let text = format!("{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"explode\"\n");
    let (line, msg) = err_line(load(&text));
    assert_eq!(line, 13);
    assert!(msg.contains("unknown variant `explode`"), "{msg}");
}

#[test]
fn a_field_that_does_not_apply_to_the_action_is_an_error_at_the_entry() {
    let text = format!("{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"crash\"\ntarget = \"g\"\njoin_rate = 2.0\n");
    let (line, msg) = err_line(load_resolve(&text, 1));
    assert_eq!(line, 11, "the entry's [[timeline]] line");
    assert!(msg.contains("`join_rate` does not apply to action `crash`"), "{msg}");
}

#[test]
fn references_and_ranges_are_checked() {
    let cases = [
        ("[[timeline]]\nat = \"5s\"\naction = \"join\"\ngroup = \"nope\"\n", "unknown group"),
        ("[[timeline]]\nat = \"5s\"\naction = \"crash\"\n", "needs `target`"),
        ("[[timeline]]\nat = \"70s\"\naction = \"heal\"\n", "not before duration"),
        (
            "[[timeline]]\nat = \"5s\"\naction = \"partition\"\ntarget = \"g\"\nfraction = 1.5\nheal_after = \"1s\"\n",
            "fraction",
        ),
        ("[[timeline]]\nat = \"5s\"\naction = \"churn\"\ngroup = \"g\"\nuntil = \"20s\"\n", "positive `join_rate`"),
        ("[[timeline]]\nat = \"5s\"\naction = \"partition\"\ntarget = \"g\"\n", "never healed"),
        ("[[timeline]]\nat = \"45s\"\naction = \"partition\"\ntarget = \"g\"\nheal_after = \"10s\"\n", "settle window"),
        ("[[expect]]\nmetric = \"join_latency\"\nmax = \"1s\"\n", "unknown metric"),
        ("[[expect]]\nmetric = \"false_removals\"\nmax = \"1s\"\n", "not a time metric"),
        ("[[expect]]\nmetric = \"converged\"\n", "needs `min` or `max`"),
    ];
    for (extra, want) in cases {
        let text = format!("{BASE}\n{extra}");
        let (line, msg) = err_line(load_resolve(&text, 1));
        assert_eq!(line, 11, "{want}: {msg}");
        assert!(msg.contains(want), "wanted {want:?} in {msg:?}");
    }
}

#[test]
fn a_partition_healed_later_or_settle_zero_is_fine() {
    let healed = format!(
        "{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"partition\"\ntarget = \"g\"\n\n[[timeline]]\nat = \"20s\"\naction = \"heal\"\n"
    );
    load_resolve(&healed, 1).unwrap();
    let open = format!("{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"partition\"\ntarget = \"g\"\n")
        .replace("settle = \"10s\"", "settle = \"0s\"");
    load_resolve(&open, 1).unwrap();
}

#[test]
fn host_count_packs_joiners() {
    let text = format!(
        "{BASE}\n[[joiners]]\nname = \"h\"\ncount = 11\njoiners_per_host = 5\n\n[[timeline]]\nat = \"5s\"\naction = \"ban_flood\"\nattackers = 4\n"
    );
    let s = load_resolve(&text, 1).unwrap().scenario;
    assert_eq!(s.host_count(), 1 + 2 + 3 + 4);
    assert_eq!(s.joiner_count(), 21);
}

#[test]
fn seed_sets() {
    assert_eq!(SeedSet::parse("7").unwrap().0, vec![7]);
    assert_eq!(SeedSet::parse("1..4").unwrap().0, vec![1, 2, 3]);
    assert_eq!(SeedSet::parse("1..=4").unwrap().0, vec![1, 2, 3, 4]);
    assert_eq!(SeedSet::parse("9, 1..3, 9").unwrap().0, vec![9, 1, 2]);
    assert!(SeedSet::parse("4..4").is_err());
    assert!(SeedSet::parse("x").is_err());
    let text = BASE.replace("name = \"t\"", "name = \"t\"\nseeds = \"10..=12\"");
    assert_eq!(load(&text).unwrap().scenario.seeds.0, vec![10, 11, 12]);
}

const RANDOM: &str = r#"
[[timeline]]
at = "5s"
action = "churn"
group = "g"
until = "40s"
join_rate = 1.0

[random]
"network.fail_rate" = { min = 0.0, max = 0.01 }
"authenticator.heartbeat_interval" = { min = "1s", max = "3s" }
"joiners.g.count" = { min = 5, max = 50 }
"timeline.0.burst_spread" = { one_of = ["0s", "5ms", "20ms"] }
"#;

#[test]
fn random_values_resolve_deterministically_per_seed() {
    let src = load(&format!("{BASE}{RANDOM}")).unwrap();
    let a = src.resolve(7).unwrap();
    let b = src.resolve(7).unwrap();
    assert_eq!(a.drawn, b.drawn, "same seed, same draws");
    let paths: Vec<&str> = a.drawn.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["authenticator.heartbeat_interval", "joiners.g.count", "network.fail_rate", "timeline.0.burst_spread"]
    );

    let mut distinct_counts = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let r = src.resolve(seed).unwrap();
        let s = &r.scenario;
        assert!((0.0..=0.01).contains(&s.network.fail_rate));
        let hb = s.authenticator.heartbeat_interval;
        assert!(hb >= Dur::from_secs(1) && hb <= Dur::from_secs(3), "{hb}");
        assert_eq!(hb.as_micros() % 1000, 0, "ms-granular bounds draw whole ms");
        let g = s.group("g").unwrap();
        assert!((5..=50).contains(&g.count));
        let spread = s.timeline[0].get_ref().burst_spread.unwrap();
        assert!(["0s", "5ms", "20ms"].contains(&spread.to_string().as_str()));
        // The report cell records exactly what was substituted.
        let cell = r.drawn_cell();
        assert!(cell.contains(&format!("joiners.g.count={}", g.count)), "{cell}");
        assert!(cell.contains(&format!("authenticator.heartbeat_interval={hb}")), "{cell}");
        distinct_counts.insert(g.count);
    }
    assert!(distinct_counts.len() > 10, "different seeds draw different values");
}

#[test]
fn adding_a_random_key_does_not_change_the_others() {
    let one = load(&format!("{BASE}\n[random]\n\"network.fail_rate\" = {{ min = 0.0, max = 0.5 }}\n")).unwrap();
    let two = load(&format!(
        "{BASE}\n[random]\n\"network.fail_rate\" = {{ min = 0.0, max = 0.5 }}\n\"network.max_latency\" = {{ min = \"10ms\", max = \"50ms\" }}\n"
    ))
    .unwrap();
    for seed in 0..10 {
        assert_eq!(
            one.resolve(seed).unwrap().scenario.network.fail_rate,
            two.resolve(seed).unwrap().scenario.network.fail_rate
        );
    }
}

#[test]
fn random_errors_name_the_random_line() {
    // A path to a key the schema does not have.
    let text = format!("{BASE}\n[random]\n\"network.fail_rat\" = {{ min = 0.0, max = 0.1 }}\n");
    let (line, msg) = err_line(load(&text));
    assert_eq!(line, 12);
    assert!(msg.contains("fail_rat"), "{msg}");
    // A value of the wrong type for its key.
    let text = format!("{BASE}\n[random]\n\"network.max_latency\" = {{ min = 1, max = 5 }}\n");
    assert_eq!(err_line(load(&text)).0, 12);
    // Inverted bounds, missing bounds, unknown array element.
    for bad in [
        "\"network.fail_rate\" = { min = 0.5, max = 0.1 }",
        "\"network.fail_rate\" = { min = 0.5 }",
        "\"joiners.nope.count\" = { min = 1, max = 2 }",
        "\"joiners.3.count\" = { min = 1, max = 2 }",
        "\"seeds\" = { one_of = [1, 2] }",
    ] {
        let text = format!("{BASE}\n[random]\n{bad}\n");
        assert_eq!(err_line(load(&text)).0, 12, "{bad}");
    }
}

#[test]
fn line_index_locates_offsets() {
    let idx = LineIndex::new("ab\ncd\n\nxyz");
    assert_eq!(idx.locate(0), (1, 1));
    assert_eq!(idx.locate(4), (2, 2));
    assert_eq!(idx.locate(7), (4, 1));
    assert_eq!(idx.locate(999), (4, 4));
}

#[test]
fn distribution_budget_parses_units_and_defaults_to_pyiles() {
    let s = load_resolve(BASE, 1).unwrap().scenario;
    assert_eq!(s.authenticator.distribution_budget.bytes_per_sec(), pyile::DEFAULT_DISTRIBUTION_BUDGET);
    for (written, bytes) in [
        ("64MiB/s", 64 << 20),
        ("500KB/s", 500_000),
        ("1GB/s", 1_000_000_000),
        ("2GiB/s", 2 << 30),
        ("1.5MB/s", 1_500_000),
        ("100B/s", 100),
        ("unbounded", 0),
    ] {
        let text = format!("{BASE}\n[authenticator]\ndistribution_budget = \"{written}\"\n");
        let s = load_resolve(&text, 1).unwrap_or_else(|e| panic!("{written}: {e}")).scenario;
        assert_eq!(s.authenticator.distribution_budget.bytes_per_sec(), bytes, "{written}");
    }
}

#[test]
fn a_bad_distribution_budget_names_its_line_and_column() {
    for (value, want) in [
        ("\"64MiB\"", "must end in /s"),
        ("\"64\"", "missing unit"),
        ("\"64 mbps\"", "must end in /s"),
        ("\"64Mb/s\"", "unknown unit"),
        ("\"0KB/s\"", "write \"unbounded\""),
        ("\"0.5B/s\"", "whole number of bytes"),
        ("\"none\"", "missing number"),
        ("67108864", "byte rate string"),
    ] {
        let text = format!("{BASE}\n[authenticator]\nheartbeat_interval = \"1s\"\ndistribution_budget = {value}\n");
        let err = load(&text).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("t.toml:13:23: "), "{value}: {shown}");
        assert!(shown.contains(want), "{value}: wanted {want:?} in {shown:?}");
    }
}

#[test]
fn distribution_budget_can_be_drawn_at_random() {
    let text = format!(
        "{BASE}\n[random]\n\"authenticator.distribution_budget\" = {{ min = \"1MiB/s\", max = \"64MiB/s\" }}\n\"network.max_latency\" = {{ min = \"5ms\", max = \"10ms\" }}\n"
    );
    let src = load(&text).unwrap();
    let mut seen = BTreeSet::new();
    for seed in 0..30 {
        let r = src.resolve(seed).unwrap();
        let b = r.scenario.authenticator.distribution_budget.bytes_per_sec();
        assert!(((1 << 20)..=(64 << 20)).contains(&b), "{b}");
        assert_eq!(b % (1 << 20), 0, "MiB bounds draw whole MiB");
        let shown = r.scenario.authenticator.distribution_budget.to_string();
        assert!(r.drawn_cell().contains(&format!("authenticator.distribution_budget={shown}")), "{}", r.drawn_cell());
        seen.insert(b);
    }
    assert!(seen.len() > 10, "different seeds draw different budgets");
    let one_of = format!(
        "{BASE}\n[random]\n\"authenticator.distribution_budget\" = {{ one_of = [\"unbounded\", \"8MB/s\"] }}\n"
    );
    let src = load(&one_of).unwrap();
    let drawn: BTreeSet<u64> = (0..20)
        .map(|seed| src.resolve(seed).unwrap().scenario.authenticator.distribution_budget.bytes_per_sec())
        .collect();
    assert_eq!(drawn, BTreeSet::from([0, 8_000_000]));
    // Bad draws are errors at the [random] line, when the file loads.
    for bad in [
        "{ min = \"unbounded\", max = \"1MiB/s\" }",
        "{ min = \"1MiB/s\", max = \"2s\" }",
        "{ min = \"64MiB/s\", max = \"1MiB/s\" }",
        "{ min = \"fast\", max = \"faster\" }",
        "{ one_of = [\"64MiB\"] }",
    ] {
        let text = format!("{BASE}\n[random]\n\"authenticator.distribution_budget\" = {bad}\n");
        let (line, msg) = err_line(load(&text));
        assert_eq!(line, 12, "{bad}: {msg}");
    }
}

#[test]
fn event_rates_take_a_bare_number_per_second_or_a_unit() {
    let churn = |rate: &str| {
        let text = format!(
            "{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"churn\"\ngroup = \"g\"\nuntil = \"40s\"\njoin_rate = {rate}\nleave_rate = {rate}\n"
        );
        let s = load_resolve(&text, 1).unwrap_or_else(|e| panic!("{rate}: {e}")).scenario;
        let e = s.timeline[0].get_ref();
        assert_eq!(e.join_rate, e.leave_rate);
        e.join_rate.unwrap().per_sec()
    };
    for (written, per_sec) in [
        ("2", 2.0),
        ("2.0", 2.0),
        ("0.8", 0.8),
        ("\"2/s\"", 2.0),
        ("\"120/m\"", 2.0),
        ("\"7200/h\"", 2.0),
        ("\"2\"", 2.0),
    ] {
        assert_eq!(churn(written).to_bits(), f64::to_bits(per_sec), "{written}");
    }
    for (value, want) in [
        ("-1.0", "a rate must be a finite number >= 0"),
        ("\"-2/s\"", "a rate must be a finite number >= 0"),
        ("\"2/fortnight\"", "unknown unit"),
        ("\"fast\"", "not a number"),
        ("true", "an event rate"),
    ] {
        let text =
            format!("{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"broadcast\"\nuntil = \"40s\"\nrate = {value}\n");
        let shown = load(&text).unwrap_err().to_string();
        assert!(shown.starts_with("t.toml:15:8: "), "{value}: {shown}");
        assert!(shown.contains(want), "{value}: wanted {want:?} in {shown:?}");
    }
    let zero = format!(
        "{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"churn\"\ngroup = \"g\"\nuntil = \"40s\"\njoin_rate = \"0/m\"\n"
    );
    assert!(err_line(load_resolve(&zero, 1)).1.contains("positive `join_rate`"));
}

#[test]
fn event_rates_can_be_drawn_at_random() {
    let text = format!(
        "{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"churn\"\ngroup = \"g\"\nuntil = \"40s\"\njoin_rate = 1\n\n[random]\n\"timeline.0.join_rate\" = {{ min = \"30/m\", max = \"3/s\" }}\n\"timeline.0.leave_rate\" = {{ min = 0.5, max = 1.5 }}\n"
    );
    let src = load(&text).unwrap();
    let mut seen = BTreeSet::new();
    for seed in 0..30 {
        let r = src.resolve(seed).unwrap();
        let e = r.scenario.timeline[0].get_ref();
        let (join, leave) = (e.join_rate.unwrap().per_sec(), e.leave_rate.unwrap().per_sec());
        assert!((0.5..=3.0).contains(&join) && (0.5..=1.5).contains(&leave), "{join} {leave}");
        assert!(r.drawn_cell().contains(&format!("timeline.0.join_rate={join}/s")), "{}", r.drawn_cell());
        seen.insert(join.to_bits());
    }
    assert!(seen.len() > 10, "different seeds draw different rates");
    for bad in ["{ min = \"3/s\", max = \"1/s\" }", "{ min = \"1/s\", max = \"2s\" }"] {
        let text = text.replace("{ min = \"30/m\", max = \"3/s\" }", bad);
        assert_eq!(err_line(load(&text)).0, 19, "{bad}");
    }
}

#[test]
fn attacks_are_validated_at_their_entry() {
    let ok = "[[timeline]]\nat = \"5s\"\naction = \"attack\"\nkind = \"oversize\"\nattackers = 2\nrate = \"2/s\"\nuntil = \"20s\"\nbytes = 5000\n";
    let s = load_resolve(&format!("{BASE}\n{ok}"), 1).unwrap().scenario;
    let e = s.timeline[0].get_ref();
    assert_eq!((e.kind, e.attack_bytes()), (Some(AttackKind::Oversize), Some(5000)));
    assert_eq!(e.ends_at(&s.authenticator), Some(Dur::from_secs(25)), "the last connection's handshake timeout");
    assert_eq!(s.host_count(), 1 + 2 + 2);
    let cases = [
        ("action = \"attack\"\n", "needs `kind`"),
        ("action = \"attack\"\nkind = \"silent\"\nrate = 5\n", "needs `until`"),
        ("action = \"attack\"\nkind = \"silent\"\nrate = 5\ncount = 2\nuntil = \"9s\"\n", "not both"),
        ("action = \"attack\"\nkind = \"dist_chatter\"\n", "needs `until`"),
        ("action = \"attack\"\nkind = \"silent\"\nbytes = 10\n", "`bytes` does not apply to attack kind `silent`"),
        ("action = \"attack\"\nkind = \"oversize\"\nbytes = 2048\n", "must exceed the authenticator's 2048-byte"),
        ("action = \"attack\"\nkind = \"garbage\"\nbytes = 3000\n", "garbage `bytes` 3000"),
        ("action = \"attack\"\nkind = \"oversize\"\ninterval = \"1s\"\n", "`interval` does not apply"),
        ("action = \"attack\"\nkind = \"silent\"\nfraction = 0.5\n", "`fraction` does not apply to action `attack`"),
        ("action = \"crash\"\ntarget = \"g\"\nkind = \"silent\"\n", "`kind` does not apply to action `crash`"),
        ("action = \"attack\"\nkind = \"silent\"\nrate = 5\nuntil = \"48s\"\n", "inside the final settle window"),
    ];
    for (extra, want) in cases {
        let text = format!("{BASE}\n[[timeline]]\nat = \"5s\"\n{extra}");
        let (line, msg) = err_line(load_resolve(&text, 1));
        assert_eq!(line, 11, "{want}: {msg}");
        assert!(msg.contains(want), "wanted {want:?} in {msg:?}");
    }
    let text = format!("{BASE}\n[[timeline]]\nat = \"5s\"\naction = \"attack\"\nkind = \"sneaky\"\n");
    let (line, msg) = err_line(load(&text));
    assert_eq!(line, 14);
    assert!(msg.contains("unknown variant `sneaky`") && msg.contains("reconnect_storm"), "{msg}");
}
