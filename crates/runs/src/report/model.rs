//! The report's model section: the run's best checkpoint completes the four
//! seed prompts (the LLM tab's presets) at a fixed seed, each checked as C,
//! and function openings of the run's validation split, as `cllm eval-gen`
//! does, for the syntax accuracy. The engine's code paths
//! (`generate::code_eval`, `train::prepare::validation_texts`) do the work.

use crate::error::RunsError;
use cllm_core::Gpt;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::code_eval::{self, CodeEvalReport, trainer_sampling};
use cllm_train::checkpoint;
use cllm_train::prepare::validation_texts;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// The LLM tab's preset prompts (`cllm eval-gen`'s `seed` set).
pub const SEED_PROMPTS: [&str; 4] = [
    "int main() {",
    "// Calculate the nth prime number",
    "void cllm_",
    "// Convert to lattice coordinates",
];

pub struct ModelSection {
    pub seed: CodeEvalReport,
    /// `None` when the validation split has no C function openings.
    pub functions: Option<CodeEvalReport>,
    /// Openings found in the split before sampling.
    pub openings_found: usize,
    pub seed_value: u64,
    /// The repository memory was mixed in.
    pub with_memory: bool,
}

/// Completes the seed prompts (one sample each) and up to `functions`
/// openings of the validation split (`samples` each) with the checkpoint.
pub fn model_section(
    path: &Path,
    functions: usize,
    samples: usize,
) -> Result<ModelSection, RunsError> {
    let checkpoint_error = |e: &dyn std::fmt::Display| RunsError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let ck = checkpoint::load(path).map_err(|e| checkpoint_error(&e))?;
    let context = cllm_train::checkpoint::trained_context(&ck);
    // As `cllm eval-gen` by default: with the repository memory when the
    // checkpoint carries one.
    let memory = ck
        .repository_memory(path)
        .map_err(|e| checkpoint_error(&e))?;
    let tok = Tokenizer::from_json(&ck.tokenizer_json).map_err(|e| RunsError::Tokenizer {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let train_config = ck.train_config.clone();
    let model = Gpt::from_params(ck.model, ck.params)
        .and_then(|m| m.with_context(context))
        .map_err(|e| RunsError::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let completions_error = |e: &dyn std::fmt::Display| RunsError::Completions {
        message: e.to_string(),
    };
    let cfg = trainer_sampling();
    let never = AtomicBool::new(false);
    let prompts: Vec<String> = SEED_PROMPTS.iter().map(|s| s.to_string()).collect();
    let complete = |prompts: &[String], samples: usize| {
        code_eval::evaluate_completions_with(
            &model,
            &tok,
            prompts,
            &cfg,
            samples,
            &never,
            memory.as_ref(),
            &mut |_| Ok(()),
        )
    };
    let seed = complete(&prompts, 1).map_err(|e| completions_error(&e))?;
    let (functions, openings_found) = if functions == 0 {
        (None, 0)
    } else {
        let texts =
            validation_texts(&train_config, &never).map_err(|e| RunsError::ValidationSplit {
                message: e.to_string(),
            })?;
        let (chosen, found) =
            code_eval::function_prompts(&texts, &tok, model.config.n_ctx, functions, cfg.seed)
                .map_err(|e| RunsError::Openings {
                    message: e.to_string(),
                })?;
        if chosen.is_empty() {
            (None, found)
        } else {
            let openings: Vec<String> = chosen.into_iter().map(|o| o.text).collect();
            let report = complete(&openings, samples).map_err(|e| completions_error(&e))?;
            (Some(report), found)
        }
    };
    Ok(ModelSection {
        seed,
        functions,
        openings_found,
        seed_value: cfg.seed,
        with_memory: memory.is_some(),
    })
}
