//! PNG charts for the reports: axes with ticks and units, a legend, and the limits as
//! lines, drawn with plotters into a pixel buffer and encoded with `png`.
//!
//! Why PNG and not inline SVG: Gmail and Outlook do not render SVG in mail. Why an embedded
//! font: a collector host may have no fonts at all, and the text in the picture must look the
//! same on every one; `assets/fonts/DejaVuSans-subset.ttf` (Latin-1 and a few signs, 17 KB)
//! is compiled in. The title and a caption with the numbers stay HTML around each image (alt
//! text, searchable, readable without images). Every chart is computed from the report struct,
//! so it shows the same numbers as the tables.

use super::daily::DailyReport;
use super::monthly::MonthlyReport;
use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 240;

const OK: RGBColor = RGBColor(46, 160, 67);
const WARNING: RGBColor = RGBColor(219, 171, 9);
const CRITICAL: RGBColor = RGBColor(207, 34, 46);
const UNKNOWN: RGBColor = RGBColor(130, 130, 130);
const BLUE: RGBColor = RGBColor(9, 105, 218);
const PURPLE: RGBColor = RGBColor(130, 80, 223);
const INK: RGBColor = RGBColor(50, 50, 50);
const GRID: RGBColor = RGBColor(225, 225, 225);

/// The family name the embedded font is registered under.
const FONT: &str = "backwatch-sans";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

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

/// A bar with its axis label.
struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
}

/// A limit drawn across the chart, named in the legend.
struct Limit {
    value: f64,
    color: RGBColor,
    label: String,
}

/// What the axes say: their descriptions and how a value of the y axis is written.
struct Axes<'a> {
    x: &'a str,
    y: &'a str,
    y_fmt: &'a dyn Fn(f64) -> String,
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&INK)
}

/// Draws into a white `WIDTH` × `HEIGHT` buffer and encodes it. A drawing error (none is
/// expected: no I/O, an embedded font) leaves what was drawn so far, logged.
fn picture(draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> DrawResult) -> Vec<u8> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            tracing::error!("the embedded chart font does not load; charts carry no text");
        }
    });
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        let drawn = draw(&root).and_then(|()| root.present().map_err(Into::into));
        if let Err(e) = drawn {
            tracing::warn!(error = %e, "a report chart could not be drawn completely");
        }
    }
    encode(&buf)
}

fn encode(rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    // Writing into memory cannot fail short of allocation; an empty image is the fallback
    // rather than a panic.
    let ok = enc
        .write_header()
        .and_then(|mut w| w.write_image_data(rgb).and_then(|()| w.finish()));
    if ok.is_err() {
        out.clear();
    }
    out
}

/// Every `step`-th of `n` labels, so that at most about 12 are written.
fn label_step(n: usize) -> usize {
    n.div_ceil(12).max(1)
}

/// Bars left to right with their labels under them, the y axis from 0 to `top` (at least the
/// largest value), `limits` as lines, and a legend of `legend` (colours of the bars) and the
/// limits.
fn bar_chart(
    bars: &[Bar],
    top: Option<f64>,
    limits: &[Limit],
    axes: &Axes<'_>,
    legend: &[(&str, RGBColor)],
) -> Vec<u8> {
    let max = bars
        .iter()
        .map(|b| b.value)
        .chain(limits.iter().map(|l| l.value))
        .fold(top.unwrap_or(0.0), f64::max);
    let y_top = if top.is_some() {
        max
    } else {
        (max * 1.1).max(1.0)
    };
    let n = bars.len().max(1);
    picture(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            .x_label_area_size(38)
            .y_label_area_size(76)
            // `a..b` segmented has a segment for each of a..=b: `0..n - 1` is n bars. One
            // bar gets two segments (plotters maps a single one to a point), the second empty.
            .build_cartesian_2d((0..n.max(2) - 1).into_segmented(), 0f64..y_top)?;
        let step = label_step(n);
        let x_label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if i % step == 0 => {
                bars.get(*i).map(|b| b.label.clone()).unwrap_or_default()
            }
            _ => String::new(),
        };
        draw_mesh(&mut chart, axes, n.min(40), &x_label, false)?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), b.value.max(0.0)),
                ],
                b.color.filled(),
            );
            r.set_margin(0, 0, 2, 2);
            r
        }))?;
        for (label, color) in legend {
            let color = *color;
            chart
                .draw_series(std::iter::empty::<Rectangle<(SegmentValue<usize>, f64)>>())?
                .label(*label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        for l in limits {
            let color = l.color;
            chart
                .draw_series(LineSeries::new(
                    [
                        (SegmentValue::Exact(0), l.value),
                        (SegmentValue::Last, l.value),
                    ],
                    color.stroke_width(2),
                ))?
                .label(l.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 12, y)], color.stroke_width(2))
                });
        }
        if !legend.is_empty() || !limits.is_empty() {
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    })
}

