//! Will the run fit? File descriptors and ephemeral ports, checked before anything connects.
//!
//! A run that hits `EMFILE` or `EADDRNOTAVAIL` half way produces numbers about loadgen, not
//! about the authenticator, so loadgen estimates what its share of the plan needs, raises its
//! soft file-descriptor limit to the hard one, and refuses to start if the estimate does not
//! fit. The estimate is deliberately pessimistic:
//!
//! - every joiner holds 3 descriptors and 3 ports on its source address (auth connection,
//!   distribution connection, peer listener);
//! - a broadcast holds one connection per member while it is in flight (taken as 250 ms), plus
//!   the accepted side for recipients in this process;
//! - a crashed joiner (churn's crash half) keeps those 3 descriptors and ports until the
//!   authenticator removes it, taken as the whole `--crash-bound`;
//! - a connection that loadgen closes first keeps its port in `TIME_WAIT` for 60 s, so
//!   churned joiners, sent messages and wrong-password attempts use up ports on their source
//!   address for a minute each;
//! - hostile connections (`--attack`) each hold [`crate::attack::AttackKind::fds_per_attacker`] descriptors and
//!   ports on their source address, at most their attack's `max` at once (fewer if this
//!   shard plans fewer); they close with a reset, so they leave no `TIME_WAIT` behind;
//! - the authenticator, if it runs on this machine, needs about 3 descriptors per member in
//!   its own process, plus one per hostile connection it holds: that is reported, not
//!   checked (it is another process's limit);
//! - the authenticator admits at most 16 handshakes in progress per source address by
//!   default (`max_handshakes_per_source`): loadgen warns when the plan starts more than
//!   that many joins from one address within [`JOIN_OVERLAP`] (100 ms, a handshake under load).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::error::Error;
use crate::plan::{LeaveMode, OpKind, Plan};

/// Descriptors used by loadgen itself (stdio, runtime, report files), with margin.
pub const BASE_FDS: u64 = 64;
/// Descriptors and source ports held by one joined joiner.
pub const PER_JOINER: u64 = 3;
/// How long a port stays in `TIME_WAIT` after loadgen closes a connection (Linux).
pub const TIME_WAIT: Duration = Duration::from_secs(60);
/// How long a broadcast is assumed to keep its connections open.
pub const BROADCAST_IN_FLIGHT: Duration = Duration::from_millis(250);
/// How long a handshake under load is assumed to take, for the per-source check.
pub const JOIN_OVERLAP: Duration = Duration::from_millis(100);
/// The authenticator's default bound on handshakes in progress from one source
/// (`pyile::authenticator::config::DEFAULT_MAX_HANDSHAKES_PER_SOURCE`).
pub const AUTH_HANDSHAKES_PER_SOURCE: u64 = 16;

/// What a plan needs from this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Needs {
    /// File descriptors loadgen needs at the peak.
    pub fds: u64,
    /// The source address needing the most ports (`None` = the system's address), and how many.
    pub busiest_source: (Option<IpAddr>, u64),
    /// Descriptors a local authenticator would need in its own process.
    pub authenticator_fds: u64,
    /// Of them, descriptors for hostile connections held at once (at most).
    pub attack_fds: u64,
    /// The joiner source address starting the most joins within [`JOIN_OVERLAP`], and how many.
    pub busiest_join_source: (Option<IpAddr>, u64),
}

