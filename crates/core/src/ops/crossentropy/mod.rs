//! The tied output head, softmax and cross-entropy, fused and computed in
//! chunks of rows and tiles of the vocabulary.
//!
//! Materialising the whole (B·T, V) logits tensor would take hundreds of MB
//! per worker at V = 50,000, so rows are processed `chunk` at a time; for
//! each chunk of x (rows, C), in tiles of [`VOCAB_TILE`] columns:
//!   pass 1, tile by tile: logits = x_chunk · wte_tileᵀ, then in cache
//!     e = exp(logit - the row's maximum over the tile), its sum and maximum
//!   between: each row's log-sum-exp and loss from its tiles' statistics
//!   pass 2, tile by tile: dlogits = (p - onehot(target)) · grad_scale from
//!     e with one multiply, then dx_chunk += dlogits · wte_tile and
//!     dwte_tile += dlogitsᵀ · x_chunk
//! The only V-sized buffer is the (chunk, V) scratch, which holds the
//! exponentials between the passes: f32 in the f32 head, bf16 in the bf16
//! head (which rounds dlogits to bf16 anyway), halving the bytes written
//! in pass 1 and read back in pass 2 (the head's only DRAM stream besides
//! wte and dwte).
//!
//! Files: both passes here; `tile.rs` the elementwise work on one tile
//! (exponentials, dlogits rounded to bf16), `avx512.rs` its AVX512_BF16
//! rounding.

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
mod tests;
mod tile;

use tile::{
    TileSource, WRITE_AHEAD, as_halves, exp_tile, exp_tile_bf16, halves_to_pairs, scale_in_place,
    scratch_halves, tile_dlogits,
};

use super::bf16::{LANES, PairsRef, WeightPacks, matmul_pairs, pack_columns, pack_rows};
use super::linear_bf16::{with_scratch, with_scratch3};
use super::matmul::{MatMut, MatRef, matmul};
use super::matmul_tn::matmul_tn_acc;
use std::cell::RefCell;

