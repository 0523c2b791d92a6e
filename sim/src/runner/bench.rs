//! A hand-driven simulation on the runner's own harness, for tests that need what a scenario
//! cannot say: a hand-written host speaking the wire protocol next to the runner's
//! authenticator or joiners, or a fault timed on an observed event (cut a link right after a
//! heartbeat arrived).
//!
//! A [`Bench`] is built from a scenario exactly as a run is ([`build_sim`], [`Settings::new`],
//! the [`Layout`]'s host names and IPs, registered in the same order), and its hosts run the
//! same software ([`hosts::software`](software)). Nothing is scheduled and nothing is checked:
//! the test starts the hosts it wants (or registers its own on [`Bench::sim`] under a layout
//! name or a new one), sends commands, steps, applies turmoil faults itself, and reads every
//! observation so far, in order.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::hosts::{Cmd, HostCtx, Obs, Role, Settings, Shared, build_sim, software};
use crate::layout::{AUTH_HOST, Layout};
use crate::scenario::Resolved;

/// A hand-driven simulation of one resolved scenario.
pub struct Bench {
    /// The simulation: faults (`partition`, `hold`, ...) and extra hosts (`host`) go here.
    pub sim: turmoil::Sim<'static>,
    /// The scenario's hosts and joiner slots.
    pub layout: Layout,
    /// IP of each layout host.
    pub ips: Vec<IpAddr>,
    shared: Rc<Shared>,
    log: Vec<(usize, Obs)>,
    /// Joiner slot of each instance started.
    insts: BTreeMap<u64, usize>,
}

impl Bench {
    /// The simulation of `resolved` (its network, its authenticator's and groups' settings, its
    /// seed), with every layout host's name looked up (so IPs are as in a run) and none started.
    pub fn new(resolved: &Resolved) -> Bench {
        let sc = &resolved.scenario;
        let layout = Layout::new(sc);
        let sim = build_sim(sc, resolved.seed);
        let ips: Vec<IpAddr> = layout.hosts.iter().map(|h| sim.lookup(h.name.as_str())).collect();
        let auth_addr = SocketAddr::new(ips[AUTH_HOST], sc.authenticator.port);
        let shared = Rc::new(Shared::new(layout.hosts.len(), auth_addr, Settings::new(sc, &layout, resolved.seed)));
        Bench { sim, layout, ips, shared, log: Vec::new(), insts: BTreeMap::new() }
    }

    /// What the hosts are configured with.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Where joiners connect (the authenticator host's IP and the scenario's port).
    pub fn auth_addr(&self) -> SocketAddr {
        self.shared.auth_addr
    }

    /// Index of the layout host called `name`.
    pub fn host(&self, name: &str) -> usize {
        self.layout.hosts.iter().position(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Index of the joiner slot called `name` (`<group>.<n>`).
    pub fn slot(&self, name: &str) -> usize {
        self.layout.joiners.iter().position(|j| j.name == name).unwrap_or_else(|| panic!("no joiner {name}"))
    }

    /// Runs the runner's software for its role on layout host `host`.
    pub fn start(&mut self, host: usize) {
        let ctx = HostCtx {
            shared: self.shared.clone(),
            host,
            ip: self.ips[host],
            role: Role::of(&self.layout.hosts[host].role),
            incarnation: Rc::new(Cell::new(0)),
        };
        self.sim.host(self.layout.hosts[host].name.as_str(), move || software(ctx.clone()));
    }

    /// Starts every layout host.
    pub fn start_all(&mut self) {
        for h in 0..self.layout.hosts.len() {
            self.start(h);
        }
    }

    /// Joiner slot `slot` starts a join attempt; returns the new instance's id.
    pub fn join(&mut self, slot: usize) -> u64 {
        let inst = self.insts.len() as u64;
        self.insts.insert(inst, slot);
        let j = &self.layout.joiners[slot];
        self.send(j.host, Cmd::Join { inst, joiner: slot, group: j.group });
        inst
    }

    /// Joiner instance `inst` leaves gracefully.
    pub fn leave(&self, inst: u64) {
        self.send(self.layout.joiners[self.insts[&inst]].host, Cmd::Leave { inst });
    }

    /// Sends `cmd` to layout host `host`.
    pub fn send(&self, host: usize, cmd: Cmd) {
        self.shared.inboxes[host].send(cmd);
    }

    /// Simulated time so far.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// One turmoil step, then collects what the hosts observed. Panics if the simulation
    /// fails (a host's software returned an error or panicked).
    pub fn step(&mut self) {
        if let Err(e) = self.sim.step() {
            panic!("turmoil step at {:?}: {e}", self.sim.elapsed());
        }
        self.log.append(&mut self.shared.obs.borrow_mut());
    }

    /// Steps for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.sim.elapsed() + d;
        while self.sim.elapsed() < until {
            self.step();
        }
    }

    /// Steps until `cond` holds on the observations so far, or `limit` of simulated time has
    /// passed; returns whether it holds.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&[(usize, Obs)]) -> bool) -> bool {
        let deadline = self.sim.elapsed() + limit;
        loop {
            if cond(&self.log) {
                return true;
            }
            if self.sim.elapsed() >= deadline {
                return false;
            }
            self.step();
        }
    }

    /// Every observation so far, in order, with the layout host that made it.
    pub fn log(&self) -> &[(usize, Obs)] {
        &self.log
    }
}
