//! The trainer's checkpoints: the `.cllm` format of `cllm-checkpoint` with
//! the trainer's three records typed: its [`TrainConfig`], where the run
//! stands ([`TrainingState`]) and AdamW's settings ([`AdamWConfig`]).
//!
//! Everything of the format crate is re-exported here, so the layers above
//! the trainer (runs, app, CLI) name one module; [`Checkpoint`], [`load`],
//! [`verify`] and [`save`] are the format's, fixed to these records.

pub use cllm_checkpoint::*;

use crate::config::{AdamWConfig, TrainConfig};
use crate::optimizer::AdamW;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The records this trainer keeps in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Records;

impl TrainerRecords for Records {
    type Config = TrainConfig;
    type State = TrainingState;
    type Optimizer = AdamWConfig;
}

/// Everything one `.cllm` file of this trainer holds.
pub type Checkpoint = cllm_checkpoint::Checkpoint<Records>;
/// What [`save`] writes, borrowed from the trainer's live buffers.
pub type CheckpointRef<'a> = cllm_checkpoint::CheckpointRef<'a, Records>;
/// What [`verify`] learns about a file without loading its tensors.
pub type CheckpointInfo = cllm_checkpoint::CheckpointInfo<Records>;
/// AdamW's state, owned.
pub type OptimizerState = cllm_checkpoint::OptimizerState<Records>;
/// AdamW's state, borrowed.
pub type OptimizerRef<'a> = cllm_checkpoint::OptimizerRef<'a, Records>;

/// Reads a checkpoint after every check of [`verify`].
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    cllm_checkpoint::load(path)
}

/// Checks a checkpoint completely (the checksum included) without keeping
/// its tensors, and describes it.
pub fn verify(path: &Path) -> Result<CheckpointInfo, CheckpointError> {
    cllm_checkpoint::verify(path)
}

/// [`verify`] over bytes already in memory; `path` only names them in errors.
pub fn verify_bytes(path: &Path, bytes: &[u8]) -> Result<CheckpointInfo, CheckpointError> {
    cllm_checkpoint::read::verify_bytes(path, bytes)
}

/// [`load`] over bytes already in memory; `path` only names them in errors.
pub fn load_bytes(path: &Path, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    cllm_checkpoint::read::load_bytes(path, bytes)
}

/// Writes a checkpoint atomically (temporary file, sync, rename); returns
/// the bytes written.
pub fn save(path: &Path, ckpt: &CheckpointRef<'_>) -> Result<u64, CheckpointError> {
    cllm_checkpoint::save(path, ckpt)
}

/// The context the model was trained at: its sequence length. Files
/// written before a model's context was set to that length hold more
/// positions than were ever trained; generation cuts them
/// ([`Gpt::with_context`](cllm_core::Gpt::with_context)).
pub fn trained_context(ckpt: &Checkpoint) -> usize {
    let trained = ckpt.train_config.batch.seq_len;
    if trained == 0 {
        ckpt.model.n_ctx
    } else {
        ckpt.model.n_ctx.min(trained)
    }
}

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
    pub data: Option<cllm_data::fingerprint::DataFingerprint>,
    /// A run given time: the budget it has spent, every plan it made and
    /// what it was measuring (`crate::budget::replan`). `None` for runs by
    /// epochs or steps, and in older files.
    #[serde(default)]
    pub budget: Option<crate::budget::replan::BudgetRecord>,
    /// The model the run started from (`--init`); `None` for a run from
    /// new weights, and in older files.
    #[serde(default)]
    pub base: Option<BaseModel>,
}

/// The model a run started from: where it was read, its file's checksum,
/// the run that trained it and the step it was saved at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseModel {
    pub path: std::path::PathBuf,
    pub checksum_sha256: String,
    /// Empty when that run had no name.
    pub run: String,
    pub step: u64,
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
            budget: None,
            base: None,
        }
    }
}

impl AdamW {
    /// Resuming: an optimizer that continues exactly where `saved` stopped.
    pub fn resume(saved: OptimizerState, layout: &cllm_core::ParamLayout) -> AdamW {
        let mut opt = AdamW::new(saved.config, 0, layout.decay_ranges());
        opt.m = saved.m;
        opt.v = saved.v;
        opt.step = saved.step;
        opt
    }
}

/// Saving: the live optimizer borrowed for the checkpoint writer.
impl<'a> From<&'a AdamW> for OptimizerRef<'a> {
    fn from(opt: &'a AdamW) -> Self {
        OptimizerRef {
            config: &opt.config,
            step: opt.step,
            m: &opt.m,
            v: &opt.v,
        }
    }
}
