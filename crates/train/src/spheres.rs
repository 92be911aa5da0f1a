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

use crate::events::{SphereState, SphereStats};
use crate::metrics::ClassCounts;
use crate::optimizer::{AdamW, AdamWStep};
use crate::pool::SpherePool;
pub use crate::tree::{FANOUT, children_of, level_of, parent_of, share};
use crate::tree::{shares_mut, tree_reduce};
use cllm_core::rng::Rng;
use cllm_core::{Backward, Batch, DropoutRng, Gpt, Loss, Workspace};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the UI sees of a sphere while a step runs (updated lock-free).
#[derive(Default)]
pub(super) struct Live {
    pub(super) state: AtomicU8,
    pub(super) sequences: AtomicU64,
}

pub(super) fn state_code(s: SphereState) -> u8 {
    match s {
        SphereState::Idle => 0,
        SphereState::Computing => 1,
        SphereState::Waiting => 2,
        SphereState::Reducing => 3,
    }
}

fn state_from(code: u8) -> SphereState {
    match code {
        1 => SphereState::Computing,
        2 => SphereState::Waiting,
        3 => SphereState::Reducing,
        _ => SphereState::Idle,
    }
}

/// Running statistics of one sphere, kept between steps.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    pub(super) sequences: u64,
    pub(super) loss_sum: f64,
    pub(super) last_loss: f32,
    pub(super) grad_norm: f32,
    /// Exponential average of the share of each step this sphere was busy.
    pub(super) busy: f32,
}

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

/// `seqs` cut into consecutive chunks of at most `max` sequences: the
/// micro-batches a sphere runs its share in.
pub(super) fn chunks(seqs: Range<usize>, max: usize) -> impl Iterator<Item = Range<usize>> {
    let end = seqs.end;
    seqs.step_by(max.max(1))
        .map(move |start| start..(start + max).min(end))
}

/// How a sphere runs its share's last micro-batch when the caller wants it
/// run differently (the distributed step streams its gradients out).
pub(super) type LastChunk<'f> =
    &'f mut dyn FnMut(&mut Workspace, &Batch, &mut [f32], Option<&mut [Rng]>) -> f32;

/// One sphere's part of the gradient phase, shared by the one-machine and
/// the distributed step: zero `grads`, then forward and backward over the
/// sequences `seqs` of `input` in micro-batches of at most `max_share`,
/// counting sequences into `live`. Returns the summed per-sequence loss.
#[allow(clippy::too_many_arguments)]
pub(super) fn compute_share(
    model: &Gpt,
    ws: &mut Workspace,
    grads: &mut [f32],
    input: &StepInput,
    seqs: Range<usize>,
    max_share: usize,
    grad_scale: f32,
    live: &Live,
    mut last: Option<LastChunk>,
) -> f64 {
    grads.fill(0.0);
    let mut loss_sum = 0.0f64;
    let end = seqs.end;
    for rows in chunks(seqs, max_share) {
        let batch = input.batch(rows.clone());
        let mut rngs = input.dropout_streams(rows.clone());
        let loss = match (&mut last, rngs.as_mut()) {
            (Some(last), rngs) if rows.end == end => {
                last(ws, &batch, grads, rngs.map(|r| &mut r[..]))
            }
            (_, rngs) => {
                let options = Backward {
                    dropout: rngs.map(|r| DropoutRng::PerSequence(r)),
                    ..Backward::scaled(grad_scale)
                };
                model.forward_backward(ws, &batch, grads, options)
            }
        };
        loss_sum += loss as f64 * rows.len() as f64;
        live.sequences
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
    }
    loss_sum
}

/// A sphere's borrowed state for one phase on the pool.
pub(super) struct SphereJob<'a, R> {
    pub(super) ws: &'a mut Workspace,
    pub(super) grads: &'a mut Vec<f32>,
    /// Where the sphere reports; taken by the job, so it is dropped when the
    /// job ends, also by a panic (the collector then stops waiting).
    pub(super) done: Option<crossbeam_channel::Sender<R>>,
}

