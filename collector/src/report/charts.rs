//! Small PNG charts for the reports, drawn into a pixel buffer and encoded with `png`.
//!
//! Why PNG and not inline SVG: Gmail and Outlook do not render SVG in mail. The images carry
//! no text (no font rendering here); titles, axes and numbers are HTML around them, so they
//! stay readable, searchable and translatable. Every chart is computed from the report
//! struct, so it shows the same numbers as the tables.

use super::daily::DailyReport;
use super::monthly::MonthlyReport;

pub const WIDTH: u32 = 600;
pub const HEIGHT: u32 = 160;

type Rgb = [u8; 3];
const BACKGROUND: Rgb = [255, 255, 255];
const AXIS: Rgb = [170, 170, 170];
const OK: Rgb = [46, 160, 67];
const WARNING: Rgb = [219, 171, 9];
const CRITICAL: Rgb = [207, 34, 46];
const UNKNOWN: Rgb = [130, 130, 130];
const BLUE: Rgb = [9, 105, 218];
const PURPLE: Rgb = [130, 80, 223];

/// One chart: the PNG and the words the HTML puts around it.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Stable id: file name, Content-ID (`<id>@backwatch`) and HTML anchor.
    pub id: &'static str,
    pub title: String,
    /// What the picture shows, with its scale: the alt text and the caption.
    pub caption: String,
    pub png: Vec<u8>,
}

struct Canvas {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Canvas {
        let mut px = Vec::with_capacity((w * h * 3) as usize);
        for _ in 0..w * h {
            px.extend_from_slice(&BACKGROUND);
        }
        Canvas { w, h, px }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x < 0 || y < 0 || x >= i64::from(self.w) || y >= i64::from(self.h) {
            return;
        }
        let i = ((y as u32 * self.w + x as u32) * 3) as usize;
        self.px[i..i + 3].copy_from_slice(&c);
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.min(y1)..y0.max(y1) {
            for x in x0.min(x1)..x0.max(x1) {
                self.set(x, y, c);
            }
        }
    }

    /// Bresenham, two pixels thick.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.set(x, y, c);
            self.set(x, y + 1, c);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn dashed(&mut self, y: i64, c: Rgb) {
        for x in 0..i64::from(self.w) {
            if (x / 6) % 2 == 0 {
                self.set(x, y, c);
            }
        }
    }

    fn png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.w, self.h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Writing into memory cannot fail short of allocation; an empty image is the
        // fallback rather than a panic.
        let ok = enc
            .write_header()
            .and_then(|mut w| w.write_image_data(&self.px).and_then(|()| w.finish()));
        if ok.is_err() {
            out.clear();
        }
        out
    }
}

const PAD: i64 = 4;

/// Vertical bars, left to right, scaled to `max` (at least the largest value); dashed
/// lines at `marks`.
fn bars(values: &[(f64, Rgb)], max: Option<f64>, marks: &[f64]) -> Vec<u8> {
    let mut c = Canvas::new(WIDTH, HEIGHT);
    let top = values
        .iter()
        .map(|v| v.0)
        .fold(max.unwrap_or(0.0), f64::max)
        .max(1e-9);
    let (w, h) = (i64::from(WIDTH) - 2 * PAD, i64::from(HEIGHT) - 2 * PAD);
    let base = PAD + h;
    if !values.is_empty() {
        let slot = w as f64 / values.len() as f64;
        for (i, (v, color)) in values.iter().enumerate() {
            let x0 = PAD + (i as f64 * slot + slot * 0.15) as i64;
            let x1 = PAD + ((i + 1) as f64 * slot - slot * 0.15).max(i as f64 * slot + 1.0) as i64;
            let bh = ((v.max(0.0) / top) * h as f64).round() as i64;
            c.rect(x0, base - bh.max(1), x1.max(x0 + 1), base, *color);
        }
    }
    for m in marks {
        c.dashed(base - ((m / top) * h as f64).round() as i64, CRITICAL);
    }
    c.line((PAD, base), (PAD + w, base), AXIS);
    c.png()
}

