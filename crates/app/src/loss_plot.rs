//! The loss graph: history of training/validation loss (and the
//! validation loss with the repository memory), learning rate, gradient
//! norm and the code check's syntax accuracy per step, exponential smoothing, min/max downsampling for
//! long runs, and the egui_plot drawing with its controls.

use super::settings::PlotSettings;
use cllm_train::events::{EvalStats, StepStats};
use eframe::egui;
use egui::Color32;
use egui_plot::{HoverPosition, Legend, Line, Plot, PlotPoints, Points};

/// Points drawn per series at most; long runs are reduced to this.
pub const MAX_DRAWN_POINTS: usize = 1500;

/// Every value received, as (step, value) pairs in arrival order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossHistory {
    pub train: Vec<[f64; 2]>,
    pub val: Vec<[f64; 2]>,
    /// Validation loss of the transformer mixed with the repository memory.
    pub val_memory: Vec<[f64; 2]>,
    /// The code check's syntax accuracy (closed and parses), percent.
    pub syntax: Vec<[f64; 2]>,
    pub lr: Vec<[f64; 2]>,
    pub grad_norm: Vec<[f64; 2]>,
    /// The smoothed training curve, extended as points arrive so a long
    /// run is not re-smoothed from the start every frame.
    smoothed: SmoothCache,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct SmoothCache {
    alpha: f64,
    avg: f64,
    weight: f64,
    points: Vec<[f64; 2]>,
}

impl LossHistory {
    /// The training loss smoothed with `alpha` (same values as
    /// [`smooth`]); only new points are computed unless `alpha` changed.
    pub fn smoothed(&mut self, alpha: f64) -> &[[f64; 2]] {
        let alpha = alpha.clamp(0.0, 0.999);
        let c = &mut self.smoothed;
        if c.alpha != alpha || c.points.len() > self.train.len() {
            *c = SmoothCache {
                alpha,
                ..SmoothCache::default()
            };
        }
        for &[x, y] in &self.train[c.points.len()..] {
            c.avg = alpha * c.avg + (1.0 - alpha) * y;
            c.weight = alpha * c.weight + (1.0 - alpha);
            c.points.push([x, c.avg / c.weight]);
        }
        &c.points
    }

    pub fn push_step(&mut self, s: &StepStats) {
        let x = s.step as f64;
        // Non-finite losses (skipped NaN steps) would break bounds and
        // smoothing; the warning notice reports them instead.
        if s.loss.is_finite() {
            self.train.push([x, s.loss as f64]);
        }
        if s.lr.is_finite() {
            self.lr.push([x, s.lr as f64]);
        }
        if s.grad_norm.is_finite() {
            self.grad_norm.push([x, s.grad_norm as f64]);
        }
    }

    pub fn push_eval(&mut self, e: &EvalStats) {
        let x = e.step as f64;
        if e.loss.is_finite() {
            self.val.push([x, e.loss as f64]);
        }
        if let Some(l) = e.loss_with_memory.filter(|l| l.is_finite()) {
            self.val_memory.push([x, l as f64]);
        }
        if let Some(a) = e.syntax_accuracy.filter(|a| a.is_finite()) {
            self.syntax.push([x, 100.0 * a]);
        }
    }
}

/// Exponential moving average with weight `alpha` on the past, debiased
/// at the start (as Adam does) so the curve does not begin at zero.
pub fn smooth(points: &[[f64; 2]], alpha: f64) -> Vec<[f64; 2]> {
    let alpha = alpha.clamp(0.0, 0.999);
    let mut avg = 0.0;
    let mut weight = 0.0;
    points
        .iter()
        .map(|&[x, y]| {
            avg = alpha * avg + (1.0 - alpha) * y;
            weight = alpha * weight + (1.0 - alpha);
            [x, avg / weight]
        })
        .collect()
}

/// Reduces `points` to at most `max` points (max >= 4) by splitting them
/// into buckets and keeping each bucket's lowest and highest value in step
/// order, so spikes stay visible. Short series come back unchanged.
pub fn downsample(points: &[[f64; 2]], max: usize) -> Vec<[f64; 2]> {
    let max = max.max(4);
    if points.len() <= max {
        return points.to_vec();
    }
    let buckets = max / 2;
    let mut out = Vec::with_capacity(buckets * 2);
    for b in 0..buckets {
        let lo = b * points.len() / buckets;
        let hi = (b + 1) * points.len() / buckets;
        let chunk = &points[lo..hi];
        let (mut imin, mut imax) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p[1] < chunk[imin][1] {
                imin = i;
            }
            if p[1] > chunk[imax][1] {
                imax = i;
            }
        }
        let (a, c) = if imin <= imax {
            (imin, imax)
        } else {
            (imax, imin)
        };
        out.push(chunk[a]);
        if c != a {
            out.push(chunk[c]);
        }
    }
    out
}

/// log10 of y for the log-scale view (values <= 0 are dropped).
fn to_log(points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    points
        .into_iter()
        .filter(|p| p[1] > 0.0)
        .map(|[x, y]| [x, y.log10()])
        .collect()
}

