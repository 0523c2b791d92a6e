//! Scenario files: the TOML schema, loading with line-numbered errors, and validation.
//!
//! A scenario says what to simulate (network, authenticator settings, joiner groups packed
//! onto simulated hosts), what happens when (the `[[timeline]]`), what must hold
//! (`[[expect]]`), and which values vary per seed (`[random]`, resolved by [`random`]).
//! The schema is documented for users in `scenarios/README.md`; keep the two in step.
//!
//! Submodules, one concept each (their types are re-exported here, so paths stay
//! `crate::scenario::Scenario` etc.):
//! - `schema`: the serde types of the file, section by section, and their defaults.
//! - `seeds`: [`SeedSet`], the seeds a scenario runs (file or command line).
//! - `load`: [`LoadedScenario`] (text, hash, parse), located [`ScenarioError`]s, [`Resolved`].
//! - `validate`: [`Scenario::validate`], one validator per section.
//! - [`random`]: `[random]` specs and their per-seed resolution.

mod load;
pub mod random;
mod schema;
mod seeds;
mod validate;

pub use load::{LineIndex, LoadedScenario, Resolved, ScenarioError};
pub use schema::{
    Action, AttackKind, AuthSettings, Bound, Direction, Expect, ImpostorPose, JoinerGroup, Network, Pick,
    RESERVED_NAMES, Scenario, TimelineEntry,
};
pub use seeds::SeedSet;

#[cfg(test)]
mod tests;
