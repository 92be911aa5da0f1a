//! bf16 matrix-vector products for decoding: y = W x + b with W and x
//! rounded to bf16 (round to nearest, ties to even) and fp32 accumulation,
//! through `vdpbf16ps` (AVX512_BF16) where the CPU has it.
//!
//! One row's order, the same wherever the row lies and however rows are
//! split between threads:
//!   the row is padded with zeros to a multiple of 32 (`Bf16Matrix::stride`);
//!   16 fp32 lanes; for each block of 32 elements k .. k + 32, lane l takes
//!   the pair (k + 2l, k + 2l + 1) as one `vdpbf16ps` step ([`dp_step`]);
//!   then the lanes are summed in a fixed tree (l and l + 8, + 4, + 2, + 1)
//!   and the bias is added.
//! [`rows_model`] does the same in scalar code, with the instruction's
//! rounding as measured on the hardware (see [`dp_step`]); it is what
//! machines without AVX512_BF16 run, and the tests hold the kernel to it
//! bit for bit where the instruction exists.

/// Elements per `vdpbf16ps` on a 512-bit register.
pub const BLOCK: usize = 32;

// One conversion for training and decoding (`ops::bf16`): round to nearest
// even, NaN kept quiet, subnormals rounded like any value (the dot product,
// not the conversion, reads bf16 subnormals as zero).
pub use super::bf16::{from_bf16 as bf16_to_f32, to_bf16 as f32_to_bf16};

/// A matrix rounded to bf16, each row padded with zeros to `stride`
/// elements (a multiple of [`BLOCK`]).
#[derive(Clone, Debug)]
pub struct Bf16Matrix {
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub data: Vec<u16>,
}

impl Bf16Matrix {
    /// Rounds w (rows, cols) row-major.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Bf16Matrix {
        assert!(w.len() >= rows * cols);
        let stride = padded(cols);
        let mut data = vec![0u16; rows * stride];
        for (dst, src) in data.chunks_exact_mut(stride).zip(w.chunks_exact(cols)) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = f32_to_bf16(s);
            }
        }
        Bf16Matrix {
            rows,
            cols,
            stride,
            data,
        }
    }

    /// Bytes the matrix takes (what one product reads of it).
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// `cols` rounded up to a multiple of [`BLOCK`].
pub fn padded(cols: usize) -> usize {
    cols.div_ceil(BLOCK) * BLOCK
}

/// Rounds x to bf16 into `out`, padded with zeros to `padded(x.len())`.
pub fn pack_vector(x: &[f32], out: &mut Vec<u16>) {
    out.clear();
    out.extend(x.iter().map(|&v| f32_to_bf16(v)));
    out.resize(padded(x.len()), 0);
}

/// Which code computes the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// `vdpbf16ps` on 512-bit registers.
    Avx512Bf16,
    /// The scalar model.
    Model,
}

/// Whether this CPU has the instruction (and the AVX-512 parts the kernel
/// uses with it).
pub fn has_avx512_bf16() -> bool {
    super::bf16::Kernel::detect() == super::bf16::Kernel::Avx512
}

impl Bf16Kernel {
    pub fn detect() -> Bf16Kernel {
        if has_avx512_bf16() {
            Bf16Kernel::Avx512Bf16
        } else {
            Bf16Kernel::Model
        }
    }
}

/// One lane of one `vdpbf16ps`: the accumulator plus the products of the
/// pairs (a0, b0) (even element) and (a1, b1) (odd element), as the
/// hardware rounds it: `ops::bf16::model_dot_pair`, the one model of the
/// instruction (odd product first, each step one fused multiply-add, DAZ
/// and FTZ).
#[inline(always)]
pub fn dp_step(acc: f32, a0: u16, b0: u16, a1: u16, b1: u16) -> f32 {
    let pair = |lo: u16, hi: u16| lo as u32 | ((hi as u32) << 16);
    super::bf16::model_dot_pair(acc, pair(a0, a1), pair(b0, b1))
}

/// The scalar model of the kernel: out[i] = W[row0 + i] · x + bias[row0 + i],
/// x packed by [`pack_vector`] (m.stride elements).
pub fn rows_model(out: &mut [f32], m: &Bf16Matrix, x: &[u16], bias: Option<&[f32]>, row0: usize) {
    let s = m.stride;
    for (i, o) in out.iter_mut().enumerate() {
        let r = row0 + i;
        let row = &m.data[r * s..(r + 1) * s];
        let mut acc = [0.0f32; 16];
        for (wb, xb) in row.chunks_exact(BLOCK).zip(x.chunks_exact(BLOCK)) {
            for (l, a) in acc.iter_mut().enumerate() {
                *a = dp_step(*a, wb[2 * l], xb[2 * l], wb[2 * l + 1], xb[2 * l + 1]);
            }
        }
        let sum = reduce16(&acc);
        *o = match bias {
            Some(b) => sum + b[r],
            None => sum,
        };
    }
}

