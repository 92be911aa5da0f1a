//! One vocabulary tile's elementwise work in the head: exponentials
//! against the tile's maximum (f32, or rounded to bf16 for the bf16 head)
//! and, in pass 2, the tile's dlogits rounded to bf16 in the two layouts
//! the products read.

use super::VOCAB_TILE;
use crate::ops::bf16::{from_bf16, to_bf16};
use crate::ops::fast_math::{SimdPath, simd_fn, simd_path};

simd_fn! {
    /// `row = exp(row - max(row))` in place; returns (max, Σ, the first
    /// index of the max or 0 unless `find_argmax`).
    pub(super) fn exp_tile(row: &mut [f32], find_argmax: bool) -> (f32, f32, usize) {
        crate::ops::softmax::exp_shifted(row, find_argmax)
    }
}

simd_fn! {
    /// `row = row · factor`.
    pub(super) fn scale_in_place(row: &mut [f32], factor: f32) {
        for x in row.iter_mut() {
            *x *= factor;
        }
    }
}

/// [`exp_tile`]'s statistics, the exponentials rounded to bf16 into
/// `out` and `row` left as it is. `ahead` is where a later row of
/// exponentials will be written: its lines are prefetched, as one row
/// (1 KiB) takes less time than a DRAM read.
pub(super) fn exp_tile_bf16(
    row: &[f32],
    out: &mut [u16],
    ahead: *const u16,
    find_argmax: bool,
) -> (f32, f32, usize) {
    prefetch_for_write(ahead, row.len());
    #[cfg(target_arch = "x86_64")]
    if simd_path() == SimdPath::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the AVX-512 path is only chosen where the CPU has
        // AVX-512F, and AVX512_BF16 was just detected.
        return unsafe { super::avx512::exp_tile_bf16_convert(row, out, find_argmax) };
    }
    exp_tile_bf16_simd(row, out, find_argmax)
}

simd_fn! {
    /// [`exp_tile_bf16`] on each SIMD path, rounding with integer
    /// arithmetic.
    fn exp_tile_bf16_simd(row: &[f32], out: &mut [u16], find_argmax: bool) -> (f32, f32, usize) {
        crate::ops::softmax::exp_shifted_bf16(row, out, find_argmax)
    }
}

simd_fn! {
    /// `out = bf16(f32(e) · factor)` for exponentials `e` stored as bf16.
    fn scale_to_bf16(out: &mut [u16], e: &[u16], factor: f32) {
        for (o, &x) in out.iter_mut().zip(e) {
            *o = to_bf16(from_bf16(x) * factor);
        }
    }
}

simd_fn! {
    /// Pairs of two rows of bf16: `out[j] = (lo[j], hi[j])`.
    fn interleave(out: &mut [u32], lo: &[u16], hi: &[u16]) {
        for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
            *o = l as u32 | (h as u32) << 16;
        }
    }
}

/// Pairs of one row of bf16 and zeros (a chunk's odd last row).
fn widen(out: &mut [u32], lo: &[u16]) {
    for (o, &l) in out.iter_mut().zip(lo) {
        *o = l as u32;
    }
}

/// Pairs seen as their bf16 halves in memory order: on a little-endian
/// machine half 2p is pair p's low half (k = 2p), as [`PairsRef`](crate::ops::bf16::PairsRef) wants;
/// [`halves_to_pairs`] fixes the order where it is not.
pub(super) fn as_halves(pairs: &mut [u32]) -> &mut [u16] {
    // SAFETY: the u16 view covers exactly the u32 slice's bytes, u16's
    // alignment divides u32's, and every bit pattern is a valid u16.
    unsafe { std::slice::from_raw_parts_mut(pairs.as_mut_ptr().cast::<u16>(), pairs.len() * 2) }
}

/// After writing through [`as_halves`]: element 2p in each pair's low half.
pub(super) fn halves_to_pairs(pairs: &mut [u32]) {
    if cfg!(target_endian = "big") {
        for p in pairs {
            *p = p.rotate_left(16);
        }
    }
}

/// The head's f32 scratch seen as bf16 halves, where the bf16 head keeps
/// its exponentials (tile `t` of a chunk at [`tile_offset`](super::tile_offset) in halves):
/// half the bytes of f32 to write in pass 1 and read back in pass 2.
pub(super) fn scratch_halves(scratch: &mut [f32]) -> &mut [u16] {
    // SAFETY: the u16 view covers exactly the f32 slice's bytes, u16's
    // alignment divides f32's, and every bit pattern is a valid u16.
    unsafe { std::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast::<u16>(), scratch.len() * 2) }
}

