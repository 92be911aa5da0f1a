//! A run that starts from a base model (`cllm train --init BASE.cllm`): the
//! base's architecture, tokenizer and weights, with a fresh optimizer and
//! schedule. The data is tokenized with the base's tokenizer; a setting
//! given that contradicts the base (another size, tokenizer or vocabulary,
//! a longer context) is refused by name.

use crate::TrainConfig;
use crate::checkpoint::{self, BaseModel, Checkpoint};
use crate::config::{AUTO, TokenizerKind};
use crate::error::TrainError;
use cllm_core::ModelConfig;
use cllm_data::tokenizer::Tokenizer;
use std::path::Path;

/// A base model read for a new run: its file's contents and what names it.
pub struct Base {
    pub checkpoint: Checkpoint,
    pub model: BaseModel,
}

/// Reads and verifies the base model at `path`; its checksum and run name
/// it in the new run's log and checkpoints.
pub fn load_base(path: &Path) -> Result<Base, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io("read the base model", path, e))?;
    let info = checkpoint::verify_bytes(path, &bytes)?;
    let checkpoint = checkpoint::load_bytes(path, &bytes)?;
    Ok(Base {
        model: BaseModel {
            path: path.to_path_buf(),
            checksum_sha256: info.checksum_sha256,
            run: checkpoint.train_config.outputs.run_name.clone(),
            step: checkpoint.state.step,
        },
        checkpoint,
    })
}

impl Base {
    /// The base's tokenizer.
    pub fn tokenizer(&self) -> Result<Tokenizer, TrainError> {
        Tokenizer::from_json(&self.checkpoint.tokenizer_json)
            .map_err(|e| TrainError::SavedTokenizer(e.to_string()))
    }

    /// The model a run from this base trains: the base's, with the run's
    /// dropout when it sets one.
    pub fn model_config(&self, config: &TrainConfig) -> ModelConfig {
        let mut mc = self.checkpoint.model.clone();
        if let Some(d) = config.model.dropout {
            mc.dropout = d;
        }
        mc
    }

    /// How the base is described in messages: `'small' (4 layers of 128)`.
    pub fn describe(&self) -> String {
        let m = &self.checkpoint.model;
        format!(
            "'{}' ({} layers of {})",
            self.checkpoint.train_config.model.preset, m.n_layer, m.n_embd
        )
    }
}

/// The config of a new run from `base`: the user's settings, with the
/// base's size, tokenizer and vocabulary, and its trained context unless a
/// sequence length (no longer) was given. A given setting that contradicts
/// the base is an error naming its option.
pub fn config_from_base(mut config: TrainConfig, base: &Base) -> Result<TrainConfig, TrainError> {
    let given = |field: &str| config.given.iter().any(|g| g == field);
    let contradicts =
        |option: &'static str, given: String, of_base: String| TrainError::InitContradicts {
            option,
            given,
            base: of_base,
            path: base.model.path.clone(),
        };
    let m = &base.checkpoint.model;
    if given("preset") && config.model.preset != AUTO {
        let asked = ModelConfig::preset(&config.model.preset)
            .map_err(|_| crate::config::ConfigError::unknown_preset(&config.model.preset))?;
        let shape = |c: &ModelConfig| (c.n_layer, c.n_head, c.n_embd, c.n_inner);
        if shape(&asked) != shape(m) {
            return Err(contradicts(
                "--preset",
                format!(
                    "{} ({} layers of {})",
                    config.model.preset, asked.n_layer, asked.n_embd
                ),
                format!("a {} model", base.describe()),
            ));
        }
    }
    let tokenizer = base.tokenizer()?;
    let kind = match tokenizer {
        Tokenizer::Bytes => TokenizerKind::Bytes,
        Tokenizer::Bpe(_) => TokenizerKind::Bpe,
    };
    let of_base = format!(
        "its tokenizer is {} with {} tokens",
        kind.name(),
        tokenizer.vocab_size()
    );
    if given("tokenizer") && config.corpus.tokenizer != kind {
        let asked = config.corpus.tokenizer.name().to_string();
        return Err(contradicts("--tokenizer", asked, of_base));
    }
    let vocab_differs =
        kind == TokenizerKind::Bpe && config.corpus.vocab_size != tokenizer.vocab_size();
    if given("vocab_size") && vocab_differs {
        let asked = config.corpus.vocab_size.to_string();
        return Err(contradicts("--vocab-size", asked, of_base));
    }
    let context = checkpoint::trained_context(&base.checkpoint);
    if given("seq_len") && config.batch.seq_len > m.n_ctx {
        let asked = config.batch.seq_len.to_string();
        let of_base = format!("its context is {} tokens", m.n_ctx);
        return Err(contradicts("--seq-len", asked, of_base));
    }
    if !given("seq_len") {
        config.batch.seq_len = context;
    }
    let preset = &base.checkpoint.train_config.model.preset;
    if ModelConfig::preset(preset).is_ok() {
        config.model.preset = preset.clone();
    }
    config.corpus.tokenizer = kind;
    if kind == TokenizerKind::Bpe {
        config.corpus.vocab_size = tokenizer.vocab_size();
    }
    Ok(config)
}
