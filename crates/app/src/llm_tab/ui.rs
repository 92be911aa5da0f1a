//! The LLM tab's layout: the model picker and list on the left, the
//! prompt, sampling and the streaming reply in the centre.

use super::model_panel::{loaded_model_ui, server_ui};
use super::{CANNOT_INFILL, LlmTab};
use crate::WorkbenchApp;
use crate::llm_settings::{LlmSettings, PROMPT_PRESETS};
use crate::model_list::{ListAction, models_on_disk_ui};
use crate::sampling_panel::sampling_ui;
use crate::token_view::{displayable, legend_ui, token_text_ui};
use eframe::egui;
use std::path::PathBuf;

/// The prompt box's label when continuing a prompt.
pub const PROMPT_LABEL: &str = "Prompt text (Ctrl+Enter generates)";
/// The prompt box's label when filling in the middle.
pub const BEFORE_LABEL: &str = "Text before the cursor (Ctrl+Enter generates)";
/// The second box's label when filling in the middle.
pub const AFTER_LABEL: &str = "Text after the cursor";

pub fn llm_tab_ui(ui: &mut egui::Ui, app: &mut WorkbenchApp) {
    let newest = app.session.run.last_checkpoint.as_ref().map(|(p, _)| p);
    let stale = app.llm.list.dirs.is_empty() || newest != app.llm.listed_after.as_ref();
    if stale && !app.llm.list.is_listing() {
        app.llm.listed_after = newest.cloned();
        app.llm.refresh(LlmTab::model_dirs(&app.settings));
    }
    let dirs = LlmTab::model_dirs(&app.settings);
    let tab = &mut app.llm;
    let settings = &mut app.settings.llm;
    egui::Panel::left("llm_model")
        .resizable(true)
        .default_size(430.0)
        .min_size(320.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("llm_model_scroll")
                .show(ui, |ui| {
                    ui.add_space(4.0);
                    ui.heading("Model");
                    model_picker_ui(ui, tab, settings);
                    ui.add_space(6.0);
                    loaded_model_ui(ui, tab, settings);
                    server_ui(ui, tab, settings);
                    ui.add_space(6.0);
                    ui.separator();
                    model_list_ui(ui, tab, settings, dirs);
                });
        });
    egui::CentralPanel::default().show(ui, |ui| {
        prompt_ui(ui, tab, settings);
        ui.separator();
        reply_ui(ui, tab, settings);
    });
}

fn model_picker_ui(ui: &mut egui::Ui, tab: &mut LlmTab, settings: &mut LlmSettings) {
    let idle = !tab.is_loading() && !tab.is_generating();
    ui.horizontal(|ui| {
        let label = ui.label("Model file");
        let field = ui.add(
            egui::TextEdit::singleline(&mut settings.model_path)
                .hint_text("models/trained_model_kissing_spheres.cllm")
                .desired_width(230.0),
        );
        let field = field.labelled_by(label.id);
        if field.changed() {
            // The error was about the file that was there.
            tab.load_error = None;
        }
        let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui
            .add_enabled(tab.browse.is_none(), egui::Button::new("Browse…"))
            .on_hover_text("Pick a .cllm file with the system dialog")
            .clicked()
        {
            tab.browse();
        }
        if ui
            .add_enabled(idle, egui::Button::new("Load"))
            .on_hover_text("Read the checkpoint (checked in full) and get it ready to generate")
            .clicked()
            || (enter && idle)
        {
            tab.load(&settings.model_path);
        }
    });
    if let Some(job) = &tab.loading {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("Loading {}…", job.path.display()));
        });
    }
    if let Some(e) = &tab.load_error {
        ui.colored_label(ui.visuals().error_fg_color, format!("Cannot load: {e}"));
    }
}

/// The models on disk; refreshing and loading go through the tab.
fn model_list_ui(
    ui: &mut egui::Ui,
    tab: &mut LlmTab,
    settings: &mut LlmSettings,
    dirs: Vec<PathBuf>,
) {
    let picked_before = settings.model_path.clone();
    let action = models_on_disk_ui(ui, &tab.list, &mut settings.model_path);
    if settings.model_path != picked_before {
        // Another file picked: the error was about the one before.
        tab.load_error = None;
    }
    match action {
        Some(ListAction::Refresh) => tab.refresh(dirs),
        Some(ListAction::Load(path)) => {
            settings.model_path = path;
            tab.load(&settings.model_path);
        }
        None => {}
    }
}

