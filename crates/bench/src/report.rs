//! Results: one JSON line on stdout (for scripts and BENCHMARKS.md), or a table for people;
//! progress bars on stderr.

use std::fmt::Write as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value};

/// How a result is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// What one scenario run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    /// The load as asked for.
    pub params: Value,
    /// One object per server under test, in `--url` order.
    pub results: Vec<Value>,
    /// Server-against-server figures, when more than one server was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Value>,
    /// Where and when.
    pub machine: Value,
    pub date: String,
}

impl Report {
    pub fn new(scenario: &str, params: impl Serialize, results: Vec<Value>) -> Report {
        Report {
            scenario: scenario.into(),
            params: serde_json::to_value(params).expect("params serialize"),
            results,
            comparison: None,
            machine: crate::probe::machine(),
            date: switchboard_proto::time::now_iso(),
        }
    }

    /// The report as it is printed on stdout.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string(self).expect("reports serialize"),
            Format::Table => self.table(),
        }
    }

    /// Each result in a column, one row per figure; lists of objects (ramp steps) get a table
    /// of their own below.
    fn table(&self) -> String {
        let mut out = format!("{} on {} ({})\n", self.scenario, self.machine["cpu"], self.date);
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut lists: Vec<(String, &Vec<Value>)> = Vec::new();
        for (column, result) in self.results.iter().enumerate() {
            flatten(result, "", &mut |key, value| match value {
                Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                    lists.push((format!("{key} (server {})", column + 1), items));
                }
                _ => {
                    let row = match rows.iter().position(|(k, _)| k == key) {
                        Some(i) => i,
                        None => {
                            rows.push((key.to_string(), vec![String::new(); self.results.len()]));
                            rows.len() - 1
                        }
                    };
                    rows[row].1[column] = cell(value);
                }
            });
        }
        if let Some(comparison) = &self.comparison {
            let mut extra = Vec::new();
            flatten(comparison, "comparison.", &mut |key, value| {
                extra.push((key.to_string(), vec![cell(value); self.results.len().min(1)]));
            });
            rows.extend(extra);
        }
        write_table(&mut out, &rows);
        for (title, items) in lists {
            let _ = writeln!(out, "\n{title}");
            let mut columns: Vec<String> = Vec::new();
            let flat: Vec<Vec<(String, String)>> = items
                .iter()
                .map(|item| {
                    let mut cells = Vec::new();
                    flatten(item, "", &mut |k, v| cells.push((k.to_string(), cell(v))));
                    cells
                })
                .collect();
            for cells in &flat {
                for (k, _) in cells {
                    if !columns.contains(k) {
                        columns.push(k.clone());
                    }
                }
            }
            let transposed: Vec<(String, Vec<String>)> = columns
                .iter()
                .map(|c| {
                    let values = flat
                        .iter()
                        .map(|cells| {
                            cells
                                .iter()
                                .find(|(k, _)| k == c)
                                .map_or(String::new(), |(_, v)| v.clone())
                        })
                        .collect();
                    (c.clone(), values)
                })
                .collect();
            write_table(&mut out, &transposed);
        }
        out
    }
}

/// Calls `f` with every leaf of `value` under a dotted key (`latency.p99_ms`).
fn flatten<'a>(value: &'a Value, prefix: &str, f: &mut dyn FnMut(&str, &'a Value)) {
    match value {
        Value::Object(map) => flatten_map(map, prefix, f),
        other => f(prefix.trim_end_matches('.'), other),
    }
}

fn flatten_map<'a>(map: &'a Map<String, Value>, prefix: &str, f: &mut dyn FnMut(&str, &'a Value)) {
    for (k, v) in map {
        match v {
            Value::Object(inner) => flatten_map(inner, &format!("{prefix}{k}."), f),
            other => f(&format!("{prefix}{k}"), other),
        }
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() && x.abs() >= 1000.0 => format!("{x:.0}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn write_table(out: &mut String, rows: &[(String, Vec<String>)]) {
    let key_width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let columns = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|(_, v)| v.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (key, values) in rows {
        let _ = write!(out, "{key:<key_width$}");
        for (value, width) in values.iter().zip(&widths) {
            let _ = write!(out, "  {value:>width$}");
        }
        out.push('\n');
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{spinner} {msg:<24} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_has_a_column_per_server_and_a_table_per_list() {
        let mut report = Report::new(
            "fanout",
            json!({"rate": 10}),
            vec![
                json!({"url": "a", "latency": {"p99_ms": 1.5}, "steps": [{"rate": 1}, {"rate": 2}]}),
                json!({"url": "b", "latency": {"p99_ms": 0.5}}),
            ],
        );
        report.comparison = Some(json!({"cpu_ratio": 2.0}));
        let table = report.render(Format::Table);
        assert!(table.contains("latency.p99_ms"), "{table}");
        assert!(table.lines().any(|l| l.contains("1.5") && l.contains("0.5")), "{table}");
        assert!(
            table.contains("steps (server 1)") && table.contains("comparison.cpu_ratio"),
            "{table}"
        );
        let line = report.render(Format::Json);
        assert_eq!(line.lines().count(), 1);
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["results"][1]["url"], "b");
    }
}
