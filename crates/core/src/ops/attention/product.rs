//! The one product both attention passes run: `c (+)= a · b` over a
//! causal shape, in register tiles of R x W (or 2W) accumulators, generic
//! over how a multiply-add rounds ([`MulAdd`]). The plain-Rust tile loop
//! here, with [`Separate`] multiplies and adds, is the portable path;
//! `avx512.rs` and `avx2.rs` replace the loop with intrinsics.

use super::{R, W, padded};
use std::cell::RefCell;

/// a · b + c, fused or not (the kernel is generic over it).
pub(super) trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;

    /// The k loop of an RR x WW tile written out by hand, where the path
    /// has one: `acc[r][j] = mul_add(a(i0 + r, k), b[k * b_rs + j0 + j],
    /// acc[r][j])` for k in k0..k1, in that order (so the bits are those
    /// of the generic loop). Returns false to leave it to the generic loop.
    ///
    /// # Safety
    /// Every index the loop forms is in bounds (the caller checks the last
    /// ones), and the path's CPU features are present.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_loop<const RR: usize, const WW: usize>(
        _acc: &mut [[f32; WW]; RR],
        _a: View,
        _i0: usize,
        _b: &[f32],
        _b_rs: usize,
        _j0: usize,
        _k0: usize,
        _k1: usize,
    ) -> bool {
        false
    }

    /// Whether [`MulAdd::transpose8x8`] is implemented.
    const TRANSPOSE8: bool = false;

    /// dst[d * ld + j] = src[j * rs + d] for d, j < 8.
    ///
    /// # Safety
    /// Both 8 x 8 blocks are in bounds; the path's CPU features are present.
    #[inline(always)]
    unsafe fn transpose8x8(_src: *const f32, _rs: usize, _dst: *mut f32, _ld: usize) {
        unreachable!("no block transpose on this path")
    }
}

/// Two roundings, for CPUs without FMA (`mul_add` would be a library call).
pub(super) struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// A read-only matrix view for [`product`]: element (r, k) at
/// `data[r * rs + k * cs]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) data: &'a [f32],
    pub(super) rs: usize,
    pub(super) cs: usize,
}

/// `c[i][j] (+)= Σ_k a(i, k) · b[k * b_rs + j]` for i < rows and
/// j < cols(i0), k in ks(i0) where i0 is the first row of i's block of
/// [`R`] rows (tail rows go one at a time). `b`'s rows are contiguous and
/// must hold `padded(cols)` readable floats when `pad_b` (a packed, zero-padded
/// operand; then whole [`W`]-wide tiles are computed and stored up to the
/// padded width, which `c` must hold) or else columns past `cols` are done
/// one at a time. Tiles of R x W accumulators stay in registers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn product<M: MulAdd>(
    c: &mut [f32],
    c_rs: usize,
    rows: usize,
    a: View,
    b: &[f32],
    b_rs: usize,
    pad_b: bool,
    accumulate: bool,
    cols: impl Fn(usize) -> usize,
    ks: impl Fn(usize) -> (usize, usize),
) {
    let mut i0 = 0;
    while i0 < rows {
        let block = if rows - i0 >= R { R } else { 1 };
        let n_cols = cols(i0);
        let (k0, k1) = ks(i0);
        let wide = if pad_b {
            padded(n_cols)
        } else {
            n_cols - n_cols % W
        };
        let mut j0 = 0;
        // Two vectors wide where there is room: 16 independent
        // accumulator chains hide the FMA latency and halve the
        // broadcasts of `a` per multiply-add.
        while j0 + 2 * W <= wide {
            if block == R {
                tile::<R, { 2 * W }, M>(c, c_rs, i0, j0, a, b, b_rs, k0, k1, accumulate);
            } else {
                tile::<1, { 2 * W }, M>(c, c_rs, i0, j0, a, b, b_rs, k0, k1, accumulate);
            }
            j0 += 2 * W;
        }
        while j0 < wide {
            if block == R {
                tile::<R, W, M>(c, c_rs, i0, j0, a, b, b_rs, k0, k1, accumulate);
            } else {
                tile::<1, W, M>(c, c_rs, i0, j0, a, b, b_rs, k0, k1, accumulate);
            }
            j0 += W;
        }
        while j0 < n_cols {
            if block == R {
                tile::<R, 1, M>(c, c_rs, i0, j0, a, b, b_rs, k0, k1, accumulate);
            } else {
                tile::<1, 1, M>(c, c_rs, i0, j0, a, b, b_rs, k0, k1, accumulate);
            }
            j0 += 1;
        }
        i0 += block;
    }
}

