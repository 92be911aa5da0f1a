//! Generation speed at batch 1 (for `cllm bench --generate`): tokens/s of
//! the [`Generator`] over a reply, and what one cached token costs against
//! a full forward pass over the same context.

use super::generator::Generator;
use super::sampling::SamplingConfig;
use crate::data::tokenizer::Tokenizer;
use crate::model::{Gpt, KvCache, ModelConfig, Workspace};
use crate::rng::Rng;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct GenerateBench {
    pub preset: String,
    pub num_params: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Generated tokens per second over the reply (prefill not included).
    pub tokens_per_sec: f64,
    /// The context length both costs below are measured at.
    pub context: usize,
    /// Best time of one cached step (one new token with `context - 1`
    /// positions already in the cache, logits of that token).
    pub cached_token_secs: f64,
    /// Best time of `Gpt::logits` over `context` tokens: what generating a
    /// token costs without a cache (it recomputes every position).
    pub full_forward_secs: f64,
    /// Best time of a prefill of `context` tokens through the cache with
    /// only the last position's logits: a full forward at its cheapest.
    pub prefill_secs: f64,
}

/// Measures `preset` with random weights (the speed does not depend on
/// them): a greedy reply of `new_tokens` after a `prompt_tokens` prompt of
/// random ids, then the cached step and the full forward at the full
/// context, best of `repeats`.
pub fn bench_generate(
    preset: &str,
    prompt_tokens: usize,
    new_tokens: usize,
    repeats: usize,
) -> Result<GenerateBench, String> {
    let mut cfg =
        ModelConfig::preset(preset).ok_or_else(|| format!("unknown preset '{preset}'"))?;
    // The prompt goes through the byte tokenizer, whose 256 ids every
    // preset but the test-only `tiny` (37) already covers.
    cfg.vocab_size = cfg.vocab_size.max(256);
    let model = Gpt::new(cfg.clone(), 1)?;
    let n_ctx = cfg.n_ctx;
    let repeats = repeats.max(1);
    // A prompt of random printable text.
    let tok = Tokenizer::bytes();
    let mut rng = Rng::new(7);
    let prompt: String = (0..prompt_tokens.clamp(1, n_ctx))
        .map(|_| (b' ' + rng.below(95) as u8) as char)
        .collect();
    let sampling = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: new_tokens.max(1),
        ..SamplingConfig::default()
    };
    let mut generator = Generator::new(&model, &tok, &prompt, sampling)?;
    while generator.next_token().is_some() {}
    let stats = generator.stats();

    let context: Vec<u32> = (0..n_ctx)
        .map(|_| rng.below(cfg.vocab_size as u64) as u32)
        .collect();
    let mut cache = KvCache::new(&cfg);
    cache.append(&model, &context[..n_ctx - 1])?;
    let mut cached_token_secs = f64::INFINITY;
    for _ in 0..repeats.max(5) {
        let start = Instant::now();
        cache.append(&model, &context[n_ctx - 1..])?;
        cached_token_secs = cached_token_secs.min(start.elapsed().as_secs_f64());
        // Drop the step again: rebuild the first n_ctx - 1 positions.
        cache.clear();
        cache.append(&model, &context[..n_ctx - 1])?;
    }
    let mut ws = Workspace::new(&cfg, 1, n_ctx);
    let mut full_forward_secs = f64::INFINITY;
    let mut prefill_secs = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        let logits = model.logits(&mut ws, &context);
        full_forward_secs = full_forward_secs.min(start.elapsed().as_secs_f64());
        std::hint::black_box(logits);
        cache.clear();
        let start = Instant::now();
        cache.append(&model, &context)?;
        prefill_secs = prefill_secs.min(start.elapsed().as_secs_f64());
    }
    Ok(GenerateBench {
        preset: preset.to_string(),
        num_params: cfg.num_params(),
        prompt_tokens: stats.prompt_tokens,
        generated_tokens: stats.generated_tokens,
        tokens_per_sec: stats.tokens_per_sec,
        context: n_ctx,
        cached_token_secs,
        full_forward_secs,
        prefill_secs,
    })
}
