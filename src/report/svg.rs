//! A small SVG chart renderer for the HTML report: line charts on linear or logarithmic axes,
//! with grid, ticks, legend and the data in attributes a test can read back. Hand-written
//! because the chart crates either rasterise text through system fonts or pull in a browser
//! runtime; this one emits plain inline SVG with no fetches.

use super::escape::xml;
use std::fmt::Write as _;

pub struct Line {
    pub label: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

pub struct Axis {
    pub label: String,
    pub log: bool,
    pub format: fn(f64) -> String,
    /// Tick positions and labels to use instead of computed ones (in data units).
    pub ticks: Option<Vec<(f64, String)>>,
}

pub const PALETTE: [&str; 6] = [
    "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2",
];

const W: f64 = 760.0;
const H: f64 = 280.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 52.0;
const BOTTOM: f64 = 46.0;

/// Round steps for a linear axis: about five ticks.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(mag * 10.0);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 12 {
        out.push(t);
        t += step;
    }
    out
}

fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (
        lo.max(1e-12).log10().floor() as i32,
        hi.max(1e-12).log10().ceil() as i32,
    );
    (a..=b).map(|e| 10f64.powi(e)).collect()
}

/// A line chart. `id` names it for tests and anchors.
pub fn line_chart(id: &str, title: &str, x: &Axis, y: &Axis, lines: &[Line]) -> String {
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let finite = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    let xs: Vec<f64> = all().map(|p| p.0).filter(|v| finite(*v, x.log)).collect();
    let ys: Vec<f64> = all().map(|p| p.1).filter(|v| finite(*v, y.log)).collect();
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="chart" data-chart="{}" viewBox="0 0 {W} {H}" width="100%" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        xml(id),
        xml(title),
        xml(title)
    );
    let _ = write!(
        o,
        r#"<text x="{LEFT}" y="20" class="ct">{}</text>"#,
        xml(title)
    );
    if xs.is_empty() || ys.is_empty() {
        let _ = write!(
            o,
            r#"<text x="{}" y="{}" class="empty">no data</text></svg>"#,
            W / 2.0 - 30.0,
            H / 2.0
        );
        return o;
    }
    let span = |v: &[f64], log: bool| {
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if log {
            (lo, hi.max(lo * 10.0))
        } else if v.iter().all(|x| x.fract() == 0.0) && hi < 5.0 {
            // Small counts: whole-number ticks, at least 0 to 5.
            (lo.min(0.0), 5.0)
        } else if (hi - lo).abs() < 1e-12 {
            (lo.min(0.0), hi + 1.0)
        } else {
            (lo.min(0.0), hi)
        }
    };
    let (x0, x1) = match &x.ticks {
        Some(t) if !t.is_empty() => (t[0].0, t[t.len() - 1].0),
        _ => {
            let (lo, hi) = span(&xs, x.log);
            if x.log {
                (lo, hi)
            } else {
                (
                    lo,
                    linear_ticks(lo, hi).last().copied().unwrap_or(hi).max(hi),
                )
            }
        }
    };
    let (y0, y1) = span(&ys, y.log);
    let (y0, y1) = if y.log {
        (
            10f64.powf(y0.log10().floor()),
            10f64.powf(y1.log10().ceil()),
        )
    } else {
        let t = linear_ticks(y0, y1);
        (y0, t.last().copied().unwrap_or(y1).max(y1))
    };
    let tx = |v: f64| {
        let f = if x.log {
            (v.log10() - x0.log10()) / (x1.log10() - x0.log10()).max(1e-12)
        } else {
            (v - x0) / (x1 - x0).max(1e-12)
        };
        LEFT + f.clamp(0.0, 1.0) * (W - LEFT - RIGHT)
    };
    let ty = |v: f64| {
        let f = if y.log {
            (v.max(y0).log10() - y0.log10()) / (y1.log10() - y0.log10()).max(1e-12)
        } else {
            (v - y0) / (y1 - y0).max(1e-12)
        };
        H - BOTTOM - f.clamp(0.0, 1.0) * (H - TOP - BOTTOM)
    };
    let yt = if y.log {
        log_ticks(y0, y1)
    } else {
        linear_ticks(y0, y1)
    };
    for t in yt {
        let py = ty(t);
        let _ = write!(
            o,
            r#"<line x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" class="grid"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            xml(&(y.format)(t))
        );
    }
    let xt: Vec<(f64, String)> = match &x.ticks {
        Some(t) => t.clone(),
        None => (if x.log {
            log_ticks(x0, x1)
        } else {
            linear_ticks(x0, x1)
        })
        .into_iter()
        .map(|t| (t, (x.format)(t)))
        .collect(),
    };
    let last = xt.len().saturating_sub(1);
    for (k, (t, label)) in xt.into_iter().enumerate() {
        let px = tx(t);
        let anchor = if k == last && k > 0 { "end" } else { "middle" };
        let _ = write!(
            o,
            r#"<line x1="{px:.1}" x2="{px:.1}" y1="{TOP}" y2="{}" class="grid"/><text x="{px:.1}" y="{}" class="tick" text-anchor="{anchor}">{}</text>"#,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            xml(&label)
        );
    }
    let _ = write!(
        o,
        r#"<text x="{}" y="{}" class="axis" text-anchor="middle">{}</text><text x="14" y="{}" class="axis" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 8.0,
        xml(&x.label),
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        xml(&y.label)
    );
    // The legend on its own row under the title, so long titles never collide with it.
    let mut legend_x = LEFT;
    for l in lines {
        let _ = write!(
            o,
            r#"<rect x="{legend_x:.1}" y="29" width="10" height="10" fill="{}"/><text x="{:.1}" y="38" class="legend">{}</text>"#,
            l.color,
            legend_x + 14.0,
            xml(&l.label)
        );
        legend_x += 24.0 + 7.0 * l.label.chars().count() as f64;
    }
    for l in lines {
        let pts: Vec<String> = l
            .points
            .iter()
            .filter(|p| finite(p.0, x.log) && finite(p.1, y.log))
            .map(|p| format!("{:.1},{:.1}", tx(p.0), ty(p.1)))
            .collect();
        let _ = write!(
            o,
            r#"<polyline data-series="{}" data-n="{}" points="{}" fill="none" stroke="{}" stroke-width="1.8"/>"#,
            xml(&l.label),
            pts.len(),
            pts.join(" "),
            l.color
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_carry_their_series_and_ticks() {
        let axis = |log| Axis {
            label: "x".into(),
            log,
            format: |v| format!("{v}"),
            ticks: None,
        };
        let svg = line_chart(
            "t",
            "T <1>",
            &axis(false),
            &axis(true),
            &[Line {
                label: "a".into(),
                color: PALETTE[0],
                points: vec![(0.0, 1.0), (1.0, 10.0), (2.0, 1000.0)],
            }],
        );
        assert!(svg.starts_with("<svg class=\"chart\" data-chart=\"t\""));
        assert!(svg.contains("T &lt;1&gt;"));
        assert!(svg.contains(r#"data-series="a" data-n="3""#));
        assert!(svg.contains(">1000<"), "log ticks at powers of ten: {svg}");
        assert!(!svg.contains("NaN"));
        assert_eq!(
            linear_ticks(0.0, 100.0),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        let empty = line_chart("e", "E", &axis(false), &axis(false), &[]);
        assert!(empty.contains("no data"));
    }
}
