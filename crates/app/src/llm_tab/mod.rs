//! The LLM tab: pick and load a checkpoint, prompt it, and watch the reply
//! stream in with per-token probabilities, speed, and a C syntax check.
//!
//! `LlmTab` holds the runtime side (the model list job, a load in progress,
//! the loaded model, the generation thread, the current reply); what the
//! user typed and chose lives in `Settings::llm`. Listing, loading, Browse…
//! and generation all run on their own threads; every frame drains what
//! they sent and never waits on them. The drawing is in `ui` (the tab) and
//! `model_panel` (the loaded model and its server).

mod model_panel;
mod ui;

pub use ui::llm_tab_ui;

use crate::llm_settings::LlmSettings;
use crate::model_list::ModelList;
use crate::model_loader::{LoadJob, LoadedModel};
use crate::reply::Reply;
use crate::settings::Settings;
use cllm_core::Gpt;
use cllm_generate::prompt_from_data::opening_from_tokens;
use cllm_generate::{GenerationHandle, GenerationStart, Infill, PrepareModel, spawn_generation};
use cllm_serve as serve;
use cllm_serve::{ServeConfig, ServeModel, ServerHandle};
use crossbeam_channel::{Receiver, TryRecvError, bounded};
use eframe::egui;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the loaded model cannot fill in the middle, shown in infill mode.
pub const CANNOT_INFILL: &str = "this model cannot fill in the middle: its tokenizer has no \
     FIM tokens (it was trained before FIM, or on bytes). Train a new model with the BPE \
     tokenizer and a FIM rate above 0 (Training tab, Advanced)";

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
    /// immediate; the server's threads do the rest. With `adapt`, each
    /// request is answered by a copy adapted to its prompt (the model's
    /// setting).
    pub fn start_server(&mut self, use_memory: bool, adapt: bool) {
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
            adapt: adapt.then(|| {
                let settings = loaded.adapt;
                Arc::new(move |gpt: &Gpt, ids: &[u32]| {
                    cllm_train::adapt::adapt_to_prompt(gpt, ids, settings)
                        .map_err(|e| e.to_string())
                }) as serve::Adapt
            }),
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
        if let Some(parent) = settings.train.outputs.output.parent()
            && !parent.as_os_str().is_empty()
        {
            dirs.push(parent.to_path_buf());
        }
        dirs.push(settings.train.outputs.checkpoint_dir.clone());
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
        if settings.infill {
            if !loaded.can_infill() {
                self.message = Some(CANNOT_INFILL.into());
                return;
            }
            if settings.prompt.trim().is_empty() && settings.suffix.trim().is_empty() {
                self.message = Some(
                    "nothing around the cursor: type the text before it, after it, or both".into(),
                );
                return;
            }
        } else if settings.prompt.trim().is_empty() {
            self.message = Some("the prompt is empty: type something or pick a preset".into());
            return;
        }
        let mut cfg = match settings.sampling_config() {
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
        let start = if settings.infill {
            // The middle ends where the model ends it; the suffix closes
            // what the prefix opened.
            cfg.stop_when_closed = false;
            self.reply = Some(Reply::infill(
                settings.prompt.clone(),
                settings.suffix.clone(),
            ));
            GenerationStart::Infill(Infill {
                prefix: settings.prompt.clone(),
                suffix: settings.suffix.clone(),
                extra: Vec::new(),
            })
        } else {
            self.reply = Some(Reply::new(settings.prompt.clone()));
            GenerationStart::Prompt(settings.prompt.clone())
        };
        let prepare = settings
            .adapt_to_prompt
            .then(|| adapt_to(loaded, &settings.prompt));
        if let Some(reply) = self.reply.as_mut() {
            reply.adapted_lr = settings.adapt_to_prompt.then_some(loaded.adapt.lr);
        }
        self.generation = Some(spawn_generation(
            loaded.model.clone(),
            loaded.tokenizer.clone(),
            start,
            cfg,
            loaded.memory.clone().filter(|_| settings.use_memory),
            prepare,
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

/// Adapting `loaded`'s weights to `prompt` (the text before the cursor), to
/// run on the reply's thread.
fn adapt_to(loaded: &LoadedModel, prompt: &str) -> PrepareModel {
    let tokens = loaded.tokenizer.encode(prompt);
    let settings = loaded.adapt;
    Box::new(move |model: &Gpt| {
        cllm_train::adapt::adapt_to_prompt(model, &tokens, settings).map_err(|e| e.to_string())
    })
}
