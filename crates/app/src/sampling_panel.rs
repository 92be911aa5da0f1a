//! The sampling controls of the LLM tab: temperature, top-k, top-p,
//! repetition penalty, max tokens, seed (with a clock-drawn Random) and the
//! stop string, and the balanced-brackets switch, each labelled for screen readers and tests;
//! Defaults puts the four sampling controls back to [`SamplingConfig`]'s.

use super::llm_settings::LlmSettings;
use cllm_generate::SamplingConfig;
use eframe::egui;

pub fn sampling_ui(ui: &mut egui::Ui, s: &mut LlmSettings) {
    /// A label, then the widget named by it (for screen readers and tests),
    /// both moved to the next row when they would not fit beside what is
    /// already on this one: a wrapping row places a slider whole at the
    /// cursor, so at the window's default width the repetition penalty ran
    /// past the edge. `widget_width` is the widget's width, roughly.
    fn labelled(
        ui: &mut egui::Ui,
        text: &str,
        widget: impl egui::Widget,
        widget_width: f32,
        hint: &str,
    ) {
        let text_width = egui::WidgetText::from(text)
            .into_galley(
                ui,
                Some(egui::TextWrapMode::Extend),
                f32::INFINITY,
                egui::TextStyle::Body,
            )
            .size()
            .x;
        let needed = text_width + widget_width + 2.0 * ui.spacing().item_spacing.x;
        if ui.cursor().min.x > ui.max_rect().min.x && ui.available_size_before_wrap().x < needed {
            ui.end_row();
        }
        let label = ui.label(text);
        ui.add(widget).labelled_by(label.id).on_hover_text(hint);
    }
    // A slider with its value box, a number box, the stop string's box.
    let slider = ui.spacing().slider_width + 64.0;
    let number = 64.0;
    let text_box = 100.0;
    ui.horizontal_wrapped(|ui| {
        labelled(
            ui,
            "Temperature",
            egui::Slider::new(&mut s.temperature, 0.0..=2.0).step_by(0.05),
            slider,
            "0 = greedy (always the most probable token)",
        );
        labelled(
            ui,
            "Top-k",
            egui::DragValue::new(&mut s.top_k).range(0..=5000),
            number,
            "Keep only the k most probable tokens (0 = off)",
        );
        labelled(
            ui,
            "Top-p",
            egui::Slider::new(&mut s.top_p, 0.01..=1.0).step_by(0.01),
            slider,
            "Keep the most probable tokens up to this total probability (1 = off)",
        );
        labelled(
            ui,
            "Repetition penalty",
            egui::Slider::new(&mut s.repetition_penalty, 1.0..=2.0).step_by(0.05),
            slider,
            "Above 1 makes tokens already in the context less likely (1 = off)",
        );
        // Settings persist between runs, so without this a person who once
        // moved a slider never sees a later, better default.
        let d = SamplingConfig::default();
        if ui
            .button("Defaults")
            .on_hover_text(format!(
                "Temperature {}, top-k {}, top-p {}, repetition penalty {}: the settings \
                 with which trained models wrote C that closes and parses most often",
                d.temperature, d.top_k, d.top_p, d.repetition_penalty
            ))
            .clicked()
        {
            s.temperature = d.temperature;
            s.top_k = d.top_k;
            s.top_p = d.top_p;
            s.repetition_penalty = d.repetition_penalty;
        }
    });
    ui.horizontal_wrapped(|ui| {
        labelled(
            ui,
            "Max tokens",
            egui::DragValue::new(&mut s.max_tokens).range(1..=4096),
            number,
            "Most tokens in one reply",
        );
        labelled(
            ui,
            "Seed",
            egui::DragValue::new(&mut s.seed),
            number,
            "Same seed, model, prompt and settings: same reply",
        );
        if ui
            .button("Random")
            .on_hover_text("A new random seed")
            .clicked()
        {
            s.seed = random_seed();
        }
        labelled(
            ui,
            "Stop string",
            egui::TextEdit::singleline(&mut s.stop)
                .desired_width(90.0)
                .hint_text("e.g. \\n\\n"),
            text_box,
            "Generation ends before this text; \\n and \\t are escapes. Empty = none",
        );
        // A middle need not balance or close anything: the suffix does.
        let middle = "Not for a middle: the text after the cursor closes what is open";
        ui.add_enabled(
            !s.infill,
            egui::Checkbox::new(&mut s.balanced_brackets, "Balanced brackets"),
        )
        .on_hover_text(
            "For code: never pick a token that leaves the brackets impossible to \
             balance (a `)` closing a `{`, a `;` inside parentheses, a line end inside \
             a string). Leave it off for prose: an apostrophe reads as a quote",
        )
        .on_disabled_hover_text(middle);
        ui.checkbox(&mut s.line_guard, "Rewrite looping lines")
            .on_hover_text(
                "For code: a line that repeats a recent line, or runs past 200 characters, \
                 is taken back and sampled again (at most 4 times a line, 16 a reply). The \
                 reply then appears a line at a time",
            );
        ui.add_enabled(
            !s.infill,
            egui::Checkbox::new(&mut s.stop_when_closed, "Stop when the braces close"),
        )
        .on_hover_text(
            "End the reply at the `}` that closes the braces the prompt left open (a \
             function's body), or the first block the reply opens; braces in comments \
             and strings do not count",
        )
        .on_disabled_hover_text(middle);
    });
}

/// A seed from the clock: different each press, no extra dependency.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // splitmix64's finaliser spreads nearby clock values apart.
    let mut z = nanos.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % 1_000_000
}
