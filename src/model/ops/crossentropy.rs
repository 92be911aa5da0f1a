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

use super::matmul::{MatMut, MatRef, matmul};
use super::softmax::softmax_in_place;

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
    wte: &[f32],
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
        head_logits(logits, x_chunk, wte, rows, c, v);
        for (row, &target) in logits
            .chunks_exact_mut(v)
            .zip(&targets[start..start + rows])
        {
            let target = checked_target(target, v);
            let logit = row[target];
            let (lse, _) = softmax_in_place(row, 1.0, grad_scale, false);
            total += (lse - logit) as f64;
            row[target] -= grad_scale;
        }
        let dlogits = MatRef::new(logits, rows, v);
        matmul(
            MatMut::new(&mut dx[start * c..(start + rows) * c], rows, c),
            dlogits,
            MatRef::new(wte, v, c),
            false,
        );
        matmul(
            MatMut::new(dwte, v, c),
            dlogits.t(),
            MatRef::new(x_chunk, rows, c),
            true,
        );
        start += rows;
    }
    total
}

/// Forward only: the sum of per-row losses; `predictions` (N), when given,
/// receives each row's arg-max token.
pub fn head_loss(
    x: &[f32],
    targets: &[u32],
    wte: &[f32],
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
    wte: &[f32],
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
        head_logits(logits, &x[start * c..(start + rows) * c], wte, rows, c, v);
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
        let eval = head_loss(&x, &targets, &wte, &mut scratch, s, Some(&mut pred));
        let mut dx = vec![0.0; x.len()];
        let mut dwte = vec![0.0; wte.len()];
        let train =
            head_loss_backward(&mut dx, &mut dwte, &x, &targets, &wte, &mut scratch, s, 1.0);
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
            &wte,
            &mut scratch,
            s,
            scale,
        );
        let mut sc = scratch.clone();
        fd::check("dx", &x, &dx, 2e-3, &mut |p| {
            scale as f64 * head_loss(p, &targets, &wte, &mut sc, s, None)
        });
        fd::check("dwte", &wte, &dwte, 2e-3, &mut |p| {
            scale as f64 * head_loss(&x, &targets, p, &mut sc, s, None)
        });
    }
}