/// A tile's exponentials (rows, width), stored as bf16, and what turns
/// them into dlogits.
pub(super) struct TileSource<'a> {
    pub(super) e: &'a [u16],
    pub(super) width: usize,
    /// The tile's first column.
    pub(super) j0: usize,
    pub(super) targets: &'a [u32],
    pub(super) grad_scale: f32,
}

/// The tile's dlogits `factor(r) · e - grad_scale · onehot(target)`,
/// rounded to bf16, into both layouts the products read: `along`
/// (row r's bf16 at `r · VOCAB_TILE ..`, dx's left operand) and `down`
/// (rows 2q and 2q + 1 of column c as one pair at `q · VOCAB_TILE + c`,
/// dwte's left operand). Two rows at a time, so the stored tile, which
/// comes from memory, is read once.
///
/// `e` was rounded to bf16 when stored, so an element is
/// bf16(f32(bf16(e)) · factor), rounded twice: relative error up to
/// about 1.5 · 2⁻⁸ rather than 2⁻⁸, on dlogits whose own bf16 rounding
/// the products already accept. The target's element, p - 1, is taken
/// from its f32 exponential `target_e(r)` and rounded once: near p = 1
/// the stored exponential's rounding would be most of its value.
pub(super) fn tile_dlogits(
    along: &mut [u16],
    down: &mut [u32],
    s: &TileSource,
    factor: &dyn Fn(usize) -> f32,
    target_e: &dyn Fn(usize) -> f32,
) {
    let (width, rows) = (s.width, s.targets.len());
    for (q, down) in down
        .chunks_exact_mut(VOCAB_TILE)
        .enumerate()
        .take(rows.div_ceil(2))
    {
        let r = 2 * q;
        let (lo, rest) = along[r * VOCAB_TILE..].split_at_mut(VOCAB_TILE);
        let e_lo = &s.e[r * width..][..width];
        if width % 2 == 1 {
            // The pad half of the last pair, read by the dx product.
            lo[width] = 0;
        }
        if r + 1 < rows {
            let hi = &mut rest[..VOCAB_TILE];
            if width % 2 == 1 {
                hi[width] = 0;
            }
            let e_hi = &s.e[(r + 1) * width..][..width];
            let (f_lo, f_hi) = (factor(r), factor(r + 1));
            let done = round_two_rows_fast(lo, hi, down, [e_lo, e_hi], [f_lo, f_hi]);
            scale_to_bf16(&mut lo[done..width], &e_lo[done..], f_lo);
            scale_to_bf16(&mut hi[done..width], &e_hi[done..], f_hi);
            interleave(&mut down[done..width], &lo[done..width], &hi[done..width]);
        } else {
            scale_to_bf16(&mut lo[..width], e_lo, factor(r));
            widen(&mut down[..width], &lo[..width]);
        }
        // The targets' columns: -grad_scale added before the one rounding.
        for (half, row) in (r..(r + 2).min(rows)).enumerate() {
            let target = s.targets[row] as usize;
            if (s.j0..s.j0 + width).contains(&target) {
                let c = target - s.j0;
                let value = to_bf16(target_e(row) * factor(row) - s.grad_scale);
                along[row * VOCAB_TILE + c] = value;
                let shift = 16 * half;
                down[c] = down[c] & !(0xffff << shift) | (value as u32) << shift;
            }
        }
    }
}

/// [`scale_round_two_rows`](crate::ops::bf16::pack_avx512::scale_round_two_rows) where the SIMD path is AVX-512
/// (it is then present); returns the columns done, 0 elsewhere.
fn round_two_rows_fast(
    lo: &mut [u16],
    hi: &mut [u16],
    down: &mut [u32],
    e: [&[u16]; 2],
    factors: [f32; 2],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if simd_path() == SimdPath::Avx512 {
        // Prefetch four row pairs ahead: two rows are too short a stream
        // for the hardware prefetcher to learn in time.
        let ahead = 8 * e[0].len();
        // SAFETY: the AVX-512 SIMD path is only chosen where the CPU has
        // AVX-512F.
        return unsafe {
            crate::ops::bf16::pack_avx512::scale_round_two_rows(lo, hi, down, e, factors, ahead)
        };
    }
    let _ = (lo, hi, down, e, factors);
    0
}

/// Rows ahead whose stored exponentials' lines are prefetched in pass 1.
pub(super) const WRITE_AHEAD: usize = 4;