fn prompt_ui(ui: &mut egui::Ui, tab: &mut LlmTab, settings: &mut LlmSettings) {
    ui.add_space(4.0);
    ui.horizontal_wrapped(|ui| {
        ui.heading("Prompt");
        ui.add_space(8.0);
        for preset in PROMPT_PRESETS {
            if ui
                .add(egui::Button::new(egui::RichText::new(preset).monospace()))
                .on_hover_text("Use this prompt")
                .clicked()
            {
                settings.prompt = preset.to_string();
            }
        }
        let has_data = tab.loaded.as_ref().is_some_and(|m| m.memory.is_some());
        let from_data = ui
            .add_enabled(has_data, egui::Button::new("From your data"))
            .on_hover_text(
                "A function opening from the code this model was trained on; each click draws \
                 another",
            )
            .on_disabled_hover_text(
                "Needs a loaded model saved with its repository memory (it keeps the training \
                 tokens)",
            );
        if from_data.clicked() {
            tab.prompt_from_data(settings);
        }
    });
    let can_infill = tab.loaded.as_ref().is_none_or(|m| m.can_infill());
    let cannot_infill = mode_ui(ui, settings, can_infill);
    let (label, hint) = if settings.infill {
        (BEFORE_LABEL, "The code before the cursor…")
    } else {
        (PROMPT_LABEL, "Type the start of some code…")
    };
    let label = ui.label(label);
    let field = ui.add(
        egui::TextEdit::multiline(&mut settings.prompt)
            .font(egui::TextStyle::Monospace)
            .desired_rows(4)
            .desired_width(f32::INFINITY)
            .hint_text(hint),
    );
    let field = field.labelled_by(label.id);
    let pressed =
        |ui: &egui::Ui| ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter));
    let mut ctrl_enter = field.has_focus() && pressed(ui);
    if settings.infill {
        let label = ui.label(AFTER_LABEL);
        let field = ui.add(
            egui::TextEdit::multiline(&mut settings.suffix)
                .font(egui::TextStyle::Monospace)
                .desired_rows(3)
                .desired_width(f32::INFINITY)
                .hint_text("The code after the cursor…"),
        );
        ctrl_enter |= field.labelled_by(label.id).has_focus() && pressed(ui);
    }

    ui.add_space(4.0);
    sampling_ui(ui, settings);
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        if tab.is_generating() {
            let stop = egui::Button::new(
                egui::RichText::new("Stop")
                    .strong()
                    .size(16.0)
                    .color(egui::Color32::WHITE),
            )
            .fill(egui::Color32::from_rgb(190, 60, 50))
            .min_size(egui::vec2(130.0, 32.0));
            if ui.add(stop).clicked() {
                tab.stop();
            }
        } else {
            let go = egui::Button::new(
                egui::RichText::new("Generate")
                    .strong()
                    .size(16.0)
                    .color(egui::Color32::WHITE),
            )
            .fill(egui::Color32::from_rgb(40, 140, 80))
            .min_size(egui::vec2(130.0, 32.0));
            let ready = tab.loaded.is_some() && !tab.is_loading() && !cannot_infill;
            let clicked = ui
                .add_enabled(ready, go)
                .on_disabled_hover_text(if cannot_infill {
                    "This model cannot fill in the middle: switch to Continue or load a model \
                     trained with FIM"
                } else {
                    "Load a model first"
                })
                .clicked();
            if clicked || (ctrl_enter && ready) {
                tab.generate(settings);
            }
        }
        if let Some(m) = &tab.message {
            ui.colored_label(ui.visuals().error_fg_color, m);
        }
    });
}

/// Continue a prompt, or fill in the middle between two texts; with a
/// model that cannot infill, a note saying so. Returns whether infill is
/// asked of a model that cannot do it.
fn mode_ui(ui: &mut egui::Ui, settings: &mut LlmSettings, can_infill: bool) -> bool {
    ui.horizontal(|ui| {
        ui.label("Mode");
        ui.selectable_value(&mut settings.infill, false, "Continue")
            .on_hover_text("Continue the prompt left to right");
        ui.selectable_value(&mut settings.infill, true, "Fill in the middle")
            .on_hover_text(
                "Write what goes between the text before the cursor and the text after it, as \
                 an editor completion does; the middle ends where the model ends it (needs a \
                 model trained with a FIM rate above 0)",
            );
    });
    let cannot_infill = settings.infill && !can_infill;
    if cannot_infill {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("Infill unavailable: {CANNOT_INFILL}"),
        );
    }
    cannot_infill
}

fn reply_ui(ui: &mut egui::Ui, tab: &mut LlmTab, settings: &mut LlmSettings) {
    let Some(reply) = &tab.reply else {
        ui.add_space(8.0);
        ui.weak(
            "Load a model, pick or type a prompt, and press Generate. The reply streams in here.",
        );
        return;
    };
    ui.horizontal_wrapped(|ui| {
        ui.checkbox(&mut settings.shade_tokens, "Shade by probability")
            .on_hover_text("Colour each generated token by how likely the model found it; hover a token for the alternatives");
        if settings.shade_tokens {
            legend_ui(ui);
        }
        ui.add_space(8.0);
        if ui
            .button("Copy")
            .on_hover_text("Copy prompt and reply")
            .clicked()
        {
            ui.ctx().copy_text(reply.full_text());
        }
    });
    ui.horizontal_wrapped(|ui| {
        if !reply.is_done() {
            ui.spinner();
        }
        ui.label(reply.summary_line());
        if let Some((line, ok)) = reply.syntax_line() {
            let colour = if ok {
                egui::Color32::from_rgb(60, 170, 90)
            } else {
                ui.visuals().warn_fg_color
            };
            let line = displayable(ui.ctx(), &egui::FontId::proportional(14.0), &line);
            ui.colored_label(colour, line);
        }
    });
    if let Some(e) = &reply.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    ui.add_space(4.0);
    let hovered = egui::ScrollArea::vertical()
        .id_salt("reply_scroll")
        .auto_shrink([false, false])
        .stick_to_bottom(true)
        .show(ui, |ui| {
            token_text_ui(
                ui,
                &reply.prompt,
                &reply.tokens,
                &reply.suffix,
                settings.shade_tokens,
            )
        })
        .inner;
    tab.hovered_token = hovered;
}
