//! `pyile-plots`: the machinery of the toolkit's self-contained HTML reports, shared by `sim`
//! and `loadgen` (the protocol library `pyile` does not depend on it).
//!
//! - [`page`]: an HTML page builder: title, parameter table, sections, tables, notes and
//!   figures, written as one file with inline CSS and inline SVG: no JavaScript, no external
//!   fetches, every text escaped.
//! - [`chart`]: charts drawn with `plotters`' SVG backend: a line chart over a linear x axis
//!   (time series with shaded, labelled windows, horizontal bounds, event markers — point
//!   series of dots or triangles — and min–max bands; also used for per-seed distributions) and HdrHistogram's percentile-distribution
//!   plot (x log-scaled as 1/(1−q), labelled `50%`, `90%`, `99%`, ...).
//! - [`units`]: picking a readable unit for a range of seconds or bytes.
//!
//! Every chart carries its axis labels with their units, and its legend is HTML under the
//! plot (so it never hides data). Each figure says how many series and shaded windows it
//! draws in `data-series` / `data-windows` attributes, for tests and for people reading the
//! source.

pub mod chart;
pub mod page;
pub mod units;

pub use chart::{Band, Figure, LineChart, PercentileChart, RefLine, Series, SeriesKind, Window};
pub use page::{Cell, Page};

/// A chart or page could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed to draw (a bug, or values it cannot place).
    #[error("drawing {chart:?}: {msg}")]
    Draw {
        /// The chart's title.
        chart: String,
        /// plotters' message.
        msg: String,
    },
    /// The page could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}
