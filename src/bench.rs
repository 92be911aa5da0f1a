//! Engine benchmarks that return plain figures (the CLI and `cargo bench`
//! print them): the single-thread matmul peak of the kernel the model uses,
//! and one full training step (forward, backward, AdamW) on one thread with
//! a per-operation profile.

use crate::model::gpt::Profile;
use crate::model::ops::matmul::{MatMut, MatRef, matmul};
use crate::model::{Batch, Gpt, ModelConfig, Workspace};
use crate::rng::Rng;
use crate::train::optimizer::{AdamW, AdamWConfig};
use std::time::Instant;

/// Best-of-`repeats` GFLOP/s of an (n, n) x (n, n) f32 multiply through
/// the model's kernel on the calling thread: the machine's peak for MFU.
pub fn matmul_peak_gflops(n: usize, repeats: usize) -> f64 {
    let mut rng = Rng::new(1);
    let a: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let mut c = vec![0.0f32; n * n];
    let flops = 2.0 * (n as f64).powi(3);
    // One untimed call warms caches and the kernel's dispatch.
    matmul(
        MatMut::new(&mut c, n, n),
        MatRef::new(&a, n, n),
        MatRef::new(&b, n, n),
        false,
    );
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        matmul(
            MatMut::new(&mut c, n, n),
            MatRef::new(&a, n, n),
            MatRef::new(&b, n, n),
            false,
        );
        best = best.min(start.elapsed().as_secs_f64());
    }
    flops / best / 1e9
}

/// Figures for one training-step benchmark (one thread).
#[derive(Clone, Debug)]
pub struct StepBench {
    pub batch: usize,
    pub seq: usize,
    pub threads: usize,
    /// Timed steps (after the warm-up ones).
    pub steps: usize,
    /// Best (fastest) step's wall time.
    pub best_step_secs: f64,
    /// Mean step wall time over the timed steps.
    pub mean_step_secs: f64,
    /// Tokens per second of the best step.
    pub tokens_per_sec: f64,
    /// Model FLOPs per second of the best step
    /// (`ModelConfig::train_flops_per_token` x tokens / time).
    pub gflops: f64,
    /// Matmul peak measured in the same run.
    pub peak_gflops: f64,
    /// gflops / peak_gflops, a fraction.
    pub mfu: f64,
    /// Bytes held by the worker's workspace.
    pub workspace_bytes: usize,
    /// Seconds per step spent in each operation (forward and backward
    /// together), from separate profiled steps; largest first.
    pub per_op_profile: Vec<(String, f64)>,
}

/// Times full training steps (zero gradients, forward + backward with the
/// config's dropout, AdamW update) on `batch x seq` random tokens on the
/// calling thread; `warmup` untimed steps come first.
pub fn bench_train_step(
    preset: &ModelConfig,
    batch: usize,
    seq: usize,
    steps: usize,
    warmup: usize,
) -> Result<StepBench, String> {
    bench_train_step_with_chunk(
        preset,
        batch,
        seq,
        steps,
        warmup,
        crate::model::ops::crossentropy::DEFAULT_CHUNK_ROWS,
    )
}

/// One worker's training setup on random tokens: model, workspace, AdamW
/// state and gradient buffer, ready to run steps (used by the benchmarks).
pub struct TrainStepRig {
    pub model: Gpt,
    pub workspace: Workspace,
    optimizer: AdamW,
    grads: Vec<f32>,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    batch: usize,
    seq: usize,
    dropout_rng: Rng,
}

impl TrainStepRig {
    pub fn new(
        cfg: &ModelConfig,
        batch: usize,
        seq: usize,
        head_chunk: usize,
    ) -> Result<TrainStepRig, String> {
        if seq == 0 || seq > cfg.n_ctx || batch == 0 {
            return Err(format!(
                "bench: batch {batch} x seq {seq} must be at least 1 x 1 and seq at most n_ctx {}",
                cfg.n_ctx
            ));
        }
        let model = Gpt::new(cfg.clone(), 1)?;
        let workspace = Workspace::with_head_chunk(cfg, batch, seq, head_chunk);
        let optimizer = AdamW::new(
            AdamWConfig::default(),
            model.params.len(),
            model.layout.decay_ranges(),
        );
        let grads = vec![0.0f32; model.params.len()];
        let mut rng = Rng::new(7);
        let n = batch * seq;
        let vocab = cfg.vocab_size as u64;
        let inputs = (0..n).map(|_| rng.below(vocab) as u32).collect();
        let targets = (0..n).map(|_| rng.below(vocab) as u32).collect();
        Ok(TrainStepRig {
            model,
            workspace,
            optimizer,
            grads,
            inputs,
            targets,
            batch,
            seq,
            dropout_rng: rng,
        })
    }

