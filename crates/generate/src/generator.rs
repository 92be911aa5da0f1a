//! [`Generator`]: one reply, token by token, over a key/value cache.
//!
//! `Generator::new` encodes the prompt and runs it through the cache (the
//! prefill); each [`Generator::next_token`] samples one token, hands back
//! the text it makes displayable, and advances the cache by that token.
//!
//! Text pieces are always valid UTF-8: bytes of a character split across
//! tokens wait until the character is complete. Text that could be the
//! beginning of a stop string is also held back until it is clear either
//! way, so a stop string never reaches the screen. The last piece of a
//! reply flushes whatever is held.
//!
//! Sliding window: the cache holds n_ctx positions. When it is full, the
//! generator keeps the most recent n_ctx / 2 tokens, clears the cache and
//! prefills them again (positions restart at 0), then carries on
//! incrementally. Halving keeps the re-prefill to once every n_ctx / 2
//! tokens while the model still sees at least half a context of history.

use super::braces::CloseWatch;
use super::bracket_guard::BracketGuard;
use super::decoder::{DecodeOptions, Decoder};
use super::line_guard::{LineFault, LineGuard, RETRIES_PER_LINE, RETRIES_PER_REPLY};
use super::sampling::{self, SamplingConfig};
use cllm_core::rng::Rng;
use cllm_core::{Gpt, KvCache};
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::{Memory, MemorySession};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How many alternatives each token reports.
pub const TOP_ALTERNATIVES: usize = 5;

/// One generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    /// Text this token made displayable: may be empty (part of a character,
    /// or a possible stop string, held back) or carry earlier held text.
    pub text_piece: String,
    /// The model's probability of this token (softmax of its logits at
    /// temperature 1, before penalties and truncation): for shading.
    pub prob: f32,
    /// The most probable tokens at this step, same probabilities, most
    /// probable first: (text of the token, lossily decoded; probability).
    pub top_alternatives: Vec<(String, f32)>,
}

/// Why a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    MaxTokens,
    StopString,
    /// The model produced `<|endoftext|>`.
    EndOfText,
    Cancelled,
    /// The braces the prompt opened closed again (only with
    /// [`Generator::stop_when_closed`]).
    Closed,
}

/// Counts and speed of one reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Prompt tokens the model saw (after cutting a long prompt to n_ctx).
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Time of the prompt's forward pass (and, decoding in bf16, of
    /// rounding the weights to bf16).
    pub prefill_secs: f64,
    /// Time from the end of the prefill to the last token.
    pub generate_secs: f64,
    /// generated_tokens / generate_secs.
    pub tokens_per_sec: f64,
    /// `None` while the reply is still going.
    pub finish: Option<FinishReason>,
    /// Lines the line guard took back and sampled again (their tokens are
    /// not counted in `generated_tokens`).
    #[serde(default)]
    pub rewritten_lines: usize,
}

/// Generation mixes the repository memory in only where it matches at
/// least this many tokens. Measured on SQLite (`small`, 30 minutes; 40
/// function openings of `sqlite_c.val.txt` × 2 samples): syntax accuracy
/// 16% mixing everywhere, 32% from 12 tokens, 40% from 24, 42% without the
/// memory. Short matches make sampling jump between unrelated places of
/// the training text; long ones copy whole idioms and identifiers.
pub const GENERATION_MIN_MATCH: usize = 24;

