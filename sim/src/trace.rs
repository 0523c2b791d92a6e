//! Per-run event traces: JSON lines, a running trace hash, and determinism comparison.
//!
//! Everything a run observes (timeline actions the driver applied, protocol events from the
//! authenticator and joiners) is recorded here as one [`TraceEvent`] per line, in the order
//! the simulation produced it. The trace hash is FNV-1a 64 over the exact bytes of the lines,
//! each followed by `\n` — i.e. the FNV-1a 64 of the `--trace` file itself — so two runs of
//! the same seed must produce the same hash, and anyone can recompute it from the file.
//! `--check-determinism` runs a seed twice: the first run keeps its lines, the second is
//! compared line by line as it is produced, and the first differing event is reported.
//!
//! Serialization is stable: struct fields in declaration order, `data` objects with sorted
//! keys (serde_json's map), times in integer microseconds of simulated time.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::hash::Fnv64;
use crate::report::view::{RunView, ViewBuilder};

/// A trace could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// File I/O failed.
    #[error("trace {path}: {source}")]
    Io {
        /// The trace file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// An event could not be serialized (a bug: events are plain data).
    #[error("trace event not serializable: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One observed event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceEvent {
    /// Simulated time since the start of the run, in microseconds.
    pub t_us: u64,
    /// Who observed or caused it: `"sim"` for the timeline driver, `"auth"`, `"j17"`, ...
    pub src: String,
    /// What happened, snake_case (`"partition"`, `"member_joined"`, ...).
    pub kind: String,
    /// Details; omitted when null.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl TraceEvent {
    /// An event at simulated time `at`.
    pub fn new(at: Duration, src: impl Into<String>, kind: impl Into<String>, data: serde_json::Value) -> Self {
        TraceEvent { t_us: at.as_micros() as u64, src: src.into(), kind: kind.into(), data }
    }
}

/// Where two runs' traces first differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// 0-based index of the first differing event.
    pub index: u64,
    /// The reference run's event there (None: the reference run had ended).
    pub expected: Option<String>,
    /// The compared run's event there (None: the compared run had ended).
    pub actual: Option<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "<end of trace>".into());
        write!(f, "event #{}: first run {} | second run {}", self.index, show(&self.expected), show(&self.actual))
    }
}

/// What a finished trace amounts to.
#[derive(Clone, Debug)]
pub struct TraceSummary {
    /// FNV-1a 64 of all lines (each with its `\n`).
    pub hash: u64,
    /// Number of events.
    pub events: u64,
    /// The lines, if they were kept (for a later determinism comparison).
    pub lines: Option<Vec<String>>,
    /// The first difference from the reference run, if one was given and they differ.
    pub divergence: Option<Divergence>,
    /// What the HTML report draws of this run, if it was collected ([`Trace::collect_view`]).
    pub view: Option<Box<RunView>>,
}

impl TraceSummary {
    /// The hash as 16 hex digits (the report's `trace_hash` column).
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash)
    }
}

/// Records a run's events: hashes them, optionally writes them, keeps them, or compares
/// them against a reference run.
#[derive(Default)]
pub struct Trace {
    hasher: Fnv64,
    events: u64,
    file: Option<(PathBuf, BufWriter<File>)>,
    keep: Option<Vec<String>>,
    reference: Option<Vec<String>>,
    divergence: Option<Divergence>,
    view: Option<ViewBuilder>,
}

impl Trace {
    /// A trace that only hashes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also writes every line to `path` (created or truncated).
    pub fn write_to(mut self, path: &Path) -> Result<Self, TraceError> {
        let io = |source| TraceError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let f = File::create(path).map_err(io)?;
        self.file = Some((path.to_path_buf(), BufWriter::new(f)));
        Ok(self)
    }

    /// Also keeps every line in memory (returned by [`Trace::finish`]).
    pub fn keep_lines(mut self) -> Self {
        self.keep = Some(Vec::new());
        self
    }

    /// Compares every line with `reference` (a previous run's lines) as it is recorded.
    pub fn compare_with(mut self, reference: Vec<String>) -> Self {
        self.reference = Some(reference);
        self
    }

