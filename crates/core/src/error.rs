//! Why cllm-core refused: a model configuration that cannot be built, a
//! parameter buffer of the wrong size, tokens a key/value cache cannot take,
//! an unknown preset or precision. Each message names the field or value and
//! what would be accepted.

use crate::config::PRESET_NAMES;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// `ModelConfig::preset` was given a name it does not know.
    #[error("unknown model preset '{name}' (use one of: {})", PRESET_NAMES.join(", "))]
    UnknownPreset { name: String },

    /// A size field of the model configuration is zero.
    #[error("model config: {field} must be at least 1")]
    ZeroSize { field: &'static str },

    /// The residual width does not split evenly into the attention heads.
    #[error(
        "model config: n_embd ({n_embd}) must be a multiple of n_head ({n_head}); \
         change one of them"
    )]
    HeadsDoNotDivide { n_embd: usize, n_head: usize },

    /// The dropout probability is outside [0, 1).
    #[error("model config: dropout ({dropout}) must be in [0, 1)")]
    Dropout { dropout: f32 },

    /// The parameter count does not fit in a machine word.
    #[error(
        "model config: the parameter count overflows \
         (vocab_size, n_ctx, n_embd, n_inner or n_layer is far too large)"
    )]
    SizeOverflows,

    /// The model is larger than anything this tool trains.
    #[error(
        "model config: {params} parameters is beyond what this tool trains \
         (at most {max}: lower n_layer, n_embd, n_inner or vocab_size)"
    )]
    TooManyParams { params: usize, max: usize },

    /// A parameter buffer does not have the configuration's size.
    #[error("parameter buffer has {got} values, the config needs {want}")]
    ParamCount { got: usize, want: usize },

    /// A key/value cache was given a model of another configuration.
    #[error("the key/value cache was made for another model config (make a new cache for it)")]
    CacheForAnotherModel,

    /// Nothing to append to a key/value cache.
    #[error("no tokens to append to the key/value cache")]
    NoTokens,

    /// More tokens than the cache's free positions.
    #[error(
        "{tokens} tokens do not fit: the context holds {context} and {in_use} are in use \
         (clear the cache or append fewer)"
    )]
    ContextFull {
        tokens: usize,
        context: usize,
        in_use: usize,
    },

    /// A token id at or above the vocabulary size.
    #[error("token id {id} is outside the model's vocabulary of {vocab}")]
    TokenOutOfVocabulary { id: u32, vocab: usize },

    /// `PrecisionChoice::parse` was given a name it does not know.
    #[error("unknown precision '{given}' (expected auto, fp32 or bf16)")]
    UnknownPrecision { given: String },
}

/// For callers that still carry errors as text.
impl From<CoreError> for String {
    fn from(e: CoreError) -> String {
        e.to_string()
    }
}
