//! The head's forward and backward together: pass 1 over a chunk's
//! tiles, each row's softmax from its tiles' statistics, then pass 2 over
//! the tiles again for dx and dwte, with each tile's exponentials read
//! back from the scratch or recomputed ([`HeadMode`]).

use super::logits::{Chunk, TileOut, logits_pass, tile_exps};
use super::tile::{
    TileSource, as_halves, halves_to_pairs, scale_in_place, scratch_halves, tile_dlogits,
};
use super::{
    HeadMode, HeadShape, HeadWeights, RowSoftmax, VOCAB_TILE, head_mode, scratch_len_for,
    tile_offset, with_head_scratch,
};
use crate::ops::bf16::{PairsRef, matmul_pairs, pack_columns};
use crate::ops::linear_bf16::with_scratch3;
use crate::ops::matmul::{MatMut, MatRef, matmul};
use crate::ops::matmul_tn::matmul_tn_acc;

/// Forward and backward in the process's [`head_mode`]. x (N, C),
/// targets (N), wte (V, C): dx (N, C) `=` grad_scale · dL/dx,
/// dwte (V, C) `+=` grad_scale · dL/dwte, where L is the sum of per-row
/// losses. Returns that sum.
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
    head_loss_backward_in(
        head_mode(),
        dx,
        dwte,
        x,
        targets,
        wte,
        scratch,
        s,
        grad_scale,
    )
}

