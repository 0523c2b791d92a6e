//! Ground truth, safety and liveness checkers, and per-run metrics.
//!
//! The [`Monitor`] is fed two kinds of facts, in simulated-time order: what the driver did
//! to the world (the truth: which host crashed, which link is cut or held, which joiner was
//! told to join or leave) and what the protocol reported (admissions, published and received
//! member lists, removals, bans), translated by the runner from pyile's events into the plain
//! calls below. It knows nothing of pyile's types, so every checker is tested here with
//! synthetic histories — including the broken behaviours each checker must catch.
//!
//! Safety checks (each finding fails the run):
//! - `banned_member`: a list (published or received) holds a banned or attacker IP.
//! - `unknown_member`: a joiner's list holds an address the authenticator never admitted.
//! - `view_regressed`: a joiner received a list older than one it already had (taken, or
//!   dropped by the joiner, which reports it).
//! - `stale_member`: the authenticator still lists a member `heartbeat_timeout` + one interval
//!   (+ latency slack) after the member's host stopped answering (crash, cut, hold).
//! - `false_removal`: a member was removed although neither its host nor the authenticator
//!   had any fault since it joined and it was not leaving; or it was removed for a lost
//!   distribution (`DistributionLost`) although the network's ground truth shows its
//!   distribution stream never lost a segment (whatever faults it lived through).
//! - `banned_admitted`: an attacker IP got in with the correct password after its ban.
//! - `honest_banned`: an IP was banned that made no wrong attempts by design.
//! - `attacker_member`: an `attack` host's address, an address admitted from a hostile
//!   source, or one announced by a connection that does not own its IP, is admitted or held
//!   in any list.
//! - `ghost_member`: a list holds a joiner before that joiner (by its own report) finished its
//!   whole handshake, or although it never did; or the authenticator still lists a joiner
//!   well after it ended (ground truth from the joiners' side, not the authenticator's).
//! - `member_evicted`: an honest member was replaced by an admission from another source.
//! - `chatter_resent`: a distribution-socket chatterer received more lists than were
//!   published while it was a member.
//! - `password_exposed`, `impostor_trusted`: a joiner pointed at an impostor authenticator
//!   sent it the password in clear, or took it for its authenticator, where protocol 2
//!   promises it cannot.
//! - `broadcast_duplicated`: a receiver delivered one protocol-2 message id twice
//!   (exactly-once broadcast; losses per broadcast are the `broadcast_losses` metric).
//!
//! - `alias_duplicated`, `alias_refused_free`: aliases are unique among live members, and
//!   refused only when taken.
//! - `announcement_missed`, `announcement_wrong`, `announcement_repeated`: every live
//!   protocol-2 member hears every join and leave exactly once, in order.
//! - `left_misreported`: a graceful leave is announced as `left`, a crash never is.
//!
//! Liveness (at the end of a run with `settle` > 0): `not_converged` — a live, healthy joiner
//! does not hold the authenticator's list (as of a grace period before the end), or is not
//! in it.
//!
//! Modules, one concept each (the public types are re-exported here):
//! - `monitor`: the [`Monitor`] and [`MonitorConfig`]: shared state, counters, `finish`.
//! - `impairments`: ground truth about faults ([`Impairment`]): who is impaired, when.
//! - `lifecycle`: joiner instances and authenticator incarnations.
//! - `lists`: member lists ([`ListView`]): `banned_member`, `unknown_member`,
//!   `view_regressed`.
//! - `removals`: removals ([`Removal`]): `stale_member`, `false_removal`.
//! - `bans`: bans and attackers: `honest_banned`, `banned_admitted`.
//! - `ghosts`: membership from the joiners' side: `ghost_member`.
//! - `liveness`: convergence samples and `not_converged`.
//! - `views`: every joiner's list equals the authenticator's of the same version:
//!   `view_diverged` (and what lets the per-member list checks skip joiners' lists).
//! - `names`: aliases, announcements and graceful leaves ([`Change`]).
//! - `broadcasts`: chat message ids: `broadcast_duplicated`, `broadcast_losses`.
//! - `attacks`: hostile traffic ([`AttackEnd`]): `attacker_member`, `member_evicted`,
//!   `chatter_resent`, and the attack metrics.
//! - `impostors`: impostor authenticators ([`ImpostorExchange`]): `password_exposed`,
//!   `impostor_trusted`.

mod attacks;
mod bans;
mod broadcasts;
mod ghosts;
mod impairments;
mod impostors;
mod lifecycle;
mod lists;
mod liveness;
mod monitor;
mod names;
mod removals;
mod views;

pub use attacks::AttackEnd;
pub use impairments::Impairment;
pub use impostors::ImpostorExchange;
pub use lists::ListView;
pub use monitor::{Monitor, MonitorConfig};
pub use names::Change;
pub use removals::Removal;

#[cfg(test)]
mod tests;
