//! The crate's error type.
//!
//! Every failure that ends a `loadgen` process is one of these variants, so the binary can print
//! exactly one line for it (`loadgen: error: …`) and exit non-zero. Messages name the offending
//! input (flag value, file, rule) and say what would be accepted instead.

use std::io;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `loadgen`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag value or a combination of flags that cannot work.
    #[error("{0}")]
    Config(String),

    /// No password: unreadable or empty password file, or none given.
    #[error(transparent)]
    Password(#[from] pyile::units::PasswordError),

    /// A `--source-ips` value that does not parse or is not allowed for the target.
    #[error("--source-ips {input:?}: {reason}")]
    SourceIps {
        /// The text as given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A `--fail-on` rule that does not parse.
    #[error("--fail-on {rule:?}: {reason}")]
    Rule {
        /// The rule as given.
        rule: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The run would not fit in this process's file descriptors or the source addresses' ports.
    #[error("the run cannot fit: {0}")]
    Limits(String),

    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    File {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Writing a CSV file.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: csv::Error,
    },

    /// An HdrHistogram interval log that cannot be read or written.
    #[error("{}: {reason}", path.display())]
    Hlog {
        /// The log concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The driver could not run the plan (runtime, target, protocol library).
    #[error("{0}")]
    Run(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn file(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::File { path: path.into(), source }
    }

    /// A CSV error on `path`.
    pub fn csv(path: impl Into<PathBuf>, source: csv::Error) -> Self {
        Error::Csv { path: path.into(), source }
    }

    /// A problem with the interval log at `path`.
    pub fn hlog(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Hlog { path: path.into(), reason: reason.into() }
    }
}
