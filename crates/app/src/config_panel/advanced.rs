//! The Advanced section of the configuration panel: the optimizer's finer
//! settings, evaluation, the repository memory, fill-in-the-middle
//! training, and the checkpoint to resume from.

use super::{ConfigEditor, float_field, int_field};
use cllm_core::ops::bf16::{Kernel, PrecisionChoice};
use cllm_train::{ScheduleKind, TokenizerKind, TrainConfig};
use eframe::egui;
use std::path::PathBuf;

/// The Advanced section; returns whether the resume picker was asked for.
pub(super) fn advanced_ui(
    ui: &mut egui::Ui,
    cfg: &mut TrainConfig,
    ed: &mut ConfigEditor,
    picking: bool,
) -> bool {
    let mut pick = false;
    egui::Grid::new("config_advanced")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            int_field(
                ui,
                "Warmup steps",
                &mut cfg.optimizer.warmup_steps,
                0..=1_000_000,
                "Linear warmup from 0",
            );
            let lab = ui.label("Schedule");
            egui::ComboBox::from_id_salt("schedule")
                .selected_text(cfg.optimizer.schedule.name())
                .show_ui(ui, |ui| {
                    for k in ScheduleKind::ALL {
                        ui.selectable_value(&mut cfg.optimizer.schedule, k, k.name());
                    }
                })
                .response
                .labelled_by(lab.id);
            ui.end_row();
            let lab = ui.label("Precision");
            egui::ComboBox::from_id_salt("precision")
                .selected_text(cfg.model.precision.name())
                .show_ui(ui, |ui| {
                    for name in PrecisionChoice::NAMES {
                        if let Ok(p) = PrecisionChoice::parse(name) {
                            ui.selectable_value(&mut cfg.model.precision, p, name);
                        }
                    }
                })
                .response
                .labelled_by(lab.id)
                .on_hover_text(format!(
                    "Matmul precision. auto: bf16 where the CPU has AVX512_BF16 (this one: {}); \
                     bf16 rounds the matmuls' inputs and keeps f32 sums, weights and optimizer",
                    if Kernel::detect() == Kernel::Avx512 {
                        "yes"
                    } else {
                        "no"
                    }
                ));
            ui.end_row();
            float_field(
                ui,
                ed,
                "min_lr",
                "Minimum LR",
                &mut cfg.optimizer.min_lr,
                "Floor of the decay schedule",
            );
            float_field(
                ui,
                ed,
                "wd",
                "Weight decay",
                &mut cfg.optimizer.adamw.weight_decay,
                "AdamW decoupled weight decay (matrices only)",
            );
            float_field(
                ui,
                ed,
                "clip",
                "Gradient clip",
                &mut cfg.optimizer.grad_clip,
                "Clip the global gradient norm (0 = off)",
            );
            int_field(
                ui,
                "Accumulation",
                &mut cfg.batch.accum_steps,
                1..=1024,
                "Micro-batch groups per optimizer step",
            );
            let lab = ui.label("Dropout");
            ui.horizontal(|ui| {
                let mut custom = cfg.model.dropout.is_some();
                if ui.checkbox(&mut custom, "override").changed() {
                    cfg.model.dropout = custom.then_some(0.1);
                    ed.text.remove("dropout");
                    ed.field_errors.remove("dropout");
                }
                if custom {
                    let mut d = cfg.model.dropout.unwrap_or(0.1);
                    ui.add(egui::Slider::new(&mut d, 0.0..=0.9))
                        .labelled_by(lab.id);
                    cfg.model.dropout = Some(d);
                } else {
                    ui.weak("preset's");
                }
            });
            ui.end_row();
            float_field(
                ui,
                ed,
                "val",
                "Validation fraction",
                &mut cfg.corpus.val_fraction,
                "Share of tokens held out for validation",
            );
            int_field(
                ui,
                "Eval every (steps)",
                &mut cfg.evaluation.eval_every,
                0..=1_000_000,
                "0 = only at epoch ends",
            );
            let lab = ui.label("Repository memory");
            ui.checkbox(&mut cfg.model.memory, "index the training tokens")
                .labelled_by(lab.id)
                .on_hover_text(
                    "An n-gram index of the training tokens and a cache of the document, \
                     mixed with the model; fitted at each evaluation and saved with the \
                     checkpoints",
                );
            ui.end_row();
            fim_rate_ui(ui, cfg);
            int_field(
                ui,
                "Code check (functions)",
                &mut cfg.evaluation.eval_gen,
                0..=1_000,
                "At each evaluation, complete this many function openings of the validation \
                 split and report the share that closes and parses as C (0 = off)",
            );
            int_field(
                ui,
                "Early stop patience",
                &mut cfg.budget.early_stop_patience,
                0..=10_000,
                "Stop after this many evaluations without a better validation loss (0 = off)",
            );
            int_field(
                ui,
                "Checkpoint every (epochs)",
                &mut cfg.outputs.checkpoint_every,
                0..=10_000,
                "0 = only best and final",
            );
            int_field(
                ui,
                "Max steps",
                &mut cfg.budget.max_steps,
                0..=u64::MAX / 2,
                "Stop after this many steps (0 = no limit)",
            );
            int_field(
                ui,
                "Seed",
                &mut cfg.seed,
                0..=u64::MAX / 2,
                "Same seed and threads = same run",
            );
            let lab = ui.label("Resume from");
            ui.horizontal(|ui| {
                let text = ed.resume_text.get_or_insert_with(|| {
                    cfg.resume
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                });
                if ui
                    .add(
                        egui::TextEdit::singleline(text)
                            .hint_text("checkpoint .cllm (empty = fresh)")
                            .desired_width(180.0),
                    )
                    .labelled_by(lab.id)
                    .changed()
                {
                    let t = text.trim();
                    cfg.resume = (!t.is_empty()).then(|| PathBuf::from(t));
                }
                if ui
                    .add_enabled(!picking, egui::Button::new("…"))
                    .on_hover_text("Pick a checkpoint")
                    .clicked()
                {
                    pick = true;
                }
            });
            ui.end_row();
        });
    if cfg.budget.early_stop_patience > 0 && cfg.corpus.val_fraction <= 0.0 {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            "Early stopping watches the validation loss: set a validation fraction above 0",
        );
    }
    if let Some(p) = &cfg.resume
        && !p.exists()
    {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("Warning: {}: no such checkpoint", p.display()),
        );
    }
    pick
}

