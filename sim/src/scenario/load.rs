//! Loading a scenario file: its text and parse ([`LoadedScenario`]), errors located by line
//! and column ([`ScenarioError`], [`LineIndex`]), and a scenario resolved for one seed
//! ([`Resolved`]).

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::random;
use super::schema::Scenario;
use crate::hash::Fnv64;

/// A scenario file could not be used. Every variant prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read scenario: {source}")]
    Read {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A problem at a known place in the file (syntax, unknown key, invalid value).
    #[error("{path}:{line}:{col}: {msg}")]
    At {
        /// File path.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// A problem with the scenario as a whole.
    #[error("{path}: {msg}")]
    Whole {
        /// File path.
        path: String,
        /// What is wrong.
        msg: String,
    },
}

/// A scenario file as loaded: its text (for line numbers and the file hash) and its parse.
#[derive(Clone, Debug)]
pub struct LoadedScenario {
    /// The path as given.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// FNV-1a 64 of the file's bytes, hex: identifies the exact file a run used.
    pub hash: String,
    /// The parse, before `[random]` resolution.
    pub scenario: Scenario,
}

/// Converts byte offsets of a source text into 1-based line and column.
pub struct LineIndex<'a> {
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    /// Indexes `text`.
    pub fn new(text: &'a str) -> Self {
        LineIndex { text }
    }

    /// 1-based (line, column) of byte offset `pos` (clamped to the text).
    pub fn locate(&self, pos: usize) -> (usize, usize) {
        let pos = pos.min(self.text.len());
        let before = &self.text[..pos];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

impl LoadedScenario {
    /// Reads and parses a scenario file; syntax errors and unknown keys name their line.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Read { path: path.display().to_string(), source })?;
        Self::from_text(path, text)
    }

    /// Parses scenario text (`path` is only used in messages and reports).
    pub fn from_text(path: impl AsRef<Path>, text: String) -> Result<Self, ScenarioError> {
        let path = path.as_ref().to_path_buf();
        let scenario = parse_toml::<Scenario>(&path, &text)?;
        let mut h = Fnv64::new();
        h.update(text.as_bytes());
        let loaded = LoadedScenario { hash: h.hex(), path, text, scenario };
        // Structural checks that do not depend on random draws, so they fail without a seed.
        loaded.check_random_paths()?;
        Ok(loaded)
    }

    /// The path for messages.
    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }

    /// An error located at a span of this file.
    pub fn error_at(&self, span: Range<usize>, msg: impl Into<String>) -> ScenarioError {
        let (line, col) = LineIndex::new(&self.text).locate(span.start);
        ScenarioError::At { path: self.display_path(), line, col, msg: msg.into() }
    }

    /// An error about the whole file.
    pub fn error(&self, msg: impl Into<String>) -> ScenarioError {
        ScenarioError::Whole { path: self.display_path(), msg: msg.into() }
    }

    /// Resolves `[random]` for `seed` and validates the result.
    pub fn resolve(&self, seed: u64) -> Result<Resolved, ScenarioError> {
        let resolved = random::resolve(self, seed)?;
        resolved.scenario.validate(self)?;
        Ok(resolved)
    }
}

/// Deserializes TOML text, turning the toml crate's error into a one-line located error.
pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ScenarioError> {
    toml::from_str::<T>(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                let (line, col) = LineIndex::new(text).locate(span.start);
                ScenarioError::At { path: path.display().to_string(), line, col, msg }
            }
            None => ScenarioError::Whole { path: path.display().to_string(), msg },
        }
    })
}

/// A scenario with its `[random]` values drawn for one seed.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The seed the values were drawn for.
    pub seed: u64,
    /// The scenario with every random value substituted (its spans are meaningless; use the
    /// [`LoadedScenario`]'s for messages).
    pub scenario: Scenario,
    /// `(path, value)` of every drawn value, sorted by path: written to the report.
    pub drawn: Vec<(String, String)>,
}

impl Resolved {
    /// The drawn values as one report cell: `path=value;path=value`.
    pub fn drawn_cell(&self) -> String {
        self.drawn.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
    }
}
