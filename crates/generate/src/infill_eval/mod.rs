//! `cllm eval-infill`: how well a model fills holes in C functions of
//! held-out files ([`holes`]), each hole filled greedily (temperature 0,
//! no guards) twice: with the text after it (`Generator::infill`) and from
//! the same prefix tokens alone (a left-to-right completion), so what the
//! suffix brings is visible; optionally with and without the repository
//! memory.
//!
//! - single-line holes end at the first newline (a stop string `"\n"`) or
//!   after [`LINE_MAX_TOKENS`];
//! - block holes end at `<|endoftext|>` (the end of a middle), at the `}`
//!   that closes the block (cut off: the block's own brace is in the
//!   suffix), or after [`BLOCK_MAX_TOKENS`];
//!
//! both at most a quarter of the context. The model reads the text around
//! the hole: the infill prompt keeps the end of the prefix and the start
//! of the suffix (three quarters of the room to the prefix, see
//! `cllm_data::fim::infill_prompt`); the prefix-only completion reads
//! exactly the prefix tokens the infill prompt kept.
//!
//! Scores ([`score`]): exact match and edit similarity against the
//! reference middle, and whether the enclosing function parses with the
//! middle put back (tree-sitter, as `cllm eval-gen` checks).

pub mod holes;
pub mod score;

pub use holes::{Candidates, Document, Hole, HoleKind, documents, draw_holes, find_candidates};
pub use score::{Cell, HoleResult, Mode, edit_similarity, exact_match};

use crate::decoder::DecodeOptions;
use crate::error::GenerateError;
use crate::generator::{FinishReason, Generator, Infill, prompt_budget};
use crate::sampling::SamplingConfig;
use crate::syntax::check_c;
use cllm_core::Gpt;
use cllm_data::fim::{FimTokens, infill_prompt};
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::Memory;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most tokens of a single-line middle.
pub const LINE_MAX_TOKENS: usize = 48;
/// Most tokens of a block middle.
pub const BLOCK_MAX_TOKENS: usize = 256;

/// Text around a hole handed to the tokenizer, in bytes per context
/// token: far more than the context holds, so the tokens kept next to the
/// hole are those of the whole file, without encoding whole files per
/// hole.
const WINDOW_BYTES_PER_TOKEN: usize = 16;

/// The most tokens a middle of `kind` may have in a context of `n_ctx`.
pub fn max_tokens(kind: HoleKind, n_ctx: usize) -> usize {
    let cap = match kind {
        HoleKind::SingleLine => LINE_MAX_TOKENS,
        HoleKind::Block => BLOCK_MAX_TOKENS,
    };
    cap.min((n_ctx / 4).max(1))
}

/// Whether a hole's reference middle can be written within
/// [`max_tokens`]: a line's whole, a block's with a quarter to spare (a
/// middle written token by token may split differently).
pub fn hole_fits(tok: &Tokenizer, docs: &[Document], hole: &Hole, n_ctx: usize) -> bool {
    let limit = max_tokens(hole.kind, n_ctx);
    let tokens = tok.encode(hole.reference(docs)).len();
    match hole.kind {
        HoleKind::SingleLine => tokens <= limit,
        HoleKind::Block => tokens * 4 <= limit * 3,
    }
}

/// The greedy settings a hole of `kind` is filled with.
pub fn hole_sampling(kind: HoleKind, n_ctx: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        max_new_tokens: max_tokens(kind, n_ctx),
        stop: match kind {
            HoleKind::SingleLine => vec!["\n".to_string()],
            HoleKind::Block => Vec::new(),
        },
        seed: 0,
        balanced_brackets: false,
        stop_when_closed: false,
        line_guard: false,
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct InfillEvalSettings {
    /// With and/or without the memory (`[false, true]`: both); `true` is
    /// skipped when no memory is given.
    pub memory_settings: Vec<bool>,
    /// Threads and precision of each reply.
    pub options: DecodeOptions,
}

/// Every filled hole and the figures per kind, mode and memory setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InfillEvalReport {
    /// Whether the model has FIM tokens (without them only prefix-only is
    /// measured).
    pub infill_available: bool,
    pub cells: Vec<Cell>,
    pub results: Vec<HoleResult>,
}

