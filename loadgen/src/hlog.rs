//! HdrHistogram interval logs (`--hdr-log`) and their exact merge (`loadgen merge`).
//!
//! A log is the standard text format of the HdrHistogram family (readable by the Java
//! `HistogramLogProcessor` and friends): a header with `StartTime`/`BaseTime`, then one line per
//! metric per interval, tagged with the metric's stable name and holding a compressed V2
//! histogram in microseconds. Counters are written the same way so that one file holds the
//! whole run: a counter's increment `n` during an interval is a histogram with the value 1
//! recorded `n` times (its *count* is the counter). Metrics with nothing in an interval are
//! left out.
//!
//! The run parameters are a comment line `#loadgen-params {json}` in the header. Merging adds
//! every interval's histogram bucket by bucket and every counter exactly — percentiles are
//! computed only from the summed histograms, never averaged — and uses the parameters to warn
//! when the inputs do not look like the distinct shards of one plan.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use crate::error::{Error, Result};
use crate::metrics::{AttackCounter, AttackMetric, Counter, Interval, Latency, Metric, Totals, new_histogram};

const PARAMS_PREFIX: &str = "#loadgen-params ";

/// Writes an interval log, one [`Interval`] at a time (flushed after each, so an interrupted
/// run leaves a readable log).
pub struct HlogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    scratch: Histogram<u64>,
}

impl HlogWriter {
    /// Creates the log at `path` and writes its header: `start` as StartTime and BaseTime
    /// (interval timestamps are seconds since it), and `params` as a `#loadgen-params` line.
    pub fn create(path: &Path, start: SystemTime, params: &serde_json::Value) -> Result<HlogWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
        }
        let file = File::create(path).map_err(|e| Error::file(path, e))?;
        let mut w = HlogWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            scratch: new_histogram(),
        };
        let params = format!("loadgen-params {params}");
        IntervalLogWriterBuilder::new()
            .add_comment("loadgen interval log: latencies in microseconds; a counter's count is its increment")
            .add_comment(&params)
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut w.out, &mut w.serializer)
            .map_err(|e| Error::file(path, e))?;
        w.out.flush().map_err(|e| Error::file(path, e))?;
        Ok(w)
    }

    /// Appends every non-empty metric of `interval`.
    pub fn write(&mut self, interval: &Interval) -> Result<()> {
        let start = interval.start;
        let length = interval.end.saturating_sub(interval.start);
        let path = self.path.clone();
        let fail = |e: String| Error::hlog(&path, format!("cannot write: {e}"));
        let mut log = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| fail(e.to_string()))?;
        for l in Latency::ALL {
            let h = interval.data.histogram(l);
            if !h.is_empty() {
                log.write_histogram(h, start, length, Tag::new(l.name())).map_err(|e| fail(e.to_string()))?;
            }
        }
        let counters = Counter::ALL.into_iter().map(|c| (Metric::Counter(c), interval.data.counter(c)));
        let attacks = interval.data.attacks().flat_map(|(k, a)| {
            AttackCounter::ALL.into_iter().map(move |c| (Metric::Attack(k, AttackMetric::Counter(c)), a.counter(c)))
        });
        for (metric, n) in counters.chain(attacks) {
            if n > 0 {
                self.scratch.reset();
                self.scratch.record_n(1, n).map_err(|e| fail(format!("{e:?}")))?;
                log.write_histogram(&self.scratch, start, length, Tag::new(metric.name()))
                    .map_err(|e| fail(e.to_string()))?;
            }
        }
        for (k, a) in interval.data.attacks() {
            if !a.closed_after.is_empty() {
                let tag = Tag::new(Metric::Attack(k, AttackMetric::ClosedAfter).name());
                log.write_histogram(&a.closed_after, start, length, tag).map_err(|e| fail(e.to_string()))?;
            }
        }
        self.out.flush().map_err(|e| Error::file(&self.path, e))
    }
}

