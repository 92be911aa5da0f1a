//! The sphere view: the worker tree drawn as circles. The root sits in the
//! centre, its children on a ring around it, deeper levels on outer rings
//! inside their parent's angular sector, with a line from each child to its
//! parent. Colour shows how busy a sphere is; the label is its batch count;
//! a pulsing ring marks spheres that are reducing gradients.

use super::palette::busy_colour;
use cllm_train::events::{SphereState, SphereStats};
use cllm_train::spheres::{children_of, level_of, parent_of};
use eframe::egui;
use egui::{Color32, Pos2, Stroke, Vec2};
use std::f32::consts::TAU;

/// Leaves under `id` (itself when it has no children): sets each sector's
/// share so crowded subtrees get more of the circle.
fn leaves(id: usize, n: usize) -> usize {
    let kids = children_of(id, n);
    if kids.is_empty() {
        1
    } else {
        kids.map(|c| leaves(c, n)).sum()
    }
}

/// Positions of `n` spheres in ring units (ring k at radius k), root at the
/// origin. Each sphere gets an angular sector sized by the leaves under it
/// and sits in its middle, so lines to the parent stay short and radial;
/// crowded rings alternate between two radii.
pub fn layout(n: usize) -> Vec<Vec2> {
    let mut pos = vec![Vec2::ZERO; n];
    if n <= 1 {
        return pos;
    }
    // Level-1 spheres get at least three leaves' worth of the circle so the
    // inner ring stays evenly readable when only a few of them have children.
    let weight = |c: usize| leaves(c, n).max(3);
    let total: usize = children_of(0, n).map(weight).sum();
    // The first child's sector is centred straight above the root.
    let first = TAU * weight(1) as f32 / total as f32;
    let mut start = -TAU / 4.0 - first / 2.0;
    for c in children_of(0, n) {
        let span = TAU * weight(c) as f32 / total as f32;
        pos[c] = Vec2::angled(start + span / 2.0);
        place_children(c, n, start, start + span, &mut pos);
        start += span;
    }
    pos
}

fn place_children(id: usize, n: usize, a0: f32, a1: f32, pos: &mut [Vec2]) {
    let kids = children_of(id, n);
    if kids.is_empty() {
        return;
    }
    let radius = (level_of(id) + 1) as f32;
    let total: usize = kids.clone().map(|c| leaves(c, n)).sum();
    let per_leaf = (a1 - a0) / total as f32;
    // Too little arc per sphere: stagger every other one outward.
    let crowded = per_leaf * radius < 0.5;
    let mut start = a0;
    for (i, c) in kids.enumerate() {
        let span = per_leaf * leaves(c, n) as f32;
        let r = if crowded && i % 2 == 1 {
            radius + 0.45
        } else {
            radius
        };
        pos[c] = Vec2::angled(start + span / 2.0) * r;
        place_children(c, n, start, start + span, pos);
        start += span;
    }
}

/// Screen geometry of the view: centres and one circle radius for all.
pub struct Placed {
    pub centres: Vec<Pos2>,
    pub radius: f32,
}

/// Fits the layout into `rect`: the drawn radius follows the closest pair so
/// circles never overlap, between 5 and 26 points.
pub fn place(n: usize, rect: egui::Rect) -> Placed {
    let unit = layout(n);
    let extent = unit.iter().map(|p| p.length()).fold(0.0f32, f32::max);
    // Use the panel's longer side too, but stretch at most 1.3x so rings
    // still read as rings.
    let fit = |side: f32| {
        if extent > 0.0 {
            ((0.5 * side - 30.0) / extent).max(1.0)
        } else {
            1.0
        }
    };
    let (sx, sy) = (fit(rect.width()), fit(rect.height()));
    let scale = Vec2::new(sx.min(sy * 1.3), sy.min(sx * 1.3));
    let centres: Vec<Pos2> = unit.iter().map(|p| rect.center() + *p * scale).collect();
    let mut closest = f32::INFINITY;
    for i in 0..centres.len() {
        for j in i + 1..centres.len() {
            closest = closest.min(centres[i].distance(centres[j]));
        }
    }
    let radius = if closest.is_finite() {
        (closest * 0.42).clamp(5.0, 26.0)
    } else {
        26.0
    };
    Placed { centres, radius }
}

