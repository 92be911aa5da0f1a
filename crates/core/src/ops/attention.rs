//! Causal multi-head self-attention (the part between c_attn and c_proj).
//!
//! For each sequence b and head h, with Q, K, V the head's (T, hs) slices of
//! the interleaved qkv buffer (B, T, 3C) and scale = 1 / sqrt(hs):
//!   S = scale · Q Kᵀ (T, T),  P = softmax of each row over columns j <= i,
//!   O = P V (T, hs), written to the head's columns of out (B, T, C).
//!
//! Memory: instead of keeping P (B·H·T² values: 400 MB per worker for the
//! seed preset at T = 512) the forward keeps only each row's log-sum-exp
//! (B, H, T) and the backward recomputes P = exp(scale · Q Kᵀ - lse), one
//! (T, T) tile at a time. That costs one extra Q Kᵀ, a few percent of the step.
//!
//! The products run through one register-tiled kernel ([`product`]) that
//! skips the masked future: a block of rows i0 .. i0 + R needs scores only
//! for columns j < i0 + R, and P V only those columns, so about half of the
//! T² work is never done. With hs = 32 (the presets) a general matrix
//! multiply call per head cost more in set-up and in the masked half than
//! in useful work (attention was 3x its FMA floor; see `cllm bench`).
//! The kernel uses fused multiply-adds where the CPU has them (AVX-512 or
//! AVX2 + FMA, chosen at run time; both give the same bits) and separate
//! multiplies and adds otherwise.

use super::fast_math::{self, SimdPath, simd_fn};
use super::matmul::{MatMut, MatRef, matmul};
use super::softmax::softmax_in_place;
use std::cell::RefCell;

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub channels: usize,
    pub heads: usize,
}

impl AttnShape {
    fn head_size(&self) -> usize {
        self.channels / self.heads
    }
}

/// Columns of the kernel's register tile, and the padded row length of a
/// (T, T) tile: T rounded up to a multiple of it.
const W: usize = 16;
/// Rows of the kernel's register tile.
const R: usize = 8;

fn padded(t: usize) -> usize {
    t.div_ceil(W) * W
}

/// Scratch floats the forward needs: one (T, T) tile (rows padded).
pub fn forward_scratch_len(seq: usize) -> usize {
    seq * padded(seq)
}

/// Scratch floats the backward needs: two (T, T) tiles (rows padded).
pub fn backward_scratch_len(seq: usize) -> usize {
    2 * seq * padded(seq)
}

/// a · b + c, fused or not (the kernel is generic over it).
trait MulAdd {
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

/// One rounding (`vfmadd`: the AVX-512 path is compiled with FMA), and
/// the tile's k loop in AVX-512 intrinsics. Left to itself
/// the compiler's SLP vectoriser assembled the 8 x 32 tile's B row from
/// scalar loads, blends and permutes (`vmovss`, `vinsertf32x4`,
/// `vpermt2pd` around every other FMA in `perf annotate`); here each k is
/// two vector loads of B, RR broadcasts of A and 2·RR FMAs.
#[cfg(target_arch = "x86_64")]
struct FusedAvx512;
#[cfg(target_arch = "x86_64")]
impl MulAdd for FusedAvx512 {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    #[inline(always)]
    unsafe fn tile_loop<const RR: usize, const WW: usize>(
        acc: &mut [[f32; WW]; RR],
        a: View,
        i0: usize,
        b: &[f32],
        b_rs: usize,
        j0: usize,
        k0: usize,
        k1: usize,
    ) -> bool {
        let acc = acc.as_mut_ptr().cast::<f32>();
        let a_ptr = a.data.as_ptr();
        let b_ptr = b.as_ptr();
        // SAFETY: the trait method's contract (bounds, and `FusedAvx512`
        // is instantiated only on the AVX-512 path, see `kernel_path`).
        unsafe {
            match WW {
                32 => avx512_tile::<RR, 2>(acc, a_ptr, a.rs, a.cs, i0, b_ptr, b_rs, j0, k0, k1),
                16 => avx512_tile::<RR, 1>(acc, a_ptr, a.rs, a.cs, i0, b_ptr, b_rs, j0, k0, k1),
                _ => return false,
            }
        }
        true
    }