/// What one interval log holds, summed over its intervals.
#[derive(Clone, Debug)]
pub struct HlogContents {
    /// The `#loadgen-params` JSON, if present.
    pub params: Option<serde_json::Value>,
    /// Sum of every interval.
    pub totals: Totals,
    /// Number of histogram lines read.
    pub histograms: usize,
}

/// Reads and sums the interval log at `path`.
pub fn read(path: &Path) -> Result<HlogContents> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let params = text
        .lines()
        .find_map(|l| l.strip_prefix(PARAMS_PREFIX))
        .map(|json| serde_json::from_str(json).map_err(|e| Error::hlog(path, format!("bad #loadgen-params line: {e}"))))
        .transpose()?;

    let mut totals = Totals::default();
    let mut deserializer = Deserializer::new();
    let mut histograms = 0;
    for entry in IntervalLogIterator::new(&bytes) {
        let interval = match entry {
            Ok(LogEntry::Interval(i)) => i,
            Ok(_) => continue,
            Err(e) => return Err(Error::hlog(path, format!("not an interval log: {e:?}"))),
        };
        let tag = interval.tag().map(|t| t.as_str()).unwrap_or("");
        let metric = Metric::from_name(tag)
            .ok_or_else(|| Error::hlog(path, format!("unknown metric tag {tag:?} (not written by this loadgen?)")))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| Error::hlog(path, format!("{tag}: bad base64: {e}")))?;
        let h: Histogram<u64> = deserializer
            .deserialize(&mut &raw[..])
            .map_err(|e| Error::hlog(path, format!("{tag}: bad histogram: {e:?}")))?;
        match metric {
            Metric::Latency(l) => totals.add_histogram(l, &h).map_err(|e| Error::hlog(path, e))?,
            Metric::Counter(c) => totals.add_count(c, h.len()),
            Metric::Attack(k, AttackMetric::Counter(c)) => totals.add_attack_count(k, c, h.len()),
            Metric::Attack(k, AttackMetric::ClosedAfter) => {
                totals.attack_mut(k).closed_after.add(&h).map_err(|e| Error::hlog(path, format!("{tag}: {e:?}")))?
            }
        }
        histograms += 1;
    }
    Ok(HlogContents { params, totals, histograms })
}

/// The result of merging several logs.
#[derive(Clone, Debug)]
pub struct Merged {
    /// The exact sum of every input.
    pub totals: Totals,
    /// Each input's path and parameters.
    pub sources: Vec<(PathBuf, Option<serde_json::Value>)>,
    /// Reasons to doubt the inputs are the distinct shards of one plan.
    pub warnings: Vec<String>,
}

/// Reads every log in `paths` and adds them exactly.
pub fn merge(paths: &[PathBuf]) -> Result<Merged> {
    if paths.is_empty() {
        return Err(Error::Config("merge needs at least one interval log".into()));
    }
    let mut totals = Totals::default();
    let mut sources = Vec::new();
    for path in paths {
        let log = read(path)?;
        totals.merge(&log.totals).map_err(|e| Error::hlog(path, e))?;
        sources.push((path.clone(), log.params));
    }
    let warnings = shard_warnings(&sources);
    Ok(Merged { totals, sources, warnings })
}

