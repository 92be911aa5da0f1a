//! [`Prompt`]: what a reply starts from, built from text, from a hole to
//! fill (prefix, suffix and other files), or from ids a caller encoded. A
//! caller that builds the prompt first can see its ids (to find a cached
//! beginning, to count it) before [`super::Generator::from_prompt`] runs it.

use crate::error::GenerateError;
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
    /// Tokens of the prefix kept (its end).
    pub prefix_tokens: usize,
}

/// The tokens an infill prompt may take in a context of `n_ctx`: what is
/// left after room for the middle (`max_new_tokens`, at most a quarter of
/// the context).
pub fn prompt_budget(n_ctx: usize, max_new_tokens: usize) -> usize {
    let reserve = max_new_tokens.clamp(1, (n_ctx / 4).max(1));
    n_ctx.saturating_sub(reserve).max(4)
}

/// The tokens a reply starts from and what the checks around it need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// What the model reads first (a prompt longer than the context keeps
    /// its last n_ctx tokens when the reply starts).
    pub(super) ids: Vec<u32>,
    /// What the repository memory reads first, in document order.
    pub(super) memory_ids: Vec<u32>,
    /// The text right before the reply (the bracket, close and line checks
    /// start from it).
    pub(super) text_before: String,
    /// Filling a middle: the reply ends when the context is full.
    pub(super) infill: bool,
}

impl Prompt {
    /// `text` to continue. An empty text starts from `<|endoftext|>` (an
    /// error with a tokenizer that has none).
    pub fn text(tok: &Tokenizer, text: &str) -> Result<Prompt, GenerateError> {
        let mut ids = tok.encode(text);
        if ids.is_empty() {
            ids.push(tok.eot_id().ok_or(GenerateError::EmptyPrompt)?);
        }
        Ok(Prompt {
            memory_ids: ids.clone(),
            ids,
            text_before: text.to_string(),
            infill: false,
        })
    }

    /// The hole between `infill.prefix` and `infill.suffix`, for a model of
    /// `n_ctx` positions. The prompt leaves room in the context for the
    /// middle (up to `max_new_tokens`, at most a quarter of the context); the
    /// prefix keeps its end and the suffix its beginning. Errors when the
    /// tokenizer has no FIM tokens (a model trained before them, or on
    /// bytes).
    pub fn infill(
        tok: &Tokenizer,
        n_ctx: usize,
        infill: &Infill,
        max_new_tokens: usize,
    ) -> Result<(Prompt, InfillFit), GenerateError> {
        let fim = tok.fim_tokens().ok_or(GenerateError::NoInfill)?;
        let built = infill_prompt(
            tok,
            fim,
            &infill.extra,
            &infill.prefix,
            &infill.suffix,
            prompt_budget(n_ctx, max_new_tokens),
        );
        // The memory reads the suffix, then the prefix right before the
        // middle it helps write.
        let mut memory_ids = built.suffix_ids.clone();
        memory_ids.push(fim.eot);
        memory_ids.extend_from_slice(&built.prefix_ids);
        let fit = InfillFit {
            prompt_tokens: built.ids.len(),
            truncated: built.truncated,
            prefix_tokens: built.prefix_ids.len(),
        };
        let prompt = Prompt {
            ids: built.ids,
            memory_ids,
            text_before: infill.prefix.clone(),
            infill: true,
        };
        Ok((prompt, fit))
    }

    /// `ids` a caller encoded (for example a prompt whose FIM marker text
    /// became the special tokens); `text_before` is the text right before
    /// the reply. A prompt that ends in `<fim_middle>` is filled as a middle.
    pub fn encoded(
        tok: &Tokenizer,
        ids: Vec<u32>,
        text_before: &str,
    ) -> Result<Prompt, GenerateError> {
        if ids.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let infill = tok
            .fim_tokens()
            .is_some_and(|f| ids.last() == Some(&f.middle));
        Ok(Prompt {
            memory_ids: ids.clone(),
            ids,
            text_before: text_before.to_string(),
            infill,
        })
    }

    /// Every id of the prompt, in order.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The prompt's text without the FIM markers (an infill's suffix, then
    /// `<|endoftext|>` and its prefix, which so ends right before the
    /// middle): what the repository memory reads and what a model adapting
    /// to the prompt learns from.
    pub fn document_ids(&self) -> &[u32] {
        &self.memory_ids
    }

    /// The ids a model of `n_ctx` positions reads: the last n_ctx.
    pub fn visible_ids(&self, n_ctx: usize) -> &[u32] {
        &self.ids[self.ids.len().saturating_sub(n_ctx)..]
    }

    /// Whether the reply fills a middle.
    pub fn is_infill(&self) -> bool {
        self.infill
    }
}
