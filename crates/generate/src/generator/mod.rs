//! [`Generator`]: one reply, token by token, over a key/value cache.
//!
//! [`Generator::from_prompt`] (which `Generator::new` and the other
//! constructors call) runs the prompt through the cache in chunks of
//! [`prefill_chunk`] rows (the prefill), or takes the rows of a beginning
//! it shares with a cached prompt; each [`Generator::next_token`] samples
//! one token, hands back the text it makes displayable, and advances the
//! cache by that token.
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
//!
//! Beside this file: `prompt` (what a reply starts from), `prompt_cache`
//! (prompts kept prefilled between replies), `infill` (the constructors of
//! a middle), `text_pieces` (what is held back and handed out),
//! `line_retry` (the line guard taking a line back) and `scores` (refused
//! tokens, the memory's mix, the alternatives).

use super::braces::CloseWatch;
use super::bracket_guard::BracketGuard;
use super::decoder::{DecodeOptions, Decoder};
use super::error::GenerateError;
use super::line_guard::LineGuard;
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

mod infill;
mod line_retry;
mod prompt;
mod prompt_cache;
mod scores;
mod text_pieces;

use line_retry::Lines;
use scores::{mix_scores, refuse, top_n};
use text_pieces::drain_utf8;

pub use prompt::{Infill, InfillFit, Prompt, prompt_budget};
pub use prompt_cache::{CachedPrompt, PREFILL_CHUNK, PromptCache, prefill_chunk};

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
/// least this many tokens: mixing at short matches makes sampling jump
/// between unrelated places of the training text, which costs more syntax
/// accuracy than the memory brings; long matches copy whole idioms and
/// identifiers.
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
    /// Filling a middle: the reply ends when the window is full (sliding
    /// would drop the prefix and suffix it fills between).
    infill: bool,
    /// Prompt tokens whose rows came from a cached prompt.
    reused: usize,
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
    ) -> Result<Generator<'a>, GenerateError> {
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
    ) -> Result<Generator<'a>, GenerateError> {
        let prompt = Prompt::text(tok, prompt)?;
        Generator::from_prompt(model, tok, prompt, cfg, options, None)
    }

    /// Starts a reply from `prompt`: checks its ids against the model and
    /// runs the prefill. Every way of starting a reply comes here. With
    /// `reuse` (what an earlier reply of this model left, see
    /// [`Generator::into_cached_prompt`]) the rows of the beginning both
    /// prompts share are taken from its cache instead of computed again; the
    /// reply is the same bit for bit as without it.
    pub fn from_prompt(
        model: &'a Gpt,
        tok: &'a Tokenizer,
        prompt: Prompt,
        cfg: SamplingConfig,
        options: DecodeOptions,
        reuse: Option<CachedPrompt>,
    ) -> Result<Generator<'a>, GenerateError> {
        cfg.validate()?;
        let vocab = model.config.vocab_size;
        if tok.vocab_size() > vocab {
            return Err(GenerateError::TokenizerTooLarge {
                tokenizer: tok.vocab_size(),
                model: vocab,
            });
        }
        if let Some(&bad) = prompt.ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(GenerateError::TokenOutsideVocabulary { token: bad, vocab });
        }
        let Prompt {
            mut ids,
            memory_ids,
            text_before,
            infill,
        } = prompt;
        let prompt = text_before.as_str();
        let n_ctx = model.config.n_ctx;
        // The memory reads the whole prompt, the model its last n_ctx tokens.
        if ids.len() > n_ctx {
            ids.drain(..ids.len() - n_ctx);
        }
        let start = Instant::now();
        let (mut cache, reused) = prompt_cache::prepare(model, reuse, &ids);
        let logits = prompt_cache::prefill(model, &mut cache, &ids)?;
        // Rounding the weights to bf16 (when decoding in bf16) belongs to
        // the wait before the first token, not to the reply's speed.
        let mut decoder = Decoder::new(options);
        decoder.prepare(model);
        let prefill_secs = start.elapsed().as_secs_f64();
        let rng = Rng::new(cfg.seed);
        // A middle need not balance its brackets: the suffix closes them.
        let brackets =
            (cfg.balanced_brackets && !infill).then(|| Brackets::new(tok, vocab, prompt));
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
            full_prompt: memory_ids,
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
            infill,
            reused,
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
        // Any special token ends the reply (`<|endoftext|>`, or a FIM token
        // after a middle): none of them is text.
        let text_piece = if self.tok.is_special(id) {
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

    /// Runs the new token through the cache, sliding the window when full.
    fn advance(&mut self, id: u32) {
        self.context.push(id);
        if self.infill && self.cache.remaining() == 0 {
            self.end(FinishReason::MaxTokens);
            return;
        }
        let result = if self.cache.remaining() == 0 {
            let keep = (self.cache.capacity() / 2).max(1);
            self.context.drain(..self.context.len() - keep);
            self.slides += 1;
            self.cache.clear();
            self.cache
                .append(self.model, &self.context)
                .map_err(GenerateError::model)
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
    pub fn use_memory(&mut self, memory: &'a Memory) -> Result<(), GenerateError> {
        if memory.vocab_size() != self.model.config.vocab_size {
            return Err(GenerateError::MemoryVocabulary {
                memory: memory.vocab_size(),
                model: self.model.config.vocab_size,
            });
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