/// Largest total weight of events falling in any window of `window` length; `events` sorted.
fn peak_in_window(events: &[(Duration, u64)], window: Duration) -> u64 {
    let (mut lo, mut sum, mut best) = (0, 0u64, 0u64);
    for (i, &(t, w)) in events.iter().enumerate() {
        sum += w;
        // (A zero window holds nothing: it drops the current event too, never a later one.)
        while lo <= i && events[lo].0 + window <= t {
            sum -= events[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best
}

/// Estimates what `plan` (this process's share) needs. `members` is the size of the whole
/// membership (every shard's joiners plus the authenticator): a broadcast reaches all of it.
/// A crashed joiner holds its sockets for up to `crash_bound`.
pub fn estimate(plan: &Plan, members: u64, handshake_timeout: Duration, crash_bound: Duration) -> Needs {
    let slots = plan.summary().slots as u64;
    let mut churn = Vec::new();
    let mut broadcasts = Vec::new();
    let mut attacks = Vec::new();
    let mut holders: HashMap<Option<IpAddr>, u64> = HashMap::new();
    let mut time_wait: HashMap<Option<IpAddr>, Vec<(Duration, u64)>> = HashMap::new();
    let mut source_of_slot: HashMap<u32, Option<IpAddr>> = HashMap::new();
    let mut joins: HashMap<Option<IpAddr>, Vec<(Duration, u64)>> = HashMap::new();
    let mut hung: HashMap<Option<IpAddr>, Vec<(Duration, u64)>> = HashMap::new();
    // Per attack: its operations in this plan, and per source address how many.
    let mut attack_ops: Vec<(u64, HashMap<IpAddr, u64>)> = vec![(0, HashMap::new()); plan.attacks.len()];
    for op in &plan.ops {
        match op.kind {
            OpKind::Join { joiner, source } => {
                joins.entry(source).or_default().push((op.at, 1));
                source_of_slot.insert(joiner.slot, source);
                if joiner.generation == 0 {
                    *holders.entry(source).or_default() += PER_JOINER;
                }
            }
            OpKind::Leave { joiner, mode } => {
                churn.push((op.at, 1));
                let source = source_of_slot.get(&joiner.slot).copied().flatten();
                time_wait.entry(source).or_default().push((op.at, 2));
                if mode == LeaveMode::Crash {
                    hung.entry(source).or_default().push((op.at, PER_JOINER));
                }
            }
            OpKind::Broadcast { from } => {
                broadcasts.push((op.at, 1));
                let source = source_of_slot.get(&from.slot).copied().flatten();
                time_wait.entry(source).or_default().push((op.at, members.saturating_sub(1)));
            }
            OpKind::WrongPassword { source, .. } => {
                attacks.push((op.at, 1));
                time_wait.entry(Some(source)).or_default().push((op.at, 1));
            }
            OpKind::Attack { attack, source, .. } => {
                let (n, per_source) = &mut attack_ops[attack as usize];
                *n += 1;
                *per_source.entry(source).or_default() += 1;
            }
        }
    }
    // Hostile connections: at most `max` of an attack open at once, spread over its sources
    // in proportion to their share of its operations (round robin: equal shares).
    let (mut attack_fds, mut attack_auth_fds) = (0, 0);
    let mut attack_ports: HashMap<Option<IpAddr>, u64> = HashMap::new();
    for (spec, (n, per_source)) in plan.attacks.iter().zip(&attack_ops) {
        let (from, to) = spec.window_in(plan.end);
        let open = (spec.concurrency(to.saturating_sub(from)) as u64).min(*n);
        let fds = spec.kind.fds_per_attacker();
        attack_fds += open * fds;
        attack_auth_fds += open * fds.min(2);
        for (&ip, &k) in per_source {
            *attack_ports.entry(Some(ip)).or_default() += (open * k).div_ceil((*n).max(1)) * fds;
        }
    }
    let busiest_join_source = joins
        .into_iter()
        .map(|(ip, mut ev)| {
            ev.sort();
            (ip, peak_in_window(&ev, JOIN_OVERLAP))
        })
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .unwrap_or((None, 0));
    let overlapping_churn = peak_in_window(&churn, handshake_timeout);
    let in_flight_broadcasts = peak_in_window(&broadcasts, BROADCAST_IN_FLIGHT);
    let in_flight_attacks = peak_in_window(&attacks, handshake_timeout);
    let mut all_hung: Vec<(Duration, u64)> = hung.values().flatten().copied().collect();
    all_hung.sort();
    let hung_fds = peak_in_window(&all_hung, crash_bound);
    let fds = BASE_FDS
        + hung_fds
        + PER_JOINER * (slots + overlapping_churn)
        + in_flight_broadcasts * (members + slots)
        + in_flight_attacks
        + attack_fds;

    let mut ports: HashMap<Option<IpAddr>, u64> = holders;
    for (ip, n) in attack_ports {
        *ports.entry(ip).or_default() += n;
    }
    for (source, events) in &time_wait {
        *ports.entry(*source).or_default() += peak_in_window(events, TIME_WAIT);
    }
    for (source, events) in &hung {
        *ports.entry(*source).or_default() += peak_in_window(events, crash_bound);
    }
    // Ties go to the lowest address so the report is deterministic.
    let busiest_source = ports.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).unwrap_or((None, 0));
    Needs {
        fds,
        busiest_source,
        authenticator_fds: BASE_FDS + PER_JOINER * members + attack_auth_fds,
        attack_fds,
        busiest_join_source,
    }
}

/// What this machine allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Soft `RLIMIT_NOFILE` (after raising).
    pub fd_soft: u64,
    /// Hard `RLIMIT_NOFILE`.
    pub fd_hard: u64,
    /// The ephemeral port range, inclusive.
    pub ports: (u16, u16),
}

impl Limits {
    /// Raises the soft descriptor limit to the hard one and reads the ephemeral port range.
    pub fn raise_and_read() -> Result<Limits, Error> {
        let fail = |e: std::io::Error| Error::Limits(format!("cannot read or raise RLIMIT_NOFILE: {e}"));
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).map_err(fail)?;
        let soft = rlimit::increase_nofile_limit(hard).map_err(fail)?;
        Ok(Limits { fd_soft: soft, fd_hard: hard, ports: local_port_range() })
    }

    /// Ports in the ephemeral range.
    pub fn port_count(&self) -> u64 {
        (self.ports.1 as u64 + 1).saturating_sub(self.ports.0 as u64)
    }
}