pub struct Generator<'a> {
    model: &'a Gpt,
    tok: &'a Tokenizer,
    cfg: SamplingConfig,
    cache: KvCache,
    /// Runs each new token through the cache (threads, precision).
    decoder: Decoder,
    /// The tokens in the cache: what the model currently sees.
    context: Vec<u32>,
    /// (V) logits predicting the next token.
    logits: Vec<f32>,
    rng: Rng,
    generated_ids: Vec<u32>,
    /// Bytes of an incomplete UTF-8 character.
    pending_bytes: Vec<u8>,
    /// The reply's text so far (cut before a stop string once one is seen).
    text: String,
    /// Bytes of `text` already handed out in pieces.
    emitted: usize,
    finish: Option<FinishReason>,
    cancel: Arc<AtomicBool>,
    prompt_tokens: usize,
    prefill_secs: f64,
    started: Instant,
    /// Set when the reply finishes, so the speed stops changing.
    generate_secs: Option<f64>,
    /// Ends the reply when the prompt's braces close (code evaluation).
    close_watch: Option<CloseWatch>,
    /// The repository memory reading the prompt and the reply: its mix
    /// replaces the model's distribution before sampling.
    memory: Option<MemorySession<'a>>,
    /// The prompt's tokens, all of them (the model sees the last n_ctx).
    full_prompt: Vec<u32>,
    /// With [`SamplingConfig::balanced_brackets`]: the brackets so far.
    brackets: Option<Brackets>,
    /// With [`SamplingConfig::line_guard`]: the line being written and where
    /// it began.
    lines: Option<Lines>,
    /// Times the context window slid (a line taken back across a slide
    /// needs a new prefill).
    slides: usize,
}

/// The reply as it was after the last token that ended a line: what going
/// back to that line's start restores.
struct LineStart {
    generated: usize,
    text_len: usize,
    pending_bytes: Vec<u8>,
    logits: Vec<f32>,
    slides: usize,
    brackets: Option<BracketGuard>,
    close_watch: Option<CloseWatch>,
    guard: LineGuard,
}

/// The line guard, the start of the line it watches, and the tokens it
/// refuses there.
struct Lines {
    /// The guard after everything sampled so far.
    guard: LineGuard,
    start: LineStart,
    /// `(tokens since the line's start, token)`: refused after exactly
    /// those tokens. A line rejected as a repeat refuses the token its text
    /// began with, so that the next attempt takes another way.
    refused: Vec<(Vec<u32>, u32)>,
    line_retries: usize,
    /// Lines taken back in this reply.
    reply_retries: usize,
}

/// The bracket guard and what it needs to judge every token.
struct Brackets {
    guard: BracketGuard,
    /// `vocab[id]`: the token's bytes (empty past the tokenizer's vocabulary).
    vocab: Vec<Vec<u8>>,
    eot: Option<u32>,
}

