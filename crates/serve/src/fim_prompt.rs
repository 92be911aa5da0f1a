//! The prompt a completion request becomes: plain text to continue; the
//! hole between the prompt and a `suffix` (OpenAI's fill in the middle);
//! or FIM marker text, as editors' own templates write it (Continue's
//! `<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>`, Qwen's
//! `<|fim_prefix|>` spellings), whose markers become the special tokens.
//!
//! A marker prompt that describes a hole (prefix and suffix in either
//! order, with `<file_sep>` files before them or none) is filled as that
//! hole: prompted in the order every infill here is (suffix first), and
//! cut as an infill is when too long for the context (the prefix keeps its
//! end, the suffix its beginning) instead of refused.

use super::api::ApiError;
use cllm_data::fim::{ExtraChunk, FimTokens, encode_with_markers};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{GenerateError, Infill, InfillFit, Prompt};

/// `text` to continue, refused when longer than the context. Returns the
/// prompt and its token count.
pub fn plain(tok: &Tokenizer, n_ctx: usize, text: &str) -> Result<(Prompt, usize), ApiError> {
    let prompt = Prompt::text(tok, text).map_err(refused)?;
    fits(prompt, n_ctx)
}

/// A completion's prompt: see the module's note. `max_tokens` is the
/// room an infill leaves for its middle.
pub fn completion(
    tok: &Tokenizer,
    n_ctx: usize,
    text: &str,
    suffix: Option<String>,
    max_tokens: usize,
) -> Result<(Prompt, usize), ApiError> {
    let Some(fim) = tok.fim_tokens() else {
        return plain(tok, n_ctx, text);
    };
    if let Some(suffix) = suffix {
        let hole = Infill {
            prefix: text.to_string(),
            suffix,
            extra: Vec::new(),
        };
        return infill(tok, n_ctx, &hole, max_tokens).map(|(p, fit)| (p, fit.prompt_tokens));
    }
    let (ids, found) = encode_with_markers(tok, text);
    if !found {
        return plain(tok, n_ctx, text);
    }
    if let Some(hole) = marker_hole(tok, fim, &ids) {
        return infill(tok, n_ctx, &hole, max_tokens).map(|(p, fit)| (p, fit.prompt_tokens));
    }
    // The text after the last marker is what the reply follows.
    let after = ids
        .iter()
        .rposition(|&t| tok.is_special(t))
        .map_or(0, |i| i + 1);
    let text_before = tok.decode(&ids[after..]);
    let prompt = Prompt::encoded(tok, ids, &text_before).map_err(refused)?;
    fits(prompt, n_ctx)
}

/// A prefix too long for the context loses a multiple of this many tokens
/// from its beginning (see [`infill`]).
pub const PREFIX_CUT_STEP: usize = 16;

/// Tokens the stepped cut takes beyond what is needed, for the prefix's new
/// beginning to encode in a few more tokens than it did inside the text.
const CUT_SLACK: usize = 4;

/// The hole between `hole.prefix` and `hole.suffix`, cut to fit the context.
///
/// Editors send a prefix of hundreds of lines, more than a small model's
/// context; cut to fit exactly, its beginning would move with every
/// character typed at its end, and no request would share a beginning
/// with the one before (the prompt cache would never help). So a prefix
/// that must be cut loses a multiple of [`PREFIX_CUT_STEP`] tokens: its
/// beginning stays put while the text at the cursor grows by that much.
pub fn infill(
    tok: &Tokenizer,
    n_ctx: usize,
    hole: &Infill,
    max_tokens: usize,
) -> Result<(Prompt, InfillFit), ApiError> {
    let (prompt, fit) = Prompt::infill(tok, n_ctx, hole, max_tokens).map_err(refused)?;
    if !fit.truncated {
        return Ok((prompt, fit));
    }
    let ids = tok.encode(&hole.prefix);
    let dropped = ids.len() - fit.prefix_tokens;
    if dropped == 0 {
        // Only the suffix was cut.
        return Ok((prompt, fit));
    }
    let cut = (dropped + CUT_SLACK).div_ceil(PREFIX_CUT_STEP) * PREFIX_CUT_STEP;
    let bytes: usize = ids[..cut.min(ids.len())]
        .iter()
        .map(|&t| tok.token_bytes(t).len())
        .sum();
    let mut at = bytes.min(hole.prefix.len());
    while !hole.prefix.is_char_boundary(at) {
        at += 1;
    }
    let stepped = Infill {
        prefix: hole.prefix[at..].to_string(),
        ..hole.clone()
    };
    let (prompt, stepped_fit) =
        Prompt::infill(tok, n_ctx, &stepped, max_tokens).map_err(refused)?;
    Ok((
        prompt,
        InfillFit {
            truncated: true,
            ..stepped_fit
        },
    ))
}

fn fits(prompt: Prompt, n_ctx: usize) -> Result<(Prompt, usize), ApiError> {
    let n = prompt.ids().len();
    if n > n_ctx {
        return Err(ApiError::invalid(
            None,
            format!("the prompt is {n} tokens, longer than the model's context of {n_ctx} tokens"),
        )
        .with_code("context_length_exceeded"));
    }
    Ok((prompt, n))
}

fn refused(e: GenerateError) -> ApiError {
    ApiError::invalid(None, e.to_string())
}

/// The hole a marker prompt describes: `[<file_sep>name\ntext ...]`, then
/// `<fim_prefix> prefix <fim_suffix> suffix` or `<fim_suffix> suffix
/// <fim_prefix> prefix`, then `<fim_middle>`, with no other special token
/// anywhere; `None` for any other arrangement.
fn marker_hole(tok: &Tokenizer, fim: FimTokens, ids: &[u32]) -> Option<Infill> {
    let (&last, body) = ids.split_last()?;
    if last != fim.middle {
        return None;
    }
    let first = body
        .iter()
        .position(|&t| t == fim.prefix || t == fim.suffix)?;
    let second_marker = if body[first] == fim.prefix {
        fim.suffix
    } else {
        fim.prefix
    };
    let second = first + 1 + body[first + 1..].iter().position(|&t| t == second_marker)?;
    let (a, b) = (&body[first + 1..second], &body[second + 1..]);
    let (prefix, suffix) = if body[first] == fim.prefix {
        (a, b)
    } else {
        (b, a)
    };
    let plain = |ids: &[u32]| !ids.iter().any(|&t| tok.is_special(t));
    if !plain(prefix) || !plain(suffix) {
        return None;
    }
    let head = &body[..first];
    let mut extra = Vec::new();
    if let Some((&first, files)) = head.split_first() {
        if first != fim.file_sep {
            return None;
        }
        for file in files.split(|&t| t == fim.file_sep) {
            if !plain(file) {
                return None;
            }
            let text = tok.decode(file);
            let (filename, text) = text.split_once('\n').unwrap_or((&text, ""));
            extra.push(ExtraChunk {
                filename: filename.to_string(),
                text: text.to_string(),
            });
        }
    }
    Some(Infill {
        prefix: tok.decode(prefix),
        suffix: tok.decode(suffix),
        extra,
    })
}
