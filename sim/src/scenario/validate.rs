//! Validation: everything about a scenario that its types cannot say.
//!
//! One validator per section, run in file order: the run settings, `[network]`,
//! `[authenticator]`, `[[joiners]]`, `[[timeline]]` (per entry: fields, references, values,
//! the action's own rules, the settle window), `[[expect]]`. Validators return the first
//! problem as a message; [`Scenario::validate`] locates it at the offending entry of the
//! source file, or at the file as a whole. It runs on the resolved scenario (after
//! `[random]`), so drawn values get exactly the checks written ones do.

use std::collections::BTreeSet;
use std::time::Duration;

use pyile::units::Dur;

use super::load::{LoadedScenario, ScenarioError};
use super::schema::{
    Action, AttackKind, AuthSettings, Bound, Expect, JoinerGroup, Network, RESERVED_NAMES, Scenario, TimelineEntry,
};
use crate::metrics::{MetricId, Unit};

/// The index of the offending entry of a section, and what is wrong with it.
type EntryError = (usize, String);

impl Scenario {
    /// Checks everything the types cannot: ranges, references between sections, fields that
    /// do not apply to an action, expectations naming unknown metrics. `src` supplies the
    /// line numbers (a resolved scenario has the same entries as its source, in order).
    pub fn validate(&self, src: &LoadedScenario) -> Result<(), ScenarioError> {
        let orig = &src.scenario;
        validate_run(self).map_err(|msg| src.error(msg))?;
        validate_network(&self.network).map_err(|msg| src.error(msg))?;
        validate_authenticator(&self.authenticator).map_err(|msg| src.error(msg))?;
        let names = validate_joiners(self).map_err(|(i, msg)| src.error_at(orig.joiners[i].span(), msg))?;
        validate_timeline(self, &names).map_err(|(i, msg)| src.error_at(orig.timeline[i].span(), msg))?;
        validate_expect(&self.expect).map_err(|(i, msg)| src.error_at(orig.expect[i].span(), msg))?;
        Ok(())
    }
}

/// The top-level run settings: name, duration, tick, settle.
fn validate_run(sc: &Scenario) -> Result<(), String> {
    if sc.name.is_empty() || !sc.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("name {:?} must be non-empty [A-Za-z0-9_-] (it names report files)", sc.name));
    }
    if sc.duration.0.is_zero() {
        return Err("duration must be > 0".into());
    }
    if sc.tick.0.is_zero() || sc.tick.0 > Duration::from_millis(100) {
        return Err(format!("tick {} must be in (0, 100ms]", sc.tick));
    }
    if sc.settle >= sc.duration {
        return Err(format!("settle {} must be shorter than duration {}", sc.settle, sc.duration));
    }
    Ok(())
}

/// `[network]`: latency range, loss probability, capacity.
fn validate_network(n: &Network) -> Result<(), String> {
    if n.min_latency > n.max_latency {
        return Err(format!("network: min_latency {} > max_latency {}", n.min_latency, n.max_latency));
    }
    if !(0.0..1.0).contains(&n.fail_rate) {
        return Err(format!("network: fail_rate {} must be in [0, 1)", n.fail_rate));
    }
    if n.tcp_capacity == 0 {
        return Err("network: tcp_capacity must be >= 1".into());
    }
    Ok(())
}

/// `[authenticator]`: attempts and the heartbeat/handshake timing.
fn validate_authenticator(a: &AuthSettings) -> Result<(), String> {
    if a.password_attempts == 0 {
        return Err("authenticator: password_attempts must be >= 1".into());
    }
    if a.heartbeat_interval.0.is_zero() || a.handshake_timeout.0.is_zero() {
        return Err("authenticator: heartbeat_interval and handshake_timeout must be > 0".into());
    }
    if a.heartbeat_timeout() <= a.heartbeat_interval {
        return Err(format!(
            "authenticator: heartbeat_timeout {} must exceed heartbeat_interval {}",
            a.heartbeat_timeout(),
            a.heartbeat_interval
        ));
    }
    Ok(())
}

