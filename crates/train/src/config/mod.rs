//! Everything a training run is configured with: plain data, below both the
//! trainer (which runs it) and the checkpoint format (which stores it), so
//! neither has to import the other for it. Stored in checkpoints and in
//! `runs/<name>/config.json`; edited by the app's panels and by `cllm train`
//! flags.

mod choices;
mod parts;
#[cfg(test)]
mod tests;

pub use choices::{AdamWConfig, FinalWeights, ScheduleKind, TokenizerKind};
pub use parts::{
    AdaptSettings, BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings,
    ModelSettings, OptimizerSettings, OutputSettings,
};

use cllm_data::tokenizer::{MAX_BPE_VOCAB_SIZE, MIN_BPE_VOCAB_SIZE};
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::path::PathBuf;

/// Why a setting cannot be used. Each message names the setting as a person
/// knows it and says what it must be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A setting outside its range.
    #[error("{setting} ({value}) must be {rule}")]
    OutOfRange {
        setting: &'static str,
        value: String,
        rule: String,
    },
    /// A run with nothing to say how long it trains.
    #[error("set epochs, max steps or a time budget")]
    NoLength,
    /// A name that is none of the choices (model preset, tokenizer,
    /// schedule, final weights).
    #[error("unknown {what} '{given}' (use {choices})")]
    UnknownChoice {
        what: &'static str,
        given: String,
        choices: String,
    },
    /// A duration typed without units, or out of range (`--time`).
    #[error("cannot read the duration '{0}': write it with units, e.g. 30m, 90s, 1h or 1h30m")]
    UnreadableDuration(String),
    #[error("the duration '{0}' is under one second")]
    DurationTooShort(String),
    #[error("the duration '{0}' is longer than a year")]
    DurationTooLong(String),
}

/// For callers whose own errors are still messages: `?` keeps the text.
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}

impl ConfigError {
    fn out_of_range(setting: &'static str, value: impl Display, rule: impl Display) -> Self {
        ConfigError::OutOfRange {
            setting,
            value: value.to_string(),
            rule: rule.to_string(),
        }
    }

    fn unknown(what: &'static str, given: &str, choices: &str) -> Self {
        ConfigError::UnknownChoice {
            what,
            given: given.to_string(),
            choices: choices.to_string(),
        }
    }

    /// A model preset that is neither `auto` nor one of cllm-core's.
    pub fn unknown_preset(given: &str) -> Self {
        Self::unknown(
            "model preset",
            given,
            &format!("{AUTO}, {}", cllm_core::PRESET_NAMES.join(", ")),
        )
    }
}

/// The preset that asks the trainer to choose the model's size for the data,
/// the machine and the time (`train::auto`).
pub const AUTO: &str = "auto";

/// A training run's whole configuration, in the parts a reader thinks in:
/// what it trains on, which model, how each step is batched, how the
/// optimizer moves, how long it trains, how it is evaluated and where its
/// files go, with the run's own settings (threads, seed, resume) here.
///
/// Serialised flat: each part is `#[serde(flatten)]`, so the JSON keys are
/// the fields' own names (`"lr"`, not `"optimizer.lr"`), as checkpoints,
/// `runs/<run>/config.json`, `cllm train --config` files and the `given`
/// list (see `train::resume`) name them. Missing keys take their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// The files trained on and how they become tokens.
    #[serde(flatten)]
    pub corpus: CorpusSettings,
    /// The model's size, dropout, precision and repository memory.
    #[serde(flatten)]
    pub model: ModelSettings,
    /// What one optimizer step sees.
    #[serde(flatten)]
    pub batch: BatchSettings,
    /// The learning rate's schedule and AdamW's settings.
    #[serde(flatten)]
    pub optimizer: OptimizerSettings,
    /// How long the run trains.
    #[serde(flatten)]
    pub budget: BudgetSettings,
    /// Validation, code checks and samples during the run.
    #[serde(flatten)]
    pub evaluation: EvaluationSettings,
    /// The final model, checkpoints and the run's folder.
    #[serde(flatten)]
    pub outputs: OutputSettings,
    /// Worker threads (spheres); 0 = available parallelism.
    pub threads: usize,
    /// Processes (MPI ranks) the run trains on, each with `threads`
    /// spheres. Set by the trainer from how it was launched; 1 on one machine.
    pub ranks: usize,
    /// Seed of the initial weights, data order and dropout.
    pub seed: u64,
    /// The checkpoint to resume from.
    pub resume: Option<PathBuf>,
    /// The fields (names as serialised, which are the parts' field names)
    /// the user set explicitly. On resume only these may differ from the
    /// checkpoint's config; the rest come from the checkpoint (see
    /// `train::resume`).
    #[serde(skip)]
    pub given: Vec<String>,
    /// Resume even though the data differs from the checkpoint's.
    #[serde(skip)]
    pub allow_data_change: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            corpus: CorpusSettings::default(),
            model: ModelSettings::default(),
            batch: BatchSettings::default(),
            optimizer: OptimizerSettings::default(),
            budget: BudgetSettings::default(),
            evaluation: EvaluationSettings::default(),
            outputs: OutputSettings::default(),
            threads: 0,
            ranks: 1,
            seed: 1337,
            resume: None,
            given: Vec::new(),
            allow_data_change: false,
        }
    }
}