impl Brackets {
    fn new(tok: &Tokenizer, vocab_size: usize, prompt: &str) -> Brackets {
        let known = tok.vocab_size();
        Brackets {
            guard: BracketGuard::after_prompt(prompt),
            vocab: (0..vocab_size as u32)
                .map(|id| {
                    if (id as usize) < known {
                        tok.token_bytes(id)
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
            eot: tok.eot_id(),
        }
    }
}

impl<'a> Generator<'a> {
    /// Encodes `prompt`, checks it against the model, and runs the prefill.
    /// An empty prompt starts from `<|endoftext|>` (an error with a
    /// tokenizer that has none). A prompt longer than the context keeps its
    /// last n_ctx tokens.
    pub fn new(
        model: &'a Gpt,
        tok: &'a Tokenizer,
        prompt: &str,
        cfg: SamplingConfig,
    ) -> Result<Generator<'a>, String> {
        Generator::with_options(model, tok, prompt, cfg, DecodeOptions::default())
    }

    /// As [`Generator::new`], decoding with `options`: the threads each
    /// token's products are split between (they stay up for the reply;
    /// the reply is the same bit for bit at any count) and the weights'
    /// precision. The prompt's prefill is the same in every case.
    pub fn with_options(
        model: &'a Gpt,
        tok: &'a Tokenizer,
        prompt: &str,
        cfg: SamplingConfig,
        options: DecodeOptions,
    ) -> Result<Generator<'a>, String> {
        cfg.validate()?;
        let vocab = model.config.vocab_size;
        if tok.vocab_size() > vocab {
            return Err(format!(
                "the tokenizer has {} tokens but the model only {vocab}: they do not belong together",
                tok.vocab_size()
            ));
        }
        let mut ids = tok.encode(prompt);
        if ids.is_empty() {
            match tok.eot_id() {
                Some(eot) => ids.push(eot),
                None => return Err("the prompt is empty: type something to continue".into()),
            }
        }
        let n_ctx = model.config.n_ctx;
        // The memory reads the whole prompt, the model its last n_ctx tokens.
        let mut full_prompt = Vec::new();
        if ids.len() > n_ctx {
            full_prompt = ids.clone();
            ids.drain(..ids.len() - n_ctx);
        }
        let start = Instant::now();
        let mut cache = KvCache::new(&model.config);
        let logits = cache.append(model, &ids)?.to_vec();
        // Rounding the weights to bf16 (when decoding in bf16) belongs to
        // the wait before the first token, not to the reply's speed.
        let mut decoder = Decoder::new(options);
        decoder.prepare(model);
        let prefill_secs = start.elapsed().as_secs_f64();
        let rng = Rng::new(cfg.seed);
        let brackets = cfg
            .balanced_brackets
            .then(|| Brackets::new(tok, vocab, prompt));
        let close_watch = cfg
            .stop_when_closed
            .then(|| CloseWatch::after_prompt(prompt));
        let line_guard = cfg.line_guard;
        let mut generator = Generator {
            model,
            tok,
            cfg,
            cache,
            decoder,
            prompt_tokens: ids.len(),
            full_prompt: if full_prompt.is_empty() {
                ids.clone()
            } else {
                full_prompt
            },
            context: ids,
            logits,
            rng,
            generated_ids: Vec::new(),
            pending_bytes: Vec::new(),
            text: String::new(),
            emitted: 0,
            finish: None,
            cancel: Arc::new(AtomicBool::new(false)),
            prefill_secs,
            started: Instant::now(),
            generate_secs: None,
            close_watch,
            memory: None,
            brackets,
            lines: None,
            slides: 0,
        };
        if line_guard {
            let guard = LineGuard::after_prompt(prompt);
            generator.lines = Some(Lines {
                start: generator.line_start(guard.clone()),
                guard,
                refused: Vec::new(),
                line_retries: 0,
                reply_retries: 0,
            });
        }
        Ok(generator)
    }

    /// The next token, or `None` once the reply has finished (see
    /// [`Generator::finish_reason`]).
    pub fn next_token(&mut self) -> Option<GeneratedToken> {
        loop {
            if let Some(token) = self.try_next_token() {
                return token;
            }
        }
    }

    /// One attempt at [`Generator::next_token`]: `None` when the line guard
    /// took the line back and the token must be sampled again.
    fn try_next_token(&mut self) -> Option<Option<GeneratedToken>> {
        if self.finish.is_some() {
            return Some(None);
        }
        if self.cancel.load(Ordering::Relaxed) {
            self.end(FinishReason::Cancelled);
            return Some(None);
        }
        if self.generated_ids.len() >= self.cfg.max_new_tokens {
            self.end(FinishReason::MaxTokens);
            return Some(None);
        }
        let mut probs = sampling::softmax(&self.logits, 1.0);
        // Sampling (temperature, top-k/p, repetition penalty) works on the
        // memory's mix where it mixed (see `mix_scores`) as it does on the
        // logits, with the tokens the bracket guard refuses at −∞.
        let mut scores = Cow::Borrowed(&self.logits[..]);
        if let Some(session) = self.memory.as_mut()
            && session.mix_into_from(&mut probs, GENERATION_MIN_MATCH)
        {
            scores = Cow::Owned(mix_scores(&probs, &self.logits));
        }
        if let Some(b) = &self.brackets {
            b.guard.mask(&b.vocab, b.eot, scores.to_mut());
        }
        if let Some(lines) = &self.lines {
            let since = &self.generated_ids[lines.start.generated..];
            for (after, id) in &lines.refused {
                if after[..] == *since {
                    refuse(scores.to_mut(), *id);
                }
            }
        }
        let id = sampling::sample_next(&scores, &self.context, &self.cfg, &mut self.rng);
        if let Some(b) = self.brackets.as_mut() {
            b.guard.feed(&b.vocab[id as usize]);
        }
        if let Some(session) = self.memory.as_mut() {
            session.push(id);
        }
        let top_alternatives = top_n(&probs, TOP_ALTERNATIVES)
            .into_iter()
            .map(|(i, p)| {
                (
                    String::from_utf8_lossy(&self.tok.token_bytes(i)).into_owned(),
                    p,
                )
            })
            .collect();
        let prob = probs[id as usize];
        self.generated_ids.push(id);

        // Whether this token ended a line (the line guard's start moves).
        let mut ended_line = false;
        let text_piece = if Some(id) == self.tok.eot_id() {
            self.end(FinishReason::EndOfText);
            self.flush_all()
        } else {
            self.pending_bytes.extend(self.tok.token_bytes(id));
            let before = self.text.len();
            drain_utf8(&mut self.pending_bytes, &mut self.text);
            ended_line = self.text[before..].contains('\n');
            if let Some(fault) = self.judge_line(before)
                && self.take_line_back(fault)
            {
                return None;
            }
            let stop = self.find_stop();
            let text = &self.text;
            let closed = self
                .close_watch
                .as_mut()
                .and_then(|w| w.feed_reply(text, stop.unwrap_or(text.len())));
            if let Some(at) = closed {
                self.text.truncate(at);
                self.pending_bytes.clear();
                self.end(FinishReason::Closed);
                self.take_piece(self.text.len())
            } else if let Some(at) = stop {
                self.text.truncate(at);
                self.pending_bytes.clear();
                self.end(FinishReason::StopString);
                self.take_piece(self.text.len())
            } else if self.generated_ids.len() >= self.cfg.max_new_tokens {
                self.end(FinishReason::MaxTokens);
                self.flush_all()
            } else {
                let hold = self.stop_prefix_len();
                // The line being written may still be taken back.
                let line_start = match &self.lines {
                    Some(lines) if !ended_line => lines.start.text_len,
                    _ => self.text.len(),
                };
                self.take_piece((self.text.len() - hold).min(line_start).max(self.emitted))
            }
        };
        if self.finish.is_none() {
            self.advance(id);
            if ended_line {
                self.mark_line_start();
            }
        }
        Some(Some(GeneratedToken {
            id,
            text_piece,
            prob,
            top_alternatives,
        }))
    }

    /// With the line guard: reads the text from byte `from` on, and the
    /// fault of the line it ends or makes too long, if any.
    fn judge_line(&mut self, from: usize) -> Option<LineFault> {
        let lines = self.lines.as_mut()?;
        let fault = lines.guard.feed(&self.text[from..]);
        if fault.is_some() {
            // The guard stopped at the fault: read the line again, unjudged,
            // for when it stands.
            lines.guard = lines.start.guard.clone();
            lines
                .guard
                .feed_unjudged(&self.text[lines.start.text_len..]);
        }
        fault
    }

    /// Goes back to the start of the line the guard found `fault` in, so
    /// that it is sampled again; false (the line stands) once the line or
    /// the reply has used its attempts.
    fn take_line_back(&mut self, fault: LineFault) -> bool {
        let Some(mut lines) = self.lines.take() else {
            return false;
        };
        if lines.line_retries >= RETRIES_PER_LINE || lines.reply_retries >= RETRIES_PER_REPLY {
            self.lines = Some(lines);
            return false;
        }
        let start = &lines.start;
        // The newest token is not in the context yet.
        let taken = self.generated_ids.len() - start.generated - 1;
        lines.line_retries += 1;
        lines.reply_retries += 1;
        let line = &self.generated_ids[start.generated..];
        if fault == LineFault::Repeats {
            let first_solid = line.iter().position(|&t| {
                self.tok
                    .token_bytes(t)
                    .iter()
                    .any(|b| !b.is_ascii_whitespace())
            });
            if let Some(at) = first_solid {
                lines.refused.push((line[..at].to_vec(), line[at]));
            }
        }
        self.generated_ids.truncate(start.generated);
        self.text.truncate(start.text_len);
        self.pending_bytes.clone_from(&start.pending_bytes);
        if self.slides == start.slides {
            // Everything since the line's start is in the cache's last rows.
            self.context.truncate(self.context.len() - taken);
            self.cache.truncate(self.cache.len() - taken);
            self.logits.copy_from_slice(&start.logits);
        } else {
            // The window slid since: see the last half-window of the prompt
            // and the kept reply, as a slide there would have left it.
            let keep = (self.cache.capacity() / 2).max(1);
            let mut seen = self.full_prompt.clone();
            seen.extend_from_slice(&self.generated_ids);
            self.context = seen.split_off(seen.len().saturating_sub(keep));
            self.cache.clear();
            match self.cache.append(self.model, &self.context) {
                Ok(logits) => self.logits.copy_from_slice(logits),
                Err(_) => self.end(FinishReason::MaxTokens),
            }
        }
        if let (Some(b), Some(saved)) = (self.brackets.as_mut(), &start.brackets) {
            b.guard = saved.clone();
        }
        self.close_watch.clone_from(&start.close_watch);
        if let Some(session) = self.memory.as_mut() {
            session.truncate(self.full_prompt.len() + start.generated);
        }
        lines.guard = start.guard.clone();
        self.lines = Some(lines);
        true
    }

    /// With the line guard: after a token that ended a line, the reply as
    /// it now is becomes the start to go back to.
    fn mark_line_start(&mut self) {
        let Some(mut lines) = self.lines.take() else {
            return;
        };
        lines.start = self.line_start(lines.guard.clone());
        lines.refused.clear();
        lines.line_retries = 0;
        self.lines = Some(lines);
    }

    /// The reply as it is now, with the line guard's state `guard`.
    fn line_start(&self, guard: LineGuard) -> LineStart {
        LineStart {
            generated: self.generated_ids.len(),
            text_len: self.text.len(),
            pending_bytes: self.pending_bytes.clone(),
            logits: self.logits.clone(),
            slides: self.slides,
            brackets: self.brackets.as_ref().map(|b| b.guard.clone()),
            close_watch: self.close_watch.clone(),
            guard,
        }
    }

    /// Runs the new token through the cache, sliding the window when full.
    fn advance(&mut self, id: u32) {
        self.context.push(id);
        let result = if self.cache.remaining() == 0 {
            let keep = (self.cache.capacity() / 2).max(1);
            self.context.drain(..self.context.len() - keep);
            self.slides += 1;
            self.cache.clear();
            self.cache
                .append(self.model, &self.context)
                .map_err(String::from)
        } else {
            self.decoder.step(self.model, &mut self.cache, id)
        };
        // Sampled ids are below the vocabulary and the window fits, so the
        // cache cannot refuse; should it, the reply ends instead of looping.
        match result {
            Ok(logits) => self.logits.copy_from_slice(logits),
            Err(_) => self.end(FinishReason::MaxTokens),
        }
    }

    /// Byte offset in `text` of the first stop string in the part not yet
    /// handed out (held-back text guarantees none starts earlier).
    fn find_stop(&self) -> Option<usize> {
        let tail = &self.text[self.emitted..];
        self.cfg
            .stop
            .iter()
            .filter_map(|s| tail.find(s.as_str()))
            .min()
            .map(|i| self.emitted + i)
    }

    /// Length of the longest end of the unsent text that begins some stop
    /// string (and so must wait for the next token).
    fn stop_prefix_len(&self) -> usize {
        let tail = &self.text[self.emitted..];
        let mut hold = 0;
        for stop in &self.cfg.stop {
            for (i, _) in tail.char_indices() {
                let end = &tail[i..];
                if end.len() <= hold {
                    break;
                }
                if stop.starts_with(end) {
                    hold = end.len();
                    break;
                }
            }
        }
        hold
    }

    fn take_piece(&mut self, upto: usize) -> String {
        let piece = self.text[self.emitted..upto].to_string();
        self.emitted = upto;
        piece
    }

    /// Everything held back, an incomplete character decoded as U+FFFD.
    fn flush_all(&mut self) -> String {
        if !self.pending_bytes.is_empty() {
            self.text
                .push_str(&String::from_utf8_lossy(&self.pending_bytes));
            self.pending_bytes.clear();
        }
        self.take_piece(self.text.len())
    }

    fn end(&mut self, reason: FinishReason) {
        if self.finish.is_none() {
            self.finish = Some(reason);
            self.generate_secs = Some(self.started.elapsed().as_secs_f64());
        }
    }

    /// Ends the reply with [`FinishReason::Closed`] right after the `}`
    /// that closes the braces `prompt` (the prompt given to
    /// [`Generator::new`]) left open, or, when it left none open, the first
    /// block the reply opens; braces in comments and literals do not count
    /// (see [`CloseWatch`]). The text is cut after that `}`. A stop string
    /// earlier in the text still wins.
    pub fn stop_when_closed(&mut self, prompt: &str) {
        self.close_watch = Some(CloseWatch::after_prompt(prompt));
    }

    /// Mixes `memory` (the repository memory saved with the model) into
    /// every next-token distribution from here on; it first reads the
    /// whole prompt and what was generated so far. Refused when its vocabulary is not the
    /// model's.
    pub fn use_memory(&mut self, memory: &'a Memory) -> Result<(), String> {
        if memory.vocab_size() != self.model.config.vocab_size {
            return Err(format!(
                "the memory's vocabulary has {} tokens, the model's {}: they do not belong together",
                memory.vocab_size(),
                self.model.config.vocab_size
            ));
        }
        let mut session = memory.session();
        for &t in &self.full_prompt {
            session.push(t);
        }
        // The cache copies from the prompt, never from the reply itself.
        session.stop_learning();
        for &t in &self.generated_ids {
            session.push(t);
        }
        self.memory = Some(session);
        Ok(())
    }

    /// Whether a memory is mixed in.
    pub fn has_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Asks the reply to stop: the next `next_token` returns `None`.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The flag [`Generator::cancel`] sets, to stop it from another thread.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }

