//! The loaded model's card (shape, parameters, vocabulary, training, file)
//! and the Start/Stop of its OpenAI-compatible server.

use super::LlmTab;
use crate::format::{format_bytes, format_count};
use crate::llm_settings::LlmSettings;
use crate::model_list::format_unix_utc;
use crate::model_loader::preset_name;
use cllm_data::tokenizer::Tokenizer;
use eframe::egui;

pub(super) fn loaded_model_ui(ui: &mut egui::Ui, tab: &LlmTab, settings: &mut LlmSettings) {
    let Some(m) = &tab.loaded else {
        ui.weak("No model loaded.");
        return;
    };
    let cfg = m.config();
    let name = m
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| m.path.display().to_string());
    egui::Grid::new("loaded_model")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            ui.label("Loaded");
            ui.label(egui::RichText::new(&name).strong())
                .on_hover_text(m.path.display().to_string());
            ui.end_row();
            ui.label("Shape");
            ui.label(format!(
                "{} · {} layers · {} heads · {} wide · MLP {}",
                preset_name(cfg),
                cfg.n_layer,
                cfg.n_head,
                cfg.n_embd,
                cfg.n_inner
            ));
            ui.end_row();
            ui.label("Parameters");
            ui.label(format_count(m.model.params.len() as u64));
            ui.end_row();
            ui.label("Vocabulary");
            let kind = match m.tokenizer.as_ref() {
                Tokenizer::Bytes => "bytes",
                Tokenizer::Bpe(_) => "BPE",
            };
            ui.label(format!(
                "{} tokens ({kind} tokenizer)",
                format_count(cfg.vocab_size as u64)
            ));
            ui.end_row();
            ui.label("Context");
            ui.label(format!("{} tokens", cfg.n_ctx));
            ui.end_row();
            ui.label("Infill");
            if m.can_infill() {
                ui.label("yes (fill-in-the-middle tokens)");
            } else {
                ui.label("no (continues a prefix only)")
                    .on_hover_text(super::CANNOT_INFILL);
            }
            ui.end_row();
            ui.label("Training");
            let loss = m
                .state
                .best_val_loss
                .map(|l| format!("best val loss {l:.4}"))
                .unwrap_or_else(|| "no validation loss yet".into());
            ui.label(format!(
                "step {} · epoch {} · {loss}",
                format_count(m.state.step),
                m.state.epoch
            ));
            ui.end_row();
            ui.label("Memory");
            match &m.memory {
                Some(memory) => {
                    ui.checkbox(
                        &mut settings.use_memory,
                        format!(
                            "repository memory ({} training tokens)",
                            format_count(memory.tokens().len() as u64)
                        ),
                    )
                    .on_hover_text(
                        "Mix the n-gram index of the training tokens and a cache of the \
                         prompt into each next-token distribution: the model can copy \
                         identifiers and idioms from your repository",
                    );
                }
                None => {
                    ui.weak("none saved with this model");
                }
            }
            ui.end_row();
            ui.label("Adapt");
            ui.checkbox(
                &mut settings.adapt_to_prompt,
                format!("learn from the prompt first (lr {})", m.adapt.lr),
            )
            .on_hover_text(
                "Before replying, read the prompt a context at a time and take one \
                 gradient step on each, so the reply continues from weights that have \
                 learned the prompt's names and idioms (the model file is not changed)",
            );
            ui.end_row();
            ui.label("File");
            ui.label(format!(
                "{} · saved {} · {}",
                format_bytes(m.file_bytes),
                format_unix_utc(m.created_unix),
                if m.has_optimizer {
                    "can resume training"
                } else {
                    "weights only"
                }
            ));
            ui.end_row();
        });
}

/// Start/Stop of the OpenAI-compatible server for the loaded model, and
/// its address while it runs.
pub(super) fn server_ui(ui: &mut egui::Ui, tab: &mut LlmTab, settings: &LlmSettings) {
    if tab.loaded.is_none() && tab.server.is_none() {
        return;
    }
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label("Server");
        match &tab.server {
            Some(handle) => {
                let url = handle.base_url();
                ui.label(egui::RichText::new(&url).monospace().strong())
                    .on_hover_text(
                        "OpenAI-compatible API (/v1/models, /v1/completions, \
                         /v1/chat/completions) on this machine only: point an editor \
                         or an OpenAI client's base URL here",
                    );
                let stats = handle.stats();
                ui.weak(format!(
                    "{} answered · {} running",
                    stats.completed, stats.active
                ));
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_secs(1));
                if ui.button("Stop server").clicked() {
                    tab.stop_server(None);
                }
            }
            None => {
                ui.add(
                    egui::DragValue::new(&mut tab.server_port)
                        .range(0..=65535)
                        .prefix("port "),
                )
                .on_hover_text("127.0.0.1 only; 0 picks a free port");
                if ui
                    .button("Start server")
                    .on_hover_text("Serve the loaded model over the OpenAI API, like `cllm serve`")
                    .clicked()
                {
                    tab.start_server(settings.use_memory, settings.adapt_to_prompt);
                }
            }
        }
    });
    if let Some(m) = &tab.server_message {
        ui.colored_label(ui.visuals().warn_fg_color, m);
    }
}
