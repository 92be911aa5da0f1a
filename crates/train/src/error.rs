//! Why training, or a part of it (the settings, the data, a resume, the
//! run's files, the ranks of a cluster, a benchmark), could not go on. Each
//! message names the setting, file or rank at fault and, where there is
//! one, what to do about it. Front ends print the message
//! (`Event::Error` carries it).

use crate::config::ConfigError;
use crate::memory::MemoryShortfall;
use cllm_checkpoint::CheckpointError;
use std::fmt::Display;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting out of range, an unknown name, a duration unread
    /// (`TrainConfig::validate`, the names and durations typed).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// More memory than this machine has (`memory::check_fits`).
    #[error(transparent)]
    Memory(#[from] MemoryShortfall),

    // The model.
    /// The model could not be built from its settings (cllm-core's words).
    #[error("{0}")]
    Model(String),
    #[error("the model's vocabulary ({model}) is smaller than the tokenizer's ({tokenizer})")]
    VocabularyTooSmall { model: usize, tokenizer: usize },
    #[error("sequence length {seq_len} is longer than the model's context {n_ctx}")]
    LongerThanContext { seq_len: usize, n_ctx: usize },

    // The data.
    #[error("no usable text files in {places} (looked for {kinds}; see --ext)")]
    NoFiles { places: String, kinds: String },
    /// Scanning, reading or tokenizing failed (cllm-data's words name the
    /// file).
    #[error("{0}")]
    Data(String),
    /// The training split cannot be cut into sequences.
    #[error("training data: {0}")]
    TrainingData(String),
    #[error(
        "rank {ranks} prepared different data or a different tokenizer than rank 0 (do all \
         machines see the same files at the same paths?); no rank may train on another \
         vocabulary: stopped"
    )]
    RanksDataDiffer { ranks: String },

    // Evaluation.
    #[error("sequence length {seq_len} must be between 1 and the model's context {n_ctx}")]
    EvalSequenceLength { seq_len: usize, n_ctx: usize },
    #[error("not enough tokens to evaluate: {tokens} tokens, windows of {seq_len}")]
    TooFewTokensToEvaluate { tokens: usize, seq_len: usize },
    #[error("evaluation windows must have a length and increasing starts: {seq_len}, {starts:?}")]
    EvalWindows { seq_len: usize, starts: Vec<usize> },
    #[error("the memory's vocabulary has {memory} tokens, the model's {model}")]
    MemoryVocabulary { memory: usize, model: usize },
    /// An adaptation setting out of range (`AdaptSettings::check`).
    #[error("{0}")]
    AdaptSetting(String),
    /// The code check of `--eval-gen` failed (cllm-generate's words).
    #[error("{0}")]
    CodeCheck(String),

    // Resuming.
    /// A checkpoint could not be read (cllm-checkpoint's words name the
    /// file and the damage).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the checkpoint's tokenizer cannot be used: {0}")]
    SavedTokenizer(String),
    #[error(
        "cannot resume with changed settings: {}. A resumed run continues with the \
         checkpoint's settings; drop these flags, or start a new run without --resume",
        .0.join("; ")
    )]
    ChangedSettings(Vec<String>),
    #[error("the checkpoint's settings and the ones given make no training config: {0}")]
    MergedSettings(serde_json::Error),
    #[error(
        "the training data is not what the checkpoint was trained on: {what}. Resume on this \
         data anyway with --allow-data-change, or start a new run"
    )]
    DataChanged { what: String },
    #[error(
        "the checkpoint's data position (epoch {epoch}, sequence {index}) does not match its \
         step {step} on this data (epoch {implied_epoch}, sequence {implied_index}): the data \
         is not the data it was trained on"
    )]
    DataPosition {
        epoch: u64,
        index: u64,
        step: u64,
        implied_epoch: u64,
        implied_index: u64,
    },
    #[error(
        "the run in {} already reached its last step ({last_step}); give --epochs or \
         --max-steps to train further",
        path.display()
    )]
    NoStepsLeft { path: PathBuf, last_step: u64 },

    // Starting from a base model.
    #[error(
        "--init {} and --resume {} cannot be used together: --resume continues a run with its \
         own weights, optimizer and schedule, --init starts a new run from a base model's \
         weights; drop one of them",
        init.display(),
        resume.display()
    )]
    InitWithResume { init: PathBuf, resume: PathBuf },
    #[error(
        "{option} {given} contradicts the base model {} ({base}): a run from --init keeps the \
         base's model and tokenizer; leave {option} out",
        path.display()
    )]
    InitContradicts {
        option: &'static str,
        given: String,
        base: String,
        path: PathBuf,
    },

    // The run's files.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {what} as JSON: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("cannot keep the previous {} as {}: {source}", output.display(), kept.display())]
    KeepPrevious {
        output: PathBuf,
        kept: PathBuf,
        source: std::io::Error,
    },
    #[error("final model not written to {} (it is in {}): {source}", to.display(), from.display())]
    CopyFinal {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("final model not written: {0}")]
    FinalNotWritten(#[source] CheckpointError),

    // Training.
    #[error(
        "training diverged: {steps} steps in a row had non-finite loss or gradients; the last \
         good checkpoint{} is intact",
        last_saved.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default()
    )]
    Diverged {
        steps: u32,
        last_saved: Option<PathBuf>,
    },
    #[error(
        "the weights on rank {ranks} differ from rank 0's at step {step}: the ranks no longer \
         train one model; stopped (the last checkpoint is intact)"
    )]
    ReplicasDiffer { ranks: String, step: u64 },
    #[error("rank 0's settings did not decode: {0}")]
    Agreement(serde_json::Error),
    /// A bug: the trainer panicked (the message is the panic's).
    #[error("internal error in the trainer: {0}")]
    Panic(String),

    // MPI.
    #[error("MPI was already initialised")]
    MpiInitialised,
    #[error("this MPI library offers threading level {0}; cllm needs Serialized")]
    MpiThreading(String),

    // Benchmarks.
    #[error(
        "bench: batch {batch} x seq {seq} must be at least 1 x 1 and seq at most n_ctx {n_ctx}"
    )]
    BenchShape {
        batch: usize,
        seq: usize,
        n_ctx: usize,
    },
}

impl TrainError {
    /// A model cllm-core refused to build.
    pub fn model(e: impl Display) -> TrainError {
        TrainError::Model(e.to_string())
    }

    /// Data cllm-data could not scan, read or tokenize.
    pub fn data(e: impl Display) -> TrainError {
        TrainError::Data(e.to_string())
    }

    /// A file or folder of the run the system refused.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        TrainError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// For callers whose own errors are still messages: `?` keeps the text.
impl From<TrainError> for String {
    fn from(e: TrainError) -> String {
        e.to_string()
    }
}
