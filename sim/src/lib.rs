//! `sim`: deterministic, seeded turmoil simulations of Pyile networks, driven by scenario
//! files, with checkers, metrics and CSV reports.
//!
//! Module map (one concept each), roughly in the order a run flows through them:
//! - [`scenario`]: the TOML schema, seeds, line-numbered errors, validation, `[random]`.
//! - [`layout`]: the simulated hosts of a scenario and the joiners packed onto them.
//! - [`timeline`]: the timeline expanded, from the seed, into time-ordered operations.
//! - [`cost`]: wall-time estimate from turmoil's measured O(hosts³) step cost.
//! - [`runner`]: pyile's authenticator, joiners and attackers on turmoil hosts; applies the
//!   operations and faults, records the trace, feeds the checkers.
//! - [`checkers`]: ground truth, safety and liveness checks, and the per-run metrics.
//! - [`metrics`]: the catalogue of per-run metrics (stable CSV column names, units, direction).
//! - [`verdict`]: turns checker findings, expectations and determinism into pass/fail.
//! - [`trace`]: JSON-lines event traces, the running trace hash, determinism comparison.
//! - [`batch`]: many (scenario, seed) runs across threads, the determinism double-run.
//! - [`report`]: per-run and summary CSVs, the HTML pages (with `pyile-plots`), the printed
//!   table, `compare` and `baseline`.
//! - [`cli`]: the command line.
//! - [`hash`], [`rng`]: small shared utilities (FNV-1a, labelled seed derivation).
//!
//! Units (durations like `"250ms"`, byte rates like `"64MiB/s"`) and Poisson arrival gaps
//! come from `pyile::units`, shared with the `pyile` and `loadgen` binaries.

pub mod batch;
pub mod checkers;
pub mod cli;
pub mod cost;
pub mod hash;
pub mod layout;
pub mod metrics;
pub mod report;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod timeline;
pub mod trace;
pub mod verdict;
