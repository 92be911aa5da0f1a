//! The *Start from* choice: new weights, or a base model on disk whose
//! size, tokenizer and weights a new run takes, with a fresh optimizer and
//! schedule (`cllm train --init`). The models are the LLM tab's list.

use crate::model_list::{EntryStatus, ModelList};
use cllm_train::TrainConfig;
use eframe::egui;

/// What the combo box shows for new weights.
pub const NEW_WEIGHTS: &str = "new weights";

/// The *Start from* row; returns whether the list should be read again.
pub(super) fn start_from_ui(ui: &mut egui::Ui, cfg: &mut TrainConfig, models: &ModelList) -> bool {
    let hint = "A base model to fine-tune on this data: the new run keeps its size, tokenizer \
                and weights, with a fresh optimizer and schedule. New weights: a model of the \
                preset below, and a tokenizer trained on the data";
    let lab = ui.label("Start from").on_hover_text(hint);
    if cfg.resume.is_some() {
        ui.weak("the checkpoint it resumes");
        ui.end_row();
        return false;
    }
    let mut refresh = false;
    let selected = cfg
        .model
        .init
        .as_ref()
        .map_or_else(|| NEW_WEIGHTS.to_string(), |p| p.display().to_string());
    egui::ComboBox::from_id_salt("start_from")
        .selected_text(selected)
        .width(240.0)
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut cfg.model.init, None, NEW_WEIGHTS);
            for e in &models.entries {
                let EntryStatus::Valid(info) = &e.status else {
                    continue;
                };
                let m = &info.model;
                let text = e.path.display().to_string();
                let detail = format!(
                    "{}: {} layers of {}, vocabulary {}, context {}, step {}",
                    e.group(),
                    m.n_layer,
                    m.n_embd,
                    m.vocab_size,
                    m.n_ctx,
                    info.state.step
                );
                ui.selectable_value(&mut cfg.model.init, Some(e.path.clone()), text)
                    .on_hover_text(detail);
            }
            if models.is_listing() {
                ui.weak("checking the models on disk…");
            } else if ui.button("Look again").clicked() {
                refresh = true;
            }
        })
        .response
        .labelled_by(lab.id)
        .on_hover_text(hint);
    ui.end_row();
    refresh
}