/// Draws the spheres. `preview` spheres (all idle) are drawn when no stats
/// have arrived, so the user sees the tree they are about to start.
pub fn sphere_view_ui(ui: &mut egui::Ui, spheres: &[SphereStats], preview: usize) {
    let size = ui.available_size().max(Vec2::splat(120.0));
    let (response, painter) = ui.allocate_painter(size, egui::Sense::hover());
    let rect = response.rect;
    painter.rect_filled(rect, 6.0, ui.visuals().extreme_bg_color);
    let idle: Vec<SphereStats>;
    let shown: &[SphereStats] = if spheres.is_empty() {
        idle = (0..preview.max(1))
            .map(|id| SphereStats {
                id,
                parent: parent_of(id),
                level: level_of(id),
                sequences: 0,
                avg_loss: f32::NAN,
                last_loss: f32::NAN,
                grad_norm: f32::NAN,
                busy: 0.0,
                state: SphereState::Idle,
            })
            .collect();
        &idle
    } else {
        spheres
    };
    let placed = place(shown.len(), rect);
    let line_colour = ui.visuals().weak_text_color().gamma_multiply(0.6);
    for s in shown {
        if let Some(p) = s.parent
            && p < shown.len()
            && s.id < shown.len()
        {
            painter.line_segment(
                [placed.centres[s.id], placed.centres[p]],
                Stroke::new(1.2, line_colour),
            );
        }
    }
    let time = ui.input(|i| i.time) as f32;
    let mut any_reducing = false;
    let r = placed.radius;
    for s in shown {
        let Some(&c) = placed.centres.get(s.id) else {
            continue;
        };
        let fill = busy_colour(s.busy);
        let rr = if s.id == 0 { r * 1.25 } else { r };
        painter.circle(
            c,
            rr,
            fill,
            Stroke::new(1.0, Color32::from_black_alpha(120)),
        );
        if s.state == SphereState::Reducing {
            any_reducing = true;
            let pulse = 0.5 + 0.5 * (time * 8.0).sin();
            painter.circle_stroke(
                c,
                rr + 3.0 + 2.0 * pulse,
                Stroke::new(2.5, Color32::WHITE.gamma_multiply(0.5 + 0.5 * pulse)),
            );
        }
        if rr >= 7.0 {
            let text = sequence_label(s.sequences, rr >= 16.0);
            let size = (rr * if text.len() > 3 { 0.62 } else { 0.8 }).clamp(7.0, 14.0);
            let ink = if s.busy > 0.55 {
                Color32::BLACK
            } else {
                Color32::WHITE
            };
            painter.text(
                c,
                egui::Align2::CENTER_CENTER,
                text,
                egui::FontId::monospace(size),
                ink,
            );
        }
    }
    painter.text(
        rect.left_top() + egui::vec2(8.0, 6.0),
        egui::Align2::LEFT_TOP,
        format!(
            "{} sphere{}",
            shown.len(),
            if shown.len() == 1 { "" } else { "s" }
        ),
        egui::FontId::proportional(12.0),
        ui.visuals().weak_text_color(),
    );
    draw_legend(&painter, rect, ui.visuals().weak_text_color());
    if any_reducing {
        ui.ctx().request_repaint();
    }
    if let Some(pointer) = response.hover_pos() {
        let nearest = shown
            .iter()
            .filter(|s| s.id < placed.centres.len())
            .min_by(|a, b| {
                placed.centres[a.id]
                    .distance(pointer)
                    .total_cmp(&placed.centres[b.id].distance(pointer))
            });
        if let Some(s) = nearest
            && placed.centres[s.id].distance(pointer) <= r * 1.3 + 3.0
        {
            response.on_hover_ui_at_pointer(|ui| sphere_tooltip(ui, s));
        }
    }
}

/// Batch count short enough for the circle: "987", "1.7k", "12k", "3.4M";
/// `roomy` circles show up to four digits in full.
pub fn sequence_label(sequences: u64, roomy: bool) -> String {
    let full_below = if roomy { 10_000 } else { 1_000 };
    match sequences {
        b if b < full_below => b.to_string(),
        b if b < 10_000 => format!("{:.1}k", b as f64 / 1e3),
        b if b < 1_000_000 => format!("{}k", b / 1000),
        b => format!("{:.1}M", b as f64 / 1e6),
    }
}

