//! The `.cllm` checkpoint format: write, verify, load, name, prune, export.
//!
//! A `.cllm` file is a plain safetensors file, so any safetensors tool opens
//! it: the weights under their GPT-2 names, the AdamW moments as
//! `optimizer.m.<name>` / `optimizer.v.<name>`, and everything else (format
//! name and version, model and training configs, training state, tokenizer,
//! SHA-256 checksum) as strings in the header's `__metadata__`.
//!
//! - [`format`](mod@format): the on-disk layout (names, offsets, metadata keys, checksum).
//! - [`write`](mod@write): the atomic [`save`].
//! - [`read`]: [`verify`] and [`load`], which check everything before trusting it.
//! - [`naming`]: file names and retention of periodic checkpoints.
//! - [`export_hf`](mod@export_hf): the Hugging Face `transformers` GPT-2 export.
//! - [`export_gguf`](mod@export_gguf): the GGUF export for llama.cpp and Ollama.
//! - [`export_ollama`]: the Ollama `Modelfile` beside a GGUF export.
//! - [`special_tokens`]: `<|endoftext|>` and the FIM tokens, as the exports name them.
//! - [`error`]: [`CheckpointError`], what went wrong and with which file.

pub mod error;
pub mod export_gguf;
pub mod export_hf;
pub mod export_ollama;
pub mod format;
pub mod naming;
pub mod read;
pub mod special_tokens;
pub mod write;

pub use error::CheckpointError;
pub use export_hf::{ExportSummary, export_hf};
pub use naming::{
    BEST_NAME, DEFAULT_FINAL_PATH, best_path, is_periodic_name, periodic_name, periodic_path,
    prune_periodic,
};
pub use read::{load, verify};
pub use write::save;

use cllm_core::ModelConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::PathBuf;

/// What a trainer keeps in a checkpoint beside the tensors: its
/// configuration, where the run stands, and its optimizer's settings. This
/// crate stores each as JSON and refuses a file whose records do not read back
/// as these types, without knowing what they mean; `cllm-train` defines them.
pub trait TrainerRecords: Clone + Copy + Debug + PartialEq {
    type Config: Record;
    type State: Record;
    type Optimizer: Record;
}

/// One of a trainer's records: plain data that round-trips through JSON.
pub trait Record: Clone + Debug + PartialEq + Serialize + DeserializeOwned {}
impl<R: Clone + Debug + PartialEq + Serialize + DeserializeOwned> Record for R {}

/// The optimizer's state, owned (what [`load`] returns).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<T: TrainerRecords> {
    pub config: T::Optimizer,
    /// Updates applied so far (the bias correction depends on it).
    pub step: u64,
    /// First and second moments, same layout as the parameters.
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// The optimizer's state, borrowed (what [`save`] takes: no copy of the moments).
#[derive(Debug)]
pub struct OptimizerRef<'a, T: TrainerRecords> {
    pub config: &'a T::Optimizer,
    pub step: u64,
    pub m: &'a [f32],
    pub v: &'a [f32],
}

// Written out: a derive would ask the records themselves to be `Copy`.
impl<T: TrainerRecords> Clone for OptimizerRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: TrainerRecords> Copy for OptimizerRef<'_, T> {}

impl<T: TrainerRecords> Clone for CheckpointRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: TrainerRecords> Copy for CheckpointRef<'_, T> {}

impl<'a, T: TrainerRecords> From<&'a OptimizerState<T>> for OptimizerRef<'a, T> {
    fn from(opt: &'a OptimizerState<T>) -> Self {
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
pub struct Checkpoint<T: TrainerRecords> {
    pub model: ModelConfig,
    /// The flat parameter buffer in [`ParamLayout`](cllm_core::ParamLayout) order.
    pub params: Vec<f32>,
    /// `None` for a weights-only file.
    pub optimizer: Option<OptimizerState<T>>,
    /// The tokenizer's Hugging Face `tokenizer.json`, verbatim.
    pub tokenizer_json: String,
    pub train_config: T::Config,
    pub state: T::State,
    /// Seconds since the Unix epoch when the file was written.
    pub created_unix: u64,
    /// `cllm` version that wrote the file.
    pub program_version: String,
    /// The stored [`Memory`](cllm_memory::Memory) (`Memory::from_bytes`),
    /// when the file carries one.
    pub memory: Option<Vec<u8>>,
}

impl<T: TrainerRecords> Checkpoint<T> {
    /// The repository memory stored in the file (`None` without one); a
    /// damaged one is an error naming `path`.
    pub fn repository_memory(
        &self,
        path: &std::path::Path,
    ) -> Result<Option<cllm_memory::Memory>, CheckpointError> {
        self.memory
            .as_deref()
            .map(cllm_memory::Memory::from_bytes)
            .transpose()
            .map_err(|source| CheckpointError::Memory {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Borrows this checkpoint for [`save`] (to re-save or convert it).
    pub fn as_ref(&self) -> CheckpointRef<'_, T> {
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
#[derive(Debug)]
pub struct CheckpointRef<'a, T: TrainerRecords> {
    pub model: &'a ModelConfig,
    pub params: &'a [f32],
    /// `None` writes a weights-only file (enough to generate, not to resume).
    pub optimizer: Option<OptimizerRef<'a, T>>,
    pub tokenizer_json: &'a str,
    pub train_config: &'a T::Config,
    pub state: &'a T::State,
    /// A stored [`Memory`](cllm_memory::Memory) (`Memory::to_bytes`) to
    /// carry, or `None`.
    pub memory: Option<&'a [u8]>,
}

/// What [`verify`] learns about a file without loading its tensors: for
/// `cllm inspect` and the app's model list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckpointInfo<T: TrainerRecords> {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub format_version: u32,
    pub model: ModelConfig,
    pub num_params: usize,
    /// Whether AdamW moments are stored (the file can resume training).
    pub has_optimizer: bool,
    pub optimizer_config: Option<T::Optimizer>,
    pub optimizer_step: Option<u64>,
    pub train_config: T::Config,
    pub state: T::State,
    pub tokenizer_bytes: usize,
    pub created_unix: u64,
    pub program_version: String,
    /// Hex SHA-256 stored in the file; [`verify`] only succeeds when it matches.
    pub checksum_sha256: String,
    /// The memory the file carries, if any.
    pub memory: Option<format::MemoryMeta>,
    /// The fill-in-the-middle tokens of its tokenizer; `None` when it has
    /// none (the model cannot infill). Callers print it their own way.
    #[serde(skip)]
    pub fim_tokens: Option<cllm_data::fim::FimTokens>,
}
