//! UI tests of the LLM tab: the real `WorkbenchApp` driven headlessly with
//! egui_kittest over a small checkpoint written here from a freshly
//! initialised model. The tab lists it, loads it off the UI thread, streams
//! a reply that must equal the library generator's, reports counts, speed
//! and the C syntax check, stops mid-reply, shows alternatives on hover,
//! and refuses damaged files and empty prompts with a message.

use cllm_app::settings::Settings;
use cllm_app::{Tab, WorkbenchApp};
use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{FinishReason, Generator};
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use cllm_train::{OutputSettings, TrainConfig};
use eframe::egui;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod adapt;
mod code_and_memory;
mod infill;
mod model_list;
mod reply;
mod sampling;

const PROMPT_LABEL: &str = "Prompt text (Ctrl+Enter generates)";

/// A tiny model over the byte tokenizer, saved to `models/tiny.cllm`.
fn write_checkpoint(root: &Path) -> PathBuf {
    write_checkpoint_of(root, "tiny")
}

/// [`write_checkpoint`] of another preset's shape (bytes as tokens).
fn write_checkpoint_of(root: &Path, preset: &str) -> PathBuf {
    let mut cfg = ModelConfig::preset(preset).unwrap();
    cfg.vocab_size = 256;
    let model = Gpt::new(cfg, 11).unwrap();
    let path = root.join("models/tiny.cllm");
    let mut state = TrainingState::start();
    state.step = 120;
    state.epoch = 2;
    state.best_val_loss = Some(2.3456);
    save_byte_model(&path, &model, &state, None);
    path
}

/// The app on the LLM tab, its training output pointed into `root` so the
/// model list searches `root/models` and `root/checkpoints`.
fn app_in(root: &Path) -> Harness<'static, WorkbenchApp> {
    let settings = Settings {
        data_dir: root.join("no_data").display().to_string(),
        train: TrainConfig {
            outputs: OutputSettings {
                output: root.join("models/final.cllm"),
                checkpoint_dir: root.join("checkpoints"),
                ..Default::default()
            },
            ..TrainConfig::default()
        },
        ..Settings::default()
    };
    let mut app = WorkbenchApp::new_for_test(settings);
    app.tab = Tab::Llm;
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut WorkbenchApp| app.show(ui), app)
}

/// Steps frames until `done` holds; the work is on background threads and
/// frames never wait for it, so this only bounds a hang.
fn step_until(h: &mut Harness<'_, WorkbenchApp>, what: &str, done: impl Fn(&WorkbenchApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::yield_now();
    }
}

/// Types `path` into the model field and presses Load.
fn load(h: &mut Harness<'_, WorkbenchApp>, path: &Path) {
    h.state_mut().settings.llm.model_path.clear();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Model file")
        .focus();
    h.run_steps(1);
    h.get_by_role_and_label(Role::TextInput, "Model file")
        .type_text(&path.display().to_string());
    h.run_steps(1);
    assert_eq!(
        h.state().settings.llm.model_path,
        path.display().to_string()
    );
    h.get_by_label("Load").click();
    h.step();
    step_until(h, "the load", |a| !a.llm.is_loading());
}

/// Generates in the tab until the reply is done and returns its text.
fn generate_reply(h: &mut Harness<'_, WorkbenchApp>) -> String {
    h.get_by_label("Generate").click();
    h.step();
    step_until(h, "the reply", |a| {
        a.llm.reply.as_ref().is_some_and(|r| r.is_done()) && !a.llm.is_generating()
    });
    h.state().llm.reply.clone().unwrap().text
}

/// Saves `model` (bytes as tokens) at `state` with `memory`, a saved
/// repository memory, when given.
fn save_byte_model(path: &Path, model: &Gpt, state: &TrainingState, memory: Option<&[u8]>) {
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &Tokenizer::bytes().to_json(),
            train_config: &TrainConfig::default(),
            state,
            memory,
        },
    )
    .unwrap();
}
