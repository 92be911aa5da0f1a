//! Engine benchmarks that return plain figures (the CLI and `cargo bench`
//! print them): the single-thread matmul peak of the kernel the model uses,
//! and one full training step (forward, backward, AdamW) on one thread with
//! a per-operation profile.

pub mod instruction_peak;

use crate::error::TrainError;
use crate::optimizer::{AdamW, AdamWConfig};
use cllm_core::ops::bf16::{Kernel, Precision, matmul_pairs, pack_columns, pack_rows};
use cllm_core::ops::matmul::{MatMut, MatRef, matmul};
use cllm_core::profile::{Profile, add_time, thread_cpu_seconds};
use cllm_core::rng::Rng;
use cllm_core::{Batch, Gpt, ModelConfig, Workspace};
use instruction_peak::Instruction;
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

    fn max(self, o: Clocks) -> Clocks {
        Clocks {
            wall: self.wall.max(o.wall),
            cpu: self.cpu.max(o.cpu),
        }
    }
}

/// Best-of-`repeats` GFLOP/s of an (n, n) x (n, n) f32 multiply through
/// the model's kernel on the calling thread: the machine's peak for MFU.
/// `.wall` from wall time, `.cpu` from thread CPU time.
pub fn matmul_peak(n: usize, repeats: usize) -> Clocks {
    matmul_peak_for(Precision::Fp32, n, repeats)
}

/// [`matmul_peak`] of the precision's kernel (bf16: inputs packed before
/// timing): the peak a run's MFU is measured against.
pub fn matmul_peak_for(precision: Precision, n: usize, repeats: usize) -> Clocks {
    let mut rng = Rng::new(1);
    let a: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.normal()).collect();
    let mut c = vec![0.0f32; n * n];
    let flops = 2.0 * (n as f64).powi(3);
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    let packed = (precision == Precision::Bf16).then(|| {
        (
            pack_rows(&mut pa, MatRef::new(&a, n, n)),
            pack_columns(&mut pb, MatRef::new(&b, n, n)),
        )
    });
    let mut run = || match packed {
        Some((pa, pb)) => matmul_pairs(MatMut::new(&mut c, n, n), pa, pb, false),
        None => matmul(
            MatMut::new(&mut c, n, n),
            MatRef::new(&a, n, n),
            MatRef::new(&b, n, n),
            false,
        ),
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

/// The multiply-add `gemm` runs its f32 products with: it picks AVX-512
/// at run time where the CPU has it and the `gemm-avx512` feature
/// (default) is on, whatever `CLLM_CPU` says (its cap covers this crate's
/// kernels), else AVX2 + FMA; `None` for its portable code.
fn gemm_instruction() -> Option<Instruction> {
    #[cfg(target_arch = "x86_64")]
    {
        if cllm_core::ops::matmul::GEMM_AVX512_KERNELS
            && std::arch::is_x86_feature_detected!("avx512f")
        {
            return Some(Instruction::FmaZmm);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(Instruction::FmaYmm);
        }
    }
    None
}

/// The f32 kernel and the instructions it takes ([`gemm_instruction`]).
pub fn gemm_isa() -> &'static str {
    match gemm_instruction() {
        Some(Instruction::FmaZmm) => "gemm f32, AVX-512",
        Some(_) => "gemm f32, AVX2 + FMA",
        None => "gemm f32",
    }
}

/// The instructions whose own peak bounds a run at `precision` here: the
/// products' (the kernel's multiply-add) and the f32 ops' (attention, GELU,
/// LayerNorm, ... on their SIMD path, `CLLM_CPU` included). `None` where
/// either runs without one (the scalar bf16 model, a portable path).
pub fn ceiling_instructions(precision: Precision) -> Option<(Instruction, Instruction)> {
    use cllm_core::ops::fast_math::{SimdPath, simd_path};
    let products = match precision {
        Precision::Bf16 => (Kernel::detect() == Kernel::Avx512).then_some(Instruction::Dpbf16Zmm),
        Precision::Fp32 => gemm_instruction(),
    }?;
    let f32_ops = match simd_path() {
        SimdPath::Avx512 => Instruction::FmaZmm,
        SimdPath::Avx2 => Instruction::FmaYmm,
        SimdPath::Portable => return None,
    };
    f32_ops.available().then_some((products, f32_ops))
}

