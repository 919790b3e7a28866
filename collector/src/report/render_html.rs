//! HTML (email body and standalone file) and plain text of a report, from its serialised
//! value and its [`Layout`].
//!
//! Invariants: every text from the store (host names, summaries, people's names) is escaped;
//! every number cell carries the exact JSON value in `data-value` (and its field in
//! `data-key`) next to the human reading, so the three formats can be compared by machine;
//! images are referenced as `cid:` in email and embedded as `data:` URIs in the file.

use super::charts::Chart;
use super::layout::{Column, Fmt, Layout};
pub use crate::alerts::render::escape_html as escape;
use crate::human;
use base64::Engine;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::fmt::Write;

/// How the HTML points at its charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    /// `data:image/png;base64,…`: a file that stands alone.
    Embedded,
    /// `cid:<id>@backwatch`: an email whose related parts carry the PNGs.
    ContentId,
}

pub fn content_id(chart: &Chart) -> String {
    format!("{}@backwatch", chart.id)
}

/// The exact value as text: what `data-value` and the CSV hold.
pub fn raw(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn signed_bytes(v: f64) -> String {
    let b = human::bytes(v.abs().round() as u64);
    if v < 0.0 { format!("−{b}") } else { b }
}

/// How `v` reads to a person.
pub fn human_value(v: &Value, fmt: Fmt, tz: Tz) -> String {
    if v.is_null() {
        return "–".into();
    }
    let num = v.as_f64();
    match (fmt, num) {
        (Fmt::Bytes, Some(n)) => signed_bytes(n),
        (Fmt::Rate, Some(n)) => format!("{}/day", signed_bytes(n)),
        (Fmt::Secs, Some(n)) => human::duration(n.round() as i64),
        (Fmt::Pct, Some(n)) => format!("{n:.1} %"),
        (Fmt::Ratio, Some(n)) => format!("{:.1} %", n * 100.0),
        (Fmt::Num, Some(n)) => {
            if n.fract() == 0.0 {
                format!("{n:.0}")
            } else {
                format!("{n:.2}")
            }
        }
        (Fmt::Time, _) => v
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|| raw(v)),
        _ => raw(v),
    }
}

fn cell(row: &Value, c: &Column, tz: Tz) -> String {
    let v = row.get(c.key).unwrap_or(&Value::Null);
    let human = escape(&human_value(v, c.fmt, tz));
    let class = match c.fmt {
        Fmt::Status => format!(" class=\"s-{}\"", escape(&raw(v))),
        Fmt::Text | Fmt::Time => String::new(),
        _ => " class=\"n\"".into(),
    };
    format!(
        "<td{class} data-key=\"{}\" data-value=\"{}\">{human}</td>",
        c.key,
        escape(&raw(v))
    )
}

const STYLE: &str = "body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;\
color:#1f2328;max-width:1100px;margin:16px}table{border-collapse:collapse;margin:8px 0 20px}\
th,td{border:1px solid #d0d7de;padding:3px 8px;font-size:13px;text-align:left;vertical-align:top}\
th{background:#f6f8fa}td.n{text-align:right;white-space:nowrap}.s-ok{color:#1a7f37}\
.s-warning{color:#9a6700;font-weight:600}.s-critical{color:#cf222e;font-weight:600}\
.s-unknown{color:#57606a;font-weight:600}figure{margin:8px 0 20px}\
figcaption{font-size:12px;color:#57606a}.muted{color:#57606a}";

pub struct Page<'a> {
    pub title: &'a str,
    pub subtitle: String,
    pub value: &'a Value,
    pub layout: &'a Layout,
    pub charts: &'a [Chart],
    pub images: Images,
    pub tz: Tz,
}

