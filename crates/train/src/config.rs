//! Everything a training run is configured with: plain data, below both the
//! trainer (which runs it) and the checkpoint format (which stores it), so
//! neither has to import the other for it. Stored in checkpoints and in
//! `runs/<name>/config.json`; edited by the app's panels and by `cllm train`
//! flags.

use cllm_core::ops::bf16::PrecisionChoice;
use cllm_data::tokenizer::{DEFAULT_VOCAB_SIZE, MAX_BPE_VOCAB_SIZE, MIN_BPE_VOCAB_SIZE};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// Byte-level BPE trained on the selected files.
    #[default]
    Bpe,
    /// One token per byte (vocabulary 256): character-level experiments.
    Bytes,
}

impl TokenizerKind {
    pub const ALL: [TokenizerKind; 2] = [TokenizerKind::Bpe, TokenizerKind::Bytes];

    pub fn name(self) -> &'static str {
        match self {
            TokenizerKind::Bpe => "bpe",
            TokenizerKind::Bytes => "bytes",
        }
    }
}

impl std::str::FromStr for TokenizerKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "bpe" => Ok(TokenizerKind::Bpe),
            "bytes" => Ok(TokenizerKind::Bytes),
            _ => Err(ConfigError::unknown("tokenizer", s, "bpe or bytes")),
        }
    }
}

/// The learning-rate schedule's shape after warmup (the maths is in
/// `train::schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    #[default]
    Cosine,
    Linear,
    Step,
}

/// Which weights a finished run's final model holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FinalWeights {
    /// Those of the best validation loss when the last step's are worse
    /// (the run went on past its best: many epochs over a small corpus).
    #[default]
    Best,
    /// Always the last step's.
    Last,
}

impl FinalWeights {
    pub const ALL: [FinalWeights; 2] = [FinalWeights::Best, FinalWeights::Last];

    pub fn name(self) -> &'static str {
        match self {
            FinalWeights::Best => "best",
            FinalWeights::Last => "last",
        }
    }
}

impl std::str::FromStr for FinalWeights {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "best" => Ok(FinalWeights::Best),
            "last" => Ok(FinalWeights::Last),
            _ => Err(ConfigError::unknown("final weights", s, "best or last")),
        }
    }
}

impl ScheduleKind {
    pub const ALL: [ScheduleKind; 4] = [
        ScheduleKind::Constant,
        ScheduleKind::Cosine,
        ScheduleKind::Linear,
        ScheduleKind::Step,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::Constant => "constant",
            ScheduleKind::Cosine => "cosine",
            ScheduleKind::Linear => "linear",
            ScheduleKind::Step => "step",
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        ScheduleKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| ConfigError::unknown("schedule", s, "constant, cosine, linear or step"))
    }
}

