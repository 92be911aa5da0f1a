//! Engine benchmarks that return plain figures (the CLI and `cargo bench`
//! print them): the single-thread matmul peak of the kernel the model uses,
//! and one full training step (forward, backward, AdamW) on one thread with
//! a per-operation profile.

use crate::model::ops::bf16::{Kernel, Precision, matmul_pairs, pack_columns, pack_rows};
use crate::model::ops::matmul::{MatMut, MatRef, matmul};
use crate::model::profile::{Profile, add_time, thread_cpu_seconds};
use crate::model::{Batch, Gpt, ModelConfig, Workspace};
use crate::rng::Rng;
use crate::train::optimizer::{AdamW, AdamWConfig};
use std::time::Instant;

/// A measurement by both clocks: wall time, and the calling thread's CPU
/// time. On a machine shared with other work the CPU-time figure is the
/// one that reflects the code (wall time then includes waiting for a core).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clocks {
    pub wall: f64,
    pub cpu: f64,
}

impl Clocks {
    fn now() -> (Instant, f64) {
        (Instant::now(), thread_cpu_seconds())
    }

    fn since(start: (Instant, f64)) -> Clocks {
        Clocks {
            wall: start.0.elapsed().as_secs_f64(),
            cpu: thread_cpu_seconds() - start.1,
        }
    }

    fn min(self, o: Clocks) -> Clocks {
        Clocks {
            wall: self.wall.min(o.wall),
            cpu: self.cpu.min(o.cpu),
        }
    }
}

/// Best-of-`repeats` GFLOP/s of an (n, n) x (n, n) f32 multiply through
/// the model's kernel on the calling thread: the machine's peak for MFU.
/// `.wall` from wall time, `.cpu` from thread CPU time.
pub fn matmul_peak(n: usize, repeats: usize) -> Clocks {
    let mut rng = Rng::new(1);
    let a: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let mut c = vec![0.0f32; n * n];
    let flops = 2.0 * (n as f64).powi(3);
    let mut run = || {
        matmul(
            MatMut::new(&mut c, n, n),
            MatRef::new(&a, n, n),
            MatRef::new(&b, n, n),
            false,
        )
    };
    // One untimed call warms caches and the kernel's dispatch.
    run();
    let mut best = Clocks {
        wall: f64::INFINITY,
        cpu: f64::INFINITY,
    };
    for _ in 0..repeats.max(1) {
        let start = Clocks::now();
        run();
        best = best.min(Clocks::since(start));
    }
    Clocks {
        wall: flops / best.wall / 1e9,
        cpu: flops / best.cpu.max(1e-9) / 1e9,
    }
}

/// [`matmul_peak`] of the bf16 kernel (inputs packed before timing), or
/// of the f32 one for [`Precision::Fp32`]: the peak a run's MFU is
/// measured against.
pub fn matmul_peak_for(precision: Precision, n: usize, repeats: usize) -> Clocks {
    if precision == Precision::Fp32 {
        return matmul_peak(n, repeats);
    }
    let mut rng = Rng::new(1);
    let a: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    let a = pack_rows(&mut pa, MatRef::new(&a, n, n));
    let b = pack_columns(&mut pb, MatRef::new(&b, n, n));
    let mut c = vec![0.0f32; n * n];
    let flops = 2.0 * (n as f64).powi(3);
    let mut run = || matmul_pairs(MatMut::new(&mut c, n, n), a, b, false);
    run();
    let mut best = Clocks {
        wall: f64::INFINITY,
        cpu: f64::INFINITY,
    };
    for _ in 0..repeats.max(1) {
        let start = Clocks::now();
        run();
        best = best.min(Clocks::since(start));
    }
    Clocks {
        wall: flops / best.wall / 1e9,
        cpu: flops / best.cpu.max(1e-9) / 1e9,
    }
}

/// The name of the kernel a precision runs on this CPU.
pub fn kernel_name(precision: Precision) -> &'static str {
    match precision {
        Precision::Fp32 => "gemm f32",
        Precision::Bf16 => Kernel::detect().name(),
    }
}

/// Best-of-`repeats` GFLOP/s (wall time) of an (n, n) x (n, n) multiply on
/// the calling thread with the model's kernel.
pub fn matmul_peak_gflops(n: usize, repeats: usize) -> f64 {
    matmul_peak(n, repeats).wall
}

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
    /// kernel, 1 thread).
    pub peak_gflops: f64,
    /// gflops / peak_gflops, a fraction.
    pub mfu: f64,
    /// The best step's thread CPU time, and the figures above from it.
    pub cpu_step_secs: f64,
    pub cpu_tokens_per_sec: f64,
    pub cpu_gflops: f64,
    pub cpu_peak_gflops: f64,
    pub cpu_mfu: f64,
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
    /// dropout), AdamW (and, in bf16, packing the updated weights).
    /// Returns its wall time in seconds; with a profile,
    /// adds each part's time to it.
    pub fn step(&mut self, profile: Option<&mut Profile>) -> f64 {
        self.step_clocks(profile).wall
    }

    /// [`TrainStepRig::step`] timed by both clocks.
    pub fn step_clocks(&mut self, mut profile: Option<&mut Profile>) -> Clocks {
        let start = Clocks::now();
        self.grads.fill(0.0);
        if let Some(p) = profile.as_deref_mut() {
            add_time(p, "zero gradients", thread_cpu_seconds() - start.1);
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
        let t_opt = thread_cpu_seconds();
        self.optimizer
            .update(&mut self.model.params, &self.grads, 1e-4);
        let t_pack = thread_cpu_seconds();
        if let Some(p) = profile.as_deref_mut() {
            add_time(p, "adamw", t_pack - t_opt);
        }
        if self.model.precision() == Precision::Bf16 {
            self.model.refresh_precision();
            if let Some(p) = profile {
                add_time(p, "bf16 weight packing", thread_cpu_seconds() - t_pack);
            }
        }
        Clocks::since(start)
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
) -> Result<StepBench, String> {
    let mut rig = TrainStepRig::new(preset, batch, seq, head_chunk)?.with_precision(precision);
    let n = batch * seq;
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
    let peak = matmul_peak_for(precision, 1024, 10);
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
        mfu: gflops / peak.wall,
        cpu_step_secs: best.cpu,
        cpu_tokens_per_sec: n as f64 / best.cpu,
        cpu_gflops,
        cpu_peak_gflops: peak.cpu,
        cpu_mfu: cpu_gflops / peak.cpu,
        workspace_bytes: rig.workspace.bytes(),
        per_op_profile: per_op,
    })
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