/// The kernel's ephemeral port range (Linux `ip_local_port_range`; Linux's default elsewhere).
pub fn local_port_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>());
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// Refuses a run that does not fit; otherwise returns warnings about tight margins.
pub fn check(needs: &Needs, limits: &Limits) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    if needs.fds > limits.fd_soft {
        return Err(Error::Limits(format!(
            "this process needs about {} file descriptors but may open {} (hard limit {}); \
             raise the hard limit (ulimit -Hn, LimitNOFILE=) or split the run with --shard",
            needs.fds, limits.fd_soft, limits.fd_hard
        )));
    }
    if needs.fds * 10 > limits.fd_soft * 8 {
        warnings.push(format!("file descriptors are tight: about {} needed of {}", needs.fds, limits.fd_soft));
    }
    let (source, ports) = needs.busiest_source;
    let available = limits.port_count();
    let who = source.map_or_else(|| "the system's source address".to_string(), |ip| format!("source address {ip}"));
    if ports > available {
        return Err(Error::Limits(format!(
            "{who} needs about {ports} ports but the ephemeral range {}-{} has {available}; \
             spread the run over more addresses with --source-ips, or lower the rates",
            limits.ports.0, limits.ports.1
        )));
    }
    if ports * 10 > available * 7 {
        warnings.push(format!("ports are tight on {who}: about {ports} needed of {available}"));
    }
    let (source, joins) = needs.busiest_join_source;
    if joins > AUTH_HANDSHAKES_PER_SOURCE {
        let who = source.map_or_else(|| "the system's source address".to_string(), |ip| ip.to_string());
        warnings.push(format!(
            "{who} starts {joins} joins within 100ms; an authenticator with the default \
             per-source cap ({AUTH_HANDSHAKES_PER_SOURCE} handshakes in progress) closes the ones over it if they \
             overlap: spread the joiners over more --source-ips or raise the cap"
        ));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Arrival, PlanConfig};

    fn plan(peers: u32, ips: &str, broadcast_rate: f64, wrong_password_rate: f64) -> Plan {
        let joiner_ips =
            if ips.is_empty() { vec![] } else { ips.parse::<crate::sources::SourceRange>().unwrap().addrs().to_vec() };
        Plan::build(&PlanConfig {
            seed: 1,
            peers,
            arrival: Arrival::Rate(1000.0),
            hold: Duration::from_secs(30),
            churn_rate: 0.0,
            broadcast_rate,
            wrong_password_rate,
            joiner_ips,
            attacker_ips: vec!["127.0.9.1".parse().unwrap()],
            shards: 1,
            attacks: vec![],
        })
        .unwrap()
    }

    const ROOMY: Limits = Limits { fd_soft: 100_000, fd_hard: 100_000, ports: (32768, 60999) };

    #[test]
    fn windows_sum_weights() {
        let s = Duration::from_secs;
        let ev = [(s(0), 1), (s(1), 5), (s(2), 1), (s(10), 2)];
        assert_eq!(peak_in_window(&ev, s(2)), 6);
        assert_eq!(peak_in_window(&ev, s(3)), 7);
        assert_eq!(peak_in_window(&ev, s(1)), 5);
        assert_eq!(peak_in_window(&[], s(1)), 0);
        assert_eq!(peak_in_window(&[(s(1), 1), (s(1), 2)], s(0)), 0);
    }

    #[test]
    fn joiners_need_three_descriptors_and_three_ports_each() {
        let n = estimate(
            &plan(1000, "127.0.1.1-127.0.1.10", 0.0, 0.0),
            1001,
            Duration::from_secs(5),
            Duration::from_secs(21),
        );
        assert_eq!(n.fds, BASE_FDS + 3 * 1000);
        // 100 joiners per address, 3 ports each.
        assert_eq!(n.busiest_source.1, 300);
        assert_eq!(n.authenticator_fds, BASE_FDS + 3 * 1001);
        assert!(check(&n, &ROOMY).unwrap().is_empty());
    }

    #[test]
    fn too_few_descriptors_is_refused_with_a_way_out() {
        let n = estimate(
            &plan(1000, "127.0.1.1-127.0.1.10", 0.0, 0.0),
            1001,
            Duration::from_secs(5),
            Duration::from_secs(21),
        );
        let small = Limits { fd_soft: 1024, fd_hard: 1024, ..ROOMY };
        let e = check(&n, &small).unwrap_err().to_string();
        assert!(e.contains("3064 file descriptors") && e.contains("--shard"), "{e}");
        let tight = Limits { fd_soft: 3500, fd_hard: 3500, ..ROOMY };
        assert_eq!(check(&n, &tight).unwrap().len(), 1);
    }

    #[test]
    fn messages_from_one_address_exhaust_its_ports() {
        // 200 peers on one address broadcasting 10/s for 30 s: each message leaves a port in
        // TIME_WAIT for a minute on the sender's address.
        let one = plan(200, "127.0.1.1", 10.0, 0.0);
        let n = estimate(&one, 201, Duration::from_secs(5), Duration::from_secs(21));
        assert_eq!(n.busiest_source.0, Some("127.0.1.1".parse().unwrap()));
        assert!(n.busiest_source.1 > 28232, "{:?}", n.busiest_source);
        let e = check(&n, &ROOMY).unwrap_err().to_string();
        assert!(e.contains("127.0.1.1") && e.contains("--source-ips"), "{e}");
        // Spread over 200 addresses it fits.
        let many = plan(200, "127.0.1.1-127.0.1.200", 10.0, 0.0);
        let n = estimate(&many, 201, Duration::from_secs(5), Duration::from_secs(21));
        assert!(check(&n, &ROOMY).is_ok(), "{n:?}");
        // In-flight broadcasts need descriptors for every member.
        assert!(n.fds > BASE_FDS + 3 * 200 + 201, "{n:?}");
    }

    #[test]
    fn attacks_use_ports_on_attacker_addresses() {
        let p = plan(10, "127.0.1.1-127.0.1.10", 0.0, 100.0);
        let n = estimate(&p, 11, Duration::from_secs(5), Duration::from_secs(21));
        // About 100/s for 60 s (the run is 30 s long): ~3000 on the one attacker address.
        assert_eq!(n.busiest_source.0, Some("127.0.9.1".parse().unwrap()));
        assert!((2500..3500).contains(&n.busiest_source.1), "{:?}", n.busiest_source);
    }

    #[test]
    fn many_joins_from_one_address_warn_about_the_per_source_cap() {
        // 1000 joins/s from one address: 100 in any 100 ms.
        let n = estimate(&plan(1000, "127.0.1.1", 0.0, 0.0), 1001, Duration::from_secs(5), Duration::from_secs(21));
        assert_eq!(n.busiest_join_source, (Some("127.0.1.1".parse().unwrap()), 100));
        let w = check(&n, &ROOMY).unwrap();
        assert!(w.iter().any(|w| w.contains("per-source cap")), "{w:?}");
        // The README's example spreads 100 joins/s over 766 addresses: one each.
        let n = estimate(
            &plan(500, crate::sources::DEFAULT_LOOPBACK_V4, 0.0, 0.0),
            501,
            Duration::from_secs(5),
            Duration::from_secs(21),
        );
        assert_eq!(n.busiest_join_source.1, 1);
    }

    #[test]
    fn crashed_joiners_hold_their_descriptors_for_the_crash_bound() {
        let ips = "127.0.1.1-127.0.1.100".parse::<crate::sources::SourceRange>().unwrap().addrs().to_vec();
        let p = Plan::build(&PlanConfig {
            seed: 3,
            peers: 100,
            arrival: Arrival::Rate(1000.0),
            hold: Duration::from_secs(30),
            churn_rate: 4.0,
            broadcast_rate: 0.0,
            wrong_password_rate: 0.0,
            joiner_ips: ips,
            attacker_ips: vec![],
            shards: 1,
            attacks: vec![],
        })
        .unwrap();
        let crashes = p.summary().crashes;
        assert!(crashes > 20, "{crashes}");
        let at = |bound: u64| estimate(&p, 101, Duration::from_secs(5), Duration::from_secs(bound)).fds;
        // A bound longer than the run: every crash holds its 3 at once.
        assert_eq!(at(3600) - at(0), 3 * crashes);
        assert!(at(1) < at(10) && at(10) < at(3600));
    }

    #[test]
    fn hostile_connections_need_descriptors_up_to_their_bound() {
        use crate::plan::PlannedAttack;
        let ips = |r: &str| r.parse::<crate::sources::SourceRange>().unwrap().addrs().to_vec();
        let p = Plan::build(&PlanConfig {
            seed: 1,
            peers: 10,
            arrival: Arrival::Rate(1000.0),
            hold: Duration::from_secs(30),
            churn_rate: 0.0,
            broadcast_rate: 0.0,
            wrong_password_rate: 0.0,
            joiner_ips: ips("127.0.1.1-127.0.1.10"),
            attacker_ips: vec![],
            shards: 1,
            attacks: vec![
                PlannedAttack { spec: "silent:3000,ips=30".parse().unwrap(), ips: ips("127.0.8.1-127.0.8.30") },
                PlannedAttack { spec: "dist-chatter:10".parse().unwrap(), ips: ips("127.0.9.1-127.0.9.4") },
                PlannedAttack { spec: "oversize:50/s,max=20".parse().unwrap(), ips: ips("127.0.9.5") },
            ],
        })
        .unwrap();
        let n = estimate(&p, 11, Duration::from_secs(5), Duration::from_secs(21));
        assert_eq!(n.attack_fds, 3000 + 3 * 10 + 20);
        assert_eq!(n.fds, BASE_FDS + 3 * 10 + n.attack_fds);
        // The oversize address holds its 20; a silent one holds 100.
        assert_eq!(n.busiest_source, (Some("127.0.8.1".parse().unwrap()), 100));
        let small = Limits { fd_soft: 2000, fd_hard: 2000, ..ROOMY };
        assert!(check(&n, &small).unwrap_err().to_string().contains("file descriptors"));
    }

    #[test]
    fn the_port_range_is_read() {
        let (lo, hi) = local_port_range();
        assert!(lo > 0 && lo < hi);
    }
}