    /// Also feeds every event to `view` (the HTML report's picture of the run; the lines and
    /// the hash are the same with or without it).
    pub fn collect_view(mut self, view: ViewBuilder) -> Self {
        self.view = Some(view);
        self
    }

    /// Events recorded so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The hash of the events so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// Records one event.
    pub fn record(&mut self, ev: &TraceEvent) -> Result<(), TraceError> {
        if let Some(v) = &mut self.view {
            v.observe(ev);
        }
        let line = serde_json::to_string(ev)?;
        self.record_line(line)
    }

    /// Records one already-serialized line (no trailing newline).
    pub fn record_line(&mut self, line: String) -> Result<(), TraceError> {
        debug_assert!(!line.contains('\n'), "a trace line must be a single line");
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        if let Some((path, w)) = &mut self.file {
            w.write_all(line.as_bytes())
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|source| TraceError::Io { path: path.display().to_string(), source })?;
        }
        if self.divergence.is_none()
            && let Some(reference) = &self.reference
        {
            let expected = reference.get(self.events as usize);
            if expected != Some(&line) {
                self.divergence =
                    Some(Divergence { index: self.events, expected: expected.cloned(), actual: Some(line.clone()) });
            }
        }
        if let Some(keep) = &mut self.keep {
            keep.push(line);
        }
        self.events += 1;
        Ok(())
    }

    /// Flushes the file and returns the summary.
    pub fn finish(mut self) -> Result<TraceSummary, TraceError> {
        if let Some((path, mut w)) = self.file.take() {
            w.flush().map_err(|source| TraceError::Io { path: path.display().to_string(), source })?;
        }
        if self.divergence.is_none()
            && let Some(reference) = &self.reference
            && reference.len() as u64 > self.events
        {
            self.divergence = Some(Divergence {
                index: self.events,
                expected: reference.get(self.events as usize).cloned(),
                actual: None,
            });
        }
        Ok(TraceSummary {
            hash: self.hasher.finish(),
            events: self.events,
            lines: self.keep,
            divergence: self.divergence,
            view: self.view.map(|v| Box::new(v.finish())),
        })
    }
}

/// The outcome of a determinism check for one seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Determinism {
    /// The seed ran once.
    #[default]
    Unchecked,
    /// Two runs produced identical traces.
    Same,
    /// Two runs differed.
    Differs(Divergence),
}

impl Determinism {
    /// Compares a second run (recorded with [`Trace::compare_with`] the first's lines) with
    /// the first.
    pub fn from_runs(first: &TraceSummary, second: &TraceSummary) -> Determinism {
        match &second.divergence {
            Some(d) => Determinism::Differs(d.clone()),
            None if first.hash != second.hash || first.events != second.events => {
                // Only reachable if the second run was not compared line by line.
                Determinism::Differs(Divergence {
                    index: first.events.min(second.events),
                    expected: None,
                    actual: None,
                })
            }
            None => Determinism::Same,
        }
    }

    /// The report's `determinism` cell: `unchecked`, `ok` or `mismatch`.
    pub fn cell(&self) -> &'static str {
        match self {
            Determinism::Unchecked => "unchecked",
            Determinism::Same => "ok",
            Determinism::Differs(_) => "mismatch",
        }
    }

    /// Whether this is a mismatch.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, Determinism::Differs(_))
    }
}

/// FNV-1a 64 of a trace file's bytes (equals the run's trace hash).
pub fn hash_file(path: &Path) -> Result<u64, TraceError> {
    let bytes = std::fs::read(path).map_err(|source| TraceError::Io { path: path.display().to_string(), source })?;
    Ok(crate::hash::fnv1a64(&bytes))
}

