//! The level above the spheres: several processes (MPI ranks, or threads
//! standing in for them in tests) that each run a sphere tree over their
//! share of every optimizer step and sum their gradients.
//!
//! The trainer sees only [`Cluster`], a handle over the small
//! [`Collective`] trait. A single machine is [`Cluster::solo`], which never
//! communicates; MPI lives behind the `mpi` cargo feature (`mpi.rs`), so the
//! single-machine path has no MPI in it. [`local::LocalCluster`] runs the
//! same collectives between threads of one process, so the distributed
//! trainer is tested on every machine, with or without MPI installed.

pub mod last_step;
pub mod local;
mod moment_slots;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "mpi")]
mod polite_sum;
#[cfg(feature = "mpi")]
mod shared_window;

use crate::error::TrainError;
use last_step::LastStep;
use std::ops::Range;
use std::sync::Arc;

/// The collectives a data-parallel run needs. Every rank calls them in the
/// same order with buffers of the same length; each returns once every rank
/// has called it. Results are identical on every rank and depend only on
/// the ranks' inputs (a fixed summation order), so a run with the same
/// layout is reproducible bit for bit.
pub trait Collective: Send + Sync {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Sums `buf` element-wise across ranks, in place.
    fn sum_f32(&self, buf: &mut [f32]);
    /// Sums `buf` element-wise across ranks, in place.
    fn sum_f64(&self, buf: &mut [f64]);
    /// Whether [`reduce_scatter_f32`](Self::reduce_scatter_f32) and
    /// [`all_gather_f32`](Self::all_gather_f32) cost less than an
    /// all-reduce, so that each rank updates only its share of the
    /// weights (the ranks of one host through shared memory). Every rank
    /// answers the same.
    fn shards(&self) -> bool {
        false
    }
    /// Sums `buf` across ranks, in place, where only this rank's share
    /// (`tree::share(len, size, rank)`) must be final afterwards: the rest
    /// may hold anything. The sum in the share is what
    /// [`sum_f32`](Self::sum_f32) gives, bit for bit.
    fn reduce_scatter_f32(&self, buf: &mut [f32]) {
        self.sum_f32(buf);
    }
    /// [`reduce_scatter_f32`](Self::reduce_scatter_f32) of `input` into
    /// `out` (the same length): only `out`'s share must be final, and
    /// `input` is only read (a sphere may go on writing elsewhere in the
    /// buffer it lies in). By default a copy, then the reduce-scatter.
    fn reduce_scatter_from_f32(&self, input: &[f32], out: &mut [f32]) {
        out.copy_from_slice(input);
        self.reduce_scatter_f32(out);
    }
    /// Every rank's share of `buf` from that rank, on every rank (the
    /// shares as in [`reduce_scatter_f32`](Self::reduce_scatter_f32)). By
    /// default a sum in which each rank brings its share and zeros: exact,
    /// since `x + 0 = x` (a `-0.0` comes back `+0.0`).
    fn all_gather_f32(&self, buf: &mut [f32]) {
        let mine = crate::tree::share(buf.len(), self.size(), self.rank());
        buf[..mine.start].fill(0.0);
        buf[mine.end..].fill(0.0);
        self.sum_f32(buf);
    }
    /// `len` u32, zeroed, that every rank maps: the same memory on every
    /// rank, mapped as long as this collective lives. Collective. `None`
    /// (on every rank) where the ranks do not share memory.
    fn shared_words(&self, _len: usize) -> Option<*mut u32> {
        None
    }
    /// Returns once every rank has called it.
    fn barrier(&self) {
        self.sum_f64(&mut [0.0]);
    }
    /// Replaces `bytes` on every rank with rank 0's.
    fn broadcast(&self, bytes: &mut Vec<u8>);
    /// What the ranks run on, for the run's log ("MPI: 2 ranks on a, b").
    fn describe(&self) -> String;
}

/// A shared handle to the run's collective, and the last completed step
/// rank 0 keeps for a save at once ([`LastStep`]).
#[derive(Clone)]
pub struct Cluster(Arc<dyn Collective>, Arc<LastStep>);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster(rank {} of {})", self.rank(), self.size())
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::solo()
    }
}

impl Cluster {
    pub fn new(collective: Arc<dyn Collective>) -> Cluster {
        Cluster(collective, Arc::default())
    }

    /// One machine: rank 0 of 1; no collective ever communicates.
    pub fn solo() -> Cluster {
        Cluster::new(Arc::new(Solo))
    }

    /// Where this rank hands over each completed step, once enabled
    /// (rank 0 saves it at once when the job is ended).
    pub fn last_step(&self) -> &Arc<LastStep> {
        &self.1
    }

    pub fn rank(&self) -> usize {
        self.0.rank()
    }

    pub fn size(&self) -> usize {
        self.0.size()
    }

    /// More than one rank.
    pub fn is_distributed(&self) -> bool {
        self.size() > 1
    }

