//! The configuration panel: every field maps onto a `TrainConfig` field.
//! Numbers that can be mistyped are text fields parsed on each edit; a value
//! that does not parse, or that `TrainConfig::validate` refuses, is shown
//! with its message in place and START stays disabled.

use super::format::{format_bytes, format_count};
use crate::model::{ModelConfig, PRESET_NAMES};
use crate::train::{ScheduleKind, TokenizerKind, TrainConfig};
use eframe::egui;
use std::collections::HashMap;
use std::path::PathBuf;

/// Memory a run will need, in bytes, and how it splits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryEstimate {
    pub params: usize,
    /// Parameters, gradients and the two AdamW moments: 16 bytes each.
    pub model_bytes: u64,
    /// Per sphere: its own gradient buffer plus activations of its share
    /// of the micro-batch.
    pub per_thread_bytes: u64,
    pub threads: usize,
    pub total_bytes: u64,
}

/// The model the trainer would build: the preset with the vocabulary the
/// tokenizer gives and a context at least the sequence length.
pub fn model_for(cfg: &TrainConfig) -> Option<ModelConfig> {
    let mut m = ModelConfig::preset(&cfg.preset)?;
    m.vocab_size = match cfg.tokenizer {
        TokenizerKind::Bpe => cfg.vocab_size,
        TokenizerKind::Bytes => 256,
    };
    m.n_ctx = m.n_ctx.max(cfg.seq_len);
    m.validate().ok()?;
    Some(m)
}

/// Activation floats kept for backward, per sequence of `t` tokens (f32).
/// Per layer and token GPT-2 keeps about: two layernorm outputs (2C), qkv
/// (3C), attention output and projection (2C), two residuals (2C), the MLP
/// hidden before and after GELU (2 x inner); plus the attention scores and
/// probabilities (2 x heads x T). Then logits and their gradient (2V).
pub fn activation_floats_per_sequence(m: &ModelConfig, t: usize) -> u64 {
    let (c, l, h, v, inner) = (
        m.n_embd as u64,
        m.n_layer as u64,
        m.n_head as u64,
        m.vocab_size as u64,
        m.n_inner as u64,
    );
    let t = t as u64;
    let per_layer = t * (9 * c + 2 * inner + 2 * h * t);
    l * per_layer + t * (2 * v + 2 * c)
}

pub fn estimate_memory(cfg: &TrainConfig) -> Option<MemoryEstimate> {
    let m = model_for(cfg)?;
    let params = m.num_params();
    let threads = cfg.resolved_threads().max(1);
    let seqs_per_thread = cfg.batch_size.div_ceil(threads).max(1) as u64;
    let act = activation_floats_per_sequence(&m, cfg.seq_len) * seqs_per_thread * 4;
    let per_thread = params as u64 * 4 + act;
    let model_bytes = params as u64 * 16;
    Some(MemoryEstimate {
        params,
        model_bytes,
        per_thread_bytes: per_thread,
        threads,
        total_bytes: model_bytes + per_thread * threads as u64,
    })
}

/// Text buffers of the fields typed as text, keyed by field name, so a
/// half-typed "3e-" survives between frames.
#[derive(Default)]
pub struct ConfigEditor {
    text: HashMap<&'static str, String>,
    /// Parse errors per field, shown beside it.
    pub field_errors: HashMap<&'static str, String>,
    resume_text: Option<String>,
}

impl ConfigEditor {
    /// First problem to show: a field that does not parse, else validate().
    pub fn problem(&self, cfg: &TrainConfig) -> Option<String> {
        let mut keys: Vec<_> = self.field_errors.keys().collect();
        keys.sort();
        if let Some(k) = keys.first() {
            return Some(self.field_errors[*k].clone());
        }
        cfg.validate().err()
    }

    /// Forgets the typed text so fields show `cfg` again (after loading).
    pub fn reset(&mut self) {
        *self = ConfigEditor::default();
    }
}

