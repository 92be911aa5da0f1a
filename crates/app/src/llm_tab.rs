//! The LLM tab: pick and load a checkpoint, prompt it, and watch the reply
//! stream in with per-token probabilities, speed, and a C syntax check.
//!
//! `LlmTab` holds the runtime side (the model list job, a load in progress,
//! the loaded model, the generation thread, the current reply); what the
//! user typed and chose lives in `Settings::llm`. Listing, loading, Browse…
//! and generation all run on their own threads; every frame drains what
//! they sent and never waits on them.

use super::WorkbenchApp;
use super::format::{format_bytes, format_count};
use super::llm_settings::{LlmSettings, PROMPT_PRESETS};
use super::model_list::{ListAction, ModelList, format_unix_utc, models_on_disk_ui};
use super::model_loader::{LoadJob, LoadedModel, preset_name};
use super::reply::Reply;
use super::sampling_panel::sampling_ui;
use super::settings::Settings;
use super::token_view::{displayable, legend_ui, token_text_ui};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::prompt_from_data::opening_from_tokens;
use cllm_generate::{GenerationHandle, spawn_generation};
use cllm_serve as serve;
use cllm_serve::{ServeConfig, ServeModel, ServerHandle};
use crossbeam_channel::{Receiver, TryRecvError, bounded};
use eframe::egui;
use std::path::{Path, PathBuf};

/// The folders listed by default, besides where the training settings
/// write their checkpoints.
pub const DEFAULT_MODEL_DIRS: [&str; 2] = ["models", "checkpoints"];

pub struct LlmTab {
    pub list: ModelList,
    pub loading: Option<LoadJob>,
    pub loaded: Option<LoadedModel>,
    /// Why the last load was refused.
    pub load_error: Option<String>,
    /// Why Generate was refused (no model, empty prompt, bad setting).
    pub message: Option<String>,
    pub reply: Option<Reply>,
    /// The token under the pointer in the last frame.
    pub hovered_token: Option<usize>,
    generation: Option<GenerationHandle>,
    /// The training run's newest checkpoint when the list was last built:
    /// a newer one triggers a refresh so it shows up without a click.
    listed_after: Option<PathBuf>,
    browse: Option<Receiver<Option<PathBuf>>>,
    repaint: Option<egui::Context>,
    /// The OpenAI-compatible server over the loaded model (`cllm serve`).
    pub server: Option<ServerHandle>,
    /// The port the next Start server listens on (127.0.0.1 only).
    pub server_port: u16,
    /// Why the server could not start, or why it stopped.
    pub server_message: Option<String>,
    /// Prompts drawn from the loaded model's data so far: the next draw's
    /// seed, so each click of "From your data" gives another opening.
    prompt_draws: u64,
}

impl LlmTab {
    pub fn new(repaint: Option<egui::Context>) -> LlmTab {
        LlmTab {
            list: ModelList::default(),
            loading: None,
            loaded: None,
            load_error: None,
            message: None,
            reply: None,
            hovered_token: None,
            generation: None,
            listed_after: None,
            browse: None,
            repaint,
            server: None,
            server_port: 8080,
            server_message: None,
            prompt_draws: 0,
        }
    }

    /// Puts a function opening from the loaded model's training data (its
    /// repository memory) into the prompt, or says why there is none.
    pub fn prompt_from_data(&mut self, settings: &mut LlmSettings) {
        let Some(loaded) = &self.loaded else {
            self.message = Some("load a model first".into());
            return;
        };
        let Some(memory) = &loaded.memory else {
            self.message = Some(
                "this model has no repository memory, so its training data is not in the file"
                    .into(),
            );
            return;
        };
        let half_context = (loaded.config().n_ctx / 2).max(1);
        let seed = self.prompt_draws;
        self.prompt_draws += 1;
        match opening_from_tokens(memory.tokens(), &loaded.tokenizer, seed, half_context) {
            Ok(Some(opening)) => {
                settings.prompt = opening;
                self.message = None;
            }
            Ok(None) => {
                self.message =
                    Some("no C function opening found in this model's training data".into())
            }
            Err(e) => self.message = Some(e.to_string()),
        }
    }

