//! Helpers shared by the generation tests (each test file uses some).
#![allow(dead_code)]

use cllm_core::rng::Rng;
use cllm_core::{Gpt, ModelConfig};

/// A model of `cfg` with every parameter drawn from N(0, 0.3²) instead of
/// GPT-2's small initialisation, so attention is peaked and logits are of
/// order one: a wrong position, mask or cache row shows up clearly.
pub fn lively_model(cfg: ModelConfig, seed: u64) -> Gpt {
    let layout = cllm_core::ParamLayout::new(&cfg);
    let mut rng = Rng::new(seed);
    let params = (0..layout.total).map(|_| rng.normal() * 0.3).collect();
    Gpt::from_params(cfg, params).unwrap()
}

/// A config of `preset` whose vocabulary covers the byte tokenizer.
pub fn byte_config(preset: &str) -> ModelConfig {
    let mut cfg = ModelConfig::preset(preset).unwrap();
    cfg.vocab_size = cfg.vocab_size.max(256);
    cfg.dropout = 0.0;
    cfg
}

/// max |a - b| relative to max |b|.
pub fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// `n` ids below `vocab`, seeded.
pub fn random_tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}