    /// Rank 0 alone writes checkpoints, the metrics log and reports, and
    /// evaluates; the others only train.
    pub fn is_writer(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's sequences of a step of `n_seqs`: ranks first, then the
    /// spheres within a rank share this range.
    pub fn share(&self, n_seqs: usize) -> Range<usize> {
        crate::tree::share(n_seqs, self.size(), self.rank())
    }

    pub fn sum_f32(&self, buf: &mut [f32]) {
        if self.is_distributed() {
            self.0.sum_f32(buf);
        }
    }

    pub fn sum_f64(&self, buf: &mut [f64]) {
        if self.is_distributed() {
            self.0.sum_f64(buf);
        }
    }

    /// Each rank updates only its share of the weights (see
    /// [`Collective::shards`]); one machine never.
    pub fn shards(&self) -> bool {
        self.is_distributed() && self.0.shards()
    }

    /// This rank's share of a buffer of `len` that a reduce-scatter leaves
    /// final and an all-gather takes from it.
    pub fn shard_of(&self, len: usize) -> Range<usize> {
        crate::tree::share(len, self.size(), self.rank())
    }

    /// [`Collective::reduce_scatter_f32`]; one machine: nothing to do.
    pub fn reduce_scatter_f32(&self, buf: &mut [f32]) {
        if self.is_distributed() {
            self.0.reduce_scatter_f32(buf);
        }
    }

    /// [`Collective::reduce_scatter_from_f32`]; one machine: a copy.
    pub fn reduce_scatter_from_f32(&self, input: &[f32], out: &mut [f32]) {
        if self.is_distributed() {
            self.0.reduce_scatter_from_f32(input, out);
        } else {
            out.copy_from_slice(input);
        }
    }

    /// [`Collective::shared_words`]; one machine: `None`.
    pub fn shared_words(&self, len: usize) -> Option<*mut u32> {
        if self.is_distributed() {
            self.0.shared_words(len)
        } else {
            None
        }
    }

    /// [`Collective::barrier`]; one machine: nothing to wait for.
    pub fn barrier(&self) {
        if self.is_distributed() {
            self.0.barrier();
        }
    }

    /// [`Collective::all_gather_f32`]; one machine: nothing to do.
    pub fn all_gather_f32(&self, buf: &mut [f32]) {
        if self.is_distributed() {
            self.0.all_gather_f32(buf);
        }
    }

    /// Rank 0's bytes on every rank.
    pub fn broadcast(&self, bytes: &mut Vec<u8>) {
        if self.is_distributed() {
            self.0.broadcast(bytes);
        }
    }

    /// Rank 0's value of anything serialisable, on every rank.
    pub fn agree<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        value: T,
    ) -> Result<T, TrainError> {
        if !self.is_distributed() {
            return Ok(value);
        }
        let mut bytes = serde_json::to_vec(&value).map_err(|source| TrainError::Json {
            what: "the settings rank 0 sends",
            source,
        })?;
        self.broadcast(&mut bytes);
        serde_json::from_slice(&bytes).map_err(TrainError::Agreement)
    }

    /// One value per rank, on every rank (a sum where each rank fills its
    /// own slot).
    pub fn gather(&self, value: f64) -> Vec<f64> {
        let mut all = vec![0.0; self.size()];
        all[self.rank()] = value;
        self.sum_f64(&mut all);
        all
    }

    /// Every rank's 64-bit value, on every rank (split in 32-bit halves,
    /// which an f64 sum carries exactly).
    pub fn gather_u64(&self, value: u64) -> Vec<u64> {
        let k = self.size();
        let mut all = vec![0.0; 2 * k];
        all[2 * self.rank()] = (value >> 32) as f64;
        all[2 * self.rank() + 1] = (value & 0xffff_ffff) as f64;
        self.sum_f64(&mut all);
        (0..k)
            .map(|r| ((all[2 * r] as u64) << 32) | all[2 * r + 1] as u64)
            .collect()
    }

    pub fn describe(&self) -> String {
        self.0.describe()
    }
}

/// A single machine.
struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn broadcast(&self, _: &mut Vec<u8>) {}
    fn describe(&self) -> String {
        "one machine".into()
    }
}

/// A cheap fingerprint of the weights (FNV-1a over their bits), compared
/// across ranks to prove they stayed identical.
pub fn params_checksum(params: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in params {
        h ^= u64::from(p.to_bits());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solo_is_one_writer_rank_with_every_sequence() {
        let c = Cluster::solo();
        assert_eq!((c.rank(), c.size()), (0, 1));
        assert!(c.is_writer() && !c.is_distributed());
        assert_eq!(c.share(10), 0..10);
        let mut v = vec![1.5f32, 2.0];
        c.sum_f32(&mut v);
        assert_eq!(v, vec![1.5, 2.0]);
        assert_eq!(c.gather_u64(u64::MAX - 3), vec![u64::MAX - 3]);
    }

    #[test]
    fn checksum_sees_one_flipped_bit() {
        let a = vec![0.25f32; 1000];
        let mut b = a.clone();
        b[517] = f32::from_bits(b[517].to_bits() ^ 1);
        assert_ne!(params_checksum(&a), params_checksum(&b));
        assert_eq!(params_checksum(&a), params_checksum(&a.clone()));
    }
}
