//! `pyile auth` and `loadgen` as real processes on loopback, as a user runs them.
//!
//! The `pyile` binary is taken from beside `loadgen` in the target directory (a workspace
//! `cargo test` builds it); if it is missing it is built once into a separate target directory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const PASSWORD: &str = "load-test-pw";

/// One test at a time: they share two cores and measure latencies.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn pyile_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let beside = Path::new(LOADGEN).with_file_name("pyile");
        if beside.exists() {
            return beside;
        }
        let profile_dir = Path::new(LOADGEN).parent().unwrap();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let target = profile_dir.parent().unwrap().join("loadgen-e2e-pyile");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "pyile", "--bin", "pyile"]).env("CARGO_TARGET_DIR", &target);
        if release {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("run cargo").success(), "building pyile failed");
        target.join(if release { "release" } else { "debug" }).join("pyile")
    })
}

/// A `pyile auth` process on a free loopback port; killed on drop.
struct Auth {
    child: Child,
    addr: SocketAddr,
}

impl Auth {
    fn start() -> Auth {
        Auth::start_with(&["--heartbeat-interval", "300ms"])
    }

    /// `pyile auth --listen 127.0.0.1:0` with these flags besides.
    fn start_with(flags: &[&str]) -> Auth {
        let mut child = Command::new(pyile_bin())
            .args(["auth", "--listen", "127.0.0.1:0"])
            .args(flags)
            .env("PYILE_PASSWORD", PASSWORD)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pyile auth");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("pyile auth said nothing").unwrap();
            if let Some(rest) = line.strip_prefix("listening auth=") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Auth { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Auth {
    fn drop(&mut self) {
        self.kill();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn spawn_loadgen(args: &[&str]) -> Child {
    Command::new(LOADGEN)
        .args(args)
        .env("PYILE_PASSWORD", PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadgen")
}

/// Waits for `child` at most `limit`, killing it (and failing) past that.
fn finish(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("loadgen did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn loadgen(args: &[&str]) -> Output {
    finish(spawn_loadgen(args), Duration::from_secs(120))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// metric -> cells after the name, from a final CSV.
fn read_csv(path: &Path) -> HashMap<String, Vec<String>> {
    let content = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = content.lines();
    assert_eq!(lines.next().unwrap(), "metric,count,min_us,p50_us,p90_us,p99_us,p999_us,max_us,mean_us");
    lines
        .map(|l| {
            let mut cells = l.split(',').map(String::from);
            (cells.next().unwrap(), cells.collect())
        })
        .collect()
}

fn count(rows: &HashMap<String, Vec<String>>, metric: &str) -> u64 {
    rows.get(metric).unwrap_or_else(|| panic!("no row {metric}"))[0].parse().unwrap()
}

const METRICS: [&str; 11] = [
    "tcp_connect",
    "banned_status",
    "auth_result",
    "first_list",
    "join_complete",
    "convergence",
    "heartbeat_interval",
    "message_delivery",
    "crash_detection",
    "schedule_lag",
    "runtime_lag",
];
const COUNTERS: [&str; 30] = [
    "joined",
    "refused",
    "timed_out",
    "banned",
    "wrong_password",
    "protocol_error",
    "removed",
    "lost_authenticator",
    "other_error",
    "errors",
    "left",
    "crashed",
    "crash_undetected",
    "crash_unobserved",
    "messages_sent",
    "messages_delivered",
    "messages_lost",
    "messages_received",
    "messages_duplicates_dropped",
    "message_retries",
    "attacks",
    "attack_rejected",
    "attack_banned",
    "skipped",
    "events_lagged",
    "alias_taken",
    "impostor_joins",
    "impostor_refused",
    "impostor_passwords_captured",
    "impostor_exposed",
];

#[test]
fn two_hundred_peers_all_join_and_the_gates_pass_and_fail() {
    let _serial = serial();
    let auth = Auth::start();
    let dir = temp_dir("200");
    let out = dir.join("run.csv");
    let hlog = dir.join("run.hlog");
    let target = auth.addr.to_string();
    let run = loadgen(&[
        "--peers",
        "200",
        "--target",
        &target,
        "--rate",
        "200/s",
        "--hold",
        "2s",
        "--heartbeat-timeout",
        "3s",
        "--broadcast-rate",
        "2/s",
        "--out",
        out.to_str().unwrap(),
        "--hdr-log",
        hlog.to_str().unwrap(),
        "--fail-on",
        "join_complete.p99>20s",
        "--fail-on",
        "errors>0",
    ]);
    assert!(run.status.success(), "exit {:?}\n{}{}", run.status, text(&run.stdout), text(&run.stderr));
    assert!(text(&run.stdout).contains("no --fail-on rule violated"));

    let rows = read_csv(&out);
    assert_eq!(rows.len(), METRICS.len() + COUNTERS.len() + 1);
    for name in METRICS.iter().chain(&COUNTERS) {
        assert!(rows.contains_key(*name), "no row {name}");
    }
    // The generator's verdict on its own schedule: 0 or 1, with the schedule lag's numbers.
    let verdict = &rows["generator_overloaded"];
    assert!(verdict[0] == "0" || verdict[0] == "1", "{verdict:?}");
    assert_eq!(verdict[1..], rows["schedule_lag"][1..]);
    let said = if verdict[0] == "1" {
        "the generator fell behind its schedule ("
    } else {
        "the generator kept its schedule ("
    };
    assert!(text(&run.stdout).contains(said), "{}", text(&run.stdout));
    assert_eq!(count(&rows, "joined"), 200);
    assert_eq!(count(&rows, "errors"), 0);
    for stage in ["tcp_connect", "banned_status", "auth_result", "first_list", "join_complete", "convergence"] {
        assert_eq!(count(&rows, stage), 200, "{stage}");
        let cells = &rows[stage];
        let (min, p50, max): (u64, u64, u64) =
            (cells[1].parse().unwrap(), cells[2].parse().unwrap(), cells[6].parse().unwrap());
        assert!(min <= p50 && p50 <= max && max < 20_000_000, "{stage}: {cells:?}");
    }
    // Heartbeats every 300 ms over a 3 s run: several intervals per joiner, all near 300 ms.
    assert!(count(&rows, "heartbeat_interval") >= 200 * 3);
    let hb_p50: u64 = rows["heartbeat_interval"][2].parse().unwrap();
    assert!((250_000..400_000).contains(&hb_p50), "heartbeat p50 {hb_p50} us");
    assert!(count(&rows, "schedule_lag") >= 200);
    assert_eq!(count(&rows, "messages_delivered"), count(&rows, "messages_sent"));
    // Chat between loadgen's own joiners: each delivery counted once at its receiver (the
    // authenticator's are not loadgen's), with its latency; a copy is only ever dropped as a
    // duplicate after a retry.
    let received = count(&rows, "messages_received");
    assert!(received > 0 && received <= count(&rows, "messages_delivered"), "received {received}");
    assert_eq!(count(&rows, "message_delivery"), received, "one latency sample per delivery");
    assert!(count(&rows, "messages_duplicates_dropped") <= count(&rows, "message_retries"));
    // Counters have counts only.
    assert!(rows["joined"][1..].iter().all(|c| c.is_empty()));

    let intervals = std::fs::read_to_string(dir.join("run.intervals.csv")).unwrap();
    let blocks = intervals.lines().filter(|l| l.contains(",active,")).count();
    assert!(blocks >= 3, "{blocks} intervals");
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.csv.params.json")).unwrap()).unwrap();
    assert_eq!(params["peers"], 200);
    assert_eq!(params["outcome"], "passed");

    // The same numbers through the interval log, and a gate that must fail.
    let merged = dir.join("merged.csv");
    let m = loadgen(&[
        "merge",
        hlog.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
        "--fail-on",
        "join_complete.p99>1us",
    ]);
    assert_eq!(m.status.code(), Some(1), "{}", text(&m.stderr));
    assert!(text(&m.stderr).contains("failed --fail-on \"join_complete.p99>1us\""), "{}", text(&m.stderr));
    assert_eq!(read_csv(&merged), rows, "merging one log gives back the run's CSV");

    // A failing gate on a run exits 1 and names the rule.
    let small = loadgen(&[
        "--peers",
        "10",
        "--target",
        &target,
        "--rate",
        "100/s",
        "--hold",
        "0s",
        "--quiet",
        "--fail-on",
        "joined<11",
    ]);
    assert_eq!(small.status.code(), Some(1));
    assert_eq!(text(&small.stderr).trim(), "loadgen: failed --fail-on \"joined<11\": observed 10");
    // --quiet hides the progress only (as in sim): the summary is still printed.
    assert!(text(&small.stdout).starts_with("metric"), "{}", text(&small.stdout));
    assert!(text(&small.stdout).contains("counters: joined 10"), "{}", text(&small.stdout));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Churn's crash half against a `pyile auth` with a short heartbeat timeout: every crash is
/// a silent death the authenticator notices only by that timeout, and its detection latency
/// is in the final CSV, the interval CSV, the summary, the parameters and the interval log.
#[test]
fn crash_churn_measures_the_authenticator_s_detection_in_every_report() {
    let _serial = serial();
    let auth = Auth::start_with(&["--heartbeat-interval", "100ms", "--heartbeat-timeout", "800ms"]);
    let dir = temp_dir("crash");
    let out = dir.join("crash.csv");
    let hlog = dir.join("crash.hlog");
    let target = auth.addr.to_string();
    let flags = [
        "--peers",
        "20",
        "--target",
        &target,
        "--rate",
        "100/s",
        "--hold",
        "4s",
        "--churn",
        "3/s",
        "--seed",
        "3",
        "--heartbeat-timeout",
        "3s",
        "--crash-bound",
        "5s",
    ];
    let dry = loadgen(&[&flags[..], &["--dry-run"]].concat());
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let planned = text(&dry.stdout).lines().filter(|l| l.contains(",crash,")).count() as u64;
    assert!(planned >= 3, "the plan should hold crashes:\n{}", text(&dry.stdout));

    let run = loadgen(
        &[&flags[..], &["--quiet", "--out", out.to_str().unwrap(), "--hdr-log", hlog.to_str().unwrap()]].concat(),
    );
    assert!(run.status.success(), "exit {:?}\n{}{}", run.status, text(&run.stdout), text(&run.stderr));
    let rows = read_csv(&out);
    assert_eq!(count(&rows, "crashed"), planned);
    assert_eq!(count(&rows, "crash_undetected"), 0);
    let detected = count(&rows, "crash_detection");
    assert_eq!(detected + count(&rows, "crash_unobserved"), planned);
    assert!(detected + 1 >= planned, "{detected} of {planned} crashes seen removed");
    // Not before the 800 ms timeout can expire (half of it: room for a slow machine; a
    // close is seen in milliseconds), never past the 5 s bound.
    let cells = &rows["crash_detection"];
    let (min, max): (u64, u64) = (cells[1].parse().unwrap(), cells[6].parse().unwrap());
    assert!(min >= 400_000 && max <= 5_000_000, "crash_detection {cells:?}");
    assert!(text(&run.stdout).lines().any(|l| l.starts_with("crash_detection") && !l.ends_with('-')));

    let intervals = std::fs::read_to_string(dir.join("crash.intervals.csv")).unwrap();
    let per_interval: u64 = intervals
        .lines()
        .filter_map(|l| l.split_once(",crash_detection,"))
        .map(|(_, rest)| rest.split(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(per_interval, detected);
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("crash.csv.params.json")).unwrap()).unwrap();
    assert_eq!(params["crash_bound_s"], 5.0);
    let merged = dir.join("merged.csv");
    let m = loadgen(&["merge", hlog.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert!(m.status.success(), "{}", text(&m.stderr));
    assert_eq!(read_csv(&merged), rows, "merging the log gives back the run's CSV");

    // --help says what each half of churn does.
    let help = text(&loadgen(&["--help"]).stdout);
    assert!(
        help.contains("graceful leaves") && help.contains("crashes (the") && help.contains("no FIN or RST"),
        "{help}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_attack_beside_honest_joiners_is_reported_and_gated() {
    let _serial = serial();
    let auth = Auth::start();
    let dir = temp_dir("attack");
    let out = dir.join("attack.csv");
    let hlog = dir.join("attack.hlog");
    let target = auth.addr.to_string();
    // pyile auth's defaults: the password within 3 s. 24 silent connections from 2
    // addresses (16 each at most), held open; 10 garbage ones; 50 honest joiners meanwhile.
    let run = loadgen(&[
        "--peers",
        "50",
        "--target",
        &target,
        "--rate",
        "50/s",
        "--hold",
        "4s",
        "--heartbeat-timeout",
        "3s",
        "--attack",
        "silent:24,ips=2",
        "--attack",
        "garbage:10/s,ips=1,bytes=1KiB",
        "--out",
        out.to_str().unwrap(),
        "--hdr-log",
        hlog.to_str().unwrap(),
        "--fail-on",
        "errors>0",
        "--fail-on",
        "join_complete.p99>2s",
        "--fail-on",
        "attack.silent.open_at_end>0",
        "--fail-on",
        "attack.silent.closed_after.min<2s",
    ]);
    let (stdout, stderr) = (text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "exit {:?}\n{stdout}{stderr}", run.status);
    assert!(stderr.contains("attack silent:24,ips=2: from 2 addresses (127.0.8.1 to 127.0.8.2)"), "{stderr}");
    assert!(stdout.contains("attack silent: attempted 24"), "{stdout}");

    let rows = read_csv(&out);
    assert_eq!(count(&rows, "joined"), 50);
    assert_eq!(count(&rows, "errors"), 0);
    assert_eq!(count(&rows, "attack.silent.attempted"), 24);
    assert_eq!(count(&rows, "attack.silent.closed_by_auth"), 24, "the password deadline closed every one");
    assert_eq!(count(&rows, "attack.silent.open_at_end"), 0);
    let after = &rows["attack.silent.closed_after"];
    let (min, max): (u64, u64) = (after[1].parse().unwrap(), after[6].parse().unwrap());
    assert!((2_900_000..4_000_000).contains(&min) && max < 4_000_000, "closed after {min}..{max} us");
    let garbage = count(&rows, "attack.garbage.attempted");
    assert!(garbage >= 20, "{garbage}");
    assert_eq!(count(&rows, "attack.garbage.closed_by_auth"), garbage - count(&rows, "attack.garbage.connect_failed"));

    // One row per kind, stable columns with their units.
    let attacks = std::fs::read_to_string(dir.join("attack.attacks.csv")).unwrap();
    let mut lines = attacks.lines();
    assert_eq!(
        lines.next().unwrap(),
        "kind,attempted,connect_failed,skipped,closed_by_auth,closed_by_us,open_at_end,failed,closed_after_p50_us,\
         closed_after_p99_us,closed_after_max_us,sent_bytes,received_bytes,admitted,rejected,banned,values_written,\
         lists_received,lists_per_value,victims_evicted"
    );
    let kinds: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(kinds, ["silent", "garbage"]);
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("attack.csv.params.json")).unwrap()).unwrap();
    assert_eq!(params["attacks"][0]["attack"], "silent:24,ips=2");
    assert_eq!(params["attacks"][1]["source_ips"][0], "127.0.8.3");

    // The interval log merges to the same attack rows, and an attack gate can fail.
    let merged = dir.join("merged.csv");
    let m = loadgen(&[
        "merge",
        hlog.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
        "--fail-on",
        "attack.silent.closed_by_auth>=24",
    ]);
    assert_eq!(m.status.code(), Some(1), "{}", text(&m.stderr));
    assert!(text(&m.stderr).contains("failed --fail-on \"attack.silent.closed_by_auth>=24\": observed 24"));
    assert_eq!(read_csv(&merged), rows);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_whose_authenticator_is_killed_ends_by_itself_and_reports_why() {
    let _serial = serial();
    let mut auth = Auth::start();
    let dir = temp_dir("killed");
    let out = dir.join("killed.csv");
    let target = auth.addr.to_string();
    let child = spawn_loadgen(&[
        "--peers",
        "100",
        "--target",
        &target,
        "--ramp",
        "6s",
        "--hold",
        "2s",
        "--heartbeat-timeout",
        "1s",
        "--handshake-timeout",
        "2s",
        "--out",
        out.to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    auth.kill();
    let run = finish(child, Duration::from_secs(60));
    let stderr = text(&run.stderr);
    // Once every join fails and nobody is a member, it stops early with one line, no table.
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("loadgen: error: stopped the run after "), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("loadgen: error")).count(), 1, "{stderr}");
    assert!(last.contains(&format!("is the authenticator at {target} down?")), "{stderr}");
    assert_eq!(text(&run.stdout), "", "no summary table of nothing");

    let rows = read_csv(&out);
    let joined = count(&rows, "joined");
    assert!(joined > 10 && joined < 100, "joined {joined}");
    // Those who had joined lost the authenticator; later joins were refused.
    let lost = count(&rows, "removed") + count(&rows, "lost_authenticator");
    assert_eq!(lost, joined, "every joined joiner noticed the loss");
    assert!(count(&rows, "refused") > 0);
    let kinds = [
        "refused",
        "timed_out",
        "banned",
        "wrong_password",
        "protocol_error",
        "removed",
        "lost_authenticator",
        "other_error",
    ];
    assert_eq!(count(&rows, "errors"), kinds.iter().map(|k| count(&rows, k)).sum::<u64>());
    // The joins planned after it stopped were never attempted.
    assert!(joined + kinds[..5].iter().chain(&kinds[7..]).map(|k| count(&rows, k)).sum::<u64>() < 100);
    let params = std::fs::read_to_string(dir.join("killed.csv.params.json")).unwrap();
    assert!(params.contains("\"error: stopped the run after "), "{params}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn four_shards_as_four_processes_merge_to_their_sum() {
    let _serial = serial();
    let auth = Auth::start();
    let dir = temp_dir("shards");
    let target = auth.addr.to_string();
    let children: Vec<Child> = (0..4)
        .map(|i| {
            let shard = format!("{i}/4");
            let out = dir.join(format!("s{i}.csv"));
            let hlog = dir.join(format!("s{i}.hlog"));
            spawn_loadgen(&[
                "--peers",
                "80",
                "--target",
                &target,
                "--rate",
                "80/s",
                "--hold",
                "2s",
                "--seed",
                "11",
                "--shard",
                &shard,
                "--churn",
                "2/s",
                "--wrong-password-rate",
                "4/s",
                "--heartbeat-timeout",
                "3s",
                "--quiet",
                "--out",
                out.to_str().unwrap(),
                "--hdr-log",
                hlog.to_str().unwrap(),
            ])
        })
        .collect();
    let mut shards = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let run = finish(child, Duration::from_secs(60));
        assert!(run.status.success(), "shard {i}: {}", text(&run.stderr));
        shards.push(read_csv(&dir.join(format!("s{i}.csv"))));
    }
    let logs: Vec<String> = (0..4).map(|i| dir.join(format!("s{i}.hlog")).to_str().unwrap().to_string()).collect();
    let merged_csv = dir.join("merged.csv");
    let mut args = vec!["merge"];
    args.extend(logs.iter().map(String::as_str));
    args.extend(["--out", merged_csv.to_str().unwrap(), "--quiet"]);
    let m = loadgen(&args);
    assert!(m.status.success(), "{}", text(&m.stderr));
    assert!(!text(&m.stderr).contains("warning"), "{}", text(&m.stderr));

    let merged = read_csv(&merged_csv);
    for name in METRICS.iter().chain(&COUNTERS) {
        let sum: u64 = shards.iter().map(|s| count(s, name)).sum();
        assert_eq!(count(&merged, name), sum, "{name}");
    }
    for (i, s) in shards.iter().enumerate() {
        assert!(count(s, "joined") >= 20, "shard {i} joined {}", count(s, "joined"));
    }
    assert!(count(&merged, "joined") >= 80);
    assert!(count(&merged, "attacks") > 0);
    // Exact merge: the merged maximum is the largest shard maximum (no averaging).
    let max = |s: &HashMap<String, Vec<String>>| s["join_complete"][6].parse::<u64>().unwrap();
    assert_eq!(max(&merged), shards.iter().map(max).max().unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

/// One line on stderr, `loadgen: error: …` containing `cause`, exit 2, nothing on stdout.
fn assert_refused_to_start(run: &Output, cause: &str) {
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("loadgen: error: ") && stderr.contains(cause), "{stderr}");
    assert_eq!(text(&run.stdout), "");
}

#[test]
fn a_dead_target_or_a_wrong_password_refuses_to_start_in_one_line() {
    let _serial = serial();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let started = Instant::now();
    let run = finish(
        spawn_loadgen(&["--peers", "50", "--target", &dead, "--rate", "10/s", "--hold", "30s"]),
        Duration::from_secs(10),
    );
    assert_refused_to_start(&run, &format!("cannot reach the authenticator at {dead}: connection refused"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    let auth = Auth::start();
    let target = auth.addr.to_string();
    let started = Instant::now();
    let child = Command::new(LOADGEN)
        .args(["--peers", "50", "--target", &target, "--rate", "10/s", "--hold", "30s"])
        .env("PYILE_PASSWORD", "not-the-password")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let run = finish(child, Duration::from_secs(10));
    assert_refused_to_start(&run, &format!("the authenticator at {target} rejected the password"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// `data-series` of every figure of an HTML report, in page order, with the chart's title.
fn figures(html: &str) -> Vec<(usize, String)> {
    html.match_indices("<figure class=\"chart\" data-series=\"")
        .map(|(i, m)| {
            let rest = &html[i + m.len()..];
            let n = rest[..rest.find('"').unwrap()].parse().unwrap();
            // The chart's title is the first text of its SVG.
            let t = rest.find("<text").unwrap();
            let title = rest[t..].split('\n').nth(1).unwrap().to_string();
            (n, title)
        })
        .collect()
}

#[test]
fn html_reports_of_a_run_of_its_files_and_of_a_merge() {
    let _serial = serial();
    let auth = Auth::start();
    let dir = temp_dir("html");
    let (out, hlog, html) = (dir.join("run.csv"), dir.join("run.hlog"), dir.join("run.html"));
    let target = auth.addr.to_string();
    let run = loadgen(&[
        "--peers",
        "30",
        "--target",
        &target,
        "--rate",
        "30/s",
        "--hold",
        "2s",
        "--interval",
        "500ms",
        "--broadcast-rate",
        "4/s",
        "--attack",
        "garbage:10",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--hdr-log",
        hlog.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains(&format!("loadgen: wrote {}", html.display())));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<title>loadgen: run</title>"));
    assert!(page.contains(&format!("<td>target</td><td class=\"mono\">{target}</td>")), "parameters at the top");
    assert!(page.find("Parameters").unwrap() < page.find("Latency per interval").unwrap());
    let figs = figures(&page);
    let titles: Vec<&str> = figs.iter().map(|(_, t)| t.as_str()).collect();
    // Join first, then every other operation with samples: each p50/p90/p99/max.
    assert_eq!(titles[0], "join_complete: p50, p90, p99, max per interval", "{titles:?}");
    for op in ["tcp_connect", "first_list", "convergence", "message_delivery", "heartbeat_interval"] {
        let (n, _) = figs.iter().find(|(_, t)| t.starts_with(&format!("{op}:"))).unwrap_or_else(|| panic!("{op}"));
        assert_eq!(*n, 4, "{op}: four percentiles");
    }
    for title in [
        "joins and errors per second",
        "joiners joined",
        "latency by percentile, whole run",
        "schedule lag per interval",
        "hostile connections per second",
        "hostile connection open to closed by the authenticator",
    ] {
        assert!(titles.contains(&title), "{title}: {titles:?}");
    }
    assert_eq!(page.matches("<svg").count(), figs.len());
    for label in [">\n50%\n<", ">\n90%\n<", ">\n99%\n<", "latency (ms)", "10 ms: the p99"] {
        assert!(page.contains(label), "{label}");
    }
    assert!(page.contains("<th>garbage</th>"), "attack metrics");
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("href="));

    // The same run from its CSV files, and from its interval log.
    let from_csv = dir.join("csv.html");
    let r = loadgen(&["report", out.to_str().unwrap(), "--html", from_csv.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let csv_page = std::fs::read_to_string(&from_csv).unwrap();
    assert!(csv_page.contains("From the CSV's percentiles only"));
    assert_eq!(figures(&csv_page).len(), figs.len(), "the same charts from the CSV files");
    let from_log = dir.join("log.html");
    let r = loadgen(&["report", hlog.to_str().unwrap(), "--html", from_log.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let log_page = std::fs::read_to_string(&from_log).unwrap();
    assert!(log_page.contains("As HdrHistogram"), "the whole distribution");
    assert!(figures(&log_page).iter().any(|(_, t)| t == "join_complete: p50, p90, p99, max per interval"));

    // A merge of the log with itself: twice the joins, and the duplicate is said.
    let merged = dir.join("merged.html");
    let m = loadgen(&["merge", hlog.to_str().unwrap(), hlog.to_str().unwrap(), "--html", merged.to_str().unwrap()]);
    let merged_page = std::fs::read_to_string(&merged).unwrap();
    let joined = count(&read_csv(&out), "joined");
    assert!(merged_page.contains(&format!("<td class=\"mono\">joined</td><td class=\"num\">{}</td>", 2 * joined)));
    assert!(merged_page.contains("appears 2 times"), "{}", text(&m.stderr));
}

/// `loadgen floor` on a small network: both sides move about the values asked (40 members
/// every 20 ms: 2,000 a second) and report a finite CPU per value; nonsense flags are one
/// error line and exit 2.
#[test]
fn the_floor_measures_both_sides_of_a_small_fan_out() {
    let _g = serial();
    let out = loadgen(&[
        "floor",
        "--members",
        "40",
        "--shards",
        "2",
        "--interval",
        "20ms",
        "--warmup",
        "300ms",
        "--window",
        "1s",
        "--quiet",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(text(&out.stderr).is_empty(), "--quiet: {}", text(&out.stderr));
    for side in ["| sender", "| followers"] {
        let row = stdout.lines().find(|l| l.starts_with(side)).unwrap_or_else(|| panic!("no {side} row: {stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let per_s: f64 = cells[2].parse().unwrap();
        let us: f64 = cells[3].parse().unwrap();
        assert!((1_000.0..=2_500.0).contains(&per_s), "{side}: {per_s} values/s of 2,000 asked\n{stdout}");
        assert!(us.is_finite() && us >= 0.0, "{side}: {us} us/value\n{stdout}");
    }
    let bad = loadgen(&["floor", "--members", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("must be above 0"), "{err}");
}
