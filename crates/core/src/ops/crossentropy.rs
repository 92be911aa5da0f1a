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

use super::bf16::{
    LANES, PairsRef, WeightPacks, from_bf16, matmul_pairs, pack_columns, pack_rows, to_bf16,
};
use super::fast_math::{SimdPath, simd_fn, simd_path};
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
/// through memory, so fewer, larger chunks are faster: on the seed preset,
/// 8 x 128 tokens, one thread, a step took 1.01 s (CPU time) with 64 rows,
/// 0.87-0.89 s with 128 and 0.80-0.81 s with 256 (f32, before the
/// vocabulary tiles). With the tiles, the bf16 head alone (same preset,
/// Zen 5, `tests/head_timing.rs`, one run) took 221 ms with 256 rows,
/// 204-206 ms with 512 and 198 ms with 1,024 (208 MB). The bf16 head,
/// which stores its exponentials as bf16, runs twice these rows in the
/// same scratch: with bf16 exponentials it took 196-199 ms with 512 rows
/// and 192.5 ms with 1,024 (same machine, co-tenant busy).
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
/// still in L2 when read back (a whole 512-row tile is 1 MiB and had
/// spilled). On a Zen 5, 24 and 96 rows timed no better.
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

simd_fn! {
    /// `row = exp(row - max(row))` in place; returns (max, Σ, the first
    /// index of the max or 0 unless `find_argmax`).
    fn exp_tile(row: &mut [f32], find_argmax: bool) -> (f32, f32, usize) {
        super::softmax::exp_shifted(row, find_argmax)
    }
}

simd_fn! {
    /// `row = row · factor`.
    fn scale_in_place(row: &mut [f32], factor: f32) {
        for x in row.iter_mut() {
            *x *= factor;
        }
    }
}

/// [`exp_tile`]'s statistics, the exponentials rounded to bf16 into
/// `out` and `row` left as it is. `ahead` is where a later row of
/// exponentials will be written: its lines are prefetched, as one row
/// (1 KiB) takes less time than a DRAM read.
fn exp_tile_bf16(
    row: &[f32],
    out: &mut [u16],
    ahead: *const u16,
    find_argmax: bool,
) -> (f32, f32, usize) {
    prefetch_for_write(ahead, row.len());
    #[cfg(target_arch = "x86_64")]
    if simd_path() == SimdPath::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the AVX-512 path is only chosen where the CPU has
        // AVX-512F, and AVX512_BF16 was just detected.
        return unsafe { exp_tile_bf16_convert(row, out, find_argmax) };
    }
    exp_tile_bf16_simd(row, out, find_argmax)
}

simd_fn! {
    /// [`exp_tile_bf16`] on each SIMD path, rounding with integer
    /// arithmetic.
    fn exp_tile_bf16_simd(row: &[f32], out: &mut [u16], find_argmax: bool) -> (f32, f32, usize) {
        super::softmax::exp_shifted_bf16(row, out, find_argmax)
    }
}

/// [`exp_tile_bf16`] rounding sixteen exponentials with one
/// `vcvtneps2bf16`. It flushes subnormal inputs, which the exponentials
/// never are (exp's clamped argument keeps them at or above 2⁻¹²⁶),
/// so its bits are those of the integer rounding; the integer rounding's
/// truncating store (`vpmovdw` to memory, which LLVM chose) had cost the
/// bf16 head's pass 1 more than all the bytes it saved.
///
/// # Safety
/// AVX-512F and AVX512_BF16 must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn exp_tile_bf16_convert(
    row: &[f32],
    out: &mut [u16],
    find_argmax: bool,
) -> (f32, f32, usize) {
    use std::arch::x86_64::*;
    super::softmax::exp_shifted_rounding(row, out, find_argmax, |e, o| {
        let o = &mut o[..16];
        // SAFETY: 16 floats read from `e`, 16 u16 written to `o` (both
        // bounds-checked); the features are the function's.
        unsafe {
            let h = _mm512_cvtneps_pbh(_mm512_loadu_ps(e.as_ptr()));
            let h = std::mem::transmute::<__m256bh, __m256i>(h);
            // Ordinary stores: streaming ones (which skip reading the
            // line first) timed 3 ms a head slower on a Zen 5, pass 2
            // then finding none of the chunk's last rows in L3.
            _mm256_storeu_si256(o.as_mut_ptr().cast(), h);
        }
    })
}

