//! The generated text as one wrapped block: the prompt, then each token's
//! text (then, for a filled middle, the text after it), optionally on a background shaded by the model's probability for
//! that token. Hovering a token outlines it and shows the alternatives the
//! model considered at that step.
//!
//! Drawn as a single galley (one layout section per token) rather than a
//! widget per token, so newlines inside tokens wrap naturally and a long
//! reply costs one layout; the hovered token is found from the glyph under
//! the pointer.

use cllm_generate::GeneratedToken;
use eframe::egui;
use egui::text::{LayoutJob, TextFormat};
use egui::{Color32, FontId, Galley, Sense, Stroke, Vec2};

const FONT_SIZE: f32 = 14.0;

/// Background for a token the model gave probability `p`: red for
/// surprising tokens, through amber, to green for confident ones.
pub fn shade(p: f32) -> Color32 {
    let p = if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (low, mid, high) = (
        [215.0, 60.0, 50.0],
        [225.0, 170.0, 40.0],
        [60.0, 170.0, 90.0],
    );
    let (a, b, t) = if p < 0.5 {
        (low, mid, p * 2.0)
    } else {
        (mid, high, (p - 0.5) * 2.0)
    };
    let mix = |i: usize| (a[i] + (b[i] - a[i]) * t) as u8;
    Color32::from_rgba_unmultiplied(mix(0), mix(1), mix(2), 110)
}

/// `top` (with its alpha) painted over the opaque `base`, as an opaque
/// colour: backgrounds of neighbouring glyphs overlap by a fraction of a
/// pixel, and translucent ones would show a darker seam at every overlap.
fn opaque_over(base: Color32, top: Color32) -> Color32 {
    let a = f32::from(top.a()) / 255.0;
    let [tr, tg, tb, _] = top.to_srgba_unmultiplied();
    let mix = |b: u8, t: u8| (f32::from(b) + (f32::from(t) - f32::from(b)) * a).round() as u8;
    Color32::from_rgb(mix(base.r(), tr), mix(base.g(), tg), mix(base.b(), tb))
}

/// Which token each layout section shows (`None`: the prompt), and where
/// each section ends in characters of the galley's text.
struct SectionMap {
    token: Vec<Option<usize>>,
    char_end: Vec<usize>,
}

impl SectionMap {
    fn token_at_char(&self, index: usize) -> Option<usize> {
        let section = self.char_end.partition_point(|&end| end <= index);
        self.token.get(section).copied().flatten()
    }
}

/// `text` with every character the installed fonts cannot draw replaced
/// (by U+FFFD when the font has it, else `?`). A small model emits any
/// byte sequence; a missing glyph must never be what breaks the view.
pub fn displayable(ctx: &egui::Context, font: &FontId, text: &str) -> String {
    ctx.fonts_mut(|f| {
        if f.has_glyphs(font, text) {
            return text.to_string();
        }
        let fallback = if f.has_glyph(font, char::REPLACEMENT_CHARACTER) {
            char::REPLACEMENT_CHARACTER
        } else {
            '?'
        };
        text.chars()
            .map(|c| {
                if c.is_control() || f.has_glyph(font, c) {
                    c
                } else {
                    fallback
                }
            })
            .collect()
    })
}

fn build_job(
    ui: &egui::Ui,
    prompt: &str,
    tokens: &[GeneratedToken],
    suffix: &str,
    shade_tokens: bool,
    wrap_width: f32,
) -> (LayoutJob, SectionMap) {
    let font = FontId::monospace(FONT_SIZE);
    let visuals = ui.visuals();
    let prompt_format = TextFormat::simple(font.clone(), visuals.strong_text_color());
    let reply_colour = if shade_tokens {
        visuals.text_color()
    } else if visuals.dark_mode {
        Color32::from_rgb(140, 190, 255)
    } else {
        Color32::from_rgb(20, 80, 170)
    };
    let mut job = LayoutJob::default();
    job.wrap.max_width = wrap_width;
    let mut map = SectionMap {
        token: Vec::with_capacity(tokens.len() + 1),
        char_end: Vec::with_capacity(tokens.len() + 1),
    };
    let mut chars = 0;
    if !prompt.is_empty() {
        job.append(&displayable(ui.ctx(), &font, prompt), 0.0, prompt_format);
        chars += prompt.chars().count();
        map.token.push(None);
        map.char_end.push(chars);
    }
    for (i, t) in tokens.iter().enumerate() {
        if t.text_piece.is_empty() {
            continue;
        }
        let mut format = TextFormat::simple(font.clone(), reply_colour);
        if shade_tokens {
            format.background = opaque_over(visuals.panel_fill, shade(t.prob));
        }
        job.append(&displayable(ui.ctx(), &font, &t.text_piece), 0.0, format);
        chars += t.text_piece.chars().count();
        map.token.push(Some(i));
        map.char_end.push(chars);
    }
    if !suffix.is_empty() {
        let format = TextFormat::simple(font.clone(), visuals.strong_text_color());
        job.append(&displayable(ui.ctx(), &font, suffix), 0.0, format);
        chars += suffix.chars().count();
        map.token.push(None);
        map.char_end.push(chars);
    }
    (job, map)
}

/// Index of the character whose glyph is under `pos` (galley coordinates).
fn char_under(galley: &Galley, pos: Vec2) -> Option<usize> {
    let mut index = 0;
    for row in &galley.rows {
        let rect = row.rect();
        if pos.y >= rect.min.y && pos.y < rect.max.y {
            let x = pos.x - row.pos.x;
            return row
                .glyphs
                .iter()
                .position(|g| x >= g.pos.x && x < g.max_x())
                .map(|i| index + i);
        }
        index += row.char_count_including_newline().0;
    }
    None
}

