//! A reply started from a cached prompt is the reply of a cold start, bit
//! for bit: the first logits, every sampled token and every later logit,
//! whatever the length of the shared beginning (every split of the prompt,
//! chunk boundaries and the matrix library's size thresholds included).

mod common;

use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::decoder::DecodeOptions;
use cllm_generate::{
    CachedPrompt, Generator, PREFILL_CHUNK, Prompt, PromptCache, SamplingConfig, prefill_chunk,
};
use common::{byte_config, lively_model, random_tokens};

fn sampled(n: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        max_new_tokens: n,
        seed: 11,
        ..SamplingConfig::default()
    }
}

/// The reply's ids and the bits of every logit vector it saw, and what it
/// leaves to cache.
fn reply(
    model: &Gpt,
    tok: &Tokenizer,
    ids: &[u32],
    reuse: Option<CachedPrompt>,
) -> (Vec<u32>, Vec<Vec<u32>>, usize, Option<CachedPrompt>) {
    let prompt = Prompt::encoded(tok, ids.to_vec(), "").unwrap();
    let mut g = Generator::from_prompt(
        model,
        tok,
        prompt,
        sampled(6),
        DecodeOptions::default(),
        reuse,
    )
    .unwrap();
    let bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut logits = vec![bits(g.next_logits())];
    while g.next_token().is_some() {
        logits.push(bits(g.next_logits()));
    }
    let reused = g.reused_prompt_tokens();
    (
        g.generated_ids().to_vec(),
        logits,
        reused,
        g.into_cached_prompt(),
    )
}

fn check_every_split(cfg: ModelConfig, len: usize, splits: impl Iterator<Item = usize>) {
    let chunk = prefill_chunk(cfg.n_ctx);
    let model = lively_model(cfg, 3);
    let tok = Tokenizer::bytes();
    let b = random_tokens(len, 256, 1);
    let (cold_ids, cold_logits, cold_reused, _) = reply(&model, &tok, &b, None);
    assert_eq!(cold_reused, 0);
    for k in splits {
        // A shares exactly k tokens with B, then goes its own way.
        let mut a = b[..k].to_vec();
        a.extend(random_tokens(3, 256, 100 + k as u64).iter().map(|&t| {
            if k < len && t == b[k] {
                (t + 1) % 256
            } else {
                t
            }
        }));
        let (_, _, _, cached) = reply(&model, &tok, &a, None);
        // Kept when it holds a whole chunk.
        assert_eq!(cached.is_some(), a.len() >= chunk, "split {k}");
        if let Some(c) = &cached {
            assert_eq!(c.ids(), &a[..]);
        }
        let (ids, logits, reused, _) = reply(&model, &tok, &b, cached);
        let whole_chunks = k.min(len - 1) / chunk * chunk;
        assert_eq!(reused, whole_chunks, "split {k}");
        assert_eq!(ids, cold_ids, "split {k}: the reply differs");
        assert!(logits == cold_logits, "split {k}: some logit differs");
    }
}

#[test]
fn a_cached_beginning_gives_the_cold_reply_at_every_split_tiny() {
    let mut cfg = byte_config("tiny");
    cfg.n_ctx = 4 * PREFILL_CHUNK;
    // Room for the other prompt's 3 own tokens and the reply.
    let len = cfg.n_ctx - 12;
    check_every_split(cfg, len, 0..=len);
}

#[test]
fn a_cached_beginning_gives_the_cold_reply_around_chunks_and_sizes_small() {
    let cfg = byte_config("small");
    // Either side of the chunks' boundaries and of 64 rows, the whole prompt.
    let len = cfg.n_ctx - 10;
    let splits = [0, 1, 31, 32, 33, 63, 64, 65, 95, 96, 97, len - 1, len];
    check_every_split(cfg, len, splits.into_iter());
}

#[test]
fn a_long_context_prefills_in_quarters_and_reuses_whole_ones() {
    let mut cfg = byte_config("tiny");
    cfg.n_ctx = 8 * PREFILL_CHUNK;
    let chunk = prefill_chunk(cfg.n_ctx);
    assert_eq!(chunk, cfg.n_ctx / 4);
    let len = cfg.n_ctx - 10;
    let splits = [
        0,
        1,
        chunk - 1,
        chunk,
        chunk + 1,
        2 * chunk - 1,
        2 * chunk,
        2 * chunk + 1,
    ];
    check_every_split(cfg, len, splits.into_iter().chain([len - 1, len]));
}

