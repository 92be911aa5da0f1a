//! Incremental decoding with a key/value cache.
//!
//! A full forward pass over T tokens recomputes every position's keys and
//! values; when generating one token at a time, all of them but the newest
//! are already known. The cache keeps, per layer, the keys and values of the
//! positions seen so far, (L, n_ctx, C) each, and [`KvCache::append`] runs
//! only the new tokens through the same block forward as `Gpt` (`block.rs`),
//! whose attention reads this cache. The logits it returns equal those of
//! [`Gpt::forward`] with [`Logits`](crate::Logits) at the same positions to
//! float tolerance (crates/generate/tests/generate_engine.rs).
//!
//! The cache holds at most `n_ctx` positions (the position embedding covers
//! no more). When it is full the caller clears it and appends the most
//! recent tokens again (a sliding window): `cllm_generate::Generator` keeps the
//! newest half of the context, so the re-prefill happens once every
//! `n_ctx / 2` tokens instead of on every token.

use super::block::{Attend, BlockBuffers, BlockParams, block_forward};
use super::ops::{crossentropy, embedding, layernorm};
use super::{CoreError, Gpt, ModelConfig};

/// Keys and values of the positions seen so far, plus scratch sized for a
/// chunk of up to `n_ctx` new tokens.
pub struct KvCache {
    config: ModelConfig,
    /// Positions filled, 0 ..= n_ctx.
    len: usize,
    /// (L, n_ctx, C) keys and values, head h in columns [h·hs, (h+1)·hs).
    keys: Vec<f32>,
    values: Vec<f32>,
    // ---- scratch for a chunk of new rows (n_ctx, ·)
    /// (n_ctx, C) the residual stream of the new rows.
    x: Vec<f32>,
    /// (n_ctx, C) the residual stream between a block's attention and MLP,
    /// and the block's output.
    mid: Vec<f32>,
    next: Vec<f32>,
    /// (n_ctx, C) LayerNorm outputs (ln_1 and ln_f; ln_2); (n_ctx) their
    /// statistics (unused later).
    ln: Vec<f32>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    ln2: Vec<f32>,
    mean2: Vec<f32>,
    rstd2: Vec<f32>,
    /// (n_ctx, 3C) queries, keys and values of the new rows.
    qkv: Vec<f32>,
    /// (n_ctx, C) attention output before c_proj.
    attn: Vec<f32>,
    /// (n_ctx, C) a branch's projection output.
    branch: Vec<f32>,
    /// (n_ctx, I) MLP pre-activation and GELU output.
    fc: Vec<f32>,
    fc_gelu: Vec<f32>,
    /// (n_ctx, n_ctx) attention weights of the new rows for one head.
    scores: Vec<f32>,
    /// (V) logits of the last appended position.
    logits: Vec<f32>,
}

impl KvCache {
    /// An empty cache for models of `config` (about 2·L·n_ctx·C floats of
    /// keys and values plus a few (n_ctx, ·) scratch buffers).
    pub fn new(config: &ModelConfig) -> KvCache {
        let (l, t, c, inner) = (config.n_layer, config.n_ctx, config.n_embd, config.n_inner);
        let zeros = |len: usize| vec![0.0f32; len];
        KvCache {
            config: config.clone(),
            len: 0,
            keys: zeros(l * t * c),
            values: zeros(l * t * c),
            x: zeros(t * c),
            mid: zeros(t * c),
            next: zeros(t * c),
            ln: zeros(t * c),
            mean: zeros(t),
            rstd: zeros(t),
            ln2: zeros(t * c),
            mean2: zeros(t),
            rstd2: zeros(t),
            qkv: zeros(t * 3 * c),
            attn: zeros(t * c),
            branch: zeros(t * c),
            fc: zeros(t * inner),
            fc_gelu: zeros(t * inner),
            scores: zeros(t * t),
            logits: zeros(config.vocab_size),
        }
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most positions the cache holds (the model's context, n_ctx).
    pub fn capacity(&self) -> usize {
        self.config.n_ctx
    }

    /// Positions still free.
    pub fn remaining(&self) -> usize {
        self.config.n_ctx - self.len
    }

    /// Forgets every position (the buffers are kept for reuse).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Forgets the positions from `len` on (a generator going back over
    /// tokens it rejected); the next token is written at position `len`.
    pub fn truncate(&mut self, len: usize) {
        assert!(
            len <= self.len,
            "the cache holds only {} positions",
            self.len
        );
        self.len = len;
    }

    /// Runs `tokens` at the next positions and returns the logits (V) that
    /// predict the token after the last of them. Errors (nothing changes)
    /// when the model does not match the cache, `tokens` is empty, they do
    /// not fit in the remaining context, or an id is outside the vocabulary.
    pub fn append(&mut self, model: &Gpt, tokens: &[u32]) -> Result<&[f32], CoreError> {
        self.check(model, tokens)?;
        self.forward_rows(model, tokens);
        let n = tokens.len();
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        let lay = &model.layout;
        crossentropy::head_logits(
            &mut self.logits,
            &self.ln[(n - 1) * c..n * c],
            &model.params[lay.wte..lay.wte + v * c],
            1,
            c,
            v,
        );
        Ok(&self.logits)
    }

    /// As [`KvCache::append`] but returns the logits of every new position,
    /// (n, V) row-major: row i predicts the token after `tokens[i]`.
    pub fn append_all_logits(
        &mut self,
        model: &Gpt,
        tokens: &[u32],
    ) -> Result<Vec<f32>, CoreError> {
        self.check(model, tokens)?;
        self.forward_rows(model, tokens);
        let n = tokens.len();
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        let lay = &model.layout;
        let mut out = vec![0.0f32; n * v];
        crossentropy::head_logits(
            &mut out,
            &self.ln[..n * c],
            &model.params[lay.wte..lay.wte + v * c],
            n,
            c,
            v,
        );
        Ok(out)
    }

    /// Errors when `tokens` cannot be appended for `model` (see
    /// [`KvCache::append`]).
    pub fn check(&self, model: &Gpt, tokens: &[u32]) -> Result<(), CoreError> {
        if model.config != self.config {
            return Err(CoreError::CacheForAnotherModel);
        }
        if tokens.is_empty() {
            return Err(CoreError::NoTokens);
        }
        if tokens.len() > self.remaining() {
            return Err(CoreError::ContextFull {
                tokens: tokens.len(),
                context: self.config.n_ctx,
                in_use: self.len,
            });
        }
        if let Some(&id) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(CoreError::TokenOutOfVocabulary {
                id,
                vocab: self.config.vocab_size,
            });
        }
        Ok(())
    }

    /// Layer `l`'s keys and values (n_ctx, C) and the attention scratch, for
    /// a decoder that runs the new position's forward itself
    /// (`cllm_generate::decoder::Decoder`) and then calls [`KvCache::advance`].
    pub fn layer_parts(&mut self, l: usize) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let at = l * self.config.n_ctx * self.config.n_embd;
        let len = self.config.n_ctx * self.config.n_embd;
        (
            &mut self.keys[at..at + len],
            &mut self.values[at..at + len],
            &mut self.scores,
        )
    }

