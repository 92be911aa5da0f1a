//! The `.cllm` checkpoint format: write, verify, load, name, prune, export.
//!
//! A `.cllm` file is a plain safetensors file, so any safetensors tool opens
//! it: the weights under their GPT-2 names, the AdamW moments as
//! `optimizer.m.<name>` / `optimizer.v.<name>`, and everything else (format
//! name and version, model and training configs, training state, tokenizer,
//! SHA-256 checksum) as strings in the header's `__metadata__`.
//!
//! - [`format`]: the on-disk layout (names, offsets, metadata keys, checksum).
//! - [`write`]: the atomic [`save`].
//! - [`read`]: [`verify`] and [`load`], which check everything before trusting it.
//! - [`naming`]: file names and retention of periodic checkpoints.
//! - [`export_hf`]: the Hugging Face `transformers` GPT-2 export.

pub mod error;
pub mod export_gguf;
pub mod export_hf;
pub mod format;
pub mod naming;
pub mod read;
pub mod write;

pub use error::CheckpointError;
pub use export_hf::{ExportSummary, export_hf};
pub use naming::{
    BEST_NAME, DEFAULT_FINAL_PATH, best_path, is_periodic_name, periodic_name, periodic_path,
    prune_periodic,
};
pub use read::{load, verify};
pub use write::save;

use crate::config::{AdamWConfig, TrainConfig};
use crate::model::ModelConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where a run stands: everything besides the tensors that exact resume needs.
/// Every field is read back on resume (see `train::trainer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Epochs completed.
    pub epoch: u64,
    /// Optimizer steps completed (also the learning-rate schedule position).
    pub step: u64,
    /// The data loader's epoch (its shuffle order) and the next sequence in
    /// it: where the resumed run's first batch starts.
    pub data_epoch: u64,
    pub data_index: u64,
    pub best_val_loss: Option<f32>,
    /// Learning rate of the last step taken.
    pub lr: f32,
    pub tokens_seen: u64,
    /// Training time so far, summed over resumed sessions.
    pub elapsed_secs: f64,
    /// The learning-rate schedule's horizon in steps (0 in files written
    /// before it was stored: then it is recomputed from the config).
    #[serde(default)]
    pub horizon: u64,
    /// The step the run stops at (its epochs or `--max-steps`); 0 in older
    /// files.
    #[serde(default)]
    pub last_step: u64,
    /// Evaluations in a row without a new best validation loss (early
    /// stopping's counter).
    #[serde(default)]
    pub evals_without_gain: u64,
    /// What the run was trained on; resuming on other data is refused
    /// unless asked for. `None` in older files.
    #[serde(default)]
    pub data: Option<crate::data::fingerprint::DataFingerprint>,
}

impl TrainingState {
    /// The state of a run that has not taken a step yet.
    pub fn start() -> TrainingState {
        TrainingState {
            epoch: 0,
            step: 0,
            data_epoch: 0,
            data_index: 0,
            best_val_loss: None,
            lr: 0.0,
            tokens_seen: 0,
            elapsed_secs: 0.0,
            horizon: 0,
            last_step: 0,
            evals_without_gain: 0,
            data: None,
        }
    }
}

/// AdamW's state, owned (what [`load`] returns).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub config: AdamWConfig,
    /// Updates applied so far (the bias correction depends on it).
    pub step: u64,
    /// First and second moments, same layout as the parameters.
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// AdamW's state, borrowed (what [`save`] takes: no copy of the moments).
#[derive(Clone, Copy, Debug)]
pub struct OptimizerRef<'a> {
    pub config: &'a AdamWConfig,
    pub step: u64,
    pub m: &'a [f32],
    pub v: &'a [f32],
}

impl<'a> From<&'a OptimizerState> for OptimizerRef<'a> {
    fn from(opt: &'a OptimizerState) -> Self {
        OptimizerRef {
            config: &opt.config,
            step: opt.step,
            m: &opt.m,
            v: &opt.v,
        }
    }
}

/// Everything one `.cllm` file holds, loaded into memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub model: ModelConfig,
    /// The flat parameter buffer in [`ParamLayout`](crate::model::ParamLayout) order.
    pub params: Vec<f32>,
    /// `None` for a weights-only file.
    pub optimizer: Option<OptimizerState>,
    /// The tokenizer's Hugging Face `tokenizer.json`, verbatim.
    pub tokenizer_json: String,
    pub train_config: TrainConfig,
    pub state: TrainingState,
    /// Seconds since the Unix epoch when the file was written.
    pub created_unix: u64,
    /// `cllm` version that wrote the file.
    pub program_version: String,
    /// The stored [`Memory`](crate::memory::Memory) (`Memory::from_bytes`),
    /// when the file carries one.
    pub memory: Option<Vec<u8>>,
}

impl Checkpoint {
    /// The repository memory stored in the file (`None` without one); a
    /// damaged one is an error naming `path`.
    pub fn repository_memory(
        &self,
        path: &std::path::Path,
    ) -> Result<Option<crate::memory::Memory>, String> {
        self.memory
            .as_deref()
            .map(crate::memory::Memory::from_bytes)
            .transpose()
            .map_err(|e| format!("{}: its memory: {e}", path.display()))
    }

    /// The context the model was trained at: its sequence length. Files
    /// written before a model's context was set to that length hold more
    /// positions than were ever trained; generation cuts them
    /// ([`Gpt::with_context`](crate::model::Gpt::with_context)).
    pub fn trained_context(&self) -> usize {
        let trained = self.train_config.seq_len;
        if trained == 0 {
            self.model.n_ctx
        } else {
            self.model.n_ctx.min(trained)
        }
    }

    /// Borrows this checkpoint for [`save`] (to re-save or convert it).
    pub fn as_ref(&self) -> CheckpointRef<'_> {
        CheckpointRef {
            model: &self.model,
            params: &self.params,
            optimizer: self.optimizer.as_ref().map(OptimizerRef::from),
            tokenizer_json: &self.tokenizer_json,
            train_config: &self.train_config,
            state: &self.state,
            memory: self.memory.as_deref(),
        }
    }
}

/// What [`save`] writes, borrowed from the trainer's live buffers.
/// The creation time and program version are filled in by `save`.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointRef<'a> {
    pub model: &'a ModelConfig,
    pub params: &'a [f32],
    /// `None` writes a weights-only file (enough to generate, not to resume).
    pub optimizer: Option<OptimizerRef<'a>>,
    pub tokenizer_json: &'a str,
    pub train_config: &'a TrainConfig,
    pub state: &'a TrainingState,
    /// A stored [`Memory`](crate::memory::Memory) (`Memory::to_bytes`) to
    /// carry, or `None`.
    pub memory: Option<&'a [u8]>,
}

/// What [`verify`] learns about a file without loading its tensors: for
/// `cllm inspect` and the app's model list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub format_version: u32,
    pub model: ModelConfig,
    pub num_params: usize,
    /// Whether AdamW moments are stored (the file can resume training).
    pub has_optimizer: bool,
    pub optimizer_config: Option<AdamWConfig>,
    pub optimizer_step: Option<u64>,
    pub train_config: TrainConfig,
    pub state: TrainingState,
    pub tokenizer_bytes: usize,
    pub created_unix: u64,
    pub program_version: String,
    /// Hex SHA-256 stored in the file; [`verify`] only succeeds when it matches.
    pub checksum_sha256: String,
    /// The memory the file carries, if any.
    pub memory: Option<format::MemoryMeta>,
}