/// Checks that the inputs are distinct shards of one plan (same seed and shard count, every
/// index once).
fn shard_warnings(sources: &[(PathBuf, Option<serde_json::Value>)]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut by_shard: BTreeMap<(u64, u64, u64), Vec<&Path>> = BTreeMap::new();
    for (path, params) in sources {
        let get = |p: &serde_json::Value, k: &str| p.pointer(k).and_then(|v| v.as_u64());
        let key =
            params.as_ref().and_then(|p| Some((get(p, "/seed")?, get(p, "/shard/count")?, get(p, "/shard/index")?)));
        match key {
            Some(k) => by_shard.entry(k).or_default().push(path),
            None => {
                warnings.push(format!("{}: no loadgen parameters; cannot check it is a distinct shard", path.display()))
            }
        }
    }
    let plans: std::collections::BTreeSet<(u64, u64)> = by_shard.keys().map(|&(s, n, _)| (s, n)).collect();
    if plans.len() > 1 {
        let list: Vec<String> = plans.iter().map(|(s, n)| format!("seed {s} in {n} shards")).collect();
        warnings.push(format!("the inputs come from different plans ({})", list.join("; ")));
    }
    for (&(seed, count, index), files) in &by_shard {
        if files.len() > 1 {
            let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            warnings.push(format!(
                "shard {index}/{count} of seed {seed} appears {} times ({}); its counts are added that many times",
                files.len(),
                names.join(", ")
            ));
        }
    }
    for &(seed, count) in &plans {
        let missing: Vec<String> =
            (0..count).filter(|i| !by_shard.contains_key(&(seed, count, *i))).map(|i| i.to_string()).collect();
        if !missing.is_empty() {
            warnings.push(format!("seed {seed} in {count} shards: shard(s) {} missing", missing.join(", ")));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loadgen-hlog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn interval(k: u64, from_ms: u64, to_ms: u64, joined: u64) -> Interval {
        let mut data = Totals::default();
        for ms in from_ms..to_ms {
            data.record(Latency::JoinComplete, Duration::from_millis(ms));
        }
        data.record(Latency::ScheduleLag, Duration::from_micros(k * 10));
        data.add_count(Counter::Joined, joined);
        data.add_count(Counter::TimedOut, k % 2);
        data.add_count(Counter::Errors, k % 2);
        Interval { start: Duration::from_secs(k), end: Duration::from_secs(k + 1), data, active: 0 }
    }

    fn write_log(path: &Path, params: serde_json::Value, intervals: &[Interval]) {
        let mut w = HlogWriter::create(path, SystemTime::now(), &params).unwrap();
        for i in intervals {
            w.write(i).unwrap();
        }
    }

    fn same(a: &Totals, b: &Totals) {
        for l in Latency::ALL {
            assert_eq!(a.histogram(l), b.histogram(l), "{}", l.name());
        }
        for c in Counter::ALL {
            assert_eq!(a.counter(c), b.counter(c), "{}", c.name());
        }
    }

    #[test]
    fn a_log_reads_back_exactly() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("a.hlog");
        let intervals = [interval(0, 1, 50, 49), interval(1, 40, 400, 360), interval(2, 0, 0, 0)];
        write_log(&path, json!({"seed": 1, "shard": {"index": 0, "count": 1}}), &intervals);
        let back = read(&path).unwrap();
        let mut expect = Totals::default();
        for i in &intervals {
            expect.merge(&i.data).unwrap();
        }
        same(&back.totals, &expect);
        assert_eq!(back.params.unwrap()["seed"], 1);
        // Two intervals with join_complete, three with schedule_lag, 2 joined, 1 timed_out, 1 errors.
        assert_eq!(back.histograms, 2 + 3 + 2 + 1 + 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("#[BaseTime: "));
        assert!(text.lines().any(|l| l.starts_with("Tag=join_complete,1.000,1.000,")));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn attack_metrics_survive_the_log_and_merge() {
        use crate::attack::AttackKind;
        let dir = temp_dir("attacks");
        let mut i = interval(0, 1, 5, 4);
        i.data.add_attack_count(AttackKind::Silent, AttackCounter::Attempted, 40);
        i.data.add_attack_count(AttackKind::Silent, AttackCounter::OpenAtEnd, 7);
        i.data.attack_mut(AttackKind::Silent).closed_after.record(3_000_000).unwrap();
        i.data.add_attack_count(AttackKind::DistChatter, AttackCounter::ValuesWritten, 1000);
        let path = dir.join("a.hlog");
        write_log(&path, json!({"seed": 1, "shard": {"index": 0, "count": 1}}), &[i.clone()]);
        let back = read(&path).unwrap().totals;
        for k in [AttackKind::Silent, AttackKind::DistChatter] {
            for c in AttackCounter::ALL {
                assert_eq!(back.attack_counter(k, c), i.data.attack_counter(k, c), "{k} {}", c.name());
            }
            assert_eq!(back.attack(k).unwrap().closed_after, i.data.attack(k).unwrap().closed_after);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("Tag=attack.silent.open_at_end,"), "{text}");
        assert!(text.contains("Tag=attack.silent.closed_after,"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn merging_adds_histograms_not_percentiles() {
        let dir = temp_dir("merge");
        // Shard 0 is fast (1..100 ms, 99 samples), shard 1 slow (1000..1010 ms, 10 samples).
        let fast = [interval(0, 1, 100, 99)];
        let slow = [interval(0, 1000, 1010, 10)];
        let a = dir.join("a.hlog");
        let b = dir.join("b.hlog");
        write_log(&a, json!({"seed": 3, "shard": {"index": 0, "count": 2}}), &fast);
        write_log(&b, json!({"seed": 3, "shard": {"index": 1, "count": 2}}), &slow);
        let merged = merge(&[a.clone(), b.clone()]).unwrap();
        assert!(merged.warnings.is_empty(), "{:?}", merged.warnings);
        let h = merged.totals.histogram(Latency::JoinComplete);
        assert_eq!(h.len(), 109);
        assert_eq!(merged.totals.counter(Counter::Joined), 109);
        // The true p90 of the union is in the fast group; the true p95 in the slow one.
        // Averaging the shards' p90s (~90 ms and ~1009 ms) would give ~550 ms: wrong.
        assert!(h.value_at_quantile(0.90) < 100_000);
        assert!(h.value_at_quantile(0.95) >= 1_000_000);
        let mut expect = fast[0].data.clone();
        expect.merge(&slow[0].data).unwrap();
        same(&merged.totals, &expect);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn merge_warns_about_duplicate_missing_and_foreign_shards() {
        let dir = temp_dir("warn");
        let p = |name: &str, v: serde_json::Value| {
            let path = dir.join(name);
            write_log(&path, v, &[interval(0, 1, 2, 1)]);
            path
        };
        let a = p("a.hlog", json!({"seed": 3, "shard": {"index": 0, "count": 3}}));
        let b = p("b.hlog", json!({"seed": 3, "shard": {"index": 0, "count": 3}}));
        let c = p("c.hlog", json!({"seed": 4, "shard": {"index": 0, "count": 1}}));
        let d = p("d.hlog", json!({}));
        let w = merge(&[a, b, c, d]).unwrap().warnings.join("\n");
        assert!(w.contains("shard 0/3 of seed 3 appears 2 times"), "{w}");
        assert!(w.contains("shard(s) 1, 2 missing"), "{w}");
        assert!(w.contains("different plans"), "{w}");
        assert!(w.contains("d.hlog: no loadgen parameters"), "{w}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn foreign_or_broken_logs_are_refused() {
        let dir = temp_dir("bad");
        let junk = dir.join("junk.hlog");
        std::fs::write(&junk, "this is not a log\n").unwrap();
        assert!(read(&junk).unwrap_err().to_string().contains("not an interval log"));
        let unknown = dir.join("unknown.hlog");
        let mut h = new_histogram();
        h.record(5).unwrap();
        let mut out = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .begin_log_with(&mut out, &mut ser)
            .unwrap()
            .write_histogram(&h, Duration::ZERO, Duration::from_secs(1), Tag::new("mystery"))
            .unwrap();
        std::fs::write(&unknown, out).unwrap();
        assert!(read(&unknown).unwrap_err().to_string().contains("unknown metric tag \"mystery\""));
        assert!(read(&dir.join("absent.hlog")).is_err());
        assert!(merge(&[]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
