//! Colours shared by the sphere view and the stats table: how busy a sphere
//! is, from grey (idle) through blue and cyan to yellow, orange and red.

use eframe::egui::{self, Color32};

/// Colour stops from idle to saturated: grey, blue, cyan, yellow, orange, red.
const BUSY_STOPS: [(f32, [u8; 3]); 6] = [
    (0.0, [105, 110, 120]),
    (0.2, [60, 110, 235]),
    (0.45, [40, 200, 225]),
    (0.7, [240, 220, 60]),
    (0.85, [245, 150, 40]),
    (1.0, [230, 60, 50]),
];

/// Colour for a busy fraction (clamped to 0..1; NaN counts as idle).
pub fn busy_colour(busy: f32) -> Color32 {
    let b = if busy.is_finite() {
        busy.clamp(0.0, 1.0)
    } else {
        0.0
    };
    for w in BUSY_STOPS.windows(2) {
        let (t0, c0) = w[0];
        let (t1, c1) = w[1];
        if b <= t1 {
            let f = (b - t0) / (t1 - t0);
            let mix = |i: usize| (c0[i] as f32 + (c1[i] as f32 - c0[i] as f32) * f).round() as u8;
            return Color32::from_rgb(mix(0), mix(1), mix(2));
        }
    }
    let [r, g, b] = BUSY_STOPS[BUSY_STOPS.len() - 1].1;
    Color32::from_rgb(r, g, b)
}

/// The frame of a notice in `colour` (warnings, errors, the resume banner):
/// a tinted fill inside a thin border of the same colour.
pub fn notice_frame(colour: Color32) -> egui::Frame {
    egui::Frame::new()
        .fill(colour.gamma_multiply(0.15))
        .stroke(egui::Stroke::new(1.0, colour))
        .corner_radius(4.0)
        .inner_margin(6.0)
}