    /// Counts `n` more positions as filled (their keys and values written
    /// through [`KvCache::layer_parts`]).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.remaining(), "the cache holds no more positions");
        self.len += n;
    }

    /// The forward pass of the n new rows at positions len .. len + n, up
    /// to ln_f (left in `self.ln`): the embedding, then every block through
    /// the one block forward (`block.rs`) with this cache as its
    /// attention's keys and values, then ln_f.
    fn forward_rows(&mut self, model: &Gpt, tokens: &[u32]) {
        let cfg = &self.config;
        let (c, inner, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let t_max = cfg.n_ctx;
        let n = tokens.len();
        let p0 = self.len;
        let p = &model.params;
        let lay = &model.layout;

        // The position table starts at p0 so chunk row i gets position p0 + i.
        embedding::embedding_forward(
            &mut self.x[..n * c],
            tokens,
            &p[lay.wte..lay.wte + v * c],
            &p[lay.wpe + p0 * c..lay.wpe + t_max * c],
            n,
            c,
        );
        for (l, o) in lay.layers.iter().enumerate() {
            let layer_kv = l * t_max * c..(l + 1) * t_max * c;
            let buffers = BlockBuffers {
                x: &self.x[..n * c],
                ln1: &mut self.ln[..n * c],
                ln1_mean: &mut self.mean[..n],
                ln1_rstd: &mut self.rstd[..n],
                qkv: &mut self.qkv[..n * 3 * c],
                attn: &mut self.attn[..n * c],
                mid: &mut self.mid[..n * c],
                ln2: &mut self.ln2[..n * c],
                ln2_mean: &mut self.mean2[..n],
                ln2_rstd: &mut self.rstd2[..n],
                fc: &mut self.fc[..n * inner],
                fc_gelu: &mut self.fc_gelu[..n * inner],
                branch: &mut self.branch[..n * c],
                out: &mut self.next[..n * c],
            };
            let attend = Attend::Cached {
                keys: &mut self.keys[layer_kv.clone()],
                values: &mut self.values[layer_kv],
                start: p0,
                scores: &mut self.scores,
                heads: cfg.n_head,
            };
            let weights = BlockParams {
                params: p,
                offsets: o,
                channels: c,
                inner,
                packs: None,
            };
            block_forward(&weights, n, buffers, attend, None, &mut None);
            // The block's output is the next block's input.
            std::mem::swap(&mut self.x, &mut self.next);
        }
        layernorm::layernorm_forward(
            &mut self.ln[..n * c],
            &mut self.mean[..n],
            &mut self.rstd[..n],
            &self.x[..n * c],
            &p[lay.ln_f_weight..lay.ln_f_weight + c],
            &p[lay.ln_f_bias..lay.ln_f_bias + c],
            c,
        );
        self.len += n;
    }
}
