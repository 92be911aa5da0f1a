//! One weight W (rows, cols) packed as bf16 pairs in the two layouts the
//! products need, re-packed from the f32 master copy after every update:
//!   forward  `x · Wᵀ`   wants W's row pairs laid out transposed,
//!   backward `dy · W`   wants W's column pairs.
//! The packs live in this process's memory or in memory the ranks of one
//! host share.

use super::{LANES, PairsRef, pack_columns_range, pack_rows_transposed_range};
use crate::ops::matmul::MatRef;
use rayon::prelude::*;
use std::ops::Range;

/// Pair rows per parallel packing job.
pub const PACK_JOB_PAIRS: usize = 32;

/// Pair rows per parallel job of the transposed layout. Such a job reads
/// two floats per pair of every row: at 128 pairs, whole 1 KiB rows of a
/// 256-wide weight, which memory streams; a quarter of each row per pass
/// (32 pairs) made a pass over a large embedding much slower.
pub const PACK_JOB_PAIRS_TRANSPOSED: usize = 128;

/// Where one layout's packed pairs live.
enum PackBuf {
    /// This process's memory.
    Owned(Vec<u32>),
    /// Memory the ranks of one host all map: each packs its share of the
    /// pairs, then all read all (see [`WeightPacks::place_shared`]).
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

impl PackBuf {
    /// Moves this layout into the shared words at `base + at ..`, copying
    /// the part of `mine` (word indices from `base`) that falls in it;
    /// returns the words it takes.
    ///
    /// # Safety
    /// As [`WeightPacks::place_shared`].
    unsafe fn place_shared(&mut self, base: *mut u32, at: usize, mine: &Range<usize>) -> usize {
        let len = self.as_slice().len();
        let here = at..at + len;
        // The part of `mine` in this layout (empty when none is).
        let start = mine.start.max(here.start);
        let copy = start..mine.end.min(here.end).max(start);
        // SAFETY: within the words the caller vouches for.
        let shared = unsafe { base.add(at) };
        if !copy.is_empty() {
            let src = &self.as_slice()[copy.start - at..copy.end - at];
            // SAFETY: as above; these words are this rank's to write.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), shared.add(copy.start - at), src.len())
            };
        }
        *self = PackBuf::Shared { ptr: shared, len };
        len
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
    pub fn pack(&mut self, w: &[f32], rows: usize, cols: usize) {
        self.pack_part(w, rows, cols, &|n| 0..n)
    }

    /// Packs the pairs `part(pairs)` of each layout of W (rows, cols); the
    /// others keep what they hold.
    pub fn pack_part(&mut self, w: &[f32], rows: usize, cols: usize, part: PackPart) {
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

    /// Words (u32) of both layouts.
    pub fn words(&self) -> usize {
        self.forward.as_slice().len() + self.backward.as_slice().len()
    }

    /// Moves both layouts, forward then backward, into the shared words at
    /// `base + at ..`, this rank copying the part of `mine` (word indices
    /// from `base`) that falls in them; returns the words they take.
    ///
    /// # Safety
    /// `base + at` points to `words()` u32 that stay mapped, and are
    /// written by nothing else than these packs, for as long as they live.
    pub unsafe fn place_shared(&mut self, base: *mut u32, at: usize, mine: &Range<usize>) -> usize {
        // SAFETY: passed on from the caller; the two layouts lie one after
        // the other in the caller's words.
        unsafe {
            let f = self.forward.place_shared(base, at, mine);
            f + self.backward.place_shared(base, at + f, mine)
        }
    }
}