impl TrainConfig {
    /// The thread count `threads = 0` resolves to on this machine.
    pub fn resolved_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.threads
        }
    }

    /// Checks every field a user can type; the message names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("batch size", self.batch.batch_size),
            ("sequence length", self.batch.seq_len),
            ("accumulation steps", self.batch.accum_steps),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ConfigError::out_of_range(name, v, "at least 1"));
            }
        }
        if !(self.budget.time_budget_secs.is_finite() && self.budget.time_budget_secs >= 0.0) {
            return Err(ConfigError::out_of_range(
                "time budget",
                self.budget.time_budget_secs,
                "0 (none) or a number of seconds",
            ));
        }
        if self.budget.epochs == 0
            && self.budget.max_steps == 0
            && self.budget.time_budget_secs == 0.0
        {
            return Err(ConfigError::NoLength);
        }
        if self.threads > 1024 {
            return Err(ConfigError::out_of_range(
                "threads",
                self.threads,
                "at most 1024",
            ));
        }
        if !(self.optimizer.lr.is_finite() && self.optimizer.lr > 0.0 && self.optimizer.lr < 10.0) {
            return Err(ConfigError::out_of_range(
                "learning rate",
                self.optimizer.lr,
                "in (0, 10)",
            ));
        }
        if !(self.optimizer.min_lr.is_finite()
            && self.optimizer.min_lr >= 0.0
            && self.optimizer.min_lr <= self.optimizer.lr)
        {
            return Err(ConfigError::out_of_range(
                "minimum learning rate",
                self.optimizer.min_lr,
                "between 0 and the learning rate",
            ));
        }
        if !(0.0..=1.0).contains(&self.batch.fim_rate) {
            return Err(ConfigError::out_of_range(
                "fill-in-the-middle rate",
                self.batch.fim_rate,
                "in [0, 1]",
            ));
        }
        if !(0.0..0.9).contains(&self.corpus.val_fraction) {
            return Err(ConfigError::out_of_range(
                "validation fraction",
                self.corpus.val_fraction,
                "in [0, 0.9)",
            ));
        }
        if let Some(d) = self.model.dropout
            && !(0.0..1.0).contains(&d)
        {
            return Err(ConfigError::out_of_range("dropout", d, "in [0, 1)"));
        }
        if !(self.optimizer.grad_clip.is_finite() && self.optimizer.grad_clip >= 0.0) {
            return Err(ConfigError::out_of_range(
                "gradient clip",
                self.optimizer.grad_clip,
                "0 or more",
            ));
        }
        let a = &self.optimizer.adamw;
        if !(0.0..1.0).contains(&a.beta1) || !(0.0..1.0).contains(&a.beta2) {
            let betas = format!("{}, {}", a.beta1, a.beta2);
            return Err(ConfigError::out_of_range("AdamW betas", betas, "in [0, 1)"));
        }
        if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
            return Err(ConfigError::out_of_range(
                "weight decay",
                a.weight_decay,
                "0 or more",
            ));
        }
        if self.corpus.tokenizer == TokenizerKind::Bpe
            && !(MIN_BPE_VOCAB_SIZE..=MAX_BPE_VOCAB_SIZE).contains(&self.corpus.vocab_size)
        {
            return Err(ConfigError::out_of_range(
                "vocabulary size",
                self.corpus.vocab_size,
                format!("between {MIN_BPE_VOCAB_SIZE} and {MAX_BPE_VOCAB_SIZE} for BPE"),
            ));
        }
        if self.model.preset != AUTO && cllm_core::ModelConfig::preset(&self.model.preset).is_err()
        {
            return Err(ConfigError::unknown_preset(&self.model.preset));
        }
        Ok(())
    }
}
