//! Replies started from the server's prompt cache: the entry sharing the
//! longest beginning with a prompt gives its rows, and a finished reply
//! leaves its prompt's rows for the next ones.

use super::Shared;
use super::api::ApiError;
use cllm_core::Gpt;
use cllm_generate::decoder::DecodeOptions;
use cllm_generate::{Generator, Prompt, SamplingConfig};

/// The request's own copy of the model adapted to `prompt` (its text
/// without FIM markers, [`Prompt::document_ids`]), when the server adapts;
/// `None` when it does not.
pub(crate) fn adapted(shared: &Shared, prompt: &Prompt) -> Result<Option<Gpt>, ApiError> {
    let Some(adapt) = &shared.model.adapt else {
        return Ok(None);
    };
    adapt(&shared.model.gpt, prompt.document_ids())
        .map(Some)
        .map_err(|e| ApiError::internal(format!("adapting to the prompt failed: {e}")))
}

/// Starts a reply of `prompt` with `adapted` weights (see [`adapted`]) or
/// the server's, from the prompt cache's entry sharing the longest
/// beginning when `cached` (the reply is the same either way; the cache
/// holds rows of the server's weights, so an adapted reply neither takes
/// nor, in [`keep`], leaves any), with the repository memory when `memory`.
pub(crate) fn start<'s>(
    shared: &'s Shared,
    adapted: Option<&'s Gpt>,
    prompt: Prompt,
    cfg: SamplingConfig,
    memory: bool,
    cached: bool,
) -> Result<Generator<'s>, ApiError> {
    let model = &shared.model;
    let reuse = if cached && adapted.is_none() {
        let mut prompts = shared.prompts.lock().unwrap_or_else(|e| e.into_inner());
        prompts.take(&prompt, model.gpt.config.n_ctx)
    } else {
        None
    };
    let mut generator = Generator::from_prompt(
        adapted.unwrap_or(&*model.gpt),
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

/// Keeps the reply's prompt rows in the prompt cache for the next replies,
/// unless they came from adapted weights.
pub(crate) fn keep(shared: &Shared, generator: Generator, adapted: bool) {
    if adapted {
        return;
    }
    if let Some(entry) = generator.into_cached_prompt() {
        let mut prompts = shared.prompts.lock().unwrap_or_else(|e| e.into_inner());
        prompts.put(entry);
    }
}
