//! `sim`: deterministic, seeded turmoil simulations of Pyile networks, driven by scenario
//! files, with checkers, metrics and CSV reports.
//!
//! Module map (one concept each):
//! - [`scenario`]: the TOML schema, line-numbered errors, validation, `[random]` resolution.
//! - [`metrics`]: the catalogue of per-run metrics (stable CSV column names, units, direction).
//! - [`verdict`]: turns checker findings, expectations and determinism into pass/fail.
//! - [`report`]: per-run and summary CSVs, the printed table, `compare` and `baseline`.
//! - [`trace`]: JSON-lines event traces, the running trace hash, determinism comparison.
//! - [`cost`]: wall-time estimate from turmoil's measured O(hosts³) step cost.
//! - [`runner`]: puts pyile's authenticator, joiners and attackers on turmoil hosts, drives the
//!   timeline and feeds the checkers.
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
