//! Loading a checkpoint for the LLM tab, off the UI thread: read and check
//! the file, rebuild the tokenizer and the model, and describe both for the
//! panel (preset, sizes, parameters, vocabulary, context, training state).

use super::error_text::{error_text, panic_text};
use cllm_core::config::PRESET_NAMES;
use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::Memory;
use cllm_train::adapt::AdaptSettings;
use cllm_train::checkpoint::{TrainingState, load};
use crossbeam_channel::{Receiver, TryRecvError, bounded};
use eframe::egui;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A model ready to generate, with what the panel shows about it.
pub struct LoadedModel {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub model: Arc<Gpt>,
    pub tokenizer: Arc<Tokenizer>,
    pub state: TrainingState,
    /// Seconds since the Unix epoch when the file was written.
    pub created_unix: u64,
    /// Whether the file can resume training (AdamW moments stored).
    pub has_optimizer: bool,
    /// The repository memory saved with the model, if any.
    pub memory: Option<Arc<Memory>>,
    /// How the model adapts to a prompt (its saved setting).
    pub adapt: AdaptSettings,
}

impl LoadedModel {
    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    /// Whether the model can fill in the middle (its tokenizer has the FIM
    /// tokens).
    pub fn can_infill(&self) -> bool {
        self.tokenizer.fim_tokens().is_some()
    }

    /// Reads `path` fully; every refusal names the file and the problem.
    pub fn read(path: &Path) -> Result<LoadedModel, String> {
        let ckpt = load(path).map_err(|e| error_text(&e))?;
        let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let tokenizer = Tokenizer::from_json(&ckpt.tokenizer_json)
            .map_err(|e| format!("{}: its tokenizer: {e}", path.display()))?;
        let has_optimizer = ckpt.optimizer.is_some();
        let memory = ckpt.repository_memory(path)?.map(Arc::new);
        let context = cllm_train::checkpoint::trained_context(&ckpt);
        let model = Gpt::from_params(ckpt.model, ckpt.params)
            .and_then(|m| m.with_context(context))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(LoadedModel {
            path: path.to_path_buf(),
            file_bytes,
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            state: ckpt.state,
            created_unix: ckpt.created_unix,
            has_optimizer,
            memory,
            adapt: ckpt.train_config.evaluation.adapt,
        })
    }
}

/// The preset whose shape `cfg` has (vocabulary and dropout aside: the
/// tokenizer and the training settings choose those), or "custom".
pub fn preset_name(cfg: &ModelConfig) -> &'static str {
    PRESET_NAMES
        .iter()
        .copied()
        .find(|name| {
            ModelConfig::preset(name).is_ok_and(|p| {
                (p.n_ctx, p.n_layer, p.n_head, p.n_embd, p.n_inner)
                    == (cfg.n_ctx, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_inner)
            })
        })
        .unwrap_or("custom")
}

/// A load on its own thread; the result arrives once.
pub struct LoadJob {
    pub path: PathBuf,
    rx: Receiver<Result<LoadedModel, String>>,
}

impl LoadJob {
    pub fn start(path: PathBuf, repaint: Option<egui::Context>) -> LoadJob {
        let (tx, rx) = bounded(1);
        let target = path.clone();
        std::thread::spawn(move || {
            let result =
                std::panic::catch_unwind(|| LoadedModel::read(&target)).unwrap_or_else(|panic| {
                    Err(format!(
                        "{}: loading failed: {}",
                        target.display(),
                        panic_text(&panic)
                    ))
                });
            let _ = tx.send(result);
            if let Some(ctx) = repaint {
                ctx.request_repaint();
            }
        });
        LoadJob { path, rx }
    }

    /// The result once it is there; never blocks.
    pub fn poll(&self) -> Option<Result<LoadedModel, String>> {
        match self.rx.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(format!(
                "{}: the loading thread ended without an answer",
                self.path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_recognised_by_shape() {
        let mut cfg = ModelConfig::preset("baby").unwrap();
        cfg.vocab_size = 999;
        cfg.dropout = 0.3;
        assert_eq!(preset_name(&cfg), "baby");
        cfg.n_layer += 1;
        assert_eq!(preset_name(&cfg), "custom");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = LoadedModel::read(Path::new("no/such/model.cllm"))
            .err()
            .expect("a missing file must be refused");
        assert!(err.contains("no/such/model.cllm"), "{err}");
    }
}