fn draw_legend(painter: &egui::Painter, rect: egui::Rect, text: Color32) {
    let labels = [
        (0.0, "idle"),
        (0.3, ""),
        (0.55, ""),
        (0.78, ""),
        (1.0, "busy"),
    ];
    let mut x = rect.right() - 130.0;
    let y = rect.bottom() - 14.0;
    for (b, name) in labels {
        if !name.is_empty() && b == 0.0 {
            painter.text(
                egui::pos2(x, y),
                egui::Align2::LEFT_CENTER,
                name,
                egui::FontId::proportional(11.0),
                text,
            );
            x += 26.0;
        }
        painter.circle_filled(egui::pos2(x + 5.0, y), 5.0, busy_colour(b));
        x += 14.0;
        if !name.is_empty() && b == 1.0 {
            painter.text(
                egui::pos2(x, y),
                egui::Align2::LEFT_CENTER,
                name,
                egui::FontId::proportional(11.0),
                text,
            );
        }
    }
}

fn sphere_tooltip(ui: &mut egui::Ui, s: &SphereStats) {
    ui.strong(format!("Sphere #{}", s.id));
    egui::Grid::new("sphere_tip").num_columns(2).show(ui, |ui| {
        let row = |ui: &mut egui::Ui, k: &str, v: String| {
            ui.label(k);
            ui.label(v);
            ui.end_row();
        };
        row(
            ui,
            "parent",
            s.parent.map_or("— (root)".into(), |p| format!("#{p}")),
        );
        row(ui, "level", s.level.to_string());
        row(ui, "sequences", s.sequences.to_string());
        row(ui, "avg loss", format!("{:.4}", s.avg_loss));
        row(ui, "last loss", format!("{:.4}", s.last_loss));
        row(ui, "grad norm", format!("{:.3}", s.grad_norm));
        row(ui, "busy", format!("{:.0} %", s.busy * 100.0));
        row(ui, "state", s.state.name().into());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_run_from_grey_to_red() {
        assert_eq!(busy_colour(0.0), Color32::from_rgb(105, 110, 120));
        assert_eq!(busy_colour(1.0), Color32::from_rgb(230, 60, 50));
        assert_eq!(busy_colour(f32::NAN), busy_colour(0.0));
        assert_eq!(busy_colour(7.0), busy_colour(1.0));
        let mid = busy_colour(0.1);
        assert!(
            mid.b() > 120 && mid.r() < 105,
            "between grey and blue: {mid:?}"
        );
    }

    #[test]
    fn batch_labels_stay_short() {
        assert_eq!(sequence_label(987, false), "987");
        assert_eq!(sequence_label(1661, false), "1.7k");
        assert_eq!(sequence_label(1661, true), "1661");
        assert_eq!(sequence_label(12_345, true), "12k");
        assert_eq!(sequence_label(3_400_000, true), "3.4M");
    }

    #[test]
    fn layout_has_rings_and_keeps_spheres_apart() {
        for n in [1, 2, 13, 14, 40, 64] {
            let p = layout(n);
            assert_eq!(p.len(), n);
            assert_eq!(p[0], Vec2::ZERO);
            for (id, v) in p.iter().enumerate().skip(1) {
                let level = level_of(id) as f32;
                assert!(
                    v.length() >= level - 1e-4 && v.length() <= level + 0.46,
                    "n={n} id={id} r={}",
                    v.length()
                );
            }
            let rect = egui::Rect::from_min_size(Pos2::ZERO, egui::vec2(500.0, 500.0));
            let placed = place(n, rect);
            for i in 0..n {
                assert!(rect.contains(placed.centres[i]), "n={n} id={i} off screen");
                for j in i + 1..n {
                    let d = placed.centres[i].distance(placed.centres[j]);
                    assert!(
                        d >= 2.0 * placed.radius,
                        "n={n}: {i} and {j} overlap ({d} < {})",
                        2.0 * placed.radius
                    );
                }
            }
            assert!(placed.radius >= 5.0);
        }
    }
}