    const TRANSPOSE8: bool = true;

    #[inline(always)]
    unsafe fn transpose8x8(src: *const f32, rs: usize, dst: *mut f32, ld: usize) {
        // SAFETY: the trait method's contract.
        unsafe { avx_transpose8x8(src, rs, dst, ld) }
    }
}

/// One rounding (`vfmadd`: the AVX2 path is compiled with FMA), the block
/// transpose, and the tile's k loop in AVX2 intrinsics. 16 ymm registers
/// cannot hold an 8 x 32 tile (32 accumulators), so the tile is done in
/// sub-tiles of 4 rows x 16 columns, each over the whole k range: 8
/// accumulators (the FMA latency times its throughput), 2 loads of B and 4
/// broadcasts of A per k. Each accumulator still adds its k terms in order,
/// so the bits are the AVX-512 path's. The compiler's own loop, which this
/// replaces, ran attention at 4.4-4.6x its FMA floor (`cllm bench`, AVX2
/// capped on a Zen 4) against 1.6-1.75x on AVX-512.
#[cfg(target_arch = "x86_64")]
struct FusedAvx2;
#[cfg(target_arch = "x86_64")]
impl MulAdd for FusedAvx2 {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    #[inline(always)]
    unsafe fn tile_loop<const RR: usize, const WW: usize>(
        acc: &mut [[f32; WW]; RR],
        a: View,
        i0: usize,
        b: &[f32],
        b_rs: usize,
        j0: usize,
        k0: usize,
        k1: usize,
    ) -> bool {
        if !WW.is_multiple_of(16) || !(RR == 1 || RR.is_multiple_of(4)) {
            return false;
        }
        let acc = acc.as_mut_ptr().cast::<f32>();
        let a_ptr = a.data.as_ptr();
        let b_ptr = b.as_ptr();
        // SAFETY: the trait method's contract (bounds, and `FusedAvx2` is
        // instantiated only on the AVX2 + FMA path, see `kernel_path`);
        // each sub-tile lies inside the tile.
        unsafe {
            for jj in (0..WW).step_by(16) {
                if RR == 1 {
                    avx2_tile::<1>(
                        acc.add(jj),
                        WW,
                        a_ptr,
                        a.rs,
                        a.cs,
                        i0,
                        b_ptr,
                        b_rs,
                        j0 + jj,
                        k0,
                        k1,
                    );
                } else {
                    for rr in (0..RR).step_by(4) {
                        avx2_tile::<4>(
                            acc.add(rr * WW + jj),
                            WW,
                            a_ptr,
                            a.rs,
                            a.cs,
                            i0 + rr,
                            b_ptr,
                            b_rs,
                            j0 + jj,
                            k0,
                            k1,
                        );
                    }
                }
            }
        }
        true
    }

    const TRANSPOSE8: bool = true;

    #[inline(always)]
    unsafe fn transpose8x8(src: *const f32, rs: usize, dst: *mut f32, ld: usize) {
        // SAFETY: the trait method's contract (AVX2 implies AVX).
        unsafe { avx_transpose8x8(src, rs, dst, ld) }
    }
}

/// An 8 x 8 block transpose in AVX registers (unpack, shuffle, swap the
/// 128-bit halves). Packing Kᵀ and Vᵀ by strided gathers (`vgatherqps`)
/// was the hottest spot of the backward after the products: at T = 128,
/// hs = 32 a head's pack is 1/8 of its Q Kᵀ in element count, and each
/// gathered element was a separate cache line.
///
/// # Safety
/// The CPU has AVX; rows `src + j * rs` and `dst + d * ld` hold 8 floats
/// for j, d < 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn avx_transpose8x8(src: *const f32, rs: usize, dst: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): as the function's contract.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|j| _mm256_loadu_ps(src.add(j * rs)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (d, v) in out.iter().enumerate() {
            _mm256_storeu_ps(dst.add(d * ld), *v);
        }
    }
}

