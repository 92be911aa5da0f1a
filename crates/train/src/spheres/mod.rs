//! The kissing-spheres worker tree.
//!
//! N spheres (worker threads). Sphere 0 is the root; sphere i > 0 has parent
//! (i - 1) / 12, so the root has up to 12 children, each of them up to 12,
//! and so on. Every sphere computes: an optimizer step's sequences are split
//! into N contiguous, near-equal shares, one per sphere, and each sphere runs
//! forward and backward over its share into its own gradient buffer against
//! the shared parameters.
//!
//! Then the gradients flow up the tree: every parent adds its children's
//! totals into its own buffer, children in index order, deepest parents first.
//! Rather than let the root add up to twelve whole buffers while the others
//! wait, the buffer is cut into N slices and sphere s performs that same tree
//! reduction on slice s of every buffer. The additions and their order are
//! exactly those of the tree, so the sum is bit-identical to a sequential
//! tree reduction, but every core shares the work. The same slices then
//! carry the global-norm computation and the AdamW update.
//!
//! The spheres are the threads of one [`SpherePool`], started with the
//! first step and kept, parked, between phases and steps until the spheres
//! are dropped (the run ends, stops or fails).
//!
//! Determinism: the split of sequences, the reduction order and the slices
//! depend only on N, and dropout masks are drawn per sequence from
//! (seed, step, sequence), so the same seed and N give bit-identical runs and
//! different N differ only by float summation order.

mod evaluate;
#[cfg(feature = "test-faults")]
mod faults;
mod gradients;
mod live;
mod update;

pub use crate::tree::{FANOUT, children_of, level_of, parent_of, share};
#[cfg(feature = "test-faults")]
pub(crate) use faults::panic_if_armed;
pub(crate) use gradients::{SphereJob, compute_share, sum_sq};
pub(crate) use live::{Live, Tally, collect_spheres, snapshot, state_code};

use crate::events::{SphereState, SphereStats};
use crate::pool::SpherePool;
use cllm_core::rng::Rng;
use cllm_core::{Batch, Gpt, Workspace};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One optimizer step's input: `n_seqs` sequences of `seq_len` tokens.
pub struct StepInput<'a> {
    pub inputs: &'a [u32],
    pub targets: &'a [u32],
    pub n_seqs: usize,
    pub seq_len: usize,
    /// The optimizer step (0-based), for the dropout streams.
    pub step: u64,
    pub seed: u64,
    /// Dropout on (training) or off.
    pub dropout: bool,
}

impl<'a> StepInput<'a> {
    /// Sequences `rows` of the step as one batch.
    pub(super) fn batch(&self, rows: Range<usize>) -> Batch<'a> {
        let t = self.seq_len;
        Batch {
            inputs: &self.inputs[rows.start * t..rows.end * t],
            targets: &self.targets[rows.start * t..rows.end * t],
            batch: rows.len(),
            seq: t,
        }
    }

    /// With dropout on, one mask stream per sequence of `rows`, drawn from
    /// (seed, step, sequence): masks do not depend on how sequences were
    /// shared out (across spheres or ranks).
    pub(super) fn dropout_streams(&self, rows: Range<usize>) -> Option<Vec<Rng>> {
        self.dropout.then(|| {
            rows.map(|s| Rng::derive(self.seed, &[self.step, s as u64]))
                .collect()
        })
    }
}

/// What the gradient phase measured.
#[derive(Clone, Debug)]
pub struct GradOutcome {
    /// Mean loss per token over the whole step.
    pub loss: f32,
    /// Global gradient norm of the reduced (averaged) gradient, before clipping.
    pub grad_norm: f32,
    /// What the step's all-reduce across ranks cost (distributed runs).
    pub comm: Option<crate::events::ClusterStats>,
    /// A sharded distributed step: the gradient buckets, of which this rank
    /// holds the summed gradient of its share only (`Cluster::shard_of`),
    /// and updates only those weights.
    pub shards: Option<Vec<Range<usize>>>,
}

impl GradOutcome {
    /// Whether the loss and the gradient are finite (else the step's
    /// update is skipped).
    pub fn is_finite(&self) -> bool {
        self.loss.is_finite() && self.grad_norm.is_finite()
    }
}

