//! Fill-in-the-middle (Bavarian et al. 2022): the special tokens, the
//! training arrangement of a window, and the prompt an infill request
//! becomes.
//!
//! A training window's text is cut at two random character positions into
//! prefix, middle and suffix, each encoded on its own, and arranged as
//!
//! - PSM: `<fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle <|endoftext|>`
//! - SPM: `<fim_suffix> suffix <fim_prefix> prefix <fim_middle> middle <|endoftext|>`
//!
//! (SPM as llama.cpp's `--spm-infill` and llama-cpp-python's `spm_infill`
//! lay it out). The `<|endoftext|>` after the middle teaches the model where
//! a middle ends. An infill prompt is the SPM form up to `<fim_middle>`: the
//! middle then follows the end of the prefix, as text follows text left to
//! right, which a small model uses far better than a prefix seen across the
//! suffix (docs/infill.md has the measurement). Clients that send the PSM
//! form (Continue's default template) are understood too: the model trains
//! on both.

use crate::special_tokens::EOT;
pub use crate::special_tokens::{
    FILE_SEP, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SPECIALS, FIM_SUFFIX, FimTokens,
};
use crate::tokenizer::Tokenizer;
use cllm_core::rng::Rng;

/// Marker texts a prompt may carry in place of the special tokens (the
/// StarCoder names and the Qwen-style spellings editors also send).
const MARKER_TEXTS: [(&str, Marker); 12] = [
    (FIM_PREFIX, Marker::Prefix),
    (FIM_MIDDLE, Marker::Middle),
    (FIM_SUFFIX, Marker::Suffix),
    (FIM_PAD, Marker::Pad),
    (FILE_SEP, Marker::FileSep),
    (EOT, Marker::Eot),
    ("<|fim_prefix|>", Marker::Prefix),
    ("<|fim_middle|>", Marker::Middle),
    ("<|fim_suffix|>", Marker::Suffix),
    ("<|fim_pad|>", Marker::Pad),
    ("<|file_sep|>", Marker::FileSep),
    ("<|repo_name|>", Marker::FileSep),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Prefix,
    Middle,
    Suffix,
    Pad,
    FileSep,
    Eot,
}

/// The special token a marker stands for.
fn marker_id(fim: &FimTokens, marker: Marker) -> u32 {
    match marker {
        Marker::Prefix => fim.prefix,
        Marker::Middle => fim.middle,
        Marker::Suffix => fim.suffix,
        Marker::Pad => fim.pad,
        Marker::FileSep => fim.file_sep,
        Marker::Eot => fim.eot,
    }
}

/// Encodes `text`, turning FIM marker texts (`<fim_prefix>`,
/// `<|fim_suffix|>`, `<|endoftext|>`, ...) into the special tokens: how a
/// client that writes its own FIM template (Continue) is understood. Without
/// FIM tokens this is plain [`Tokenizer::encode`]. Returns the ids and
/// whether any marker was found.
///
/// A template that ends in `<fim_middle>` is laid out as the model was
/// trained: the prefix's current line moves after `<fim_middle>`.
pub fn encode_with_markers(tok: &Tokenizer, text: &str) -> (Vec<u32>, bool) {
    let Some(fim) = tok.fim_tokens() else {
        return (tok.encode(text), false);
    };
    // Each marker with the text that follows it, up to the next marker.
    let mut pieces: Vec<(Option<Marker>, &str)> = Vec::new();
    let mut rest = text;
    let mut marker = None;
    while let Some((at, next, len)) = first_marker(rest) {
        pieces.push((marker, &rest[..at]));
        marker = Some(next);
        rest = &rest[at + len..];
    }
    pieces.push((marker, rest));
    let found = pieces.len() > 1;
    let mut line = "";
    if let Some(&(Some(Marker::Middle), "")) = pieces.last()
        && let Some(piece) = pieces
            .iter_mut()
            .rev()
            .find(|(m, _)| *m == Some(Marker::Prefix))
    {
        let (head, current) = piece.1.split_at(current_line_start(piece.1));
        piece.1 = head;
        line = current;
    }
    if let Some(last) = pieces.last_mut()
        && !line.is_empty()
    {
        last.1 = line;
    }
    let mut ids = Vec::new();
    for (marker, piece) in pieces {
        ids.extend(marker.map(|m| marker_id(&fim, m)));
        ids.extend(tok.encode(piece));
    }
    (ids, found)
}

