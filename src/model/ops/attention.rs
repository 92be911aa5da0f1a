//! Causal multi-head self-attention (the part between c_attn and c_proj).
//!
//! For each sequence b and head h, with Q, K, V the head's (T, hs) slices of
//! the interleaved qkv buffer (B, T, 3C) and scale = 1 / sqrt(hs):
//!   S = scale · Q Kᵀ (T, T),  P = softmax of each row over columns j <= i,
//!   O = P V (T, hs), written to the head's columns of out (B, T, C).
//! Both products are batched matrix multiplies through the fast kernel.
//!
//! Memory: instead of keeping P (B·H·T² values: 400 MB per worker for the
//! seed preset at T = 512) the forward keeps only each row's log-sum-exp
//! (B, H, T) and the backward recomputes P = exp(scale · Q Kᵀ - lse), one
//! (T, T) tile at a time. That costs one extra Q Kᵀ, a few percent of the step.

use super::fast_math::{self, simd_fn};
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

/// Scratch floats the forward needs: one (T, T) tile.
pub fn forward_scratch_len(seq: usize) -> usize {
    seq * seq
}

/// Scratch floats the backward needs: two (T, T) tiles.
pub fn backward_scratch_len(seq: usize) -> usize {
    2 * seq * seq
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
    let (t, c, hs) = (s.seq, s.channels, s.head_size());
    let scale = 1.0 / (hs as f32).sqrt();
    let tile = &mut scratch[..t * t];
    for b in 0..s.batch {
        let qkv_b = &qkv[b * t * 3 * c..(b + 1) * t * 3 * c];
        for h in 0..s.heads {
            let q = MatRef::strided(&qkv_b[h * hs..], t, hs, 3 * c);
            let k = MatRef::strided(&qkv_b[c + h * hs..], t, hs, 3 * c);
            let v = MatRef::strided(&qkv_b[2 * c + h * hs..], t, hs, 3 * c);
            matmul(MatMut::new(tile, t, t), q, k.t(), false);
            let lse_bh = &mut lse[(b * s.heads + h) * t..(b * s.heads + h + 1) * t];
            for (i, row) in tile.chunks_exact_mut(t).enumerate() {
                lse_bh[i] = causal_softmax_row(row, i, scale);
            }
            let out_b = &mut out[b * t * c..(b + 1) * t * c];
            matmul(
                MatMut::strided(&mut out_b[h * hs..], t, hs, c),
                MatRef::new(tile, t, t),
                v,
                false,
            );
        }
    }
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

simd_fn! {
    /// p = exp(scale · s - lse) in place: a row of P from its raw scores.
    fn probs_from_scores(x: &mut [f32], scale: f32, lse: f32) {
        for v in x.iter_mut() {
            *v = fast_math::exp(*v * scale - lse);
        }
    }
}

simd_fn! {
    /// dS row in place of dP: ds = scale · p ⊙ (dp - Σ p ⊙ dp).
    fn softmax_backward_row(dp: &mut [f32], p: &[f32], scale: f32) {
        let mut lanes = [0.0f32; LANES];
        for (k, (a, b)) in p.iter().zip(dp.iter()).enumerate() {
            lanes[k % LANES] += a * b;
        }
        let dot: f32 = lanes.iter().sum();
        for (d, &pv) in dp.iter_mut().zip(p) {
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
    let (t, c, hs) = (s.seq, s.channels, s.head_size());
    let scale = 1.0 / (hs as f32).sqrt();
    let (p_tile, dp_tile) = scratch[..2 * t * t].split_at_mut(t * t);
    for b in 0..s.batch {
        let qkv_b = &qkv[b * t * 3 * c..(b + 1) * t * 3 * c];
        let dout_b = &dout[b * t * c..(b + 1) * t * c];
        let dqkv_b = &mut dqkv[b * t * 3 * c..(b + 1) * t * 3 * c];
        for h in 0..s.heads {
            let q = MatRef::strided(&qkv_b[h * hs..], t, hs, 3 * c);
            let k = MatRef::strided(&qkv_b[c + h * hs..], t, hs, 3 * c);
            let v = MatRef::strided(&qkv_b[2 * c + h * hs..], t, hs, 3 * c);
            let d_o = MatRef::strided(&dout_b[h * hs..], t, hs, c);
            let lse_bh = &lse[(b * s.heads + h) * t..(b * s.heads + h + 1) * t];
            // Recompute P from the stored log-sum-exp.
            matmul(MatMut::new(p_tile, t, t), q, k.t(), false);
            for (i, row) in p_tile.chunks_exact_mut(t).enumerate() {
                let (live, future) = row.split_at_mut(i + 1);
                probs_from_scores(live, scale, lse_bh[i]);
                future.fill(0.0);
            }
            matmul(MatMut::new(dp_tile, t, t), d_o, v.t(), false);
            matmul(
                MatMut::strided(&mut dqkv_b[2 * c + h * hs..], t, hs, 3 * c),
                MatRef::new(p_tile, t, t).t(),
                d_o,
                false,
            );
            // dS, scaled, into dp_tile (zero in the masked future).
            for (i, (p_row, dp_row)) in p_tile
                .chunks_exact(t)
                .zip(dp_tile.chunks_exact_mut(t))
                .enumerate()
            {
                softmax_backward_row(&mut dp_row[..=i], &p_row[..=i], scale);
                dp_row[i + 1..].fill(0.0);
            }
            let ds = MatRef::new(dp_tile, t, t);
            matmul(
                MatMut::strided(&mut dqkv_b[h * hs..], t, hs, 3 * c),
                ds,
                k,
                false,
            );
            matmul(
                MatMut::strided(&mut dqkv_b[c + h * hs..], t, hs, 3 * c),
                ds.t(),
                q,
                false,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::fd;

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
