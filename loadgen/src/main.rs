//! The `loadgen` binary: parse the command line, build this shard's plan, check that it fits,
//! drive real joiners, write the reports and apply the `--fail-on` rules.
//!
//! Exit status: 0 when every rule holds, 1 when one is violated (each printed on its own
//! line), 2 on an error (one line, `loadgen: error: …`) or a usage error.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use loadgen::cli::{Cli, Command, FloorArgs, MergeArgs, ReportArgs, RunArgs, redacted_args};
use loadgen::driver::{self, DriverConfig};
use loadgen::hlog::{self, HlogWriter};
use loadgen::html::{IntervalRows, LoadReport};
use loadgen::limits::{self, Limits};
use loadgen::metrics::{Collector, Counter, Latency, Metrics, Totals};
use loadgen::plan::{Arrival, Plan, PlanConfig, PlannedAttack};
use loadgen::progress::{Progress, Status};
use loadgen::report::{self, IntervalCsv, RunParams};
use loadgen::rules::{self, Rule, Violation};
use loadgen::sources::{self, SourceRange, Sources};
use loadgen::{Error, Result};
use tokio_util::sync::CancellationToken;

/// How a finished run or merge turned out.
enum Outcome {
    Passed,
    Failed(Vec<Violation>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Some(Command::Merge(args)) => merge(args),
        Some(Command::Report(args)) => report_of_files(&args),
        Some(Command::Floor(args)) => floor(&args),
        None => run(cli.run),
    };
    match result {
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Failed(violations)) => {
            for v in violations {
                eprintln!("loadgen: {v}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Library logs (pyile's) go to stderr, errors only unless `RUST_LOG` says otherwise: with
/// thousands of joiners anything chattier drowns the progress display.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Deals `--attack-source-ips` to the `--attack`s in order, `ips` each.
fn deal_attack_sources(args: &RunArgs) -> Result<(Vec<PlannedAttack>, Option<SourceRange>)> {
    if args.attacks.is_empty() {
        return Ok((Vec::new(), None));
    }
    let range = sources::resolve_attack_sources(args.attack_source_ips.clone(), args.target)?;
    let mut left = range.addrs();
    let mut planned = Vec::new();
    for spec in &args.attacks {
        let n = spec.ips as usize;
        if n > left.len() {
            return Err(Error::Config(format!(
                "--attack {spec} needs {n} source addresses (ips=) but only {} of --attack-source-ips {range} \
                 ({} addresses) are left: give fewer ips= or a larger --attack-source-ips",
                left.len(),
                range.len()
            )));
        }
        let (mine, rest) = left.split_at(n);
        planned.push(PlannedAttack { spec: spec.clone(), ips: mine.to_vec() });
        left = rest;
    }
    Ok((planned, Some(range)))
}

/// This shard's plan and the parameters that describe it.
fn build_plan(args: &RunArgs) -> Result<(Plan, PlanConfig, Sources)> {
    let sources = Sources::resolve(args.source_ips.clone(), args.target)?;
    let mut joiner_ips = sources.addrs().to_vec();
    let mut attacker_ips = Vec::new();
    if !args.wrong_password_rate.is_zero() {
        let n = args.attacker_ips;
        if n == 0 || joiner_ips.len() <= n {
            return Err(Error::Config(format!(
                "--wrong-password-rate needs {n} attacker addresses (--attacker-ips) taken from the end \
                 of --source-ips, plus at least one for joiners; the sources are {sources}"
            )));
        }
        attacker_ips = joiner_ips.split_off(joiner_ips.len() - n);
    }
    let cfg = PlanConfig {
        seed: args.seed,
        peers: args.peers,
        arrival: args.arrival(),
        hold: args.hold,
        churn_rate: args.churn.per_sec(),
        broadcast_rate: args.broadcast_rate.per_sec(),
        wrong_password_rate: args.wrong_password_rate.per_sec(),
        joiner_ips,
        attacker_ips,
        shards: args.shard.count,
        attacks: deal_attack_sources(args)?.0,
    };
    let plan = Plan::build(&cfg)?.shard(args.shard);
    Ok((plan, cfg, sources))
}

fn run(args: RunArgs) -> Result<Outcome> {
    let (plan, plan_cfg, sources) = build_plan(&args)?;
    let summary = plan.summary();
    let rules = rules::rules_of(&args.fail_on);
    if args.interval.is_zero() {
        return Err(Error::Config("--interval must be more than 0s".into()));
    }

    let needs = limits::estimate(&plan, args.peers as u64 + 1, args.handshake_timeout, args.crash_bound());
    if args.dry_run {
        plan.write_csv(std::io::stdout().lock()).map_err(|e| Error::Run(format!("stdout: {e}")))?;
        eprintln!(
            "loadgen: shard {} of seed {}: {} slots, {} joins, {} leaves, {} crashes, {} broadcasts, \
             {} wrong passwords, {} hostile connections over {:.1}s; needs about {} file descriptors \
             and {} ports on {}",
            plan.shard,
            args.seed,
            summary.slots,
            summary.joins,
            summary.leaves,
            summary.crashes,
            summary.broadcasts,
            summary.wrong_passwords,
            summary.attacks,
            plan.end.as_secs_f64(),
            needs.fds,
            needs.busiest_source.1,
            needs.busiest_source.0.map_or("the system's address".into(), |ip| ip.to_string()),
        );
        return Ok(Outcome::Passed);
    }

    let password = args.password()?;
    let limits = Limits::raise_and_read()?;
    let warnings = limits::check(&needs, &limits)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Run(format!("cannot start the tokio runtime: {e}")))?;
    let driver_cfg = DriverConfig {
        target: args.target,
        wrong_password: DriverConfig::wrong_password_for(&password),
        password,
        handshake_timeout: args.handshake_timeout,
        heartbeat_timeout: args.heartbeat_timeout,
        start_wall: SystemTime::now(),
        drain_timeout: args.handshake_timeout + Duration::from_secs(2),
        crash_bound: args.crash_bound(),
        protocol2_share: args.protocol2_share(),
        duplicate_alias_rate: args.duplicate_alias_rate,
        impostor_share: args.impostor_rate,
        impostor: args.impostor,
        require_mutual_auth: args.require_mutual_auth,
        one_connection: args.one_connection,
    };
    // Before the schedule starts: a target that cannot be reached, a wrong password or a
    // banned address would otherwise turn the whole plan into a table of errors.
    runtime.block_on(driver::preflight(&driver_cfg, plan_cfg.joiner_ips.first().copied())).map_err(Error::Run)?;

    let (start, start_wall) = args.time_zero(Duration::from_millis(100))?;
    let mut progress = Progress::new(args.quiet);
    let join_rate = match plan_cfg.arrival {
        Arrival::Rate(r) => r,
        Arrival::Ramp(d) => args.peers as f64 / d.as_secs_f64().max(1e-9),
    };
    progress.note(&format!(
        "shard {} of seed {}: {} joiners from {}, {:.1} joins/s for {:.1}s then {:.1}s hold, target {}",
        plan.shard,
        args.seed,
        summary.slots,
        sources,
        join_rate,
        plan.arrival_end.as_secs_f64(),
        args.hold.as_secs_f64(),
        args.target,
    ));
    for w in &warnings {
        progress.warn(w);
    }
    for a in &plan_cfg.attacks {
        let (from, to) = a.spec.window_in(plan.end);
        progress.note(&format!(
            "attack {}: from {} addresses ({} to {}), at most {} open at once, {:.1}s to {:.1}s",
            a.spec,
            a.ips.len(),
            a.ips.first().map_or_else(String::new, |ip| ip.to_string()),
            a.ips.last().map_or_else(String::new, |ip| ip.to_string()),
            a.spec.concurrency(to.saturating_sub(from)),
            from.as_secs_f64(),
            to.as_secs_f64()
        ));
    }
    if args.target.ip().is_loopback() {
        progress.note(&format!(
            "the authenticator on this machine needs about {} file descriptors of its own{}",
            needs.authenticator_fds,
            if needs.attack_fds > 0 { " (if it holds every hostile connection)" } else { "" }
        ));
    }

    if args.start_at.is_some() {
        progress.note(&format!(
            "waiting {:.1}s for --start-at",
            start.saturating_duration_since(Instant::now()).as_secs_f64()
        ));
    }
    let mut params = RunParams {
        loadgen_version: env!("CARGO_PKG_VERSION").into(),
        command_line: redacted_args(std::env::args()),
        target: args.target.to_string(),
        peers: args.peers,
        seed: args.seed,
        shard: args.shard,
        join_rate_per_s: join_rate,
        arrival_s: plan.arrival_end.as_secs_f64(),
        hold_s: args.hold.as_secs_f64(),
        churn_per_s: args.churn.per_sec(),
        broadcast_per_s: args.broadcast_rate.per_sec(),
        wrong_password_per_s: args.wrong_password_rate.per_sec(),
        source_ips: sources.to_string(),
        attacker_ips: plan_cfg.attacker_ips.iter().map(|ip| ip.to_string()).collect(),
        attacks: plan_cfg
            .attacks
            .iter()
            .map(|a| report::AttackParams {
                attack: a.spec.to_string(),
                source_ips: a.ips.iter().map(|ip| ip.to_string()).collect(),
            })
            .collect(),
        handshake_timeout_s: args.handshake_timeout.as_secs_f64(),
        heartbeat_timeout_s: args.heartbeat_timeout.as_secs_f64(),
        crash_bound_s: args.crash_bound().as_secs_f64(),
        protocol2_share: args.protocol2_share(),
        interval_s: args.interval.as_secs_f64(),
        fail_on: rules.iter().map(|r| r.text().to_string()).collect(),
        plan: summary,
        started_unix_ms: unix_ms(start_wall),
        finished_unix_ms: None,
        outcome: None,
    };
    let params_path = args.out.as_deref().map(report::params_path);
    if let Some(p) = &params_path {
        report::write_json(p, &params)?;
    }
    let mut outputs = IntervalOutputs {
        csv: args.out.as_deref().map(|o| IntervalCsv::create(&report::intervals_path(o))).transpose()?,
        hlog: match &args.hdr_log {
            Some(path) => {
                let json = serde_json::to_value(&params).map_err(|e| Error::Run(e.to_string()))?;
                Some(HlogWriter::create(path, start_wall, &json)?)
            }
            None => None,
        },
        html_rows: args.html.as_ref().map(|_| Vec::new()),
    };

    let driver_cfg = DriverConfig { start_wall, ..driver_cfg };
    let kinds: Vec<_> = plan_cfg.attacks.iter().map(|a| a.spec.kind).collect();
    let metrics = Arc::new(Metrics::with_attacks(start, &kinds));
    let mut collector = Collector::new();
    let planned = plan.end;
    let mut gave_up = None;
    let io_result = runtime.block_on(async {
        let stop = CancellationToken::new();
        let mut driver = tokio::spawn({
            let (metrics, stop) = (metrics.clone(), stop.clone());
            async move { driver::run(&plan, driver_cfg, metrics, stop).await }
        });
        let mut ticks = tokio::time::interval_at((start + args.interval).into(), args.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut result = Ok(());
        let mut dead_intervals = 0;
        loop {
            tokio::select! {
                ended = &mut driver => {
                    if let Err(e) = ended {
                        result = Err(Error::Run(format!("the driver failed: {e}")));
                    }
                    break;
                }
                _ = tokio::signal::ctrl_c(), if !stop.is_cancelled() => {
                    progress.note("interrupted: ending the run and writing the reports");
                    stop.cancel();
                }
                _ = ticks.tick() => {
                    let interval = collector.cut(&metrics, Instant::now());
                    if let Err(e) = outputs.write(&interval) {
                        result = Err(e);
                        stop.cancel();
                    }
                    dead_intervals = if driver::interval_all_failed(&interval.data, metrics.active()) {
                        dead_intervals + 1
                    } else {
                        0
                    };
                    if dead_intervals >= 2 && !stop.is_cancelled() {
                        let after = Instant::now().saturating_duration_since(start);
                        gave_up = Some(driver::gave_up_cause(args.target, after, collector.totals()));
                        stop.cancel();
                    }
                    progress.update(&status(&metrics, &interval.data, collector.totals(), planned));
                }
            }
        }
        result
    });
    let last = collector.cut(&metrics, Instant::now());
    let final_write = outputs.write(&last);
    progress.finish();
    drop(runtime);

    let totals = collector.totals();
    let violations = rules::evaluate(&rules, totals);
    params.finished_unix_ms = Some(unix_ms(SystemTime::now()));
    params.outcome = Some(match (&io_result, &final_write) {
        (Err(e), _) | (_, Err(e)) => format!("error: {e}"),
        _ if gave_up.is_some() => format!("error: {}", gave_up.as_deref().unwrap_or_default()),
        _ if violations.is_empty() => "passed".into(),
        _ => format!("failed: {}", violations.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>().join("; ")),
    });
    if let Some(out) = &args.out {
        report::write_final_csv(out, totals)?;
        if totals.attacks().next().is_some() {
            report::write_attacks_csv(&report::attacks_path(out), totals)?;
        }
    }
    if let Some(p) = &params_path {
        report::write_json(p, &params)?;
    }
    if let Some(path) = &args.html {
        let json = serde_json::to_value(&params).map_err(|e| Error::Run(e.to_string()))?;
        let rows = outputs.html_rows.take().unwrap_or_default();
        LoadReport::from_totals(&page_title(path), totals, rows, Some(&json)).write(path)?;
        eprintln!("loadgen: wrote {}", path.display());
    }
    io_result?;
    final_write?;
    if let Some(cause) = gave_up {
        return Err(Error::Run(cause));
    }
    finish(totals, &rules, violations)
}

/// The per-interval outputs that exist for this run.
struct IntervalOutputs {
    csv: Option<IntervalCsv>,
    hlog: Option<HlogWriter>,
    /// Each interval's rows, kept for `--html` (a few KB an interval).
    html_rows: Option<Vec<IntervalRows>>,
}

impl IntervalOutputs {
    fn write(&mut self, interval: &loadgen::metrics::Interval) -> Result<()> {
        if let Some(csv) = &mut self.csv {
            csv.write(interval)?;
        }
        if let Some(hlog) = &mut self.hlog {
            hlog.write(interval)?;
        }
        if let Some(rows) = &mut self.html_rows {
            rows.push(IntervalRows::of(interval));
        }
        Ok(())
    }
}

fn status(metrics: &Metrics, last: &Totals, run: &Totals, planned: Duration) -> Status {
    let p99 = |t: &Totals| {
        let h = t.histogram(Latency::JoinComplete);
        (!h.is_empty()).then(|| Duration::from_micros(h.value_at_quantile(0.99)))
    };
    Status {
        elapsed: Instant::now().saturating_duration_since(metrics.start()),
        planned,
        joined: metrics.counter(Counter::Joined),
        active: metrics.active(),
        failed: metrics.counter(Counter::Errors),
        p99_join: p99(last),
        p99_join_run: p99(run),
    }
}

/// Prints the summary (also when quiet: `--quiet` hides progress only, as in `sim`) and turns
/// violations into the outcome.
fn finish(totals: &Totals, rules: &[Rule], violations: Vec<Violation>) -> Result<Outcome> {
    print!("{}", report::summary_table(totals));
    if !rules.is_empty() && violations.is_empty() {
        let texts: Vec<&str> = rules.iter().map(|r| r.text()).collect();
        println!("no --fail-on rule violated ({})", texts.join(", "));
    }
    Ok(if violations.is_empty() { Outcome::Passed } else { Outcome::Failed(violations) })
}

/// `loadgen floor`: the sender here, the followers as child processes of this binary (or,
/// with the hidden `--follow`, one follower).
fn floor(args: &FloorArgs) -> Result<Outcome> {
    let cfg = args.config();
    cfg.check()?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| Error::Run(format!("cannot start the runtime: {e}")))?;
    let fds = Limits::raise_and_read()?.fd_soft;
    if let (Some(target), Some(conns)) = (args.follow, args.conns) {
        rt.block_on(loadgen::floor::follow(target, conns, &cfg))?;
        return Ok(Outcome::Passed);
    }
    // The sender holds every connection; each follower its share (and as many again would
    // not fit in one process: hence the follower processes).
    let need = cfg.members as u64 + 64;
    if need > fds {
        return Err(Error::Limits(format!(
            "{} member connections need {need} file descriptors in the sender, the limit is {fds}",
            cfg.members
        )));
    }
    let exe = std::env::current_exe().map_err(|e| Error::Run(format!("cannot find this program: {e}")))?;
    if !args.quiet {
        eprintln!(
            "floor: {} connections, a value every {:?}; measuring {:?} after {:?}",
            cfg.members, cfg.interval, cfg.window, cfg.warmup
        );
    }
    let floor = rt.block_on(loadgen::floor::run(&exe, &cfg))?;
    print!("{}", floor.table(&cfg));
    Ok(Outcome::Passed)
}

fn merge(args: MergeArgs) -> Result<Outcome> {
    let rules = rules::rules_of(&args.fail_on);
    let merged = hlog::merge(&args.logs)?;
    for w in &merged.warnings {
        eprintln!("loadgen: warning: {w}");
    }
    if let Some(out) = &args.out {
        report::write_final_csv(out, &merged.totals)?;
        if merged.totals.attacks().next().is_some() {
            report::write_attacks_csv(&report::attacks_path(out), &merged.totals)?;
        }
        let sources: Vec<serde_json::Value> =
            merged.sources.iter().map(|(path, params)| serde_json::json!({"log": path, "params": params})).collect();
        let params = serde_json::json!({
            "loadgen_version": env!("CARGO_PKG_VERSION"),
            "merged_from": sources,
            "warnings": merged.warnings,
            "fail_on": rules.iter().map(|r| r.text()).collect::<Vec<_>>(),
        });
        report::write_json(&report::params_path(out), &params)?;
    }
    if let Some(path) = &args.html {
        LoadReport::from_logs(&page_title(path), &args.logs)?.write(path)?;
        eprintln!("loadgen: wrote {}", path.display());
    }
    let violations = rules::evaluate(&rules, &merged.totals);
    finish(&merged.totals, &rules, violations)
}

/// `loadgen: <file stem>`.
fn page_title(html: &std::path::Path) -> String {
    format!("loadgen: {}", html.file_stem().unwrap_or_default().to_string_lossy())
}

/// `loadgen report`: the HTML page of an existing run's CSV or interval logs.
fn report_of_files(args: &ReportArgs) -> Result<Outcome> {
    let path = args.html_path();
    let report = if args.is_csv() {
        LoadReport::from_csv(&page_title(&path), &args.inputs[0])?
    } else {
        LoadReport::from_logs(&page_title(&path), &args.inputs)?
    };
    report.write(&path)?;
    println!("wrote {}", path.display());
    Ok(Outcome::Passed)
}