/// A text field holding a float; a value that does not parse keeps the
/// previous number and records an error naming the field.
fn float_field(
    ui: &mut egui::Ui,
    ed: &mut ConfigEditor,
    key: &'static str,
    label: &str,
    value: &mut f32,
    hint: &str,
) {
    let lab = ui.label(label).on_hover_text(hint);
    let buf = ed.text.entry(key).or_insert_with(|| format_float(*value));
    let bad = ed.field_errors.contains_key(key);
    let mut edit = egui::TextEdit::singleline(buf).desired_width(90.0);
    if bad {
        edit = edit.text_color(ui.visuals().error_fg_color);
    }
    let resp = ui.add(edit).labelled_by(lab.id).on_hover_text(hint);
    if resp.changed() {
        match buf.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => {
                *value = v;
                ed.field_errors.remove(key);
            }
            _ => {
                ed.field_errors
                    .insert(key, format!("{label}: '{}' is not a number", buf.trim()));
            }
        }
    }
    ui.end_row();
}

fn format_float(v: f32) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn int_field<T: egui::emath::Numeric>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut T,
    range: std::ops::RangeInclusive<T>,
    hint: &str,
) {
    let lab = ui.label(label).on_hover_text(hint);
    ui.add(egui::DragValue::new(value).range(range).speed(0.2))
        .labelled_by(lab.id)
        .on_hover_text(hint);
    ui.end_row();
}

pub fn config_panel_ui(
    ui: &mut egui::Ui,
    cfg: &mut TrainConfig,
    ed: &mut ConfigEditor,
    show_advanced: &mut bool,
    enabled: bool,
) {
    ui.add_enabled_ui(enabled, |ui| {
        egui::Grid::new("config_basic").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
            float_field(ui, ed, "lr", "Learning rate", &mut cfg.lr, "Peak learning rate after warmup");
            int_field(ui, "Epochs", &mut cfg.epochs, 0..=100_000, "Passes over the training split");
            int_field(ui, "Batch size", &mut cfg.batch_size, 1..=4096, "Sequences per micro-batch group");
            int_field(ui, "Sequence length", &mut cfg.seq_len, 1..=8192, "Tokens per training sequence");
            let lab = ui.label("Threads");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut cfg.threads).range(0..=1024).speed(0.1)).labelled_by(lab.id);
                if cfg.threads == 0 {
                    ui.weak(format!("auto = {}", cfg.resolved_threads()));
                }
            });
            ui.end_row();

            let lab = ui.label("Model preset");
            egui::ComboBox::from_id_salt("preset")
                .selected_text(cfg.preset.clone())
                .show_ui(ui, |ui| {
                    for p in PRESET_NAMES {
                        ui.selectable_value(&mut cfg.preset, p.to_string(), p);
                    }
                })
                .response
                .labelled_by(lab.id);
            ui.end_row();
            ui.label("");
            match estimate_memory(cfg) {
                Some(m) => {
                    ui.weak(format!("{} parameters · ~{} memory", format_count(m.params as u64), format_bytes(m.total_bytes)))
                        .on_hover_text(format!(
                            "Weights, gradients and two AdamW moments: 16 bytes x parameters = {}.\n\
                             Per sphere ({} threads): its gradient buffer plus activations for its \
                             share of the batch (layer norms, qkv, attention scores, MLP, logits) = {}.",
                            format_bytes(m.model_bytes),
                            m.threads,
                            format_bytes(m.per_thread_bytes)
                        ));
                }
                None => {
                    ui.weak("—");
                }
            }
            ui.end_row();

            let lab = ui.label("Tokenizer");
            ui.horizontal(|ui| {
                ui.selectable_value(&mut cfg.tokenizer, TokenizerKind::Bpe, "BPE");
                ui.selectable_value(&mut cfg.tokenizer, TokenizerKind::Bytes, "bytes");
            })
            .response
            .labelled_by(lab.id);
            ui.end_row();
            if cfg.tokenizer == TokenizerKind::Bpe {
                int_field(ui, "Vocabulary size", &mut cfg.vocab_size, 260..=1_000_000, "BPE vocabulary size");
            }
        });

        egui::CollapsingHeader::new("Advanced")
            .open(Some(*show_advanced))
            .show(ui, |ui| advanced_ui(ui, cfg, ed))
            .header_response
            .clicked()
            .then(|| *show_advanced = !*show_advanced);
    });

    if let Some(p) = ed.problem(cfg) {
        ui.colored_label(ui.visuals().error_fg_color, format!("Invalid: {p}"));
    }
}

