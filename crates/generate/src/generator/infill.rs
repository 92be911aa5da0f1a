//! Filling a middle: a [`Generator`] started from a fill-in-the-middle
//! prompt (`<fim_suffix> suffix <fim_prefix> prefix <fim_middle>`), and one
//! started from ids a caller built (a prompt with FIM marker text).

use super::Generator;
use super::prompt::{Infill, InfillFit, Prompt};
use crate::decoder::DecodeOptions;
use crate::error::GenerateError;
use crate::sampling::SamplingConfig;
use cllm_core::Gpt;
use cllm_data::tokenizer::Tokenizer;

impl<'a> Generator<'a> {
    /// Starts a reply that fills the hole between `infill.prefix` and
    /// `infill.suffix` (the prompt as [`Prompt::infill`] builds it). The
    /// reply ends at `<|endoftext|>` (the model's end of a middle), at any
    /// other special token, or when the context is full. Errors when the
    /// tokenizer has no FIM tokens (a model trained before them, or on
    /// bytes).
    pub fn infill(
        model: &'a Gpt,
        tok: &'a Tokenizer,
        infill: &Infill,
        cfg: SamplingConfig,
        options: DecodeOptions,
    ) -> Result<(Generator<'a>, InfillFit), GenerateError> {
        let (prompt, fit) = Prompt::infill(tok, model.config.n_ctx, infill, cfg.max_new_tokens)?;
        let generator = Generator::from_prompt(model, tok, prompt, cfg, options, None)?;
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
        let prompt = Prompt::encoded(tok, ids, text_before)?;
        Generator::from_prompt(model, tok, prompt, cfg, options, None)
    }
}
