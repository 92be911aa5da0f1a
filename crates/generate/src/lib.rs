//! Text generation: sampling, the streaming generator that the app, the CLI
//! and the trainer's periodic samples share, a background-thread driver for
//! user interfaces, the C syntax check of completions, and the generation
//! benchmark.
//!
//! - [`sampling`]: the sampling settings and the choice of the next token.
//! - [`generator`]: [`Generator`], one reply token by token over a KV cache,
//!   started from a [`Prompt`]; a [`PromptCache`] keeps prefilled prompts
//!   for the next replies.
//! - [`background`]: [`spawn_generation`], a generator on its own thread
//!   sending [`GenerationEvent`]s over a channel, with a cancel flag.
//! - [`syntax`]: does a C text parse (tree-sitter), and where it first fails.
//! - [`bracket_guard`]: bracket-balanced decoding for code.
//! - [`line_guard`]: for code, lines that repeat or run on are sampled
//!   again.
//! - [`c_lexer`]: which bytes of C text are code (not comments or literals).
//! - [`braces`]: the brace counter (skipping literals and comments) behind
//!   [`Generator::stop_when_closed`].
//! - [`openings`]: C function openings from the data, as prompts.
//! - [`prompt_from_data`]: an opening drawn from a model's own training
//!   tokens (its repository memory), for a first prompt shaped like them.
//! - [`code_eval`]: completions of a prompt set, stopped when their braces
//!   close and checked with tree-sitter: closed rate, parse rate, syntax
//!   accuracy, first error kinds.
//! - [`infill_eval`]: holes cut from C function bodies (a line's end, an
//!   `if`/`for`/`while`/`switch` body), filled with and without the suffix
//!   and the memory: exact match, edit similarity, parse rate.
//! - [`decoder`]: one cached token's forward, its products split between
//!   the threads of a [`pool`], in fp32 ([`gemv`]) or bf16.
//! - [`bench`](mod@bench): tokens/s at batch 1 and the cost of a cached token.
//! - [`error`]: [`GenerateError`], why a reply, an evaluation or a check
//!   could not be made.

pub mod background;
pub mod bench;
pub mod braces;
pub mod bracket_guard;
pub mod c_lexer;
pub mod code_eval;
pub mod decoder;
pub mod error;
pub mod gemv;
pub mod generator;
pub mod infill_eval;
pub mod line_guard;
pub mod openings;
pub mod pool;
pub mod prompt_from_data;
pub mod sampling;
pub mod syntax;

pub use background::{
    GenerationEvent, GenerationHandle, GenerationStart, PrepareModel, spawn_generation,
};
pub use braces::{BraceCounter, CloseWatch};
pub use code_eval::{
    CodeEvalReport, CodeEvalSummary, PeriodicCodeCheck, SampleRecord, evaluate_completions,
    evaluate_completions_with, function_prompts,
};
pub use error::GenerateError;
pub use generator::{
    CachedPrompt, FinishReason, GeneratedToken, GenerationStats, Generator, Infill, InfillFit,
    PREFILL_CHUNK, Prompt, PromptCache, prefill_chunk,
};
pub use openings::{Opening, extract_openings, sample_openings};
pub use sampling::SamplingConfig;
pub use syntax::{SyntaxError, SyntaxReport, check_c};

use cllm_core::Gpt;
use cllm_data::tokenizer::Tokenizer;

/// A short sample for the trainer's "sample every K steps": `max_tokens`
/// tokens after `prompt` with the default sampling, seeded. Returns
/// only the generated text; if generation cannot start (an empty prompt
/// with a tokenizer that has no end-of-text token, a prompt id outside the
/// model's vocabulary) the text says why in brackets.
pub fn sample_text(
    model: &Gpt,
    tok: &Tokenizer,
    prompt: &str,
    max_tokens: usize,
    seed: u64,
) -> String {
    let cfg = SamplingConfig {
        max_new_tokens: max_tokens,
        seed,
        ..SamplingConfig::default()
    };
    match Generator::new(model, tok, prompt, cfg) {
        Ok(mut generator) => {
            while generator.next_token().is_some() {}
            generator.text().to_string()
        }
        Err(e) => format!("[no sample: {e}]"),
    }
}
