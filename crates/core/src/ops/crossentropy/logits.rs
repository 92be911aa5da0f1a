//! A chunk's tiles of logits, exponentiated while in cache: pass 1 of the
//! head, and the recomputing backward's way back to a tile's
//! exponentials (the same code, so the same bits).

use super::tile::{WRITE_AHEAD, exp_tile, exp_tile_bf16, scratch_halves};
use super::{FORWARD_ROWS, HeadWeights, TileStat, VOCAB_TILE, checked_target, tile_offset};
use crate::ops::bf16::{PairsRef, matmul_pairs, pack_rows};
use crate::ops::matmul::{MatMut, MatRef, matmul};

/// One chunk of rows as the tile products read it.
pub(super) struct Chunk<'a> {
    pub(super) wte: HeadWeights<'a>,
    /// The chunk's rows (rows, C), f32.
    pub(super) x: &'a [f32],
    /// The same rows packed as bf16 pairs (the bf16 head only).
    pub(super) packed: Option<PairsRef<'a>>,
    pub(super) targets: &'a [u32],
    pub(super) channels: usize,
    pub(super) vocab: usize,
    /// Whether each tile's statistics record its first arg-max.
    pub(super) find_argmax: bool,
}

impl<'a> Chunk<'a> {
    /// The chunk `x` (rows, C) with `targets`; the bf16 head packs its rows
    /// into `pack`.
    pub(super) fn new(
        wte: HeadWeights<'a>,
        x: &'a [f32],
        targets: &'a [u32],
        (channels, vocab): (usize, usize),
        pack: &'a mut Vec<u32>,
    ) -> Chunk<'a> {
        let packed = match wte {
            HeadWeights::F32(_) => None,
            HeadWeights::Bf16(_) => Some(pack_rows(pack, MatRef::new(x, targets.len(), channels))),
        };
        Chunk {
            wte,
            x,
            packed,
            targets,
            channels,
            vocab,
            find_argmax: false,
        }
    }

    pub(super) fn rows(&self) -> usize {
        self.targets.len()
    }

    pub(super) fn tiles(&self) -> usize {
        self.vocab.div_ceil(VOCAB_TILE)
    }

    /// Tile `t`'s first column and width.
    pub(super) fn tile(&self, t: usize) -> (usize, usize) {
        let j0 = t * VOCAB_TILE;
        (j0, VOCAB_TILE.min(self.vocab - j0))
    }
}

/// Where a tile's exponentials go: the f32 head's (rows, width) block,
/// which takes the logits and then their exponentials in place; or the
/// bf16 head's (rows, width) bf16 exponentials, if anything will read
/// them.
pub(super) enum TileOut<'a> {
    F32(&'a mut [f32]),
    Bf16(Option<&'a mut [u16]>),
}

/// Tile `t` of the chunk: logits = x · wte_tileᵀ, each row turned into
/// exp(logit - the row's maximum over the tile) while in cache; maxima,
/// sums and the targets' logits and exponentials go to `stats` (rows x
/// tiles, row-major). The bf16 head multiplies [`FORWARD_ROWS`] rows at
/// a time into `part`, so the exponentials read logits the kernel left
/// in L1/L2.
pub(super) fn tile_exps(
    ch: &Chunk,
    t: usize,
    out: TileOut,
    part: &mut Vec<f32>,
    stats: &mut [TileStat],
) {
    let (j0, width) = ch.tile(t);
    let (rows, c) = (ch.rows(), ch.channels);
    match (ch.wte, out) {
        (HeadWeights::F32(w), TileOut::F32(block)) => {
            let block = &mut block[..rows * width];
            matmul(
                MatMut::new(block, rows, width),
                MatRef::new(ch.x, rows, c),
                MatRef::new(&w[j0 * c..(j0 + width) * c], width, c).t(),
                false,
            );
            finish_rows(ch, block, None, 0, t, stats);
        }
        (HeadWeights::Bf16(w), TileOut::Bf16(mut exps)) => {
            let xa = ch.packed.expect("the bf16 head's chunk is packed");
            let wt = w.forward().row_block(j0, width);
            part.clear();
            part.resize(FORWARD_ROWS * VOCAB_TILE, 0.0);
            for r0 in (0..rows).step_by(FORWARD_ROWS) {
                let n = FORWARD_ROWS.min(rows - r0);
                let block = &mut part[..n * width];
                matmul_pairs(MatMut::new(block, n, width), xa.row_block(r0, n), wt, false);
                let out = exps
                    .as_deref_mut()
                    .map(|e| &mut e[r0 * width..(r0 + n) * width]);
                finish_rows(ch, block, out, r0, t, stats);
            }
        }
        _ => unreachable!("a tile's output matches the head's weights"),
    }
}

/// Rows `r0..` of tile `t`, just multiplied (`block`, rows after rows):
/// exponentials and statistics, while the rows are still in cache; the
/// exponentials also rounded into `exps` (rows after rows) if given.
fn finish_rows(
    ch: &Chunk,
    block: &mut [f32],
    mut exps: Option<&mut [u16]>,
    r0: usize,
    t: usize,
    stats: &mut [TileStat],
) {
    let (j0, width) = ch.tile(t);
    let tiles = ch.tiles();
    let rows = block.chunks_exact_mut(width).zip(&ch.targets[r0..]);
    for (i, (row, &target)) in rows.enumerate() {
        let target = checked_target(target, ch.vocab);
        let hit = (j0..j0 + width).contains(&target);
        let target_logit = if hit { row[target - j0] } else { 0.0 };
        let (max, sum, arg) = match exps.as_deref_mut() {
            Some(e) => {
                let ahead = e.as_ptr().wrapping_add((i + WRITE_AHEAD) * width);
                exp_tile_bf16(row, &mut e[i * width..][..width], ahead, ch.find_argmax)
            }
            None => exp_tile(row, ch.find_argmax),
        };
        // The same bits as the exponential in the row's sum (one scalar
        // `exp`, a lane of the vector one).
        let target_e = if hit {
            crate::ops::fast_math::exp(target_logit - max)
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
}

/// Pass 1 over one chunk: every tile through [`tile_exps`], statistics
/// into `stats`. With `keep_exps` (a backward pass will read them) each
/// tile's exponentials stay in `scratch` at [`tile_offset`] (f32, or bf16
/// in its halves: [`scratch_halves`]); without, the f32 head reuses one
/// tile's room and the bf16 head stores none.
pub(super) fn logits_pass(
    ch: &Chunk,
    scratch: &mut [f32],
    keep_exps: bool,
    part: &mut Vec<f32>,
    stats: &mut Vec<TileStat>,
) {
    let (rows, tiles) = (ch.rows(), ch.tiles());
    stats.clear();
    stats.resize(rows * tiles, TileStat::default());
    let at = |t: usize| if keep_exps { tile_offset(rows, t) } else { 0 };
    for t in 0..tiles {
        let width = ch.tile(t).1;
        let out = match ch.wte {
            HeadWeights::F32(_) => TileOut::F32(&mut scratch[at(t)..][..rows * width]),
            HeadWeights::Bf16(_) if keep_exps => {
                TileOut::Bf16(Some(&mut scratch_halves(scratch)[at(t)..][..rows * width]))
            }
            HeadWeights::Bf16(_) => TileOut::Bf16(None),
        };
        tile_exps(ch, t, out, part, stats);
    }
}