/// The trace file for one run. `{scenario}` and `{seed}` in `template` are substituted; a
/// template without them, when several runs share it, gets `.<scenario>.<seed>` inserted
/// before its extension so runs never overwrite each other.
pub fn trace_path(template: &Path, scenario: &str, seed: u64, several_runs: bool) -> PathBuf {
    let s = template.to_string_lossy();
    if s.contains("{scenario}") || s.contains("{seed}") {
        return PathBuf::from(s.replace("{scenario}", scenario).replace("{seed}", &seed.to_string()));
    }
    if !several_runs {
        return template.to_path_buf();
    }
    let stem = template.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match template.extension() {
        Some(ext) => format!("{stem}.{scenario}.{seed}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{scenario}.{seed}"),
    };
    template.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(t: u64, kind: &str) -> TraceEvent {
        TraceEvent::new(Duration::from_millis(t), "sim", kind, json!({"b": 2, "a": 1}))
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sim-trace-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn lines_are_stable_json() {
        let line = serde_json::to_string(&ev(1500, "partition")).unwrap();
        assert_eq!(line, r#"{"t_us":1500000,"src":"sim","kind":"partition","data":{"a":1,"b":2}}"#);
        let bare = TraceEvent::new(Duration::ZERO, "auth", "left", serde_json::Value::Null);
        assert_eq!(serde_json::to_string(&bare).unwrap(), r#"{"t_us":0,"src":"auth","kind":"left"}"#);
    }

    #[test]
    fn hash_equals_fnv_of_the_written_file() {
        let path = temp("file.jsonl");
        let mut t = Trace::new().write_to(&path).unwrap();
        for i in 0..100 {
            t.record(&ev(i, "tick")).unwrap();
        }
        let s = t.finish().unwrap();
        assert_eq!(s.events, 100);
        assert_eq!(hash_file(&path).unwrap(), s.hash);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 100);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn identical_runs_are_deterministic() {
        let mut a = Trace::new().keep_lines();
        for i in 0..10 {
            a.record(&ev(i, "x")).unwrap();
        }
        let a = a.finish().unwrap();
        let mut b = Trace::new().compare_with(a.lines.clone().unwrap());
        for i in 0..10 {
            b.record(&ev(i, "x")).unwrap();
        }
        let b = b.finish().unwrap();
        assert_eq!(a.hash, b.hash);
        assert_eq!(Determinism::from_runs(&a, &b), Determinism::Same);
    }

    #[test]
    fn the_first_differing_event_is_reported() {
        let mut a = Trace::new().keep_lines();
        for i in 0..10 {
            a.record(&ev(i, "x")).unwrap();
        }
        let a = a.finish().unwrap();
        let mut b = Trace::new().compare_with(a.lines.clone().unwrap());
        for i in 0..10 {
            b.record(&ev(i, if i == 6 || i == 8 { "y" } else { "x" })).unwrap();
        }
        let b = b.finish().unwrap();
        assert_ne!(a.hash, b.hash);
        match Determinism::from_runs(&a, &b) {
            Determinism::Differs(d) => {
                assert_eq!(d.index, 6, "the first, not a later, difference");
                assert!(d.expected.unwrap().contains(r#""kind":"x""#));
                assert!(d.actual.unwrap().contains(r#""kind":"y""#));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_shorter_or_longer_second_run_is_a_divergence() {
        let mut a = Trace::new().keep_lines();
        for i in 0..5 {
            a.record(&ev(i, "x")).unwrap();
        }
        let a = a.finish().unwrap();
        let mut short = Trace::new().compare_with(a.lines.clone().unwrap());
        for i in 0..3 {
            short.record(&ev(i, "x")).unwrap();
        }
        let d = short.finish().unwrap().divergence.unwrap();
        assert_eq!((d.index, d.actual.is_none()), (3, true));
        let mut long = Trace::new().compare_with(a.lines.clone().unwrap());
        for i in 0..6 {
            long.record(&ev(i, "x")).unwrap();
        }
        let d = long.finish().unwrap().divergence.unwrap();
        assert_eq!((d.index, d.expected.is_none()), (5, true));
    }

    #[test]
    fn trace_paths() {
        let p = Path::new("out/trace.jsonl");
        assert_eq!(trace_path(p, "churn", 7, false), PathBuf::from("out/trace.jsonl"));
        assert_eq!(trace_path(p, "churn", 7, true), PathBuf::from("out/trace.churn.7.jsonl"));
        assert_eq!(
            trace_path(Path::new("t/{scenario}-{seed}.jsonl"), "churn", 7, true),
            PathBuf::from("t/churn-7.jsonl")
        );
    }
}
