//! Why a reply, a code evaluation or a syntax check could not be made. Each
//! message names the setting, prompt or part at fault and, where there is
//! one, what to do.

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GenerateError {
    /// A sampling setting out of its range.
    #[error("temperature must be 0 (greedy) or positive, got {0}")]
    Temperature(f32),
    #[error("top-p must be in (0, 1], got {0}")]
    TopP(f32),
    #[error("repetition penalty must be positive, got {0}")]
    RepetitionPenalty(f32),
    #[error("stop strings must not be empty")]
    EmptyStopString,
    /// An empty prompt with a tokenizer that has no `<|endoftext|>` to
    /// start from.
    #[error("the prompt is empty: type something to continue")]
    EmptyPrompt,
    /// The tokenizer makes ids the model has no row for.
    #[error(
        "the tokenizer has {tokenizer} tokens but the model only {model}: they do not belong together (use the tokenizer saved with the model)"
    )]
    TokenizerTooLarge { tokenizer: usize, model: usize },
    /// The repository memory was built for another vocabulary.
    #[error(
        "the memory's vocabulary has {memory} tokens, the model's {model}: they do not belong together (use the memory saved with the model)"
    )]
    MemoryVocabulary { memory: usize, model: usize },
    /// The weights could not be made ready for the reply (adapting to the
    /// prompt); the preparer's own message.
    #[error("{0}")]
    Prepare(String),
    /// Infill asked of a model whose tokenizer has no FIM tokens.
    #[error(
        "infill is not supported by this model: its tokenizer has no fill-in-the-middle tokens (train a new model; models trained before FIM, or on bytes, only continue a prefix)"
    )]
    NoInfill,
    /// A token id the model has no row for.
    #[error("token id {token} is outside the model's vocabulary of {vocab}")]
    TokenOutsideVocabulary { token: u32, vocab: usize },
    /// The model or its key/value cache refused (a cache made for another
    /// model, a full cache, a model that cannot be built); the model's own
    /// message.
    #[error("{0}")]
    Model(String),
    /// tree-sitter's C grammar does not load into this tree-sitter.
    #[error(
        "cannot load the tree-sitter C grammar: {0} (the tree-sitter and tree-sitter-c versions do not match)"
    )]
    Grammar(String),
    /// tree-sitter returned no tree.
    #[error("the C parser gave up on this text")]
    ParserGaveUp,
    /// The evaluation's cancel flag was set.
    #[error("stopped: cancelled before every completion was made")]
    Cancelled,
    /// A prompt of a set could not start; `number` counts from 1.
    #[error("prompt {number} ({prompt:?}): {source}")]
    Prompt {
        number: usize,
        /// The prompt, cut for the message.
        prompt: String,
        source: Box<GenerateError>,
    },
    /// The caller's handler of each completion failed (writing it out, say);
    /// its own message.
    #[error("{0}")]
    Record(String),
    /// `cllm bench --generate` was given a preset that does not exist.
    #[error("unknown preset '{name}' (the presets: {})", cllm_core::PRESET_NAMES.join(", "))]
    UnknownPreset { name: String },
    #[error("unknown precision '{0}' (use auto, fp32 or bf16)")]
    UnknownPrecision(String),
    /// The operating system would not start the generation thread.
    #[error("cannot start the generation thread: {0}")]
    Thread(String),
}

impl GenerateError {
    /// The model's or the cache's refusal, whatever its error type.
    pub(crate) fn model(e: impl std::fmt::Display) -> Self {
        GenerateError::Model(e.to_string())
    }
}

/// For callers whose own errors are still messages: `?` keeps the text.
impl From<GenerateError> for String {
    fn from(e: GenerateError) -> String {
        e.to_string()
    }
}