/// The lanes' tree sum: l and l + 8, then + 4, + 2, + 1 (plain fp32).
#[inline(always)]
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let mut s8 = [0.0f32; 8];
    for i in 0..8 {
        s8[i] = a[i] + a[i + 8];
    }
    let mut s4 = [0.0f32; 4];
    for i in 0..4 {
        s4[i] = s8[i] + s8[i + 4];
    }
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// out[i] = W[row0 + i] · x + bias[row0 + i] for i in 0..out.len(), x
/// packed by [`pack_vector`].
pub fn gemv_rows(
    kernel: Bf16Kernel,
    out: &mut [f32],
    m: &Bf16Matrix,
    x: &[u16],
    bias: Option<&[f32]>,
    row0: usize,
) {
    assert!(row0 + out.len() <= m.rows, "rows outside the matrix");
    assert!(
        x.len() >= m.stride,
        "the vector is not packed to the stride"
    );
    if let Some(b) = bias {
        assert!(b.len() >= row0 + out.len());
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Bf16Kernel::Avx512Bf16 => {
            assert!(has_avx512_bf16(), "this CPU lacks AVX512_BF16");
            // SAFETY: the CPU has the features (checked above) and every row
            // read lies inside m.data, x covers the stride (checked above).
            unsafe { x86::rows_avx512bf16(out, m, x, bias, row0) }
        }
        _ => rows_model(out, m, x, bias, row0),
    }
}

