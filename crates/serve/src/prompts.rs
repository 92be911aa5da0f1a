//! Replies started from the server's prompt cache: the entry sharing the
//! longest beginning with a prompt gives its rows, and a finished reply
//! leaves its prompt's rows for the next ones.

use super::Shared;
use super::api::ApiError;
use cllm_generate::decoder::DecodeOptions;
use cllm_generate::{Generator, Prompt, SamplingConfig};

/// Starts a reply of `prompt`, from the prompt cache's entry sharing the
/// longest beginning when `cached` (the reply is the same either way), with
/// the repository memory when `memory`.
pub(crate) fn start<'s>(
    shared: &'s Shared,
    prompt: Prompt,
    cfg: SamplingConfig,
    memory: bool,
    cached: bool,
) -> Result<Generator<'s>, ApiError> {
    let model = &shared.model;
    let reuse = if cached {
        let mut prompts = shared.prompts.lock().unwrap_or_else(|e| e.into_inner());
        prompts.take(&prompt, model.gpt.config.n_ctx)
    } else {
        None
    };
    let mut generator = Generator::from_prompt(
        &model.gpt,
        &model.tok,
        prompt,
        cfg,
        DecodeOptions::default(),
        reuse,
    )
    .map_err(|e| ApiError::invalid(None, e))?;
    if memory && let Some(m) = &model.memory {
        generator.use_memory(m).map_err(ApiError::internal)?;
    }
    Ok(generator)
}

/// Keeps the reply's prompt rows in the prompt cache for the next replies.
pub(crate) fn keep(shared: &Shared, generator: Generator) {
    if let Some(entry) = generator.into_cached_prompt() {
        let mut prompts = shared.prompts.lock().unwrap_or_else(|e| e.into_inner());
        prompts.put(entry);
    }
}