/// The tied embedding as the head multiplies it: f32, or its bf16 packs
/// (bf16 inputs, f32 accumulation; softmax and loss stay f32).
#[derive(Clone, Copy)]
pub enum HeadWeights<'a> {
    F32(&'a [f32]),
    Bf16(&'a WeightPacks),
}

/// Rows of logits held at once: 512 x 50,000 floats is 104 MB per worker.
/// Every chunk streams all of wte (twice) and dwte (read and write)
/// through memory, so fewer, larger chunks are faster; past 512 rows the
/// gain is small against the scratch it costs. The bf16 head, which
/// stores its exponentials as bf16, runs twice these rows in the same
/// scratch.
pub const DEFAULT_CHUNK_ROWS: usize = 512;

/// Vocabulary columns per tile of the two passes: a chunk's tile of logits
/// (256 rows x 512 floats, 512 KiB) is still in L2 when its exponentials
/// are taken, and 512 columns are 256 pairs, one inner block of the bf16
/// kernel. A multiple of [`LANES`], so every tile but the last is a whole
/// number of the kernel's column tiles.
pub const VOCAB_TILE: usize = 512;
const _: () = assert!(VOCAB_TILE.is_multiple_of(LANES));

/// Rows of a bf16 forward tile multiplied before their exponentials are
/// taken: four of the kernel's 12-row blocks, 96 KiB of logits that are
/// still in L2 when read back (a whole 512-row tile is 1 MiB and
/// spills); half or twice as many rows are no better.
const FORWARD_ROWS: usize = 48;

/// Shapes: `rows` positions of `channels` features against a `vocab`-row
/// embedding, `chunk` rows of logits at a time.
#[derive(Clone, Copy, Debug)]
pub struct HeadShape {
    pub rows: usize,
    pub channels: usize,
    pub vocab: usize,
    pub chunk: usize,
}

/// Scratch floats needed: a chunk's logits, tile after tile, each tile
/// (rows, its width) contiguous (the bf16 head uses the first half, as
/// bf16).
pub fn scratch_len(chunk: usize, vocab: usize) -> usize {
    chunk * vocab.next_multiple_of(VOCAB_TILE)
}

/// Where tile `t` of a chunk of `rows` rows starts in the scratch: tiles
/// are stored one after another, each a dense (rows, width) block, so a
/// pass reads or writes one contiguous block per tile (the hardware
/// prefetcher follows it; rows of 2 KiB, 200 KiB apart, defeat it and
/// cost a page a row).
fn tile_offset(rows: usize, t: usize) -> usize {
    rows * t * VOCAB_TILE
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

/// One row's softmax statistics over one vocabulary tile.
#[derive(Clone, Copy, Debug, Default)]
struct TileStat {
    /// The row's largest logit in the tile, and its first column from the
    /// tile's start (0 unless arg-maxes were asked for).
    max: f32,
    arg: u32,
    /// Σ exp(logit - max) over the tile.
    sum: f32,
    /// The target's logit and exp(logit - max), in the tile that holds
    /// the target: the bf16 head stores the other exponentials rounded,
    /// and the target's dlogit, p - 1, would lose most of its bits to
    /// that rounding when p is near 1.
    target_logit: f32,
    target_e: f32,
}

/// A row's softmax over all its tiles.
struct RowSoftmax {
    /// The row's maximum and Σ exp(logit - max).
    max: f32,
    sum: f32,
    /// -log p(target), nats.
    loss: f32,
    /// The first column holding the maximum (0 unless arg-maxes were found).
    argmax: usize,
}

impl RowSoftmax {
    /// Joins a row's tile statistics (tiles in order).
    fn of(st: &[TileStat], target: usize) -> RowSoftmax {
        let mut max = f32::NEG_INFINITY;
        let mut argmax = 0;
        for (t, s) in st.iter().enumerate() {
            // Strictly greater: the first tile with the maximum wins.
            if s.max > max {
                max = s.max;
                argmax = t * VOCAB_TILE + s.arg as usize;
            }
        }
        let sum: f32 = st.iter().map(|s| s.sum * (s.max - max).exp()).sum();
        let lse = max + sum.ln();
        RowSoftmax {
            max,
            sum,
            loss: lse - st[target / VOCAB_TILE].target_logit,
            argmax,
        }
    }

    /// p / e for the exponentials e of tile `t` (taken against its max).
    fn tile_scale(&self, t: &TileStat) -> f32 {
        (t.max - self.max).exp() / self.sum
    }
}

thread_local! {
    static HEAD_SCRATCH: RefCell<(Vec<TileStat>, Vec<f32>, Vec<f32>)> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Runs `f` with this thread's tile statistics, factors and f32 tile (not
/// re-entrant).
fn with_head_scratch<R>(
    f: impl FnOnce(&mut Vec<TileStat>, &mut Vec<f32>, &mut Vec<f32>) -> R,
) -> R {
    HEAD_SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (a, b, c) = &mut *s;
        f(a, b, c)
    })
}

/// Pass 1 over one chunk: logits (rows, V) = x · wteᵀ tile by tile, each
/// tile's rows turned into exp(logit - the row's maximum over the tile)
/// while the tile is in cache; maxima, sums and the targets' logits and
/// exponentials go to `stats` (rows x tiles, row-major). The f32 head
/// leaves the exponentials in `scratch`, in place of the logits; the
/// bf16 head multiplies a few rows at a time into `part` and, when
/// `keep_exps` (a backward pass will read them), stores the
/// exponentials rounded to bf16 in `scratch`'s halves
/// ([`scratch_halves`]).
#[allow(clippy::too_many_arguments)]
fn logits_pass(
    wte: HeadWeights,
    scratch: &mut [f32],
    keep_exps: bool,
    part: &mut Vec<f32>,
    x: &[f32],
    targets: &[u32],
    c: usize,
    v: usize,
    stats: &mut Vec<TileStat>,
    find_argmax: bool,
) {
    let rows = targets.len();
    let tiles = v.div_ceil(VOCAB_TILE);
    stats.clear();
    stats.resize(rows * tiles, TileStat::default());
    // Rows `r0..` of tile `j0 / VOCAB_TILE`, just multiplied: exponentials
    // and statistics, while the rows are still in cache; the exponentials
    // also rounded into `exps` (rows after rows, `width` apart) if given.
    let mut finish_rows =
        |block: &mut [f32], mut exps: Option<&mut [u16]>, r0: usize, j0: usize, width: usize| {
            let t = j0 / VOCAB_TILE;
            let rows = block.chunks_exact_mut(width).zip(&targets[r0..]);
            for (i, (row, &target)) in rows.enumerate() {
                let target = checked_target(target, v);
                let hit = (j0..j0 + width).contains(&target);
                let target_logit = if hit { row[target - j0] } else { 0.0 };
                let (max, sum, arg) = match exps.as_deref_mut() {
                    Some(e) => {
                        let ahead = e.as_ptr().wrapping_add((i + WRITE_AHEAD) * width);
                        exp_tile_bf16(row, &mut e[i * width..][..width], ahead, find_argmax)
                    }
                    None => exp_tile(row, find_argmax),
                };
                // The same bits as the exponential in the row's sum (one
                // scalar `exp`, a lane of the vector one).
                let target_e = if hit {
                    super::fast_math::exp(target_logit - max)
                } else {
                    0.0
                };
                stats[(r0 + i) * tiles + t] = TileStat {
                    max,
                    arg: arg as u32,
                    sum,
                    target_logit,
                    target_e,
                };
            }
        };
    match wte {
        HeadWeights::F32(w) => {
            for j0 in (0..v).step_by(VOCAB_TILE) {
                let width = VOCAB_TILE.min(v - j0);
                let block = &mut scratch[tile_offset(rows, j0 / VOCAB_TILE)..][..rows * width];
                matmul(
                    MatMut::new(block, rows, width),
                    MatRef::new(x, rows, c),
                    MatRef::new(&w[j0 * c..(j0 + width) * c], width, c).t(),
                    false,
                );
                finish_rows(block, None, 0, j0, width);
            }
        }
        HeadWeights::Bf16(w) => with_scratch(|a, _| {
            let xa = pack_rows(a, MatRef::new(x, rows, c));
            part.clear();
            part.resize(FORWARD_ROWS * VOCAB_TILE, 0.0);
            let halves = scratch_halves(scratch);
            for j0 in (0..v).step_by(VOCAB_TILE) {
                let width = VOCAB_TILE.min(v - j0);
                let wt = w.forward().row_block(j0, width);
                let exps = &mut halves[tile_offset(rows, j0 / VOCAB_TILE)..][..rows * width];
                // A few of the kernel's row blocks at a time, into the same
                // small block, so that the exponentials read logits the
                // kernel left in L1/L2 and only their bf16 go to memory.
                for r0 in (0..rows).step_by(FORWARD_ROWS) {
                    let n = FORWARD_ROWS.min(rows - r0);
                    let block = &mut part[..n * width];
                    matmul_pairs(MatMut::new(block, n, width), xa.row_block(r0, n), wt, false);
                    let out = keep_exps.then(|| &mut exps[r0 * width..(r0 + n) * width]);
                    finish_rows(block, out, r0, j0, width);
                }
            }
        }),
    }
}

/// Forward and backward. x (N, C), targets (N), wte (V, C):
/// dx (N, C) `=` grad_scale · dL/dx, dwte (V, C) `+=` grad_scale · dL/dwte,
/// where L is the sum of per-row losses. Returns that sum.
///
/// Each chunk of rows runs in two passes over vocabulary tiles of
/// [`VOCAB_TILE`] columns. Pass 1 multiplies a tile of logits and, while
/// it is still in cache, exponentiates it against each row's maximum over
/// the tile ([`logits_pass`]). Pass 2 turns a tile into
/// `grad_scale · (p - onehot)` with one multiply per element (the tile's
/// correction to the row's whole softmax), rounds it to bf16 (from the
/// stored bf16 exponentials: see [`tile_dlogits`]), in both layouts the
/// products want, and runs that tile's share of dx and of dwte at once,
/// so dlogits never go to memory as a whole.
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
    let tiles = v.div_ceil(VOCAB_TILE);
    // The bf16 head's exponentials take half the bytes: the scratch holds
    // twice the rows, and fewer chunks stream wte and dwte fewer times.
    let chunk = match wte {
        HeadWeights::F32(_) => s.chunk,
        HeadWeights::Bf16(_) => 2 * s.chunk,
    };
    assert!(
        scratch.len() >= scratch_len(s.chunk.min(s.rows), v),
        "head scratch too small"
    );
    let mut total = 0.0f64;
    let mut start = 0;
    with_head_scratch(|stats, factors, part| {
        while start < s.rows {
            let rows = chunk.min(s.rows - start);
            let x_chunk = &x[start * c..(start + rows) * c];
            let logits = &mut *scratch;
            let targets = &targets[start..start + rows];
            let dx_chunk = &mut dx[start * c..(start + rows) * c];
            logits_pass(
                wte, logits, true, part, x_chunk, targets, c, v, stats, false,
            );
            // Each row's loss, and each (row, tile)'s factor from its
            // exponentials to grad_scale · p.
            factors.clear();
            factors.resize(rows * tiles, 0.0);
            for (r, &target) in targets.iter().enumerate() {
                let st = &stats[r * tiles..(r + 1) * tiles];
                let row = RowSoftmax::of(st, target as usize);
                total += row.loss as f64;
                for (f, t) in factors[r * tiles..(r + 1) * tiles].iter_mut().zip(st) {
                    *f = grad_scale * row.tile_scale(t);
                }
            }
            match wte {
                HeadWeights::F32(w) => {
                    for t in 0..tiles {
                        let j0 = t * VOCAB_TILE;
                        let width = VOCAB_TILE.min(v - j0);
                        // The tile's dlogits, in place (rows, width).
                        let block = &mut logits[tile_offset(rows, t)..][..rows * width];
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
                    let exps = &*scratch_halves(logits);
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
                        let j0 = t * VOCAB_TILE;
                        let width = VOCAB_TILE.min(v - j0);
                        let pairs = width.div_ceil(2);
                        // The tile's dlogits in both layouts; `along`
                        // through a u16 view, one bf16 per column.
                        let factor = |r: usize| factors[r * tiles + t];
                        let target_e = |r: usize| stats[r * tiles + t].target_e;
                        let src = TileSource {
                            e: &exps[tile_offset(rows, t)..][..rows * width],
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
    let tiles = v.div_ceil(VOCAB_TILE);
    let mut total = 0.0f64;
    let mut start = 0;
    with_head_scratch(|stats, _, part| {
        while start < s.rows {
            let rows = s.chunk.min(s.rows - start);
            let x_chunk = &x[start * c..(start + rows) * c];
            let chunk_targets = &targets[start..start + rows];
            let find_argmax = predictions.is_some();
            // Nothing reads the exponentials afterwards: the bf16 head
            // need not store them.
            logits_pass(
                wte,
                scratch,
                false,
                part,
                x_chunk,
                chunk_targets,
                c,
                v,
                stats,
                find_argmax,
            );
            for (r, &target) in chunk_targets.iter().enumerate() {
                let row = RowSoftmax::of(&stats[r * tiles..(r + 1) * tiles], target as usize);
                total += row.loss as f64;
                if let Some(pred) = predictions.as_deref_mut() {
                    pred[start + r] = row.argmax as u32;
                }
                if let Some(losses) = row_losses.as_deref_mut() {
                    losses[start + r] = row.loss;
                }
            }
            start += rows;
        }
    });
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
