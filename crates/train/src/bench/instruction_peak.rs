//! The multiply-add instructions' own peak: the GFLOP/s one core reaches
//! issuing nothing but the instruction on operands in registers. No kernel
//! that also loads its operands can beat it, so the bench's step with every
//! product at this peak (and every other op at its memory floor) is the
//! machine's ceiling; the floor step at the kernels' measured peaks is what
//! these kernels allow.
//!
//! FLOPs are not counted by hand: every lane multiplies ones, so the sum
//! of the accumulators is the number of products the loop did.

use cllm_core::profile::thread_cpu_seconds;

/// The instructions the bench can time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `vdpbf16ps` on 512-bit vectors: 32 bf16 pairs, 64 FLOPs.
    Dpbf16Zmm,
    /// `vfmadd231ps` on 512-bit vectors: 16 lanes, 32 FLOPs.
    FmaZmm,
    /// `vfmadd231ps` on 256-bit vectors: 8 lanes, 16 FLOPs.
    FmaYmm,
}

impl Instruction {
    pub const ALL: [Instruction; 3] = [
        Instruction::Dpbf16Zmm,
        Instruction::FmaZmm,
        Instruction::FmaYmm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Instruction::Dpbf16Zmm => "vdpbf16ps zmm",
            Instruction::FmaZmm => "vfmadd zmm",
            Instruction::FmaYmm => "vfmadd ymm",
        }
    }

    /// Whether this CPU runs it.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            match self {
                Instruction::Dpbf16Zmm => {
                    std::arch::is_x86_feature_detected!("avx512f")
                        && std::arch::is_x86_feature_detected!("avx512bf16")
                }
                Instruction::FmaZmm => std::arch::is_x86_feature_detected!("avx512f") && fma,
                Instruction::FmaYmm => std::arch::is_x86_feature_detected!("avx") && fma,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Runs `iters` rounds of [`ACCUMULATORS`] independent instructions on
    /// ones and returns the products they did (counted from the sums);
    /// `None` where the CPU lacks the instruction.
    pub fn run(self, iters: usize) -> Option<f64> {
        if !self.available() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available` checked the features each loop is compiled for.
        unsafe {
            Some(match self {
                Instruction::Dpbf16Zmm => x86::dpbf16_zmm(iters),
                Instruction::FmaZmm => x86::fma_zmm(iters),
                Instruction::FmaYmm => x86::fma_ymm(iters),
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = iters;
            None
        }
    }
}

/// Independent accumulator chains: more than latency x throughput (4-6
/// cycles x 2 a cycle on the cores seen), so the loop is bound by issue.
pub const ACCUMULATORS: usize = 12;

/// Rounds per timed call: 2 products per lane a round stay exact in f32
/// up to 2^24, and a call takes a few milliseconds.
const ROUNDS: usize = 1 << 21;

/// Best-of-`repeats` GFLOP/s (thread CPU time) of `instruction` from
/// registers; `None` where the CPU lacks it.
pub fn measure(instruction: Instruction, repeats: usize) -> Option<f64> {
    instruction.run(1000)?;
    let mut best = 0.0f64;
    for _ in 0..repeats.max(1) {
        let start = thread_cpu_seconds();
        let products = instruction.run(ROUNDS)?;
        let secs = (thread_cpu_seconds() - start).max(1e-9);
        best = best.max(2.0 * products / secs / 1e9);
    }
    Some(best)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::ACCUMULATORS;
    use std::arch::x86_64::*;

    /// Sums the lanes of the accumulators in f64 (exact: each lane holds a
    /// whole number below 2^24).
    fn total<const L: usize>(lanes: &[[f32; L]]) -> f64 {
        lanes.iter().flatten().map(|&x| f64::from(x)).sum()
    }

    /// # Safety
    /// The CPU has avx512f and avx512bf16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dpbf16_zmm(iters: usize) -> f64 {
        // bf16 1.0 is 0x3f80: every 32-bit lane holds the pair (1, 1).
        // SAFETY: a 512-bit integer vector reinterpreted as 32 bf16.
        let one: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3f80_3f80)) };
        let one = std::hint::black_box(one);
        let mut acc = [_mm512_setzero_ps(); ACCUMULATORS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_dpbf16_ps(*a, one, one);
            }
        }
        // SAFETY: 16 f32 lanes as an array.
        let lanes: [[f32; 16]; ACCUMULATORS] = unsafe { std::mem::transmute(acc) };
        total(&lanes)
    }

    /// # Safety
    /// The CPU has avx512f and fma.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn fma_zmm(iters: usize) -> f64 {
        let one = std::hint::black_box(_mm512_set1_ps(1.0));
        let mut acc = [_mm512_setzero_ps(); ACCUMULATORS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(one, one, *a);
            }
        }
        // SAFETY: 16 f32 lanes as an array.
        let lanes: [[f32; 16]; ACCUMULATORS] = unsafe { std::mem::transmute(acc) };
        total(&lanes)
    }

    /// # Safety
    /// The CPU has avx and fma.
    #[target_feature(enable = "avx,fma")]
    pub(super) unsafe fn fma_ymm(iters: usize) -> f64 {
        let one = std::hint::black_box(_mm256_set1_ps(1.0));
        let mut acc = [_mm256_setzero_ps(); ACCUMULATORS];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(one, one, *a);
            }
        }
        // SAFETY: 8 f32 lanes as an array.
        let lanes: [[f32; 8]; ACCUMULATORS] = unsafe { std::mem::transmute(acc) };
        total(&lanes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_loop_does_the_products_its_instruction_names() {
        // Lanes x products per lane per instruction, counted from the ISA
        // manuals, against what the loop's sums say it did.
        let per_instruction = |i: Instruction| match i {
            Instruction::Dpbf16Zmm => 16.0 * 2.0,
            Instruction::FmaZmm => 16.0,
            Instruction::FmaYmm => 8.0,
        };
        let mut ran = 0;
        for i in Instruction::ALL {
            let Some(products) = i.run(777) else {
                assert!(!i.available());
                continue;
            };
            ran += 1;
            let want = 777.0 * ACCUMULATORS as f64 * per_instruction(i);
            assert_eq!(products, want, "{}", i.name());
        }
        // Every x86-64 machine CI runs on has AVX2 and FMA at least.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") {
            assert!(ran >= 1);
        }
    }

    #[test]
    fn a_measured_peak_is_a_positive_rate_or_absent() {
        for i in Instruction::ALL {
            match measure(i, 1) {
                Some(g) => assert!(g.is_finite() && g > 0.0, "{}: {g}", i.name()),
                None => assert!(!i.available()),
            }
        }
    }
}
