//! The bf16 product on `vdpbf16ps` (AVX512_BF16): register tiles of up to
//! 12 rows x 32 columns, blocked so a block of B stays in L2.

use super::{LANES, MatMut, PairsRef, Start};
use std::arch::x86_64::*;

/// Rows of a register tile: 2 x MR accumulators of 16 lanes.
const MR: usize = 12;
/// Pairs per block: a block of B (KC pairs x NC columns, 512 KiB)
/// stays in L2 while every row block of A passes over it.
const KC: usize = 256;
const NC: usize = 512;

/// # Safety
/// The CPU has avx512f and avx512bf16; the views are in bounds and B
/// is lane-padded (see `matmul_pairs_with`).
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn matmul(out: MatMut, a: PairsRef, b: PairsRef, start: Start) {
    let accumulate = matches!(start, Start::Out);
    let bias = match start {
        Start::Bias(bias) => bias.as_ptr(),
        _ => std::ptr::null(),
    };
    let (m, n, kp) = (a.rows, b.rows, a.pairs);
    let out_stride = out.row_stride();
    let out_ptr = out.into_data().as_mut_ptr();
    let mut p0 = 0;
    loop {
        let kc = KC.min(kp - p0.min(kp));
        // The first block starts from zero or the output's old value,
        // later ones from the partial sums they stored (exact).
        let load = accumulate || p0 > 0;
        for j0 in (0..n).step_by(NC) {
            let j_end = (j0 + NC).min(n);
            for i0 in (0..m).step_by(MR) {
                let rows = MR.min(m - i0);
                for j in (j0..j_end).step_by(LANES) {
                    let cols = LANES.min(j_end - j);
                    // SAFETY: rows, cols and kc stay inside the views.
                    unsafe {
                        if load && i0 + MR < m {
                            // A product with a short inner size (the
                            // head's dwte: 128 pairs per chunk) spends
                            // as long loading its output from DRAM as
                            // multiplying; fetch the next row block's
                            // outputs while this one computes.
                            let next = out_ptr.add((i0 + MR) * out_stride + j);
                            for r in 0..MR.min(m - i0 - MR) {
                                let o = next.add(r * out_stride) as *const i8;
                                _mm_prefetch::<_MM_HINT_T0>(o);
                                _mm_prefetch::<_MM_HINT_T0>(o.add(64 * usize::from(cols > 16)));
                            }
                        }
                        let a_ptr = a.data.as_ptr().add(i0 * a.row_stride + p0 * a.pair_stride);
                        let b_ptr = b.data.as_ptr().add(j + p0 * b.pair_stride);
                        let o_ptr = out_ptr.add(i0 * out_stride + j);
                        let t = Tile {
                            a: a_ptr,
                            a_rs: a.row_stride,
                            a_ps: a.pair_stride,
                            b: b_ptr,
                            b_ps: b.pair_stride,
                            kc,
                            out: o_ptr,
                            out_rs: out_stride,
                            cols,
                            load,
                            // The first block starts from the bias.
                            bias: if p0 == 0 && !bias.is_null() {
                                bias.add(j)
                            } else {
                                std::ptr::null()
                            },
                        };
                        crate::ops::dispatch_tile_rows!(rows, tile, &t)
                    }
                }
            }
        }
        p0 += kc;
        if p0 >= kp {
            break;
        }
    }
}

struct Tile {
    a: *const u32,
    a_rs: usize,
    a_ps: usize,
    b: *const u32,
    b_ps: usize,
    kc: usize,
    out: *mut f32,
    out_rs: usize,
    cols: usize,
    load: bool,
    /// Where not null (and not `load`): `cols` values every row starts from.
    bias: *const f32,
}

/// R rows x 32 columns of the output over `kc` pairs.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn tile<const R: usize>(t: &Tile) {
    let m0: __mmask16 = if t.cols >= 16 {
        0xffff
    } else {
        (1u32 << t.cols) as u16 - 1
    };
    let m1: __mmask16 = if t.cols >= 32 {
        0xffff
    } else if t.cols > 16 {
        ((1u32 << (t.cols - 16)) - 1) as u16
    } else {
        0
    };
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    // SAFETY (whole body): the caller's Tile addresses R rows of A over
    // kc pairs, lane-padded rows of B, and R x cols outputs.
    unsafe {
        if t.load {
            for (r, row) in acc.iter_mut().enumerate() {
                let o = t.out.add(r * t.out_rs);
                row[0] = _mm512_maskz_loadu_ps(m0, o);
                row[1] = _mm512_maskz_loadu_ps(m1, o.add(16));
            }
        } else if !t.bias.is_null() {
            let b0 = _mm512_maskz_loadu_ps(m0, t.bias);
            let b1 = _mm512_maskz_loadu_ps(m1, t.bias.add(16));
            for row in acc.iter_mut() {
                *row = [b0, b1];
            }
        }
        for p in 0..t.kc {
            let bp = t.b.add(p * t.b_ps);
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp as *const _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(16) as *const _));
            let ap = t.a.add(p * t.a_ps);
            for (r, row) in acc.iter_mut().enumerate() {
                let av: __m512bh =
                    std::mem::transmute(_mm512_set1_epi32(*ap.add(r * t.a_rs) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                row[1] = _mm512_dpbf16_ps(row[1], av, b1);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let o = t.out.add(r * t.out_rs);
            _mm512_mask_storeu_ps(o, m0, row[0]);
            _mm512_mask_storeu_ps(o.add(16), m1, row[1]);
        }
    }
}
