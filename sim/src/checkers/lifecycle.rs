//! Lifecycles: joiner instances (a join attempt, its admission, its leave or end) and
//! authenticator incarnations, as the driver and the protocol report them.
//!
//! These calls only keep the facts the checks judge by (when an instance joined, at which
//! address, when it stopped answering) and the join and detection metrics.

use std::net::SocketAddr;
use std::time::Duration;

use super::impairments::Impairment;
use super::lists::ListView;
use super::monitor::{Instance, Monitor};
use crate::metrics::MetricId;

impl Monitor {
    /// The runner started join attempt `inst` of joiner slot `joiner` on `host`; the joiner
    /// will announce `peer` as its address (the runner chose it: ground truth for
    /// [`ghosts`](super::ghosts)). Instances on hosts expected to be banned (a group with a
    /// wrong password) are not honest.
    pub fn join_started(&mut self, t: Duration, inst: u64, joiner: usize, host: usize, rejoin: bool, peer: SocketAddr) {
        self.count(MetricId::JoinsAttempted, 1.0);
        if rejoin {
            self.count(MetricId::Rejoins, 1.0);
        }
        let honest = !self.attacker_ips.contains(&self.host_ips[host]);
        let incarnation = self.auth_incarnation;
        self.instances
            .insert(inst, Instance { joiner, host, honest, join_started: t, incarnation, ..Default::default() });
        self.note_peer(inst, peer);
    }

    /// Join attempt `inst` failed.
    pub fn join_failed(&mut self, t: Duration, inst: u64) {
        self.count(MetricId::JoinsFailed, 1.0);
        self.ghost_failed(t, inst);
        self.names_instance_ended(t, inst);
        if let Some(i) = self.instances.get_mut(&inst) {
            i.ended = Some(t);
            let (host, started) = (i.host, i.join_started);
            // Expected: a fault cut the joiner or the authenticator off during the attempt.
            if self.impaired_between(host, started, t) {
                self.count(MetricId::JoinsFailedInFaults, 1.0);
            }
        }
    }

    /// Join attempt `inst` completed: the joiner listens at `addr` and got `list`.
    pub fn joined(&mut self, t: Duration, inst: u64, addr: SocketAddr, list: &ListView) {
        self.count(MetricId::JoinsOk, 1.0);
        let Some(i) = self.instances.get_mut(&inst) else { return };
        i.joined_at = Some(t);
        i.addr = Some(addr);
        let lat = (t - i.join_started).as_secs_f64();
        let started = i.join_started;
        self.join_latency.push(lat);
        if self.floods.iter().any(|&(a, b)| started >= a && started <= b) {
            self.honest_flood_latency.push(lat);
        }
        if self.attacks.windows.iter().any(|&(a, b)| started >= a && started <= b) {
            self.attacks.honest_latency.push(lat);
        }
        self.by_addr.insert(addr, inst);
        self.ghost_completed(t, inst, addr);
        self.joiner_list(t, inst, list);
    }

    /// Joiner `inst`'s distribution connection has local address `local` (its stream's ground
    /// truth is asked for in [`Monitor::judge_distribution_losses`]).
    pub fn dist_connected(&mut self, inst: u64, local: SocketAddr) {
        if let Some(i) = self.instances.get_mut(&inst) {
            i.dist = Some(local);
        }
    }

    /// The runner told instance `inst` to leave.
    pub fn leave_started(&mut self, t: Duration, inst: u64) {
        if let Some(i) = self.instances.get_mut(&inst) {
            i.leaving.get_or_insert(t);
            i.stopped_at.get_or_insert(t);
        }
        for p in self.pending.values_mut() {
            p.waiting.remove(&inst);
        }
        self.complete_pending(t);
    }

    /// Instance `inst` ended (left, lost the authenticator, crashed with its host).
    pub fn ended(&mut self, t: Duration, inst: u64) {
        if self.instances.get(&inst).is_some_and(|i| i.joined_at.is_none()) {
            self.ghost_failed(t, inst);
        }
        self.view_final(t, inst);
        self.names_instance_ended(t, inst);
        if let Some(i) = self.instances.get_mut(&inst) {
            i.ended.get_or_insert(t);
            i.stopped_at.get_or_insert(t);
        }
        for p in self.pending.values_mut() {
            p.waiting.remove(&inst);
        }
        self.complete_pending(t);
    }

    /// Joiner `inst` reported the authenticator lost.
    pub fn auth_lost(&mut self, t: Duration, inst: u64) {
        self.count(MetricId::AuthLostReports, 1.0);
        let host = self.instances.get(&inst).map(|i| i.host);
        // Loss windows are excluded: when a loss killed the stream is unknown.
        let own = host.and_then(|h| {
            self.hosts[h].active.iter().filter(|((k, _), _)| *k != Impairment::Loss).map(|(_, t)| *t).min()
        });
        let since = [self.auth_fault_since, own].into_iter().flatten().min();
        if let Some(s) = since {
            self.auth_loss_detection.push((t - s).as_secs_f64());
        }
    }

    // ---------------------------------------------------------------- authenticator

    /// An authenticator incarnation started; its own peer address is `peer`.
    pub fn auth_started(&mut self, t: Duration, peer: SocketAddr) {
        self.auth_incarnation += 1;
        self.views_restart();
        self.names_restart(t);
        self.auth_running = true;
        self.auth_peers.insert(peer);
        self.auth_members.clear();
        self.auth_members.insert(peer);
    }
}
