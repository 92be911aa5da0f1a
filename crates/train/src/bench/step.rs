//! One full training step (zero gradients, forward and backward, AdamW) on
//! one thread, timed by both clocks, with a per-operation profile.

use super::peak::{Clocks, Peaks, matmul_peak_for};
use crate::error::TrainError;
use crate::optimizer::{AdamW, AdamWConfig};
use cllm_core::ops::bf16::Precision;
use cllm_core::profile::{Profile, add_time, thread_cpu_seconds};
use cllm_core::rng::Rng;
use cllm_core::{Backward, Batch, DropoutRng, Gpt, ModelConfig, Workspace};
use std::time::Instant;

/// The side of the square product a step benchmark's peak is timed on.
/// This crate's unit tests check the figures' consistency, not the peak, and
/// time a smaller one (where bf16 runs on the scalar model of the
/// instruction, 1024³ alone takes tens of seconds).
const PEAK_SIZE: usize = if cfg!(test) { 192 } else { 1024 };

/// Figures for one training-step benchmark (one thread). The headline
/// fields use wall time; the `cpu_` ones the same quantities from thread
/// CPU time.
#[derive(Clone, Debug)]
pub struct StepBench {
    pub precision: Precision,
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
    /// Matmul peak measured in the same run (1024³, the precision's
    /// kernel, 1 thread): the higher of a measurement before the timed
    /// steps and one after the profiled ones, so that a machine whose
    /// speed moves during the run is held to the best it showed.
    pub peak_gflops: f64,
    /// How far apart the two measurements were (CPU time), as a fraction
    /// of the higher: above a few percent the machine's speed moved.
    pub peak_spread: f64,
    /// gflops / peak_gflops, a fraction.
    pub mfu: f64,
    /// The best step's thread CPU time, and the figures above from it.
    pub cpu_step_secs: f64,
    pub cpu_tokens_per_sec: f64,
    pub cpu_gflops: f64,
    pub cpu_peak_gflops: f64,
    pub cpu_mfu: f64,
    /// The f32 matmul peak (thread CPU time) measured in the same run: the
    /// FMA peak of the ops that compute in f32 whatever the precision
    /// (attention, GELU, LayerNorm, ...). Equals `cpu_peak_gflops` in fp32.
    pub cpu_f32_peak_gflops: f64,
    /// Bytes held by the worker's workspace.
    pub workspace_bytes: usize,
    /// Thread CPU seconds per step spent in each operation (forward and
    /// backward together), from separate profiled steps; largest first.
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
) -> Result<StepBench, TrainError> {
    bench_train_step_with_chunk(
        preset,
        batch,
        seq,
        steps,
        warmup,
        cllm_core::ops::crossentropy::DEFAULT_CHUNK_ROWS,
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
    /// The rig with its matmuls in `precision`.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.model.set_precision(precision);
        self
    }

    pub fn new(
        cfg: &ModelConfig,
        batch: usize,
        seq: usize,
        head_chunk: usize,
    ) -> Result<TrainStepRig, TrainError> {
        if seq == 0 || seq > cfg.n_ctx || batch == 0 {
            return Err(TrainError::BenchShape {
                batch,
                seq,
                n_ctx: cfg.n_ctx,
            });
        }
        let model = Gpt::new(cfg.clone(), 1).map_err(TrainError::model)?;
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
    /// dropout), AdamW (and, in bf16, packing the updated weights).
    /// Returns its wall time in seconds; with a profile,
    /// adds each part's time to it.
    pub fn step(&mut self, profile: Option<&mut Profile>) -> f64 {
        self.step_clocks(profile).wall
    }

    /// [`TrainStepRig::step`] timed by both clocks.
    pub fn step_clocks(&mut self, mut profile: Option<&mut Profile>) -> Clocks {
        let start = Clocks::now();
        self.gradients(profile.as_deref_mut());
        let t_opt = thread_cpu_seconds();
        self.optimizer
            .update(&mut self.model.params, &self.grads, 1e-4);
        if let Some(p) = profile.as_deref_mut() {
            add_time(p, "adamw", thread_cpu_seconds() - t_opt);
        }
        if self.model.precision() == Precision::Bf16 {
            // Packing runs on rayon's threads: its wall time is the cost a
            // step sees (this thread's CPU time would miss it).
            let t_pack = Instant::now();
            self.model.refresh_precision();
            if let Some(p) = profile {
                add_time(
                    p,
                    cllm_core::profile::BF16_PACKING,
                    t_pack.elapsed().as_secs_f64(),
                );
            }
        }
        Clocks::since(start)
    }

    /// A step's gradients alone: zero them, forward and backward (with
    /// the config's dropout); with a profile, each part's time added.
    pub fn gradients(&mut self, mut profile: Option<&mut Profile>) {
        let start = thread_cpu_seconds();
        self.grads.fill(0.0);
        if let Some(p) = profile.as_deref_mut() {
            add_time(p, "zero gradients", thread_cpu_seconds() - start);
        }
        let data = Batch {
            inputs: &self.inputs,
            targets: &self.targets,
            batch: self.batch,
            seq: self.seq,
        };
        let scale = 1.0 / (self.batch * self.seq) as f32;
        let options = Backward {
            dropout: Some(DropoutRng::Shared(&mut self.dropout_rng)),
            profile,
            ..Backward::scaled(scale)
        };
        self.model
            .forward_backward(&mut self.workspace, &data, &mut self.grads, options);
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
) -> Result<StepBench, TrainError> {
    bench_train_step_in(
        preset,
        batch,
        seq,
        steps,
        warmup,
        head_chunk,
        Precision::Fp32,
    )
}

/// [`bench_train_step_with_chunk`] with the matmuls in `precision`.
pub fn bench_train_step_in(
    preset: &ModelConfig,
    batch: usize,
    seq: usize,
    steps: usize,
    warmup: usize,
    head_chunk: usize,
    precision: Precision,
) -> Result<StepBench, TrainError> {
    let mut rig = TrainStepRig::new(preset, batch, seq, head_chunk)?.with_precision(precision);
    let n = batch * seq;
    let peak_before = matmul_peak_for(precision, PEAK_SIZE, 10);
    for _ in 0..warmup {
        rig.step(None);
    }
    let times: Vec<Clocks> = (0..steps.max(1)).map(|_| rig.step_clocks(None)).collect();
    let profiled_steps = 2;
    let mut profile: Profile = Vec::new();
    for _ in 0..profiled_steps {
        rig.step(Some(&mut profile));
    }
    let best = times.iter().fold(
        Clocks {
            wall: f64::INFINITY,
            cpu: f64::INFINITY,
        },
        |a, &b| a.min(b),
    );
    let mean = times.iter().map(|t| t.wall).sum::<f64>() / times.len() as f64;
    let flops = preset.train_flops_per_token(seq) * n as f64;
    let peak_after = matmul_peak_for(precision, PEAK_SIZE, 10);
    let peak = peak_before.max(peak_after);
    let peak_spread = (peak_before.cpu - peak_after.cpu).abs() / peak.cpu;
    let f32_peak = match precision {
        Precision::Fp32 => peak,
        Precision::Bf16 => matmul_peak_for(Precision::Fp32, PEAK_SIZE, 10),
    };
    let mut per_op: Vec<(String, f64)> = profile
        .into_iter()
        .map(|(k, v)| (k.to_string(), v / profiled_steps as f64))
        .collect();
    per_op.sort_by(|a, b| b.1.total_cmp(&a.1));
    let gflops = flops / best.wall / 1e9;
    let cpu_gflops = flops / best.cpu / 1e9;
    Ok(StepBench {
        precision,
        batch,
        seq,
        threads: 1,
        steps: times.len(),
        best_step_secs: best.wall,
        mean_step_secs: mean,
        tokens_per_sec: n as f64 / best.wall,
        gflops,
        peak_gflops: peak.wall,
        peak_spread,
        mfu: gflops / peak.wall,
        cpu_step_secs: best.cpu,
        cpu_tokens_per_sec: n as f64 / best.cpu,
        cpu_gflops,
        cpu_peak_gflops: peak.cpu,
        cpu_mfu: cpu_gflops / peak.cpu,
        cpu_f32_peak_gflops: f32_peak.cpu,
        workspace_bytes: rig.workspace.bytes(),
        per_op_profile: per_op,
    })
}

/// The peaks `r`'s floors use (thread CPU time, as the profile).
pub fn peaks_of(r: &StepBench) -> Peaks {
    Peaks {
        matmul: r.cpu_peak_gflops,
        f32: r.cpu_f32_peak_gflops,
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
        // The higher of two measurements: the spread is a fraction of it.
        assert!((0.0..1.0).contains(&r.peak_spread), "{}", r.peak_spread);
        assert!(r.per_op_profile.iter().any(|(n, _)| n == "adamw"));
        assert!(r.per_op_profile.iter().any(|(n, _)| n.starts_with("head")));
        assert!(bench_train_step(&cfg, 1, 99, 1, 0).is_err());
    }
}
