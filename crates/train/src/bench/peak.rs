//! The machine's peaks a benchmark is measured against: the matmul peak of
//! the kernel the model uses (both clocks), and the instructions whose own
//! peak bounds a run (`instruction_peak.rs` times them).

use super::instruction_peak::{self, Instruction};
use cllm_core::ops::bf16::{Kernel, Precision, matmul_pairs, pack_columns, pack_rows};
use cllm_core::ops::matmul::{MatMut, MatRef, matmul};
use cllm_core::profile::thread_cpu_seconds;
use cllm_core::rng::Rng;
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
    pub(super) fn now() -> (Instant, f64) {
        (Instant::now(), thread_cpu_seconds())
    }

    pub(super) fn since(start: (Instant, f64)) -> Clocks {
        Clocks {
            wall: start.0.elapsed().as_secs_f64(),
            cpu: thread_cpu_seconds() - start.1,
        }
    }

    pub(super) fn min(self, o: Clocks) -> Clocks {
        Clocks {
            wall: self.wall.min(o.wall),
            cpu: self.cpu.min(o.cpu),
        }
    }

    pub(super) fn max(self, o: Clocks) -> Clocks {
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

/// The f32 kernel and the instructions it takes (`gemm_instruction`).
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
/// profile), as the peaks of [`op_limits`](super::op_limits).
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

/// The two FMA peaks an op's compute floor may use, GFLOP/s.
#[derive(Clone, Copy, Debug)]
pub struct Peaks {
    /// The precision's matrix kernel (f32 `gemm` or bf16 `vdpbf16ps`).
    pub matmul: f64,
    /// f32 FMAs: the ops that compute in f32 in either precision.
    pub f32: f64,
}