/// One RR x WW tile of [`product`] at rows i0.., columns j0...
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const RR: usize, const WW: usize, M: MulAdd>(
    c: &mut [f32],
    c_rs: usize,
    i0: usize,
    j0: usize,
    a: View,
    b: &[f32],
    b_rs: usize,
    k0: usize,
    k1: usize,
    accumulate: bool,
) {
    let mut acc = [[0.0f32; WW]; RR];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            let at = (i0 + r) * c_rs + j0;
            row.copy_from_slice(&c[at..at + WW]);
        }
    }
    if k0 < k1 {
        // Every index the loop below forms is at most these, checked once
        // here so the loop runs without per-element bounds checks.
        let a_last = (i0 + RR - 1) * a.rs + (k1 - 1) * a.cs;
        let b_last = (k1 - 1) * b_rs + j0 + WW - 1;
        assert!(
            a_last < a.data.len() && b_last < b.len(),
            "attention tile out of bounds"
        );
        // SAFETY: indices checked just above; M's features are those of
        // the path the caller was compiled for.
        unsafe {
            if !M::tile_loop(&mut acc, a, i0, b, b_rs, j0, k0, k1) {
                generic_tile_loop::<RR, WW, M>(&mut acc, a, i0, b, b_rs, j0, k0, k1);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let at = (i0 + r) * c_rs + j0;
        c[at..at + WW].copy_from_slice(row);
    }
}

/// The k loop of [`tile`] as plain Rust, vectorised by the compiler.
///
/// # Safety
/// Every index the loop forms is in bounds (the caller checks the last).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn generic_tile_loop<const RR: usize, const WW: usize, M: MulAdd>(
    acc: &mut [[f32; WW]; RR],
    a: View,
    i0: usize,
    b: &[f32],
    b_rs: usize,
    j0: usize,
    k0: usize,
    k1: usize,
) {
    for k in k0..k1 {
        // SAFETY: k * b_rs + j0 + WW - 1 <= b_last < b.len() (caller).
        let b_row: &[f32; WW] = unsafe { &*b.as_ptr().add(k * b_rs + j0).cast::<[f32; WW]>() };
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: (i0 + r) * a.rs + k * a.cs <= a_last < a.data.len() (caller).
            let av = unsafe { *a.data.get_unchecked((i0 + r) * a.rs + k * a.cs) };
            for (o, &bv) in row.iter_mut().zip(b_row) {
                *o = M::mul_add(av, bv, *o);
            }
        }
    }
}

thread_local! {
    /// Each thread's packed Kᵀ and Vᵀ (hs, padded T), zero-padded.
    pub(super) static PACKS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Writes the transpose of the (t, hs) strided slice `src` (row stride
/// `rs`) into `dst` (hs, ld), zero in columns t .. ld: 8 x 8 blocks where
/// the path has a block transpose, element by element elsewhere.
#[inline(always)]
pub(super) fn pack_transposed<M: MulAdd>(
    dst: &mut [f32],
    src: &[f32],
    t: usize,
    hs: usize,
    rs: usize,
    ld: usize,
) {
    let dst = &mut dst[..hs * ld];
    if t == 0 {
        return;
    }
    assert!((t - 1) * rs + hs <= src.len(), "pack out of bounds");
    assert!(t <= ld, "pack: {t} rows do not fit a row of {ld}");
    let (tb, hb) = if M::TRANSPOSE8 {
        (t - t % 8, hs - hs % 8)
    } else {
        (0, 0)
    };
    for d0 in (0..hb).step_by(8) {
        for j0 in (0..tb).step_by(8) {
            // SAFETY: rows j0..j0+8 <= t of src hold columns d0..d0+8 <= hs
            // (checked above), rows d0..d0+8 <= hs of dst hold columns
            // j0..j0+8 <= t <= ld; M's features are the caller's path.
            unsafe {
                M::transpose8x8(
                    src.as_ptr().add(j0 * rs + d0),
                    rs,
                    dst.as_mut_ptr().add(d0 * ld + j0),
                    ld,
                )
            }
        }
    }
    for (d, out) in dst.chunks_exact_mut(ld).enumerate() {
        let (live, pad) = out.split_at_mut(t);
        // What the blocks left: the tail columns of their rows, and whole
        // rows past them (or every row, where the path has no blocks).
        let first = if d < hb { tb } else { 0 };
        for (j, o) in live.iter_mut().enumerate().skip(first) {
            // SAFETY: j * rs + d <= (t - 1) * rs + hs - 1 < src.len().
            *o = unsafe { *src.get_unchecked(j * rs + d) };
        }
        pad.fill(0.0);
    }
}