    /// Starts the server over the loaded model on 127.0.0.1. Binding is
    /// immediate; the server's threads do the rest.
    pub fn start_server(&mut self, use_memory: bool) {
        if self.server.is_some() {
            return;
        }
        let Some(loaded) = &self.loaded else {
            self.server_message = Some("load a model first".into());
            return;
        };
        let model = ServeModel {
            id: loaded
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "cllm".into()),
            gpt: loaded.model.clone(),
            tok: loaded.tokenizer.clone(),
            memory: loaded.memory.clone().filter(|_| use_memory),
        };
        let config = ServeConfig {
            port: self.server_port,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            ..ServeConfig::default()
        };
        match serve::start(model, config) {
            Ok(handle) => {
                self.server = Some(handle);
                self.server_message = None;
            }
            Err(e) => self.server_message = Some(e.to_string()),
        }
    }

    /// Stops the server on a thread of its own (it waits for its threads,
    /// a running reply stops within a token), so the UI never waits.
    pub fn stop_server(&mut self, why: Option<String>) {
        if let Some(handle) = self.server.take() {
            std::thread::spawn(move || handle.stop());
        }
        self.server_message = why;
    }

    /// `models/`, `checkpoints/`, and the folders the training settings
    /// save into (so a run's checkpoints show up wherever they go).
    pub fn model_dirs(settings: &Settings) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = DEFAULT_MODEL_DIRS.iter().map(PathBuf::from).collect();
        if let Some(parent) = settings.train.output.parent()
            && !parent.as_os_str().is_empty()
        {
            dirs.push(parent.to_path_buf());
        }
        dirs.push(settings.train.checkpoint_dir.clone());
        let mut unique: Vec<PathBuf> = Vec::new();
        for d in dirs {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        unique
    }

    pub fn refresh(&mut self, dirs: Vec<PathBuf>) {
        self.list.refresh(dirs, self.repaint.clone());
    }

    pub fn is_generating(&self) -> bool {
        self.generation.is_some()
    }

    pub fn is_loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Whether some background job may still send news.
    pub fn is_busy(&self) -> bool {
        self.is_generating() || self.is_loading() || self.list.is_listing() || self.browse.is_some()
    }

    /// Starts loading the checkpoint at `path` (as typed) on its own thread.
    pub fn load(&mut self, path: &str) {
        if self.is_loading() || self.is_generating() {
            return;
        }
        let path = path.trim();
        if path.is_empty() {
            self.load_error =
                Some("no model file: pick one from the list, Browse…, or type its path".into());
            return;
        }
        self.load_error = None;
        self.loading = Some(LoadJob::start(PathBuf::from(path), self.repaint.clone()));
    }

    /// Starts a reply with the loaded model, or says why it cannot.
    pub fn generate(&mut self, settings: &LlmSettings) {
        if self.is_generating() {
            return;
        }
        self.message = None;
        let Some(loaded) = &self.loaded else {
            self.message = Some("load a model first".into());
            return;
        };
        if settings.prompt.trim().is_empty() {
            self.message = Some("the prompt is empty: type something or pick a preset".into());
            return;
        }
        let cfg = match settings.sampling_config() {
            Ok(c) => c,
            Err(e) => {
                self.message = Some(e);
                return;
            }
        };
        let ctx = self.repaint.clone();
        let notify = move || {
            if let Some(c) = &ctx {
                c.request_repaint();
            }
        };
        self.hovered_token = None;
        self.reply = Some(Reply::new(settings.prompt.clone()));
        self.generation = Some(spawn_generation(
            loaded.model.clone(),
            loaded.tokenizer.clone(),
            settings.prompt.clone(),
            cfg,
            loaded.memory.clone().filter(|_| settings.use_memory),
            notify,
        ));
    }

    /// Asks the reply to stop; it ends within one token.
    pub fn stop(&mut self) {
        if let Some(g) = &self.generation {
            g.cancel();
        }
    }

    fn browse(&mut self) {
        if self.browse.is_some() {
            return;
        }
        let (tx, rx) = bounded(1);
        let ctx = self.repaint.clone();
        // The dialog blocks its caller until closed: keep it off the UI
        // thread so replies keep streaming. With no desktop portal rfd
        // answers None at once; the typed path keeps working.
        std::thread::spawn(move || {
            let start = DEFAULT_MODEL_DIRS
                .iter()
                .map(Path::new)
                .find(|d| d.is_dir())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let picked = rfd::FileDialog::new()
                .add_filter("CLLM checkpoint", &["cllm"])
                .set_directory(start)
                .pick_file();
            let _ = tx.send(picked);
            if let Some(c) = ctx {
                c.request_repaint();
            }
        });
        self.browse = Some(rx);
    }

    /// Takes in everything the background jobs have sent. Never blocks.
    /// `model_path` receives a file picked with Browse….
    pub fn poll(&mut self, model_path: &mut String) -> bool {
        let mut news = self.list.poll();
        if let Some(job) = &self.loading
            && let Some(result) = job.poll()
        {
            match result {
                Ok(model) => {
                    if self.server.is_some() {
                        self.stop_server(Some("server stopped: another model was loaded".into()));
                    }
                    self.loaded = Some(model);
                    self.load_error = None;
                    self.message = None;
                }
                Err(e) => self.load_error = Some(e),
            }
            self.loading = None;
            news = true;
        }
        if let Some(rx) = &self.browse {
            match rx.try_recv() {
                Ok(picked) => {
                    if let Some(p) = picked {
                        *model_path = p.display().to_string();
                        self.load(&model_path.clone());
                    }
                    self.browse = None;
                    news = true;
                }
                Err(TryRecvError::Disconnected) => self.browse = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        news |= self.drain_generation();
        news
    }

    fn drain_generation(&mut self) -> bool {
        let (Some(g), Some(reply)) = (&self.generation, &mut self.reply) else {
            return false;
        };
        let mut news = false;
        loop {
            match g.events.try_recv() {
                Ok(ev) => {
                    reply.apply(ev);
                    news = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if !reply.is_done() {
                        reply.error = Some("the generation thread ended without a result".into());
                    }
                    break;
                }
            }
        }
        // The thread sends its last event just before returning: drop the
        // handle (which joins) only once it has returned, never wait here.
        if reply.is_done() && g.is_finished() {
            self.generation = None;
            news = true;
        }
        news
    }
}

// ---------------------------------------------------------------------------
// Drawing

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

fn loaded_model_ui(ui: &mut egui::Ui, tab: &LlmTab, settings: &mut LlmSettings) {
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
fn server_ui(ui: &mut egui::Ui, tab: &mut LlmTab, settings: &LlmSettings) {
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
                    tab.start_server(settings.use_memory);
                }
            }
        }
    });
    if let Some(m) = &tab.server_message {
        ui.colored_label(ui.visuals().warn_fg_color, m);
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
    let label = ui.label("Prompt text (Ctrl+Enter generates)");
    let field = ui.add(
        egui::TextEdit::multiline(&mut settings.prompt)
            .font(egui::TextStyle::Monospace)
            .desired_rows(4)
            .desired_width(f32::INFINITY)
            .hint_text("Type the start of some code…"),
    );
    let field = field.labelled_by(label.id);
    let ctrl_enter =
        field.has_focus() && ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter));

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
            let ready = tab.loaded.is_some() && !tab.is_loading();
            let clicked = ui
                .add_enabled(ready, go)
                .on_disabled_hover_text("Load a model first")
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
            token_text_ui(ui, &reply.prompt, &reply.tokens, settings.shade_tokens)
        })
        .inner;
    tab.hovered_token = hovered;
}
