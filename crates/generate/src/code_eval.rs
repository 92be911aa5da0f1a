//! Code-aware generation metrics: complete a set of C prompts, stop each
//! completion when the braces its prompt opened close again (or at
//! `<|endoftext|>`, a stop string or the token limit), and check prompt +
//! completion with tree-sitter.
//!
//! Per prompt set ([`CodeEvalSummary`]), with `samples` = prompts × samples
//! per prompt:
//!
//! - `closed`: completions that closed their prompt's braces
//!   ([`FinishReason::Closed`]); `closed <= samples`.
//! - `parsed`: completions whose prompt + completion parses as C (closed or
//!   not; one that did not close leaves a brace open, so it rarely parses).
//! - `parsed_when_closed`: closed *and* parses; `<= closed`, `<= parsed`.
//! - `syntax_accuracy` = `parsed_when_closed / samples`: the model wrote a
//!   body that ends where it should and is valid C.
//! - `parse_rate_when_closed` = `parsed_when_closed / closed` (0 with none
//!   closed), `closed_rate` = `closed / samples`.
//! - `first_errors`: for every completion that does not parse, the kind of
//!   its first syntax error ([`SyntaxError::kind`](super::SyntaxError),
//!   e.g. `MISSING }`, `ERROR in compound_statement`); the counts sum to
//!   `samples - parsed`.
//! - `syntax_accuracy_stderr`: the standard error of `syntax_accuracy` over
//!   the prompts (each prompt's share of good completions is one
//!   observation): how much the figure would move with another draw of
//!   openings from the same code. It does not include how much two
//!   training runs of the same size differ, which is often larger.
//!
//! The trainer's periodic check is [`PeriodicCodeCheck`]: built once per
//! run from the prepared validation split ([`TRAINER_PROMPTS`] openings,
//! [`trainer_sampling`]: seeded sampling, at most [`TRAINER_MAX_TOKENS`]
//! tokens, one completion per prompt), run at each evaluation on the same
//! prompts, so evaluations compare; it costs at most `TRAINER_PROMPTS ×
//! TRAINER_MAX_TOKENS` decoded tokens.

use super::error::GenerateError;
use super::generator::{FinishReason, Generator};
use super::openings::{self, Opening};
use super::sampling::SamplingConfig;
use super::syntax::{SyntaxError, check_c};
use cllm_core::Gpt;
use cllm_data::dataset::TokenDataset;
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::Memory;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Prompts the trainer's periodic check uses.
pub const TRAINER_PROMPTS: usize = 8;

/// `cllm eval-gen`'s token limit per completion unless given. A function
/// can only count as closed if the limit lets it finish: 1,024 tokens let
/// nearly every real function body end, where 200 cut short about a third.
pub const EVAL_GEN_MAX_TOKENS: usize = 1024;

/// The trainer's periodic check's token limit: half of
/// [`EVAL_GEN_MAX_TOKENS`], as it runs at every evaluation.
pub const TRAINER_MAX_TOKENS: usize = 512;

/// The trainer's periodic check: the default sampling (what people generate
/// with, and the balanced brackets `cllm eval-gen` uses) and a fixed seed, so every evaluation of
/// the same weights gives the same figures and changes come from the
/// weights; at most [`TRAINER_MAX_TOKENS`] new tokens, no stop strings. Not greedy: a small
/// model decoded greedily falls into a loop (`int rc = SQLITE_OK;` line
/// after line) and never closes its braces, so greedy figures stay at zero
/// long after sampled ones move.
pub fn trainer_sampling() -> SamplingConfig {
    SamplingConfig {
        seed: 0x5eed,
        max_new_tokens: TRAINER_MAX_TOKENS,
        balanced_brackets: true,
        line_guard: true,
        ..SamplingConfig::default()
    }
}

/// One completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Index of the prompt in the set.
    pub prompt_index: usize,
    pub prompt: String,
    /// Index of the sample for this prompt.
    pub sample: usize,
    /// The sampling seed it used.
    pub seed: u64,
    pub completion: String,
    pub finish: FinishReason,
    /// It closed the prompt's braces.
    pub closed: bool,
    /// Prompt + completion parses as C.
    pub parses: bool,
    pub first_error: Option<SyntaxError>,
    pub tokens: usize,
    /// Lines the line guard took back and sampled again.
    #[serde(default)]
    pub rewritten_lines: usize,
}

