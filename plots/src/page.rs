//! One self-contained HTML report page: a title, a parameter table, sections with text,
//! tables and figures. Inline CSS, inline SVG, no scripts and no external resources, so the
//! file opens from disk anywhere and can be attached to a CI run as it is. Every piece of
//! text given to the builder is escaped; only the SVG of a [`Figure`] (made by
//! [`crate::chart`]) goes in as markup.

use std::fmt::Write as _;
use std::path::Path;

use html_escape::{encode_double_quoted_attribute, encode_text};

use crate::PlotError;
use crate::chart::Figure;

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; padding: 12px 24px 48px;
  max-width: 1320px; color: #1d2430; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.4em; padding-bottom: 0.2em; border-bottom: 1px solid #d8dde6; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.3em; }
p.lead { color: #4a5363; margin-top: 0; }
p.note { color: #4a5363; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #d8dde6; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, code { font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; font-size: 0.92em; }
td.mono { word-break: break-all; }
.bad { background: #fde2e1; color: #8a1712; font-weight: 600; }
.good { background: #e3f4e6; color: #17602a; }
.nowrap { white-space: nowrap; }
.warn { background: #fff3cd; color: #6b4e00; }
table.params td:first-child { color: #4a5363; white-space: nowrap; }
figure.chart { margin: 0.6em 0 1.4em; }
figure.chart svg { width: 100%; height: auto; display: block; }
details summary { cursor: pointer; color: #4a5363; margin: 0.2em 0; }
figure.chart figcaption { font-size: 0.9em; color: #4a5363; margin-top: 0.2em; }
ul.legend { list-style: none; padding: 0; margin: 0.3em 0 0; display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 0.9em; }
ul.legend li { display: flex; align-items: center; gap: 6px; }
ul.legend .sw { display: inline-block; width: 22px; height: 4px; }
ul.legend .sw.win { height: 12px; opacity: 0.35; }
ul.legend .sw.dot { width: 10px; height: 10px; border-radius: 5px; }
ul.legend .sw.band { height: 10px; opacity: 0.3; }
ul.legend .sw.ref { height: 0; border-top: 3px dashed; background: none !important; }
";

/// One table cell: text and an optional CSS class (`num`, `mono`, `bad`, `good`, `warn`,
/// space-separated).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cell {
    /// The text (escaped when written).
    pub text: String,
    /// CSS classes.
    pub class: String,
}

impl Cell {
    /// A plain cell.
    pub fn new(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), class: String::new() }
    }

    /// A right-aligned number cell.
    pub fn num(text: impl Into<String>) -> Cell {
        Cell::new(text).class("num")
    }

    /// Adds CSS class(es).
    pub fn class(mut self, class: &str) -> Cell {
        if !self.class.is_empty() {
            self.class.push(' ');
        }
        self.class.push_str(class);
        self
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::new(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::new(s)
    }
}

/// An HTML page under construction.
#[derive(Clone, Debug)]
pub struct Page {
    title: String,
    body: String,
    figures: usize,
}

impl Page {
    /// A page with this title (also its `<h1>`).
    pub fn new(title: impl Into<String>) -> Page {
        let title = title.into();
        let body = format!("<h1>{}</h1>\n", encode_text(&title));
        Page { title, body, figures: 0 }
    }

    /// A lead paragraph under the title.
    pub fn lead(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<p class=\"lead\">{}</p>", encode_text(text));
        self
    }

    /// A section heading (`<h2>`).
    pub fn section(&mut self, heading: &str) -> &mut Self {
        let _ = writeln!(self.body, "<h2>{}</h2>", encode_text(heading));
        self
    }

    /// A sub-heading (`<h3>`).
    pub fn subsection(&mut self, heading: &str) -> &mut Self {
        let _ = writeln!(self.body, "<h3>{}</h3>", encode_text(heading));
        self
    }

    /// A paragraph.
    pub fn para(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<p>{}</p>", encode_text(text));
        self
    }

    /// A small explanatory paragraph.
    pub fn note(&mut self, text: &str) -> &mut Self {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", encode_text(text));
        self
    }

    /// A two-column key/value table (the run's parameters).
    pub fn params<K: AsRef<str>, V: AsRef<str>>(&mut self, rows: &[(K, V)]) -> &mut Self {
        self.body.push_str("<table class=\"params\">\n");
        for (k, v) in rows {
            let _ = writeln!(
                self.body,
                "<tr><td>{}</td><td class=\"mono\">{}</td></tr>",
                encode_text(k.as_ref()),
                encode_text(v.as_ref())
            );
        }
        self.body.push_str("</table>\n");
        self
    }

    /// A key/value table folded under a summary line (`<details>`, no script needed).
    pub fn details_params<K: AsRef<str>, V: AsRef<str>>(&mut self, summary: &str, rows: &[(K, V)]) -> &mut Self {
        let _ = writeln!(self.body, "<details><summary>{}</summary>", encode_text(summary));
        self.params(rows);
        self.body.push_str(
            "</details>
",
        );
        self
    }

    /// A table with a header row.
    pub fn table(&mut self, head: &[&str], rows: &[Vec<Cell>]) -> &mut Self {
        self.body.push_str("<table>\n<tr>");
        for h in head {
            let _ = write!(self.body, "<th>{}</th>", encode_text(h));
        }
        self.body.push_str("</tr>\n");
        for row in rows {
            self.body.push_str("<tr>");
            for c in row {
                if c.class.is_empty() {
                    let _ = write!(self.body, "<td>{}</td>", encode_text(&c.text));
                } else {
                    let _ = write!(
                        self.body,
                        "<td class=\"{}\">{}</td>",
                        encode_double_quoted_attribute(&c.class),
                        encode_text(&c.text)
                    );
                }
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</table>\n");
        self
    }

    /// A figure: the chart's SVG, its legend and caption.
    pub fn figure(&mut self, fig: &Figure) -> &mut Self {
        self.figures += 1;
        let _ = writeln!(
            self.body,
            "<figure class=\"chart\" data-series=\"{}\" data-windows=\"{}\">",
            fig.series, fig.windows
        );
        self.body.push_str(&fig.svg);
        self.body.push('\n');
        if !fig.legend.is_empty() {
            self.body.push_str("<ul class=\"legend\">");
            for item in &fig.legend {
                let _ = write!(
                    self.body,
                    "<li><span class=\"sw {}\" style=\"background:{};border-color:{}\"></span>{}</li>",
                    item.swatch.class(),
                    item.color,
                    item.color,
                    encode_text(&item.label)
                );
            }
            self.body.push_str("</ul>\n");
        }
        if let Some(c) = &fig.caption {
            let _ = writeln!(self.body, "<figcaption>{}</figcaption>", encode_text(c));
        }
        self.body.push_str("</figure>\n");
        self
    }

    /// Figures added so far.
    pub fn figures(&self) -> usize {
        self.figures
    }

    /// The whole document.
    pub fn finish(&self) -> String {
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{}</body>\n</html>\n",
            encode_text(&self.title),
            self.body
        )
    }

    /// Writes the document to `path`, creating its directory.
    pub fn write(&self, path: &Path) -> Result<(), PlotError> {
        let io = |source| PlotError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, self.finish()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_the_page_is_self_contained() {
        let mut p = Page::new("a <b> & c");
        p.lead("x < y")
            .section("s & t")
            .params(&[("k<", "v\"&")])
            .table(&["h<"], &[vec![Cell::new("<script>alert(1)</script>").class("bad")]]);
        let html = p.finish();
        assert!(html.contains("<title>a &lt;b&gt; &amp; c</title>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("<td class=\"bad\">"));
        assert!(!html.contains("src=") && !html.contains("href="), "nothing fetched");
    }
}