fn advanced_ui(ui: &mut egui::Ui, cfg: &mut TrainConfig, ed: &mut ConfigEditor) {
    egui::Grid::new("config_advanced")
        .num_columns(2)
        .spacing([12.0, 6.0])
        .show(ui, |ui| {
            int_field(
                ui,
                "Warmup steps",
                &mut cfg.warmup_steps,
                0..=1_000_000,
                "Linear warmup from 0",
            );
            let lab = ui.label("Schedule");
            egui::ComboBox::from_id_salt("schedule")
                .selected_text(cfg.schedule.name())
                .show_ui(ui, |ui| {
                    for k in ScheduleKind::ALL {
                        ui.selectable_value(&mut cfg.schedule, k, k.name());
                    }
                })
                .response
                .labelled_by(lab.id);
            ui.end_row();
            float_field(
                ui,
                ed,
                "min_lr",
                "Minimum LR",
                &mut cfg.min_lr,
                "Floor of the decay schedule",
            );
            float_field(
                ui,
                ed,
                "wd",
                "Weight decay",
                &mut cfg.adamw.weight_decay,
                "AdamW decoupled weight decay (matrices only)",
            );
            float_field(
                ui,
                ed,
                "clip",
                "Gradient clip",
                &mut cfg.grad_clip,
                "Clip the global gradient norm (0 = off)",
            );
            int_field(
                ui,
                "Accumulation",
                &mut cfg.accum_steps,
                1..=1024,
                "Micro-batch groups per optimizer step",
            );
            let lab = ui.label("Dropout");
            ui.horizontal(|ui| {
                let mut custom = cfg.dropout.is_some();
                if ui.checkbox(&mut custom, "override").changed() {
                    cfg.dropout = custom.then_some(0.1);
                    ed.text.remove("dropout");
                    ed.field_errors.remove("dropout");
                }
                if custom {
                    let mut d = cfg.dropout.unwrap_or(0.1);
                    ui.add(egui::Slider::new(&mut d, 0.0..=0.9))
                        .labelled_by(lab.id);
                    cfg.dropout = Some(d);
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
                &mut cfg.val_fraction,
                "Share of tokens held out for validation",
            );
            int_field(
                ui,
                "Eval every (steps)",
                &mut cfg.eval_every,
                0..=1_000_000,
                "0 = only at epoch ends",
            );
            int_field(
                ui,
                "Checkpoint every (epochs)",
                &mut cfg.checkpoint_every,
                0..=10_000,
                "0 = only best and final",
            );
            int_field(
                ui,
                "Max steps",
                &mut cfg.max_steps,
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
                if ui.button("…").on_hover_text("Pick a checkpoint").clicked()
                    && let Some(p) = rfd::FileDialog::new()
                        .add_filter("checkpoint", &["cllm"])
                        .pick_file()
                {
                    *text = p.display().to_string();
                    cfg.resume = Some(p);
                }
            });
            ui.end_row();
        });
    if let Some(p) = &cfg.resume
        && !p.exists()
    {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("Warning: {}: no such checkpoint", p.display()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_estimate_adds_up() {
        let cfg = TrainConfig {
            preset: "small".into(),
            threads: 2,
            batch_size: 16,
            seq_len: 128,
            vocab_size: 2048,
            ..TrainConfig::default()
        };
        let m = estimate_memory(&cfg).unwrap();
        let model = model_for(&cfg).unwrap();
        assert_eq!(m.params, model.num_params());
        assert_eq!(m.model_bytes, 16 * m.params as u64);
        // Small preset at T=128: per layer 128 * (9*128 + 2*512 + 2*4*128) floats.
        let per_seq = 4 * 128 * (9 * 128 + 2 * 512 + 8 * 128) + 128 * (2 * 2048 + 2 * 128);
        assert_eq!(activation_floats_per_sequence(&model, 128), per_seq);
        assert_eq!(m.per_thread_bytes, 4 * m.params as u64 + 4 * 8 * per_seq);
        assert_eq!(m.total_bytes, m.model_bytes + 2 * m.per_thread_bytes);
        let bad = TrainConfig {
            preset: "huge".into(),
            ..cfg
        };
        assert!(estimate_memory(&bad).is_none());
    }
}
