//! The parts of a `TrainConfig`, each with its defaults. Every field keeps
//! its name in the serialised config (the parts are flattened into it).

use super::AUTO;
use super::choices::{AdamWConfig, FinalWeights, ScheduleKind, TokenizerKind};
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_data::tokenizer::DEFAULT_VOCAB_SIZE;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the run trains on: the files, how they become tokens and how much
/// of them is held out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorpusSettings {
    /// Files and folders to train on (folders are scanned).
    pub data: Vec<PathBuf>,
    /// Extensions kept when scanning folders (without the dot); empty: the
    /// default set.
    pub extensions: Vec<String>,
    /// When non-empty, exactly these files (the app's checked list).
    pub files: Vec<PathBuf>,
    pub tokenizer: TokenizerKind,
    /// BPE vocabulary size (ignored for bytes).
    pub vocab_size: usize,
    /// Fraction of the data held out for validation.
    pub val_fraction: f32,
}

impl Default for CorpusSettings {
    fn default() -> Self {
        CorpusSettings {
            data: vec![PathBuf::from("training_data")],
            extensions: Vec::new(),
            files: Vec::new(),
            tokenizer: TokenizerKind::Bpe,
            vocab_size: DEFAULT_VOCAB_SIZE,
            val_fraction: 0.1,
        }
    }
}

/// Which model is trained and how it computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSettings {
    /// A cllm-core preset's name, or `auto` (chosen for the data, the
    /// machine and the time, see `train::auto`).
    pub preset: String,
    /// Overrides the preset's dropout when set.
    pub dropout: Option<f32>,
    /// Matmul precision: auto (bf16 where the CPU has AVX512_BF16), fp32
    /// or bf16. A run may resume in another precision.
    pub precision: PrecisionChoice,
    /// Build a repository memory over the training tokens (an n-gram index
    /// and a document cache mixed with the transformer, see `memory`), fit
    /// its mix at each evaluation and save it in the checkpoints.
    pub memory: bool,
    /// Start from this model (`--init`): its architecture, tokenizer and
    /// weights, with a fresh optimizer and schedule (see `train::init`).
    pub init: Option<PathBuf>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            preset: AUTO.into(),
            dropout: None,
            precision: PrecisionChoice::Auto,
            memory: true,
            init: None,
        }
    }
}

/// What one optimizer step sees: `batch_size * accum_steps` sequences of
/// `seq_len` tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchSettings {
    /// Sequences per micro-batch group.
    pub batch_size: usize,
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Micro-batch groups whose gradients add up to one step.
    pub accum_steps: usize,
    /// Share of training windows rearranged for fill-in-the-middle
    /// ([`cllm_data::fim`]); 0 trains left to right only. Missing from a
    /// saved config (one written before FIM) it reads as 0, so a resumed
    /// run goes on as it began.
    #[serde(default)]
    pub fim_rate: f32,
}

/// The FIM rate of a new run: half the windows, as SantaCoder and StarCoder
/// train.
pub const DEFAULT_FIM_RATE: f32 = 0.5;

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            batch_size: 16,
            seq_len: 128,
            accum_steps: 1,
            fim_rate: DEFAULT_FIM_RATE,
        }
    }
}

/// How the weights move: the learning rate's schedule (the maths is in
/// `train::schedule`), AdamW and gradient clipping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerSettings {
    /// The peak learning rate, reached after warmup.
    pub lr: f32,
    /// The learning rate the schedule decays to.
    pub min_lr: f32,
    pub warmup_steps: u64,
    /// The schedule's shape after warmup.
    pub schedule: ScheduleKind,
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f32,
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        OptimizerSettings {
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 20,
            schedule: ScheduleKind::Cosine,
            adamw: AdamWConfig::default(),
            grad_clip: 1.0,
        }
    }
}

/// How long the run trains, and when it stops early.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BudgetSettings {
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
    /// Stop after this many evaluations without improvement (0 = never).
    pub early_stop_patience: usize,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            epochs: 10,
            max_steps: 0,
            time_budget_secs: 0.0,
            early_stop_patience: 0,
        }
    }
}

/// What the run measures and shows while it trains.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluationSettings {
    /// Evaluate every K optimizer steps (0 = only at epoch ends).
    pub eval_every: u64,
    /// Validation batches per evaluation (0 = the whole split).
    pub eval_batches: usize,
    /// Function openings of the validation split completed and parsed at
    /// each evaluation (0 = no code check).
    pub eval_gen: usize,
    /// Generate a short sample every K steps (0 = never).
    pub sample_every: u64,
    /// What the samples continue.
    pub sample_prompt: String,
    /// Adapting while reading, as the model's users apply it by default
    /// (absent from older files: the default).
    pub adapt: AdaptSettings,
}

impl Default for EvaluationSettings {
    fn default() -> Self {
        EvaluationSettings {
            eval_every: 50,
            eval_batches: 16,
            eval_gen: 0,
            sample_every: 0,
            sample_prompt: "// ".into(),
            adapt: AdaptSettings::default(),
        }
    }
}

/// What the run writes and where: the final model, the checkpoints and the
/// run's folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputSettings {
    /// Final model path.
    pub output: PathBuf,
    /// The final model's weights: the best validation loss's or the last
    /// step's (a run evaluates its last step before choosing).
    pub final_weights: FinalWeights,
    pub checkpoint_dir: PathBuf,
    /// Save a periodic checkpoint every N epochs (0 = never).
    pub checkpoint_every: usize,
    /// Periodic checkpoints kept (older ones are removed).
    pub keep_checkpoints: usize,
    pub runs_dir: PathBuf,
    /// Name of this run's folder under `runs_dir` (empty: from the time).
    pub run_name: String,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            output: PathBuf::from("models/trained_model_kissing_spheres.cllm"),
            final_weights: FinalWeights::Best,
            checkpoint_dir: PathBuf::from("checkpoints"),
            checkpoint_every: 2,
            keep_checkpoints: 3,
            runs_dir: PathBuf::from("runs"),
            run_name: String::new(),
        }
    }
}

/// Whether and how a model adapts to the text it reads (`crate::adapt`); stored with the
/// model (in its training config), so `eval`, `generate` and the app use
/// the model's own setting unless told otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdaptSettings {
    /// Adapt by default when this model scores or continues text.
    pub enabled: bool,
    /// Step size of the SGD step on a segment's mean loss (nats per token).
    pub lr: f32,
    /// Share of the way back to the trained weights each step goes
    /// (`w = (1 - decay) * w + decay * trained` after the step): 0 keeps
    /// all that was learned in the document, 1 forgets it at once.
    pub decay: f32,
}

impl Default for AdaptSettings {
    fn default() -> Self {
        AdaptSettings {
            enabled: false,
            lr: 0.01,
            decay: 0.0,
        }
    }
}

impl AdaptSettings {
    /// Refuses a learning rate that is negative or not a number and a
    /// decay outside `[0, 1]`.
    pub fn check(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(format!(
                "the adaptation learning rate (--adapt-lr) must be a number >= 0, got {}",
                self.lr
            ));
        }
        if !(0.0..=1.0).contains(&self.decay) {
            return Err(format!(
                "the adaptation decay (--adapt-decay) must be between 0 and 1, got {}",
                self.decay
            ));
        }
        Ok(())
    }
}