/// The figures of one prompt set (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeEvalSummary {
    pub prompts: usize,
    pub samples: usize,
    pub closed: usize,
    pub parsed: usize,
    pub parsed_when_closed: usize,
    pub closed_rate: f64,
    pub parse_rate_when_closed: f64,
    pub syntax_accuracy: f64,
    /// Standard error of `syntax_accuracy` across prompts (0 with fewer
    /// than two prompts).
    #[serde(default)]
    pub syntax_accuracy_stderr: f64,
    /// First error kind of each completion that does not parse.
    pub first_errors: BTreeMap<String, usize>,
    /// How the completions ended (`Closed`, `MaxTokens`, `EndOfText`, ...).
    pub finish: BTreeMap<String, usize>,
    pub mean_generated_tokens: f64,
    /// Lines the line guard took back and sampled again, over all
    /// completions.
    #[serde(default)]
    pub rewritten_lines: usize,
}

/// A prompt set's figures and every completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeEvalReport {
    pub summary: CodeEvalSummary,
    pub records: Vec<SampleRecord>,
}

impl CodeEvalSummary {
    /// The figures of `records`, for a set of `prompts` prompts.
    pub fn of(prompts: usize, records: &[SampleRecord]) -> CodeEvalSummary {
        let samples = records.len();
        let closed = records.iter().filter(|r| r.closed).count();
        let parsed = records.iter().filter(|r| r.parses).count();
        let parsed_when_closed = records.iter().filter(|r| r.closed && r.parses).count();
        let mut first_errors = BTreeMap::new();
        let mut finish = BTreeMap::new();
        for r in records {
            if !r.parses {
                let kind = match &r.first_error {
                    Some(e) if !e.kind.is_empty() => e.kind.clone(),
                    _ => "unknown".to_string(),
                };
                *first_errors.entry(kind).or_insert(0) += 1;
            }
            *finish.entry(format!("{:?}", r.finish)).or_insert(0) += 1;
        }
        let share = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        let tokens: usize = records.iter().map(|r| r.tokens).sum();
        CodeEvalSummary {
            prompts,
            samples,
            closed,
            parsed,
            parsed_when_closed,
            closed_rate: share(closed, samples),
            parse_rate_when_closed: share(parsed_when_closed, closed),
            syntax_accuracy: share(parsed_when_closed, samples),
            syntax_accuracy_stderr: stderr_over_prompts(records),
            first_errors,
            finish,
            mean_generated_tokens: share(tokens, samples),
            rewritten_lines: records.iter().map(|r| r.rewritten_lines).sum(),
        }
    }
}

/// The standard error of the mean of the prompts' syntax accuracies (each
/// prompt's share of completions that closed and parse): the sample
/// standard deviation across prompts over √prompts. Samples of one prompt
/// are not independent (they share its difficulty), so the prompt, not the
/// completion, is the unit.
fn stderr_over_prompts(records: &[SampleRecord]) -> f64 {
    let mut per_prompt: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for r in records {
        let e = per_prompt.entry(r.prompt_index).or_default();
        e.0 += usize::from(r.closed && r.parses);
        e.1 += 1;
    }
    let n = per_prompt.len();
    if n < 2 {
        return 0.0;
    }
    let rates: Vec<f64> = per_prompt
        .values()
        .map(|&(good, of)| good as f64 / of as f64)
        .collect();
    let mean = rates.iter().sum::<f64>() / n as f64;
    let var = rates.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (var / n as f64).sqrt()
}