/// One sphere's evaluation: summed loss, prediction counts, per-position
/// losses (when asked for).
type EvalShare = (f64, ClassCounts, Vec<f32>);

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
    /// A test's fault: this sphere panics in the next gradient phase.
    pub(super) panic_next: Option<usize>,
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
            panic_next: None,
            stale_moments: None,
            packs_shared: false,
        }
    }

    /// Puts this tree under `cluster`: each step, this rank takes its share
    /// of the sequences and the ranks sum their gradients.
    pub fn join_cluster(&mut self, cluster: crate::cluster::Cluster) {
        self.cluster = cluster;
    }

    /// Makes sphere `id` panic in the next gradient phase (a test of how a
    /// run survives a bug in a sphere: it must end with an error, not hang).
    pub(crate) fn inject_panic(&mut self, id: usize) {
        self.panic_next = Some(id.min(self.n - 1));
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

    /// Forward and backward over the step's sequences on all spheres, then
    /// the tree reduction. Afterwards sphere 0's buffer holds the gradient
    /// of the mean loss over all the step's tokens. `tick` is called from
    /// this thread about every `tick_every` while the spheres work, with
    /// fresh stats, so a front end can watch the step live.
    pub fn compute_gradients(
        &mut self,
        model: &Gpt,
        input: &StepInput,
        tick_every: Duration,
        tick: &mut dyn FnMut(Vec<SphereStats>),
    ) -> GradOutcome {
        if self.cluster.is_distributed() {
            return self.compute_gradients_cluster(model, input, tick_every, tick);
        }
        let n = self.n;
        let t = input.seq_len;
        assert!(input.n_seqs >= 1 && input.inputs.len() == input.n_seqs * t);
        assert_eq!(self.grads.len(), n, "spheres built for evaluation only");
        let grad_scale = 1.0 / (input.n_seqs * t) as f32;
        let started = Instant::now();
        let live = Arc::clone(&self.live);
        let max_share = self.max_share;
        let tally_now = self.tally.clone();

        // Phase 1: every sphere computes its share into its own buffer. The
        // front end hears at once that the step has begun.
        for (id, l) in live.iter().enumerate() {
            let state = if share(input.n_seqs, n, id).is_empty() {
                SphereState::Idle
            } else {
                SphereState::Computing
            };
            l.state.store(state_code(state), Ordering::Relaxed);
        }
        tick(snapshot(&tally_now, &live));
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, f64, Duration)>();
        let mut loss_sums = vec![0.0f64; n];
        let mut busy = vec![Duration::ZERO; n];
        let mut jobs: Vec<SphereJob<_>> = self
            .workspaces
            .iter_mut()
            .zip(self.grads.iter_mut())
            .map(|(ws, grads)| SphereJob {
                ws,
                grads,
                done: Some(done_tx.clone()),
            })
            .collect();
        drop(done_tx);
        let panic_at = self.panic_next.take();
        self.pool.scope(
            &mut jobs,
            |id, job| {
                let done = job.done.take();
                let began = Instant::now();
                if panic_at == Some(id) {
                    panic!(
                        "sphere {id} failed at step {} (injected fault)",
                        input.step + 1
                    );
                }
                let seqs = share(input.n_seqs, n, id);
                let busy_with = !seqs.is_empty();
                let loss_sum = compute_share(
                    model, job.ws, job.grads, input, seqs, max_share, grad_scale, &live[id], None,
                );
                if busy_with {
                    live[id]
                        .state
                        .store(state_code(SphereState::Waiting), Ordering::Relaxed);
                }
                if let Some(done) = done {
                    let _ = done.send((id, loss_sum, began.elapsed()));
                }
            },
            || {
                let mut tick_now = || tick(snapshot(&tally_now, &live));
                collect_spheres(
                    &done_rx,
                    n,
                    tick_every,
                    &mut tick_now,
                    |(id, loss_sum, took)| {
                        loss_sums[id] = loss_sum;
                        busy[id] = took;
                    },
                );
            },
        );

        // Per-sphere bookkeeping for the stats table.
        for (id, (tally, &loss_sum)) in self.tally.iter_mut().zip(&loss_sums).enumerate() {
            let seqs = share(input.n_seqs, n, id).len() as u64;
            tally.sequences += seqs;
            if seqs > 0 {
                let mean = loss_sum / seqs as f64;
                tally.loss_sum += loss_sum;
                tally.last_loss = mean as f32;
            }
        }

        // Phase 2: the tree reduction, sliced across spheres, with the
        // per-sphere and global squared norms gathered on the way. Every
        // sphere takes part (the trainer's snapshot after the step shows it).
        for l in live.iter() {
            l.state
                .store(state_code(SphereState::Reducing), Ordering::Relaxed);
        }
        let reduce_started = Instant::now();
        let mut own_sq = vec![vec![0.0f64; n]; n]; // [slice][sphere]
        let mut total_sq = vec![0.0f64; n]; // [slice]
        {
            let mut per_slice: Vec<Vec<&mut [f32]>> =
                (0..n).map(|_| Vec::with_capacity(n)).collect();
            for buf in self.grads.iter_mut() {
                for (slot, slice) in per_slice.iter_mut().zip(shares_mut(buf, n)) {
                    slot.push(slice);
                }
            }
            let mut slices: Vec<_> = per_slice
                .into_iter()
                .zip(own_sq.iter_mut())
                .zip(total_sq.iter_mut())
                .collect();
            self.pool.for_each(&mut slices, |_, ((bufs, own), total)| {
                for (j, b) in bufs.iter().enumerate() {
                    own[j] = sum_sq(b);
                }
                tree_reduce(bufs);
                **total = sum_sq(bufs[0]);
            });
        }
        let reduce_took = reduce_started.elapsed();
        let step_took = started.elapsed().as_secs_f64().max(1e-9);
        for id in 0..n {
            let own: f64 = own_sq.iter().map(|slice| slice[id]).sum();
            let tally = &mut self.tally[id];
            // A sphere's gradient is of its share scaled for the whole step;
            // rescale so the table shows a norm comparable across N.
            let seqs = share(input.n_seqs, n, id).len();
            tally.grad_norm = if seqs > 0 {
                (own.sqrt() * input.n_seqs as f64 / seqs as f64) as f32
            } else {
                0.0
            };
            let frac = ((busy[id] + reduce_took).as_secs_f64() / step_took).min(1.0) as f32;
            tally.busy = if tally.sequences == 0 {
                frac
            } else {
                0.7 * tally.busy + 0.3 * frac
            };
        }
        let loss = (loss_sums.iter().sum::<f64>() / input.n_seqs as f64) as f32;
        let grad_norm = total_sq.iter().sum::<f64>().sqrt() as f32;
        GradOutcome {
            loss,
            grad_norm,
            comm: None,
            shards: None,
        }
    }

    /// Applies AdamW with the reduced gradient (times `grad_scale`, where
    /// clipping folds in) to the parameters, sliced across spheres. After a
    /// sharded step (`shards`, see [`GradOutcome::shards`]) this rank
    /// updates its share of each bucket only and the ranks then gather the
    /// weights: each weight is updated once in the cluster instead of on
    /// every rank. The moments stay this rank's shares until
    /// [`settle_moments`](Self::settle_moments).
    pub fn apply_update(
        &mut self,
        params: &mut [f32],
        opt: &mut AdamW,
        lr: f32,
        grad_scale: f32,
        shards: Option<&[Range<usize>]>,
    ) {
        if shards.is_none() {
            // A whole update needs the whole moments (the ranks stopped
            // sharding: the window was refused).
            self.settle_moments(opt);
        }
        let step: AdamWStep = opt.begin_step(lr, grad_scale);
        let n = self.n;
        let grads = &self.grads[0][..];
        let mut mine: Vec<Range<usize>> = match shards {
            Some(buckets) => buckets
                .iter()
                .map(|b| {
                    let r = self.cluster.shard_of(b.len());
                    b.start + r.start..b.start + r.end
                })
                .collect(),
            None => std::iter::once(0..params.len()).collect(),
        };
        mine.sort_by_key(|r| r.start);
        // Each sphere takes its share of every range.
        let mut jobs: Vec<Vec<UpdatePiece>> = (0..n).map(|_| Vec::new()).collect();
        let pieces = disjoint_mut(params, &mine)
            .into_iter()
            .zip(disjoint_mut(&mut opt.m, &mine))
            .zip(disjoint_mut(&mut opt.v, &mine))
            .zip(&mine);
        for (((p, m), v), r) in pieces {
            let len = r.len();
            let parts = shares_mut(p, n)
                .into_iter()
                .zip(shares_mut(m, n))
                .zip(shares_mut(v, n));
            for (s, ((p, m), v)) in parts.enumerate() {
                jobs[s].push((r.start + share(len, n, s).start, p, m, v));
            }
        }
        self.pool.for_each(&mut jobs, |_, job| {
            for (at, p, m, v) in job.iter_mut() {
                step.apply(*at, p, &grads[*at..*at + p.len()], m, v);
            }
        });
        if let Some(buckets) = shards {
            for b in buckets {
                self.cluster.all_gather_f32(&mut params[b.clone()]);
            }
            self.stale_moments = Some(buckets.to_vec());
        }
    }

    /// Where ranks update shares of the weights (one host), also shares the
    /// bf16 packs: one copy in memory every rank of the host maps, each
    /// rank packing its share of every layout after an update
    /// ([`refresh_packs`](Self::refresh_packs)) instead of every rank
    /// packing all of them. Collective; a no-op in f32 or where ranks share
    /// no memory (every rank decides the same).
    pub fn share_packs(&mut self, model: &mut Gpt) {
        let words = model.packed_words();
        if !self.cluster.shards() || words == 0 {
            return;
        }
        let Some(base) = self.cluster.shared_words(words) else {
            return;
        };
        // SAFETY: `base` holds `words` u32, mapped while the cluster lives;
        // the run that holds this model holds the cluster too, and the
        // model reads its packs only while the run lives. Only the packs
        // write these words.
        unsafe { model.share_packs(base, self.cluster.shard_of(words)) };
        self.cluster.barrier();
        self.packs_shared = true;
    }

    /// The bf16 packs of updated weights: this rank's share of them, then
    /// a wait for the others', where the packs are shared; all of them
    /// otherwise. Collective where shared.
    pub fn refresh_packs(&self, model: &mut Gpt) {
        if self.packs_shared {
            let (k, r) = (self.cluster.size(), self.cluster.rank());
            model.refresh_precision_part(&|n| share(n, k, r));
            self.cluster.barrier();
        } else {
            model.refresh_precision();
        }
    }

    /// Whether the AdamW moments hold this rank's shares only (the same on
    /// every rank).
    pub fn has_stale_moments(&self) -> bool {
        self.stale_moments.is_some()
    }

    /// Gives every rank the whole AdamW moments again after sharded
    /// updates (each rank kept its shares current): before anything saves
    /// them. Collective: every rank calls it at the same step (they all
    /// made the same sharded updates); a no-op otherwise.
    pub fn settle_moments(&mut self, opt: &mut AdamW) {
        if let Some(buckets) = self.stale_moments.take() {
            for b in &buckets {
                self.cluster.all_gather_f32(&mut opt.m[b.clone()]);
                self.cluster.all_gather_f32(&mut opt.v[b.clone()]);
            }
        }
    }

    /// Mean-free evaluation over `skips.len()` sequences of `seq_len`
    /// tokens shared across spheres: returns the summed per-token loss and
    /// the prediction counts. Sequence `i` scores its positions from
    /// `skips[i]` on; the ones before are context only (an earlier,
    /// overlapping window scored them).
    pub fn evaluate(
        &mut self,
        model: &Gpt,
        inputs: &[u32],
        targets: &[u32],
        skips: &[usize],
        seq_len: usize,
    ) -> (f64, ClassCounts) {
        let (loss_sum, counts, _) =
            self.evaluate_inner(model, inputs, targets, skips, seq_len, false);
        (loss_sum, counts)
    }

    /// [`evaluate`](Self::evaluate), also returning every scored position's
    /// loss (`-ln p(target)`, nats) in the order of `targets` (window by
    /// window, each from its skip on).
    pub fn evaluate_with_losses(
        &mut self,
        model: &Gpt,
        inputs: &[u32],
        targets: &[u32],
        skips: &[usize],
        seq_len: usize,
    ) -> (f64, ClassCounts, Vec<f32>) {
        self.evaluate_inner(model, inputs, targets, skips, seq_len, true)
    }

    fn evaluate_inner(
        &mut self,
        model: &Gpt,
        inputs: &[u32],
        targets: &[u32],
        skips: &[usize],
        seq_len: usize,
        keep_losses: bool,
    ) -> EvalShare {
        let n = self.n;
        let t = seq_len;
        let n_seqs = skips.len();
        let max_share = self.max_share;
        let mut jobs: Vec<(&mut Workspace, EvalShare)> = self
            .workspaces
            .iter_mut()
            .map(|ws| (ws, Default::default()))
            .collect();
        self.pool.for_each(&mut jobs, |id, (ws, result)| {
            let seqs = share(n_seqs, n, id);
            let mut loss_sum = 0.0f64;
            let mut counts = ClassCounts::default();
            let mut predictions = vec![0u32; max_share * t];
            let mut row_losses = vec![0f32; max_share * t];
            let mut losses = Vec::new();
            for rows in chunks(seqs.clone(), max_share) {
                let batch = Batch {
                    inputs: &inputs[rows.start * t..rows.end * t],
                    targets: &targets[rows.start * t..rows.end * t],
                    batch: rows.len(),
                    seq: t,
                };
                let preds = &mut predictions[..rows.len() * t];
                let all = &mut row_losses[..rows.len() * t];
                let request = Loss {
                    batch,
                    predictions: Some(preds),
                    losses: Some(all),
                };
                model.forward(ws, request);
                for (r, &skip) in skips[rows.clone()].iter().enumerate() {
                    let scored = r * t + skip.min(t)..(r + 1) * t;
                    loss_sum += all[scored.clone()].iter().map(|&l| l as f64).sum::<f64>();
                    counts.add(&batch.targets[scored.clone()], &preds[scored.clone()]);
                    if keep_losses {
                        losses.extend_from_slice(&all[scored]);
                    }
                }
            }
            *result = (loss_sum, counts, losses);
        });
        let results = jobs.into_iter().map(|(_, result)| result);
        let mut loss_sum = 0.0;
        let mut counts = ClassCounts::default();
        let scored: usize = skips.iter().map(|&s| t - s.min(t)).sum();
        let mut losses = Vec::with_capacity(if keep_losses { scored } else { 0 });
        // Sphere i holds the sequences of share(n_seqs, n, i), in order.
        for (l, c, sphere_losses) in results {
            loss_sum += l;
            counts.merge(&c);
            losses.extend_from_slice(&sphere_losses);
        }
        (loss_sum, counts, losses)
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

    /// Mutable access for injecting faults in tests.
    pub(crate) fn gradient_mut(&mut self) -> &mut [f32] {
        &mut self.grads[0]
    }
}

