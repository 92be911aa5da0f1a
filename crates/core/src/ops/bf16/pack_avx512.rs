//! Rounding f32 to bf16 pairs with AVX-512F, for the packers of
//! `pack.rs`: the same bits as the scalar [`super::pair`] (round to nearest
//! even, NaNs quieted, subnormals kept), sixteen at a time.
//!
//! Why: as baseline x86-64 code (SSE2) re-packing the weights ran far
//! above its memory floor, most of it the transposed layout of a large
//! embedding written one element at a time. Here rows are converted 32
//! floats at a time and 16 x 16 tiles of pairs are transposed in registers.
//! `vcvtne2ps2bf16` would round in one instruction but flushes subnormal
//! inputs to zero, which the scalar rounding does not; integer arithmetic
//! keeps the two paths bit-identical (tested below on every kind of float).
//! Where AVX-512F is missing the callers keep the scalar code.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// True where these kernels run (decided at run time; std caches it).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && crate::ops::fast_math::detected_path() == crate::ops::fast_math::SimdPath::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Each 32-bit lane's float rounded to bf16, in the low 16 bits (the
/// vector form of [`super::to_bf16`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn round16(bits: __m512i) -> __m512i {
    let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
    let bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb);
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, bias));
    let magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fff_ffff));
    let nan = _mm512_cmpgt_epu32_mask(magnitude, _mm512_set1_epi32(0x7f80_0000));
    let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x40));
    _mm512_mask_mov_epi32(rounded, nan, quiet)
}

/// The 16 pairs of 32 consecutive floats at `src`.
///
/// # Safety
/// `src` must be valid for 32 reads; AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pairs16(src: *const f32) -> __m512i {
    // SAFETY: 32 floats readable (the caller's promise).
    let (a, b) = unsafe {
        (
            round16(_mm512_castps_si512(_mm512_loadu_ps(src))),
            round16(_mm512_castps_si512(_mm512_loadu_ps(src.add(16)))),
        )
    };
    // A 64-bit lane holds bf16(x[2j]) in bits 0..16 and bf16(x[2j+1]) in
    // bits 32..48: or-ing in the lane shifted right by 16 puts the pair in
    // its low 32 bits, which vpmovqd keeps.
    let a = _mm512_cvtepi64_epi32(_mm512_or_si512(a, _mm512_srli_epi64::<16>(a)));
    let b = _mm512_cvtepi64_epi32(_mm512_or_si512(b, _mm512_srli_epi64::<16>(b)));
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b)
}

/// [`super::pack_row_into`] for the whole pairs of `row`: returns
/// how many pairs it wrote (a multiple of 16); the caller packs the rest.
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn pack_row_pairs(out: &mut [u32], row: &[f32]) -> usize {
    let tiles = (row.len() / 32).min(out.len() / 16);
    for t in 0..tiles {
        // SAFETY: 32 floats from 32 t and 16 pairs from 16 t are in bounds.
        unsafe {
            let v = pairs16(row.as_ptr().add(32 * t));
            _mm512_storeu_si512(out.as_mut_ptr().add(16 * t).cast(), v);
        }
    }
    16 * tiles
}

/// `out[c]` = (lo[c], hi[c]) as a pair, for the first multiple of 16
/// columns; returns how many it wrote.
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn pack_column_pairs(out: &mut [u32], lo: &[f32], hi: &[f32]) -> usize {
    let n = out.len().min(lo.len()).min(hi.len()) / 16 * 16;
    for c in (0..n).step_by(16) {
        // SAFETY: 16 elements from c are in bounds of all three.
        unsafe {
            let l = round16(_mm512_castps_si512(_mm512_loadu_ps(lo.as_ptr().add(c))));
            let h = round16(_mm512_castps_si512(_mm512_loadu_ps(hi.as_ptr().add(c))));
            let v = _mm512_or_si512(l, _mm512_slli_epi32::<16>(h));
            _mm512_storeu_si512(out.as_mut_ptr().add(c).cast(), v);
        }
    }
    n
}

/// Transposes 16 vectors of 16 u32 (rows) into columns.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // Within 128-bit lanes: 4 x 4 blocks, column j of lane L = column 4L+j.
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for g in 0..4 {
        let b = 4 * g;
        u[b] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
        u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
        u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
        u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
    }
    // u[4g + j], lane L = column 4L + j of rows 4g..4g+4: a 4 x 4
    // transpose of 128-bit lanes over g gives whole columns.
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let (a, b, c, d) = (u[j], u[4 + j], u[8 + j], u[12 + j]);
        let v0 = _mm512_shuffle_i32x4::<0x44>(a, b);
        let v1 = _mm512_shuffle_i32x4::<0xee>(a, b);
        let v2 = _mm512_shuffle_i32x4::<0x44>(c, d);
        let v3 = _mm512_shuffle_i32x4::<0xee>(c, d);
        out[j] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[4 + j] = _mm512_shuffle_i32x4::<0xdd>(v0, v2);
        out[8 + j] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + j] = _mm512_shuffle_i32x4::<0xdd>(v1, v3);
    }
    out
}

