//! The tied output head, softmax and cross-entropy, fused and computed in
//! chunks of rows.
//!
//! Materialising the whole (B·T, V) logits tensor would take hundreds of MB
//! per worker at V = 50,000, so rows are processed `chunk` at a time; for
//! each chunk of x (rows, C):
//!   logits = x_chunk · wteᵀ (rows, V)
//!   p = softmax(logits), loss += Σ (logsumexp - logit[target])
//!   dlogits = (p - onehot(target)) · grad_scale   (in place)
//!   dx_chunk = dlogits · wte,  dwte += dlogitsᵀ · x_chunk
//! The only V-sized buffer is the (chunk, V) scratch.

use super::bf16::{LANES, PairsRef, matmul_pairs, pack_columns, pack_row_into, pack_rows, to_bf16};
use super::linear_bf16::{with_scratch, with_scratch3};
use super::matmul::{MatMut, MatRef, matmul};
use super::matmul_tn::matmul_tn_acc;
use super::softmax::softmax_in_place;
use crate::model::bf16_weights::WeightPacks;

/// The tied embedding as the head multiplies it: f32, or its bf16 packs
/// (bf16 inputs, f32 accumulation; softmax and loss stay f32).
#[derive(Clone, Copy)]
pub enum HeadWeights<'a> {
    F32(&'a [f32]),
    Bf16(&'a WeightPacks),
}

impl HeadWeights<'_> {
    /// logits (rows, V) = x (rows, C) · wteᵀ.
    fn logits(&self, logits: &mut [f32], x: &[f32], rows: usize, c: usize, v: usize) {
        match self {
            HeadWeights::F32(wte) => head_logits(logits, x, wte, rows, c, v),
            HeadWeights::Bf16(w) => with_scratch(|a, _| {
                let xa = pack_rows(a, MatRef::new(x, rows, c));
                matmul_pairs(MatMut::new(logits, rows, v), xa, w.forward(), false);
            }),
        }
    }
}

/// Rows of logits held at once: 256 x 50,000 floats is 51 MB per worker.
/// Every chunk streams all of wte (twice) and dwte (read and write)
/// through memory, so fewer, larger chunks are faster: on the seed preset,
/// 8 x 128 tokens, one thread, a step took 1.01 s (CPU time) with 64 rows,
/// 0.87-0.89 s with 128 and 0.80-0.81 s with 256.
pub const DEFAULT_CHUNK_ROWS: usize = 256;

/// Shapes: `rows` positions of `channels` features against a `vocab`-row
/// embedding, `chunk` rows of logits at a time.
#[derive(Clone, Copy, Debug)]
pub struct HeadShape {
    pub rows: usize,
    pub channels: usize,
    pub vocab: usize,
    pub chunk: usize,
}

/// Scratch floats needed: one (chunk, V) logits tile.
pub fn scratch_len(chunk: usize, vocab: usize) -> usize {
    chunk * vocab
}

/// Logits for all rows: out (N, V) = x (N, C) · wteᵀ. For short inputs
/// only (generation, export checks); training uses the chunked functions.
pub fn head_logits(out: &mut [f32], x: &[f32], wte: &[f32], n: usize, c: usize, v: usize) {
    matmul(
        MatMut::new(out, n, v),
        MatRef::new(x, n, c),
        MatRef::new(wte, v, c).t(),
        false,
    );
}