/// Completes every prompt `samples` times (sample `s` with seed
/// `cfg.seed + s`, so samples differ and reruns agree), each stopping when
/// its prompt's braces close, and checks each. `on_sample` sees every
/// record as it is made (progress, streaming to a file). With a `memory`,
/// the repository memory is mixed into every completion. Errs if a prompt
/// cannot start (empty with no end-of-text token, ...), naming it, or with
/// "stopped" once `cancel` is set.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_completions_with(
    model: &Gpt,
    tok: &Tokenizer,
    prompts: &[String],
    cfg: &SamplingConfig,
    samples: usize,
    cancel: &AtomicBool,
    memory: Option<&Memory>,
    on_sample: &mut dyn FnMut(&SampleRecord) -> Result<(), String>,
) -> Result<CodeEvalReport, GenerateError> {
    cfg.validate()?;
    let mut records = Vec::with_capacity(prompts.len() * samples);
    for (p, prompt) in prompts.iter().enumerate() {
        for s in 0..samples {
            let seed = cfg.seed.wrapping_add(s as u64);
            let sample_cfg = SamplingConfig {
                seed,
                stop_when_closed: true,
                ..cfg.clone()
            };
            let mut generator = Generator::new(model, tok, prompt, sample_cfg).map_err(|e| {
                GenerateError::Prompt {
                    number: p + 1,
                    prompt: short(prompt),
                    source: Box::new(e),
                }
            })?;
            if let Some(memory) = memory {
                generator.use_memory(memory)?;
            }
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(GenerateError::Cancelled);
                }
                if generator.next_token().is_none() {
                    break;
                }
            }
            let completion = generator.text().to_string();
            let report = check_c(&format!("{prompt}{completion}"))?;
            let finish = generator.finish_reason().unwrap_or(FinishReason::MaxTokens);
            let record = SampleRecord {
                prompt_index: p,
                prompt: prompt.clone(),
                sample: s,
                seed,
                completion,
                finish,
                closed: finish == FinishReason::Closed,
                parses: report.parses,
                first_error: report.first_error,
                tokens: generator.generated_ids().len(),
                rewritten_lines: generator.stats().rewritten_lines,
            };
            on_sample(&record).map_err(GenerateError::Record)?;
            records.push(record);
        }
    }
    Ok(CodeEvalReport {
        summary: CodeEvalSummary::of(prompts.len(), &records),
        records,
    })
}

/// [`evaluate_completions_with`] without a per-sample callback.
pub fn evaluate_completions(
    model: &Gpt,
    tok: &Tokenizer,
    prompts: &[String],
    cfg: &SamplingConfig,
    samples: usize,
    cancel: &AtomicBool,
) -> Result<CodeEvalReport, GenerateError> {
    evaluate_completions_with(model, tok, prompts, cfg, samples, cancel, None, &mut |_| {
        Ok(())
    })
}

/// Up to `n` function openings from `texts` (`(name, text)` pairs), seeded
/// and spread over the text, each at most
/// [`openings::DEFAULT_MAX_OPENING_BYTES`] long and at most half of the
/// model's context `n_ctx` in tokens (so the completion has room before the
/// window slides). Also returns how many usable openings the text has in
/// all, before the length limits (see [`openings::extract_openings`]).
/// Zero openings (text with no C functions) is not an error.
pub fn function_prompts(
    texts: &[(String, String)],
    tok: &Tokenizer,
    n_ctx: usize,
    n: usize,
    seed: u64,
) -> Result<(Vec<Opening>, usize), GenerateError> {
    let all = openings::extract_openings(texts)?;
    let max_tokens = (n_ctx / 2).max(1);
    let fits = |o: &Opening| tok.encode(&o.text).len() <= max_tokens;
    let chosen =
        openings::sample_openings(&all, n, seed, openings::DEFAULT_MAX_OPENING_BYTES, &fits);
    Ok((chosen, all.len()))
}

/// The text of each file of a token dataset (decoded; the tokenizers
/// round-trip exactly), named as in the dataset: the prepared validation
/// split as `(name, text)` pairs for [`function_prompts`].
pub fn texts_of_dataset(data: &TokenDataset, tok: &Tokenizer) -> Vec<(String, String)> {
    data.docs
        .iter()
        .zip(&data.names)
        .map(|(range, name)| (name.clone(), tok.decode(&data.tokens[range.clone()])))
        .collect()
}

/// The trainer's periodic code check, set up once per run: the prompts
/// (up to `n` function openings of the validation split, chosen with the
/// run's seed) and [`trainer_sampling`]. Each [`PeriodicCodeCheck::run`]
/// completes every prompt once with the same seed, at most
/// [`TRAINER_MAX_TOKENS`] tokens each, and gives the same figures for the
/// same weights.
#[derive(Clone, Debug, PartialEq)]
pub struct PeriodicCodeCheck {
    pub prompts: Vec<String>,
    /// Usable openings in the validation split (before the length limits).
    pub openings_found: usize,
    pub sampling: SamplingConfig,
}

