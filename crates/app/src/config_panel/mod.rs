//! The configuration panel: every field maps onto a `TrainConfig` field.
//! Numbers that can be mistyped are text fields parsed on each edit; a value
//! that does not parse, or that `TrainConfig::validate` refuses, is shown
//! with its message in place and START stays disabled.

use super::format::{format_bytes, format_count};
use super::memory_estimate::{estimate_memory, memory_problem};
use super::model_list::ModelList;
use super::palette::notice_frame;
use cllm_core::PRESET_NAMES;
use cllm_data::tokenizer::{MAX_BPE_VOCAB_SIZE, MIN_BPE_VOCAB_SIZE};
use cllm_train::memory::{self};
use cllm_train::{TokenizerKind, TrainConfig};
use eframe::egui;
use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod advanced;
mod start_from;

use advanced::advanced_ui;
use start_from::start_from_ui;

/// How often the free memory is read again.
const AVAILABLE_REFRESH: Duration = Duration::from_secs(1);

/// Text buffers of the fields typed as text, keyed by field name, so a
/// half-typed "3e-" survives between frames.
#[derive(Default)]
pub struct ConfigEditor {
    text: HashMap<&'static str, String>,
    /// Parse errors per field, shown beside it.
    pub field_errors: HashMap<&'static str, String>,
    resume_text: Option<String>,
    /// The free memory last read, and when.
    available: Cell<Option<(Instant, Option<u64>)>>,
    /// Set by tests: the free memory to assume instead of reading it.
    pinned_available: Option<Option<u64>>,
}

impl ConfigEditor {
    /// First problem to show: a field that does not parse, else
    /// validate(), else settings whose memory this machine does not have.
    pub fn problem(&self, cfg: &TrainConfig) -> Option<String> {
        let mut keys: Vec<_> = self.field_errors.keys().collect();
        keys.sort();
        if let Some(k) = keys.first() {
            return Some(self.field_errors[*k].clone());
        }
        if let Err(e) = cfg.validate() {
            return Some(e.to_string());
        }
        self.memory_problem(cfg)
    }

    /// Why `cfg` does not fit in this machine's free memory, if it does not.
    /// A run from a base model has the base's size, which the trainer
    /// checks itself.
    pub fn memory_problem(&self, cfg: &TrainConfig) -> Option<String> {
        if cfg.model.init.is_some() {
            return None;
        }
        memory_problem(cfg, self.available_memory())
    }

    /// Free memory (read at most once a second; never blocks: procfs).
    pub fn available_memory(&self) -> Option<u64> {
        if let Some(pinned) = self.pinned_available {
            return pinned;
        }
        match self.available.get() {
            Some((at, bytes)) if at.elapsed() < AVAILABLE_REFRESH => bytes,
            _ => {
                let bytes = memory::available_memory_bytes();
                self.available.set(Some((Instant::now(), bytes)));
                bytes
            }
        }
    }

    /// Assume `bytes` of free memory (`None`: unknown) instead of reading
    /// the machine's, so tests do not depend on the machine.
    pub fn assume_available_memory(&mut self, bytes: Option<u64>) {
        self.pinned_available = Some(bytes);
    }

    /// Forgets the typed text so fields show `cfg` again (after loading).
    pub fn reset(&mut self) {
        let pinned = self.pinned_available;
        *self = ConfigEditor::default();
        self.pinned_available = pinned;
    }
}

/// What the panel asks the app to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigAction {
    None,
    /// Open the dialog to pick a checkpoint to resume from.
    PickResume,
    /// List the models on disk again (the *Start from* choices).
    RefreshModels,
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