/// `[[joiners]]`: unique, unreserved names; sizes; join times. Returns the group names.
fn validate_joiners(sc: &Scenario) -> Result<BTreeSet<String>, EntryError> {
    let mut names = BTreeSet::new();
    for (i, g) in sc.joiners.iter().enumerate() {
        validate_group(g.get_ref(), &mut names, sc.duration).map_err(|msg| (i, msg))?;
    }
    Ok(names)
}

/// One joiner group; `names` collects the names seen so far (duplicates are errors).
fn validate_group(g: &JoinerGroup, names: &mut BTreeSet<String>, duration: Dur) -> Result<(), String> {
    if RESERVED_NAMES.contains(&g.name.as_str()) {
        return Err(format!("group name {:?} is reserved ({})", g.name, RESERVED_NAMES.join(", ")));
    }
    if !names.insert(g.name.clone()) {
        return Err(format!("duplicate group name {:?}", g.name));
    }
    if g.count == 0 || g.joiners_per_host == 0 {
        return Err(format!("group {:?}: count and joiners_per_host must be >= 1", g.name));
    }
    if let Some(t) = g.join_at
        && t >= duration
    {
        return Err(format!("group {:?}: join_at {} is not before duration {}", g.name, t, duration));
    }
    Ok(())
}

/// Partitions and holds (timeline indices) that no later `heal`/`release` has ended yet.
#[derive(Default)]
struct OpenFaults {
    partitions: Vec<usize>,
    holds: Vec<usize>,
}

impl OpenFaults {
    /// Follows entry `i`, taken in time order.
    fn track(&mut self, i: usize, e: &TimelineEntry) {
        match e.action {
            Action::Partition if e.heal_after.is_none() => self.partitions.push(i),
            Action::Hold if e.release_after.is_none() => self.holds.push(i),
            Action::Heal => self.partitions.clear(),
            Action::Release => self.holds.clear(),
            _ => {}
        }
    }

    /// The first fault left open (partitions before holds).
    fn first(&self) -> Option<usize> {
        self.partitions.first().or(self.holds.first()).copied()
    }
}

/// `[[timeline]]`: every entry in time order (file order on ties), then that no partition
/// or hold is left open into the settle window.
fn validate_timeline(sc: &Scenario, names: &BTreeSet<String>) -> Result<(), EntryError> {
    let quiet_from = Dur(sc.duration.0 - sc.settle.0);
    let mut open = OpenFaults::default();
    let mut order: Vec<usize> = (0..sc.timeline.len()).collect();
    order.sort_by_key(|&i| sc.timeline[i].get_ref().at); // stable: file order on ties
    for &i in &order {
        let e = sc.timeline[i].get_ref();
        validate_entry_fields(sc, e)
            .and_then(|()| validate_entry_refs(sc, e, names))
            .and_then(|()| validate_entry_values(sc, e))
            .and_then(|()| validate_entry_action(sc, e))
            .and_then(|()| validate_settle_window(sc, e, quiet_from))
            .map_err(|msg| (i, msg))?;
        open.track(i, e);
    }
    if sc.settle.0 > Duration::ZERO
        && let Some(i) = open.first()
    {
        return Err((
            i,
            format!(
                "`{}` is never healed/released, so the settle window is not fault-free; add heal_after/release_after, a later heal/release, or set settle = \"0s\"",
                sc.timeline[i].get_ref().action.name()
            ),
        ));
    }
    Ok(())
}

/// The entry fires before the end, sets only fields its action takes, and every one it needs.
fn validate_entry_fields(sc: &Scenario, e: &TimelineEntry) -> Result<(), String> {
    let act = e.action.name();
    if e.at >= sc.duration {
        return Err(format!("{act} at {} is not before duration {}", e.at, sc.duration));
    }
    for f in e.set_fields() {
        if !e.action.allowed_fields().contains(&f) {
            let allowed = e.action.allowed_fields();
            return Err(format!(
                "`{f}` does not apply to action `{act}` (it takes: {})",
                if allowed.is_empty() { "no options".to_string() } else { allowed.join(", ") }
            ));
        }
    }
    for f in e.action.required_fields() {
        if !e.set_fields().contains(f) {
            return Err(format!("action `{act}` needs `{f}`"));
        }
    }
    Ok(())
}

