//! Where the ranks of one host that update only their shares of the AdamW
//! moments leave a copy of those shares after each step, so that rank 0 can
//! save the whole moments without asking any rank (`last_step.rs`).
//!
//! Memory every rank of the host maps ([`Cluster::shared_words`]): two
//! slots, for even and odd steps, each with the whole first and second
//! moments (every rank writes only its ranges of them) and one stamp per
//! rank: the step its ranges hold, plus one (0: none yet). A rank writes
//! its ranges, then raises its stamp with release ordering; a reader that
//! sees the stamp with acquire ordering sees the ranges.

use super::Cluster;
use crate::tree::share;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The two slots in the host's shared memory.
pub(super) struct MomentSlots {
    /// `2 × ranks` stamps (slot-major), 8-byte aligned.
    stamps: *const AtomicU64,
    /// Slot s's first moments at `data + 2 s len`, its second moments
    /// `len` floats further.
    data: *mut f32,
    ranks: usize,
    len: usize,
}

// The memory stays mapped as long as the cluster that handed it out, which
// the run (and with it this struct's owner) holds; see the module's comment
// for who writes what.
unsafe impl Send for MomentSlots {}

/// Which ranges of the moments each rank keeps current: the shares of each
/// gradient bucket after a sharded update, or (moments gathered whole on
/// every rank) the shares of the whole buffer.
pub(super) fn ranges_of(
    buckets: Option<&[Range<usize>]>,
    len: usize,
    ranks: usize,
    rank: usize,
) -> Vec<Range<usize>> {
    match buckets {
        Some(buckets) => buckets
            .iter()
            .map(|b| {
                let s = share(b.len(), ranks, rank);
                b.start + s.start..b.start + s.end
            })
            .collect(),
        None => vec![share(len, ranks, rank)],
    }
}

/// Whether the ranks' ranges together cover `0..len` once.
pub(super) fn covers(buckets: Option<&[Range<usize>]>, len: usize, ranks: usize) -> bool {
    let mut all: Vec<Range<usize>> = (0..ranks)
        .flat_map(|q| ranges_of(buckets, len, ranks, q))
        .filter(|r| !r.is_empty())
        .collect();
    all.sort_by_key(|r| r.start);
    let mut at = 0;
    for r in all {
        if r.start != at {
            return false;
        }
        at = r.end;
    }
    at == len
}

impl MomentSlots {
    /// The slots for moments of `len` floats. Collective over the cluster;
    /// `None` on every rank where the ranks share no memory or it has no
    /// room.
    pub(super) fn allocate(cluster: &Cluster, len: usize) -> Option<MomentSlots> {
        let ranks = cluster.size();
        // One spare word to align the stamps to 8 bytes.
        let words = 1 + 2 * ranks * 2 + 4 * len;
        let base = cluster.shared_words(words)?;
        let skip = base.align_offset(std::mem::align_of::<AtomicU64>());
        if skip > 1 {
            return None;
        }
        // SAFETY: `words` u32 are mapped at `base`; the stamps take
        // `4 × ranks` of them after at most one word of alignment, and the
        // moments the `4 × len` after those.
        unsafe {
            let stamps = base.add(skip).cast::<AtomicU64>();
            let data = base.add(skip + 4 * ranks).cast::<f32>();
            Some(MomentSlots {
                stamps,
                data,
                ranks,
                len,
            })
        }
    }

    fn stamp(&self, step: u64, rank: usize) -> &AtomicU64 {
        let slot = (step % 2) as usize;
        // SAFETY: slot < 2 and rank < ranks: one of the `2 × ranks` stamps,
        // zeroed when mapped and only ever accessed atomically.
        unsafe { &*self.stamps.add(slot * self.ranks + rank) }
    }

    /// Pointers to slot `step % 2`'s first and second moments.
    fn moments(&self, step: u64) -> (*mut f32, *mut f32) {
        let slot = (step % 2) as usize;
        // SAFETY: both lie within the `4 × len` floats mapped for the slots.
        unsafe {
            let m = self.data.add(2 * slot * self.len);
            (m, m.add(self.len))
        }
    }

    /// This rank's `ranges` of `m` and `v` after `step`, into the step's
    /// slot, then its stamp.
    pub(super) fn write(
        &self,
        step: u64,
        rank: usize,
        ranges: &[Range<usize>],
        m: &[f32],
        v: &[f32],
    ) {
        let (sm, sv) = self.moments(step);
        for r in ranges.iter().filter(|r| r.end <= self.len) {
            // SAFETY: `r` lies within the slot's `len` floats and is this
            // rank's alone; no rank reads it before the stamp below says
            // the step is there, and no reader holds the step of this
            // parity two steps back (see `last_step.rs`).
            unsafe {
                std::ptr::copy_nonoverlapping(m[r.clone()].as_ptr(), sm.add(r.start), r.len());
                std::ptr::copy_nonoverlapping(v[r.clone()].as_ptr(), sv.add(r.start), r.len());
            }
        }
        self.stamp(step, rank).store(step + 1, Ordering::Release);
    }

    /// The whole moments after `step`, once every rank has stamped its
    /// ranges of them (waiting at most `patience`); the first rank that
    /// did not, otherwise.
    pub(super) fn read(
        &self,
        step: u64,
        patience: Duration,
    ) -> Result<(Vec<f32>, Vec<f32>), usize> {
        let deadline = Instant::now() + patience;
        for rank in 0..self.ranks {
            while self.stamp(step, rank).load(Ordering::Acquire) != step + 1 {
                if Instant::now() > deadline {
                    return Err(rank);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let (sm, sv) = self.moments(step);
        // SAFETY: every rank's stamp says its ranges hold `step`, and none
        // writes this slot again while the caller holds the step (see
        // `last_step.rs`).
        unsafe {
            Ok((
                std::slice::from_raw_parts(sm, self.len).to_vec(),
                std::slice::from_raw_parts(sv, self.len).to_vec(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranks_ranges_cover_the_buffer_once() {
        let buckets = [0..10, 10..13, 13..40];
        for ranks in 1..5 {
            assert!(covers(Some(&buckets), 40, ranks));
            assert!(covers(None, 40, ranks));
        }
        // Buckets that leave a gap leave weights nobody keeps.
        assert!(!covers(Some(&[0..10, 12..40]), 40, 2));
        assert_eq!(ranges_of(None, 10, 3, 1), vec![4..7]);
        assert_eq!(ranges_of(Some(&[0..4, 4..10]), 10, 2, 1), vec![2..4, 7..10]);
    }
}