/// The series as they will be drawn: downsampled, smoothed, maybe logged.
#[derive(Debug, PartialEq)]
pub struct DrawnSeries {
    pub raw: Vec<[f64; 2]>,
    pub smoothed: Vec<[f64; 2]>,
    pub val: Vec<[f64; 2]>,
    pub val_memory: Vec<[f64; 2]>,
}

pub fn prepare(history: &mut LossHistory, settings: &PlotSettings) -> DrawnSeries {
    // Smooth over every point first, then thin, so the bold curve does not
    // depend on where the buckets fall.
    let smoothed = downsample(
        history.smoothed(settings.smoothing as f64),
        MAX_DRAWN_POINTS,
    );
    let raw = downsample(&history.train, MAX_DRAWN_POINTS);
    let val = downsample(&history.val, MAX_DRAWN_POINTS);
    let val_memory = downsample(&history.val_memory, MAX_DRAWN_POINTS);
    if settings.log_scale {
        DrawnSeries {
            raw: to_log(raw),
            smoothed: to_log(smoothed),
            val: to_log(val),
            val_memory: to_log(val_memory),
        }
    } else {
        DrawnSeries {
            raw,
            smoothed,
            val,
            val_memory,
        }
    }
}

const TRAIN_COLOUR: Color32 = Color32::from_rgb(80, 160, 255);
const VAL_COLOUR: Color32 = Color32::from_rgb(255, 170, 60);
const MEMORY_COLOUR: Color32 = Color32::from_rgb(230, 90, 90);
const SYNTAX_COLOUR: Color32 = Color32::from_rgb(120, 200, 220);

/// Controls above the graph.
pub fn plot_controls_ui(ui: &mut egui::Ui, s: &mut PlotSettings) {
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Smoothing");
        ui.add(egui::Slider::new(&mut s.smoothing, 0.0..=0.99).fixed_decimals(2))
            .labelled_by(label.id)
            .on_hover_text("Weight of the past in the bold curve (0 = raw)");
        ui.checkbox(&mut s.log_scale, "Log scale");
        ui.checkbox(&mut s.follow, "Follow newest");
        ui.checkbox(&mut s.show_lr, "Show learning rate");
        ui.checkbox(&mut s.show_grad_norm, "Show gradient norm");
        ui.checkbox(&mut s.show_syntax, "Show syntax accuracy")
            .on_hover_text(
                "The code check's completions of function openings that close and parse as C \
                 (runs with a code check, at each evaluation)",
            );
    });
}