impl PeriodicCodeCheck {
    /// Chooses the prompts from the prepared validation split `val`
    /// (decoded with `tok`) for a model of context `n_ctx`. With no usable
    /// opening (data that is not C) the check has no prompts, and
    /// [`PeriodicCodeCheck::run`] returns `None`.
    pub fn new(
        val: &TokenDataset,
        tok: &Tokenizer,
        n_ctx: usize,
        n: usize,
        seed: u64,
    ) -> Result<PeriodicCodeCheck, GenerateError> {
        let texts = texts_of_dataset(val, tok);
        let (chosen, openings_found) = function_prompts(&texts, tok, n_ctx, n, seed)?;
        Ok(PeriodicCodeCheck {
            prompts: chosen.into_iter().map(|o| o.text).collect(),
            openings_found,
            sampling: trainer_sampling(),
        })
    }

    /// The figures for `model` now (`None` with no prompts).
    pub fn run(
        &self,
        model: &Gpt,
        tok: &Tokenizer,
        memory: Option<&Memory>,
        cancel: &AtomicBool,
    ) -> Result<Option<CodeEvalSummary>, GenerateError> {
        if self.prompts.is_empty() {
            return Ok(None);
        }
        let report = evaluate_completions_with(
            model,
            tok,
            &self.prompts,
            &self.sampling,
            1,
            cancel,
            memory,
            &mut |_| Ok(()),
        )?;
        Ok(Some(report.summary))
    }
}

/// A prompt cut for messages.
fn short(prompt: &str) -> String {
    let mut s: String = prompt.chars().take(40).collect();
    if prompt.chars().count() > 40 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(closed: bool, parses: bool, kind: &str) -> SampleRecord {
        SampleRecord {
            prompt_index: 0,
            prompt: "int f() {".into(),
            sample: 0,
            seed: 0,
            completion: String::new(),
            finish: if closed {
                FinishReason::Closed
            } else {
                FinishReason::MaxTokens
            },
            closed,
            parses,
            first_error: (!parses).then(|| SyntaxError {
                line: 1,
                column: 1,
                message: String::new(),
                kind: kind.into(),
            }),
            tokens: 10,
            rewritten_lines: 0,
        }
    }

    #[test]
    fn summary_counts_and_shares() {
        let records = vec![
            record(true, true, ""),
            record(true, false, "ERROR in compound_statement"),
            record(false, false, "MISSING }"),
            record(false, false, "MISSING }"),
        ];
        let s = CodeEvalSummary::of(2, &records);
        assert_eq!((s.prompts, s.samples, s.closed), (2, 4, 2));
        assert_eq!((s.parsed, s.parsed_when_closed), (1, 1));
        assert_eq!(s.closed_rate, 0.5);
        assert_eq!(s.parse_rate_when_closed, 0.5);
        assert_eq!(s.syntax_accuracy, 0.25);
        assert_eq!(s.first_errors["MISSING }"], 2);
        assert_eq!(s.first_errors["ERROR in compound_statement"], 1);
        assert_eq!(s.finish["Closed"], 2);
        assert_eq!(s.finish["MaxTokens"], 2);
        assert_eq!(s.mean_generated_tokens, 10.0);
        let empty = CodeEvalSummary::of(0, &[]);
        assert_eq!((empty.syntax_accuracy, empty.closed_rate), (0.0, 0.0));
    }

    #[test]
    fn stderr_treats_each_prompt_as_one_observation() {
        // Prompt shares 1, 1/2 and 0: mean 1/2, sample variance
        // ((1/2)² + 0 + (1/2)²) / 2 = 1/4, standard error √(1/4 / 3).
        let mut records = Vec::new();
        for (p, goods) in [[true, true], [true, false], [false, false]]
            .iter()
            .enumerate()
        {
            for (k, &good) in goods.iter().enumerate() {
                let mut r = record(true, good, "ERROR in compound_statement");
                (r.prompt_index, r.sample) = (p, k);
                records.push(r);
            }
        }
        let s = CodeEvalSummary::of(3, &records);
        assert_eq!(s.syntax_accuracy, 0.5);
        assert!((s.syntax_accuracy_stderr - 0.5 / 3f64.sqrt()).abs() < 1e-12);
        // Every prompt alike: no spread across prompts, whatever the rate.
        for r in &mut records {
            r.parses = r.sample == 0;
        }
        assert_eq!(CodeEvalSummary::of(3, &records).syntax_accuracy_stderr, 0.0);
        // One prompt: no spread can be estimated.
        assert_eq!(
            CodeEvalSummary::of(1, &records[..2]).syntax_accuracy_stderr,
            0.0
        );
    }
}
