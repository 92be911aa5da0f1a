//! fp32 matrix-vector products for decoding: y = W x + b over a block of
//! W's rows, W (rows, cols) row-major as the model stores its linear
//! weights (out, in) and the tied head (V, C).
//!
//! Every row is computed the same way wherever it lies and however the
//! rows are split between threads, so a split over rows gives the same bits
//! as one thread:
//!   16 lanes, lane l accumulating w[k + l] · x[k + l] for k = 0, 16, 32, …
//!   with a fused multiply-add (the last block padded with zeros), then the
//!   lanes summed in a fixed tree (l and l + 8, then + 4, + 2, + 1), then
//!   the bias added.
//! The AVX-512 kernel does exactly that, the AVX2 one with the 16 lanes in
//! two registers; [`rows_model`] is the same order in scalar code, which
//! machines without either run (and which the tests hold both kernels to,
//! bit for bit). The AVX2 kernel exists because the scalar order alone
//! keeps an AVX2 CPU far below its memory-bandwidth limit.

/// Lanes of the accumulator.
pub const LANES: usize = 16;

/// Which code computes the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Kernel {
    Avx512,
    /// The same 16 lanes as two 8-float registers.
    Avx2,
    Model,
}

impl F32Kernel {
    /// The fastest this CPU runs (no wider than `CLLM_CPU` allows).
    pub fn detect() -> F32Kernel {
        use cllm_core::ops::fast_math::{SimdPath, detected_path};
        #[cfg(target_arch = "x86_64")]
        match detected_path() {
            SimdPath::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
                return F32Kernel::Avx512;
            }
            SimdPath::Avx512 | SimdPath::Avx2
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma") =>
            {
                return F32Kernel::Avx2;
            }
            _ => {}
        }
        F32Kernel::Model
    }

    /// Every kernel this CPU runs, the model last (for the tests).
    pub fn available() -> Vec<F32Kernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(F32Kernel::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(F32Kernel::Avx2);
            }
        }
        v.push(F32Kernel::Model);
        v
    }
}

/// `out[i] = W[row0 + i] · x + bias[row0 + i]` for i in `0..out.len()`.
/// w holds at least (row0 + out.len()) · cols floats, x cols, bias (when
/// given) at least row0 + out.len().
pub fn gemv_rows(
    kernel: F32Kernel,
    out: &mut [f32],
    w: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    cols: usize,
    row0: usize,
) {
    let rows = out.len();
    assert!(x.len() >= cols && w.len() >= (row0 + rows) * cols);
    if let Some(b) = bias {
        assert!(b.len() >= row0 + rows);
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        F32Kernel::Avx512 => {
            assert!(std::arch::is_x86_feature_detected!("avx512f"));
            // SAFETY: the CPU has AVX-512F (checked above) and the slices
            // cover every element read (checked above).
            unsafe { x86::rows_avx512(out, w, x, bias, cols, row0) }
        }
        #[cfg(target_arch = "x86_64")]
        F32Kernel::Avx2 => {
            assert!(
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            );
            // SAFETY: the CPU has AVX2 and FMA (checked above) and the
            // slices cover every element read (checked above).
            unsafe { x86::rows_avx2(out, w, x, bias, cols, row0) }
        }
        _ => rows_model_dispatch(out, w, x, bias, cols, row0),
    }
}

fn rows_model_dispatch(
    out: &mut [f32],
    w: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    cols: usize,
    row0: usize,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma")
        && cllm_core::ops::fast_math::detected_path()
            != cllm_core::ops::fast_math::SimdPath::Portable
    {
        // SAFETY: the CPU has FMA; the model reads only inside the slices.
        unsafe { x86::rows_model_fma(out, w, x, bias, cols, row0) };
        return;
    }
    rows_model(out, w, x, bias, cols, row0)
}