simd_fn! {
    /// `out = bf16(f32(e) · factor)` for exponentials `e` stored as bf16.
    fn scale_to_bf16(out: &mut [u16], e: &[u16], factor: f32) {
        for (o, &x) in out.iter_mut().zip(e) {
            *o = to_bf16(from_bf16(x) * factor);
        }
    }
}

simd_fn! {
    /// Pairs of two rows of bf16: `out[j] = (lo[j], hi[j])`.
    fn interleave(out: &mut [u32], lo: &[u16], hi: &[u16]) {
        for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
            *o = l as u32 | (h as u32) << 16;
        }
    }
}

/// Pairs of one row of bf16 and zeros (a chunk's odd last row).
fn widen(out: &mut [u32], lo: &[u16]) {
    for (o, &l) in out.iter_mut().zip(lo) {
        *o = l as u32;
    }
}

/// Pairs seen as their bf16 halves in memory order: on a little-endian
/// machine half 2p is pair p's low half (k = 2p), as [`PairsRef`] wants;
/// [`halves_to_pairs`] fixes the order where it is not.
fn as_halves(pairs: &mut [u32]) -> &mut [u16] {
    // SAFETY: the u16 view covers exactly the u32 slice's bytes, u16's
    // alignment divides u32's, and every bit pattern is a valid u16.
    unsafe { std::slice::from_raw_parts_mut(pairs.as_mut_ptr().cast::<u16>(), pairs.len() * 2) }
}

/// After writing through [`as_halves`]: element 2p in each pair's low half.
fn halves_to_pairs(pairs: &mut [u32]) {
    if cfg!(target_endian = "big") {
        for p in pairs {
            *p = p.rotate_left(16);
        }
    }
}

/// The head's f32 scratch seen as bf16 halves, where the bf16 head keeps
/// its exponentials (tile `t` of a chunk at [`tile_offset`] in halves):
/// half the bytes of f32 to write in pass 1 and read back in pass 2.
fn scratch_halves(scratch: &mut [f32]) -> &mut [u16] {
    // SAFETY: the u16 view covers exactly the f32 slice's bytes, u16's
    // alignment divides f32's, and every bit pattern is a valid u16.
    unsafe { std::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast::<u16>(), scratch.len() * 2) }
}

/// A tile's exponentials (rows, width), stored as bf16, and what turns
/// them into dlogits.
struct TileSource<'a> {
    e: &'a [u16],
    width: usize,
    /// The tile's first column.
    j0: usize,
    targets: &'a [u32],
    grad_scale: f32,
}

