//! Charts as inline SVG, drawn by `plotters`' SVG backend.
//!
//! - [`LineChart`]: series over a linear x axis (usually time), with shaded and labelled
//!   [`Window`]s behind them (fault windows), horizontal [`RefLine`]s (bounds), min–max
//!   [`Band`]s and point markers. Per-seed distributions are line charts with point series
//!   over the seed axis.
//! - [`PercentileChart`]: HdrHistogram's percentile distribution: x is 1/(1−q) on a log
//!   scale, labelled `0%`, `50%`, `90%`, `99%`, `99.9%`, ...; y is the value (a latency).
//!
//! Both render to a [`Figure`]: the SVG, an HTML legend (so a legend box never hides data)
//! and the counts of series and windows drawn. Text is drawn by the browser in a sans-serif
//! font at 13–20 px on a 1280 px wide canvas that the page scales to its width.

use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::PlotError;
use crate::units::tick;

/// Canvas width in SVG pixels (the page scales it to its column, ~1270 px at 1366 px).
pub const WIDTH: u32 = 1280;
/// Default canvas height.
pub const HEIGHT: u32 = 400;

/// Distinct colours, colour-blind-friendly (Tableau 10), as `#rrggbb`.
pub const PALETTE: [&str; 10] =
    ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#79706e"];

/// The `i`th palette colour (wrapping).
pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn rgb(hex: &str) -> RGBColor {
    let h = hex.trim_start_matches('#');
    let byte = |i: usize| h.get(i..i + 2).and_then(|s| u8::from_str_radix(s, 16).ok()).unwrap_or(0x80);
    RGBColor(byte(0), byte(2), byte(4))
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesKind {
    /// Straight segments between the points.
    Line,
    /// A step function: each value holds until the next point (counts over time).
    Step,
    /// Dots only (events, per-seed values).
    Points,
    /// Triangles only (a second kind of event).
    Triangles,
}

/// One named series of (x, y) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// The points, in x order for lines and steps; a non-finite y breaks a line (a gap).
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub kind: SeriesKind,
    /// `#rrggbb`; empty: the next palette colour.
    pub color: String,
    /// Line width in pixels (lines and steps).
    pub width: u32,
}

impl Series {
    /// A series drawn as `kind`.
    pub fn new(name: impl Into<String>, kind: SeriesKind, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, kind, color: String::new(), width: 2 }
    }

    /// Sets the line width.
    pub fn width(mut self, w: u32) -> Series {
        self.width = w;
        self
    }

    /// Sets the colour.
    pub fn color(mut self, c: &str) -> Series {
        self.color = c.to_string();
        self
    }
}

/// A shaded range between a low and a high value at each x (e.g. min–max over joiners).
#[derive(Clone, Debug, PartialEq)]
pub struct Band {
    /// Legend label.
    pub name: String,
    /// (x, low, high), in x order.
    pub points: Vec<(f64, f64, f64)>,
    /// `#rrggbb`.
    pub color: String,
}

/// A shaded, labelled x range drawn behind the series (a fault window).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Start (x units).
    pub start: f64,
    /// End (x units).
    pub end: f64,
    /// Label printed at its top left (and in the legend).
    pub label: String,
    /// `#rrggbb`.
    pub color: String,
}

/// A horizontal dashed line at a value (a bound, a threshold).
#[derive(Clone, Debug, PartialEq)]
pub struct RefLine {
    /// The value (y units).
    pub y: f64,
    /// Legend label.
    pub label: String,
    /// `#rrggbb`.
    pub color: String,
}

/// How a legend entry's swatch looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swatch {
    /// A line.
    Line,
    /// A dot.
    Dot,
    /// A shaded window.
    Window,
    /// A band.
    Band,
    /// A dashed reference line.
    Ref,
}

impl Swatch {
    /// The CSS class of the swatch in the page.
    pub fn class(self) -> &'static str {
        match self {
            Swatch::Line => "line",
            Swatch::Dot => "dot",
            Swatch::Window => "win",
            Swatch::Band => "band",
            Swatch::Ref => "ref",
        }
    }
}

/// One entry of a figure's HTML legend.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendItem {
    /// Text.
    pub label: String,
    /// `#rrggbb`.
    pub color: String,
    /// Swatch shape.
    pub swatch: Swatch,
}