/// The earliest marker in `text`: (byte offset, which, its length).
fn first_marker(text: &str) -> Option<(usize, Marker, usize)> {
    MARKER_TEXTS
        .iter()
        .filter_map(|&(m, marker)| text.find(m).map(|at| (at, marker, m.len())))
        .min_by_key(|&(at, _, len)| (at, usize::MAX - len))
}

/// A file from elsewhere in the project given as context for an infill
/// (llama.cpp's `input_extra`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtraChunk {
    pub filename: String,
    pub text: String,
}

/// An infill prompt and what had to be cut to fit it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfillPrompt {
    pub ids: Vec<u32>,
    /// The prefix tokens kept (the end of the prefix), in document order:
    /// what the repository memory reads before the middle.
    pub prefix_ids: Vec<u32>,
    /// The suffix tokens kept (its beginning).
    pub suffix_ids: Vec<u32>,
    /// Whether the prefix or the suffix was cut to fit (extra chunks that do
    /// not fit are dropped without counting as truncation, as llama.cpp does).
    pub truncated: bool,
}

/// Builds `[extra chunks] <fim_suffix> suffix <fim_prefix> prefix <fim_middle>
/// line` (SPM, the prefix's current line after `<fim_middle>`, as llama.cpp
/// places an editor's `prompt`) in at most `budget` tokens. The end of the
/// prefix and the beginning of the suffix are what matter most: the prefix
/// gets three quarters of the budget and the suffix the rest, each giving what
/// it does not use to the other; the extra chunks (`<file_sep>filename\ntext`,
/// most recent last) fill what is left, whole chunks only, nearest the prefix.
pub fn infill_prompt(
    tok: &Tokenizer,
    fim: FimTokens,
    extra: &[ExtraChunk],
    prefix: &str,
    suffix: &str,
    budget: usize,
) -> InfillPrompt {
    let room = budget.saturating_sub(3);
    let (head, line) = prefix.split_at(current_line_start(prefix));
    let mut line_ids = tok.encode(line);
    line_ids.drain(..line_ids.len().saturating_sub(room));
    let mut prefix_ids = tok.encode(head);
    prefix_ids.extend_from_slice(&line_ids);
    let mut suffix_ids = tok.encode(suffix);
    let prefix_share = room - room / 4;
    let suffix_take = suffix_ids
        .len()
        .min(room - prefix_share.min(prefix_ids.len()));
    let prefix_take = prefix_ids.len().min(room - suffix_take);
    let truncated = prefix_take < prefix_ids.len() || suffix_take < suffix_ids.len();
    prefix_ids.drain(..prefix_ids.len() - prefix_take);
    suffix_ids.truncate(suffix_take);
    let mut left = room - prefix_take - suffix_take;
    let mut context: Vec<Vec<u32>> = Vec::new();
    for chunk in extra.iter().rev() {
        let mut ids = vec![fim.file_sep];
        ids.extend(tok.encode(&format!("{}\n{}", chunk.filename, chunk.text)));
        if ids.len() > left {
            break;
        }
        left -= ids.len();
        context.push(ids);
    }
    let mut ids: Vec<u32> = context.into_iter().rev().flatten().collect();
    ids.push(fim.suffix);
    ids.extend_from_slice(&suffix_ids);
    ids.push(fim.prefix);
    let head_kept = prefix_ids.len() - line_ids.len().min(prefix_ids.len());
    ids.extend_from_slice(&prefix_ids[..head_kept]);
    ids.push(fim.middle);
    ids.extend_from_slice(&prefix_ids[head_kept..]);
    InfillPrompt {
        ids,
        prefix_ids,
        suffix_ids,
        truncated,
    }
}

