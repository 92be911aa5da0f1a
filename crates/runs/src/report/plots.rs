//! The report's PNG figures, drawn with plotters' bitmap backend and a font
//! the binary carries (egui's Ubuntu Light, registered with plotters'
//! `ab_glyph` text renderer), so no system font or fontconfig is needed.

use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

use crate::error::RunsError;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 480;
const FONT: &str = "sans-serif";

/// Registers the bundled font once per process.
fn font() -> Result<(), RunsError> {
    static LOADED: OnceLock<bool> = OnceLock::new();
    let loaded = *LOADED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .is_ok()
    });
    if loaded { Ok(()) } else { Err(RunsError::Font) }
}

/// A drawing error of the figure at `path`.
fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> RunsError + '_ {
    move |e| RunsError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

const BLUE: RGBColor = RGBColor(40, 110, 220);
const ORANGE: RGBColor = RGBColor(240, 140, 30);
const GREEN: RGBColor = RGBColor(40, 160, 80);
const GREY: RGBColor = RGBColor(170, 190, 220);

/// The range of `values` with a margin, never empty.
fn span(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        return (
            lo - 0.5_f64.max(lo.abs() * 0.1),
            hi + 0.5_f64.max(hi.abs() * 0.1),
        );
    }
    let m = (hi - lo) * 0.05;
    (if log { lo * 0.9 } else { lo - m }, hi + m)
}

/// One named series of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub colour: RGBColor,
    /// Thin line (raw, noisy) or bold (smooth curves only: plotters joins
    /// wide strokes with mitres, which spike at a noisy curve's sharp
    /// turns); with `dots`, markers too.
    pub bold: bool,
    pub dots: bool,
}

/// A line chart of `series` against a shared x axis.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), RunsError> {
    font()?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let (x0, x1) = span(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        false,
    );
    let (y0, y1) = span(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        false,
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err(path))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(err(path))?;
    for s in series {
        let style = ShapeStyle::from(&s.colour).stroke_width(if s.bold { 2 } else { 1 });
        let c = s.colour;
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(err(path))?
            .label(s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        if s.dots {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, ShapeStyle::from(&c).filled())),
                )
                .map_err(err(path))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// Training loss (raw and smoothed) and validation loss by step.
pub fn loss_chart(
    path: &Path,
    raw: Vec<(f64, f64)>,
    smoothed: Vec<(f64, f64)>,
    val: Vec<(f64, f64)>,
) -> Result<(), RunsError> {
    line_chart(
        path,
        "Loss",
        "step",
        "loss (nats/token)",
        &[
            Series {
                name: "train (raw)",
                points: raw,
                colour: GREY,
                bold: false,
                dots: false,
            },
            Series {
                name: "train (smoothed)",
                points: smoothed,
                colour: BLUE,
                bold: true,
                dots: false,
            },
            Series {
                name: "validation",
                points: val,
                colour: ORANGE,
                bold: true,
                dots: true,
            },
        ],
    )
}

/// Learning rate and gradient norm by step, one above the other.
pub fn lr_grad_chart(
    path: &Path,
    lr: Vec<(f64, f64)>,
    grad: Vec<(f64, f64)>,
) -> Result<(), RunsError> {
    font()?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let halves = root.split_evenly((2, 1));
    // The noisy gradient norm is drawn 1 px wide (see `Series::bold`).
    for (area, (name, points, colour, width)) in halves.iter().zip([
        ("learning rate", lr, GREEN, 2),
        ("gradient norm (before clipping)", grad, BLUE, 1),
    ]) {
        let (x0, x1) = span(points.iter().map(|p| p.0), false);
        let (y0, y1) = span(points.iter().map(|p| p.1), false);
        let mut chart = ChartBuilder::on(area)
            .caption(name, (FONT, 18))
            .margin(8)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err(path))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .y_label_formatter(&|v| format!("{v:.3e}"))
            .draw()
            .map_err(err(path))?;
        chart
            .draw_series(LineSeries::new(
                points,
                ShapeStyle::from(&colour).stroke_width(width),
            ))
            .map_err(err(path))?;
    }
    root.present().map_err(err(path))?;
    Ok(())
}

/// Per-sphere bars: sequences computed and busy share (load balance).
pub fn sphere_bars(path: &Path, sequences: &[u64], busy: &[f64]) -> Result<(), RunsError> {
    font()?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err(path))?;
    let halves = root.split_evenly((1, 2));
    let n = sequences.len().max(1);
    let bars = |area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
                title: &str,
                y_label: &str,
                values: Vec<f64>,
                top: f64,
                colour: RGBColor|
     -> Result<(), RunsError> {
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            // An integer range's segments include its end: 0..n-1 is n bars.
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)
            .map_err(err(path))?;
        chart
            .configure_mesh()
            .x_desc("sphere")
            .y_desc(y_label)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => i.to_string(),
                _ => String::new(),
            })
            .draw()
            .map_err(err(path))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    ShapeStyle::from(&colour).filled(),
                );
                bar.set_margin(0, 0, 6, 6);
                bar
            }))
            .map_err(err(path))?;
        Ok(())
    };
    let seqs: Vec<f64> = sequences.iter().map(|&s| s as f64).collect();
    let top = seqs.iter().copied().fold(1.0, f64::max) * 1.1;
    bars(
        &halves[0],
        "Sequences per sphere",
        "sequences",
        seqs,
        top,
        BLUE,
    )?;
    let busy_pct: Vec<f64> = busy.iter().map(|b| b * 100.0).collect();
    bars(
        &halves[1],
        "Busy share per sphere",
        "busy (%)",
        busy_pct,
        100.0,
        ORANGE,
    )?;
    root.present().map_err(err(path))?;
    Ok(())
}