/// The tile's dlogits `factor(r) · e - grad_scale · onehot(target)`,
/// rounded to bf16, into both layouts the products read: `along`
/// (row r's bf16 at `r · VOCAB_TILE ..`, dx's left operand) and `down`
/// (rows 2q and 2q + 1 of column c as one pair at `q · VOCAB_TILE + c`,
/// dwte's left operand). Two rows at a time, so the stored tile, which
/// comes from memory, is read once.
///
/// `e` was rounded to bf16 when stored, so an element is
/// bf16(f32(bf16(e)) · factor), rounded twice: relative error up to
/// about 1.5 · 2⁻⁸ rather than 2⁻⁸, on dlogits whose own bf16 rounding
/// the products already accept. The target's element, p - 1, is taken
/// from its f32 exponential `target_e(r)` and rounded once: near p = 1
/// the stored exponential's rounding would be most of its value.
fn tile_dlogits(
    along: &mut [u16],
    down: &mut [u32],
    s: &TileSource,
    factor: &dyn Fn(usize) -> f32,
    target_e: &dyn Fn(usize) -> f32,
) {
    let (width, rows) = (s.width, s.targets.len());
    for (q, down) in down
        .chunks_exact_mut(VOCAB_TILE)
        .enumerate()
        .take(rows.div_ceil(2))
    {
        let r = 2 * q;
        let (lo, rest) = along[r * VOCAB_TILE..].split_at_mut(VOCAB_TILE);
        let e_lo = &s.e[r * width..][..width];
        if width % 2 == 1 {
            // The pad half of the last pair, read by the dx product.
            lo[width] = 0;
        }
        if r + 1 < rows {
            let hi = &mut rest[..VOCAB_TILE];
            if width % 2 == 1 {
                hi[width] = 0;
            }
            let e_hi = &s.e[(r + 1) * width..][..width];
            let (f_lo, f_hi) = (factor(r), factor(r + 1));
            let done = round_two_rows_fast(lo, hi, down, [e_lo, e_hi], [f_lo, f_hi]);
            scale_to_bf16(&mut lo[done..width], &e_lo[done..], f_lo);
            scale_to_bf16(&mut hi[done..width], &e_hi[done..], f_hi);
            interleave(&mut down[done..width], &lo[done..width], &hi[done..width]);
        } else {
            scale_to_bf16(&mut lo[..width], e_lo, factor(r));
            widen(&mut down[..width], &lo[..width]);
        }
        // The targets' columns: -grad_scale added before the one rounding.
        for (half, row) in (r..(r + 2).min(rows)).enumerate() {
            let target = s.targets[row] as usize;
            if (s.j0..s.j0 + width).contains(&target) {
                let c = target - s.j0;
                let value = to_bf16(target_e(row) * factor(row) - s.grad_scale);
                along[row * VOCAB_TILE + c] = value;
                let shift = 16 * half;
                down[c] = down[c] & !(0xffff << shift) | (value as u32) << shift;
            }
        }
    }
}