/// How long the run is: a number of epochs, or a time budget in minutes
/// (the steps that fit are planned after a timed warm-up, then re-planned).
fn length_field(ui: &mut egui::Ui, cfg: &mut TrainConfig) {
    let lab = ui
        .label("Train for")
        .on_hover_text("Passes over the training split, or a time budget");
    ui.horizontal(|ui| {
        let by_time = cfg.budget.time_budget_secs > 0.0;
        if ui.radio(!by_time, "epochs").clicked() && by_time {
            cfg.budget.time_budget_secs = 0.0;
            if cfg.budget.epochs == 0 {
                cfg.budget.epochs = TrainConfig::default().budget.epochs;
            }
        }
        if ui
            .radio(by_time, "minutes")
            .on_hover_text(
                "Train for this long: after a short timed warm-up the run fixes how many \
                 steps fit, and changes that when the machine gets faster or slower, so \
                 the learning rate decays to its floor as the time ends",
            )
            .clicked()
            && !by_time
        {
            cfg.budget.time_budget_secs = 600.0;
            cfg.budget.epochs = 0;
        }
        if cfg.budget.time_budget_secs > 0.0 {
            let mut minutes = cfg.budget.time_budget_secs / 60.0;
            ui.add(
                egui::DragValue::new(&mut minutes)
                    .range(0.1..=10_000.0)
                    .speed(0.5)
                    .suffix(" min"),
            )
            .labelled_by(lab.id);
            cfg.budget.time_budget_secs = (minutes * 60.0).max(6.0);
        } else {
            ui.add(
                egui::DragValue::new(&mut cfg.budget.epochs)
                    .range(0..=100_000)
                    .speed(0.2),
            )
            .labelled_by(lab.id);
        }
    });
    ui.end_row();
}

/// Draws the panel. `picking` is whether a file dialog is open (the
/// resume picker waits for it); `models` are the models on disk a run may
/// start from.
pub fn config_panel_ui(
    ui: &mut egui::Ui,
    cfg: &mut TrainConfig,
    ed: &mut ConfigEditor,
    show_advanced: &mut bool,
    enabled: bool,
    picking: bool,
    models: &ModelList,
) -> ConfigAction {
    let mut action = ConfigAction::None;
    let mem_problem = ed.memory_problem(cfg);
    ui.add_enabled_ui(enabled, |ui| {
        egui::Grid::new("config_basic")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                float_field(
                    ui,
                    ed,
                    "lr",
                    "Learning rate",
                    &mut cfg.optimizer.lr,
                    "Peak learning rate after warmup",
                );
                length_field(ui, cfg);
                int_field(
                    ui,
                    "Batch size",
                    &mut cfg.batch.batch_size,
                    1..=4096,
                    "Sequences per micro-batch group",
                );
                let from_base = cfg.model.init.is_some() && cfg.resume.is_none();
                if from_base {
                    ui.label("Sequence length");
                    ui.weak("the base model's context");
                    ui.end_row();
                } else {
                    int_field(
                        ui,
                        "Sequence length",
                        &mut cfg.batch.seq_len,
                        1..=8192,
                        "Tokens per training sequence",
                    );
                }
                let lab = ui.label("Threads");
                ui.horizontal(|ui| {
                    ui.add(
                        egui::DragValue::new(&mut cfg.threads)
                            .range(0..=1024)
                            .speed(0.1),
                    )
                    .labelled_by(lab.id);
                    if cfg.threads == 0 {
                        ui.weak(format!("auto = {}", cfg.resolved_threads()));
                    }
                });
                ui.end_row();

                if start_from_ui(ui, cfg, models) {
                    action = ConfigAction::RefreshModels;
                }
                if from_base {
                    ui.label("Model preset");
                    ui.weak("the base model's size, tokenizer and vocabulary");
                    ui.end_row();
                    return;
                }
                let lab = ui.label("Model preset");
                egui::ComboBox::from_id_salt("preset")
                    .selected_text(cfg.model.preset.clone())
                    .show_ui(ui, |ui| {
                        let auto = cllm_train::config::AUTO;
                        ui.selectable_value(&mut cfg.model.preset, auto.to_string(), auto)
                            .on_hover_text(
                                "the size for the data, this machine and the time: \
                                 chosen when the data is read",
                            );
                        for p in PRESET_NAMES {
                            ui.selectable_value(&mut cfg.model.preset, p.to_string(), p);
                        }
                    })
                    .response
                    .labelled_by(lab.id);
                ui.end_row();
                ui.label("");
                memory_line_ui(ui, cfg, ed, mem_problem.as_deref());
                ui.end_row();

                let lab = ui.label("Tokenizer");
                ui.horizontal(|ui| {
                    ui.selectable_value(&mut cfg.corpus.tokenizer, TokenizerKind::Bpe, "BPE");
                    ui.selectable_value(&mut cfg.corpus.tokenizer, TokenizerKind::Bytes, "bytes");
                })
                .response
                .labelled_by(lab.id);
                ui.end_row();
                if cfg.corpus.tokenizer == TokenizerKind::Bpe {
                    int_field(
                        ui,
                        "Vocabulary size",
                        &mut cfg.corpus.vocab_size,
                        MIN_BPE_VOCAB_SIZE..=MAX_BPE_VOCAB_SIZE,
                        "BPE vocabulary size",
                    );
                }
            });

        resume_banner_ui(ui, cfg, ed);

        egui::CollapsingHeader::new("Advanced")
            .open(Some(*show_advanced))
            .show(ui, |ui| {
                if advanced_ui(ui, cfg, ed, picking) {
                    action = ConfigAction::PickResume;
                }
            })
            .header_response
            .clicked()
            .then(|| *show_advanced = !*show_advanced);
    });

    // The memory refusal is already shown in place, under the preset.
    if let Some(p) = ed.problem(cfg)
        && Some(&p) != ed.memory_problem(cfg).as_ref()
    {
        ui.colored_label(ui.visuals().error_fg_color, format!("Invalid: {p}"));
    }
    action
}