/// Asks for the cache lines of the `len` bf16 at `p` (a later row of
/// stored exponentials) in a state to be written.
#[inline(always)]
fn prefetch_for_write(p: *const u16, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in (0..len).step_by(32) {
        // SAFETY: a prefetch never faults, whatever the address;
        // wrapping_add makes no reference.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_ET0>(p.wrapping_add(i).cast());
        }
    }
    let _ = (p, len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fd;

    /// The bf16 head's exponentials: on every SIMD path, the statistics
    /// of [`exp_tile`] to the bit and its exponentials rounded by
    /// `to_bf16`, on rows with NaN, infinite and far-apart logits (the
    /// rounding there has no NaN case) and lengths around the lanes.
    #[test]
    fn bf16_exponentials_are_the_f32_ones_rounded() {
        use crate::ops::fast_math::{available_paths, with_path};
        for (n, seed) in [(1usize, 41u64), (15, 42), (16, 43), (37, 44), (512, 45)] {
            let mut row: Vec<f32> = fd::random(n, seed).iter().map(|v| v * 40.0).collect();
            if n > 3 {
                row[1] = f32::NAN;
                row[2] = -1e30;
                row[3] = f32::NEG_INFINITY;
            }
            let mut rows = vec![row.clone()];
            if n > 5 {
                let mut inf = row.clone();
                inf[5] = f32::INFINITY;
                rows.push(inf);
            }
            rows.push(vec![f32::NAN; n]);
            for row in &rows {
                for path in available_paths() {
                    let (want_row, want) = with_path(path, || {
                        let mut r = row.clone();
                        let st = exp_tile(&mut r, true);
                        (r, st)
                    });
                    let mut out = vec![7u16; n + 1];
                    let got = with_path(path, || {
                        exp_tile_bf16(row, &mut out[..n], std::ptr::null(), true)
                    });
                    let bits = |(m, s, a): (f32, f32, usize)| (m.to_bits(), s.to_bits(), a);
                    assert_eq!(bits(got), bits(want), "{path:?} n {n}");
                    for (c, (&o, &e)) in out.iter().zip(&want_row).enumerate() {
                        assert_eq!(o, to_bf16(e), "{path:?} n {n} column {c}");
                    }
                    assert_eq!(out[n], 7, "nothing written past the row");
                }
            }
        }
    }

    /// A tile's dlogits in both layouts, on every SIMD path, against a
    /// plain per-element rounding of `factor · e` for the stored bf16
    /// exponentials `e`, and of `factor · target_e - grad_scale` (the
    /// f32 exponential, not the stored one) at the target: an odd number
    /// of rows (the last pair half empty), an odd width past whole
    /// vectors, targets inside and outside the tile.
    #[test]
    fn tile_dlogits_round_each_element_once_in_both_layouts() {
        use crate::ops::fast_math::{available_paths, with_path};
        let (rows, width, j0, grad_scale) = (5usize, 83usize, 1024usize, 0.75f32);
        let e: Vec<u16> = fd::random(rows * width, 31)
            .iter()
            .map(|v| to_bf16(v.abs()))
            .collect();
        let targets = [1024 + 3, 7, 1024 + 82, 1024 + 16, 1024];
        let factors = [0.5f32, 1.25, 3e-3, 0.75, 2.0];
        // Not any stored value: taking the target's from `e` fails.
        let target_es = [0.9990001f32, 0.3, 0.123457, 0.999, 0.77777];
        let src = TileSource {
            e: &e,
            width,
            j0,
            targets: &targets,
            grad_scale,
        };
        let run = || {
            let mut along = vec![9u16; rows * VOCAB_TILE];
            let mut down = vec![9u32; rows.div_ceil(2) * VOCAB_TILE];
            tile_dlogits(&mut along, &mut down, &src, &|r| factors[r], &|r| {
                target_es[r]
            });
            (along, down)
        };
        let want = |r: usize, c: usize| {
            if targets[r] as usize == j0 + c {
                to_bf16(target_es[r] * factors[r] - grad_scale)
            } else {
                to_bf16(from_bf16(e[r * width + c]) * factors[r])
            }
        };
        for path in available_paths() {
            let (along, down) = with_path(path, run);
            for r in 0..rows {
                for c in 0..width {
                    assert_eq!(along[r * VOCAB_TILE + c], want(r, c), "{path:?} ({r}, {c})");
                }
                // The odd width's pad half is zero for the dx product.
                assert_eq!(along[r * VOCAB_TILE + width], 0);
            }
            for q in 0..rows.div_ceil(2) {
                for c in 0..width {
                    let hi = if 2 * q + 1 < rows {
                        want(2 * q + 1, c)
                    } else {
                        0
                    };
                    let pair = want(2 * q, c) as u32 | (hi as u32) << 16;
                    assert_eq!(down[q * VOCAB_TILE + c], pair, "{path:?} pair ({q}, {c})");
                }
            }
        }
    }
}
