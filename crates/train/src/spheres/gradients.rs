//! The gradient phase on one machine: every sphere runs forward and
//! backward over its share of the step's sequences, in micro-batches, into
//! its own buffer; then the tree reduction, sliced across spheres, with the
//! squared norms gathered on the way. `data_parallel.rs` is the same phase
//! across ranks, built from the pieces here.

use super::live::{Live, collect_spheres, snapshot, state_code};
use super::{GradOutcome, Spheres, StepInput};
use crate::events::{SphereState, SphereStats};
use crate::tree::{share, shares_mut, tree_reduce};
use cllm_core::rng::Rng;
use cllm_core::{Backward, Batch, DropoutRng, Gpt, Workspace};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// `seqs` cut into consecutive chunks of at most `max` sequences: the
/// micro-batches a sphere runs its share in.
pub(crate) fn chunks(seqs: Range<usize>, max: usize) -> impl Iterator<Item = Range<usize>> {
    let end = seqs.end;
    seqs.step_by(max.max(1))
        .map(move |start| start..(start + max).min(end))
}

/// How a sphere runs its share's last micro-batch when the caller wants it
/// run differently (the distributed step streams its gradients out).
pub(crate) type LastChunk<'f> =
    &'f mut dyn FnMut(&mut Workspace, &Batch, &mut [f32], Option<&mut [Rng]>) -> f32;

/// One sphere's part of the gradient phase, shared by the one-machine and
/// the distributed step: zero `grads`, then forward and backward over the
/// sequences `seqs` of `input` in micro-batches of at most `max_share`,
/// counting sequences into `live`. Returns the summed per-sequence loss.
#[allow(clippy::too_many_arguments)]
pub(crate) fn compute_share(
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
pub(crate) struct SphereJob<'a, R> {
    pub(crate) ws: &'a mut Workspace,
    pub(crate) grads: &'a mut Vec<f32>,
    /// Where the sphere reports; taken by the job, so it is dropped when the
    /// job ends, also by a panic (the collector then stops waiting).
    pub(crate) done: Option<crossbeam_channel::Sender<R>>,
}

impl Spheres {
    /// [`Spheres::compute_gradients`] on one machine: every sphere computes
    /// its share, then the tree reduction.
    pub(super) fn compute_gradients_here(
        &mut self,
        model: &Gpt,
        input: &StepInput,
        tick_every: Duration,
        tick: &mut dyn FnMut(Vec<SphereStats>),
    ) -> GradOutcome {
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
        #[cfg(feature = "test-faults")]
        let armed_panic = self.armed.take_panic();
        self.pool.scope(
            &mut jobs,
            |id, job| {
                let done = job.done.take();
                let began = Instant::now();
                #[cfg(feature = "test-faults")]
                super::panic_if_armed(armed_panic, id, input.step);
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
}

pub(crate) fn sum_sq(xs: &[f32]) -> f64 {
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