/// The machine's ceiling for a run at `precision`: each instruction of
/// [`ceiling_instructions`] timed from registers (thread CPU time, as the
/// profile), as the peaks of [`op_limits`].
pub fn instruction_peaks(precision: Precision) -> Option<(Peaks, [Instruction; 2])> {
    let (products, f32_ops) = ceiling_instructions(precision)?;
    let peaks = Peaks {
        matmul: instruction_peak::measure(products, 5)?,
        f32: instruction_peak::measure(f32_ops, 5)?,
    };
    Some((peaks, [products, f32_ops]))
}

/// The name of the kernel a precision runs on this CPU.
pub fn kernel_name(precision: Precision) -> &'static str {
    match precision {
        Precision::Fp32 => gemm_isa(),
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
    let peak_before = matmul_peak_for(precision, 1024, 10);
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
    let peak_after = matmul_peak_for(precision, 1024, 10);
    let peak = peak_before.max(peak_after);
    let peak_spread = (peak_before.cpu - peak_after.cpu).abs() / peak.cpu;
    let f32_peak = match precision {
        Precision::Fp32 => peak,
        Precision::Bf16 => matmul_peak_for(Precision::Fp32, 1024, 10),
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

cllm_core::simd_fn! {
    /// y = y · a + x: reads two arrays and writes one (12 bytes a float).
    fn scale_add(y: &mut [f32], x: &[f32], a: f32) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = *o * a + v;
        }
    }
}

/// One thread's sustained bandwidth in bytes per second (thread CPU time,
/// like the profile), measured with `y = y · a + x` at a working set that
/// fits each level: a quarter of L2, a quarter of L3, and at least eight
/// times L3 for main memory. Cache sizes come from Linux's sysfs (else
/// 1 MiB and 32 MiB are assumed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bandwidth {
    pub l2_bytes: usize,
    pub l3_bytes: usize,
    pub l2: f64,
    pub l3: f64,
    pub dram: f64,
}

impl Bandwidth {
    /// The memory level a call touching `call_bytes` distinct bytes runs
    /// from (it fits in half of the cache), and that level's bandwidth.
    pub fn level_for(&self, call_bytes: f64) -> (&'static str, f64) {
        if call_bytes <= self.l2_bytes as f64 / 2.0 {
            ("L2", self.l2)
        } else if call_bytes <= self.l3_bytes as f64 / 2.0 {
            ("L3", self.l3)
        } else {
            ("DRAM", self.dram)
        }
    }
}

fn cache_bytes(index: usize, default: usize) -> usize {
    std::fs::read_to_string(format!(
        "/sys/devices/system/cpu/cpu0/cache/index{index}/size"
    ))
    .ok()
    .and_then(|s| {
        let s = s.trim();
        let (digits, mult) = match s.strip_suffix('K') {
            Some(d) => (d, 1024),
            None => match s.strip_suffix('M') {
                Some(d) => (d, 1024 * 1024),
                None => (s, 1),
            },
        };
        digits.parse::<usize>().ok().map(|v| v * mult)
    })
    .filter(|&b| b > 0)
    .unwrap_or(default)
}

/// Best-of bandwidth (bytes/s, thread CPU time) of `scale_add` over a
/// working set of `bytes` (two arrays of half each), moving at least
/// `min_total` bytes per timed repeat.
pub fn bandwidth_at(bytes: usize, min_total: usize, repeats: usize) -> f64 {
    let len = (bytes / 8).max(16);
    let mut y = vec![1.0f32; len];
    let x = vec![0.5f32; len];
    let per_pass = 12 * len;
    let passes = min_total.div_ceil(per_pass).max(1);
    scale_add(&mut y, &x, 0.5);
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let start = thread_cpu_seconds();
        for _ in 0..passes {
            scale_add(&mut y, &x, 0.5);
        }
        best = best.min(thread_cpu_seconds() - start);
        std::hint::black_box(&mut y);
    }
    (per_pass * passes) as f64 / best.max(1e-9)
}

/// Measures [`Bandwidth`] on the calling thread (a fraction of a second).
pub fn measure_bandwidth() -> Bandwidth {
    let l2_bytes = cache_bytes(2, 1 << 20);
    let l3_bytes = cache_bytes(3, 32 << 20);
    let dram_set = (8 * l3_bytes).max(256 << 20);
    Bandwidth {
        l2_bytes,
        l3_bytes,
        l2: bandwidth_at(l2_bytes / 4, 64 << 20, 5),
        l3: bandwidth_at(l3_bytes / 4, 128 << 20, 5),
        dram: bandwidth_at(dram_set, dram_set, 3),
    }
}