/// The transposed layout of [`super::pack_rows_transposed_range`] for
/// 16 rows starting at `r0` (each with at least `2 (first + 16 tiles)`
/// floats) and pair rows `0 .. 16 tiles` of `dst`: element (r, k) is the
/// pair (row[2 (first + k)], row[2 (first + k) + 1]) at `k * stride + r`.
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn pack_tile_rows_transposed(
    dst: &mut [u32],
    stride: usize,
    r0: usize,
    rows: [&[f32]; 16],
    first: usize,
    tiles: usize,
) {
    for t in 0..tiles {
        let at = 2 * (first + 16 * t);
        let mut v = [_mm512_setzero_si512(); 16];
        for (x, row) in v.iter_mut().zip(&rows) {
            let src = &row[at..at + 32];
            // SAFETY: 32 floats, bounds-checked just above.
            *x = unsafe { pairs16(src.as_ptr()) };
        }
        let cols = transpose16(v);
        for (j, c) in cols.iter().enumerate() {
            let start = (16 * t + j) * stride + r0;
            let out = &mut dst[start..start + 16];
            // SAFETY: 16 u32, bounds-checked just above.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), *c) };
        }
    }
}

/// Sixteen bf16 values at `src` widened to f32 (exact).
///
/// # Safety
/// `src` must be valid for 16 reads; AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn widen16(src: *const u16) -> __m512 {
    // SAFETY: 16 u16 readable (the caller's promise).
    let h = unsafe { _mm256_loadu_si256(src.cast()) };
    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
}