/// `n` ids starting with `head` and going on with seeded random ones.
fn prompt_ids(head: &[u32], n: usize, seed: u64) -> Vec<u32> {
    let mut ids = head.to_vec();
    ids.extend(random_tokens(n - head.len(), 256, seed));
    ids
}

#[test]
fn the_cache_hands_out_the_entry_sharing_most_and_evicts_the_oldest() {
    let mut cfg = byte_config("tiny");
    cfg.n_ctx = 4 * PREFILL_CHUNK;
    let model = lively_model(cfg, 3);
    let tok = Tokenizer::bytes();
    let n_ctx = model.config.n_ctx;
    let c = PREFILL_CHUNK;
    let prompt = |ids: &[u32]| Prompt::encoded(&tok, ids.to_vec(), "").unwrap();
    let keep = |ids: &[u32]| reply(&model, &tok, ids, None).3.unwrap();
    let shared = random_tokens(2 * c, 256, 50);
    let (a, b) = (
        prompt_ids(&shared, 2 * c + 5, 1),
        prompt_ids(&shared[..c], 2 * c + 5, 2),
    );
    let mut cache = PromptCache::new(2);
    cache.put(keep(&a));
    cache.put(keep(&b));
    assert_eq!(cache.len(), 2);
    let wanted = prompt_ids(&shared, 3 * c, 3);
    let got = cache.take(&prompt(&wanted), n_ctx).unwrap();
    assert_eq!(got.ids(), &a[..], "two chunks shared beat one");
    assert_eq!(got.reusable(&wanted), 2 * c);
    cache.put(got);
    // Nothing shared and the cache is full: the oldest (b) is handed out
    // for its buffers.
    let other = random_tokens(c + 3, 256, 60);
    let got = cache.take(&prompt(&other), n_ctx).unwrap();
    assert_eq!(got.ids(), &b[..]);
    assert_eq!(got.reusable(&other), 0);
    // Not full: nothing to hand out.
    assert!(cache.take(&prompt(&other), n_ctx).is_none());
    cache.put(got);
    cache.put(keep(&other));
    assert_eq!(cache.len(), 2, "the oldest (a) went");
    let got = cache.take(&prompt(&wanted), n_ctx).unwrap();
    assert_eq!(got.ids(), &b[..]);
    assert_eq!(got.reusable(&wanted), c);
}

#[test]
fn what_cannot_be_reused_is_not_kept_or_not_used() {
    let tok = Tokenizer::bytes();
    let mut cfg = byte_config("tiny");
    cfg.n_ctx = 2 * PREFILL_CHUNK;
    let model = lively_model(cfg.clone(), 3);
    let c = PREFILL_CHUNK;
    // Less than a chunk: nothing a later prompt could take.
    assert!(
        reply(&model, &tok, &random_tokens(c - 1, 256, 1), None)
            .3
            .is_none()
    );
    // A reply that slid its window no longer holds its prompt's rows.
    let prompt = Prompt::encoded(&tok, random_tokens(c, 256, 2), "").unwrap();
    let mut g = Generator::from_prompt(
        &model,
        &tok,
        prompt,
        sampled(2 * c),
        DecodeOptions::default(),
        None,
    )
    .unwrap();
    while g.next_token().is_some() {}
    assert!(g.into_cached_prompt().is_none());
    // Another model's rows are not used.
    let other = lively_model(cfg, 4);
    let a = random_tokens(c + 2, 256, 3);
    let cached = reply(&model, &tok, &a, None).3.unwrap();
    let b = prompt_ids(&a, c + 4, 4);
    let (ids, logits, reused, _) = reply(&other, &tok, &b, Some(cached));
    let (cold_ids, cold_logits, _, _) = reply(&other, &tok, &b, None);
    assert_eq!(reused, 0);
    assert_eq!((ids, logits), (cold_ids, cold_logits));
}