/// [`head_loss_backward`] in a given mode; both give the same bits (the
/// recomputed tile is the stored one: the same products on the same
/// shapes, the same exponentials).
///
/// Each chunk of rows runs in two passes over vocabulary tiles of
/// [`VOCAB_TILE`] columns. Pass 1 multiplies a tile of logits and, while
/// it is still in cache, exponentiates it against each row's maximum over
/// the tile ([`logits_pass`]). Pass 2 takes a tile's exponentials (read
/// back, or multiplied and exponentiated again), turns them into
/// `grad_scale · (p - onehot)` with one multiply per element (the tile's
/// correction to the row's whole softmax), rounds them to bf16 (from the
/// bf16 exponentials: see [`tile_dlogits`]) in both layouts the products
/// want, and runs that tile's share of dx and of dwte at once, so dlogits
/// never go to memory as a whole.
#[allow(clippy::too_many_arguments)]
pub fn head_loss_backward_in(
    mode: HeadMode,
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
    let tiles = v.div_ceil(VOCAB_TILE);
    // The bf16 head's exponentials take half the bytes: the scratch holds
    // twice the rows, and fewer chunks stream wte and dwte fewer times.
    let chunk = match wte {
        HeadWeights::F32(_) => s.chunk,
        HeadWeights::Bf16(_) => 2 * s.chunk,
    };
    assert!(
        scratch.len() >= scratch_len_for(mode, s.chunk.min(s.rows), v),
        "head scratch too small"
    );
    let keep = mode == HeadMode::Store;
    let mut total = 0.0f64;
    let mut start = 0;
    with_head_scratch(|hs| {
        while start < s.rows {
            let rows = chunk.min(s.rows - start);
            let x_chunk = &x[start * c..(start + rows) * c];
            let targets = &targets[start..start + rows];
            let dx_chunk = &mut dx[start * c..(start + rows) * c];
            let ch = Chunk::new(wte, x_chunk, targets, (c, v), &mut hs.pack);
            logits_pass(&ch, scratch, keep, &mut hs.part, &mut hs.stats);
            // Each row's loss, and each (row, tile)'s factor from its
            // exponentials to grad_scale · p.
            let factors = &mut hs.factors;
            factors.clear();
            factors.resize(rows * tiles, 0.0);
            for (r, &target) in targets.iter().enumerate() {
                let st = &hs.stats[r * tiles..(r + 1) * tiles];
                let row = RowSoftmax::of(st, target as usize);
                total += row.loss as f64;
                for (f, t) in factors[r * tiles..(r + 1) * tiles].iter_mut().zip(st) {
                    *f = grad_scale * row.tile_scale(t);
                }
            }
            let factors = &*factors;
            match wte {
                HeadWeights::F32(w) => {
                    for t in 0..tiles {
                        let (j0, width) = ch.tile(t);
                        // The tile's exponentials (rows, width), turned into
                        // its dlogits in place.
                        let block = if keep {
                            &mut scratch[tile_offset(rows, t)..][..rows * width]
                        } else {
                            let out = TileOut::F32(&mut scratch[..rows * width]);
                            tile_exps(&ch, t, out, &mut hs.part, &mut hs.stats);
                            &mut scratch[..rows * width]
                        };
                        for (r, row) in block.chunks_exact_mut(width).enumerate() {
                            let f = factors[r * tiles + t];
                            let target = targets[r] as usize;
                            let hit = (j0..j0 + width).contains(&target);
                            let e_target = if hit { row[target - j0] } else { 0.0 };
                            scale_in_place(row, f);
                            if hit {
                                row[target - j0] = e_target * f - grad_scale;
                            }
                        }
                        let block = &*block;
                        let wt = &w[j0 * c..(j0 + width) * c];
                        // dx (rows, C) += dlogits · wte, dwte += dlogitsᵀ · x.
                        matmul(
                            MatMut::new(dx_chunk, rows, c),
                            MatRef::new(block, rows, width),
                            MatRef::new(wt, width, c),
                            t > 0,
                        );
                        matmul_tn_acc(
                            &mut dwte[j0 * c..(j0 + width) * c],
                            block,
                            x_chunk,
                            rows,
                            width,
                            c,
                        );
                    }
                }
                HeadWeights::Bf16(w) => with_scratch3(|a, b, xs| {
                    let xc = pack_columns(xs, MatRef::new(x_chunk, rows, c));
                    let tile_pairs = VOCAB_TILE / 2;
                    let down_stride = VOCAB_TILE;
                    // Resized once a chunk: each tile overwrites what the
                    // products read (the odd last column's pad below).
                    a.clear();
                    a.resize(rows * tile_pairs, 0);
                    b.clear();
                    b.resize(rows.div_ceil(2) * down_stride, 0);
                    for t in 0..tiles {
                        let (j0, width) = ch.tile(t);
                        let pairs = width.div_ceil(2);
                        let halves = scratch_halves(scratch);
                        let e = if keep {
                            &halves[tile_offset(rows, t)..][..rows * width]
                        } else {
                            let out = TileOut::Bf16(Some(&mut halves[..rows * width]));
                            tile_exps(&ch, t, out, &mut hs.part, &mut hs.stats);
                            &halves[..rows * width]
                        };
                        // The tile's dlogits in both layouts; `along`
                        // through a u16 view, one bf16 per column.
                        let stats = &hs.stats;
                        let factor = |r: usize| factors[r * tiles + t];
                        let target_e = |r: usize| stats[r * tiles + t].target_e;
                        let src = TileSource {
                            e,
                            width,
                            j0,
                            targets,
                            grad_scale,
                        };
                        tile_dlogits(as_halves(a), b, &src, &factor, &target_e);
                        halves_to_pairs(a);
                        let along = PairsRef::new(a, rows, pairs, tile_pairs, 1);
                        // dwte first, while `down`, just written, is in
                        // cache (faster than after dx); the two products
                        // are independent.
                        let down = PairsRef::new(b, width, rows.div_ceil(2), 1, down_stride);
                        let out = MatMut::new(&mut dwte[j0 * c..(j0 + width) * c], width, c);
                        matmul_pairs(out, down, xc, true);
                        let wb = w.backward().pair_block(j0 / 2, pairs);
                        matmul_pairs(MatMut::new(dx_chunk, rows, c), along, wb, t > 0);
                    }
                }),
            }
            start += rows;
        }
    });
    total
}
