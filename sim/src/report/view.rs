//! What the HTML report shows of one seed's run, collected from the run's own trace events as
//! they are recorded (the trace bytes and hash are untouched: the collector only reads the
//! events).
//!
//! Memory is bounded whatever the run's length or size: membership is sampled at most
//! [`MAX_SAMPLES`] times (the state at each sample time, exact because it only changes at
//! events), removals keep their exact counts per reason but at most [`MAX_MARKERS`] markers,
//! and one joiner series per joiner is kept only for up to [`MAX_JOINER_SERIES`] joiners
//! (more are drawn as min/median/max over the live joiners).
//!
//! Fault windows come from two places: the faults the driver applied, from the trace
//! (partition→heal, hold→release, loss→loss_end, crash→restart, with the hosts they hit),
//! and the windows the scenario declares for streams of operations (churn, ban flood,
//! attack), from the resolved timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::layout::Layout;
use crate::scenario::{Action, Resolved};
use crate::trace::TraceEvent;

/// Most membership samples kept.
pub const MAX_SAMPLES: usize = 1200;
/// Most removal markers kept (counts stay exact).
pub const MAX_MARKERS: usize = 4000;
/// Joiners drawn one series each; more are aggregated.
pub const MAX_JOINER_SERIES: usize = 8;

/// One sample of the membership state.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Simulated time, seconds.
    pub t: f64,
    /// Members in the authenticator's list (itself included), once it published one.
    pub auth_members: Option<u32>,
    /// Live joiners (joined, not ended).
    pub live: u32,
    /// Smallest, median and largest view among live joiners.
    pub views: Option<(u32, u32, u32)>,
    /// Per-joiner view (only with at most [`MAX_JOINER_SERIES`] joiners), in
    /// [`RunView::joiners`] order.
    pub per_joiner: Vec<Option<u32>>,
}

/// A shaded window on the membership chart.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultWindow {
    /// `partition`, `hold`, `loss`, `crash`, `ban_flood`, `churn`, `attack`.
    pub kind: String,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds (the run's end if it never ended).
    pub end: f64,
    /// Label: kind and what it hit.
    pub label: String,
}

/// A removal of a member by the authenticator.
#[derive(Clone, Debug, PartialEq)]
pub struct RemovalMark {
    /// Simulated time, seconds.
    pub t: f64,
    /// pyile's reason (`HeartbeatTimeout`, `Closed`, ...).
    pub reason: String,
    /// The authenticator's member count just before.
    pub members: u32,
}

/// Everything the report draws for one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    /// The seed.
    pub seed: u64,
    /// Scenario duration, seconds.
    pub duration: f64,
    /// Authenticator heartbeat interval, seconds.
    pub heartbeat_interval: f64,
    /// Authenticator heartbeat timeout, seconds.
    pub heartbeat_timeout: f64,
    /// Joiner names of the per-joiner series (empty when aggregated).
    pub joiners: Vec<String>,
    /// Joiners in the scenario.
    pub joiner_count: usize,
    /// Membership samples, in time order.
    pub samples: Vec<Sample>,
    /// Fault windows, in start order.
    pub windows: Vec<FaultWindow>,
    /// Removal markers (at most [`MAX_MARKERS`]).
    pub removals: Vec<RemovalMark>,
    /// Removals per reason (exact).
    pub removal_counts: BTreeMap<String, u64>,
}