pub fn html(p: &Page<'_>) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n<p class=\"muted\">{s}</p>\n",
        t = escape(p.title),
        s = escape(&p.subtitle)
    );
    let summary = p.value.get("summary").unwrap_or(&Value::Null);
    o.push_str("<table id=\"summary\"><tbody>\n");
    for c in p.layout.summary {
        let _ = writeln!(
            o,
            "<tr><th>{}</th>{}</tr>",
            escape(c.label),
            cell(summary, c, p.tz)
        );
    }
    o.push_str("</tbody></table>\n");
    for chart in p.charts {
        let src = match p.images {
            Images::ContentId => format!("cid:{}", content_id(chart)),
            Images::Embedded => format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&chart.png)
            ),
        };
        let _ = writeln!(
            o,
            "<figure id=\"chart-{id}\"><h3>{t}</h3><img src=\"{src}\" width=\"{w}\" height=\"{h}\" \
             alt=\"{c}\"><figcaption>{c}</figcaption></figure>",
            id = chart.id,
            t = escape(&chart.title),
            w = super::charts::WIDTH,
            h = super::charts::HEIGHT,
            c = escape(&chart.caption),
        );
    }
    for s in p.layout.sections {
        let rows = p.value.get(s.field).and_then(Value::as_array);
        let _ = writeln!(o, "<h2>{}</h2>", escape(s.title));
        let Some(rows) = rows.filter(|r| !r.is_empty()) else {
            let _ = writeln!(o, "<p class=\"muted\">{}</p>", escape(s.empty));
            continue;
        };
        let _ = write!(o, "<table id=\"{}\"><thead><tr>", s.field);
        for c in s.columns {
            let _ = write!(o, "<th>{}</th>", escape(c.label));
        }
        o.push_str("</tr></thead><tbody>\n");
        for row in rows {
            o.push_str("<tr>");
            for c in s.columns {
                o.push_str(&cell(row, c, p.tz));
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</tbody></table>\n");
    }
    let _ = writeln!(
        o,
        "<p class=\"muted\">Generated by Backwatch at {}. The same report is available as JSON \
         and CSV (`backwatch-collector report`, `/api/v1/reports`).</p></body></html>",
        escape(
            &p.value
                .get("generated_at")
                .map(raw)
                .unwrap_or_else(|| Utc::now().to_rfc3339())
        )
    );
    o
}

/// The plain-text alternative of the email: the summary and the sections that need a look.
pub fn text(p: &Page<'_>, limit: usize) -> String {
    let mut o = format!("{}\n{}\n\n", p.title, p.subtitle);
    let summary = p.value.get("summary").unwrap_or(&Value::Null);
    for c in p.layout.summary {
        let v = summary.get(c.key).unwrap_or(&Value::Null);
        let _ = writeln!(o, "{}: {}", c.label, human_value(v, c.fmt, p.tz));
    }
    for s in p.layout.sections {
        let Some(rows) = p.value.get(s.field).and_then(Value::as_array) else {
            continue;
        };
        let _ = writeln!(o, "\n{}", s.title);
        if rows.is_empty() {
            let _ = writeln!(o, "  {}", s.empty);
        }
        for row in rows.iter().take(limit) {
            let line: Vec<String> = s
                .columns
                .iter()
                .filter(|c| !c.label.is_empty())
                .map(|c| {
                    let v = row.get(c.key).unwrap_or(&Value::Null);
                    format!("{}: {}", c.label, human_value(v, c.fmt, p.tz))
                })
                .collect();
            let _ = writeln!(o, "  - {}", line.join("; "));
        }
        if rows.len() > limit {
            let _ = writeln!(o, "  … and {} more (see the HTML part)", rows.len() - limit);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_store_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        let row = serde_json::json!({"host": "<b>db1</b>", "n": 12.5});
        let c = Column {
            key: "host",
            label: "Host",
            fmt: Fmt::Text,
        };
        let td = cell(&row, &c, Tz::UTC);
        assert!(!td.contains("<b>"), "{td}");
        let c = Column {
            key: "n",
            label: "N",
            fmt: Fmt::Bytes,
        };
        assert!(cell(&row, &c, Tz::UTC).contains("data-value=\"12.5\""));
    }

    #[test]
    fn human_values() {
        let tz = chrono_tz::Europe::Berlin;
        assert_eq!(
            human_value(&serde_json::json!(0.25), Fmt::Ratio, tz),
            "25.0 %"
        );
        assert_eq!(human_value(&Value::Null, Fmt::Bytes, tz), "–");
        assert_eq!(
            human_value(&serde_json::json!("2026-03-29T06:00:00Z"), Fmt::Time, tz),
            "2026-03-29 08:00 CEST"
        );
    }
}