/// The loss graph, then the optional learning-rate and gradient-norm graphs
/// sharing its step axis.
pub fn loss_plot_ui(ui: &mut egui::Ui, history: &mut LossHistory, s: &mut PlotSettings) {
    plot_controls_ui(ui, s);
    let drawn = prepare(history, s);
    if history.train.is_empty() {
        ui.weak("Training and validation loss appear here once training starts.");
    }
    let show_syntax = s.show_syntax && !history.syntax.is_empty();
    let extra = usize::from(s.show_lr) + usize::from(s.show_grad_norm) + usize::from(show_syntax);
    // Measured after everything above the graphs: asking a resizable panel
    // for more than it has makes it grow every frame.
    let total_h = ui.available_height().max(60.0);
    // The loss keeps 60% of the height, and at least 120 points where the
    // small graphs below can still have 30 each.
    let main_h = if extra == 0 {
        total_h
    } else {
        let room_for_extras = 30.0 * extra as f32;
        (total_h * 0.6).max(120.0f32.min(total_h - room_for_extras))
    };
    let extra_h = if extra == 0 {
        0.0
    } else {
        (total_h - main_h) / extra as f32 - 4.0
    };
    let link = egui::Id::unique("loss_plot_x");
    let log = s.log_scale;
    let follow = s.follow;
    let smoothed_colour = TRAIN_COLOUR;
    let raw_colour = TRAIN_COLOUR.gamma_multiply(0.3);
    // An empty graph still shows a sensible frame: steps from 0, losses of
    // a fresh model (a few nats).
    let mut plot = Plot::new("loss_plot");
    if history.train.is_empty() {
        let top = if log { 1.0 } else { 8.0 };
        plot = plot
            .include_x(0.0)
            .include_x(100.0)
            .include_y(0.0)
            .include_y(top);
    }
    plot.height(main_h)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label(if log {
            "loss (log10)"
        } else {
            "loss (nats/token)"
        })
        .link_axis(link, [true, false])
        .y_axis_formatter(move |mark, _| {
            if log {
                format!("{:.3}", 10f64.powf(mark.value))
            } else {
                format!("{:.2}", mark.value)
            }
        })
        .label_formatter(move |hover| {
            let (name, p) = match hover {
                HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, *position),
                HoverPosition::Elsewhere { position } => ("", *position),
            };
            let y = if log { 10f64.powf(p.y) } else { p.y };
            Some(format!("{name}\nstep {:.0}\n{y:.4}", p.x))
        })
        .show(ui, |plot| {
            if follow {
                plot.set_auto_bounds(true);
            }
            plot.line(
                Line::new("train (raw)", PlotPoints::from(drawn.raw))
                    .color(raw_colour)
                    .width(1.0),
            );
            plot.line(
                Line::new("train (smoothed)", PlotPoints::from(drawn.smoothed))
                    .color(smoothed_colour)
                    .width(2.5),
            );
            if !drawn.val.is_empty() {
                plot.line(
                    Line::new("validation", PlotPoints::from(drawn.val.clone()))
                        .color(VAL_COLOUR)
                        .width(2.0),
                );
                plot.points(
                    Points::new("validation", PlotPoints::from(drawn.val))
                        .color(VAL_COLOUR)
                        .radius(3.0),
                );
            }
            if !drawn.val_memory.is_empty() {
                let name = "validation with memory";
                plot.line(
                    Line::new(name, PlotPoints::from(drawn.val_memory.clone()))
                        .color(MEMORY_COLOUR)
                        .width(2.0),
                );
                plot.points(
                    Points::new(name, PlotPoints::from(drawn.val_memory))
                        .color(MEMORY_COLOUR)
                        .radius(3.0),
                );
            }
        });
    let small = |ui: &mut egui::Ui, id: &str, name: &str, data: &[[f64; 2]], colour: Color32| {
        Plot::new(id)
            .height(extra_h)
            .link_axis(link, [true, false])
            .y_axis_label(name)
            .show(ui, |plot| {
                if follow {
                    plot.set_auto_bounds(true);
                }
                plot.line(
                    Line::new(name, PlotPoints::from(downsample(data, MAX_DRAWN_POINTS)))
                        .color(colour),
                );
            });
    };
    if s.show_lr {
        small(
            ui,
            "lr_plot",
            "learning rate",
            &history.lr,
            Color32::from_rgb(140, 220, 140),
        );
    }
    if s.show_grad_norm {
        small(
            ui,
            "grad_plot",
            "gradient norm",
            &history.grad_norm,
            Color32::from_rgb(220, 140, 220),
        );
    }
    if show_syntax {
        small(
            ui,
            "syntax_plot",
            "syntax accuracy (%)",
            &history.syntax,
            SYNTAX_COLOUR,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_matches_a_hand_computed_average() {
        let pts = [[0.0, 4.0], [1.0, 2.0], [2.0, 8.0]];
        let s = smooth(&pts, 0.5);
        // Debiased EMA with alpha 0.5, by hand:
        // step0: avg=0.5*4=2, w=0.5 -> 4
        // step1: avg=1+1=2, w=0.75 -> 2.6667
        // step2: avg=1+4=5, w=0.875 -> 5.7143
        let expected = [4.0, 2.0 / 0.75, 5.0 / 0.875];
        for (p, e) in s.iter().zip(expected) {
            assert!((p[1] - e).abs() < 1e-12, "{p:?} vs {e}");
        }
        assert_eq!(smooth(&pts, 0.0), pts.to_vec());
    }

    #[test]
    fn incremental_smoothing_matches_the_full_pass() {
        let mut h = LossHistory::default();
        for i in 0..50 {
            h.train.push([i as f64, ((i * 7) % 11) as f64]);
            if i % 9 == 0 {
                let expected = smooth(&h.train, 0.8);
                assert_eq!(h.smoothed(0.8), expected.as_slice());
            }
        }
        let expected = smooth(&h.train, 0.3);
        assert_eq!(h.smoothed(0.3), expected.as_slice());
        h.train.truncate(10);
        let expected = smooth(&h.train, 0.3);
        assert_eq!(h.smoothed(0.3), expected.as_slice());
    }

    #[test]
    fn evaluations_feed_the_memory_and_syntax_series() {
        let mut h = LossHistory::default();
        let eval = |step, loss_with_memory, syntax_accuracy| EvalStats {
            step,
            loss: 2.5,
            loss_with_memory,
            syntax_accuracy,
            ..EvalStats::default()
        };
        h.push_eval(&eval(10, Some(1.5), Some(0.25)));
        h.push_eval(&eval(20, None, None));
        h.push_eval(&eval(30, Some(f32::NAN), Some(0.5)));
        assert_eq!(h.val, vec![[10.0, 2.5], [20.0, 2.5], [30.0, 2.5]]);
        assert_eq!(h.val_memory, vec![[10.0, 1.5]]);
        assert_eq!(h.syntax, vec![[10.0, 25.0], [30.0, 50.0]]);
        let drawn = prepare(&mut h, &PlotSettings::default());
        assert_eq!(drawn.val_memory, vec![[10.0, 1.5]]);
    }

    #[test]
    fn downsampling_keeps_extremes_and_order() {
        let pts: Vec<[f64; 2]> = (0..10_000)
            .map(|i| [i as f64, ((i * 37) % 101) as f64])
            .collect();
        let mut spiky = pts.clone();
        spiky[7777][1] = 1e6;
        let d = downsample(&spiky, 500);
        assert!(d.len() <= 500);
        assert!(d.iter().any(|p| p[1] == 1e6), "the spike survives");
        assert!(
            d.windows(2).all(|w| w[0][0] < w[1][0]),
            "steps stay increasing"
        );
        let short = &pts[..100];
        assert_eq!(downsample(short, 500), short.to_vec());
    }
}