    /// Uses `flag` as the cancel flag (shared with a front end).
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = flag;
    }

    /// The reply's text so far (without a stop string or `<|endoftext|>`;
    /// includes text still held back from the pieces).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn generated_ids(&self) -> &[u32] {
        &self.generated_ids
    }

    /// The tokens the model currently sees (prompt and reply, cut to the
    /// sliding window).
    pub fn context_tokens(&self) -> &[u32] {
        &self.context
    }

    /// The decoder's threads and its precision (`Fp32` or `Bf16`).
    pub fn decoding(&self) -> (usize, super::decoder::Precision) {
        (self.decoder.threads(), self.decoder.precision())
    }

    /// (V) logits for the next token, as the cache computed them.
    pub fn next_logits(&self) -> &[f32] {
        &self.logits
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    pub fn config(&self) -> &SamplingConfig {
        &self.cfg
    }

    pub fn stats(&self) -> GenerationStats {
        let generate_secs = self
            .generate_secs
            .unwrap_or_else(|| self.started.elapsed().as_secs_f64());
        let n = self.generated_ids.len();
        GenerationStats {
            prompt_tokens: self.prompt_tokens,
            generated_tokens: n,
            prefill_secs: self.prefill_secs,
            generate_secs,
            tokens_per_sec: if generate_secs > 0.0 {
                n as f64 / generate_secs
            } else {
                0.0
            },
            finish: self.finish,
            rewritten_lines: self.lines.as_ref().map_or(0, |l| l.reply_retries),
        }
    }
}

