//! The live display on stderr: a one-line indicatif status on a terminal, plain periodic lines
//! when stderr is a file or a pipe (CI logs), nothing with `--quiet` (as `sim --quiet`: the
//! summary, warnings and errors are still printed).
//!
//! It only ever shows a [`Status`] it is handed; it reads no metrics itself, so the reporting
//! loop decides what "current" means (the last interval).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::human::format_duration;

/// How often plain lines are printed at most.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// What the display shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Status {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Planned run length.
    pub planned: Duration,
    /// Joins completed so far.
    pub joined: u64,
    /// Joiners joined right now.
    pub active: i64,
    /// Errors so far.
    pub failed: u64,
    /// p99 of `join_complete` over the last interval, if anyone joined in it.
    pub p99_join: Option<Duration>,
    /// p99 of `join_complete` over the whole run so far, if anyone joined.
    pub p99_join_run: Option<Duration>,
}

impl Status {
    /// The status as one line of text.
    pub fn line(&self) -> String {
        let show = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), format_duration);
        // The run's p99 first (it is what the gates judge), then the last interval's, which is
        // `-` while nobody joins (a hold).
        let p99 = format!("{} (last interval {})", show(self.p99_join_run), show(self.p99_join));
        format!(
            "{:>6} / {}  joined {}  active {}  failed {}  p99 join {}",
            format_duration(Duration::from_secs(self.elapsed.as_secs())),
            format_duration(Duration::from_secs(self.planned.as_secs())),
            self.joined,
            self.active,
            self.failed,
            p99
        )
    }
}

/// The display, in one of its three modes.
pub enum Progress {
    /// A live status line on a terminal.
    Bar(ProgressBar),
    /// Plain lines on stderr, at most one per [`PLAIN_EVERY`].
    Lines {
        /// When the last line was printed.
        last: Option<Instant>,
    },
    /// Nothing at all.
    Quiet,
}

impl Progress {
    /// Picks the mode: nothing if `quiet`, a live line if stderr is a terminal, else plain lines.
    pub fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("constant template"));
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar(bar)
        } else {
            Progress::Lines { last: None }
        }
    }

    /// Shows `status` (plain lines are rate-limited).
    pub fn update(&mut self, status: &Status) {
        match self {
            Progress::Bar(bar) => bar.set_message(status.line()),
            Progress::Lines { last } => {
                if last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
                    eprintln!("loadgen: {}", status.line());
                    *last = Some(Instant::now());
                }
            }
            Progress::Quiet => {}
        }
    }

    /// Prints a message without garbling the live line (nothing when quiet).
    pub fn note(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.suspend(|| eprintln!("loadgen: {message}")),
            Progress::Lines { .. } => eprintln!("loadgen: {message}"),
            Progress::Quiet => {}
        }
    }

    /// Prints a warning without garbling the live line, even when quiet.
    pub fn warn(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.suspend(|| eprintln!("loadgen: warning: {message}")),
            Progress::Lines { .. } | Progress::Quiet => eprintln!("loadgen: warning: {message}"),
        }
    }

    /// Removes the live line (the final summary is printed separately).
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_shows_the_essentials() {
        let s = Status {
            elapsed: Duration::from_millis(12_400),
            planned: Duration::from_secs(70),
            joined: 480,
            active: 475,
            failed: 5,
            p99_join: Some(Duration::from_micros(23_400)),
            p99_join_run: Some(Duration::from_micros(31_000)),
        };
        assert_eq!(s.line(), "   12s / 1m10s  joined 480  active 475  failed 5  p99 join 31ms (last interval 23.4ms)");
        // During a hold nobody joins: the run's p99 still shows.
        let hold = Status { p99_join: None, ..s.clone() };
        assert!(hold.line().ends_with("p99 join 31ms (last interval -)"), "{}", hold.line());
        let none = Status::default();
        assert!(none.line().ends_with("p99 join - (last interval -)"));
    }

    #[test]
    fn quiet_shows_nothing_and_tests_are_not_a_terminal() {
        assert!(matches!(Progress::new(true), Progress::Quiet));
        // Under `cargo test` stderr is captured, so the plain mode is chosen.
        if !std::io::stderr().is_terminal() {
            assert!(matches!(Progress::new(false), Progress::Lines { last: None }));
        }
    }
}
