//! CSV of a report: one document in long form, `table,row,column,value`.
//!
//! Why one long CSV rather than a file per table: it is one download from the API and one
//! file from the CLI, and a spreadsheet pivots it back into any table (filter on `table`,
//! pivot `column` over `row`). `table` is `summary` for the report's headline figures, else
//! the report field holding the rows (`storage`, `archive_lag`, …); `row` counts from 0 in
//! the order of the JSON; `value` is exactly the JSON value (numbers as JSON writes them,
//! times RFC 3339, empty for null). Nested lists (none today) would be left out.

use super::render_html::raw;
use serde_json::Value;

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A text cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, or a tab or carriage
/// return before one) gets a leading `'`: host names, summaries and paths come from agents
/// and from the systems they watch, and `=HYPERLINK(…)` in a summary must stay text (CSV
/// injection). Numbers are left alone: `-3` is a number, not a formula.
fn neutralised(v: &Value) -> String {
    let text = raw(v);
    match v {
        Value::String(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{text}"),
        _ => text,
    }
}

fn push(out: &mut String, table: &str, row: usize, column: &str, v: &Value) {
    out.push_str(&format!(
        "{},{row},{},{}\n",
        field(table),
        field(column),
        field(&neutralised(v))
    ));
}

pub fn csv(report: &Value) -> String {
    let mut out = String::from("table,row,column,value\n");
    let Some(fields) = report.as_object() else {
        return out;
    };
    // Scalars of the report itself first (kind, period, times), as table `report`.
    for (k, v) in fields {
        if !v.is_object() && !v.is_array() {
            push(&mut out, "report", 0, k, v);
        }
    }
    for (k, v) in fields {
        match v {
            Value::Object(o) => {
                for (c, x) in o {
                    if !x.is_object() && !x.is_array() {
                        push(&mut out, k, 0, c, x);
                    }
                }
            }
            Value::Array(rows) => {
                for (i, row) in rows.iter().enumerate() {
                    if let Some(o) = row.as_object() {
                        for (c, x) in o {
                            if !x.is_object() && !x.is_array() {
                                push(&mut out, k, i, c, x);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_form_quotes_what_needs_it() {
        let v = serde_json::json!({
            "kind": "daily",
            "summary": {"hosts": 2},
            "open_alerts": [{"summary": "disk \"full\", 90 %", "age_secs": 60}]
        });
        let text = csv(&v);
        assert!(
            text.starts_with("table,row,column,value\nreport,0,kind,daily\n"),
            "{text}"
        );
        assert!(text.contains("summary,0,hosts,2\n"));
        assert!(text.contains("open_alerts,0,summary,\"disk \"\"full\"\", 90 %\"\n"));
        assert!(text.contains("open_alerts,0,age_secs,60\n"));
    }

    #[test]
    fn text_that_a_spreadsheet_would_run_as_a_formula_stays_text() {
        let v = serde_json::json!({
            "rows": [{
                "summary": "=HYPERLINK(\"http://evil\",\"x\")",
                "host": "+db1", "path": "-x", "who": "@me", "tab": "\t=1",
                "growth": -3.5, "plain": "a=b"
            }]
        });
        let text = csv(&v);
        for want in [
            "rows,0,summary,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"\n",
            "rows,0,host,'+db1\n",
            "rows,0,path,'-x\n",
            "rows,0,who,'@me\n",
            "rows,0,tab,'\t=1\n",
            "rows,0,growth,-3.5\n",
            "rows,0,plain,a=b\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text}");
        }
    }
}