/// Forward and backward. x (N, C), targets (N), wte (V, C):
/// dx (N, C) `=` grad_scale · dL/dx, dwte (V, C) `+=` grad_scale · dL/dwte,
/// where L is the sum of per-row losses. Returns that sum.
#[allow(clippy::too_many_arguments)]
pub fn head_loss_backward(
    dx: &mut [f32],
    dwte: &mut [f32],
    x: &[f32],
    targets: &[u32],
    wte: HeadWeights,
    scratch: &mut [f32],
    s: HeadShape,
    grad_scale: f32,
) -> f64 {
    let (c, v) = (s.channels, s.vocab);
    let mut total = 0.0f64;
    let mut start = 0;
    while start < s.rows {
        let rows = s.chunk.min(s.rows - start);
        let x_chunk = &x[start * c..(start + rows) * c];
        let logits = &mut scratch[..rows * v];
        let targets = &targets[start..start + rows];
        let dx_chunk = &mut dx[start * c..(start + rows) * c];
        wte.logits(logits, x_chunk, rows, c, v);
        match wte {
            HeadWeights::F32(w) => {
                total += softmax_rows(logits, targets, v, grad_scale, |_, _| {});
                // dx (rows, C) = dlogits · wte, dwte (V, C) += dlogitsᵀ · x.
                let dl = MatRef::new(logits, rows, v);
                matmul(
                    MatMut::new(dx_chunk, rows, c),
                    dl,
                    MatRef::new(w, v, c),
                    false,
                );
                matmul_tn_acc(dwte, logits, x_chunk, rows, v, c);
            }
            HeadWeights::Bf16(w) => with_scratch3(|a, b, xs| {
                // dlogits go to bf16 pairs straight from the softmax, while
                // each row is still in cache: along the row for dx, down
                // the rows (two rows a pair) for dwte.
                let pairs = v.div_ceil(2);
                let stride = v.next_multiple_of(LANES);
                a.clear();
                a.resize(rows * pairs, 0);
                b.clear();
                b.resize(rows.div_ceil(2) * stride, 0);
                total += softmax_rows(logits, targets, v, grad_scale, |r, row| {
                    pack_row_into(&mut a[r * pairs..(r + 1) * pairs], row);
                    let down = &mut b[(r / 2) * stride..(r / 2) * stride + v];
                    if r % 2 == 0 {
                        for (o, &g) in down.iter_mut().zip(row) {
                            *o = to_bf16(g) as u32;
                        }
                    } else {
                        for (o, &g) in down.iter_mut().zip(row) {
                            *o |= (to_bf16(g) as u32) << 16;
                        }
                    }
                });
                let along = PairsRef::new(a, rows, pairs, pairs, 1);
                matmul_pairs(MatMut::new(dx_chunk, rows, c), along, w.backward(), false);
                let down = PairsRef::new(b, v, rows.div_ceil(2), 1, stride);
                let xc = pack_columns(xs, MatRef::new(x_chunk, rows, c));
                matmul_pairs(MatMut::new(&mut dwte[..v * c], v, c), down, xc, true);
            }),
        }
        start += rows;
    }
    total
}

/// Softmax and cross-entropy of each row of logits in place, leaving
/// `grad_scale · (p - onehot(target))`; `each(r, row)` sees every finished
/// row. Returns the sum of the rows' losses.
fn softmax_rows(
    logits: &mut [f32],
    targets: &[u32],
    v: usize,
    grad_scale: f32,
    mut each: impl FnMut(usize, &[f32]),
) -> f64 {
    let mut total = 0.0f64;
    for (r, (row, &target)) in logits.chunks_exact_mut(v).zip(targets).enumerate() {
        let target = checked_target(target, v);
        let logit = row[target];
        let (lse, _) = softmax_in_place(row, 1.0, grad_scale, false);
        total += (lse - logit) as f64;
        row[target] -= grad_scale;
        each(r, row);
    }
    total
}

/// Forward only: the sum of per-row losses; `predictions` (N), when given,
/// receives each row's arg-max token.
pub fn head_loss(
    x: &[f32],
    targets: &[u32],
    wte: HeadWeights,
    scratch: &mut [f32],
    s: HeadShape,
    predictions: Option<&mut [u32]>,
) -> f64 {
    head_loss_rows(x, targets, wte, scratch, s, predictions, None)
}

/// [`head_loss`], also writing each row's loss (`-log p(target)`, nats)
/// into `row_losses` (N) when given.
pub fn head_loss_rows(
    x: &[f32],
    targets: &[u32],
    wte: HeadWeights,
    scratch: &mut [f32],
    s: HeadShape,
    mut predictions: Option<&mut [u32]>,
    mut row_losses: Option<&mut [f32]>,
) -> f64 {
    let (c, v) = (s.channels, s.vocab);
    let mut total = 0.0f64;
    let mut start = 0;
    while start < s.rows {
        let rows = s.chunk.min(s.rows - start);
        let logits = &mut scratch[..rows * v];
        wte.logits(logits, &x[start * c..(start + rows) * c], rows, c, v);
        for (r, row) in logits.chunks_exact_mut(v).enumerate() {
            let target = checked_target(targets[start + r], v);
            let logit = row[target];
            let (lse, argmax) = softmax_in_place(row, 1.0, 1.0, predictions.is_some());
            total += (lse - logit) as f64;
            if let Some(pred) = predictions.as_deref_mut() {
                pred[start + r] = argmax as u32;
            }
            if let Some(losses) = row_losses.as_deref_mut() {
                losses[start + r] = lse - logit;
            }
        }
        start += rows;
    }
    total
}