/// Sets `id`'s score to −∞ unless no other token would be left.
fn refuse(scores: &mut [f32], id: u32) {
    let others = scores
        .iter()
        .enumerate()
        .any(|(i, &s)| i != id as usize && s > f32::NEG_INFINITY);
    if others && let Some(s) = scores.get_mut(id as usize) {
        *s = f32::NEG_INFINITY;
    }
}

/// Sampling scores for the memory's mix `probs`: its log-probabilities
/// shifted by the log-normaliser of the model's `logits`, so that a token
/// the mix leaves at the model's probability keeps its logit. The
/// repetition penalty divides positive scores and multiplies negative ones,
/// so it only acts alike with and without the memory on this scale; on
/// bare log-probabilities (all negative) it barely touches a confident
/// token, and a reply with the memory fell into loops more often.
fn mix_scores(probs: &[f32], logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let shift = max + sum.ln() as f32;
    probs.iter().map(|&p| p.max(1e-30).ln() + shift).collect()
}

/// Moves the longest valid UTF-8 start of `pending` into `out`; bytes that
/// can never be valid become U+FFFD, an incomplete last character stays.
fn drain_utf8(pending: &mut Vec<u8>, out: &mut String) {
    loop {
        match std::str::from_utf8(pending) {
            Ok(s) => {
                out.push_str(s);
                pending.clear();
                return;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // The prefix was just checked to be valid UTF-8.
                out.push_str(std::str::from_utf8(&pending[..valid]).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        pending.drain(..valid + bad);
                    }
                    None => {
                        pending.drain(..valid);
                        return;
                    }
                }
            }
        }
    }
}