/// Builds a [`RunView`] from trace events as they are recorded.
#[derive(Debug)]
pub struct ViewBuilder {
    view: RunView,
    step_us: u64,
    next_us: u64,
    end_us: u64,
    joiner_host: BTreeMap<String, String>,
    series_index: BTreeMap<String, usize>,
    auth_members: Option<u32>,
    /// Live instances: inst → (joiner name, view size).
    live: BTreeMap<u64, (String, u32)>,
    open: BTreeMap<(String, u64), (f64, String)>,
    crashed: Vec<(f64, BTreeSet<String>, String)>,
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// `west-0, west-1, west-2` → `west (3 hosts)`; one host by name.
fn hosts_label(v: &Value) -> String {
    let names: Vec<&str> = v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    match names.as_slice() {
        [] => "no host".into(),
        [one] => (*one).to_string(),
        _ => {
            let groups: BTreeSet<&str> = names.iter().map(|n| n.rsplit_once('-').map_or(*n, |(g, _)| g)).collect();
            let g: Vec<&str> = groups.into_iter().collect();
            format!("{} ({} hosts)", g.join("+"), names.len())
        }
    }
}

impl ViewBuilder {
    /// A builder for `resolved`'s run.
    pub fn new(resolved: &Resolved) -> ViewBuilder {
        let sc = &resolved.scenario;
        let layout = Layout::new(sc);
        let duration_us = sc.duration.get().as_micros() as u64;
        let step_us = nice_step(duration_us / MAX_SAMPLES as u64);
        let joiner_host: BTreeMap<String, String> =
            layout.joiners.iter().map(|j| (j.name.clone(), layout.hosts[j.host].name.clone())).collect();
        let joiners: Vec<String> = if layout.joiners.len() <= MAX_JOINER_SERIES {
            layout.joiners.iter().map(|j| j.name.clone()).collect()
        } else {
            Vec::new()
        };
        let series_index = joiners.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let a = &sc.authenticator;
        let mut windows = Vec::new();
        for e in sc.timeline.iter().map(|e| e.get_ref()) {
            let end = |d: Option<Duration>| d.unwrap_or(sc.duration.get());
            let (kind, label, end) = match e.action {
                Action::Churn => {
                    ("churn", format!("churn {}", e.group.as_deref().unwrap_or("")), end(e.ends_at(a).map(|d| d.get())))
                }
                Action::BanFlood => ("ban_flood", "ban flood".to_string(), end(e.ends_at(a).map(|d| d.get()))),
                Action::Attack => (
                    "attack",
                    format!("attack {}", e.kind.map(|k| k.name()).unwrap_or_default()),
                    e.attack_end(a).get(),
                ),
                _ => continue,
            };
            windows.push(FaultWindow {
                kind: kind.into(),
                start: e.at.get().as_secs_f64(),
                end: end.max(e.at.get() + Duration::from_millis(1)).as_secs_f64(),
                label: label.trim_end().to_string(),
            });
        }
        ViewBuilder {
            view: RunView {
                seed: resolved.seed,
                duration: secs(duration_us),
                heartbeat_interval: a.heartbeat_interval.get().as_secs_f64(),
                heartbeat_timeout: a.heartbeat_timeout().get().as_secs_f64(),
                joiners,
                joiner_count: layout.joiners.len(),
                samples: Vec::new(),
                windows,
                removals: Vec::new(),
                removal_counts: BTreeMap::new(),
            },
            step_us,
            next_us: 0,
            end_us: duration_us,
            joiner_host,
            series_index,
            auth_members: None,
            live: BTreeMap::new(),
            open: BTreeMap::new(),
            crashed: Vec::new(),
        }
    }

    fn sample(&mut self, t_us: u64) {
        let mut sizes: Vec<u32> = self.live.values().map(|(_, n)| *n).collect();
        sizes.sort_unstable();
        let views = (!sizes.is_empty()).then(|| (sizes[0], sizes[sizes.len() / 2], sizes[sizes.len() - 1]));
        let mut per_joiner = vec![None; self.view.joiners.len()];
        for (name, n) in self.live.values() {
            if let Some(&i) = self.series_index.get(name) {
                per_joiner[i] = Some(*n);
            }
        }
        self.view.samples.push(Sample {
            t: secs(t_us),
            auth_members: self.auth_members,
            live: self.live.len() as u32,
            views,
            per_joiner,
        });
    }

    /// Samples every sample time before `t_us` (the state holds until the event at `t_us`).
    fn advance(&mut self, t_us: u64) {
        while self.next_us < t_us && self.next_us <= self.end_us {
            self.sample(self.next_us);
            self.next_us += self.step_us;
        }
    }

    fn open_window(&mut self, kind: &str, id: u64, t: f64, label: String) {
        self.open.insert((kind.to_string(), id), (t, label));
    }

    fn close_window(&mut self, kind: &str, id: u64, t: f64) {
        if let Some((start, label)) = self.open.remove(&(kind.to_string(), id)) {
            self.view.windows.push(FaultWindow { kind: kind.into(), start, end: t, label });
        }
    }