/// The sphere view as the app draws it: the root in the centre, its
/// children in a ring (deeper levels in outer rings), each circle shaded
/// by its busy share and labelled with its sequence count. Drawn from the
/// logged per-sphere figures (the egui widget needs a window to render).
pub fn sphere_view(path: &Path, sequences: &[u64], busy: &[f64]) -> Result<(), RunsError> {
    font()?;
    let size = 640u32;
    let root = BitMapBackend::new(path, (size, size)).into_drawing_area();
    root.fill(&RGBColor(24, 26, 32)).map_err(err(path))?;
    let n = sequences.len();
    let c = size as f64 / 2.0;
    // Position of sphere i: level 0 at the centre, level L ring of radius
    // L * step, spread evenly over the spheres of that level.
    let level_of = |i: usize| {
        let mut level = 0;
        let mut id = i;
        while id > 0 {
            id = (id - 1) / 12;
            level += 1;
        }
        level
    };
    let levels = (0..n).map(level_of).max().unwrap_or(0);
    let ring = if levels == 0 {
        0.0
    } else {
        (c - 100.0) / levels as f64
    };
    // Level 1 evenly round the root; deeper spheres side by side centred
    // on their parent's direction, so a subtree stays together (as in the
    // app's view), spaced for circles as large as level 1's.
    let level1 = (1..n).filter(|&i| level_of(i) == 1).count().max(1);
    let target_r = ring * (std::f64::consts::PI / level1.max(2) as f64).sin() * 0.8;
    let mut angle = vec![0.0f64; n];
    let mut pos = vec![(c, c); n];
    for level in 1..=levels {
        let r = ring * level as f64;
        for parent in (0..n).filter(|&p| level_of(p) == level - 1) {
            let kids: Vec<usize> = (1..n).filter(|&i| (i - 1) / 12 == parent).collect();
            let len = kids.len() as f64;
            let step = if level == 1 {
                std::f64::consts::TAU / len
            } else {
                (2.2 * target_r / r).min(std::f64::consts::TAU / len)
            };
            for (k, &i) in kids.iter().enumerate() {
                angle[i] = if level == 1 {
                    -std::f64::consts::FRAC_PI_2 + step * k as f64
                } else {
                    angle[parent] + step * (k as f64 - (len - 1.0) / 2.0)
                };
                pos[i] = (c + r * angle[i].cos(), c + r * angle[i].sin());
            }
        }
    }
    let px = |p: (f64, f64)| (p.0 as i32, p.1 as i32);
    for i in 1..n {
        let parent = (i - 1) / 12;
        root.draw(&PathElement::new(
            vec![px(pos[i]), px(pos[parent])],
            RGBColor(90, 95, 110),
        ))
        .map_err(err(path))?;
    }
    // As large as the closest pair allows without overlap.
    let mut radius: f64 = if n <= 1 { 60.0 } else { ring * 0.42 };
    for i in 0..n {
        for j in i + 1..n {
            let d = ((pos[i].0 - pos[j].0).powi(2) + (pos[i].1 - pos[j].1).powi(2)).sqrt();
            radius = radius.min(d * 0.45);
        }
    }
    let radius = radius.clamp(8.0, 60.0) as i32;
    for i in 0..n {
        let b = busy.get(i).copied().unwrap_or(0.0).clamp(0.0, 1.0);
        // Idle grey to busy green, as the app's palette fades.
        let shade = RGBColor(
            (70.0 + (60.0 - 70.0) * b) as u8,
            (75.0 + (200.0 - 75.0) * b) as u8,
            (85.0 + (110.0 - 85.0) * b) as u8,
        );
        root.draw(&Circle::new(px(pos[i]), radius, shade.filled()))
            .map_err(err(path))?;
        root.draw(&Circle::new(px(pos[i]), radius, WHITE.stroke_width(1)))
            .map_err(err(path))?;
        let label = format!("#{i}\n{}", sequences[i]);
        for (k, line) in label.lines().enumerate() {
            let style = TextStyle::from((FONT, 14).into_font()).color(&WHITE).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ),
            );
            let (x, y) = px(pos[i]);
            root.draw(&Text::new(
                line.to_string(),
                (x, y - 8 + 16 * k as i32),
                style,
            ))
            .map_err(err(path))?;
        }
    }
    root.draw(&Text::new(
        "sphere view: shade = busy share, number = sequences",
        (12, size as i32 - 26),
        TextStyle::from((FONT, 15).into_font()).color(&RGBColor(200, 200, 210)),
    ))
    .map_err(err(path))?;
    root.present().map_err(err(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_figure_draws_with_the_bundled_font_and_a_deep_tree() {
        let dir = tempfile::tempdir().unwrap();
        // 20 spheres: the root, 12 children, 7 grandchildren.
        let seqs: Vec<u64> = (0..20).map(|i| 100 + i).collect();
        let busy: Vec<f64> = (0..20).map(|i| i as f64 / 20.0).collect();
        let view = dir.path().join("view.png");
        sphere_view(&view, &seqs, &busy).unwrap();
        let bars = dir.path().join("bars.png");
        sphere_bars(&bars, &seqs, &busy).unwrap();
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 5.0 - i as f64 / 20.0)).collect();
        let loss = dir.path().join("loss.png");
        loss_chart(&loss, pts.clone(), pts.clone(), Vec::new()).unwrap();
        let lr = dir.path().join("lr.png");
        lr_grad_chart(&lr, pts.clone(), pts).unwrap();
        for p in [view, bars, loss, lr] {
            let bytes = std::fs::read(&p).unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{}", p.display());
            if let Some(keep) = std::env::var_os("CLLM_KEEP_PLOTS") {
                std::fs::copy(&p, std::path::Path::new(&keep).join(p.file_name().unwrap()))
                    .unwrap();
            }
        }
    }
}