/// A line through `points` (labelled left to right), the y axis from 0 to the largest value.
fn line_chart(points: &[(String, f64)], color: RGBColor, name: &str, axes: &Axes<'_>) -> Vec<u8> {
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let y_top = (top * 1.1).max(1.0);
    let last = points.len().saturating_sub(1).max(1) as f64;
    picture(|root| {
        let mut chart = ChartBuilder::on(root)
            .margin(8)
            // Room for the last day's label, centred on the right edge.
            .margin_right(24)
            .x_label_area_size(38)
            .y_label_area_size(76)
            .build_cartesian_2d(0f64..last, 0f64..y_top)?;
        let x_label = |v: &f64| {
            let i = v.round();
            if (v - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            points
                .get(i as usize)
                .map(|p| p.0.clone())
                .unwrap_or_default()
        };
        draw_mesh(&mut chart, axes, points.len().clamp(2, 8), &x_label, true)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().enumerate().map(|(i, p)| (i as f64, p.1)),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color.stroke_width(2)));
        if points.len() == 1 {
            chart.draw_series(std::iter::once(Circle::new(
                (0.0, points[0].1),
                3,
                color.filled(),
            )))?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// Axes, their descriptions and the horizontal grid (and the vertical one, for lines), in the
/// charts' one style.
fn draw_mesh<'a, X, XT>(
    chart: &mut ChartContext<
        'a,
        BitMapBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    axes: &Axes<'_>,
    x_labels: usize,
    x_label: &dyn Fn(&XT) -> String,
    vertical_grid: bool,
) -> DrawResult
where
    X: plotters::coord::ranged1d::Ranged<ValueType = XT>
        + plotters::coord::ranged1d::ValueFormatter<XT>,
{
    let y_label = |v: &f64| (axes.y_fmt)(*v);
    let mut mesh = chart.configure_mesh();
    if !vertical_grid {
        mesh.disable_x_mesh();
    }
    mesh.light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(INK)
        .x_labels(x_labels)
        .y_labels(5)
        .x_label_formatter(x_label)
        .y_label_formatter(&y_label)
        .x_desc(axes.x)
        .y_desc(axes.y)
        .label_style(font(12))
        .axis_desc_style(font(12))
        .draw()?;
    Ok(())
}

fn draw_legend<'a, X: plotters::coord::ranged1d::Ranged, Y: plotters::coord::ranged1d::Ranged>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    at: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .label_font(font(11))
        .draw()?;
    Ok(())
}

/// The unit a byte chart plots in, chosen by its largest value so the ticks fall on round
/// numbers of it and stay short: (bytes per unit, name).
fn byte_unit(max_bytes: f64) -> (f64, &'static str) {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    UNITS
        .iter()
        .map(|&(shift, name)| (2f64.powi(shift as i32), name))
        .find(|(size, _)| max_bytes >= *size)
        .unwrap_or((1.0, "B"))
}

/// An amount already in `unit`.
fn amount(v: f64, unit: &str) -> String {
    if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

fn count(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

pub fn daily(r: &DailyReport) -> Vec<Chart> {
    let s = &r.summary;
    let status = |label: &str, v: u64, color| Bar {
        label: label.into(),
        value: v as f64,
        color,
    };
    let counts = [
        status("ok", s.hosts_ok, OK),
        status("warning", s.hosts_warning, WARNING),
        status("critical", s.hosts_critical, CRITICAL),
        status("unknown", s.hosts_unknown, UNKNOWN),
    ];
    let axes = Axes {
        x: "status",
        y: "hosts",
        y_fmt: &count,
    };
    let mut charts = vec![Chart {
        id: "hosts-by-status",
        title: "Hosts by status".into(),
        caption: format!(
            "Bars, left to right: ok {}, warning {}, critical {}, unknown {}",
            s.hosts_ok, s.hosts_warning, s.hosts_critical, s.hosts_unknown
        ),
        png: bar_chart(&counts, None, &[], &axes, &[]),
    }];
    let fs: Vec<_> = r
        .storage
        .iter()
        .filter(|l| l.kind == "filesystem" && l.used_pct.is_some())
        .take(40)
        .collect();
    if !fs.is_empty() {
        let bars: Vec<Bar> = fs
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let p = l.used_pct.unwrap_or(0.0);
                let color = if p > 85.0 {
                    CRITICAL
                } else if p > 75.0 {
                    WARNING
                } else {
                    OK
                };
                Bar {
                    label: (i + 1).to_string(),
                    value: p,
                    color,
                }
            })
            .collect();
        let limits = [
            Limit {
                value: 75.0,
                color: WARNING,
                label: "warning 75 %".into(),
            },
            Limit {
                value: 85.0,
                color: CRITICAL,
                label: "critical 85 %".into(),
            },
        ];
        let axes = Axes {
            x: "filesystem (numbered as in the caption), fullest first",
            y: "used %",
            y_fmt: &|v| format!("{v:.0} %"),
        };
        charts.push(Chart {
            id: "filesystem-use",
            title: "Backup and archive filesystems, % used".into(),
            caption: format!(
                "{} fullest filesystems, fullest first ({}), scale 0–100 %, lines at 75 % and 85 %",
                fs.len(),
                fs.iter()
                    .enumerate()
                    .map(|(i, l)| format!("{} {} {}", i + 1, l.host, l.check))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            png: bar_chart(&bars, Some(100.0), &limits, &axes, &[]),
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
    // `YYYY-MM-DD` -> `MM-DD` under the axis; the caption has the full dates.
    let short = |day: &str| day.get(5..).unwrap_or(day).to_string();
    let most = |f: fn(&super::monthly::DayPoint) -> i64| {
        r.days.iter().map(|d| f(d) as f64).fold(0.0, f64::max)
    };
    let (used_top, wal_top) = (most(|d| d.filesystem_used_bytes), most(|d| d.wal_bytes));
    let (used_size, used_unit) = byte_unit(used_top);
    let (wal_size, wal_unit) = byte_unit(wal_top);
    let used: Vec<(String, f64)> = r
        .days
        .iter()
        .map(|d| (short(&d.day), d.filesystem_used_bytes as f64 / used_size))
        .collect();
    let wal: Vec<Bar> = r
        .days
        .iter()
        .map(|d| Bar {
            label: short(&d.day),
            value: d.wal_bytes as f64 / wal_size,
            color: PURPLE,
        })
        .collect();
    let alerts: Vec<Bar> = r
        .days
        .iter()
        .map(|d| Bar {
            label: short(&d.day),
            value: d.alerts as f64,
            color: WARNING,
        })
        .collect();
    let alerts_max = r.days.iter().map(|d| d.alerts).max().unwrap_or(0);
    let used_fmt = |v: f64| amount(v, used_unit);
    let wal_fmt = |v: f64| amount(v, wal_unit);
    vec![
        Chart {
            id: "filesystem-used",
            title: "Filesystem space used, whole fleet".into(),
            caption: format!(
                "Daily, {first} to {last}; highest {}",
                amount(used_top / used_size, used_unit)
            ),
            png: line_chart(
                &used,
                BLUE,
                "used, all filesystems",
                &Axes {
                    x: "day (UTC)",
                    y: "used",
                    y_fmt: &used_fmt,
                },
            ),
        },
        Chart {
            id: "wal-volume",
            title: "WAL archived per day".into(),
            caption: format!(
                "Daily, {first} to {last}; highest {}",
                amount(wal_top / wal_size, wal_unit)
            ),
            png: bar_chart(
                &wal,
                None,
                &[],
                &Axes {
                    x: "day (UTC)",
                    y: "archived",
                    y_fmt: &wal_fmt,
                },
                &[("WAL archived", PURPLE)],
            ),
        },
        Chart {
            id: "alerts-per-day",
            title: "Alerts opened per day".into(),
            caption: format!("Daily, {first} to {last}; highest {alerts_max}"),
            png: bar_chart(
                &alerts,
                None,
                &[],
                &Axes {
                    x: "day (UTC)",
                    y: "alerts",
                    y_fmt: &count,
                },
                &[("alerts opened", WARNING)],
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RGB pixels of a chart's PNG.
    fn pixels(png_bytes: &[u8]) -> Vec<u8> {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        buf
    }

    /// Dark pixels (text, axes, ticks) in the rectangle `x0..x1` × `y0..y1` of a PNG.
    fn ink(png_bytes: &[u8], (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
        let buf = pixels(png_bytes);
        let mut dark = 0;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = ((y * WIDTH + x) * 3) as usize;
                if buf[i..i + 3].iter().all(|c| *c < 110) {
                    dark += 1;
                }
            }
        }
        dark
    }

    fn axes() -> Axes<'static> {
        Axes {
            x: "status",
            y: "hosts",
            y_fmt: &count,
        }
    }

    #[test]
    fn bar_charts_carry_tick_labels_axis_names_and_a_legend() {
        let bars = [
            Bar {
                label: "ok".into(),
                value: 12.0,
                color: OK,
            },
            Bar {
                label: "critical".into(),
                value: 3.0,
                color: CRITICAL,
            },
        ];
        let limit = [Limit {
            value: 10.0,
            color: CRITICAL,
            label: "critical 10".into(),
        }];
        let img = bar_chart(&bars, None, &limit, &axes(), &[("hosts", OK)]);
        assert_eq!(&img[..8], b"\x89PNG\r\n\x1a\n");
        // The y axis's numbers and name left of the plot, the bar labels and x name under it,
        // the legend's text in the upper right corner.
        assert!(
            ink(&img, (0, 82), (10, HEIGHT - 40)) > 40,
            "no y axis labels"
        );
        assert!(
            ink(&img, (90, WIDTH), (HEIGHT - 36, HEIGHT)) > 40,
            "no x axis labels"
        );
        assert!(
            ink(&img, (WIDTH - 200, WIDTH), (8, 60)) > 20,
            "no legend text"
        );
        // The same chart without a legend leaves that corner to the plot.
        let bare = bar_chart(&bars, None, &[], &axes(), &[]);
        assert!(
            ink(&bare, (WIDTH - 200, WIDTH), (8, 60)) < ink(&img, (WIDTH - 200, WIDTH), (8, 60))
        );
    }

    #[test]
    fn a_single_bar_is_drawn_as_a_bar() {
        let one = [Bar {
            label: "1".into(),
            value: 80.0,
            color: CRITICAL,
        }];
        let img = bar_chart(&one, Some(100.0), &[], &axes(), &[]);
        // Red fill across the left half of the plot, not a sliver.
        let buf = pixels(&img);
        let red = |x0, x1| {
            let y = HEIGHT / 2;
            (x0..x1)
                .filter(|x| {
                    let i = ((y * WIDTH + x) * 3) as usize;
                    buf[i..i + 3] == [CRITICAL.0, CRITICAL.1, CRITICAL.2]
                })
                .count()
        };
        assert!(
            red(100, 340) > 200,
            "the bar is not drawn across its segment"
        );
    }

    #[test]
    fn line_charts_label_their_days_and_empty_input_still_draws() {
        let pts: Vec<(String, f64)> = (1..=30)
            .map(|d| (format!("03-{d:02}"), d as f64 * 1.5))
            .collect();
        let img = line_chart(
            &pts,
            BLUE,
            "used",
            &Axes {
                x: "day",
                y: "used",
                y_fmt: &|v| amount(v, "GiB"),
            },
        );
        assert!(
            ink(&img, (90, WIDTH), (HEIGHT - 36, HEIGHT)) > 40,
            "no day labels"
        );
        assert!(!bar_chart(&[], None, &[], &axes(), &[]).is_empty());
        assert!(!line_chart(&[], BLUE, "x", &axes()).is_empty());
    }

    #[test]
    fn axis_numbers_read_as_units() {
        assert_eq!(amount(1.5, "GiB"), "1.5 GiB");
        assert_eq!(amount(250.4, "GiB"), "250 GiB");
        assert_eq!(amount(5.0, "TiB"), "5 TiB");
        assert_eq!(byte_unit(15_000.0 * 2f64.powi(30)), (2f64.powi(40), "TiB"));
        assert_eq!(byte_unit(3.0 * 2f64.powi(30)), (2f64.powi(30), "GiB"));
        assert_eq!(byte_unit(0.0), (1.0, "B"));
        assert_eq!(count(3.0), "3");
        assert_eq!(count(2.5), "");
    }
}