/// The k loop of [`FusedAvx512::tile_loop`]: `acc` is RR rows of NV
/// vectors of 16 floats.
///
/// # Safety
/// The CPU has AVX-512F; every a, b index for rows i0..i0+RR, columns
/// j0..j0+16·NV and k in k0..k1 is in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn avx512_tile<const RR: usize, const NV: usize>(
    acc: *mut f32,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    i0: usize,
    b: *const f32,
    b_rs: usize,
    j0: usize,
    k0: usize,
    k1: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): as the function's contract.
    unsafe {
        let mut v = [[_mm512_setzero_ps(); NV]; RR];
        for (r, row) in v.iter_mut().enumerate() {
            for (n, x) in row.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(acc.add(r * 16 * NV + n * 16));
            }
        }
        let mut a_k = a.add(i0 * a_rs + k0 * a_cs);
        let mut b_k = b.add(k0 * b_rs + j0);
        for _ in k0..k1 {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (n, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b_k.add(n * 16));
            }
            for (r, row) in v.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a_k.add(r * a_rs));
                for (x, &bn) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, bn, *x);
                }
            }
            a_k = a_k.add(a_cs);
            b_k = b_k.add(b_rs);
        }
        for (r, row) in v.iter().enumerate() {
            for (n, x) in row.iter().enumerate() {
                _mm512_storeu_ps(acc.add(r * 16 * NV + n * 16), *x);
            }
        }
    }
}

/// One RR x 16 sub-tile of [`FusedAvx2::tile_loop`]: accumulator row r at
/// `acc + r * acc_rs`, two vectors of 8 floats.
///
/// # Safety
/// The CPU has AVX2 and FMA; every a, b index for rows i0..i0+RR, columns
/// j0..j0+16 and k in k0..k1 is in bounds, and so are the accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn avx2_tile<const RR: usize>(
    acc: *mut f32,
    acc_rs: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    i0: usize,
    b: *const f32,
    b_rs: usize,
    j0: usize,
    k0: usize,
    k1: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): as the function's contract.
    unsafe {
        let mut v = [[_mm256_setzero_ps(); 2]; RR];
        for (r, row) in v.iter_mut().enumerate() {
            for (n, x) in row.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(acc.add(r * acc_rs + n * 8));
            }
        }
        let mut a_k = a.add(i0 * a_rs + k0 * a_cs);
        let mut b_k = b.add(k0 * b_rs + j0);
        for _ in k0..k1 {
            let b0 = _mm256_loadu_ps(b_k);
            let b1 = _mm256_loadu_ps(b_k.add(8));
            for (r, row) in v.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a_k.add(r * a_rs));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
            a_k = a_k.add(a_cs);
            b_k = b_k.add(b_rs);
        }
        for (r, row) in v.iter().enumerate() {
            for (n, x) in row.iter().enumerate() {
                _mm256_storeu_ps(acc.add(r * acc_rs + n * 8), *x);
            }
        }
    }
}

