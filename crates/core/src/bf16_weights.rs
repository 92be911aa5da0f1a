//! The weights in bf16, packed once per optimizer step for the bf16
//! matmuls (`ops::bf16`), in the two layouts the products need:
//!   forward  `x · Wᵀ`   wants W's row pairs laid out transposed,
//!   backward `dy · W`   wants W's column pairs,
//! for every linear layer's weight and for the tied embedding (the head's
//! `x · wteᵀ` and `dlogits · wte`). The f32 parameters stay the master
//! copy: these packs are derived from them and must be rebuilt after every
//! change ([`Bf16Weights::refresh_part`]), which the trainer does after each
//! update. Packing reads every weight once and writes it twice in half the
//! bytes, about 1% of a step's matmul work at 512 rows per sphere.

use super::ops::bf16::{
    LANES, PACK_JOB_PAIRS, PACK_JOB_PAIRS_TRANSPOSED, PairsRef, pack_columns_range,
    pack_rows_transposed_range,
};
use super::ops::matmul::MatRef;
use super::params::ParamLayout;
use rayon::prelude::*;
use std::ops::Range;

/// Where one layout's packed pairs live.
enum PackBuf {
    /// This process's memory.
    Owned(Vec<u32>),
    /// Memory the ranks of one host all map: each packs its share of the
    /// pairs, then all read all (see [`Bf16Weights::place_shared`]).
    Shared { ptr: *mut u32, len: usize },
}

// SAFETY: the shared memory outlives the model (`place_shared`'s
// contract) and is only written through `&mut self`, so sharing the model
// between threads shares reads only.
unsafe impl Send for PackBuf {}
unsafe impl Sync for PackBuf {}

impl PackBuf {
    fn as_slice(&self) -> &[u32] {
        match self {
            PackBuf::Owned(v) => v,
            // SAFETY: `len` words mapped while the model lives.
            PackBuf::Shared { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u32] {
        match self {
            PackBuf::Owned(v) => v,
            // SAFETY: as above; this process writes only the pairs it packs
            // (the other ranks write other pairs, in other processes).
            PackBuf::Shared { ptr, len } => unsafe { std::slice::from_raw_parts_mut(*ptr, *len) },
        }
    }

    fn resize(&mut self, len: usize) {
        match self {
            PackBuf::Owned(v) => v.resize(len, 0),
            PackBuf::Shared { len: have, .. } => {
                assert_eq!(*have, len, "shared packs keep their size")
            }
        }
    }
}

impl Default for PackBuf {
    fn default() -> Self {
        PackBuf::Owned(Vec::new())
    }
}

/// A copy is this process's own: it must not follow the ranks' updates.
impl Clone for PackBuf {
    fn clone(&self) -> Self {
        PackBuf::Owned(self.as_slice().to_vec())
    }
}

impl std::fmt::Debug for PackBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self {
            PackBuf::Owned(_) => "owned",
            PackBuf::Shared { .. } => "shared",
        };
        write!(f, "PackBuf({place}, {} words)", self.as_slice().len())
    }
}

/// Which pairs of a layout of `n` pairs to pack: all of them, or one
/// rank's share when the ranks of a host share the packs.
pub type PackPart<'a> = &'a (dyn Fn(usize) -> Range<usize> + Sync);

/// One weight W (rows, cols) in both layouts.
#[derive(Clone, Debug, Default)]
pub struct WeightPacks {
    rows: usize,
    cols: usize,
    /// Row pairs, transposed: the right operand of `x · Wᵀ`.
    forward: PackBuf,
    /// Column pairs: the right operand of `dy · W`.
    backward: PackBuf,
}

impl WeightPacks {
    /// Packs W (rows, cols) into both layouts, pair rows in parallel jobs.
    fn pack(&mut self, w: &[f32], rows: usize, cols: usize) {
        self.pack_part(w, rows, cols, &|n| 0..n)
    }

    /// Packs the pairs `part(pairs)` of each layout of W (rows, cols); the
    /// others keep what they hold.
    fn pack_part(&mut self, w: &[f32], rows: usize, cols: usize, part: PackPart) {
        self.rows = rows;
        self.cols = cols;
        let w = MatRef::new(&w[..rows * cols], rows, cols);
        let f_stride = rows.next_multiple_of(LANES);
        let f = part(cols.div_ceil(2));
        self.forward.resize(cols.div_ceil(2) * f_stride);
        let b_stride = cols.next_multiple_of(LANES);
        let b = part(rows.div_ceil(2));
        self.backward.resize(rows.div_ceil(2) * b_stride);
        let (forward, backward) = (self.forward.as_mut_slice(), self.backward.as_mut_slice());
        rayon::join(
            || {
                forward[f.start * f_stride..f.end * f_stride]
                    .par_chunks_mut(PACK_JOB_PAIRS_TRANSPOSED * f_stride)
                    .enumerate()
                    .for_each(|(j, d)| {
                        pack_rows_transposed_range(d, w, f.start + j * PACK_JOB_PAIRS_TRANSPOSED)
                    })
            },
            || {
                backward[b.start * b_stride..b.end * b_stride]
                    .par_chunks_mut(PACK_JOB_PAIRS * b_stride)
                    .enumerate()
                    .for_each(|(j, d)| pack_columns_range(d, w, b.start + j * PACK_JOB_PAIRS))
            },
        );
    }