impl ConfigEditor {
    /// A checkpoint picked in the dialog becomes the resume file.
    pub fn set_resume(&mut self, cfg: &mut TrainConfig, path: PathBuf) {
        self.resume_text = Some(path.display().to_string());
        cfg.resume = Some(path);
    }
}

/// The fill-in-the-middle rate: a slider over [0, 1], with a note when the
/// tokenizer cannot carry the FIM tokens.
fn fim_rate_ui(ui: &mut egui::Ui, cfg: &mut TrainConfig) {
    let hint = "Share of training windows cut into prefix, middle and suffix, the model \
                learning to write the middle from the other two, so it can fill the text \
                between what is before and after the cursor (editor completion, the LLM \
                tab's infill). \
                0 = left to right only; 0.5 (the default, as SantaCoder and StarCoder) costs \
                little left-to-right quality. Needs the BPE tokenizer";
    let lab = ui.label("FIM rate").on_hover_text(hint);
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut cfg.batch.fim_rate, 0.0..=1.0).fixed_decimals(2))
            .labelled_by(lab.id)
            .on_hover_text(hint);
        if cfg.batch.fim_rate > 0.0 && cfg.corpus.tokenizer == TokenizerKind::Bytes {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "off with the bytes tokenizer (no FIM tokens)",
            );
        }
    });
    ui.end_row();
}