    /// Takes in one event (in trace order).
    pub fn observe(&mut self, ev: &TraceEvent) {
        self.advance(ev.t_us);
        let t = secs(ev.t_us);
        let d = &ev.data;
        let id = d.get("id").and_then(Value::as_u64).unwrap_or(0);
        let list_n = || d.pointer("/list/n").and_then(Value::as_u64).map(|n| n as u32);
        match (ev.src.as_str(), ev.kind.as_str()) {
            ("sim", "partition") => {
                let dir = d.get("direction").and_then(Value::as_str).unwrap_or("both");
                let dir = if dir == "both" { String::new() } else { format!(", {dir}") };
                self.open_window("partition", id, t, format!("partition {}{dir}", hosts_label(&d["hosts"])));
            }
            ("sim", "heal") => self.close_window("partition", id, t),
            ("sim", "hold") => self.open_window("hold", id, t, format!("hold {}", hosts_label(&d["hosts"]))),
            ("sim", "release") => self.close_window("hold", id, t),
            ("sim", "loss") => {
                let rate = d.get("fail_rate").and_then(Value::as_f64).unwrap_or(0.0) * 100.0;
                let hosts = hosts_label(&d["hosts"]);
                self.open_window("loss", id, t, format!("loss {}% {hosts}", plots_tick(rate)));
            }
            ("sim", "loss_end") => self.close_window("loss", id, t),
            ("sim", "crash") => {
                let hosts: BTreeSet<String> = d["hosts"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                if !hosts.is_empty() {
                    let gone: Vec<u64> = self
                        .live
                        .iter()
                        .filter(|(_, (name, _))| self.joiner_host.get(name).is_some_and(|h| hosts.contains(h)))
                        .map(|(i, _)| *i)
                        .collect();
                    for i in gone {
                        self.live.remove(&i);
                    }
                    if hosts.contains("auth") {
                        // The authenticator's list is gone with its host.
                        self.auth_members = None;
                    }
                    self.crashed.push((t, hosts, format!("crash {}", hosts_label(&d["hosts"]))));
                }
            }
            ("sim", "restart") => {
                let back: BTreeSet<&str> =
                    d["hosts"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.crashed)
                    .into_iter()
                    .partition(|(_, h, _)| h.iter().any(|x| back.contains(x.as_str())));
                self.crashed = keep;
                for (start, _, label) in done {
                    self.view.windows.push(FaultWindow { kind: "crash".into(), start, end: t, label });
                }
            }
            ("auth", "list") => self.auth_members = list_n(),
            ("auth", "member_removed") => {
                let reason = d.get("reason").and_then(Value::as_str).unwrap_or("unknown").to_string();
                *self.view.removal_counts.entry(reason.clone()).or_default() += 1;
                if self.view.removals.len() < MAX_MARKERS {
                    self.view.removals.push(RemovalMark { t, reason, members: self.auth_members.unwrap_or(0) });
                }
            }
            ("sim", _) | ("auth", _) => {}
            (src, kind) => {
                let Some((name, inst)) = src.rsplit_once('#') else { return };
                let Ok(inst) = inst.parse::<u64>() else { return };
                match kind {
                    "joined" | "list" => {
                        if let Some(n) = list_n() {
                            // A list before `joined` (during the handshake) does not make a member.
                            if kind == "joined" || self.live.contains_key(&inst) {
                                self.live.insert(inst, (name.to_string(), n));
                            }
                        }
                    }
                    "ended" | "left" | "authenticator_lost" => {
                        self.live.remove(&inst);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The finished view (open windows end with the run).
    pub fn finish(mut self) -> RunView {
        self.advance(self.end_us + 1);
        let end = self.view.duration;
        for ((kind, _), (start, label)) in std::mem::take(&mut self.open) {
            self.view.windows.push(FaultWindow { kind, start, end, label });
        }
        for (start, _, label) in std::mem::take(&mut self.crashed) {
            self.view.windows.push(FaultWindow { kind: "crash".into(), start, end, label });
        }
        self.view.windows.sort_by(|a, b| a.start.total_cmp(&b.start).then_with(|| a.label.cmp(&b.label)));
        self.view
    }
}

/// The smallest of 1, 2, 5 × 10^k ms not below `us` (sample steps read as round numbers).
fn nice_step(us: u64) -> u64 {
    let mut base = 1000;
    loop {
        for m in [1, 2, 5] {
            if base * m >= us {
                return base * m;
            }
        }
        base *= 10;
    }
}

/// A percentage for a label: at most 3 decimals.
fn plots_tick(v: f64) -> String {
    pyile_plots::units::tick(v)
}
