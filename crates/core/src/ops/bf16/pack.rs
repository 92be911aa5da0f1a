//! f32 operands into bf16 pairs, in the three layouts the products read
//! (rows, columns, rows transposed), with their AVX-512F path where the CPU
//! has it (`pack_avx512.rs`, the same bits).

use super::{PairsRef, pair, round_up_lanes};
use crate::ops::matmul::MatRef;

/// Element (r, c) of an f32 view, or 0 past its edge (odd inner sizes).
#[inline]
fn get_or_zero(x: &MatRef, r: usize, c: usize) -> f32 {
    if r < x.rows() && c < x.cols() {
        x.at(r, c)
    } else {
        0.0
    }
}

/// Sizes a reused buffer to `len` words without clearing it (the packers
/// write every word, so zeroing them first would be wasted work).
fn fit(dst: &mut Vec<u32>, len: usize) {
    if dst.len() < len {
        dst.resize(len, 0);
    } else {
        dst.truncate(len);
    }
}

/// Packs X (R, K) as the pairs of its rows: element (r, p) = (X[r, 2p],
/// X[r, 2p+1]), stored row after row. As a left operand this is X itself.
pub fn pack_rows<'a>(dst: &'a mut Vec<u32>, x: MatRef) -> PairsRef<'a> {
    let (rows, pairs) = (x.rows(), x.cols().div_ceil(2));
    fit(dst, rows * pairs);
    for (r, out) in dst.chunks_exact_mut(pairs.max(1)).enumerate().take(rows) {
        match x.row_slice(r) {
            Some(row) => pack_row_into(out, row),
            None => {
                for (p, o) in out.iter_mut().enumerate() {
                    *o = pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
                }
            }
        }
    }
    PairsRef::new(dst, rows, pairs, pairs, 1)
}

/// One row's pairs: `out[p]` = (row[2p], row[2p+1]), an odd tail padded
/// with zero.
#[inline]
pub fn pack_row_into(out: &mut [u32], row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::pack_avx512::available() {
        // SAFETY: AVX-512F is present.
        let done = unsafe { super::pack_avx512::pack_row_pairs(out, row) };
        return pack_row_into_scalar(&mut out[done..], &row[2 * done..]);
    }
    pack_row_into_scalar(out, row)
}

/// [`pack_row_into`] in scalar code (the reference of the fast path, and
/// the tail it leaves).
pub(super) fn pack_row_into_scalar(out: &mut [u32], row: &[f32]) {
    let whole = row.len() / 2;
    for (o, two) in out[..whole].iter_mut().zip(row.chunks_exact(2)) {
        *o = pair(two[0], two[1]);
    }
    if row.len() % 2 == 1 {
        out[whole] = pair(row[row.len() - 1], 0.0);
    }
}

/// Packs X (K, N) as pairs down its columns: element (c, p) = (X[2p, c],
/// X[2p+1, c]), stored pair row after pair row, each padded to a multiple
/// of [`LANES`](super::LANES). As a left operand this is Xᵀ; as a right operand, X.
pub fn pack_columns<'a>(dst: &'a mut Vec<u32>, x: MatRef) -> PairsRef<'a> {
    let (cols, pairs) = (x.cols(), x.rows().div_ceil(2));
    let stride = round_up_lanes(cols);
    fit(dst, pairs * stride);
    pack_columns_range(dst, x, 0);
    PairsRef::new(dst, cols, pairs, 1, stride)
}

/// The pair rows `first ..` of [`pack_columns`] into `dst` (whole rows of
/// the padded stride).
pub fn pack_columns_range(dst: &mut [u32], x: MatRef, first: usize) {
    pack_columns_range_with(dst, x, first, super::pack_avx512::available())
}

/// [`pack_columns_range`] in scalar code only (the fast path's reference).
#[cfg(test)]
pub(super) fn pack_columns_range_scalar(dst: &mut [u32], x: MatRef, first: usize) {
    pack_columns_range_with(dst, x, first, false)
}

fn pack_columns_range_with(dst: &mut [u32], x: MatRef, first: usize, fast: bool) {
    let cols = x.cols();
    let stride = round_up_lanes(cols);
    for (k, out) in dst.chunks_exact_mut(stride).enumerate() {
        let p = first + k;
        out[cols..].fill(0);
        match (x.row_slice(2 * p), x.row_slice(2 * p + 1)) {
            (Some(lo), Some(hi)) => {
                let mut done = 0;
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: AVX-512F is present (`fast`).
                    done =
                        unsafe { super::pack_avx512::pack_column_pairs(&mut out[..cols], lo, hi) };
                }
                let _ = fast;
                for ((o, &l), &h) in out[done..cols].iter_mut().zip(&lo[done..]).zip(&hi[done..]) {
                    *o = pair(l, h);
                }
            }
            (Some(lo), None) => {
                for (o, &l) in out[..cols].iter_mut().zip(lo) {
                    *o = pair(l, 0.0);
                }
            }
            _ => {
                for (c, o) in out[..cols].iter_mut().enumerate() {
                    *o = pair(get_or_zero(&x, 2 * p, c), get_or_zero(&x, 2 * p + 1, c));
                }
            }
        }
    }
}