/// Fills every hole in every available mode and memory setting, greedily.
/// `on_result` sees each result as it is made, with the count done and the
/// total. Errs when a reply cannot start (the message names the hole) or
/// with "stopped" once `cancel` is set.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_infill(
    model: &Gpt,
    tok: &Tokenizer,
    docs: &[Document],
    holes: &[Hole],
    memory: Option<&Memory>,
    settings: &InfillEvalSettings,
    cancel: &AtomicBool,
    on_result: &mut dyn FnMut(&HoleResult, usize, usize) -> Result<(), String>,
) -> Result<InfillEvalReport, GenerateError> {
    let infill_available = tok.fim_tokens().is_some();
    let modes: Vec<Mode> = if infill_available {
        vec![Mode::Infill, Mode::PrefixOnly]
    } else {
        vec![Mode::PrefixOnly]
    };
    let memories: Vec<bool> = settings
        .memory_settings
        .iter()
        .copied()
        .filter(|&with| !with || memory.is_some())
        .collect();
    let total = holes.len() * modes.len() * memories.len();
    let mut results = Vec::with_capacity(total);
    for (h, hole) in holes.iter().enumerate() {
        let (prefix, suffix) = window(docs, hole, model.config.n_ctx);
        for &with_memory in &memories {
            for &mode in &modes {
                let ask = Ask {
                    kind: hole.kind,
                    mode,
                    memory: memory.filter(|_| with_memory),
                    options: settings.options,
                };
                let filled = fill(model, tok, prefix, suffix, &ask, cancel).map_err(|e| {
                    GenerateError::Prompt {
                        number: h + 1,
                        prompt: format!("{} line {}", docs[hole.doc].name, hole.line),
                        source: Box::new(e),
                    }
                })?;
                let reference = hole.reference(docs);
                let parses = check_c(&hole.function_with(docs, &filled.middle))?.parses;
                let result = HoleResult {
                    hole: h,
                    kind: hole.kind,
                    mode,
                    memory: with_memory,
                    file: docs[hole.doc].name.clone(),
                    line: hole.line,
                    reference: reference.to_string(),
                    exact: exact_match(&filled.middle, reference),
                    edit_similarity: edit_similarity(&filled.middle, reference),
                    parses,
                    middle: filled.middle,
                    tokens: filled.tokens,
                    finish: filled.finish,
                    truncated: filled.truncated,
                };
                on_result(&result, results.len() + 1, total).map_err(GenerateError::Record)?;
                results.push(result);
            }
        }
    }
    let mut cells = Vec::new();
    for kind in HoleKind::ALL {
        for &mode in &modes {
            for &with in &memories {
                cells.push(Cell::of(&results, kind, mode, with));
            }
        }
    }
    Ok(InfillEvalReport {
        infill_available,
        cells,
        results,
    })
}

/// The text before and after a hole that is handed to the tokenizer: up
/// to [`WINDOW_BYTES_PER_TOKEN`] bytes per context token each way, cut at
/// character boundaries.
fn window<'t>(docs: &'t [Document], hole: &Hole, n_ctx: usize) -> (&'t str, &'t str) {
    let text = &docs[hole.doc].text;
    let reach = n_ctx * WINDOW_BYTES_PER_TOKEN;
    let mut from = hole.middle.start.saturating_sub(reach);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let mut to = (hole.middle.end + reach).min(text.len());
    while !text.is_char_boundary(to) {
        to -= 1;
    }
    (&text[from..hole.middle.start], &text[hole.middle.end..to])
}

/// How one hole is asked.
struct Ask<'m> {
    kind: HoleKind,
    mode: Mode,
    memory: Option<&'m Memory>,
    options: DecodeOptions,
}

/// One filled middle.
struct Filled {
    middle: String,
    tokens: usize,
    finish: FinishReason,
    truncated: bool,
}

fn fill(
    model: &Gpt,
    tok: &Tokenizer,
    prefix: &str,
    suffix: &str,
    ask: &Ask<'_>,
    cancel: &AtomicBool,
) -> Result<Filled, GenerateError> {
    let n_ctx = model.config.n_ctx;
    let cfg = hole_sampling(ask.kind, n_ctx);
    let (mut generator, truncated) = match ask.mode {
        Mode::Infill => {
            let infill = Infill {
                prefix: prefix.to_string(),
                suffix: suffix.to_string(),
                extra: Vec::new(),
            };
            let (generator, fit) = Generator::infill(model, tok, &infill, cfg, ask.options)?;
            (generator, fit.truncated)
        }
        Mode::PrefixOnly => {
            // The prefix tokens an infill prompt keeps; a tokenizer without
            // FIM tokens keeps the same (the ids of the markers do not
            // change which prefix tokens fit).
            let fim = tok.fim_tokens().unwrap_or(FimTokens {
                prefix: 0,
                middle: 0,
                suffix: 0,
                pad: 0,
                file_sep: 0,
                eot: 0,
            });
            let budget = prompt_budget(n_ctx, cfg.max_new_tokens);
            let prompt = infill_prompt(tok, fim, &[], prefix, suffix, budget);
            let generator =
                Generator::from_ids(model, tok, prompt.prefix_ids, prefix, cfg, ask.options)?;
            (generator, prompt.truncated)
        }
    };
    if ask.kind == HoleKind::Block {
        // The block's opening brace is the last thing before the hole.
        generator.stop_when_closed("{");
    }
    if let Some(memory) = ask.memory {
        generator.use_memory(memory)?;
    }
    while generator.next_token().is_some() {
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }
    }
    let finish = generator.finish_reason().unwrap_or(FinishReason::MaxTokens);
    let mut middle = generator.text().to_string();
    if finish == FinishReason::Closed {
        // The `}` that closed the block belongs to the suffix.
        middle.pop();
    }
    Ok(Filled {
        middle,
        tokens: generator.generated_ids().len(),
        finish,
        truncated,
    })
}