/// The model size and memory need, or, when the machine lacks that
/// memory, the refusal in red.
fn memory_line_ui(ui: &mut egui::Ui, cfg: &TrainConfig, ed: &ConfigEditor, problem: Option<&str>) {
    if cfg.resume.is_some() {
        ui.weak("model and batch from the checkpoint");
        return;
    }
    let Some(m) = estimate_memory(cfg) else {
        ui.weak("—");
        return;
    };
    let n = &m.need;
    let breakdown = format!(
        "Weights {} + AdamW moments {}.\n\
         Per sphere ({} threads): a gradient buffer {} and activations for a \
         micro-batch of {} sequences {}.\n\
         Token ids of one step: {}.\n\
         Free memory now: {}.",
        format_bytes(n.weights_bytes),
        format_bytes(n.optimizer_bytes),
        m.threads,
        format_bytes(n.gradient_bytes / m.threads as u64),
        m.micro_batch,
        format_bytes(n.workspace_bytes / m.threads as u64),
        format_bytes(n.tokens_bytes),
        ed.available_memory()
            .map_or_else(|| "unknown".to_string(), format_bytes),
    );
    match problem {
        Some(why) => {
            ui.add(
                egui::Label::new(
                    egui::RichText::new(format!("Does not fit: {why}"))
                        .color(ui.visuals().error_fg_color),
                )
                .wrap(),
            )
            .on_hover_text(breakdown);
        }
        None => {
            ui.weak(format!(
                "{} parameters · ~{} memory",
                format_count(n.params as u64),
                format_bytes(n.total_bytes)
            ))
            .on_hover_text(breakdown);
        }
    }
}

/// While a resume file is set, says so where it cannot be missed, with a
/// button that drops it (it is never restored silently after a restart).
fn resume_banner_ui(ui: &mut egui::Ui, cfg: &mut TrainConfig, ed: &mut ConfigEditor) {
    let Some(path) = cfg.resume.clone() else {
        return;
    };
    let colour = ui.visuals().warn_fg_color;
    notice_frame(colour).show(ui, |ui| {
        ui.horizontal_wrapped(|ui| {
            ui.colored_label(
                colour,
                format!(
                    "Resuming from {} — the run continues that checkpoint's data and settings",
                    path.display()
                ),
            );
            if ui
                .button("× Don't resume")
                .on_hover_text("Start a fresh run with the settings above")
                .clicked()
            {
                cfg.resume = None;
                ed.resume_text = None;
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn settings_beyond_the_machine_are_refused_with_the_engine_message() {
        let mut cfg = TrainConfig::default();
        cfg.batch.batch_size = 4096;
        cfg.batch.seq_len = 8192;
        cfg.threads = 2;
        let mut ed = ConfigEditor::default();
        ed.assume_available_memory(Some(8 << 30));
        let why = ed
            .problem(&cfg)
            .expect("4096 x 8192 tokens do not fit in 8 GiB");
        assert!(
            why.starts_with("batch size 4096 x sequence length 8192 on 2 spheres needs about "),
            "{why}"
        );
        assert!(why.ends_with("this machine has 8.0 GiB available"), "{why}");
        // The default settings fit; a resumed run is the trainer's to check.
        assert_eq!(ed.problem(&TrainConfig::default()), None);
        let resumed = TrainConfig {
            resume: Some(PathBuf::from("a.cllm")),
            ..cfg
        };
        assert_eq!(ed.memory_problem(&resumed), None);
    }
}