/// The groups, targets and senders the entry names exist.
fn validate_entry_refs(sc: &Scenario, e: &TimelineEntry, names: &BTreeSet<String>) -> Result<(), String> {
    if let Some(g) = &e.group
        && sc.group(g).is_none()
    {
        return Err(format!("unknown group {g:?} (groups: {})", names.iter().cloned().collect::<Vec<_>>().join(", ")));
    }
    if let Some(t) = &e.target {
        if t != "authenticator" && t != "joiners" && sc.group(t).is_none() {
            return Err(format!("unknown target {t:?}: use \"authenticator\", \"joiners\" or a group name"));
        }
        if t == "authenticator" && (e.hosts.is_some() || e.fraction.is_some()) {
            return Err("the authenticator is one host: `hosts`/`fraction` do not apply".into());
        }
    }
    if let Some(f) = &e.from
        && f != "authenticator"
        && f != "any"
        && sc.group(f).is_none()
    {
        return Err(format!("unknown sender {f:?}: use \"authenticator\", \"any\" or a group name"));
    }
    Ok(())
}

/// Ranges of the entry's values: host selection, counts, `until` (rates are `EventRate`s,
/// finite and `>= 0` by their type).
fn validate_entry_values(sc: &Scenario, e: &TimelineEntry) -> Result<(), String> {
    if e.hosts.is_some() && e.fraction.is_some() {
        return Err("give `hosts` or `fraction`, not both".into());
    }
    if let Some(f) = e.fraction
        && !(f > 0.0 && f <= 1.0)
    {
        return Err(format!("fraction {f} must be in (0, 1]"));
    }
    for (name, v) in [
        ("hosts", e.hosts),
        ("count", e.count),
        ("burst", e.burst),
        ("attackers", e.attackers),
        ("attempts", e.attempts),
    ] {
        if v == Some(0) {
            return Err(format!("`{name}` must be >= 1"));
        }
    }
    if let Some(u) = e.until
        && (u <= e.at || u > sc.duration)
    {
        return Err(format!("until {u} must be after at {} and not after duration {}", e.at, sc.duration));
    }
    Ok(())
}

/// Rules of one action: churn and broadcast windows, a partition's heal time, loss and flood
/// rates.
fn validate_entry_action(sc: &Scenario, e: &TimelineEntry) -> Result<(), String> {
    match e.action {
        Action::Churn => {
            if e.until.is_none() {
                return Err("churn needs `until` (the end of its window)".into());
            }
            if e.join_rate.unwrap_or_default().is_zero() && e.leave_rate.unwrap_or_default().is_zero() {
                return Err("churn needs a positive `join_rate` or `leave_rate`".into());
            }
        }
        Action::Broadcast => {
            if e.until.is_some() != e.rate.is_some() {
                return Err(
                    "broadcast over a window needs both `until` and `rate`; a one-off broadcast has neither".into()
                );
            }
            if e.until.is_some() && e.count.is_some() {
                return Err("broadcast: `count` is for a one-off broadcast, not with `rate`".into());
            }
        }
        Action::Partition if e.heal_after.is_some() => {
            if let Some(end) = e.ends_at(&sc.authenticator)
                && end > sc.duration
            {
                return Err(format!("heal_after ends at {end}, after duration {}", sc.duration));
            }
        }
        Action::Loss => {
            if let Some(f) = e.fail_rate
                && !(0.0..1.0).contains(&f)
            {
                return Err(format!("fail_rate {f} must be in [0, 1)"));
            }
        }
        Action::BanFlood if e.flood_rate() <= 0.0 => {
            return Err("ban_flood needs a positive `rate`".into());
        }
        Action::Attack => validate_attack(sc, e)?,
        _ => {}
    }
    Ok(())
}

