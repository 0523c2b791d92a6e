//! Hostile traffic beside the honest joiners (`--attack`): the grammar of an attack
//! ([`spec`]) and the raw clients that carry one out ([`client`]).
//!
//! An attack runs from its own source addresses (`--attack-source-ips`, dealt to each
//! `--attack` in order, `ips=` each), never a joiner's, so the authenticator's per-source
//! defences (handshake cap, bans) meet the attack and not the honest joiners. Its
//! connections are planned like every other operation ([`crate::plan`]), bounded in number
//! (`max=`, and the descriptor budget of [`crate::limits`]) and in time (the run's end), and
//! measured per kind apart from the honest metrics ([`crate::metrics::AttackCounter`]).

pub mod client;
pub mod spec;

pub use client::{AttackContext, RunningAttack, Victims};
pub use spec::{Amount, AttackKind, AttackSpec};