/// The scalar model of the kernel: the same operations in the same order.
#[inline(always)]
pub fn rows_model(
    out: &mut [f32],
    w: &[f32],
    x: &[f32],
    bias: Option<&[f32]>,
    cols: usize,
    row0: usize,
) {
    for (i, o) in out.iter_mut().enumerate() {
        let r = row0 + i;
        let row = &w[r * cols..(r + 1) * cols];
        let mut acc = [0.0f32; LANES];
        let mut k = 0;
        while k < cols {
            for (l, a) in acc.iter_mut().enumerate() {
                let (wv, xv) = if k + l < cols {
                    (row[k + l], x[k + l])
                } else {
                    (0.0, 0.0)
                };
                *a = wv.mul_add(xv, *a);
            }
            k += LANES;
        }
        let s = reduce16(&acc);
        *o = plus_bias(s, bias, r);
    }
}

/// A row's sum plus its bias, where there is one: the last step of every
/// kernel and of the model.
#[inline(always)]
fn plus_bias(s: f32, bias: Option<&[f32]>, r: usize) -> f32 {
    match bias {
        Some(b) => s + b[r],
        None => s,
    }
}

// The lanes' tree sum (l and l + 8, then + 4, + 2, + 1), in scalar code
// and in registers, shared with the bf16 kernel.
pub use cllm_core::ops::bf16_gemv::reduce16;

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    pub(crate) use cllm_core::ops::bf16_gemv::x86::hsum16;

    #[target_feature(enable = "fma")]
    pub(super) unsafe fn rows_model_fma(
        out: &mut [f32],
        w: &[f32],
        x: &[f32],
        bias: Option<&[f32]>,
        cols: usize,
        row0: usize,
    ) {
        super::rows_model(out, w, x, bias, cols, row0)
    }

    /// Four rows at a time (independent chains hide the FMA latency), the
    /// rest one by one; each row's operations are the same either way.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows_avx512(
        out: &mut [f32],
        w: &[f32],
        x: &[f32],
        bias: Option<&[f32]>,
        cols: usize,
        row0: usize,
    ) {
        let rows = out.len();
        let full = cols / 16;
        let tail = cols % 16;
        let tail_mask: __mmask16 = ((1u32 << tail) - 1) as __mmask16;
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        let finish = |s: f32, r: usize| super::plus_bias(s, bias, r);
        // One row's 16 lanes: the full blocks in order, then the tail.
        let row = |p: *const f32| -> __m512 {
            let mut a = _mm512_setzero_ps();
            // SAFETY: see below.
            unsafe {
                for j in 0..full {
                    let xv = _mm512_loadu_ps(xp.add(j * 16));
                    a = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(j * 16)), xv, a);
                }
                if tail > 0 {
                    let o = full * 16;
                    let xv = _mm512_maskz_loadu_ps(tail_mask, xp.add(o));
                    a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail_mask, p.add(o)), xv, a);
                }
            }
            a
        };
        let mut i = 0;
        // SAFETY (all loads below): row r's elements r·cols .. (r+1)·cols
        // lie inside w and 0 .. cols inside x (the caller checked), and the
        // masked tail load reads only lanes below `tail`. Each row is read
        // whole before the next: loads issued in address order stream
        // faster than four rows read block by block side by side (see the
        // bf16 kernel, `ops::bf16_gemv`).
        unsafe {
            while i + 4 <= rows {
                let r = row0 + i;
                let a0 = row(wp.add(r * cols));
                let a1 = row(wp.add((r + 1) * cols));
                let a2 = row(wp.add((r + 2) * cols));
                let a3 = row(wp.add((r + 3) * cols));
                out[i] = finish(hsum16(a0), r);
                out[i + 1] = finish(hsum16(a1), r + 1);
                out[i + 2] = finish(hsum16(a2), r + 2);
                out[i + 3] = finish(hsum16(a3), r + 3);
                i += 4;
            }
            while i < rows {
                let r = row0 + i;
                out[i] = finish(hsum16(row(wp.add(r * cols))), r);
                i += 1;
            }
        }
    }

    /// [`rows_avx512`] on AVX2: lanes 0-7 and 8-15 of each row's 16 in two
    /// registers, the tail through masked loads (zeros past the row), and
    /// the same tree sum (l and l + 8 is lo + hi; then + 4, + 2, + 1).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_avx2(
        out: &mut [f32],
        w: &[f32],
        x: &[f32],
        bias: Option<&[f32]>,
        cols: usize,
        row0: usize,
    ) {
        let full = cols / 16;
        let tail = cols % 16;
        // Lane l of a masked load reads element l where the mask's lane is
        // all ones (l < count), and gives 0 elsewhere without touching it.
        let mask = |count: usize| {
            let lanes: [i32; 8] = std::array::from_fn(|l| if l < count { -1 } else { 0 });
            // SAFETY: eight i32 are one 256-bit value.
            unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
        };
        let (mask_lo, mask_hi) = (mask(tail.min(8)), mask(tail.saturating_sub(8)));
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        let finish = |s: f32, r: usize| super::plus_bias(s, bias, r);
        let row = |p: *const f32| -> f32 {
            let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            // SAFETY: row p holds `cols` floats and x too (the caller
            // checked); the masked loads read only lanes below `tail`.
            unsafe {
                for j in 0..full {
                    let o = j * 16;
                    lo = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(o)), _mm256_loadu_ps(xp.add(o)), lo);
                    hi = _mm256_fmadd_ps(
                        _mm256_loadu_ps(p.add(o + 8)),
                        _mm256_loadu_ps(xp.add(o + 8)),
                        hi,
                    );
                }
                if tail > 0 {
                    let o = full * 16;
                    lo = _mm256_fmadd_ps(
                        _mm256_maskload_ps(p.add(o), mask_lo),
                        _mm256_maskload_ps(xp.add(o), mask_lo),
                        lo,
                    );
                    if tail > 8 {
                        hi = _mm256_fmadd_ps(
                            _mm256_maskload_ps(p.add(o + 8), mask_hi),
                            _mm256_maskload_ps(xp.add(o + 8), mask_hi),
                            hi,
                        );
                    }
                }
            }
            let s8 = _mm256_add_ps(lo, hi);
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
            _mm_cvtss_f32(s1)
        };
        // Each row read whole before the next, as in `rows_avx512`.
        for (i, o) in out.iter_mut().enumerate() {
            let r = row0 + i;
            // SAFETY: row r lies inside w (the caller checked).
            *o = finish(row(unsafe { wp.add(r * cols) }), r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = cllm_core::rng::Rng::new(seed);
        (0..n).map(|_| rng.normal() * scale).collect()
    }

    #[test]
    fn model_matches_f64_dot_to_rounding() {
        let (rows, cols) = (9, 45);
        let w = random(rows * cols, 1, 1.0);
        let x = random(cols, 2, 1.0);
        let b = random(rows, 3, 1.0);
        let mut out = vec![0.0; rows];
        rows_model(&mut out, &w, &x, Some(&b), cols, 0);
        for r in 0..rows {
            let exact: f64 = (0..cols)
                .map(|k| w[r * cols + k] as f64 * x[k] as f64)
                .sum::<f64>()
                + b[r] as f64;
            assert!((out[r] as f64 - exact).abs() < 1e-4, "row {r}");
        }
    }

    /// The kernel against its scalar model, bit for bit, over widths with
    /// and without a tail, row counts with and without a remainder of 4,
    /// and an offset first row.
    #[test]
    fn kernel_matches_model_bit_for_bit() {
        for kernel in F32Kernel::available() {
            kernel_matches_model_with(kernel);
        }
    }

    fn kernel_matches_model_with(kernel: F32Kernel) {
        for &cols in &[1usize, 15, 16, 17, 128, 200, 256, 1024] {
            for &(rows, row0) in &[(1usize, 0usize), (7, 3), (64, 0), (33, 5)] {
                let w = random((rows + row0) * cols, cols as u64, 0.7);
                let x = random(cols, 99, 1.3);
                let b = random(rows + row0, 5, 0.2);
                for bias in [None, Some(&b[..])] {
                    let mut got = vec![0.0; rows];
                    let mut want = vec![0.0; rows];
                    gemv_rows(kernel, &mut got, &w, &x, bias, cols, row0);
                    rows_model(&mut want, &w, &x, bias, cols, row0);
                    let gb: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    let wb: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(gb, wb, "{kernel:?}: cols {cols} rows {rows} row0 {row0}");
                }
            }
        }
    }
}