/// Where the line the prefix ends in begins: after its last newline.
fn current_line_start(prefix: &str) -> usize {
    prefix.rfind('\n').map_or(0, |i| i + 1)
}

/// Share of rearranged windows whose prefix gives its current line to the
/// middle: `<fim_middle>` then follows a line start, so the middle's first
/// token continues the text it touches (a middle that starts mid-word after
/// `<fim_middle>` is a token boundary the model cannot see). The rest keep
/// the whole prefix before `<fim_middle>`, the layout Ollama's template and
/// llama-cpp-python build.
pub const LINE_AFTER_MIDDLE_RATE: f32 = 0.9;

/// Share of rearranged windows whose middle is the rest of a line (from a
/// random character to the line's end), the hole an editor makes most.
pub const REST_OF_LINE_RATE: f32 = 0.25;

/// Share of rearranged windows whose middle runs from a line's end to a
/// later line's first non-blank character, as a block's body runs between
/// its braces. The other windows are cut at two random characters, which
/// rarely makes either shape (one cut in a line's length lands on its end),
/// so a model trained on those alone barely learns to end a middle where a
/// line ends.
pub const WHOLE_LINES_RATE: f32 = 0.25;

/// The hole `[a, b)` of `text` in the shape `draw` (uniform in [0, 1))
/// picks: the rest of `a`'s line, whole lines from `a`'s line end to the
/// indentation's end of `b`'s line, or the cut as drawn. A shaped hole
/// holds more than blanks, or the cut as drawn is taken: a middle of
/// blanks would teach the model to end at once where a line or a block is
/// still to be written.
fn hole_shape(text: &str, a: usize, b: usize, draw: f32) -> (usize, usize) {
    let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i);
    let written = |(start, end): (usize, usize)| end > start && !text[start..end].trim().is_empty();
    let shaped = if draw < REST_OF_LINE_RATE {
        (a, line_end(a))
    } else if draw < REST_OF_LINE_RATE + WHOLE_LINES_RATE {
        let b_line = current_line_start(&text[..b]);
        let indent = text[b_line..].len() - text[b_line..].trim_start_matches([' ', '\t']).len();
        (line_end(a), b_line + indent)
    } else {
        return (a, b);
    };
    if written(shaped) { shaped } else { (a, b) }
}

/// How training windows become fill-in-the-middle examples.
#[derive(Clone, Debug)]
pub struct FimTraining {
    /// Share of windows rearranged (the rest are trained left to right).
    pub rate: f32,
    /// Share of the rearranged windows in SPM order (the rest PSM).
    pub spm_rate: f32,
    tokens: FimTokens,
    tokenizer: Tokenizer,
}

impl FimTraining {
    /// `None` when the tokenizer has no FIM tokens or the rate is 0.
    pub fn new(tokenizer: &Tokenizer, rate: f32) -> Option<FimTraining> {
        let tokens = tokenizer.fim_tokens()?;
        (rate > 0.0).then(|| FimTraining {
            rate: rate.min(1.0),
            spm_rate: 0.5,
            tokens,
            tokenizer: tokenizer.clone(),
        })
    }

    pub fn tokens(&self) -> FimTokens {
        self.tokens
    }