/// Waits for each of `n` spheres to report on `done` (calling `on_done`),
/// calling `tick` about every `tick_every` meanwhile so a front end can
/// watch the step live.
pub(super) fn collect_spheres<T>(
    done: &crossbeam_channel::Receiver<T>,
    n: usize,
    tick_every: Duration,
    tick: &mut dyn FnMut(),
    mut on_done: impl FnMut(T),
) {
    let mut finished = 0;
    let mut last_tick = Instant::now();
    while finished < n {
        match done.recv_timeout(tick_every) {
            Ok(report) => {
                on_done(report);
                finished += 1;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= tick_every {
            tick();
            last_tick = Instant::now();
        }
    }
}

pub(super) fn snapshot(tally: &[Tally], live: &[Live]) -> Vec<SphereStats> {
    tally
        .iter()
        .zip(live)
        .enumerate()
        .map(|(id, (t, l))| SphereStats {
            id,
            parent: parent_of(id),
            level: level_of(id),
            sequences: l.sequences.load(Ordering::Relaxed),
            avg_loss: if t.sequences > 0 {
                (t.loss_sum / t.sequences as f64) as f32
            } else {
                0.0
            },
            last_loss: t.last_loss,
            grad_norm: t.grad_norm,
            busy: t.busy,
            state: state_from(l.state.load(Ordering::Relaxed)),
        })
        .collect()
}

/// A slice of the AdamW update: where it starts in the flat buffer, and
/// its weights, first and second moments.
type UpdatePiece<'a> = (usize, &'a mut [f32], &'a mut [f32], &'a mut [f32]);

/// Disjoint mutable slices of `buf`, one per range of `ranges` (disjoint,
/// in increasing order), in that order.
fn disjoint_mut<'a>(buf: &'a mut [f32], ranges: &[Range<usize>]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(ranges.len());
    let (mut rest, mut at) = (buf, 0);
    for r in ranges {
        assert!(r.start >= at, "ranges in increasing order, disjoint");
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (piece, tail) = tail.split_at_mut(r.len());
        out.push(piece);
        rest = tail;
        at = r.end;
    }
    out
}

pub(super) fn sum_sq(xs: &[f32]) -> f64 {
    // Four partial sums: faster, and still one fixed order.
    let mut acc = [0.0f64; 4];
    let chunks = xs.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..4 {
            acc[k] += (c[k] as f64) * (c[k] as f64);
        }
    }
    let tail: f64 = rest.iter().map(|&x| (x as f64) * (x as f64)).sum();
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}