    /// Packs a (rows, cols) weight on its own (tests).
    pub fn pack_for_test(&mut self, w: &[f32], rows: usize, cols: usize) {
        self.pack(w, rows, cols)
    }

    /// W as the right operand of `x (n, cols) · Wᵀ`: (rows, cols/2 pairs).
    pub fn forward(&self) -> PairsRef<'_> {
        let pairs = self.cols.div_ceil(2);
        let forward = self.forward.as_slice();
        let stride = forward.len() / pairs.max(1);
        PairsRef::new(forward, self.rows, pairs, 1, stride)
    }

    /// W as the right operand of `dy (n, rows) · W`: (cols, rows/2 pairs).
    pub fn backward(&self) -> PairsRef<'_> {
        let pairs = self.rows.div_ceil(2);
        let backward = self.backward.as_slice();
        let stride = backward.len() / pairs.max(1);
        PairsRef::new(backward, self.cols, pairs, 1, stride)
    }
}

/// The four linear weights of one block.
#[derive(Clone, Debug, Default)]
pub struct LayerPacks {
    pub c_attn: WeightPacks,
    pub attn_proj: WeightPacks,
    pub c_fc: WeightPacks,
    pub mlp_proj: WeightPacks,
}

/// Every matmul weight of a model in bf16.
#[derive(Clone, Debug, Default)]
pub struct Bf16Weights {
    pub wte: WeightPacks,
    pub layers: Vec<LayerPacks>,
}

impl Bf16Weights {
    pub fn new(layout: &ParamLayout, vocab: usize, c: usize, inner: usize, params: &[f32]) -> Self {
        let mut w = Bf16Weights {
            wte: WeightPacks::default(),
            layers: vec![LayerPacks::default(); layout.layers.len()],
        };
        w.refresh_part(layout, vocab, c, inner, params, &|n| 0..n);
        w
    }

    /// Re-packs the pairs `part(n)` of every layout of `n` pairs from
    /// `params` (on rayon's threads): all of them (`|n| 0..n`), or a
    /// rank's share of packs the ranks of a host share.
    pub fn refresh_part(
        &mut self,
        layout: &ParamLayout,
        vocab: usize,
        c: usize,
        inner: usize,
        params: &[f32],
        part: PackPart,
    ) {
        let mut jobs: Vec<(&mut WeightPacks, usize, usize, usize)> =
            vec![(&mut self.wte, layout.wte, vocab, c)];
        for (packs, o) in self.layers.iter_mut().zip(&layout.layers) {
            jobs.push((&mut packs.c_attn, o.c_attn_weight, 3 * c, c));
            jobs.push((&mut packs.attn_proj, o.attn_proj_weight, c, c));
            jobs.push((&mut packs.c_fc, o.c_fc_weight, inner, c));
            jobs.push((&mut packs.mlp_proj, o.mlp_proj_weight, c, inner));
        }
        jobs.into_par_iter().for_each(|(packs, at, rows, cols)| {
            packs.pack_part(&params[at..at + rows * cols], rows, cols, part)
        });
    }

    /// Every layout, in one fixed order.
    fn layouts_mut(&mut self) -> Vec<&mut PackBuf> {
        let mut all = vec![&mut self.wte.forward, &mut self.wte.backward];
        for l in &mut self.layers {
            for w in [
                &mut l.c_attn,
                &mut l.attn_proj,
                &mut l.c_fc,
                &mut l.mlp_proj,
            ] {
                all.push(&mut w.forward);
                all.push(&mut w.backward);
            }
        }
        all
    }

    /// Words (u32) of all layouts together.
    pub fn words(&mut self) -> usize {
        self.layouts_mut()
            .into_iter()
            .map(|b| b.as_slice().len())
            .sum()
    }

    /// Moves every layout into the `words()` u32 at `base`, which the
    /// ranks of a host all map, one after another in a fixed order; each
    /// rank copies `mine(words)` of what it holds (every rank holds the
    /// same), and must wait for the others before reading.
    ///
    /// # Safety
    /// `base` points to `words()` u32 that stay mapped, and are written by
    /// nothing else than these packs, for as long as this model lives.
    pub unsafe fn place_shared(&mut self, base: *mut u32, mine: Range<usize>) {
        let mut at = 0;
        for buf in self.layouts_mut() {
            let len = buf.as_slice().len();
            let here = at..at + len;
            // The part of `mine` in this layout (empty when none is).
            let start = mine.start.max(here.start);
            let copy = start..mine.end.min(here.end).max(start);
            // SAFETY: within the `words()` the caller vouches for.
            let shared = unsafe { base.add(at) };
            if !copy.is_empty() {
                let src = &buf.as_slice()[copy.start - at..copy.end - at];
                // SAFETY: as above; these words are this rank's to write.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.as_ptr(),
                        shared.add(copy.start - at),
                        src.len(),
                    )
                };
            }
            *buf = PackBuf::Shared { ptr: shared, len };
            at += len;
        }
    }
}