    /// One full step: zero gradients, forward + backward (with the config's
    /// dropout), AdamW. Returns its wall time in seconds; with a profile,
    /// adds each part's time to it.
    pub fn step(&mut self, mut profile: Option<&mut Profile>) -> f64 {
        let start = Instant::now();
        self.grads.fill(0.0);
        if let Some(p) = profile.as_deref_mut() {
            add(p, "zero gradients", start.elapsed().as_secs_f64());
        }
        let data = Batch {
            inputs: &self.inputs,
            targets: &self.targets,
            batch: self.batch,
            seq: self.seq,
        };
        let scale = 1.0 / (self.batch * self.seq) as f32;
        self.model.forward_backward_profiled(
            &mut self.workspace,
            &data,
            &mut self.grads,
            scale,
            Some(&mut self.dropout_rng),
            profile.as_deref_mut(),
        );
        let t_opt = Instant::now();
        self.optimizer
            .update(&mut self.model.params, &self.grads, 1e-4);
        if let Some(p) = profile.as_deref_mut() {
            add(p, "adamw", t_opt.elapsed().as_secs_f64());
        }
        start.elapsed().as_secs_f64()
    }
}

/// [`bench_train_step`] with a chosen number of head rows per logits chunk.
pub fn bench_train_step_with_chunk(
    preset: &ModelConfig,
    batch: usize,
    seq: usize,
    steps: usize,
    warmup: usize,
    head_chunk: usize,
) -> Result<StepBench, String> {
    let mut rig = TrainStepRig::new(preset, batch, seq, head_chunk)?;
    let n = batch * seq;
    for _ in 0..warmup {
        rig.step(None);
    }
    let times: Vec<f64> = (0..steps.max(1)).map(|_| rig.step(None)).collect();
    let profiled_steps = 2;
    let mut profile: Profile = Vec::new();
    for _ in 0..profiled_steps {
        rig.step(Some(&mut profile));
    }
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let gflops = preset.train_flops_per_token(seq) * n as f64 / best / 1e9;
    let peak = matmul_peak_gflops(1024, 10);
    let mut per_op: Vec<(String, f64)> = profile
        .into_iter()
        .map(|(k, v)| (k.to_string(), v / profiled_steps as f64))
        .collect();
    per_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(StepBench {
        batch,
        seq,
        threads: 1,
        steps: times.len(),
        best_step_secs: best,
        mean_step_secs: mean,
        tokens_per_sec: n as f64 / best,
        gflops,
        peak_gflops: peak,
        mfu: gflops / peak,
        workspace_bytes: rig.workspace.bytes(),
        per_op_profile: per_op,
    })
}

fn add(profile: &mut Profile, name: &'static str, secs: f64) {
    match profile.iter_mut().find(|(n, _)| *n == name) {
        Some(e) => e.1 += secs,
        None => profile.push((name, secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_step_bench_reports_consistent_figures() {
        let cfg = ModelConfig::preset("tiny").unwrap();
        let r = bench_train_step(&cfg, 2, 8, 2, 1).unwrap();
        assert_eq!(r.steps, 2);
        assert!(r.best_step_secs > 0.0 && r.best_step_secs <= r.mean_step_secs);
        assert!((r.tokens_per_sec - 16.0 / r.best_step_secs).abs() < 1e-6 * r.tokens_per_sec);
        assert!((r.mfu - r.gflops / r.peak_gflops).abs() < 1e-12);
        assert!(r.per_op_profile.iter().any(|(n, _)| n == "adamw"));
        assert!(r.per_op_profile.iter().any(|(n, _)| n.starts_with("head")));
        assert!(bench_train_step(&cfg, 1, 99, 1, 0).is_err());
    }
}
