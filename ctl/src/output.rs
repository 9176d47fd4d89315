//! What a command prints: aligned tables for people (the default) or one
//! JSON document for scripts (`--output json`). Every command builds a
//! [`Report`] holding both, so the two never say different things.

use std::fmt::Write as _;

use serde::Serialize;

use crate::error::CtlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Line(String),
    Table(Table),
    /// Printed as is (a document the command produces, e.g. an export).
    Raw(String),
}

/// One command's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub json: serde_json::Value,
    pub text: Vec<Block>,
    /// Printed after the report, and sets the exit status.
    pub failure: Option<CtlError>,
}

impl Report {
    pub fn new(json: impl Serialize) -> Report {
        Report { json: serde_json::to_value(json).expect("reports serialize"), text: Vec::new(), failure: None }
    }

    /// The report, failing with `err` once printed.
    pub fn fail(mut self, err: CtlError) -> Report {
        self.failure = Some(err);
        self
    }

    pub fn line(&mut self, line: impl Into<String>) -> &mut Report {
        self.text.push(Block::Line(line.into()));
        self
    }

    pub fn table(&mut self, table: Table) -> &mut Report {
        self.text.push(Block::Table(table));
        self
    }

    pub fn raw(&mut self, text: String) -> &mut Report {
        self.text.push(Block::Raw(text));
        self
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => {
                let mut s = serde_json::to_string_pretty(&self.json).expect("values serialize");
                s.push('\n');
                s
            }
            Format::Table => {
                let mut out = String::new();
                for b in &self.text {
                    match b {
                        Block::Line(l) => {
                            out.push_str(l);
                            out.push('\n');
                        }
                        Block::Table(t) => out.push_str(&t.render()),
                        Block::Raw(s) => out.push_str(s),
                    }
                }
                out
            }
        }
    }
}

/// Columns separated by two spaces, each as wide as its widest cell;
/// columns whose every cell is a number are right-aligned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "a row has one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let width = |i: usize| {
            self.rows.iter().map(|r| r[i].chars().count()).chain([self.headers[i].chars().count()]).max().unwrap_or(0)
        };
        let widths: Vec<usize> = (0..n).map(width).collect();
        let numeric: Vec<bool> = (0..n)
            .map(|i| {
                self.rows.iter().any(|r| r[i].parse::<f64>().is_ok())
                    && self.rows.iter().all(|r| r[i] == "-" || r[i].parse::<f64>().is_ok())
            })
            .collect();
        let mut out = String::new();
        for cells in std::iter::once(&self.headers).chain(self.rows.iter()) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                if numeric[i] {
                    let _ = write!(line, "{}{cell}", " ".repeat(pad));
                } else {
                    let _ = write!(line, "{cell}{}", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1,2,3`, or `-` for none.
pub fn ids(v: &[i32]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

/// A value that may be missing, as a cell.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_numbers_go_right() {
        let mut t = Table::new(&["TOPIC", "PARTITION", "LEADER"]);
        t.row(vec!["orders".into(), "0".into(), "1".into()]);
        t.row(vec!["a".into(), "12".into(), "-".into()]);
        assert_eq!(t.render(), "TOPIC   PARTITION  LEADER\norders          0       1\na              12       -\n");
        let mut dashes = Table::new(&["TYPE", "N"]);
        dashes.row(vec!["-".into(), "1".into()]);
        dashes.row(vec!["consumer".into(), "-".into()]);
        assert_eq!(dashes.render(), "TYPE      N\n-         1\nconsumer  -\n", "a column of no number is text");
        let empty = Table::new(&["A", "B"]);
        assert_eq!(empty.render(), "A  B\n");
    }

    #[test]
    fn reports_render_as_text_or_json() {
        let mut r = Report::new(serde_json::json!({"ok": true}));
        r.line("all good");
        assert_eq!(r.render(Format::Table), "all good\n");
        assert_eq!(r.render(Format::Json), "{\n  \"ok\": true\n}\n");
        assert_eq!(ids(&[1, 2]), "1,2");
        assert_eq!(ids(&[]), "-");
        assert_eq!(opt::<i32>(None), "-");
    }
}
