//! `loadgen`: many real Pyile joiners over TCP against one live authenticator, with honest
//! (coordinated-omission-free) HdrHistogram latencies.
//!
//! The crate is split so that everything that does not speak the protocol can be built and
//! tested on its own:
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the command line (`loadgen …` and `loadgen merge …`) |
//! | [`human`] | measured times for people (`12.3ms`); the units it *reads* are `pyile::units` |
//! | [`sources`] | source-address ranges and the loopback-only safety rules |
//! | [`plan`] | the deterministic, shardable schedule of operations |
//! | [`metrics`] | histograms and counters, recorded from many tasks, cut into intervals |
//! | [`report`] | final CSV, per-interval CSV, parameter sidecar, summary table |
//! | [`hlog`] | HdrHistogram interval logs and their exact merge |
//! | [`html`] | the self-contained HTML report of a run, a merge or existing files |
//! | [`rules`] | `--fail-on` thresholds |
//! | [`limits`] | file-descriptor and ephemeral-port budget, checked before the run |
//! | [`progress`] | the live display on stderr |
//! | [`attack`] | hostile traffic: the `--attack` grammar and the raw clients of each kind |
//! | [`driver`] | real joiners (and attackers) per the plan, feeding the metrics |
//! | [`floor`] | `loadgen floor`: the loopback traffic alone, no protocol, its CPU per value |
//!
//! [`driver`] turns the plan into real `pyile::Joiner`s and [`attack`] clients; the binary
//! wires it all together.

pub mod attack;
pub mod cli;
pub mod driver;
pub mod error;
pub mod floor;
pub mod hlog;
pub mod html;
pub mod human;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod report;
pub mod rules;
pub mod sources;

pub use error::{Error, Result};