/// One row of the profile with its floor.
#[derive(Clone, Debug, PartialEq)]
pub struct OpLimit {
    pub name: String,
    /// Thread CPU seconds per step, and the share of the profile's total.
    pub secs: f64,
    pub share: f64,
    /// Bytes moved and FMA-equivalent FLOPs per step (see
    /// [`cllm_core::profile::OpWork`]); `None` for an op not counted.
    pub bytes: Option<f64>,
    pub flops: Option<f64>,
    /// The memory level whose bandwidth bounds it ("L2", "L3", "DRAM").
    pub level: &'static str,
    /// bytes / bandwidth and flops / peak, seconds; floor = the larger.
    pub memory_secs: f64,
    pub compute_secs: f64,
    pub floor_secs: f64,
    /// secs / floor_secs (1 = at the limit).
    pub ratio: f64,
}

impl OpLimit {
    /// "memory" or "FMA": which of the two floors is the larger.
    pub fn bound(&self) -> &'static str {
        if self.memory_secs >= self.compute_secs {
            "memory"
        } else {
            "FMA"
        }
    }
}

/// The two FMA peaks an op's compute floor may use, GFLOP/s.
#[derive(Clone, Copy, Debug)]
pub struct Peaks {
    /// The precision's matrix kernel (f32 `gemm` or bf16 `vdpbf16ps`).
    pub matmul: f64,
    /// f32 FMAs: the ops that compute in f32 in either precision.
    pub f32: f64,
}

/// Joins a per-op profile (seconds a step) with each op's work: its floor
/// is max(bytes / bandwidth of its level, flops / peak), the peak being
/// the matrix kernel's for the products and the f32 one for the rest.
pub fn op_limits(
    profile: &[(String, f64)],
    work: &[cllm_core::profile::OpWork],
    bw: &Bandwidth,
    peaks: Peaks,
) -> Vec<OpLimit> {
    let total: f64 = profile.iter().map(|(_, s)| s).sum();
    profile
        .iter()
        .map(|(name, secs)| {
            let w = work.iter().find(|w| w.name == name);
            let (level, rate) = w.map_or(("-", f64::NAN), |w| bw.level_for(w.call_bytes));
            let memory_secs = w.map_or(f64::NAN, |w| w.bytes / rate);
            let compute_secs = w.map_or(f64::NAN, |w| {
                let peak = if w.in_matmul_kernel {
                    peaks.matmul
                } else {
                    peaks.f32
                };
                w.flops / (peak * 1e9)
            });
            let floor_secs = memory_secs.max(compute_secs);
            OpLimit {
                name: name.clone(),
                secs: *secs,
                share: secs / total,
                bytes: w.map(|w| w.bytes),
                flops: w.map(|w| w.flops),
                level,
                memory_secs,
                compute_secs,
                floor_secs,
                ratio: secs / floor_secs,
            }
        })
        .collect()
}

/// A step with every op at its floor, seconds: the sum of the floors (an
/// op without counted work at its measured time). With the kernels'
/// measured peaks ([`peaks_of`]) it is what these kernels allow; with the
/// instructions' own ([`instruction_peaks`]) about what no code can beat
/// on this machine short of doing less work: the bench compares the run
/// with both, and a speed target well above the second cannot be met here.
/// About: the FMA floors count an op's arithmetic as written (GELU's tanh,
/// the exponentials), and an op the compiler does in fewer instructions
/// can run below its floor (GELU at 0.8-1.0x on a Zen 4).
pub fn floor_step_secs(rows: &[OpLimit]) -> f64 {
    rows.iter()
        .map(|r| {
            if r.floor_secs.is_finite() {
                r.floor_secs
            } else {
                r.secs
            }
        })
        .sum()
}

/// The peaks `r`'s floors use (thread CPU time, as the profile).
pub fn peaks_of(r: &StepBench) -> Peaks {
    Peaks {
        matmul: r.cpu_peak_gflops,
        f32: r.cpu_f32_peak_gflops,
    }
}

/// The profile of `r` with each op's floor, from a bandwidth measured now
/// and the peaks measured in `r`'s run: `cfg` must be the preset `r` ran.
pub fn profile_limits(cfg: &ModelConfig, r: &StepBench) -> (Bandwidth, Vec<OpLimit>) {
    let bw = measure_bandwidth();
    let work = cllm_core::profile::op_work(cfg, r.batch, r.seq);
    let rows = op_limits(&r.per_op_profile, &work, &bw, peaks_of(r));
    (bw, rows)
}