/// A rendered chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The `<svg>` element.
    pub svg: String,
    /// Legend entries (series, bands, bounds, then windows).
    pub legend: Vec<LegendItem>,
    /// Series and bands drawn.
    pub series: usize,
    /// Shaded windows drawn.
    pub windows: usize,
    /// Text under the chart.
    pub caption: Option<String>,
}

fn draw_err(title: &str) -> impl Fn(String) -> PlotError + '_ {
    move |msg| PlotError::Draw { chart: title.to_string(), msg }
}

const FONT: &str = "sans-serif";
/// Pixels of the canvas that are not plot area horizontally / vertically (labels, margins,
/// caption), used to turn pixel sizes into data units before the chart exists.
const X_CHROME: f64 = 110.0;
const Y_CHROME: f64 = 110.0;
/// Height of one row of window labels.
const LANE_PX: f64 = 17.0;

/// Colours assigned: explicit ones kept, the rest from the palette in order.
fn assign_colors(series: &[Series]) -> Vec<String> {
    let mut next = 0;
    series
        .iter()
        .map(|s| {
            if s.color.is_empty() {
                next += 1;
                color(next - 1).to_string()
            } else {
                s.color.clone()
            }
        })
        .collect()
}

fn step_points(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() * 2);
    for (i, &(x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push((x, points[i - 1].1));
        }
        out.push((x, y));
    }
    out
}