/// Draws prompt, tokens and suffix (the text after a filled middle; empty
/// for a continuation); returns the index of the hovered token.
pub fn token_text_ui(
    ui: &mut egui::Ui,
    prompt: &str,
    tokens: &[GeneratedToken],
    suffix: &str,
    shade_tokens: bool,
) -> Option<usize> {
    let (job, map) = build_job(
        ui,
        prompt,
        tokens,
        suffix,
        shade_tokens,
        ui.available_width(),
    );
    let galley = ui.painter().layout_job(job);
    let size = galley.size().max(egui::vec2(ui.available_width(), 20.0));
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, "Generated text"));
    let hovered = response
        .hover_pos()
        .and_then(|p| char_under(&galley, p - rect.min))
        .and_then(|c| map.token_at_char(c).map(|t| (c, t)));
    if let Some((c, _)) = hovered {
        // Outline every glyph of the hovered token.
        let first = map.char_end.partition_point(|&end| end <= c);
        let start = if first == 0 {
            0
        } else {
            map.char_end[first - 1]
        };
        let end = map.char_end[first];
        let stroke = Stroke::new(1.0, ui.visuals().strong_text_color());
        let mut index = 0;
        for row in &galley.rows {
            for (i, g) in row.glyphs.iter().enumerate() {
                if (start..end).contains(&(index + i)) {
                    let r = egui::Rect::from_min_size(
                        rect.min + row.pos.to_vec2() + egui::vec2(g.pos.x, 0.0),
                        egui::vec2(g.advance_width, row.size.y),
                    );
                    ui.painter()
                        .rect_stroke(r, 0.0, stroke, egui::StrokeKind::Inside);
                }
            }
            index += row.char_count_including_newline().0;
        }
    }
    ui.painter()
        .galley(rect.min, galley, ui.visuals().text_color());
    let hovered = hovered.map(|(_, t)| t);
    if let Some(t) = hovered.and_then(|i| tokens.get(i)) {
        response.on_hover_ui_at_pointer(|ui| alternatives_ui(ui, t));
    }
    hovered
}

/// The tooltip: the token, its probability, and the top alternatives.
fn alternatives_ui(ui: &mut egui::Ui, t: &GeneratedToken) {
    let font = FontId::monospace(FONT_SIZE);
    let ctx = ui.ctx().clone();
    let shown = |text: &str| displayable(&ctx, &font, &shown_token(text));
    ui.label(
        egui::RichText::new(format!(
            "{}  p = {:.1}%",
            shown(&t.text_piece),
            t.prob * 100.0
        ))
        .monospace()
        .strong(),
    );
    ui.label("Top alternatives:");
    egui::Grid::new("alternatives")
        .num_columns(2)
        .show(ui, |ui| {
            for (text, p) in &t.top_alternatives {
                ui.label(egui::RichText::new(shown(text)).monospace());
                ui.add(
                    egui::ProgressBar::new(*p)
                        .desired_width(120.0)
                        .text(format!("{:.1}%", p * 100.0)),
                );
                ui.end_row();
            }
        });
}

/// A token as a quoted string with whitespace made visible.
fn shown_token(text: &str) -> String {
    format!("{text:?}")
}

/// The colour scale, low to high, for a legend next to the toggle.
pub fn legend_ui(ui: &mut egui::Ui) {
    ui.weak("p:");
    for p in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let (rect, _) = ui.allocate_exact_size(egui::vec2(14.0, 14.0), Sense::hover());
        let colour = opaque_over(ui.visuals().panel_fill, shade(p));
        ui.painter().rect_filled(rect, 2.0, colour);
    }
    ui.weak("low to high");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shade_runs_red_to_green() {
        let low = shade(0.0);
        let high = shade(1.0);
        assert!(low.r() > low.g(), "low probability is red: {low:?}");
        assert!(high.g() > high.r(), "high probability is green: {high:?}");
        assert_eq!(shade(f32::NAN), low);
        assert_eq!(shade(7.0), high);
    }

    #[test]
    fn opaque_blend_is_the_alpha_mix() {
        let base = Color32::from_rgb(0, 100, 200);
        let top = Color32::from_rgba_unmultiplied(255, 0, 100, 51); // alpha 0.2
        // 0 + 0.2 * 255 = 51; 100 - 0.2 * 100 = 80; 200 - 0.2 * 100 = 180.
        assert_eq!(opaque_over(base, top), Color32::from_rgb(51, 80, 180));
        assert_eq!(
            opaque_over(base, Color32::from_rgb(1, 2, 3)),
            Color32::from_rgb(1, 2, 3)
        );
    }

    #[test]
    fn characters_map_to_their_sections() {
        // Prompt "ab" (chars 0..2), token 0 empty (no section), token 1
        // "cde" (2..5), token 2 "f" (5..6).
        let map = SectionMap {
            token: vec![None, Some(1), Some(2)],
            char_end: vec![2, 5, 6],
        };
        assert_eq!(map.token_at_char(0), None);
        assert_eq!(map.token_at_char(1), None);
        assert_eq!(map.token_at_char(2), Some(1));
        assert_eq!(map.token_at_char(4), Some(1));
        assert_eq!(map.token_at_char(5), Some(2));
        assert_eq!(map.token_at_char(6), None);
    }
}
