//! What a run will need in memory, as the engine counts it
//! (`train::memory`), for the configuration panel: the model the trainer
//! would build, its memory, and why it does not fit.

use cllm_core::ModelConfig;
use cllm_train::memory::{self, MemoryNeed};
use cllm_train::{TokenizerKind, TrainConfig};

/// Memory a run will need (the engine's count) and the shape it assumes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemoryEstimate {
    pub need: MemoryNeed,
    /// Spheres (threads, resolved).
    pub threads: usize,
    /// Sequences each sphere holds activations for at once.
    pub micro_batch: usize,
}

/// The model the trainer would build: the trainer's own rule
/// (`model_config_for`) with the vocabulary the tokenizer is asked for.
pub fn model_for(cfg: &TrainConfig) -> Option<ModelConfig> {
    let vocab = match cfg.corpus.tokenizer {
        TokenizerKind::Bpe => cfg.corpus.vocab_size,
        TokenizerKind::Bytes => 256,
    };
    cllm_train::trainer::model_config_for(cfg, vocab).ok()
}

/// What training with `cfg` needs, as the engine counts it
/// (`train::memory::training_memory`).
pub fn estimate_memory(cfg: &TrainConfig) -> Option<MemoryEstimate> {
    let m = model_for(cfg)?;
    let threads = cfg.resolved_threads().max(1);
    Some(MemoryEstimate {
        need: memory::training_memory(cfg, &m, threads),
        threads,
        micro_batch: memory::micro_batch(cfg, threads),
    })
}

/// Why `cfg` cannot run in `available` bytes (`None`: unknown), in the
/// engine's words; `None` when it fits. A resumed run takes its model and
/// batch from the checkpoint, so the trainer checks that one itself.
pub fn memory_problem(cfg: &TrainConfig, available: Option<u64>) -> Option<String> {
    if cfg.resume.is_some() {
        return None;
    }
    let est = estimate_memory(cfg)?;
    let what = memory::describe_training(cfg, est.threads);
    memory::check_fits_in(&est.need, &what, available)
        .err()
        .map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_core::{Gpt, Workspace};
    use cllm_train::AdamW;

    /// The estimate is the bytes the trainer's buffers really hold: the
    /// model, the optimizer and workspaces built here, not a formula.
    #[test]
    fn memory_estimate_is_what_gets_allocated() {
        for (preset, threads, batch, seq, accum) in [
            ("small", 2, 16, 128, 1),
            ("small", 3, 16, 64, 4),
            ("baby", 1, 5, 32, 2),
            ("tiny", 4, 3, 16, 1),
        ] {
            let mut cfg = TrainConfig::default();
            cfg.model.preset = preset.into();
            cfg.batch.batch_size = batch;
            cfg.batch.seq_len = seq;
            cfg.batch.accum_steps = accum;
            cfg.corpus.vocab_size = 2048;
            cfg.threads = threads;
            let est = estimate_memory(&cfg).unwrap();
            let model = model_for(&cfg).unwrap();
            let gpt = Gpt::new(model.clone(), 1).unwrap();
            let opt = AdamW::new(
                cfg.optimizer.adamw.clone(),
                gpt.layout.total,
                gpt.layout.decay_ranges(),
            );
            let ws = Workspace::new(&model, batch.div_ceil(threads), seq);
            let bytes = |floats: usize| 4 * floats as u64;
            let n = est.need;
            assert_eq!(est.threads, threads);
            assert_eq!(n.params, gpt.params.len());
            assert_eq!(n.weights_bytes, bytes(gpt.params.len()), "{preset}");
            assert_eq!(n.optimizer_bytes, bytes(opt.m.len() + opt.v.len()));
            assert_eq!(n.gradient_bytes, threads as u64 * bytes(gpt.layout.total));
            assert_eq!(
                n.workspace_bytes,
                threads as u64 * ws.allocated_bytes(),
                "{preset}"
            );
            assert_eq!(n.tokens_bytes, 8 * (batch * accum * seq) as u64);
            assert!(n.total_bytes >= n.weights_bytes + n.workspace_bytes);
        }
        let mut bad = TrainConfig::default();
        bad.model.preset = "huge".into();
        assert!(estimate_memory(&bad).is_none());
    }
}