    /// Rearranges `window` (the `seq_len + 1` tokens of one training
    /// sequence) in place with probability `rate`, drawing every choice
    /// from `rng`; the length stays the same. Of several documents in the
    /// window (split at `<|endoftext|>`), the longest is rearranged and the
    /// others kept. Returns whether the window was rearranged.
    ///
    /// Only a random first part of that document (at least half of it) is
    /// cut into prefix, middle and suffix; its remaining tokens follow the
    /// middle's `<|endoftext|>` as they were. So the end of a middle falls
    /// anywhere in the second half of the window: were it always the
    /// window's last position, a model would learn to end a middle there
    /// (where the context is full) rather than where it meets the suffix.
    /// The prefix's current line goes after `<fim_middle>`, before the
    /// middle, in [`LINE_AFTER_MIDDLE_RATE`] of the rearranged windows; the
    /// hole's shapes and their shares are [`REST_OF_LINE_RATE`] and
    /// [`WHOLE_LINES_RATE`].
    pub fn apply(&self, window: &mut [u32], rng: &mut Rng) -> bool {
        if rng.next_f32() >= self.rate {
            return false;
        }
        let spm = rng.next_f32() < self.spm_rate;
        let (start, end) = longest_document(window, self.tokens.eot);
        let len = end - start;
        let span = len.div_ceil(2) + rng.below((len / 2 + 1) as u64) as usize;
        let split = start + span.min(len);
        let text = self.tokenizer.decode(&window[start..split]);
        // Character boundaries, both ends included: a cut may leave the
        // prefix, the middle or the suffix empty.
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        if bounds.len() < 2 {
            return false;
        }
        let a = bounds[rng.below(bounds.len() as u64) as usize];
        let b = bounds[rng.below(bounds.len() as u64) as usize];
        let (a, b) = hole_shape(&text, a.min(b), a.max(b), rng.next_f32());
        let t = &self.tokens;
        let line_start = match rng.next_f32() < LINE_AFTER_MIDDLE_RATE {
            true => current_line_start(&text[..a]),
            false => a,
        };
        let prefix = self.tokenizer.encode(&text[..line_start]);
        // The line and the middle are encoded apart, as a prompt's line is.
        let mut middle = self.tokenizer.encode(&text[line_start..a]);
        middle.extend(self.tokenizer.encode(&text[a..b]));
        let mut suffix = self.tokenizer.encode(&text[b..]);
        let mut rest = window[split..end].to_vec();
        let fixed = window.len() - len;
        let arranged_len = prefix.len() + middle.len() + suffix.len() + 4;
        // Too long: the document's remaining tokens lose their end first,
        // then the suffix its far end (the part farthest from the hole);
        // anything still over is cut from the end.
        let mut over = (fixed + arranged_len + rest.len()).saturating_sub(window.len());
        let cut = over.min(rest.len());
        rest.truncate(rest.len() - cut);
        over -= cut;
        suffix.truncate(suffix.len().saturating_sub(over));
        let mut arranged = Vec::with_capacity(arranged_len + rest.len());
        if spm {
            arranged.push(t.suffix);
            arranged.extend(&suffix);
            arranged.push(t.prefix);
            arranged.extend(&prefix);
            arranged.push(t.middle);
        } else {
            arranged.push(t.prefix);
            arranged.extend(&prefix);
            arranged.push(t.suffix);
            arranged.extend(&suffix);
            arranged.push(t.middle);
        }
        arranged.extend(&middle);
        arranged.push(t.eot);
        arranged.extend(&rest);
        let mut out = Vec::with_capacity(window.len() + arranged.len());
        out.extend_from_slice(&window[..start]);
        out.extend(arranged);
        out.extend_from_slice(&window[end..]);
        out.resize(window.len(), t.pad);
        window.copy_from_slice(&out);
        true
    }
}

/// The longest run of `window` without `eot`: (start, end).
fn longest_document(window: &[u32], eot: u32) -> (usize, usize) {
    let mut best = (0, 0);
    let mut start = 0;
    for (i, &id) in window.iter().enumerate().chain([(window.len(), &eot)]) {
        if id == eot {
            if i - start > best.1 - best.0 {
                best = (start, i);
            }
            start = i + 1;
        }
    }
    best
}