/// [`floor_step_secs`] of `r`'s profile with `peaks` in place of the
/// kernels' (`bw` as measured for [`profile_limits`]).
pub fn floor_step_with(cfg: &ModelConfig, r: &StepBench, bw: &Bandwidth, peaks: Peaks) -> f64 {
    let work = cllm_core::profile::op_work(cfg, r.batch, r.seq);
    floor_step_secs(&op_limits(&r.per_op_profile, &work, bw, peaks))
}

/// The profile table with floors, one line per op, for the terminal.
pub fn format_profile_limits(bw: &Bandwidth, peaks: Peaks, rows: &[OpLimit]) -> String {
    let peak_line = if peaks.matmul == peaks.f32 {
        format!(
            "FMA peak {:.1} GFLOP/s (the matmul peak above, CPU time)",
            peaks.matmul
        )
    } else {
        format!(
            "FMA peak {:.1} GFLOP/s for the products (the matmul peak above), {:.1} for the \
             ops that compute in f32 (CPU time)",
            peaks.matmul, peaks.f32
        )
    };
    let mut out = format!(
        "  floors: {peak_line};\n          one-thread bandwidth L2 {:.0} GB/s ({} KiB), \
         L3 {:.0} GB/s ({} MiB), DRAM {:.0} GB/s\n",
        bw.l2 / 1e9,
        bw.l2_bytes >> 10,
        bw.l3 / 1e9,
        bw.l3_bytes >> 20,
        bw.dram / 1e9
    );
    out.push_str(
        "    op                                      ms  share     MB  GFLOP  level  bound   floor ms  time/floor\n",
    );
    for r in rows {
        match (r.bytes, r.flops) {
            (Some(b), Some(f)) => out.push_str(&format!(
                "    {:<36} {:>6.2} {:>5.1}% {:>6.1} {:>6.3}  {:<5}  {:<6} {:>8.2}  {:>8.2}x\n",
                r.name,
                r.secs * 1e3,
                100.0 * r.share,
                b / 1e6,
                f / 1e9,
                r.level,
                r.bound(),
                r.floor_secs * 1e3,
                r.ratio
            )),
            _ => out.push_str(&format!(
                "    {:<36} {:>6.2} {:>5.1}%   (not counted)\n",
                r.name,
                r.secs * 1e3,
                100.0 * r.share
            )),
        }
    }
    out
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

    /// A made-up machine: L2 100 GB/s (1 MiB), L3 50 (32 MiB), DRAM 10.
    fn test_bandwidth() -> Bandwidth {
        Bandwidth {
            l2_bytes: 1 << 20,
            l3_bytes: 32 << 20,
            l2: 100e9,
            l3: 50e9,
            dram: 10e9,
        }
    }

    #[test]
    fn every_profiled_op_has_counted_work_and_a_floor() {
        // With dropout on, so that every op the step can run shows up.
        let mut cfg = ModelConfig::preset("tiny").unwrap();
        cfg.dropout = 0.1;
        let r = bench_train_step(&cfg, 2, 8, 1, 0).unwrap();
        let work = cllm_core::profile::op_work(&cfg, 2, 8);
        let bw = test_bandwidth();
        let rows = op_limits(
            &r.per_op_profile,
            &work,
            &bw,
            Peaks {
                matmul: 100.0,
                f32: 100.0,
            },
        );
        assert!(rows.iter().any(|r| r.name == "dropout"));
        for row in &rows {
            assert!(row.bytes.is_some(), "{} has no counted work", row.name);
            assert!(row.floor_secs > 0.0 && row.ratio.is_finite(), "{row:?}");
        }
        let share: f64 = rows.iter().map(|r| r.share).sum();
        assert!((share - 1.0).abs() < 1e-9);
        let floors: f64 = rows.iter().map(|r| r.floor_secs).sum();
        assert_eq!(floor_step_secs(&rows), floors);
        // An op without counted work stands at its measured time.
        let mut uncounted = rows.clone();
        uncounted[0].floor_secs = f64::NAN;
        let want = floors - rows[0].floor_secs + rows[0].secs;
        assert!((floor_step_secs(&uncounted) - want).abs() < 1e-15);
        let text = format_profile_limits(
            &bw,
            Peaks {
                matmul: 100.0,
                f32: 100.0,
            },
            &rows,
        );
        assert!(text.contains("time/floor") && text.contains("adamw"));
    }

    #[test]
    fn a_bf16_profile_counts_the_packing_of_its_weights() {
        // The model kernel where the CPU lacks AVX512_BF16: packing runs
        // either way, and its row must have a memory floor like the rest.
        let cfg = ModelConfig::preset("tiny").unwrap();
        let r = bench_train_step_in(&cfg, 2, 8, 1, 0, 8, Precision::Bf16).unwrap();
        let work = cllm_core::profile::op_work(&cfg, 2, 8);
        let bw = test_bandwidth();
        let peaks = Peaks {
            matmul: 200.0,
            f32: 100.0,
        };
        let rows = op_limits(&r.per_op_profile, &work, &bw, peaks);
        let pack = rows
            .iter()
            .find(|r| r.name == cllm_core::profile::BF16_PACKING)
            .expect("a bf16 step packs its weights");
        // wte (37 x 16) and two layers of 4·16² + 2·16·64 weights, read
        // as f32 and written twice as bf16: 8 bytes each, from L2.
        let weights = 37.0 * 16.0 + 2.0 * (4.0 * 256.0 + 2.0 * 16.0 * 64.0);
        assert_eq!(pack.bytes, Some(8.0 * weights));
        assert!((pack.floor_secs - 8.0 * weights / 100e9).abs() < 1e-15);
        assert!(rows.iter().all(|r| r.floor_secs.is_finite()));
    }

    #[test]
    fn the_products_use_the_kernel_peak_and_the_rest_the_f32_one() {
        // A bf16 run: the kernel peak twice the f32 one. The products' FMA
        // floor halves with it; attention, GELU and LayerNorm, which
        // compute in f32 either way, keep the f32 floor.
        let cfg = ModelConfig::preset("small").unwrap();
        let work = cllm_core::profile::op_work(&cfg, 8, 128);
        let profile: Vec<(String, f64)> = work.iter().map(|w| (w.name.to_string(), 1.0)).collect();
        let bw = Bandwidth {
            l2_bytes: 1 << 20,
            l3_bytes: 32 << 20,
            l2: 1e15,
            l3: 1e15,
            dram: 1e15,
        };
        let peaks = Peaks {
            matmul: 200.0,
            f32: 100.0,
        };
        let rows = op_limits(&profile, &work, &bw, peaks);
        for (row, w) in rows.iter().zip(&work) {
            let kernel = w.name.starts_with("matmul ") || w.name.starts_with("head");
            assert_eq!(w.in_matmul_kernel, kernel, "{}", w.name);
            let peak = if kernel { 200.0 } else { 100.0 };
            let want = w.flops / (peak * 1e9);
            assert!(
                (row.compute_secs - want).abs() <= 1e-12 * want.max(1e-30),
                "{}: {} against {want}",
                w.name,
                row.compute_secs
            );
        }
        assert!(
            work.iter()
                .any(|w| w.name == "attention" && !w.in_matmul_kernel)
        );
        let text = format_profile_limits(&bw, peaks, &rows);
        assert!(text.contains("200.0") && text.contains("100.0 for the ops that compute in f32"));
    }

    #[test]
    fn op_work_counts_the_matmuls_and_levels() {
        let cfg = ModelConfig::preset("small").unwrap();
        let (b, t) = (8, 128);
        let work = cllm_core::profile::op_work(&cfg, b, t);
        let get = |name: &str| work.iter().find(|w| w.name == name).unwrap();
        // The four linear layers and the head are the model's matmul FLOPs.
        let matmul: f64 = ["c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
            .iter()
            .map(|n| get(&format!("matmul {n}")).flops)
            .sum();
        let (n, c, i, l) = ((b * t) as f64, 128.0, 512.0, 4.0);
        assert_eq!(matmul, 6.0 * n * l * (3.0 * c * c + c * c + 2.0 * c * i));
        // GELU: five (N, I) arrays moved a layer.
        assert_eq!(get("gelu").bytes, l * 4.0 * 5.0 * n * i);
        let bw = Bandwidth {
            l2_bytes: 1 << 20,
            l3_bytes: 32 << 20,
            l2: 3.0,
            l3: 2.0,
            dram: 1.0,
        };
        assert_eq!(bw.level_for(100e3), ("L2", 3.0));
        assert_eq!(bw.level_for(get("gelu").call_bytes), ("L3", 2.0));
        assert_eq!(bw.level_for(1e9), ("DRAM", 1.0));
    }

    #[test]
    fn bandwidth_is_measured_positive() {
        let b = bandwidth_at(64 << 10, 1 << 20, 1);
        assert!(b.is_finite() && b > 0.0);
    }
}