/// AdamW's hyper-parameters (the update is in `train::optimizer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Files and folders to train on (folders are scanned).
    pub data: Vec<PathBuf>,
    /// Extensions kept when scanning folders (without the dot); empty: the
    /// default set.
    pub extensions: Vec<String>,
    /// When non-empty, exactly these files (the app's checked list).
    pub files: Vec<PathBuf>,
    pub preset: String,
    pub tokenizer: TokenizerKind,
    /// BPE vocabulary size (ignored for bytes).
    pub vocab_size: usize,
    /// Worker threads (spheres); 0 = available parallelism.
    pub threads: usize,
    /// Processes (MPI ranks) the run trains on, each with `threads`
    /// spheres. Set by the trainer from how it was launched; 1 on one machine.
    pub ranks: usize,
    /// Sequences per micro-batch group: one optimizer step sees
    /// `batch_size * accum_steps` sequences.
    pub batch_size: usize,
    pub seq_len: usize,
    /// Passes over the training split; with a time budget, the most it may
    /// make (0: `train::budget::MAX_EPOCHS`).
    pub epochs: usize,
    /// Stop after this many optimizer steps (0 = no limit).
    pub max_steps: u64,
    /// Train for this long instead of a number of epochs (seconds, 0 =
    /// none): the step count is fixed after a measured warm-up (see
    /// `train::budget`), no more than `epochs` passes (its cap when 0);
    /// `max_steps` still caps.
    pub time_budget_secs: f64,
    pub lr: f32,
    pub min_lr: f32,
    pub warmup_steps: u64,
    pub schedule: ScheduleKind,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f32,
    pub accum_steps: usize,
    /// Overrides the preset's dropout when set.
    pub dropout: Option<f32>,
    /// Build a repository memory over the training tokens (an n-gram index
    /// and a document cache mixed with the transformer, see `memory`), fit
    /// its mix at each evaluation and save it in the checkpoints.
    pub memory: bool,
    /// Function openings of the validation split completed and parsed at
    /// each evaluation (0 = no code check).
    pub eval_gen: usize,
    /// Matmul precision: auto (bf16 where the CPU has AVX512_BF16), fp32
    /// or bf16. A run may resume in another precision.
    pub precision: PrecisionChoice,
    /// Fraction of the data held out for validation.
    pub val_fraction: f32,
    /// Evaluate every K optimizer steps (0 = only at epoch ends).
    pub eval_every: u64,
    /// Validation batches per evaluation (0 = the whole split).
    pub eval_batches: usize,
    /// Save a periodic checkpoint every N epochs (0 = never).
    pub checkpoint_every: usize,
    /// Periodic checkpoints kept (older ones are removed).
    pub keep_checkpoints: usize,
    /// Stop after this many evaluations without improvement (0 = never).
    pub early_stop_patience: usize,
    /// The final model's weights: the best validation loss's or the last
    /// step's (a run evaluates its last step before choosing).
    pub final_weights: FinalWeights,
    /// Generate a short sample every K steps (0 = never).
    pub sample_every: u64,
    /// What the samples continue.
    pub sample_prompt: String,
    pub seed: u64,
    pub resume: Option<PathBuf>,
    /// Final model path.
    pub output: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub runs_dir: PathBuf,
    /// Name of this run's folder under `runs_dir` (empty: from the time).
    pub run_name: String,
    /// The fields (names as in this struct) the user set explicitly. On
    /// resume only these may differ from the checkpoint's config; the rest
    /// come from the checkpoint (see `train::resume`).
    #[serde(skip)]
    pub given: Vec<String>,
    /// Resume even though the data differs from the checkpoint's.
    #[serde(skip)]
    pub allow_data_change: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: vec![PathBuf::from("training_data")],
            extensions: Vec::new(),
            files: Vec::new(),
            preset: AUTO.into(),
            tokenizer: TokenizerKind::Bpe,
            vocab_size: DEFAULT_VOCAB_SIZE,
            threads: 0,
            batch_size: 16,
            seq_len: 128,
            epochs: 10,
            max_steps: 0,
            time_budget_secs: 0.0,
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 20,
            schedule: ScheduleKind::Cosine,
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
            accum_steps: 1,
            dropout: None,
            memory: true,
            eval_gen: 0,
            precision: PrecisionChoice::Auto,
            ranks: 1,
            val_fraction: 0.1,
            eval_every: 50,
            eval_batches: 16,
            checkpoint_every: 2,
            keep_checkpoints: 3,
            early_stop_patience: 0,
            final_weights: FinalWeights::Best,
            sample_every: 0,
            sample_prompt: "// ".into(),
            seed: 1337,
            resume: None,
            output: PathBuf::from("models/trained_model_kissing_spheres.cllm"),
            checkpoint_dir: PathBuf::from("checkpoints"),
            runs_dir: PathBuf::from("runs"),
            run_name: String::new(),
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
            ("batch size", self.batch_size),
            ("sequence length", self.seq_len),
            ("accumulation steps", self.accum_steps),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ConfigError::out_of_range(name, v, "at least 1"));
            }
        }
        if !(self.time_budget_secs.is_finite() && self.time_budget_secs >= 0.0) {
            return Err(ConfigError::out_of_range(
                "time budget",
                self.time_budget_secs,
                "0 (none) or a number of seconds",
            ));
        }
        if self.epochs == 0 && self.max_steps == 0 && self.time_budget_secs == 0.0 {
            return Err(ConfigError::NoLength);
        }
        if self.threads > 1024 {
            return Err(ConfigError::out_of_range(
                "threads",
                self.threads,
                "at most 1024",
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 10.0) {
            return Err(ConfigError::out_of_range(
                "learning rate",
                self.lr,
                "in (0, 10)",
            ));
        }
        if !(self.min_lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return Err(ConfigError::out_of_range(
                "minimum learning rate",
                self.min_lr,
                "between 0 and the learning rate",
            ));
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return Err(ConfigError::out_of_range(
                "validation fraction",
                self.val_fraction,
                "in [0, 0.9)",
            ));
        }
        if let Some(d) = self.dropout
            && !(0.0..1.0).contains(&d)
        {
            return Err(ConfigError::out_of_range("dropout", d, "in [0, 1)"));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return Err(ConfigError::out_of_range(
                "gradient clip",
                self.grad_clip,
                "0 or more",
            ));
        }
        let a = &self.adamw;
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
        if self.tokenizer == TokenizerKind::Bpe
            && !(MIN_BPE_VOCAB_SIZE..=MAX_BPE_VOCAB_SIZE).contains(&self.vocab_size)
        {
            return Err(ConfigError::out_of_range(
                "vocabulary size",
                self.vocab_size,
                format!("between {MIN_BPE_VOCAB_SIZE} and {MAX_BPE_VOCAB_SIZE} for BPE"),
            ));
        }
        if self.preset != AUTO && cllm_core::ModelConfig::preset(&self.preset).is_err() {
            return Err(ConfigError::unknown_preset(&self.preset));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        TrainConfig::default().validate().unwrap();
        let mut c = TrainConfig {
            lr: -1.0,
            ..TrainConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("learning rate")
        );
        c.lr = 1e-3;
        c.batch_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("batch size"));
        c.batch_size = 4;
        c.preset = "huge".into();
        assert!(c.validate().unwrap_err().to_string().contains("huge"));
        let json = serde_json::to_string(&TrainConfig::default()).unwrap();
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, TrainConfig::default());
        // Missing fields take defaults (older config files still load).
        let partial: TrainConfig = serde_json::from_str(r#"{"epochs": 3}"#).unwrap();
        assert_eq!(partial.epochs, 3);
        assert_eq!(partial.seq_len, TrainConfig::default().seq_len);
    }
}