/// A line through `values` (left to right), scaled from 0 to the largest value.
fn line(values: &[f64], color: Rgb) -> Vec<u8> {
    let mut c = Canvas::new(WIDTH, HEIGHT);
    let top = values.iter().copied().fold(0.0, f64::max).max(1e-9);
    let (w, h) = (i64::from(WIDTH) - 2 * PAD, i64::from(HEIGHT) - 2 * PAD);
    let base = PAD + h;
    let point = |i: usize, v: f64| {
        let x = PAD + (i as f64 * w as f64 / (values.len().max(2) - 1) as f64) as i64;
        (x, base - ((v / top) * h as f64).round() as i64)
    };
    for (i, pair) in values.windows(2).enumerate() {
        c.line(point(i, pair[0]), point(i + 1, pair[1]), color);
    }
    if values.len() == 1 {
        let (x, y) = point(0, values[0]);
        c.rect(x - 2, y - 2, x + 3, y + 3, color);
    }
    c.line((PAD, base), (PAD + w, base), AXIS);
    c.png()
}

fn gib(b: f64) -> String {
    format!("{:.1} GiB", b / (1u64 << 30) as f64)
}

pub fn daily(r: &DailyReport) -> Vec<Chart> {
    let s = &r.summary;
    let counts = [
        (s.hosts_ok as f64, OK),
        (s.hosts_warning as f64, WARNING),
        (s.hosts_critical as f64, CRITICAL),
        (s.hosts_unknown as f64, UNKNOWN),
    ];
    let mut charts = vec![Chart {
        id: "hosts-by-status",
        title: "Hosts by status".into(),
        caption: format!(
            "Bars, left to right: ok {}, warning {}, critical {}, unknown {}",
            s.hosts_ok, s.hosts_warning, s.hosts_critical, s.hosts_unknown
        ),
        png: bars(&counts, None, &[]),
    }];
    let fs: Vec<_> = r
        .storage
        .iter()
        .filter(|l| l.kind == "filesystem" && l.used_pct.is_some())
        .take(40)
        .collect();
    if !fs.is_empty() {
        let values: Vec<(f64, Rgb)> = fs
            .iter()
            .map(|l| {
                let p = l.used_pct.unwrap_or(0.0);
                let color = if p > 85.0 {
                    CRITICAL
                } else if p > 75.0 {
                    WARNING
                } else {
                    OK
                };
                (p, color)
            })
            .collect();
        charts.push(Chart {
            id: "filesystem-use",
            title: "Backup and archive filesystems, % used".into(),
            caption: format!(
                "{} fullest filesystems, fullest first ({}), scale 0–100 %, dashed lines at 75 % and 85 %",
                fs.len(),
                fs.iter()
                    .map(|l| format!("{} {}", l.host, l.check))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            png: bars(&values, Some(100.0), &[75.0, 85.0]),
        });
    }
    charts
}

pub fn monthly(r: &MonthlyReport) -> Vec<Chart> {
    if r.days.is_empty() {
        return Vec::new();
    }
    let first = r.days.first().map_or("", |d| d.day.as_str());
    let last = r.days.last().map_or("", |d| d.day.as_str());
    let used: Vec<f64> = r
        .days
        .iter()
        .map(|d| d.filesystem_used_bytes as f64)
        .collect();
    let wal: Vec<(f64, Rgb)> = r
        .days
        .iter()
        .map(|d| (d.wal_bytes as f64, PURPLE))
        .collect();
    let alerts: Vec<(f64, Rgb)> = r.days.iter().map(|d| (d.alerts as f64, WARNING)).collect();
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let wal_max = max(&wal.iter().map(|v| v.0).collect::<Vec<_>>());
    let alerts_max = alerts.iter().map(|v| v.0).fold(0.0, f64::max);
    vec![
        Chart {
            id: "filesystem-used",
            title: "Filesystem space used, whole fleet".into(),
            caption: format!("Daily, {first} to {last}; scale 0 to {}", gib(max(&used))),
            png: line(&used, BLUE),
        },
        Chart {
            id: "wal-volume",
            title: "WAL archived per day".into(),
            caption: format!("Daily, {first} to {last}; scale 0 to {}", gib(wal_max)),
            png: bars(&wal, None, &[]),
        },
        Chart {
            id: "alerts-per-day",
            title: "Alerts opened per day".into(),
            caption: format!("Daily, {first} to {last}; scale 0 to {alerts_max}"),
            png: bars(&alerts, None, &[]),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_png_images() {
        let img = bars(&[(1.0, OK), (3.0, CRITICAL)], None, &[2.0]);
        assert_eq!(&img[..8], b"\x89PNG\r\n\x1a\n");
        let img = line(&[1.0, 5.0, 2.0], BLUE);
        assert_eq!(&img[..8], b"\x89PNG\r\n\x1a\n");
        // Empty input still gives a picture.
        assert!(!bars(&[], None, &[]).is_empty() && !line(&[], BLUE).is_empty());
    }
}
