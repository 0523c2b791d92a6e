//! The crate's error type.
//!
//! Variants follow the reference's exception categories (authentication,
//! banned status, send, receive, connection) plus timeouts, which the
//! reference lacks, and I/O errors while setting up sockets.

use std::net::SocketAddr;
use std::time::Duration;

use crate::wire::DecodeError;

/// What went wrong in a protocol operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The authenticator rejected the password.
    #[error("authentication failed: the authenticator rejected the password")]
    Authentication,
    /// The authenticator accepted this joiner's SCRAM proof without proving that it knows
    /// the password itself: it is not the real authenticator.
    #[error(
        "impostor authenticator at {addr}: it accepted the join without proving it knows the password; nothing was sent in clear"
    )]
    ImpostorAuthenticator {
        /// The authenticator's address.
        addr: SocketAddr,
    },
    /// The joiner requires the SCRAM exchange and the authenticator does not offer it.
    #[error(
        "the authenticator does not offer the SCRAM password exchange (a v1 or older authenticator, or an impostor posing as one); the password was not sent"
    )]
    MutualAuthUnavailable,
    /// The authenticator's SCRAM challenge is out of bounds or malformed.
    #[error("refused the authenticator's SCRAM challenge")]
    Scram(#[source] crate::scram::ScramError),
    /// The authenticator refused the alias: another live member holds it (protocol 2).
    #[error("alias \"{alias}\" is taken: another member of this network uses it; choose another alias")]
    AliasTaken {
        /// The alias asked for.
        alias: String,
    },
    /// The authenticator refused the alias as unusable: empty, too long or holding control
    /// characters (protocol 2).
    #[error("alias \"{}\" refused: an alias must be 1 to the authenticator's limit (64 bytes by default) of UTF-8 without control characters", alias.escape_debug())]
    BadAlias {
        /// The alias asked for.
        alias: String,
    },
    /// The authenticator refused the join for a reason this version does not know.
    #[error("the authenticator refused the join: {reason}")]
    Refused {
        /// Its wire name.
        reason: String,
    },
    /// The authenticator says this source IP is banned.
    #[error("banned: the authenticator refuses this address")]
    Banned,
    /// Could not connect to a peer or to the authenticator.
    #[error("cannot connect to {addr}")]
    Connection {
        /// Whom we tried to reach.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Writing to a peer failed.
    #[error("cannot send to {addr}")]
    Send {
        /// Whom we wrote to.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Reading or decoding a message from a peer failed.
    #[error("cannot receive from {addr}")]
    Receive {
        /// Whom we read from.
        addr: SocketAddr,
        /// Why it failed.
        source: DecodeError,
    },
    /// A peer sent a valid message that does not belong at this point.
    #[error("protocol error from {addr}: expected {expected}, got {got}")]
    Unexpected {
        /// Who sent it.
        addr: SocketAddr,
        /// What the protocol expects here.
        expected: &'static str,
        /// What arrived.
        got: &'static str,
    },
    /// A step did not finish in time.
    #[error("timed out after {after:?} {what}")]
    Timeout {
        /// Which step, as "connecting to ...", "waiting for ...".
        what: &'static str,
        /// The bound that expired.
        after: Duration,
    },
    /// Local socket setup failed (bind, address lookup).
    #[error("cannot {what}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The node has already left.
    #[error("this node has left the network")]
    Closed,
    /// The configuration cannot work (the message says what to change).
    #[error("{0}")]
    Config(String),
}

/// An error and its causes on one line, `what failed: why: why`, as people should see it.
///
/// [`Error`]'s own text names what failed and its [`source`](std::error::Error::source) says
/// why (never both, so a report prints each cause once).
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl Error {
    /// Short stable name of the error kind (for counters and reports).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Authentication => "wrong_password",
            Error::Banned => "banned",
            Error::AliasTaken { .. } => "alias_taken",
            Error::BadAlias { .. } => "bad_alias",
            Error::Refused { .. } => "refused_join",
            Error::ImpostorAuthenticator { .. } => "impostor_authenticator",
            Error::MutualAuthUnavailable => "mutual_auth_unavailable",
            Error::Scram(_) => "scram_refused",
            Error::Connection { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
            Error::Connection { .. } => "connection",
            Error::Send { .. } => "send",
            Error::Receive { source: DecodeError::Eof { .. }, .. } => "closed",
            Error::Receive { .. } | Error::Unexpected { .. } => "protocol_error",
            Error::Timeout { .. } => "timed_out",
            Error::Io { .. } => "io",
            Error::Closed => "closed",
            Error::Config(_) => "config",
        }
    }
}