/// Draws the series on any chart whose y axis is linear f64 and whose x takes f64.
fn draw_series<X>(
    chart: &mut ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, RangedCoordf64>>,
    series: &[Series],
    colors: &[String],
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
{
    for (s, c) in series.iter().zip(colors) {
        let col = rgb(c);
        let r = match s.kind {
            SeriesKind::Line | SeriesKind::Step => {
                // A non-finite y is a gap: each finite run is drawn on its own.
                for run in s.points.split(|p| !p.1.is_finite()).filter(|r| !r.is_empty()) {
                    let pts = if s.kind == SeriesKind::Step { step_points(run) } else { run.to_vec() };
                    chart.draw_series(LineSeries::new(pts, col.stroke_width(s.width))).map_err(|e| e.to_string())?;
                }
                continue;
            }
            SeriesKind::Points => {
                chart.draw_series(s.points.iter().filter(|p| p.1.is_finite()).map(|&p| Circle::new(p, 4, col.filled())))
            }
            SeriesKind::Triangles => chart.draw_series(
                s.points.iter().filter(|p| p.1.is_finite()).map(|&p| TriangleMarker::new(p, 6, col.filled())),
            ),
        };
        r.map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn series_legend(series: &[Series], colors: &[String]) -> Vec<LegendItem> {
    series
        .iter()
        .zip(colors)
        .map(|(s, c)| LegendItem {
            label: s.name.clone(),
            color: c.clone(),
            swatch: match s.kind {
                SeriesKind::Line | SeriesKind::Step => Swatch::Line,
                SeriesKind::Points | SeriesKind::Triangles => Swatch::Dot,
            },
        })
        .collect()
}

/// A chart of series over a linear x axis, with shaded windows, bands and bounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineChart {
    /// Title drawn above the plot.
    pub title: String,
    /// x axis label, with its unit (`time (s)`).
    pub x_label: String,
    /// y axis label, with its unit (`latency (ms)`).
    pub y_label: String,
    /// x range; default: the data's.
    pub x_range: Option<(f64, f64)>,
    /// y range; default: from 0 (or the data's minimum if negative) to the data's maximum.
    pub y_range: Option<(f64, f64)>,
    /// The series, drawn in order (later on top).
    pub series: Vec<Series>,
    /// Bands, drawn under the series.
    pub bands: Vec<Band>,
    /// Shaded windows, drawn first.
    pub windows: Vec<Window>,
    /// Horizontal bounds.
    pub refs: Vec<RefLine>,
    /// Canvas height (default [`HEIGHT`]).
    pub height: Option<u32>,
    /// Text under the chart.
    pub caption: Option<String>,
    /// Label only whole numbers on the x axis (seeds).
    pub x_integers: bool,
}

impl LineChart {
    /// An empty chart with a title and axis labels (units included in the labels).
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> LineChart {
        LineChart { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), ..Default::default() }
    }

    /// Adds a series.
    pub fn series(mut self, s: Series) -> LineChart {
        self.series.push(s);
        self
    }

    /// Sets the caption.
    pub fn caption(mut self, c: impl Into<String>) -> LineChart {
        self.caption = Some(c.into());
        self
    }

    fn data_x(&self) -> (f64, f64) {
        if let Some(r) = self.x_range {
            return r;
        }
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().map(|p| p.0)))
            .chain(self.windows.iter().flat_map(|w| [w.start, w.end]));
        min_max(xs).unwrap_or((0.0, 1.0))
    }

    fn data_y(&self) -> (f64, f64) {
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(self.bands.iter().flat_map(|b| b.points.iter().flat_map(|p| [p.1, p.2])))
            .chain(self.refs.iter().map(|r| r.y));
        let (lo, hi) = min_max(ys).unwrap_or((0.0, 1.0));
        (lo.min(0.0), hi)
    }

    /// Window label rows: for each window (in order), its lane.
    fn lanes(&self, x0: f64, x1: f64) -> (Vec<usize>, usize) {
        let px = (x1 - x0) / (f64::from(WIDTH) - X_CHROME);
        let mut ends: Vec<f64> = Vec::new();
        let mut order: Vec<usize> = (0..self.windows.len()).collect();
        order.sort_by(|&a, &b| self.windows[a].start.total_cmp(&self.windows[b].start));
        let mut lanes = vec![0; self.windows.len()];
        for i in order {
            let w = &self.windows[i];
            let width = (w.label.chars().count() as f64 * 7.2 + 10.0) * px;
            let lane = ends.iter().position(|&e| e <= w.start).unwrap_or(ends.len());
            if lane == ends.len() {
                ends.push(0.0);
            }
            ends[lane] = w.start + width;
            lanes[i] = lane;
        }
        (lanes, ends.len())
    }

    /// Draws the chart.
    pub fn render(&self) -> Result<Figure, PlotError> {
        let height = self.height.unwrap_or(HEIGHT);
        let (mut x0, mut x1) = self.data_x();
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if !x0.is_finite() || !x1.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        let (lanes, n_lanes) = self.lanes(x0, x1);
        let (y0, mut y1) = self.y_range.unwrap_or_else(|| {
            let (lo, hi) = self.data_y();
            (lo, if hi > lo { hi * 1.05 } else { lo + 1.0 })
        });
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        // Head room for the window labels above the data.
        let plot_h = f64::from(height) - Y_CHROME;
        let room = n_lanes as f64 * LANE_PX + if n_lanes > 0 { 6.0 } else { 0.0 };
        if room > 0.0 && plot_h > room * 2.0 {
            y1 = y0 + (y1 - y0) * plot_h / (plot_h - room);
        }
        let colors = assign_colors(&self.series);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            self.draw(&root, (x0, x1), (y0, y1), &lanes, &colors).map_err(draw_err(&self.title))?;
        }
        let mut legend = series_legend(&self.series, &colors);
        legend.extend(self.bands.iter().map(|b| LegendItem {
            label: b.name.clone(),
            color: b.color.clone(),
            swatch: Swatch::Band,
        }));
        legend.extend(self.refs.iter().map(|r| LegendItem {
            label: r.label.clone(),
            color: r.color.clone(),
            swatch: Swatch::Ref,
        }));
        // One legend entry per distinct (label kind, colour) of windows: the labels are on the plot.
        let mut seen: Vec<(String, String)> = Vec::new();
        for w in &self.windows {
            let kind = w.label.split_whitespace().next().unwrap_or("").to_string();
            if !seen.iter().any(|(k, c)| *k == kind && *c == w.color) {
                seen.push((kind.clone(), w.color.clone()));
                legend.push(LegendItem { label: kind, color: w.color.clone(), swatch: Swatch::Window });
            }
        }
        Ok(Figure {
            svg: clean_svg(svg),
            legend,
            series: self.series.len() + self.bands.len(),
            windows: self.windows.len(),
            caption: self.caption.clone(),
        })
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        (x0, x1): (f64, f64),
        (y0, y1): (f64, f64),
        lanes: &[usize],
        colors: &[String],
    ) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(78)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 19))
            .x_label_formatter(&|v| if self.x_integers && v.fract() != 0.0 { String::new() } else { tick(*v) })
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(RGBColor(238, 240, 244))
            .bold_line_style(RGBColor(222, 226, 232))
            .draw()
            .map_err(e)?;
        // Many overlapping windows would turn the plot into one dark block: lighter each.
        let alpha = (0.5 / self.windows.len().max(1) as f64).clamp(0.05, 0.16);
        for (w, &lane) in self.windows.iter().zip(lanes) {
            let col = rgb(&w.color);
            let (s, t) = (w.start.max(x0), w.end.min(x1));
            chart
                .draw_series(std::iter::once(Rectangle::new([(s, y0), (t, y1)], col.mix(alpha).filled())))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(s, y0), (s, y1)], col.mix(0.7).stroke_width(1))))
                .map_err(e)?;
            let label =
                Text::new(w.label.clone(), (4, 3 + (lane as f64 * LANE_PX) as i32), (FONT, 16).into_font().color(&col));
            chart.draw_series(std::iter::once(EmptyElement::at((s, y1)) + label)).map_err(e)?;
        }
        for b in &self.bands {
            if b.points.is_empty() {
                continue;
            }
            let col = rgb(&b.color);
            let mut poly: Vec<(f64, f64)> = b.points.iter().map(|p| (p.0, p.2)).collect();
            poly.extend(b.points.iter().rev().map(|p| (p.0, p.1)));
            chart.draw_series(std::iter::once(Polygon::new(poly, col.mix(0.25).filled()))).map_err(e)?;
        }
        for r in &self.refs {
            let col = rgb(&r.color);
            chart.draw_series(DashedLineSeries::new([(x0, r.y), (x1, r.y)], 8, 5, col.stroke_width(2))).map_err(e)?;
        }
        draw_series(&mut chart, &self.series, colors)?;
        root.present().map_err(e)?;
        Ok(())
    }
}