fn checked_target(target: u32, vocab: usize) -> usize {
    let t = target as usize;
    assert!(
        t < vocab,
        "target token id {t} is outside the vocabulary of {vocab}"
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::fd;

    const SHAPE: HeadShape = HeadShape {
        rows: 7,
        channels: 4,
        vocab: 23,
        chunk: 3, // 7 rows in chunks of 3, 3 and 1: the tail chunk is exercised
    };

    fn naive_loss(x: &[f32], wte: &[f32], targets: &[u32], s: HeadShape) -> f64 {
        let mut total = 0.0;
        for r in 0..s.rows {
            let logits: Vec<f64> = (0..s.vocab)
                .map(|j| {
                    (0..s.channels)
                        .map(|i| x[r * s.channels + i] as f64 * wte[j * s.channels + i] as f64)
                        .sum()
                })
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            total += lse - logits[targets[r] as usize];
        }
        total
    }

    fn setup() -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let s = SHAPE;
        let x: Vec<f32> = fd::random(s.rows * s.channels, 1)
            .iter()
            .map(|v| v * 3.0)
            .collect();
        let wte = fd::random(s.vocab * s.channels, 2);
        let targets = (0..s.rows as u32)
            .map(|r| (r * 5 + 2) % s.vocab as u32)
            .collect();
        (x, wte, targets)
    }

    #[test]
    fn loss_matches_naive_and_eval_agrees_with_training() {
        let s = SHAPE;
        let (x, wte, targets) = setup();
        let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
        let want = naive_loss(&x, &wte, &targets, s);
        let mut pred = vec![0u32; s.rows];
        let eval = head_loss(
            &x,
            &targets,
            HeadWeights::F32(&wte),
            &mut scratch,
            s,
            Some(&mut pred),
        );
        let mut dx = vec![0.0; x.len()];
        let mut dwte = vec![0.0; wte.len()];
        let train = head_loss_backward(
            &mut dx,
            &mut dwte,
            &x,
            &targets,
            HeadWeights::F32(&wte),
            &mut scratch,
            s,
            1.0,
        );
        assert!((eval - want).abs() < 1e-4 * want.abs(), "{eval} vs {want}");
        assert!(
            (train - want).abs() < 1e-4 * want.abs(),
            "{train} vs {want}"
        );
        let mut logits = vec![0.0; s.rows * s.vocab];
        head_logits(&mut logits, &x, &wte, s.rows, s.channels, s.vocab);
        for (r, row) in logits.chunks(s.vocab).enumerate() {
            let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(row[pred[r] as usize], best);
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let s = SHAPE;
        let (x, wte, targets) = setup();
        let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
        let mut dx = vec![0.0; x.len()];
        let mut dwte = vec![0.0; wte.len()];
        let scale = 0.5;
        head_loss_backward(
            &mut dx,
            &mut dwte,
            &x,
            &targets,
            HeadWeights::F32(&wte),
            &mut scratch,
            s,
            scale,
        );
        let mut sc = scratch.clone();
        fd::check("dx", &x, &dx, 2e-3, &mut |p| {
            scale as f64 * head_loss(p, &targets, HeadWeights::F32(&wte), &mut sc, s, None)
        });
        fd::check("dwte", &wte, &dwte, 2e-3, &mut |p| {
            scale as f64 * head_loss(&x, &targets, HeadWeights::F32(p), &mut sc, s, None)
        });
    }

    /// The bf16 head (bf16 logits and gradient products, f32 softmax and
    /// loss) stays within bf16 rounding of the f32 head: loss and both
    /// gradients, on a shape whose vocabulary is odd and crosses a lane
    /// tile.
    #[test]
    fn bf16_head_is_within_rounding_of_f32() {
        let s = HeadShape {
            rows: 29,
            channels: 24,
            vocab: 301,
            chunk: 16,
        };
        let x = fd::random(s.rows * s.channels, 5);
        let wte = fd::random(s.vocab * s.channels, 6);
        let targets: Vec<u32> = (0..s.rows as u32).map(|r| (r * 37 + 1) % 301).collect();
        let mut packs = WeightPacks::default();
        packs.pack_for_test(&wte, s.vocab, s.channels);
        let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
        let run = |w: HeadWeights, scratch: &mut [f32]| {
            let mut dx = vec![0.0; x.len()];
            let mut dwte = vec![0.0; wte.len()];
            let loss = head_loss_backward(&mut dx, &mut dwte, &x, &targets, w, scratch, s, 1.0);
            (loss, dx, dwte)
        };
        let (l32, dx32, dw32) = run(HeadWeights::F32(&wte), &mut scratch);
        let (l16, dx16, dw16) = run(HeadWeights::Bf16(&packs), &mut scratch);
        assert!((l16 - l32).abs() < 5e-3 * l32.abs(), "loss {l16} vs {l32}");
        let eval = head_loss(
            &x,
            &targets,
            HeadWeights::Bf16(&packs),
            &mut scratch,
            s,
            None,
        );
        assert_eq!(eval, l16, "evaluation and training agree in bf16");
        for (name, a, b) in [("dx", &dx16, &dx32), ("dwte", &dw16, &dw32)] {
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b.iter())
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(
                worst < 2e-2 * scale,
                "{name}: error {worst} of scale {scale}"
            );
            assert!(worst > 0.0, "{name}: bf16 should differ from f32 somewhere");
        }
    }
}