pub struct Spheres {
    pub(super) n: usize,
    pub(super) max_share: usize,
    pub(super) workspaces: Vec<Workspace>,
    pub(super) grads: Vec<Vec<f32>>,
    pub(super) live: Arc<Vec<Live>>,
    pub(super) tally: Vec<Tally>,
    /// The ranks above this tree (one machine: a cluster of one).
    pub(super) cluster: crate::cluster::Cluster,
    /// Where a distributed step's all-reduced gradient lands (then swapped
    /// into sphere 0's buffer).
    pub(super) reduced: Vec<f32>,
    /// The sphere threads, started by the first phase that needs them.
    pub(super) pool: SpherePool,
    /// Faults a test armed for the next gradient phase.
    #[cfg(feature = "test-faults")]
    pub(super) armed: faults::Armed,
    /// After a sharded update, the buckets whose AdamW moments hold this
    /// rank's shares only, until [`Spheres::settle_moments`] gathers them.
    pub(super) stale_moments: Option<Vec<Range<usize>>>,
    /// The model's bf16 packs lie in memory the ranks of this host share:
    /// each packs its share, none packs all.
    packs_shared: bool,
}

impl Spheres {
    /// `n` spheres for micro-batches of `micro_batch` sequences of `seq_len`
    /// tokens. A step may hold any number of sequences: each sphere runs its
    /// share in chunks of at most `micro_batch / n` (rounded up), so the
    /// workspaces, and the memory, do not grow with gradient accumulation.
    pub fn new(model: &Gpt, n: usize, micro_batch: usize, seq_len: usize) -> Spheres {
        let mut spheres = Self::for_evaluation(model, n, micro_batch, seq_len);
        spheres.grads = (0..n).map(|_| vec![0.0; model.layout.total]).collect();
        spheres
    }

    /// Spheres that only evaluate: activations, no gradient buffers
    /// ([`Spheres::compute_gradients`] refuses to run on them).
    pub fn for_evaluation(model: &Gpt, n: usize, micro_batch: usize, seq_len: usize) -> Spheres {
        assert!(n >= 1);
        let max_share = micro_batch.div_ceil(n).max(1);
        Spheres {
            n,
            max_share,
            workspaces: (0..n)
                .map(|_| Workspace::new(&model.config, max_share, seq_len))
                .collect(),
            grads: Vec::new(),
            live: Arc::new((0..n).map(|_| Live::default()).collect()),
            tally: vec![Tally::default(); n],
            cluster: crate::cluster::Cluster::solo(),
            reduced: Vec::new(),
            pool: SpherePool::new(),
            #[cfg(feature = "test-faults")]
            armed: faults::Armed::default(),
            stale_moments: None,
            packs_shared: false,
        }
    }

    /// Puts this tree under `cluster`: each step, this rank takes its share
    /// of the sequences and the ranks sum their gradients.
    pub fn join_cluster(&mut self, cluster: crate::cluster::Cluster) {
        self.cluster = cluster;
    }

    /// Sphere threads started so far (they stay up until the spheres are
    /// dropped).
    pub fn threads_started(&self) -> usize {
        self.pool.threads()
    }

    /// The sphere view's rows, as of now.
    pub fn stats(&self) -> Vec<SphereStats> {
        snapshot(&self.tally, &self.live)
    }

    /// Sequences each sphere has computed.
    pub fn sequences(&self) -> Vec<u64> {
        self.tally.iter().map(|t| t.sequences).collect()
    }

    /// Forward and backward over the step's sequences on all spheres (and
    /// ranks), then the reduction. Afterwards sphere 0's buffer holds the
    /// gradient of the mean loss over all the step's tokens. `tick` is
    /// called from this thread about every `tick_every` while the spheres
    /// work, with fresh stats, so a front end can watch the step live.
    pub fn compute_gradients(
        &mut self,
        model: &Gpt,
        input: &StepInput,
        tick_every: Duration,
        tick: &mut dyn FnMut(Vec<SphereStats>),
    ) -> GradOutcome {
        let outcome = if self.cluster.is_distributed() {
            self.compute_gradients_cluster(model, input, tick_every, tick)
        } else {
            self.compute_gradients_here(model, input, tick_every, tick)
        };
        #[cfg(feature = "test-faults")]
        let outcome = self.poisoned_if_armed(outcome);
        outcome
    }

    /// Marks every sphere idle: the run has ended (between steps they stay
    /// in the phase they last worked in, so a snapshot never calls a busy
    /// sphere idle).
    pub fn rest(&self) {
        for l in self.live.iter() {
            l.state
                .store(state_code(SphereState::Idle), Ordering::Relaxed);
        }
    }

    /// Bytes of activation workspace the spheres hold (what gradient
    /// accumulation must not grow).
    pub fn workspace_bytes(&self) -> u64 {
        self.workspaces.iter().map(|w| w.allocated_bytes()).sum()
    }
}
