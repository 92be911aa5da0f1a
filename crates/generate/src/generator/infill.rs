//! Filling a middle: a [`Generator`] started from a fill-in-the-middle
//! prompt (`<fim_suffix> suffix <fim_prefix> prefix <fim_middle>`), and one
//! started from ids a caller built (a prompt with FIM marker text).

use super::{Generator, Start};
use crate::decoder::DecodeOptions;
use crate::error::GenerateError;
use crate::sampling::SamplingConfig;
use cllm_core::Gpt;
use cllm_data::fim::{ExtraChunk, infill_prompt};
use cllm_data::tokenizer::Tokenizer;

/// What to fill: the text before and after the hole, and other files given
/// as context (placed before the prefix while they fit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Infill {
    pub prefix: String,
    pub suffix: String,
    pub extra: Vec<ExtraChunk>,
}

/// What an infill prompt kept of its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfillFit {
    /// Tokens of the prompt the model reads.
    pub prompt_tokens: usize,
    /// Whether the prefix or suffix was cut to fit the context.
    pub truncated: bool,
}

/// The tokens an infill prompt may take in a context of `n_ctx`: what is
/// left after room for the middle (`max_new_tokens`, at most a quarter of
/// the context).
pub fn prompt_budget(n_ctx: usize, max_new_tokens: usize) -> usize {
    let reserve = max_new_tokens.clamp(1, (n_ctx / 4).max(1));
    n_ctx.saturating_sub(reserve).max(4)
}

impl<'a> Generator<'a> {
    /// Starts a reply that fills the hole between `infill.prefix` and
    /// `infill.suffix`. The prompt leaves room in the context for the middle
    /// (up to `cfg.max_new_tokens`, at most a quarter of the context); the
    /// prefix keeps its end and the suffix its beginning. The reply ends at
    /// `<|endoftext|>` (the model's end of a middle), at any other special
    /// token, or when the context is full. Errors when the tokenizer has no
    /// FIM tokens (a model trained before them, or on bytes).
    pub fn infill(
        model: &'a Gpt,
        tok: &'a Tokenizer,
        infill: &Infill,
        cfg: SamplingConfig,
        options: DecodeOptions,
    ) -> Result<(Generator<'a>, InfillFit), GenerateError> {
        let fim = tok.fim_tokens().ok_or(GenerateError::NoInfill)?;
        let prompt = infill_prompt(
            tok,
            fim,
            &infill.extra,
            &infill.prefix,
            &infill.suffix,
            prompt_budget(model.config.n_ctx, cfg.max_new_tokens),
        );
        // The memory reads the suffix, then the prefix right before the
        // middle it helps write.
        let mut memory_ids = prompt.suffix_ids.clone();
        memory_ids.push(fim.eot);
        memory_ids.extend_from_slice(&prompt.prefix_ids);
        let fit = InfillFit {
            prompt_tokens: prompt.ids.len(),
            truncated: prompt.truncated,
        };
        let generator = Generator::start(
            model,
            tok,
            Start {
                ids: prompt.ids,
                memory_ids,
                text_before: &infill.prefix,
                infill: true,
            },
            cfg,
            options,
        )?;
        Ok((generator, fit))
    }

    /// Starts a reply from `ids` a caller encoded (for example a prompt whose
    /// FIM marker text became the special tokens); `text_before` is the text
    /// right before the reply, for the bracket, close and line checks. A
    /// prompt that ends in `<fim_middle>` is filled as a middle.
    pub fn from_ids(
        model: &'a Gpt,
        tok: &'a Tokenizer,
        ids: Vec<u32>,
        text_before: &str,
        cfg: SamplingConfig,
        options: DecodeOptions,
    ) -> Result<Generator<'a>, GenerateError> {
        if ids.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let vocab = model.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(GenerateError::TokenOutsideVocabulary { token: bad, vocab });
        }
        let infill = tok
            .fim_tokens()
            .is_some_and(|f| ids.last() == Some(&f.middle));
        Generator::start(
            model,
            tok,
            Start {
                memory_ids: ids.clone(),
                ids,
                text_before,
                infill,
            },
            cfg,
            options,
        )
    }
}