/// Two roundings, for CPUs without FMA (`mul_add` would be a library call).
struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// A read-only matrix view for [`product`]: element (r, k) at
/// `data[r * rs + k * cs]`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
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
fn product<M: MulAdd>(
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
    static PACKS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Writes the transpose of the (t, hs) strided slice `src` (row stride
/// `rs`) into `dst` (hs, ld), zero in columns t .. ld: 8 x 8 blocks where
/// the path has a block transpose, element by element elsewhere.
#[inline(always)]
fn pack_transposed<M: MulAdd>(
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

/// Forward. qkv (B, T, 3C) -> out (B, T, C) and lse (B, H, T);
/// scratch holds at least [`forward_scratch_len`] floats.
pub fn attention_forward(
    out: &mut [f32],
    lse: &mut [f32],
    qkv: &[f32],
    scratch: &mut [f32],
    s: AttnShape,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        fn avx512(
            out: &mut [f32],
            lse: &mut [f32],
            qkv: &[f32],
            scratch: &mut [f32],
            s: AttnShape,
        ) {
            forward_impl::<FusedAvx512>(out, lse, qkv, scratch, s)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(out: &mut [f32], lse: &mut [f32], qkv: &[f32], scratch: &mut [f32], s: AttnShape) {
            forward_impl::<FusedAvx2>(out, lse, qkv, scratch, s)
        }
        match kernel_path() {
            // SAFETY: `kernel_path` names a path only where the CPU has
            // the features it was compiled for.
            SimdPath::Avx512 => return unsafe { avx512(out, lse, qkv, scratch, s) },
            // SAFETY: as above.
            SimdPath::Avx2 => return unsafe { avx2(out, lse, qkv, scratch, s) },
            SimdPath::Portable => {}
        }
    }
    forward_impl::<Separate>(out, lse, qkv, scratch, s)
}

/// The path the attention kernels take: [`fast_math::simd_path`], where
/// the fused paths also need FMA.
fn kernel_path() -> SimdPath {
    #[cfg(target_arch = "x86_64")]
    {
        let path = fast_math::simd_path();
        if path != SimdPath::Portable && std::arch::is_x86_feature_detected!("fma") {
            return path;
        }
    }
    SimdPath::Portable
}

#[inline(always)]
fn forward_impl<M: MulAdd>(
    out: &mut [f32],
    lse: &mut [f32],
    qkv: &[f32],
    scratch: &mut [f32],
    s: AttnShape,
) {
    let (t, c, hs) = (s.seq, s.channels, s.head_size());
    let tp = padded(t);
    let scale = 1.0 / (hs as f32).sqrt();
    let tile = &mut scratch[..t * tp];
    // Taken out of the thread-local rather than used in a closure: a
    // closure would be compiled without this function's target features.
    // Packed rows one vector longer than the tile's: a power-of-two row
    // length made the transposing stores alias the loads (4K aliasing).
    let ld = tp + W;
    let mut packs = PACKS.take();
    packs.resize(hs * ld, 0.0);
    {
        let kt = &mut packs[..hs * ld];
        for b in 0..s.batch {
            let qkv_b = &qkv[b * t * 3 * c..(b + 1) * t * 3 * c];
            let out_b = &mut out[b * t * c..(b + 1) * t * c];
            for h in 0..s.heads {
                pack_transposed::<M>(kt, &qkv_b[c + h * hs..], t, hs, 3 * c, ld);
                // Scores for the live columns of each block: j < i0 + R.
                let live = |i0: usize| (i0 + R).min(t);
                let q = View {
                    data: &qkv_b[h * hs..],
                    rs: 3 * c,
                    cs: 1,
                };
                product::<M>(tile, tp, t, q, kt, ld, true, false, live, |_| (0, hs));
                let lse_bh = &mut lse[(b * s.heads + h) * t..(b * s.heads + h + 1) * t];
                for (i, row) in tile.chunks_exact_mut(tp).enumerate() {
                    // The block's computed columns: zeros past i up to
                    // its end, as P V reads them.
                    let width = padded(live(i - i % R));
                    lse_bh[i] = masked_softmax_row(&mut row[..width], i + 1, scale);
                }
                // O = P V over the live columns, into the head's columns.
                let p = View {
                    data: tile,
                    rs: tp,
                    cs: 1,
                };
                let v = &qkv_b[2 * c + h * hs..];
                product::<M>(
                    &mut out_b[h * hs..],
                    c,
                    t,
                    p,
                    v,
                    3 * c,
                    false,
                    false,
                    |_| hs,
                    |i0| (0, live(i0)),
                );
            }
        }
    }
    PACKS.set(packs);
}

/// The decoder's attention: `n` new rows at positions `start .. start + n`
/// attend over every position up to their own, whose keys and values come
/// from a cache. qkv (n, 3C) are the new rows' projections; their keys and
/// values are first written into `keys`/`values` (T_max, C) at their
/// positions, so the cache is both an input and an output. out (n, C);
/// scores holds at least n · (start + n) floats; `s` is one sequence of the
/// n new rows.
pub fn attention_forward_cached(
    out: &mut [f32],
    qkv: &[f32],
    keys: &mut [f32],
    values: &mut [f32],
    start: usize,
    scores: &mut [f32],
    s: AttnShape,
) {
    let (c, heads, n) = (s.channels, s.heads, s.seq);
    let hs = s.head_size();
    let scale = 1.0 / (hs as f32).sqrt();
    assert!(
        s.batch == 1 && qkv.len() == n * 3 * c,
        "one sequence of new rows"
    );
    for (i, row) in qkv.chunks_exact(3 * c).enumerate() {
        let at = (start + i) * c;
        keys[at..at + c].copy_from_slice(&row[c..2 * c]);
        values[at..at + c].copy_from_slice(&row[2 * c..]);
    }
    let seen = start + n;
    let tile = &mut scores[..n * seen];
    for h in 0..heads {
        // S (n, seen) = scale · Q_new K_cachedᵀ; row i, at position
        // start + i, may only look at positions 0 ..= start + i (causal).
        let q = MatRef::strided(&qkv[h * hs..], n, hs, 3 * c);
        let k = MatRef::strided(&keys[h * hs..], seen, hs, c);
        let v = MatRef::strided(&values[h * hs..], seen, hs, c);
        matmul(MatMut::new(tile, n, seen), q, k.t(), false);
        for (i, row) in tile.chunks_exact_mut(seen).enumerate() {
            causal_softmax_row(row, start + i, scale);
        }
        // O (n, hs) = P V into the head's columns of out.
        matmul(
            MatMut::strided(&mut out[h * hs..], n, hs, c),
            MatRef::new(tile, n, seen),
            v,
            false,
        );
    }
}

/// Row i of the scores, in place: scale, softmax over j <= i, zero for
/// j > i. Returns the row's log-sum-exp of the scaled scores.
pub fn causal_softmax_row(row: &mut [f32], i: usize, scale: f32) -> f32 {
    let (live, future) = row.split_at_mut(i + 1);
    future.fill(0.0);
    softmax_in_place(live, scale, 1.0, false).0
}

const LANES: usize = 16;

/// Folds lanes in a fixed order.
#[inline(always)]
fn fold(lanes: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut a = lanes;
    let mut width = LANES / 2;
    while width > 0 {
        for k in 0..width {
            a[k] = f(a[k], a[k + width]);
        }
        width /= 2;
    }
    a[0]
}

simd_fn! {
    /// A row of P in place from its raw scores, over a padded row (length
    /// a multiple of 16): p_j = softmax(scale · x)_j over j < live, 0 for
    /// j >= live. Whole vectors throughout, the masked tail included, so no
    /// scalar remainder loop runs. Returns the live scaled scores'
    /// log-sum-exp.
    fn masked_softmax_row(x: &mut [f32], live: usize, scale: f32) -> f32 {
        assert!(x.len().is_multiple_of(LANES) && live >= 1 && live <= x.len());
        let mut lane_max = [f32::NEG_INFINITY; LANES];
        for (ci, ch) in x.chunks_exact(LANES).enumerate() {
            for k in 0..LANES {
                let v = if ci * LANES + k < live { ch[k] * scale } else { f32::NEG_INFINITY };
                lane_max[k] = if v > lane_max[k] { v } else { lane_max[k] };
            }
        }
        let max = fold(lane_max, |a, b| if b > a { b } else { a });
        let mut lane_sum = [0.0f32; LANES];
        for (ci, ch) in x.chunks_exact_mut(LANES).enumerate() {
            for k in 0..LANES {
                let e = fast_math::exp(ch[k] * scale - max);
                let e = if ci * LANES + k < live { e } else { 0.0 };
                ch[k] = e;
                lane_sum[k] += e;
            }
        }
        let sum = fold(lane_sum, |a, b| a + b);
        let inv = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inv;
        }
        max + sum.ln()
    }
}

simd_fn! {
    /// One row of the backward over a padded row (length a multiple of
    /// 16): `p` holds raw scores and becomes P = exp(scale · s - lse) (0
    /// for j >= live); `dp` holds dP and becomes the scaled
    /// dS = scale · p ⊙ (dp - Σ p ⊙ dp).
    fn masked_backward_row(p: &mut [f32], dp: &mut [f32], live: usize, scale: f32, lse: f32) {
        assert!(p.len().is_multiple_of(LANES) && dp.len() == p.len() && live <= p.len());
        let mut lane_dot = [0.0f32; LANES];
        for (ci, (pc, dc)) in p.chunks_exact_mut(LANES).zip(dp.chunks_exact(LANES)).enumerate() {
            for k in 0..LANES {
                let e = fast_math::exp(pc[k] * scale - lse);
                let e = if ci * LANES + k < live { e } else { 0.0 };
                pc[k] = e;
                lane_dot[k] += e * dc[k];
            }
        }
        let dot = fold(lane_dot, |a, b| a + b);
        for (d, &pv) in dp.iter_mut().zip(p.iter()) {
            *d = scale * pv * (*d - dot);
        }
    }
}

/// Backward. Given dout (B, T, C), the forward's qkv and lse:
/// dqkv (B, T, 3C) `=` the gradient (overwritten: qkv feeds only this).
/// With dP = dO Vᵀ and dS = P ⊙ (dP - rowsum(P ⊙ dP)):
///   dV = Pᵀ dO,  dQ = scale · dS K,  dK = scale · dSᵀ Q.
/// scratch holds at least [`backward_scratch_len`] floats.
pub fn attention_backward(
    dqkv: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    lse: &[f32],
    scratch: &mut [f32],
    s: AttnShape,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        fn avx512(
            dqkv: &mut [f32],
            dout: &[f32],
            qkv: &[f32],
            lse: &[f32],
            scratch: &mut [f32],
            s: AttnShape,
        ) {
            backward_impl::<FusedAvx512>(dqkv, dout, qkv, lse, scratch, s)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(
            dqkv: &mut [f32],
            dout: &[f32],
            qkv: &[f32],
            lse: &[f32],
            scratch: &mut [f32],
            s: AttnShape,
        ) {
            backward_impl::<FusedAvx2>(dqkv, dout, qkv, lse, scratch, s)
        }
        match kernel_path() {
            // SAFETY: `kernel_path` names a path only where the CPU has
            // the features it was compiled for.
            SimdPath::Avx512 => return unsafe { avx512(dqkv, dout, qkv, lse, scratch, s) },
            // SAFETY: as above.
            SimdPath::Avx2 => return unsafe { avx2(dqkv, dout, qkv, lse, scratch, s) },
            SimdPath::Portable => {}
        }
    }
    backward_impl::<Separate>(dqkv, dout, qkv, lse, scratch, s)
}

#[inline(always)]
fn backward_impl<M: MulAdd>(
    dqkv: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    lse: &[f32],
    scratch: &mut [f32],
    s: AttnShape,
) {
    let (t, c, hs) = (s.seq, s.channels, s.head_size());
    let tp = padded(t);
    let scale = 1.0 / (hs as f32).sqrt();
    let (p_tile, ds_tile) = scratch[..2 * t * tp].split_at_mut(t * tp);
    let live = |i0: usize| (i0 + R).min(t);
    // Taken out of the thread-local, as in the forward.
    let mut packs = PACKS.take();
    let ld = tp + W;
    packs.resize(2 * hs * ld, 0.0);
    {
        let (kt, vt) = packs[..2 * hs * ld].split_at_mut(hs * ld);
        for b in 0..s.batch {
            let qkv_b = &qkv[b * t * 3 * c..(b + 1) * t * 3 * c];
            let dout_b = &dout[b * t * c..(b + 1) * t * c];
            let dqkv_b = &mut dqkv[b * t * 3 * c..(b + 1) * t * 3 * c];
            for h in 0..s.heads {
                let lse_bh = &lse[(b * s.heads + h) * t..(b * s.heads + h + 1) * t];
                let q_rows = &qkv_b[h * hs..];
                let k_rows = &qkv_b[c + h * hs..];
                pack_transposed::<M>(kt, k_rows, t, hs, 3 * c, ld);
                pack_transposed::<M>(vt, &qkv_b[2 * c + h * hs..], t, hs, 3 * c, ld);
                let q = View {
                    data: q_rows,
                    rs: 3 * c,
                    cs: 1,
                };
                let d_o = View {
                    data: &dout_b[h * hs..],
                    rs: c,
                    cs: 1,
                };
                // Recompute P from the stored log-sum-exp, live columns only.
                product::<M>(p_tile, tp, t, q, kt, ld, true, false, live, |_| (0, hs));
                product::<M>(ds_tile, tp, t, d_o, vt, ld, true, false, live, |_| (0, hs));
                for (i, (p_row, dp_row)) in p_tile
                    .chunks_exact_mut(tp)
                    .zip(ds_tile.chunks_exact_mut(tp))
                    .enumerate()
                {
                    // P, and dS (scaled) in place of dP, zero in the
                    // masked future of the block's computed columns.
                    let width = padded(live(i - i % R));
                    masked_backward_row(
                        &mut p_row[..width],
                        &mut dp_row[..width],
                        i + 1,
                        scale,
                        lse_bh[i],
                    );
                }
                // dV = Pᵀ dO: row j of dV gathers rows i >= j (i >= j0).
                let pt = View {
                    data: p_tile,
                    rs: 1,
                    cs: tp,
                };
                product::<M>(
                    &mut dqkv_b[2 * c + h * hs..],
                    3 * c,
                    t,
                    pt,
                    &dout_b[h * hs..],
                    c,
                    false,
                    false,
                    |_| hs,
                    |j0| (j0, t),
                );
                // dQ = dS K over live columns; dK = dSᵀ Q over rows i >= j.
                let ds = View {
                    data: ds_tile,
                    rs: tp,
                    cs: 1,
                };
                product::<M>(
                    &mut dqkv_b[h * hs..],
                    3 * c,
                    t,
                    ds,
                    k_rows,
                    3 * c,
                    false,
                    false,
                    |_| hs,
                    |i0| (0, live(i0)),
                );
                let dst = View {
                    data: ds_tile,
                    rs: 1,
                    cs: tp,
                };
                product::<M>(
                    &mut dqkv_b[c + h * hs..],
                    3 * c,
                    t,
                    dst,
                    q_rows,
                    3 * c,
                    false,
                    false,
                    |_| hs,
                    |j0| (j0, t),
                );
            }
        }
    }
    PACKS.set(packs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fd;

    fn naive_forward(qkv: &[f32], s: AttnShape) -> Vec<f64> {
        let (t, c, hs) = (s.seq, s.channels, s.head_size());
        let mut out = vec![0.0f64; s.batch * t * c];
        let at = |b: usize, i: usize, col: usize| qkv[(b * t + i) * 3 * c + col] as f64;
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..t {
                    let scores: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..hs)
                                .map(|d| at(b, i, h * hs + d) * at(b, j, c + h * hs + d))
                                .sum::<f64>()
                                / (hs as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                    for d in 0..hs {
                        out[(b * t + i) * c + h * hs + d] = (0..=i)
                            .map(|j| (scores[j] - max).exp() / z * at(b, j, 2 * c + h * hs + d))
                            .sum();
                    }
                }
            }
        }
        out
    }

    /// The backward in f64, written out plainly: dqkv for upstream `g`.
    fn naive_backward(qkv: &[f32], g: &[f32], s: AttnShape) -> Vec<f64> {
        let (t, c, hs) = (s.seq, s.channels, s.head_size());
        let scale = 1.0 / (hs as f64).sqrt();
        let mut dqkv = vec![0.0f64; qkv.len()];
        let at = |b: usize, i: usize, col: usize| qkv[(b * t + i) * 3 * c + col] as f64;
        for b in 0..s.batch {
            for h in 0..s.heads {
                let (qo, ko, vo) = (h * hs, c + h * hs, 2 * c + h * hs);
                for i in 0..t {
                    let sc: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..hs)
                                .map(|d| at(b, i, qo + d) * at(b, j, ko + d))
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = sc.iter().map(|x| (x - max).exp()).sum();
                    let p: Vec<f64> = sc.iter().map(|x| (x - max).exp() / z).collect();
                    let go = |d: usize| g[(b * t + i) * c + h * hs + d] as f64;
                    let dp: Vec<f64> = (0..=i)
                        .map(|j| (0..hs).map(|d| go(d) * at(b, j, vo + d)).sum())
                        .collect();
                    let dot: f64 = (0..=i).map(|j| p[j] * dp[j]).sum();
                    for j in 0..=i {
                        let ds = p[j] * (dp[j] - dot) * scale;
                        for d in 0..hs {
                            dqkv[(b * t + i) * 3 * c + qo + d] += ds * at(b, j, ko + d);
                            dqkv[(b * t + j) * 3 * c + ko + d] += ds * at(b, i, qo + d);
                            dqkv[(b * t + j) * 3 * c + vo + d] += p[j] * go(d);
                        }
                    }
                }
            }
        }
        dqkv
    }

    /// Forward and backward against the f64 references at the presets'
    /// head size and at sequence lengths around the kernel's 8-row blocks
    /// and 16-column tiles, on every path this CPU runs; the two fused paths
    /// must give the same bits.
    #[test]
    fn kernel_matches_f64_reference_on_every_path() {
        use crate::ops::fast_math::{SimdPath, available_paths, with_path};
        for &(seq, channels, heads) in &[
            (37usize, 64usize, 2usize),
            (64, 64, 2),
            (9, 40, 2),
            (23, 12, 3),
        ] {
            let s = AttnShape {
                batch: 2,
                seq,
                channels,
                heads,
            };
            let qkv: Vec<f32> = fd::random(s.batch * seq * 3 * channels, 21)
                .iter()
                .map(|v| 2.0 * v)
                .collect();
            let g = fd::random(s.batch * seq * channels, 22);
            let want_out = naive_forward(&qkv, s);
            let want_d = naive_backward(&qkv, &g, s);
            let mut runs = Vec::new();
            for path in available_paths() {
                let (out, dqkv) = with_path(path, || {
                    let mut out = vec![f32::NAN; g.len()];
                    let mut lse = vec![0.0; s.batch * heads * seq];
                    let mut scratch = vec![f32::NAN; backward_scratch_len(seq)];
                    attention_forward(&mut out, &mut lse, &qkv, &mut scratch, s);
                    let mut dqkv = vec![f32::NAN; qkv.len()];
                    attention_backward(&mut dqkv, &g, &qkv, &lse, &mut scratch, s);
                    (out, dqkv)
                });
                for (a, b) in out.iter().zip(&want_out) {
                    assert!(
                        (*a as f64 - b).abs() < 2e-5 * (1.0 + b.abs()),
                        "{path:?} {s:?}: out {a} vs {b}"
                    );
                }
                for (a, b) in dqkv.iter().zip(&want_d) {
                    assert!(
                        (*a as f64 - b).abs() < 5e-5 * (1.0 + b.abs()),
                        "{path:?} {s:?}: dqkv {a} vs {b}"
                    );
                }
                runs.push((path, out, dqkv));
            }
            let fused: Vec<_> = runs.iter().filter(|r| r.0 != SimdPath::Portable).collect();
            for pair in fused.windows(2) {
                let same =
                    |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same(&pair[0].1, &pair[1].1) && same(&pair[0].2, &pair[1].2),
                    "{:?} vs {:?}",
                    pair[0].0,
                    pair[1].0
                );
            }
        }
    }

    const SHAPE: AttnShape = AttnShape {
        batch: 2,
        seq: 5,
        channels: 6,
        heads: 2,
    };

    #[test]
    fn forward_matches_naive_causal_attention() {
        let s = SHAPE;
        let qkv = fd::random(s.batch * s.seq * 3 * s.channels, 1);
        let mut out = vec![0.0; s.batch * s.seq * s.channels];
        let mut lse = vec![0.0; s.batch * s.heads * s.seq];
        let mut scratch = vec![0.0; forward_scratch_len(s.seq)];
        attention_forward(&mut out, &mut lse, &qkv, &mut scratch, s);
        for (a, b) in out.iter().zip(naive_forward(&qkv, s)) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let s = SHAPE;
        let qkv: Vec<f32> = fd::random(s.batch * s.seq * 3 * s.channels, 2)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let g = fd::random(s.batch * s.seq * s.channels, 3);
        let mut out = vec![0.0; g.len()];
        let mut lse = vec![0.0; s.batch * s.heads * s.seq];
        let mut scratch = vec![0.0; backward_scratch_len(s.seq)];
        attention_forward(&mut out, &mut lse, &qkv, &mut scratch, s);
        let mut dqkv = vec![f32::NAN; qkv.len()];
        attention_backward(&mut dqkv, &g, &qkv, &lse, &mut scratch, s);
        fd::check("dqkv", &qkv, &dqkv, 2e-3, &mut |p| {
            attention_forward(&mut out, &mut lse, p, &mut scratch, s);
            fd::dot(&out, &g)
        });
    }
}