/// Packs X (N, K) as its row pairs laid out transposed: element (r, p) =
/// (X[r, 2p], X[r, 2p+1]) at `p * stride + r`, the stride a multiple of
/// [`LANES`](super::LANES). As a right operand this is Xᵀ (a weight used as `x · Wᵀ`).
pub fn pack_rows_transposed<'a>(dst: &'a mut Vec<u32>, x: MatRef) -> PairsRef<'a> {
    let (rows, pairs) = (x.rows(), x.cols().div_ceil(2));
    let stride = round_up_lanes(rows);
    dst.clear();
    dst.resize(pairs * stride, 0);
    pack_rows_transposed_range(dst, x, 0);
    PairsRef::new(dst, rows, pairs, 1, stride)
}

/// The pair rows `first ..` of [`pack_rows_transposed`] into `dst`.
pub fn pack_rows_transposed_range(dst: &mut [u32], x: MatRef, first: usize) {
    #[cfg(target_arch = "x86_64")]
    if super::pack_avx512::available() {
        return pack_rows_transposed_range_fast(dst, x, first);
    }
    pack_rows_transposed_range_scalar(dst, x, first)
}

/// [`pack_rows_transposed_range`] with AVX-512F: whole 16 x 16 tiles of
/// (rows, pairs) in registers, the edges in scalar code.
#[cfg(target_arch = "x86_64")]
fn pack_rows_transposed_range_fast(dst: &mut [u32], x: MatRef, first: usize) {
    let rows = x.rows();
    let stride = round_up_lanes(rows);
    let count = dst.len() / stride;
    // Pair rows whose two floats exist in every row, in whole tiles.
    let tiles = ((x.cols() / 2).saturating_sub(first)).min(count) / 16;
    let mut r0 = 0;
    while r0 + 16 <= rows && tiles > 0 {
        if (r0..r0 + 16).any(|r| x.row_slice(r).is_none()) {
            break;
        }
        let rows16: [&[f32]; 16] =
            std::array::from_fn(|i| x.row_slice(r0 + i).expect("checked just above"));
        // SAFETY: AVX-512F is present (checked by the caller).
        unsafe {
            super::pack_avx512::pack_tile_rows_transposed(dst, stride, r0, rows16, first, tiles)
        };
        // The pair rows past the tiles, for these rows.
        for r in r0..r0 + 16 {
            for k in 16 * tiles..count {
                let p = first + k;
                dst[k * stride + r] =
                    pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
            }
        }
        r0 += 16;
    }
    // The rows past the last whole tile (or all of them, for views without
    // contiguous rows).
    for r in r0..rows {
        for k in 0..count {
            let p = first + k;
            dst[k * stride + r] = pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
        }
    }
}

/// [`pack_rows_transposed_range`] in scalar code (the fast path's
/// reference, and the path without AVX-512F).
pub(super) fn pack_rows_transposed_range_scalar(dst: &mut [u32], x: MatRef, first: usize) {
    let rows = x.rows();
    let stride = round_up_lanes(rows);
    let count = dst.len() / stride;
    // Blocks of rows: a block's pairs are converted row by row (contiguous,
    // vectorised) into a small buffer, then written out transposed, one
    // contiguous run of the block's rows per pair row.
    const BLOCK: usize = 64;
    let mut block = vec![0u32; BLOCK * count];
    for r0 in (0..rows).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(rows);
        for (i, r) in (r0..r1).enumerate() {
            let out = &mut block[i * count..(i + 1) * count];
            match x.row_slice(r) {
                Some(row) => {
                    let lo = (2 * first).min(row.len());
                    let hi = (2 * (first + count)).min(row.len());
                    out.fill(0);
                    pack_row_into(out, &row[lo..hi]);
                }
                None => {
                    for (k, o) in out.iter_mut().enumerate() {
                        let p = first + k;
                        *o = pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
                    }
                }
            }
        }
        for k in 0..count {
            let out = &mut dst[k * stride + r0..k * stride + r1];
            for (i, o) in out.iter_mut().enumerate() {
                *o = block[i * count + k];
            }
        }
    }
}