/// The n largest probabilities with their ids, largest first (ties by id).
fn top_n(probs: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    for (i, &p) in probs.iter().enumerate() {
        if best.len() == n && best.last().is_some_and(|&(_, q)| p <= q) {
            continue;
        }
        let at = best.partition_point(|&(_, q)| q >= p);
        best.insert(at, (i as u32, p));
        best.truncate(n);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_scores_of_an_unchanged_distribution_are_the_logits() {
        let logits = [3.0f32, -1.5, 0.25, 7.0, -20.0];
        let probs = sampling::softmax(&logits, 1.0);
        let scores = mix_scores(&probs, &logits);
        for (s, l) in scores.iter().zip(&logits) {
            assert!((s - l).abs() < 1e-4, "{s} vs {l}");
        }
        // A token the mix makes 4 times as likely gains ln 4 (before the
        // renormalisation that sampling's softmax does anyway).
        let mut mixed = probs.clone();
        mixed[1] *= 4.0;
        let scores = mix_scores(&mixed, &logits);
        assert!((scores[1] - (logits[1] + 4f32.ln())).abs() < 1e-4);
    }

    #[test]
    fn drain_utf8_waits_for_split_characters() {
        let bytes = "aé€".as_bytes();
        let mut pending = Vec::new();
        let mut out = String::new();
        for &b in bytes {
            pending.push(b);
            drain_utf8(&mut pending, &mut out);
            assert!(bytes.starts_with(out.as_bytes()));
        }
        assert_eq!(out, "aé€");
        assert!(pending.is_empty());
        pending.extend_from_slice(&[0xff, b'x']);
        drain_utf8(&mut pending, &mut out);
        assert_eq!(out, "aé€\u{fffd}x");
    }

    #[test]
    fn top_n_orders_by_probability_then_id() {
        let probs = [0.1, 0.4, 0.1, 0.3, 0.1];
        assert_eq!(top_n(&probs, 3), vec![(1, 0.4), (3, 0.3), (0, 0.1)]);
    }
}
