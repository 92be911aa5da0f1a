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
//! in useful work. The kernel uses fused multiply-adds where the CPU has
//! them (AVX-512 or AVX2 + FMA, chosen at run time; both give the same
//! bits) and separate multiplies and adds otherwise.
//!
//! Files: the maths of both passes here; `product.rs` the register-tiled
//! product they run on (and its portable path), `avx512.rs` and `avx2.rs`
//! its hand-written inner loops.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod product;
#[cfg(test)]
mod tests;

#[cfg(target_arch = "x86_64")]
use avx2::FusedAvx2;
#[cfg(target_arch = "x86_64")]
use avx512::FusedAvx512;
use product::{MulAdd, PACKS, Separate, View, pack_transposed, product};

use super::fast_math::{self, SimdPath, simd_fn};
use super::matmul::{MatMut, MatRef, matmul};
use super::softmax::softmax_in_place;

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
