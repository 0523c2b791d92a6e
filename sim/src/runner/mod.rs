//! The runner: one resolved scenario, one seed, one turmoil simulation.
//!
//! The driver builds a deterministic `turmoil::Sim` (seeded RNG, fixed epoch, the scenario's
//! tick, latencies, loss and `tcp_capacity`), registers the hosts of the
//! [`Layout`](crate::layout::Layout) in a fixed order (which fixes their IPs), and steps the
//! simulation by hand. Between steps it applies the due operations of the
//! [`timeline`](crate::timeline) schedule (faults through turmoil's partition/hold/crash/bounce
//! API, joins/leaves/broadcasts as commands to the hosts) and the rejoin policy; after each
//! step it drains what the hosts observed, records it in the [`Trace`] and feeds it to the
//! [`Monitor`](crate::checkers::Monitor). Nothing here reads the wall clock except the
//! sim/wall ratio around the whole loop.
//!
//! Submodules:
//! - `driver`: the driver itself: building the simulation, the schedule, joins and leaves,
//!   attempts and broadcasts, the step loop.
//! - `faults`: crashes, restarts, partitions, holds and loss, applied and ended.
//! - `observe`: what the hosts observed, into the trace and the checkers.
//! - [`hosts`]: the protocol software itself (pyile's `Authenticator`/`Joiner` on
//!   `TurmoilNet`) and the commands and observations it exchanges with the driver.
//! - [`hostile`]: hostile hosts speaking raw wire protocol (the `attack` action's kinds).
//! - `attacks`: the driver's side of an attack (scripts, spoof victims, observations).
//! - [`evidence`]: the network's ground truth (segments dropped or held, per stream).
//!
//! The checkers are in [`crate::checkers`].

mod attacks;
pub mod bench;
mod driver;
pub mod evidence;
mod faults;
pub mod hostile;
pub mod hosts;
mod observe;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::batch::set_wall_metrics;
use crate::metrics::{MetricId, Metrics};
use crate::scenario::Resolved;
use crate::trace::{Trace, TraceError, TraceSummary};
use crate::verdict::Finding;
use driver::Driver;
use evidence::Evidence;

/// The fixed start of simulated time (turmoil's default is the wall clock).
pub const EPOCH_SECS: u64 = 1_700_000_000;

/// What one run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// Metric values (the runner sets wall time and the sim/wall ratio too).
    pub metrics: Metrics,
    /// Checker findings.
    pub findings: Vec<Finding>,
    /// The finished trace.
    pub trace: TraceSummary,
    /// Why the run could not complete (host software error, simulation panic).
    pub error: Option<String>,
}

/// Deliberate protocol misconfigurations that the checkers do not know about: tests use
/// them to prove a checker fires against a broken authenticator.
#[derive(Clone, Debug, Default)]
pub struct Sabotage {
    /// Run the authenticator with this heartbeat timeout instead of the scenario's (e.g. an
    /// hour: the reference's "members are never removed"), while the checkers keep the
    /// scenario's bound.
    pub auth_heartbeat_timeout: Option<Duration>,
    /// Let the authenticator accept a peer address that is not on the connection's source IP
    /// (pyile's NAT option): a spoofer can then list an address it does not own.
    pub auth_foreign_peer_addresses: bool,
    /// Bound the authenticator's handshakes in progress to this (pyile's default is 8,192):
    /// hostile connections then shed honest handshakes.
    pub auth_max_handshakes: Option<usize>,
}

/// Runs `resolved` once, recording into `trace`.
pub fn run(resolved: &Resolved, trace: Trace) -> Result<RunOutput, TraceError> {
    run_with(resolved, trace, &Sabotage::default())
}

/// [`run`] with a [`Sabotage`].
pub fn run_with(resolved: &Resolved, trace: Trace, sabotage: &Sabotage) -> Result<RunOutput, TraceError> {
    let evidence = Evidence::default();
    let dispatch = tracing::Dispatch::new(evidence.clone());
    let wall = std::time::Instant::now(); // wall time: only for the sim/wall ratio
    let out = tracing::dispatcher::with_default(&dispatch, || Driver::new(resolved, trace, &evidence, sabotage).run());
    let mut out = out?;
    let sim_secs = out.metrics.get(MetricId::SimSeconds).unwrap_or(0.0);
    set_wall_metrics(&mut out.metrics, sim_secs, wall.elapsed().as_secs_f64());
    Ok(out)
}
