//! End to end: small scenarios on turmoil with the real pyile authenticator and joiners.
//! Each asserts what the run really did (metrics, evidence, findings), that it replays
//! exactly, and that the checkers fire against a deliberately broken authenticator.

use std::time::Duration;

use sim::batch::{BatchOptions, Job, run_job};
use sim::metrics::MetricId;
use sim::runner::{Sabotage, run, run_with};
use sim::scenario::LoadedScenario;
use sim::trace::Trace;

fn load(text: &str) -> LoadedScenario {
    LoadedScenario::from_text("test.toml", text.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

const PARTITION: &str = r#"name = "t_partition"
duration = "45s"
settle = "15s"

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
at = "10s"
action = "partition"
target = "cut"
heal_after = "10s"

[[expect]]
metric = "detection_latency_max_s"
max = "9s"

[[expect]]
metric = "converged"
min = 1
"#;

#[test]
fn a_partition_is_detected_recovered_and_replays_exactly() {
    let src = load(PARTITION);
    let opts = BatchOptions::checked("t");
    let rec = run_job(Job { scenario: &src, seed: 5 }, &opts, false, run).unwrap();
    assert_eq!(rec.failures, Vec::<String>::new());
    assert_eq!((rec.verdict.as_str(), rec.determinism.as_str()), ("pass", "ok"));
    let m = &rec.metrics;
    assert_eq!(m.get(MetricId::Hosts), Some(3.0));
    assert_eq!(m.get(MetricId::FaultsFired), Some(1.0));
    assert!(m.get(MetricId::SegmentsDropped).unwrap() > 0.0, "the partition dropped heartbeats");
    // Both cut members removed within heartbeat_timeout + interval (+ slack), not before the timeout.
    let d = m.get(MetricId::DetectionLatencyMax).unwrap();
    assert!((6.0..=8.5).contains(&d), "detection {d}");
    assert_eq!(m.get(MetricId::TimeoutRemovals), Some(2.0));
    assert_eq!(m.get(MetricId::FalseRemovals), Some(0.0), "the steady members kept answering");
    assert!(m.get(MetricId::Rejoins).unwrap() >= 2.0, "the cut members came back");
    assert_eq!(m.get(MetricId::Converged), Some(1.0));
    assert_eq!(m.get(MetricId::SafetyViolations), Some(0.0));
    assert!(rec.trace_events > 50);
}

#[test]
fn stale_member_fires_against_an_authenticator_that_never_times_out() {
    // The reference's behaviour: a member that goes silent is never removed.
    let resolved = load(PARTITION).resolve(5).unwrap();
    let broken = Sabotage { auth_heartbeat_timeout: Some(Duration::from_secs(3600)), ..Sabotage::default() };
    let out = run_with(&resolved, Trace::new(), &broken).unwrap();
    let checks: Vec<&str> = out.findings.iter().map(|f| f.check).collect();
    assert!(checks.contains(&"stale_member"), "{:?}", out.findings);
    assert!(out.findings.iter().any(|f| f.detail.contains("still listed")));
    // The same scenario against the correct authenticator is clean.
    let ok = run(&resolved, Trace::new()).unwrap();
    assert!(ok.findings.is_empty(), "{:?}", ok.findings);
}

#[test]
fn the_trace_is_a_pure_function_of_the_seed() {
    let resolved = load(PARTITION).resolve(9).unwrap();
    let a = run(&resolved, Trace::new()).unwrap().trace;
    let b = run(&resolved, Trace::new()).unwrap().trace;
    assert_eq!((a.hash, a.events), (b.hash, b.events));
    let other = run(&load(PARTITION).resolve(10).unwrap(), Trace::new()).unwrap().trace;
    assert_ne!(a.hash, other.hash, "another seed, another run");
}

const AUTH_CRASH: &str = r#"name = "t_auth_crash"
duration = "40s"
settle = "12s"

[network]
max_latency = "5ms"

[[joiners]]
name = "m"
count = 6
joiners_per_host = 3
join_at = "0s"
stagger = "5ms"
rejoin_after = "1s"

[[timeline]]
at = "8s"
action = "crash"
target = "authenticator"

[[timeline]]
at = "14s"
action = "restart"
target = "authenticator"

[[expect]]
metric = "auth_lost_reports"
min = 6
"#;

#[test]
fn an_authenticator_crash_is_reported_by_every_joiner_who_then_rejoins() {
    let src = load(AUTH_CRASH);
    let opts = BatchOptions::checked("t");
    let rec = run_job(Job { scenario: &src, seed: 1 }, &opts, false, run).unwrap();
    assert_eq!(rec.failures, Vec::<String>::new());
    assert_eq!(rec.determinism, "ok", "crashes replay exactly");
    let m = &rec.metrics;
    assert_eq!(m.get(MetricId::AuthLostReports), Some(6.0));
    assert!(m.get(MetricId::AuthLossDetectionMax).unwrap() < 0.1, "a crash closes the streams: EOF at once");
    assert_eq!(m.get(MetricId::JoinsOk), Some(12.0), "6 joins, 6 rejoins after the restart");
    assert_eq!(m.get(MetricId::Converged), Some(1.0));
}

const FLOOD: &str = r#"name = "t_flood"
duration = "30s"
settle = "10s"

[authenticator]
password = "right"
password_attempts = 3

[[joiners]]
name = "honest"
count = 3
joiners_per_host = 3
join_at = "6s"
stagger = "50ms"

[[timeline]]
at = "5s"
action = "ban_flood"
attackers = 2
attempts = 6
rate = 5.0
"#;

#[test]
fn a_ban_flood_bans_exactly_the_attackers_after_password_attempts() {
    let resolved = load(FLOOD).resolve(3).unwrap();
    let out = run(&resolved, Trace::new()).unwrap();
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    let m = &out.metrics;
    assert_eq!(m.get(MetricId::BannedIps), Some(2.0));
    assert_eq!(m.get(MetricId::AttemptsBeforeBanMax), Some(3.0), "no off-by-one");
    assert!(m.get(MetricId::BanLatencyMax).unwrap() < 1.0);
    assert_eq!(m.get(MetricId::JoinsOk), Some(3.0), "every honest joiner got in during the flood");
    assert!(m.get(MetricId::HonestAdmitDuringFloodMax).unwrap() < 0.5);
    assert_eq!(m.get(MetricId::Converged), Some(1.0));
}

/// A join storm of 60 joiners 5 ms apart, with the authenticator's distribution budget
/// substituted for `BUDGET`.
const STORM: &str = r#"name = "t_storm"
duration = "20s"
settle = "10s"

[network]
max_latency = "5ms"

[authenticator]
distribution_budget = "BUDGET"

[[joiners]]
name = "m"
count = 60
joiners_per_host = 20
join_at = "1s"
stagger = "5ms"

[[expect]]
metric = "joins_ok"
min = 60
"#;

#[test]
fn a_join_storm_reaches_protocol_2_joiners_as_deltas_whatever_the_budget() {
    // The sim's joiners speak protocol 2: after one whole list each (in the handshake), every change reaches
    // them as a delta, and the distribution budget (which paces whole lists to v1 members)
    // does not slow them down: the same run, byte for byte, at any budget.
    let run_with = |budget: &str| {
        let out = run(&load(&STORM.replace("BUDGET", budget)).resolve(1).unwrap(), Trace::new()).unwrap();
        assert!(out.findings.is_empty(), "{budget}: {:?}", out.findings);
        let m = out.metrics;
        assert_eq!(m.get(MetricId::JoinsOk), Some(60.0), "{budget}");
        assert_eq!(m.get(MetricId::Converged), Some(1.0), "{budget}");
        assert_eq!(m.get(MetricId::ListChanges), Some(60.0), "{budget}");
        (m, out.trace.hash)
    };
    let (unbounded, h_unbounded) = run_with("unbounded");
    let (paced, h_paced) = run_with("50KB/s");
    let (_, h_default) = run_with("64MiB/s");
    assert_eq!((h_paced, h_default), (h_unbounded, h_unbounded), "the budget changed what protocol-2 joiners got");
    assert_eq!(paced.get(MetricId::DistMsgsPerChange), unbounded.get(MetricId::DistMsgsPerChange));
    // One whole list per joiner, the committed one in its handshake; after it, only deltas.
    assert_eq!(unbounded.get(MetricId::DistSnapshotsFirst), Some(0.0));
    assert_eq!(unbounded.get(MetricId::DistSnapshotsReported), Some(0.0));
    assert_eq!(unbounded.get(MetricId::DistSnapshotsBehind), Some(0.0));
    let deltas = unbounded.get(MetricId::DistDeltas).unwrap();
    assert!(deltas > 600.0, "{deltas} deltas for 60 joins to up to 60 members (some merged)");
    // Whole lists to every member would cost ~members × 23 bytes an update (~1,400 at 60
    // members); a delta ~85, and a run of deltas read together (one update) a few of them.
    let per_msg =
        unbounded.get(MetricId::DistBytesPerChange).unwrap() / unbounded.get(MetricId::DistMsgsPerChange).unwrap();
    assert!(per_msg < 400.0, "{per_msg} bytes per list update");
}

/// Two hosts of joiners arriving 10 ms apart; the first host crashes in the middle of the
/// storm (while some of its joiners are mid-handshake) and comes back. `CRASH_AT` is replaced.
const CRASH_STORM: &str = r#"name = "t_crash_storm"
duration = "12s"
settle = "5s"

[network]
min_latency = "1ms"
max_latency = "8ms"

[[joiners]]
name = "m"
count = 12
joiners_per_host = 6
join_at = "1s"
stagger = "10ms"
rejoin_after = "500ms"

[[timeline]]
at = "1.08s"
action = "crash"
target = "m"
hosts = 1
pick = "first"

[[timeline]]
at = "3s"
action = "restart"
target = "m"

[random]
"timeline.0.at" = { min = "1.0s", max = "1.13s" }
"network.max_latency" = { min = "2ms", max = "20ms" }
"#;

/// Crashes during a join storm end the crashed host's joins (and their sockets) in an order
/// that used to come from tokio's unseeded RNG (a `watch` channel's waiters): every seed of
/// 100 must replay exactly, and the checkers (ghost members included) must stay quiet.
#[test]
fn crashes_during_a_join_storm_replay_exactly_over_100_seeds() {
    let src = load(CRASH_STORM);
    let opts = BatchOptions::checked("t");
    let mut cut_mid_join = 0;
    for seed in 1..=100 {
        let rec = run_job(Job { scenario: &src, seed }, &opts, false, run).unwrap();
        assert_eq!(rec.determinism, "ok", "seed {seed} did not replay exactly");
        assert_eq!(rec.failures, Vec::<String>::new(), "seed {seed}");
        assert_eq!(rec.metrics.get(MetricId::Converged), Some(1.0), "seed {seed}");
        if rec.metrics.get(MetricId::JoinsCutByCrash).is_some_and(|n| n > 0.0) {
            cut_mid_join += 1;
        }
    }
    assert!(cut_mid_join >= 10, "the crash hit joins in progress in only {cut_mid_join} of 100 seeds");
}

/// A host both partitioned and held from the same instant (overlapping faults on one link):
/// the hold must not turn the partition's drops into delays, and releasing it must not heal
/// the partition (turmoil's `hold` and `release` alone overwrite the link's state).
const HOLD_IN_PARTITION: &str = r#"name = "t_hold_in_partition"
duration = "40s"
settle = "10s"

[network]
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

[[timeline]]
at = "5s"
action = "partition"
target = "cut"
heal_after = "20s"

[[timeline]]
at = "5s"
action = "hold"
target = "cut"
release_after = "2s"
"#;

#[test]
fn a_hold_released_inside_a_partition_leaves_the_partition_in_force() {
    let out = run(&load(HOLD_IN_PARTITION).resolve(1).unwrap(), Trace::new()).unwrap();
    assert!(out.findings.is_empty(), "{:?}", out.findings);
    let m = &out.metrics;
    assert_eq!(m.get(MetricId::TimeoutRemovals), Some(2.0), "the cut members were still cut after the release");
    let d = m.get(MetricId::DetectionLatencyMax).unwrap();
    assert!((6.0..=8.5).contains(&d), "detection {d}");
}

/// Exactly-once broadcast (issue 12 part 3), the shipped scenario: lossy links kill chat
/// connections and echoes, senders retry, receivers' filters drop the copies they already
/// delivered. Fails if the filter delivers everything (`broadcast_duplicated`) or if senders
/// never retry (`broadcast_losses` > 0, no `msgs_retries`).
#[test]
fn lossy_broadcast_delivers_every_broadcast_exactly_once() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/lossy_broadcast.toml");
    let src = LoadedScenario::load(&path).unwrap();
    let opts = BatchOptions::checked("t");
    for seed in [1, 2, 3] {
        let rec = run_job(Job { scenario: &src, seed }, &opts, false, run).unwrap();
        assert_eq!(rec.failures, Vec::<String>::new(), "seed {seed}");
        assert_eq!((rec.verdict.as_str(), rec.determinism.as_str()), ("pass", "ok"), "seed {seed}");
        let m = &rec.metrics;
        let get = |id| m.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(get(MetricId::BroadcastDuplicatesDelivered), 0.0, "seed {seed}");
        assert!(get(MetricId::MsgsDuplicatesDropped) > 0.0, "seed {seed}: the filter dropped nothing");
        assert!(get(MetricId::MsgsRetries) > 0.0, "seed {seed}: no retries");
        assert_eq!(get(MetricId::BroadcastLosses), 0.0, "seed {seed}");
        assert!(get(MetricId::BroadcastCopiesChecked) > 1000.0, "seed {seed}");
    }
}