fn min_max(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    v.filter(|x| x.is_finite()).fold(None, |acc, x| match acc {
        None => Some((x, x)),
        Some((lo, hi)) => Some((lo.min(x), hi.max(x))),
    })
}

/// plotters' SVG carries a fixed size; drop it so CSS scales the chart to the page (the
/// viewBox keeps the aspect ratio).
fn clean_svg(svg: String) -> String {
    let Some(end) = svg.find('>') else { return svg };
    let head = &svg[..end];
    let mut new_head = String::with_capacity(head.len() + 40);
    for part in head.split(' ') {
        if part.starts_with("width=") || part.starts_with("height=") {
            continue;
        }
        if !new_head.is_empty() {
            new_head.push(' ');
        }
        new_head.push_str(part);
    }
    if !new_head.contains("viewBox") {
        new_head.push_str(" viewBox=\"0 0 1280 400\"");
    }
    format!("{new_head}{}", &svg[end..])
}

/// The x of quantile `q` on a percentile-distribution axis: 1/(1−q).
pub fn percentile_x(q: f64) -> f64 {
    1.0 / (1.0 - q.clamp(0.0, 0.999_999))
}

/// A percentile axis label: `0%`, `50%`, `90%`, `99%`, `99.9%`, ...
pub fn percentile_label(x: f64) -> String {
    let q = (1.0 - 1.0 / x) * 100.0;
    let s = format!("{q:.4}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

/// HdrHistogram's percentile-distribution plot: value against percentile, the percentile
/// axis log-scaled as 1/(1−q) so the tail gets room.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PercentileChart {
    /// Title.
    pub title: String,
    /// y axis label with its unit (`latency (ms)`).
    pub y_label: String,
    /// Series of (quantile in [0, 1], value) points, in quantile order.
    pub series: Vec<Series>,
    /// Horizontal bounds.
    pub refs: Vec<RefLine>,
    /// Text under the chart.
    pub caption: Option<String>,
}

impl PercentileChart {
    /// Draws the chart.
    pub fn render(&self) -> Result<Figure, PlotError> {
        let max_x = self.series.iter().flat_map(|s| s.points.iter().map(|p| percentile_x(p.0))).fold(10.0, f64::max);
        // Up to the next power of ten past the largest quantile.
        let decades = max_x.log10().ceil().clamp(1.0, 6.0) as i32;
        let x1 = 10f64.powi(decades);
        let mut keys = vec![1.0, 2.0];
        keys.extend((1..=decades).map(|d| 10f64.powi(d)));
        let y_hi = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(self.refs.iter().map(|r| r.y))
            .fold(0.0, f64::max);
        let y1 = if y_hi > 0.0 { y_hi * 1.08 } else { 1.0 };
        let colors = assign_colors(&self.series);
        let mapped: Vec<Series> = self
            .series
            .iter()
            .map(|s| Series { points: s.points.iter().map(|&(q, v)| (percentile_x(q), v)).collect(), ..s.clone() })
            .collect();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root, keys, (0.0, y1), x1, &mapped, &colors).map_err(draw_err(&self.title))?;
        }
        let mut legend = series_legend(&self.series, &colors);
        legend.extend(self.refs.iter().map(|r| LegendItem {
            label: r.label.clone(),
            color: r.color.clone(),
            swatch: Swatch::Ref,
        }));
        Ok(Figure { svg: clean_svg(svg), legend, series: self.series.len(), windows: 0, caption: self.caption.clone() })
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        keys: Vec<f64>,
        (y0, y1): (f64, f64),
        x1: f64,
        mapped: &[Series],
        colors: &[String],
    ) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 24))
            .margin(12)
            .margin_right(44)
            .x_label_area_size(50)
            .y_label_area_size(78)
            .build_cartesian_2d((1.0..x1).log_scale().with_key_points(keys), y0..y1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1-q))")
            .y_desc(&self.y_label)
            .label_style((FONT, 17))
            .axis_desc_style((FONT, 19))
            .x_label_formatter(&|v| percentile_label(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(RGBColor(238, 240, 244))
            .bold_line_style(RGBColor(222, 226, 232))
            .draw()
            .map_err(e)?;
        for r in &self.refs {
            let col = rgb(&r.color);
            chart.draw_series(DashedLineSeries::new([(1.0, r.y), (x1, r.y)], 8, 5, col.stroke_width(2))).map_err(e)?;
        }
        draw_series(&mut chart, mapped, colors)?;
        root.present().map_err(e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_draws_windows_series_and_labels() {
        let mut c = LineChart::new("members over time", "time (s)", "members (count)");
        c.series.push(Series::new("auth", SeriesKind::Step, vec![(0.0, 1.0), (5.0, 10.0), (20.0, 6.0)]));
        c.series.push(Series::new("removed", SeriesKind::Points, vec![(20.0, 6.0)]));
        c.windows.push(Window { start: 10.0, end: 15.0, label: "partition west".into(), color: "#e15759".into() });
        c.windows.push(Window { start: 11.0, end: 30.0, label: "loss 1%".into(), color: "#f28e2b".into() });
        c.refs.push(RefLine { y: 8.0, label: "bound".into(), color: "#000000".into() });
        let f = c.render().unwrap();
        assert_eq!((f.series, f.windows), (2, 2));
        assert!(f.svg.starts_with("<svg"), "{}", &f.svg[..80]);
        let head = &f.svg[..f.svg.find('>').unwrap()];
        assert!(!head.contains(" width=") && head.contains("viewBox"), "scales with the page: {head}");
        for text in ["members over time", "time (s)", "members (count)", "partition west", "loss 1%"] {
            assert!(f.svg.contains(text), "{text}");
        }
        assert_eq!(f.legend.len(), 2 + 1 + 2);
    }

    #[test]
    fn percentile_axis_is_labelled_like_hdrhistogram() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert!((percentile_x(0.99) - 100.0).abs() < 1e-9);
        let c = PercentileChart {
            title: "join latency".into(),
            y_label: "latency (ms)".into(),
            series: vec![Series::new(
                "join",
                SeriesKind::Line,
                vec![(0.0, 1.0), (0.5, 2.0), (0.9, 3.0), (0.99, 8.0), (0.999, 20.0)],
            )],
            ..Default::default()
        };
        let f = c.render().unwrap();
        for text in ["50%", "90%", "99%", "99.9%", "latency (ms)"] {
            assert!(f.svg.contains(&format!(">\n{text}\n<")), "{text}");
        }
    }

    #[test]
    fn empty_charts_still_render() {
        let f = LineChart::new("nothing", "time (s)", "count").render().unwrap();
        assert_eq!((f.series, f.windows), (0, 0));
        let f = PercentileChart { title: "none".into(), y_label: "ms".into(), ..Default::default() }.render().unwrap();
        assert_eq!(f.series, 0);
    }
}
