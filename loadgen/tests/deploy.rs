//! The shipped Kubernetes manifest (`deploy/k8s/loadgen-job.yaml`) stays in step with the
//! binary: the commands its pods run parse with loadgen's own command line, its shard count
//! is the same everywhere it appears, and the shards it starts together form the whole plan.
//! (No cluster here: this checks what can go stale without one.)

use clap::Parser;
use loadgen::cli::{Cli, Command};

const MANIFEST: &str = include_str!("../../deploy/k8s/loadgen-job.yaml");

/// The text after `exec loadgen` up to the end of its YAML block (a folded `>-` scalar or a
/// `|` block with `\` continuations), as shell words with the placeholders filled in.
fn loadgen_command(after: &str, index: usize, shards: usize) -> Vec<String> {
    let start = MANIFEST.find(after).unwrap_or_else(|| panic!("manifest has no `{after}`"));
    let mut text = String::new();
    for (i, line) in MANIFEST[start + after.len()..].lines().enumerate() {
        let t = line.trim();
        if i == 0 && t.is_empty() {
            continue; // `exec loadgen` ended its line
        }
        if t.is_empty()
            || t.starts_with('#')
            || t.ends_with(':')
            || t.starts_with("- {")
            || t.starts_with("volumeMounts")
        {
            break;
        }
        text.push(' ');
        text.push_str(t.trim_end_matches('\\'));
        if !line.trim_end().ends_with('\\') && after.contains("merge") {
            break;
        }
    }
    let text = text
        .replace("${JOB_COMPLETION_INDEX}", &index.to_string())
        .replace("${SHARDS}", &shards.to_string())
        .replace("@TARGET@", "127.0.0.1:4702")
        .replace("@START_AT@", "2000000000");
    // Shell words: the manifest quotes with "…" or '…' and nothing fancier.
    let mut words: Vec<String> = after.split_whitespace().skip(1).map(str::to_owned).collect();
    let mut cur = String::new();
    let mut quote = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Every `N` written beside a `# SHARDS` comment.
fn shard_counts() -> Vec<usize> {
    MANIFEST
        .lines()
        .filter(|l| l.contains("# SHARDS") && l.split('#').next().is_some_and(|code| code.contains(':')))
        .map(|l| {
            let v = l.split('#').next().unwrap().split(':').nth(1).unwrap();
            v.trim().trim_matches('"').parse().unwrap_or_else(|_| panic!("not a count: {l}"))
        })
        .collect()
}

#[test]
fn the_shard_count_is_the_same_everywhere() {
    let counts = shard_counts();
    assert!(counts.len() >= 4, "completions, parallelism and both SHARDS env values are marked: {counts:?}");
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "SHARDS differ: {counts:?}");
    assert!(MANIFEST.contains("completionMode: Indexed"));
    assert!(MANIFEST.contains("backoffLimitPerIndex: 0"), "a shard must never be retried");
}

#[test]
fn every_pod_runs_a_valid_loadgen_command_for_its_own_shard_of_one_plan() {
    let shards = shard_counts()[0];
    let mut seen = Vec::new();
    for index in 0..shards {
        let argv = loadgen_command("exec loadgen", index, shards);
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert!(cli.command.is_none(), "a shard pod runs the generator");
        let run = &cli.run;
        assert_eq!(run.shard.to_string(), format!("{index}/{shards}"));
        assert!(run.start_at.is_some(), "shards on several nodes need one --start-at");
        assert!(run.hdr_log.is_some(), "the merge step reads every shard's --hdr-log");
        seen.push(run.seed);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "every shard must share one --seed: {seen:?}");

    let argv = loadgen_command("exec loadgen merge", 0, shards);
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match cli.command {
        Some(Command::Merge(m)) => assert!(!m.fail_on.is_empty(), "the merge applies the rules"),
        other => panic!("the merge step runs `loadgen merge`, got {other:?}"),
    }
}
