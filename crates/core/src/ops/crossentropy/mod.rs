//! The tied output head, softmax and cross-entropy, fused and computed in
//! chunks of rows and tiles of the vocabulary.
//!
//! Materialising the whole (B·T, V) logits tensor would take hundreds of MB
//! per worker at V = 50,000, so rows are processed `chunk` at a time; for
//! each chunk of x (rows, C), in tiles of [`VOCAB_TILE`] columns:
//!   pass 1, tile by tile: logits = x_chunk · wte_tileᵀ, then in cache
//!     e = exp(logit - the row's maximum over the tile), its sum and maximum
//!   between: each row's log-sum-exp and loss from its tiles' statistics
//!   pass 2, tile by tile: the tile's exponentials again, then
//!     dlogits = (p - onehot(target)) · grad_scale from e with one
//!     multiply, dx_chunk += dlogits · wte_tile and
//!     dwte_tile += dlogitsᵀ · x_chunk
//! Pass 2 gets a tile's exponentials back in one of two ways
//! ([`HeadMode`], the same bits either way):
//! - `Store`: pass 1 leaves them in a (chunk, V) scratch (f32 in the f32
//!   head, bf16 in the bf16 head, which rounds dlogits to bf16 anyway) and
//!   pass 2 reads them back: a V-sized array written and read per chunk.
//! - `Recompute`: pass 2 multiplies the tile's logits again and
//!   exponentiates them while in cache, as Wijmans et al. 2024 ("Cut Your
//!   Losses") and Liger-Kernel's fused linear cross-entropy do: a third
//!   more products, nothing V-sized, a scratch of one tile.
//!
//! Files: the passes' driver here and in `backward.rs`; `logits.rs` a
//! tile's logits and exponentials (both passes); `tile.rs` the
//! elementwise work on one tile (exponentials, dlogits rounded to bf16),
//! `avx512.rs` its AVX512_BF16 rounding; `mode.rs` which mode runs.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod backward;
mod logits;
mod mode;
#[cfg(test)]
mod recompute_tests;
#[cfg(test)]
mod tests;
mod tile;

pub use backward::{head_loss_backward, head_loss_backward_in};
pub use mode::{DEFAULT_HEAD_MODE, HEAD_MODE_ENV, HeadMode, head_mode, set_head_mode};

use super::bf16::{LANES, WeightPacks};
use super::matmul::{MatMut, MatRef, matmul};
use logits::{Chunk, logits_pass};
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

/// Scratch floats that serve every [`HeadMode`]: [`scratch_len_for`]
/// the storing one, the larger.
pub fn scratch_len(chunk: usize, vocab: usize) -> usize {
    scratch_len_for(HeadMode::Store, chunk, vocab)
}

/// Scratch floats a mode needs for chunks of `chunk` rows: storing, a
/// chunk's exponentials, tile after tile, each tile (rows, its width)
/// contiguous (the bf16 head uses the first half, as bf16, for twice the
/// rows); recomputing, one tile's (the forward-only passes need no more
/// in either mode).
pub fn scratch_len_for(mode: HeadMode, chunk: usize, vocab: usize) -> usize {
    match mode {
        HeadMode::Store => chunk * vocab.next_multiple_of(VOCAB_TILE),
        HeadMode::Recompute => chunk * VOCAB_TILE,
    }
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

/// A thread's small buffers for the head.
#[derive(Default)]
struct HeadScratch {
    /// Tile statistics, (rows, tiles) row-major.
    stats: Vec<TileStat>,
    /// Each (row, tile)'s factor from exponentials to grad_scale · p.
    factors: Vec<f32>,
    /// The bf16 head's few rows of one tile's logits.
    part: Vec<f32>,
    /// The chunk's rows packed as bf16 pairs (the bf16 head).
    pack: Vec<u32>,
}

thread_local! {
    static HEAD_SCRATCH: RefCell<HeadScratch> = RefCell::new(HeadScratch::default());
}

/// Runs `f` with this thread's head buffers (not re-entrant).
fn with_head_scratch<R>(f: impl FnOnce(&mut HeadScratch) -> R) -> R {
    HEAD_SCRATCH.with(|s| f(&mut s.borrow_mut()))
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
    with_head_scratch(|hs| {
        while start < s.rows {
            let rows = s.chunk.min(s.rows - start);
            let x_chunk = &x[start * c..(start + rows) * c];
            let chunk_targets = &targets[start..start + rows];
            let mut ch = Chunk::new(wte, x_chunk, chunk_targets, (c, v), &mut hs.pack);
            ch.find_argmax = predictions.is_some();
            // Nothing reads the exponentials afterwards: one tile's room
            // serves every tile.
            logits_pass(&ch, scratch, false, &mut hs.part, &mut hs.stats);
            for (r, &target) in chunk_targets.iter().enumerate() {
                let st = &hs.stats[r * tiles..(r + 1) * tiles];
                let row = RowSoftmax::of(st, target as usize);
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