/// Two rows of a head tile's dlogits rounded to bf16 at once, in the two
/// layouts the head's products read, from the tile's exponentials stored
/// as bf16: `lo_out[c]` = bf16(f32(lo[c]) · f_lo), `hi_out[c]` =
/// bf16(f32(hi[c]) · f_hi), and `down[c]` their pair. The same bits as
/// the scalar `scale_to_bf16` and `interleave` in `crossentropy`, in one
/// pass over the stored rows instead of three. Returns how many columns
/// it wrote (a multiple of 16); the caller does the rest.
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub unsafe fn scale_round_two_rows(
    lo_out: &mut [u16],
    hi_out: &mut [u16],
    down: &mut [u32],
    [lo, hi]: [&[u16]; 2],
    [f_lo, f_hi]: [f32; 2],
    ahead: usize,
) -> usize {
    let n = lo_out
        .len()
        .min(hi_out.len())
        .min(down.len())
        .min(lo.len())
        .min(hi.len())
        / 16
        * 16;
    let (f_lo, f_hi) = (_mm512_set1_ps(f_lo), _mm512_set1_ps(f_hi));
    for c in (0..n).step_by(16) {
        // Two rows are two short streams (1 KiB each in a head tile) that
        // the hardware prefetcher learns too late; ask for the same
        // columns `ahead` elements on (the caller's next rows) instead.
        // Prefetches never fault, and wrapping_add makes no reference.
        // (16 bf16 are half a cache line: every other one is a repeat.)
        _mm_prefetch::<_MM_HINT_T0>(lo.as_ptr().wrapping_add(c + ahead).cast());
        _mm_prefetch::<_MM_HINT_T0>(hi.as_ptr().wrapping_add(c + ahead).cast());
        // SAFETY: 16 elements from c are in bounds of all five slices.
        unsafe {
            let a = _mm512_mul_ps(widen16(lo.as_ptr().add(c)), f_lo);
            let b = _mm512_mul_ps(widen16(hi.as_ptr().add(c)), f_hi);
            let (a, b) = (
                round16(_mm512_castps_si512(a)),
                round16(_mm512_castps_si512(b)),
            );
            _mm256_storeu_si256(lo_out.as_mut_ptr().add(c).cast(), _mm512_cvtepi32_epi16(a));
            _mm256_storeu_si256(hi_out.as_mut_ptr().add(c).cast(), _mm512_cvtepi32_epi16(b));
            let pairs = _mm512_or_si512(a, _mm512_slli_epi32::<16>(b));
            _mm512_storeu_si512(down.as_mut_ptr().add(c).cast(), pairs);
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::super::pack::{
        pack_columns_range_scalar, pack_row_into_scalar, pack_rows_transposed_range_scalar,
    };
    use super::super::{pack_columns, pack_row_into, pack_rows_transposed, round_up_lanes};
    use crate::ops::matmul::MatRef;
    use crate::rng::Rng;

    /// Floats of every kind: normal of many scales, both zeros, subnormal,
    /// infinities, NaNs (quiet, signalling, negative), and values at a
    /// rounding tie.
    fn awkward(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| match i % 11 {
                0 => f32::from_bits(rng.next_u64() as u32),
                1 => f32::from_bits((rng.next_u64() as u32) & 0x807f_ffff),
                2 => [0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY][(i / 11) % 4],
                3 => f32::from_bits(0x7f80_0001 + (i as u32 % 5)),
                4 => f32::from_bits(0xffc0_0000 | i as u32),
                5 => f32::from_bits(0x3f80_8000 + ((i as u32 & 1) << 16)),
                _ => (rng.next_f32() - 0.5) * 10f32.powi((i % 7) as i32 - 3),
            })
            .collect()
    }

    /// Two rows of bf16 widened, scaled and rounded at once against
    /// `to_bf16(from_bf16(x) · f)` of each element, on bf16 of every kind
    /// (signalling NaNs too) and factors that make products overflow, go
    /// subnormal or stay exact.
    #[test]
    fn two_row_rounding_gives_the_scalar_bits() {
        if !super::available() {
            eprintln!("no AVX-512F here: the scalar rounding is the only path");
            return;
        }
        use super::super::{from_bf16, to_bf16};
        let halves = |n: usize, seed: u64| -> Vec<u16> {
            let x = awkward(n, seed);
            (0..n)
                .map(|i| match i % 13 {
                    // Signalling NaNs and a bf16 subnormal, which rounding
                    // an f32 never gives.
                    12 => [0x7f81, 0xff85, 0x0003][(i / 13) % 3],
                    _ => to_bf16(x[i]),
                })
                .collect()
        };
        for (n, seed) in [(16, 1), (48, 2), (83, 3)] {
            let (lo, hi) = (halves(n, seed), halves(n, seed + 10));
            for (f_lo, f_hi) in [(1.0, 1.0), (0.37, 3e37), (1e-39, -2.5)] {
                let (mut a, mut b, mut d) = (vec![1u16; n], vec![2u16; n], vec![3u32; n]);
                // SAFETY: AVX-512F is present (checked above).
                let done = unsafe {
                    super::scale_round_two_rows(
                        &mut a,
                        &mut b,
                        &mut d,
                        [&lo, &hi],
                        [f_lo, f_hi],
                        64,
                    )
                };
                assert_eq!(done, n / 16 * 16);
                for c in 0..n {
                    if c >= done {
                        // Left to the caller, untouched.
                        assert_eq!((a[c], b[c], d[c]), (1, 2, 3));
                        continue;
                    }
                    let x = to_bf16(from_bf16(lo[c]) * f_lo);
                    let y = to_bf16(from_bf16(hi[c]) * f_hi);
                    assert_eq!((a[c], b[c]), (x, y), "column {c} of {n}");
                    assert_eq!(d[c], x as u32 | (y as u32) << 16, "pair {c} of {n}");
                }
            }
        }
    }

    #[test]
    fn fast_packers_give_the_scalar_bits() {
        if !super::available() {
            eprintln!("no AVX-512F here: the scalar packers are the only path");
            return;
        }
        for (rows, cols, seed) in [
            (1, 1, 1),
            (17, 33, 2),
            (40, 64, 3),
            (50, 257, 4),
            (33, 96, 5),
        ] {
            let x = awkward(rows * cols, seed);
            let m = MatRef::new(&x, rows, cols);
            // Rows of pairs.
            for r in 0..rows {
                let row = &x[r * cols..(r + 1) * cols];
                let (mut fast, mut slow) =
                    (vec![7u32; cols.div_ceil(2)], vec![7u32; cols.div_ceil(2)]);
                pack_row_into(&mut fast, row);
                pack_row_into_scalar(&mut slow, row);
                assert_eq!(fast, slow, "row {r} of {rows}x{cols}");
            }
            // Column pairs, whole and from a later pair row.
            let mut fast = Vec::new();
            pack_columns(&mut fast, m);
            let mut slow = vec![0u32; fast.len()];
            pack_columns_range_scalar(&mut slow, m, 0);
            assert_eq!(fast, slow, "columns of {rows}x{cols}");
            // Transposed, whole and for pair rows from `first` on.
            let mut fast = Vec::new();
            pack_rows_transposed(&mut fast, m);
            let mut slow = vec![0u32; fast.len()];
            pack_rows_transposed_range_scalar(&mut slow, m, 0);
            assert_eq!(fast, slow, "transposed {rows}x{cols}");
            let stride = round_up_lanes(rows);
            let pairs = cols.div_ceil(2);
            for first in [1, 3, 16].into_iter().filter(|&f| f < pairs) {
                let count = pairs - first;
                let mut fast = vec![0u32; count * stride];
                super::super::pack_rows_transposed_range(&mut fast, m, first);
                let mut slow = vec![0u32; count * stride];
                pack_rows_transposed_range_scalar(&mut slow, m, first);
                assert_eq!(fast, slow, "transposed {rows}x{cols} from pair {first}");
            }
        }
    }
}
