//! Prompts kept prefilled between replies: editors send many requests whose
//! prompts share a long beginning, and a reply that starts from a cached
//! prompt computes only the rows after the shared beginning.
//!
//! Bit for bit the same as a cold start: a prompt is run through the model
//! in chunks of [`prefill_chunk`] rows from position 0, cached or not, and
//! only whole chunks are taken from a cache, so every chunk a reply
//! computes is the chunk a cold start computes, from the same rows before
//! it. (A row's numbers do depend on the other rows of its chunk: the
//! matrix library orders its sums by the shape of the product.)
//! tests/prompt_cache.rs checks replies and logits against cold starts at
//! every split.

use super::Generator;
use super::prompt::Prompt;
use crate::error::GenerateError;
use cllm_core::{Gpt, KvCache};

/// The fewest rows a prompt's prefill runs through the model at once (see
/// the module's note); a cache gives whole chunks only.
pub const PREFILL_CHUNK: usize = 32;

/// Rows a prompt's prefill runs at once in a context of `n_ctx`:
/// [`PREFILL_CHUNK`], or a quarter of the context when that is more. Each
/// chunk reads every weight once, so small chunks make a long prompt cost
/// many reads of the model; a quarter keeps that to four.
pub fn prefill_chunk(n_ctx: usize) -> usize {
    (n_ctx / 4).max(PREFILL_CHUNK)
}

/// A key/value cache with the prompt whose rows it holds: what a reply
/// leaves for the next one ([`Generator::into_cached_prompt`]), given back
/// to [`Generator::from_prompt`].
pub struct CachedPrompt {
    ids: Vec<u32>,
    cache: KvCache,
    /// The weights the rows were computed with (address and length): the
    /// rows are of no use to another model.
    weights: (usize, usize),
    /// The model's [`prefill_chunk`].
    chunk: usize,
}

impl CachedPrompt {
    /// The prompt whose rows the cache holds.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// How many rows of a prompt of `ids` this entry can give: the whole
    /// chunks of the shared beginning, leaving at least the last row (whose
    /// logits start the reply) to compute.
    pub fn reusable(&self, ids: &[u32]) -> usize {
        let shared = self.ids.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let shared = shared.min(ids.len().saturating_sub(1));
        shared / self.chunk * self.chunk
    }

    fn belongs_to(&self, model: &Gpt) -> bool {
        self.weights == weights_of(model)
    }
}

fn weights_of(model: &Gpt) -> (usize, usize) {
    (model.params.as_ptr() as usize, model.params.len())
}

/// The cache a reply of `ids` starts from and how many of its rows are
/// already there: `reuse`'s shared beginning when it belongs to `model`,
/// else an empty cache (reusing `reuse`'s buffers when it fits the model).
pub(super) fn prepare(model: &Gpt, reuse: Option<CachedPrompt>, ids: &[u32]) -> (KvCache, usize) {
    match reuse {
        Some(entry) if entry.belongs_to(model) => {
            let reused = entry.reusable(ids);
            let mut cache = entry.cache;
            cache.truncate(reused);
            (cache, reused)
        }
        _ => (KvCache::new(&model.config), 0),
    }
}

/// Runs `ids[cache.len()..]` through the model in chunks aligned to
/// [`prefill_chunk`]; returns the logits after the last one.
pub(super) fn prefill(
    model: &Gpt,
    cache: &mut KvCache,
    ids: &[u32],
) -> Result<Vec<f32>, GenerateError> {
    let chunk = prefill_chunk(model.config.n_ctx);
    let mut at = cache.len();
    let mut logits = Vec::new();
    while at < ids.len() {
        let end = ((at / chunk + 1) * chunk).min(ids.len());
        logits.clear();
        logits.extend_from_slice(
            cache
                .append(model, &ids[at..end])
                .map_err(GenerateError::model)?,
        );
        at = end;
    }
    Ok(logits)
}

impl Generator<'_> {
    /// Prompt tokens whose rows came from a cached prompt (0 on a cold
    /// start).
    pub fn reused_prompt_tokens(&self) -> usize {
        self.reused
    }

    /// The prompt's rows of the cache, for the next reply to start from;
    /// `None` when they are gone (the window slid) or hold no whole chunk.
    pub fn into_cached_prompt(mut self) -> Option<CachedPrompt> {
        let n = self.prompt_tokens;
        let chunk = prefill_chunk(self.model.config.n_ctx);
        if self.slides > 0 || n < chunk || self.context.len() < n {
            return None;
        }
        self.cache.truncate(n);
        self.context.truncate(n);
        Some(CachedPrompt {
            ids: self.context,
            cache: self.cache,
            weights: weights_of(self.model),
            chunk,
        })
    }
}

/// A few cached prompts, most recently used last.
pub struct PromptCache {
    entries: Vec<CachedPrompt>,
    capacity: usize,
}

impl PromptCache {
    /// Keeps at most `capacity` prompts (each holds a key/value cache:
    /// about 2·layers·n_ctx·channels floats and the prefill's scratch).
    pub fn new(capacity: usize) -> PromptCache {
        PromptCache {
            entries: Vec::new(),
            capacity,
        }
    }

    /// Takes out the entry that gives `prompt` the most rows of a model of
    /// `n_ctx` positions (the most recent of equals). When none shares a
    /// beginning with it, the oldest entry if the cache is full (its
    /// buffers are reused), else none.
    pub fn take(&mut self, prompt: &Prompt, n_ctx: usize) -> Option<CachedPrompt> {
        let ids = prompt.visible_ids(n_ctx);
        let (best, rows) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.reusable(ids)))
            .max_by_key(|&(i, rows)| (rows, i))?;
        if rows > 0 {
            Some(self.entries.remove(best))
        } else if self.entries.len() >= self.capacity {
            Some(self.entries.remove(0))
        } else {
            None
        }
    }

    /// Keeps `entry` as the most recent, dropping the oldest beyond the
    /// capacity.
    pub fn put(&mut self, entry: CachedPrompt) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.remove(0);
        }
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