#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use super::Bf16Matrix;
    use std::arch::x86_64::*;

    /// The 16-lane tree sum of [`super::reduce16`] in registers (also the
    /// f32 decoding kernel's, `cllm_generate::gemv`).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub fn hsum16(acc: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(acc);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
        let s8 = _mm256_add_ps(lo, hi);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
        _mm_cvtss_f32(s1)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const u16) -> __m512bh {
        // SAFETY: the caller guarantees 32 readable u16 at p; __m512i and
        // __m512bh are both 64 plain bytes.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p as *const _)) }
    }

    /// One row's 16 lanes: the row's blocks in order into one accumulator.
    #[inline]
    #[target_feature(enable = "avx512bf16,avx512f")]
    unsafe fn row(p: *const u16, xp: *const u16, blocks: usize) -> __m512 {
        let mut a = _mm512_setzero_ps();
        for j in 0..blocks {
            let o = j * 32;
            // SAFETY: the caller guarantees `blocks` blocks at p and xp.
            a = unsafe { _mm512_dpbf16_ps(a, load(p.add(o)), load(xp.add(o))) };
        }
        a
    }

    /// Four rows at a time, the rest one by one; each row's operations are
    /// the same either way. Each row is read whole before the next (not the
    /// four rows block by block side by side): issued in address order, the
    /// loads stream faster, the out-of-order core still overlapping the
    /// four rows' independent chains.
    #[target_feature(enable = "avx512bf16,avx512f")]
    pub(super) unsafe fn rows_avx512bf16(
        out: &mut [f32],
        m: &Bf16Matrix,
        x: &[u16],
        bias: Option<&[f32]>,
        row0: usize,
    ) {
        let s = m.stride;
        let blocks = s / super::BLOCK;
        let rows = out.len();
        let wp = m.data.as_ptr();
        let xp = x.as_ptr();
        let finish = |v: f32, r: usize| match bias {
            Some(b) => v + b[r],
            None => v,
        };
        let mut i = 0;
        // SAFETY (all loads): rows row0 .. row0 + rows lie inside m.data
        // (stride s each) and x holds s elements; the caller checked both.
        unsafe {
            while i + 4 <= rows {
                let r = row0 + i;
                let a0 = row(wp.add(r * s), xp, blocks);
                let a1 = row(wp.add((r + 1) * s), xp, blocks);
                let a2 = row(wp.add((r + 2) * s), xp, blocks);
                let a3 = row(wp.add((r + 3) * s), xp, blocks);
                out[i] = finish(hsum16(a0), r);
                out[i + 1] = finish(hsum16(a1), r + 1);
                out[i + 2] = finish(hsum16(a2), r + 2);
                out[i + 3] = finish(hsum16(a3), r + 3);
                i += 4;
            }
            while i < rows {
                let r = row0 + i;
                out[i] = finish(hsum16(row(wp.add(r * s), xp, blocks)), r);
                i += 1;
            }
        }
    }

    /// One `vdpbf16ps` on given registers, for the tests that pin down the
    /// instruction's rounding.
    #[cfg(test)]
    #[target_feature(enable = "avx512bf16,avx512f")]
    pub(super) unsafe fn dp_once(acc: &[f32; 16], a: &[u16; 32], b: &[u16; 32]) -> [f32; 16] {
        // SAFETY: the arrays are exactly one register each.
        unsafe {
            let r = _mm512_dpbf16_ps(
                _mm512_loadu_ps(acc.as_ptr()),
                load(a.as_ptr()),
                load(b.as_ptr()),
            );
            let mut out = [0.0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), r);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn conversion_rounds_to_nearest_even() {
        // Exactly representable values stay.
        for v in [
            0.0f32,
            -0.0,
            1.0,
            -2.5,
            65280.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            assert_eq!(bf16_to_f32(f32_to_bf16(v)).to_bits(), v.to_bits(), "{v}");
        }
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to even (1).
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3F80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
        // Just above a tie rounds up, just below rounds down.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_8001)), 0x3F81);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3F80_7FFF)), 0x3F80);
        // The largest finite f32 rounds to infinity; NaN stays NaN.
        assert_eq!(f32_to_bf16(f32::MAX), 0x7F80);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        // Against an f64 nearest-even model over many random values.
        let mut rng = Rng::new(3);
        for _ in 0..100_000 {
            let v = f32::from_bits(rng.next_u64() as u32);
            if !v.is_finite() || v.abs() > 3.0e38 {
                continue;
            }
            let h = f32_to_bf16(v);
            let down = bf16_to_f32(h) as f64;
            let err = (down - v as f64).abs();
            // The neighbours one bf16 step away are not closer.
            for n in [h.wrapping_sub(1), h.wrapping_add(1)] {
                let nv = bf16_to_f32(n);
                if nv.is_finite() && nv.signum() == bf16_to_f32(h).signum() {
                    let nerr = (nv as f64 - v as f64).abs();
                    assert!(
                        err < nerr || (err == nerr && h & 1 == 0),
                        "{v:e}: {h:#06x} vs {n:#06x}"
                    );
                }
            }
        }
    }

    fn flush(v: f32) -> f32 {
        if v.is_subnormal() {
            0.0f32.copysign(v)
        } else {
            v
        }
    }

    fn random_bf16(rng: &mut Rng, spread: i32) -> u16 {
        // Values over a wide exponent range so that the order of the
        // additions shows in the result.
        let e = (rng.below((2 * spread + 1) as u64) as i32) - spread;
        let v = rng.normal() * 2f32.powi(e);
        f32_to_bf16(v)
    }

    /// Pins the instruction's semantics: random accumulators and pairs over
    /// wide exponent ranges, plus subnormal inputs and results, against
    /// [`dp_step`]. Runs only where the instruction exists.
    #[test]
    fn dp_step_is_the_instruction() {
        if !has_avx512_bf16() {
            eprintln!("no AVX512_BF16 on this CPU: the scalar model stands alone");
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let mut rng = Rng::new(11);
            let mut cases = 0;
            // Other plausible semantics, each of which must be caught out
            // by some case (else the test could not tell them apart).
            let even_first = |acc: f32, a0: u16, b0: u16, a1: u16, b1: u16| {
                let p0 = flush(flush(bf16_to_f32(a0)) * flush(bf16_to_f32(b0)));
                let p1 = flush(flush(bf16_to_f32(a1)) * flush(bf16_to_f32(b1)));
                flush(flush(flush(acc) + p0) + p1)
            };
            let pair_first = |acc: f32, a0: u16, b0: u16, a1: u16, b1: u16| {
                let p0 = flush(flush(bf16_to_f32(a0)) * flush(bf16_to_f32(b0)));
                let p1 = flush(flush(bf16_to_f32(a1)) * flush(bf16_to_f32(b1)));
                flush(flush(acc) + flush(p0 + p1))
            };
            let no_flush = |acc: f32, a0: u16, b0: u16, a1: u16, b1: u16| {
                (acc + bf16_to_f32(a1) * bf16_to_f32(b1)) + bf16_to_f32(a0) * bf16_to_f32(b0)
            };
            let mut caught = [0usize; 3];
            for round in 0..20_000 {
                let mut acc = [0.0f32; 16];
                let mut a = [0u16; 32];
                let mut b = [0u16; 32];
                let spread = [4, 12, 30, 60][round % 4];
                for v in acc.iter_mut() {
                    *v = bf16_to_f32(random_bf16(&mut rng, spread))
                        + rng.normal() * 2f32.powi(rng.below(20) as i32 - 10);
                }
                for v in a.iter_mut().chain(b.iter_mut()) {
                    *v = random_bf16(&mut rng, spread);
                }
                if round % 5 == 0 {
                    // Subnormal bf16 inputs, tiny products and accumulators.
                    a[round % 32] = (rng.below(0x7F) + 1) as u16;
                    b[(round + 7) % 32] = 0x8000 | (rng.below(0x7F) + 1) as u16;
                    acc[round % 16] = f32::from_bits(rng.below(0x7F_FFFF) as u32 + 1);
                    a[(round + 3) % 32] = 0x0100 | (rng.below(0x7F) as u16);
                    b[(round + 3) % 32] = 0x0100 | (rng.below(0x7F) as u16);
                }
                // SAFETY: the CPU has the instruction (checked above).
                let got = unsafe { x86::dp_once(&acc, &a, &b) };
                for l in 0..16 {
                    let want = dp_step(acc[l], a[2 * l], b[2 * l], a[2 * l + 1], b[2 * l + 1]);
                    assert_eq!(
                        got[l].to_bits(),
                        want.to_bits(),
                        "lane {l}: acc {:e} a ({:#06x}, {:#06x}) b ({:#06x}, {:#06x}): hardware {:e}, model {:e}",
                        acc[l],
                        a[2 * l],
                        a[2 * l + 1],
                        b[2 * l],
                        b[2 * l + 1],
                        got[l],
                        want
                    );
                    let args = (acc[l], a[2 * l], b[2 * l], a[2 * l + 1], b[2 * l + 1]);
                    for (k, alt) in [
                        even_first(args.0, args.1, args.2, args.3, args.4),
                        pair_first(args.0, args.1, args.2, args.3, args.4),
                        no_flush(args.0, args.1, args.2, args.3, args.4),
                    ]
                    .iter()
                    .enumerate()
                    {
                        if alt.to_bits() != want.to_bits() {
                            caught[k] += 1;
                        }
                    }
                    cases += 1;
                }
            }
            assert_eq!(cases, 20_000 * 16);
            assert!(
                caught.iter().all(|&n| n > 0),
                "the cases do not tell the candidate semantics apart: {caught:?}"
            );
        }
    }

    /// The model stays near the exact product of the rounded inputs.
    #[test]
    fn model_is_close_to_the_exact_dot_of_the_rounded_inputs() {
        let mut rng = Rng::new(5);
        let (rows, cols) = (6, 77);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.normal()).collect();
        let x: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
        let m = Bf16Matrix::from_f32(&w, rows, cols);
        let mut xb = Vec::new();
        pack_vector(&x, &mut xb);
        let mut out = vec![0.0; rows];
        rows_model(&mut out, &m, &xb, None, 0);
        for (r, &o) in out.iter().enumerate() {
            let exact: f64 = (0..cols)
                .map(|k| bf16_to_f32(m.data[r * m.stride + k]) as f64 * bf16_to_f32(xb[k]) as f64)
                .sum();
            assert!((o as f64 - exact).abs() < 1e-4, "row {r}");
        }
    }

    /// The kernel against the model, bit for bit, on matrices with and
    /// without padding, row counts with and without a remainder of 4.
    #[test]
    fn kernel_matches_model_bit_for_bit() {
        if !has_avx512_bf16() {
            eprintln!("no AVX512_BF16 on this CPU: only the model runs");
            return;
        }
        let mut rng = Rng::new(8);
        for &cols in &[1usize, 31, 32, 33, 128, 256, 1000, 1024] {
            for &(rows, row0) in &[(1usize, 0usize), (7, 2), (64, 0), (37, 9)] {
                let w: Vec<f32> = (0..(rows + row0) * cols)
                    .map(|_| rng.normal() * 2f32.powi(rng.below(12) as i32 - 6))
                    .collect();
                let x: Vec<f32> = (0..cols).map(|_| rng.normal()).collect();
                let bias: Vec<f32> = (0..rows + row0).map(|_| rng.normal()).collect();
                let m = Bf16Matrix::from_f32(&w, rows + row0, cols);
                let mut xb = Vec::new();
                pack_vector(&x, &mut xb);
                for b in [None, Some(&bias[..])] {
                    let mut got = vec![0.0; rows];
                    let mut want = vec![0.0; rows];
                    gemv_rows(Bf16Kernel::Avx512Bf16, &mut got, &m, &xb, b, row0);
                    rows_model(&mut want, &m, &xb, b, row0);
                    let gb: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    let wb: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(gb, wb, "cols {cols} rows {rows} row0 {row0}");
                }
            }
        }
    }
}
