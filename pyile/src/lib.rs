//! # pyile
//!
//! The Pyile v1 peer-to-peer authentication and messaging protocol,
//! wire-compatible with the reference Python implementation
//! `pyile-protocol` 0.1.1, written once against an abstract [`Network`] so
//! that the same [`Authenticator`] and [`Joiner`] run on real tokio sockets
//! ([`TokioNet`]) and inside deterministic turmoil simulations
//! (`TurmoilNet`, feature `turmoil`; the `sim` crate runs it, and its tests
//! are where the protocol is exercised on turmoil).
//!
//! An authenticator admits joiners that know the password, bans source IPs
//! after too many wrong attempts, heartbeats every member, removes members
//! that stop answering and distributes the member list on every change: the
//! full list to reference (v1) members, a full list then deltas to protocol-2
//! members (`docs/protocol-2.md`).
//! Members exchange chat messages directly, one connection per message.
//! Both roles report what happens as a stream of typed [`Event`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pyile::Error> {
//! use pyile::{Authenticator, AuthenticatorConfig, Joiner, JoinerConfig, TokioNet};
//! let auth = Authenticator::start(
//!     TokioNet,
//!     AuthenticatorConfig::new("secret").listen("127.0.0.1:0".parse().unwrap()),
//! ).await?;
//! let bob = Joiner::join(TokioNet, auth.auth_addr(), JoinerConfig::new("secret").alias("bob")).await?;
//! bob.broadcast("hello").await;
//! bob.leave().await;
//! auth.leave().await;
//! # Ok(()) }
//! ```
//!
//! Module map (one concept each):
//!
//! | module | owns |
//! |---|---|
//! | [`wire`] | every v1 message and the protocol-2 extensions, their exact JSON, the bounded streaming decoder |
//! | [`net`] | the abstract network: [`TokioNet`] for sockets, `TurmoilNet` for simulations |
//! | [`member_list`] | the list a distribution carries (authenticator first, versioned, persistent) and its deltas |
//! | [`authenticator`] | admits, bans, heartbeats, distributes; its rules in [`authenticator::state`] |
//! | [`joiner`] | joins, answers heartbeats, follows distributions |
//! | [`dedup`] | exactly-once broadcast: the bounded duplicate filter and its settings |
//! | [`impostor`] | a fake authenticator that does not know the password, to show what joiners give away to one |
//! | [`scram`] | protocol 2's SCRAM-SHA-256-style mutual password proof and the stored verifier |
//! | `peer` | chat messages between members: the peer listener and the sender |
//! | [`event`] | what happens to a node, as a typed, bounded stream |
//! | [`error`] | the crate's error type |
//! | [`units`] | units shared by the binaries' flags and the scenario files (see below) |
//!
//! Randomness comes only from the seed in [`AuthenticatorConfig::seed`] (and a
//! joiner's [`JoinerConfig::seed`], else the OS, for its SCRAM nonces) and time only from `tokio::time`, so simulations replay exactly.
//!
//! Besides the protocol, [`units`] is the one home of the units the binaries'
//! flags and the simulator's scenario files share: durations (`"1m30s"`), byte
//! rates (`"64MiB/s"`), event rates (`"100/s"`), Poisson arrivals and the
//! password source.

pub mod authenticator;
pub mod dedup;
pub mod error;
pub mod event;
pub mod impostor;
pub mod joiner;
pub mod member_list;
pub mod net;
mod peer;
pub mod scram;
pub mod units;
pub mod wire;

pub use authenticator::{
    Authenticator, AuthenticatorConfig, DEFAULT_AUTH_PORT, DEFAULT_DISTRIBUTION_BUDGET, DistStats, SnapshotReason,
};
pub use dedup::ExactlyOnceConfig;
pub use error::Error;
pub use event::{Event, EventKind, EventStream, HandshakeStage, LostReason, RemovalReason};
pub use joiner::{Hung, Joiner, JoinerConfig};
pub use member_list::{AliasMap, Delta, DeltaError, Departure, MemberList, SharedLists};
#[cfg(feature = "turmoil")]
pub use net::TurmoilNet;
pub use net::{Listener, NetStream, Network, TokioNet};
pub use peer::{BroadcastReport, Delivery};