/// [`scale_round_two_rows`](super::bf16::pack_avx512::scale_round_two_rows) where the SIMD path is AVX-512
/// (it is then present); returns the columns done, 0 elsewhere.
fn round_two_rows_fast(
    lo: &mut [u16],
    hi: &mut [u16],
    down: &mut [u32],
    e: [&[u16]; 2],
    factors: [f32; 2],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    if simd_path() == SimdPath::Avx512 {
        // Prefetch four row pairs ahead: two rows are too short a stream
        // for the hardware prefetcher (9.6 ms with it against 19.5 ms
        // without, per 200 ms head on a Zen 5).
        let ahead = 8 * e[0].len();
        // SAFETY: the AVX-512 SIMD path is only chosen where the CPU has
        // AVX-512F.
        return unsafe {
            super::bf16::pack_avx512::scale_round_two_rows(lo, hi, down, e, factors, ahead)
        };
    }
    let _ = (lo, hi, down, e, factors);
    0
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

/// Rows ahead whose stored exponentials' lines are prefetched in pass 1.
const WRITE_AHEAD: usize = 4;

/// Asks for the cache lines of the `len` bf16 at `p` (a later row of
/// stored exponentials) in a state to be written.
#[inline(always)]
fn prefetch_for_write(p: *const u16, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in (0..len).step_by(32) {
        // SAFETY: a prefetch never faults, whatever the address;
        // wrapping_add makes no reference.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_ET0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_ET0>(p.wrapping_add(i).cast());
        }
    }
    let _ = (p, len);
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
                        // cache (3 ms of a 200 ms head faster than after
                        // dx on a Zen 5); the two products are independent.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fast_math::SimdPath;
    use crate::ops::fd;

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
        packs.pack(&wte, s.vocab, s.channels);
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

    /// A vocabulary over several tiles (an odd one, a short last tile),
    /// an odd number of rows and chunks that do not divide it: loss
    /// against the f64 formula, gradients against finite differences
    /// (f32), the bf16 head within rounding of f32, and the arg-max found
    /// across tiles (a maximum planted in a late tile, and a tie between
    /// two tiles going to the first).
    #[test]
    fn tiles_across_the_vocabulary_agree_with_the_whole_row() {
        let s = HeadShape {
            rows: 7,
            channels: 6,
            vocab: 2 * VOCAB_TILE + 37,
            chunk: 4,
        };
        let x = fd::random(s.rows * s.channels, 11);
        let mut wte = fd::random(s.vocab * s.channels, 12);
        // Row 0's best token sits in the last tile; row 1 ties between
        // tiles 0 and 2 (the same embedding row twice).
        let late = 2 * VOCAB_TILE + 5;
        for i in 0..s.channels {
            wte[late * s.channels + i] = 4.0 * x[i];
        }
        let (a, b) = (7, 2 * VOCAB_TILE + 9);
        for i in 0..s.channels {
            let w = 5.0 * x[s.channels + i];
            wte[a * s.channels + i] = w;
            wte[b * s.channels + i] = w;
        }
        let targets: Vec<u32> = [3, late, VOCAB_TILE, s.vocab - 1, 0, b, VOCAB_TILE - 1]
            .iter()
            .map(|&t| t as u32)
            .collect();
        let want = naive_loss(&x, &wte, &targets, s);
        let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
        let mut pred = vec![0u32; s.rows];
        let mut losses = vec![0.0f32; s.rows];
        let eval = head_loss_rows(
            &x,
            &targets,
            HeadWeights::F32(&wte),
            &mut scratch,
            s,
            Some(&mut pred),
            Some(&mut losses),
        );
        assert!((eval - want).abs() < 1e-4 * want.abs(), "{eval} vs {want}");
        let sum: f64 = losses.iter().map(|&l| l as f64).sum();
        assert!((sum - eval).abs() < 1e-4 * eval.abs());
        let mut logits = vec![0.0; s.rows * s.vocab];
        head_logits(&mut logits, &x, &wte, s.rows, s.channels, s.vocab);
        for (r, row) in logits.chunks(s.vocab).enumerate() {
            let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let first = row.iter().position(|&l| l == best).unwrap();
            assert_eq!(pred[r] as usize, first, "row {r}");
        }
        assert_eq!(pred[0] as usize, late);
        assert_eq!(pred[1] as usize, a, "a tie goes to the first tile");

        let scale = 0.25;
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
            scale,
        );
        assert_eq!(train, eval, "training and evaluation agree");
        let mut sc = scratch.clone();
        fd::check("dx", &x, &dx, 2e-3, &mut |p| {
            scale as f64 * head_loss(p, &targets, HeadWeights::F32(&wte), &mut sc, s, None)
        });
        // dwte on the rows that matter (targets, the planted rows) and a
        // few others: the whole (1,061 x 6) check is slow.
        for j in [
            0usize,
            3,
            7,
            VOCAB_TILE - 1,
            VOCAB_TILE,
            late,
            b,
            s.vocab - 1,
        ] {
            for i in 0..s.channels {
                let k = j * s.channels + i;
                let h = 1e-2f32;
                let mut wp = wte.clone();
                wp[k] += h;
                let up = head_loss(&x, &targets, HeadWeights::F32(&wp), &mut sc, s, None);
                wp[k] -= 2.0 * h;
                let down = head_loss(&x, &targets, HeadWeights::F32(&wp), &mut sc, s, None);
                let num = scale as f64 * (up - down) / (2.0 * h as f64);
                let got = dwte[k] as f64;
                assert!(
                    (got - num).abs() < 2e-3 * (1.0 + num.abs()),
                    "dwte[{j}, {i}]: {got} vs {num}"
                );
            }
        }

        let mut packs = WeightPacks::default();
        packs.pack(&wte, s.vocab, s.channels);
        let mut dx16 = vec![0.0; x.len()];
        let mut dw16 = vec![0.0; wte.len()];
        let l16 = head_loss_backward(
            &mut dx16,
            &mut dw16,
            &x,
            &targets,
            HeadWeights::Bf16(&packs),
            &mut scratch,
            s,
            scale,
        );
        assert!((l16 - train).abs() < 5e-3 * train.abs(), "{l16} vs {train}");
        for (name, a, b) in [("dx", &dx16, &dx), ("dwte", &dw16, &dwte)] {
            let size = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b.iter())
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            assert!(worst < 2e-2 * size, "{name}: error {worst} of scale {size}");
        }
    }

    /// The bf16 head's exponentials: on every SIMD path, the statistics
    /// of [`exp_tile`] to the bit and its exponentials rounded by
    /// `to_bf16`, on rows with NaN, infinite and far-apart logits (the
    /// rounding there has no NaN case) and lengths around the lanes.
    #[test]
    fn bf16_exponentials_are_the_f32_ones_rounded() {
        use crate::ops::fast_math::{available_paths, with_path};
        for (n, seed) in [(1usize, 41u64), (15, 42), (16, 43), (37, 44), (512, 45)] {
            let mut row: Vec<f32> = fd::random(n, seed).iter().map(|v| v * 40.0).collect();
            if n > 3 {
                row[1] = f32::NAN;
                row[2] = -1e30;
                row[3] = f32::NEG_INFINITY;
            }
            let mut rows = vec![row.clone()];
            if n > 5 {
                let mut inf = row.clone();
                inf[5] = f32::INFINITY;
                rows.push(inf);
            }
            rows.push(vec![f32::NAN; n]);
            for row in &rows {
                for path in available_paths() {
                    let (want_row, want) = with_path(path, || {
                        let mut r = row.clone();
                        let st = exp_tile(&mut r, true);
                        (r, st)
                    });
                    let mut out = vec![7u16; n + 1];
                    let got = with_path(path, || {
                        exp_tile_bf16(row, &mut out[..n], std::ptr::null(), true)
                    });
                    let bits = |(m, s, a): (f32, f32, usize)| (m.to_bits(), s.to_bits(), a);
                    assert_eq!(bits(got), bits(want), "{path:?} n {n}");
                    for (c, (&o, &e)) in out.iter().zip(&want_row).enumerate() {
                        assert_eq!(o, to_bf16(e), "{path:?} n {n} column {c}");
                    }
                    assert_eq!(out[n], 7, "nothing written past the row");
                }
            }
        }
    }

    /// A tile's dlogits in both layouts, on every SIMD path, against a
    /// plain per-element rounding of `factor · e` for the stored bf16
    /// exponentials `e`, and of `factor · target_e - grad_scale` (the
    /// f32 exponential, not the stored one) at the target: an odd number
    /// of rows (the last pair half empty), an odd width past whole
    /// vectors, targets inside and outside the tile.
    #[test]
    fn tile_dlogits_round_each_element_once_in_both_layouts() {
        use crate::ops::fast_math::{available_paths, with_path};
        let (rows, width, j0, grad_scale) = (5usize, 83usize, 1024usize, 0.75f32);
        let e: Vec<u16> = fd::random(rows * width, 31)
            .iter()
            .map(|v| to_bf16(v.abs()))
            .collect();
        let targets = [1024 + 3, 7, 1024 + 82, 1024 + 16, 1024];
        let factors = [0.5f32, 1.25, 3e-3, 0.75, 2.0];
        // Not any stored value: taking the target's from `e` fails.
        let target_es = [0.9990001f32, 0.3, 0.123457, 0.999, 0.77777];
        let src = TileSource {
            e: &e,
            width,
            j0,
            targets: &targets,
            grad_scale,
        };
        let run = || {
            let mut along = vec![9u16; rows * VOCAB_TILE];
            let mut down = vec![9u32; rows.div_ceil(2) * VOCAB_TILE];
            tile_dlogits(&mut along, &mut down, &src, &|r| factors[r], &|r| {
                target_es[r]
            });
            (along, down)
        };
        let want = |r: usize, c: usize| {
            if targets[r] as usize == j0 + c {
                to_bf16(target_es[r] * factors[r] - grad_scale)
            } else {
                to_bf16(from_bf16(e[r * width + c]) * factors[r])
            }
        };
        for path in available_paths() {
            let (along, down) = with_path(path, run);
            for r in 0..rows {
                for c in 0..width {
                    assert_eq!(along[r * VOCAB_TILE + c], want(r, c), "{path:?} ({r}, {c})");
                }
                // The odd width's pad half is zero for the dx product.
                assert_eq!(along[r * VOCAB_TILE + width], 0);
            }
            for q in 0..rows.div_ceil(2) {
                for c in 0..width {
                    let hi = if 2 * q + 1 < rows {
                        want(2 * q + 1, c)
                    } else {
                        0
                    };
                    let pair = want(2 * q, c) as u32 | (hi as u32) << 16;
                    assert_eq!(down[q * VOCAB_TILE + c], pair, "{path:?} pair ({q}, {c})");
                }
            }
        }
    }

    /// Every SIMD path the CPU has gives the bf16 head's bits, and the
    /// f32 head's to rounding; the scalar bf16 model (what runs where
    /// AVX512_BF16 is missing) matches the fast kernel on a tile product.
    #[test]
    fn every_simd_path_agrees_and_bf16_to_the_bit() {
        use crate::ops::bf16::{Kernel, matmul_pairs_with};
        use crate::ops::fast_math::{available_paths, with_path};
        let s = HeadShape {
            rows: 9,
            channels: 8,
            vocab: VOCAB_TILE + 77,
            chunk: 4,
        };
        let x = fd::random(s.rows * s.channels, 21);
        let wte = fd::random(s.vocab * s.channels, 22);
        let targets: Vec<u32> = (0..s.rows as u32)
            .map(|r| (r * 131 + 5) % s.vocab as u32)
            .collect();
        let mut packs = WeightPacks::default();
        packs.pack(&wte, s.vocab, s.channels);
        let run = |w: HeadWeights| {
            let mut scratch = vec![0.0; scratch_len(s.chunk, s.vocab)];
            let mut dx = vec![0.0; x.len()];
            let mut dwte = vec![0.5; wte.len()];
            let loss =
                head_loss_backward(&mut dx, &mut dwte, &x, &targets, w, &mut scratch, s, 0.5);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            (loss.to_bits(), bits(&dx), bits(&dwte))
        };
        // bf16: the products do not depend on the path, and the softmax
        // pieces give the same bits on every path.
        let reference = with_path(SimdPath::Portable, || run(HeadWeights::Bf16(&packs)));
        for path in available_paths() {
            let got = with_path(path, || run(HeadWeights::Bf16(&packs)));
            assert!(
                got == reference,
                "bf16 head on {path:?} differs from the portable path"
            );
        }
        // f32: the products differ by path (gemm, or the AVX-512 kernel
        // for dwte), so only to rounding.
        let reference = with_path(SimdPath::Portable, || run(HeadWeights::F32(&wte)));
        for path in available_paths() {
            let got = with_path(path, || run(HeadWeights::F32(&wte)));
            let (a, b) = (f64::from_bits(got.0), f64::from_bits(reference.0));
            assert!((a - b).abs() < 1e-6 * b.abs(), "{path:?}: loss {a} vs {b}");
            for (x, y) in got
                .1
                .iter()
                .chain(&got.2)
                .zip(reference.1.iter().chain(&reference.2))
            {
                let (x, y) = (f32::from_bits(*x), f32::from_bits(*y));
                assert!(
                    (x - y).abs() < 1e-5 * (1.0 + y.abs()),
                    "{path:?}: {x} vs {y}"
                );
            }
        }
        // The scalar model of the bf16 product and the fast kernel (where
        // the CPU has it) agree on one of the head's tile products.
        if Kernel::detect() == Kernel::Avx512 {
            let mut pa = Vec::new();
            let xa = pack_rows(&mut pa, MatRef::new(&x, s.rows, s.channels));
            let wf = packs.forward().row_block(VOCAB_TILE, s.vocab - VOCAB_TILE);
            let n = s.vocab - VOCAB_TILE;
            let (mut fast, mut model) = (vec![0.0; s.rows * n], vec![0.0; s.rows * n]);
            matmul_pairs_with(
                Kernel::Avx512,
                MatMut::new(&mut fast, s.rows, n),
                xa,
                wf,
                false,
            );
            matmul_pairs_with(
                Kernel::Model,
                MatMut::new(&mut model, s.rows, n),
                xa,
                wf,
                false,
            );
            assert_eq!(fast, model);
        }
    }
}