/// An `attack`: connections at once (`count`) or at a `rate` until `until`, and the kind's
/// own parameters.
fn validate_attack(sc: &Scenario, e: &TimelineEntry) -> Result<(), String> {
    let kind = e.kind.expect("required field");
    let k = kind.name();
    if e.rate.is_some() && e.count.is_some() {
        return Err("attack: give `count` (connections at once) or `rate` (with `until`), not both".into());
    }
    if let Some(r) = e.rate {
        if r.is_zero() {
            return Err("attack: `rate` must be positive".into());
        }
        if e.until.is_none() {
            return Err("attack: a `rate` of connections needs `until` (the end of its window)".into());
        }
    }
    if kind == AttackKind::DistChatter && e.until.is_none() {
        return Err("attack `dist_chatter` needs `until` (when the chatterers hang up)".into());
    }
    if e.bytes.is_some() && kind.default_bytes().is_none() {
        return Err(format!("`bytes` does not apply to attack kind `{k}` (only oversize, garbage)"));
    }
    if e.interval.is_some() && kind.default_interval().is_none() {
        return Err(format!("`interval` does not apply to attack kind `{k}` (only slowloris, dist_chatter)"));
    }
    let limit = pyile::authenticator::config::DEFAULT_HANDSHAKE_VALUE_LIMIT as u32;
    match (kind, e.attack_bytes()) {
        (AttackKind::Oversize, Some(b)) if b <= limit => {
            return Err(format!("oversize `bytes` {b} must exceed the authenticator's {limit}-byte value bound"));
        }
        (AttackKind::Garbage, Some(b)) if b == 0 || b > limit - 2 => {
            return Err(format!("garbage `bytes` {b} must be in 1..={} (under the value bound)", limit - 2));
        }
        _ => {}
    }
    if e.interval.is_some_and(|d| d.0.is_zero()) {
        return Err("attack: `interval` must be > 0".into());
    }
    let end = e.attack_end(&sc.authenticator);
    if end > sc.duration && sc.settle.0 > Duration::ZERO {
        return Err(format!("attack lasts until {end}, after duration {}", sc.duration));
    }
    Ok(())
}

/// With a settle window, faults end before it and no heal/release falls inside it.
fn validate_settle_window(sc: &Scenario, e: &TimelineEntry, quiet_from: Dur) -> Result<(), String> {
    let act = e.action.name();
    if sc.settle.0 > Duration::ZERO && e.action.is_fault() {
        let end = e.ends_at(&sc.authenticator).unwrap_or(e.at);
        if end > quiet_from {
            return Err(format!(
                "fault `{act}` lasts until {end}, inside the final settle window (from {quiet_from}); end it earlier or set settle = \"0s\""
            ));
        }
    }
    if sc.settle.0 > Duration::ZERO && matches!(e.action, Action::Heal | Action::Release) && e.at > quiet_from {
        return Err(format!("`{act}` at {} is inside the final settle window (from {quiet_from})", e.at));
    }
    Ok(())
}

/// `[[expect]]`: known metrics, at least one bound, durations only for time metrics, min <= max.
fn validate_expect(expect: &[toml::Spanned<Expect>]) -> Result<(), EntryError> {
    for (i, x) in expect.iter().enumerate() {
        validate_expectation(x.get_ref()).map_err(|msg| (i, msg))?;
    }
    Ok(())
}

/// One expectation.
fn validate_expectation(x: &Expect) -> Result<(), String> {
    let Some(id) = x.metric_id() else {
        return Err(format!("unknown metric {:?} (known: {})", x.metric, MetricId::all_names().join(", ")));
    };
    if x.min.is_none() && x.max.is_none() {
        return Err(format!("expectation on {} needs `min` or `max`", x.metric));
    }
    for b in [x.min, x.max].into_iter().flatten() {
        if matches!(b, Bound::Duration(_)) && id.def().unit != Unit::Seconds {
            return Err(format!("{} is not a time metric: give a number, not {b}", x.metric));
        }
    }
    if let (Some(lo), Some(hi)) = (x.min, x.max)
        && lo.value() > hi.value()
    {
        return Err(format!("min {lo} > max {hi}"));
    }
    Ok(())
}
