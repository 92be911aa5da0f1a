//! One optimizer step across ranks: the level above the spheres.
//!
//! Rank r takes its share of the step's sequences (ranks first, then the
//! spheres within the rank share that range). Every sphere runs forward and
//! backward as on one machine, but on its last micro-batch it hands each
//! layer's gradients over as soon as backward has finished that layer. A
//! communication thread adds the spheres' copies of the layer (in sphere
//! order) and all-reduces the sum across ranks while backward goes on with
//! the layers below, so the network hides behind compute. The buckets are
//! the same on every rank and all-reduced in the same order; the summed
//! gradient is identical everywhere, so every rank clips with the same norm
//! and applies the same AdamW update. Where the collective shards (the
//! ranks of one host), each bucket is reduce-scattered instead: a rank
//! holds the sum of its share only, and updates only those weights
//! (`Spheres::apply_update`).

use crate::events::{ClusterStats, SphereState, SphereStats};
use crate::spheres::{
    GradOutcome, SphereJob, Spheres, StepInput, collect_spheres, compute_share, share, snapshot,
    state_code, sum_sq,
};
use cllm_core::rng::Rng;
use cllm_core::{Backward, Batch, DropoutRng, Gpt, ParamLayout, Workspace};
use crossbeam_channel::{Receiver, Sender};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The parameter ranges in the order backward finishes them (the model's
/// `Backward::ready` hook reports them in this order): the token
/// embedding as soon as the tied head is done (the largest bucket by far,
/// so it travels while the whole transformer's backward runs), the top
/// layer with the final LayerNorm, each layer down, the position embedding.
/// The rows of wte the input embedding adds to at the very end follow
/// again, final, as one more small bucket ([`step_rows`]) that replaces
/// them.
pub fn gradient_buckets(layout: &ParamLayout) -> Vec<Range<usize>> {
    let starts: Vec<usize> = layout.layers.iter().map(|o| o.ln_1_weight).collect();
    let mut buckets = Vec::with_capacity(starts.len() + 2);
    buckets.push(layout.wte..layout.wpe);
    for l in (0..starts.len()).rev() {
        let end = starts.get(l + 1).copied().unwrap_or(layout.total);
        buckets.push(starts[l]..end);
    }
    buckets.push(layout.wpe..starts.first().copied().unwrap_or(layout.total));
    buckets
}

/// The token ids of the whole step, sorted, once each: the wte rows the
/// input embedding touches on some rank. Every rank holds the whole step's
/// inputs, so every rank finds the same rows.
pub fn step_rows(inputs: &[u32]) -> Vec<u32> {
    let mut rows = inputs.to_vec();
    rows.sort_unstable();
    rows.dedup();
    rows
}

/// Where `a` and `b` overlap (an empty range where they do not).
fn overlap(a: Range<usize>, b: Range<usize>) -> Range<usize> {
    let start = a.start.max(b.start);
    start..a.end.min(b.end).max(start)
}

/// The given rows of the `c`-wide matrix at `at` in `buf`, one after another.
fn gather_rows(buf: &[f32], at: usize, c: usize, rows: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * c);
    for &r in rows {
        let start = at + r as usize * c;
        out.extend_from_slice(&buf[start..start + c]);
    }
    out
}

/// A layer's gradients from one sphere, ready to be summed.
struct Part<'a> {
    bucket: usize,
    range: Range<usize>,
    sphere: usize,
    grads: PartGrads<'a>,
}

/// Where a sphere put a bucket's gradients.
enum PartGrads<'a> {
    /// A copy, to be added to the other spheres' (several spheres a rank).
    Copied(Vec<f32>),
    /// Copied straight into the bucket's slice of the rank's sum (the rank's
    /// only sphere): the sum across spheres is done, and no buffer is
    /// allocated (a fresh buffer a step pays its page faults every step).
    InPlace(&'a mut [f32]),
    /// Left where the sphere wrote it (a sharded rank's only sphere): the
    /// reduce-scatter reads it there and writes its share of the sum into
    /// the bucket's slice of the rank's sum, so nothing is copied first.
    Unmoved(SphereGrads),
}

/// A final bucket in a sphere's gradient buffer. The communication job
/// reads it while the sphere's backward writes the buckets below it, which
/// are other floats; the one bucket the sphere writes again later, wte
/// (the input embedding's rows), it writes only once the job has said it
/// is done reading (`wte_read`).
struct SphereGrads {
    ptr: *const f32,
    len: usize,
}

// SAFETY: a read-only view of floats that outlive the step's scope (the
// sphere's buffer), handed to one other thread of that scope.
unsafe impl Send for SphereGrads {}

/// Raises its flag when dropped: the communication job's "done with wte",
/// raised also when it returns early or panics, so the sphere never waits
/// for a job that is gone.
struct RaiseOnDrop<'a>(&'a AtomicBool);

impl Drop for RaiseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Waits politely (the sphere shares the cores with the job it waits for).
fn wait_until(flag: &AtomicBool) {
    let mut tries = 0u32;
    while !flag.load(Ordering::Acquire) {
        tries += 1;
        if tries < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// `buf` cut into the buckets' slices, indexed like `ranges` (which cover
/// it once, in any order).
fn bucket_slices<'a>(buf: &'a mut [f32], ranges: &[Range<usize>]) -> Vec<Option<&'a mut [f32]>> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&b| ranges[b].start);
    let mut slots: Vec<Option<&'a mut [f32]>> = (0..ranges.len()).map(|_| None).collect();
    let (mut rest, mut at) = (buf, 0);
    for b in order {
        assert_eq!(ranges[b].start, at, "buckets cover the parameters once");
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(ranges[b].len());
        slots[b] = Some(head);
        rest = tail;
        at = ranges[b].end;
    }
    assert!(rest.is_empty(), "buckets cover the parameters once");
    slots
}

/// What a sphere reports when its share is done: id, summed loss, busy
/// time, squared norm of its own gradient.
type Report = (usize, f64, Duration, f64);

/// What the communication job measured: time inside the collective, the
/// squared norm of the summed gradient, when the last bucket was summed.
type CommOutcome = (Duration, f64, Instant);

/// A distributed step's jobs on the sphere pool: one per sphere, and the
/// communication job on one more thread.
enum Task<'a> {
    Sphere {
        job: SphereJob<'a, Report>,
        parts: Option<Sender<Part<'a>>>,
        /// The buckets' slices of the rank's sum, for a rank's only sphere.
        slots: Vec<Option<&'a mut [f32]>>,
    },
    Comm {
        /// The buckets' slices of the rank's sum, unless the only sphere
        /// has them.
        slots: Vec<Option<&'a mut [f32]>>,
        parts: Option<Receiver<Part<'a>>>,
        outcome: Option<CommOutcome>,
    },
}

/// The communication job: sums each bucket once every active sphere has
/// handed it over (in sphere order), then all-reduces it across ranks. The
/// last range is the step's rows of wte, which replace the head-only ones.
/// `slots` holds the buckets' slices of the rank's sum that no sphere
/// filled in place; the others arrive with their parts. `None` when a
/// sphere stopped before handing over its part: it panicked, and that
/// panic is the step's error.
#[allow(clippy::too_many_arguments)]
fn sum_buckets<'a>(
    cluster: &crate::cluster::Cluster,
    part_rx: &Receiver<Part<'a>>,
    ranges: &[Range<usize>],
    mut slots: Vec<Option<&'a mut [f32]>>,
    active: usize,
    n: usize,
    touched: &[u32],
    c: usize,
    sharded: bool,
    wte_read: &AtomicBool,
) -> Option<CommOutcome> {
    let wte_done = RaiseOnDrop(wte_read);
    let rows_bucket = ranges.len() - 1;
    let mut parts: Vec<Vec<Option<Vec<f32>>>> = ranges.iter().map(|_| vec![None; n]).collect();
    let mut arrived = vec![0usize; ranges.len()];
    let (mut in_collective, mut sq) = (Duration::ZERO, 0.0f64);
    let mut row_sums = vec![0.0f32; touched.len() * c];
    for b in 0..ranges.len() {
        let mut in_place = false;
        let mut unmoved = None;
        while arrived[b] < active {
            // A sphere that stops early has panicked: its panic is the
            // step's error, so this job steps aside instead of raising a
            // second one that could be reported first.
            let Ok(part) = part_rx.recv() else {
                return None;
            };
            assert_eq!(part.range, ranges[part.bucket], "gradient bucket order");
            match part.grads {
                PartGrads::Copied(grads) => parts[part.bucket][part.sphere] = Some(grads),
                PartGrads::InPlace(slice) => {
                    in_place = true;
                    slots[part.bucket] = Some(slice);
                }
                PartGrads::Unmoved(grads) => unmoved = Some(grads),
            }
            arrived[part.bucket] += 1;
        }
        let out: &mut [f32] = if b == rows_bucket {
            &mut row_sums
        } else {
            slots[b].as_deref_mut().expect("every bucket's slice")
        };
        // The spheres' copies added in sphere order (the first copied, not
        // added to zeros: one pass less). A bucket filled in place is the
        // only sphere's and already summed.
        if !in_place && unmoved.is_none() {
            let mut given = parts[b].iter_mut().filter_map(Option::take);
            match given.next() {
                Some(first) => out.copy_from_slice(&first),
                None => out.fill(0.0),
            }
            for g in given {
                for (o, x) in out.iter_mut().zip(&g) {
                    *o += x;
                }
            }
        }
        let began = Instant::now();
        // A sharded rank needs only its share of each bucket summed (it
        // updates only those weights); the rows' sums are small and whole.
        if let Some(grads) = unmoved {
            // SAFETY: the sphere's final bucket, which it does not write
            // until `wte_read` (wte) or the step's end (the others).
            let input = unsafe { std::slice::from_raw_parts(grads.ptr, grads.len) };
            cluster.reduce_scatter_from_f32(input, out);
        } else if sharded && b != rows_bucket {
            cluster.reduce_scatter_f32(out);
        } else {
            cluster.sum_f32(out);
        }
        in_collective += began.elapsed();
        if b == 0 {
            wte_done.0.store(true, Ordering::Release);
        }
        if b == rows_bucket {
            // The final rows replace the head-only ones (the norm taken
            // again over them). Summed in the same order as the rest, so the
            // result is what one late wte bucket would have given, bit for
            // bit. Bucket 0 is wte, whose slice starts at row 0.
            let wte = slots[0].as_deref_mut().expect("the wte bucket's slice");
            let counted = if sharded {
                cluster.shard_of(wte.len())
            } else {
                0..wte.len()
            };
            for (i, &row) in touched.iter().enumerate() {
                let at = row as usize * c;
                // The part of the row in the share this rank's norm covers.
                let part = overlap(at..at + c, counted.clone());
                sq -= sum_sq(&wte[part.clone()]);
                wte[at..at + c].copy_from_slice(&row_sums[i * c..(i + 1) * c]);
                sq += sum_sq(&wte[part]);
            }
        } else if sharded {
            sq += sum_sq(&out[cluster.shard_of(out.len())]);
        } else {
            sq += sum_sq(out);
        }
    }
    Some((in_collective, sq.max(0.0), Instant::now()))
}

impl Spheres {
    /// [`Spheres::compute_gradients`] for a rank of a distributed run.
    pub(super) fn compute_gradients_cluster(
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
        let cluster = self.cluster.clone();
        let mine = cluster.share(input.n_seqs);
        let sphere_seqs = |id: usize| {
            let r = share(mine.len(), n, id);
            mine.start + r.start..mine.start + r.end
        };
        let active = (0..n).filter(|&id| !sphere_seqs(id).is_empty()).count();
        // The gradient of the mean loss over the whole step, all ranks.
        let grad_scale = 1.0 / (input.n_seqs * t) as f32;
        let buckets = gradient_buckets(&model.layout);
        let total = model.layout.total;
        let (c, wte) = (model.config.n_embd, model.layout.wte);
        let touched = step_rows(input.inputs);
        let touched = &touched[..];
        // The extra bucket: the input embedding's additions to those rows.
        let rows_bucket = buckets.len();
        if self.reduced.len() != total {
            self.reduced = vec![0.0; total];
        }
        let started = Instant::now();
        let live = Arc::clone(&self.live);
        let max_share = self.max_share;
        let tally_now = self.tally.clone();
        for (id, l) in live.iter().enumerate() {
            let state = if sphere_seqs(id).is_empty() {
                SphereState::Idle
            } else {
                SphereState::Computing
            };
            l.state.store(state_code(state), Ordering::Relaxed);
        }
        tick(snapshot(&tally_now, &live));

        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Report>();
        let (part_tx, part_rx) = crossbeam_channel::unbounded::<Part>();
        let mut loss_sums = vec![0.0f64; n];
        let mut busy = vec![Duration::ZERO; n];
        let mut own_sq = vec![0.0f64; n];
        let mut computed_at = Instant::now();
        let sharded = cluster.shards();
        let shard_buckets = sharded.then(|| buckets.clone());
        // A rank's only sphere copies each bucket straight into the rank's
        // sum, or, sharded, leaves it where it is for the reduce-scatter to
        // read; with several, the communication job adds their copies.
        let mut slots = bucket_slices(&mut self.reduced, &buckets);
        let unmoved = n == 1 && active == 1 && sharded;
        let alone = n == 1 && active == 1 && !sharded;
        let wte_read = AtomicBool::new(false);
        let wte_read = &wte_read;
        // The last bucket before the input embedding's backward: layer 0's.
        let before_embedding = buckets.len() - 2;
        let mut tasks: Vec<Task> = self
            .workspaces
            .iter_mut()
            .zip(self.grads.iter_mut())
            .map(|(ws, grads)| Task::Sphere {
                job: SphereJob {
                    ws,
                    grads,
                    done: Some(done_tx.clone()),
                },
                parts: Some(part_tx.clone()),
                slots: if alone {
                    std::mem::take(&mut slots)
                } else {
                    Vec::new()
                },
            })
            .collect();
        if alone {
            slots = (0..buckets.len()).map(|_| None).collect();
        }
        tasks.push(Task::Comm {
            slots,
            parts: Some(part_rx),
            outcome: None,
        });
        drop((done_tx, part_tx));
        #[cfg(feature = "test-faults")]
        let armed_panic = self.armed.take_panic();
        let mut ranges = buckets;
        ranges.push(0..touched.len() * c);
        let ranges = &ranges[..];
        self.pool.scope(
            &mut tasks,
            |id, task| match task {
                Task::Sphere { job, parts, slots } => {
                    let (done, parts) = (job.done.take(), parts.take());
                    let began = Instant::now();
                    #[cfg(feature = "test-faults")]
                    crate::spheres::panic_if_armed(armed_panic, id, input.step);
                    let seqs = sphere_seqs(id);
                    let busy_with = !seqs.is_empty();
                    // The last micro-batch: each layer leaves as soon as it
                    // is final, then the step's rows of wte again.
                    let mut last = |ws: &mut Workspace,
                                    batch: &Batch,
                                    grads: &mut [f32],
                                    rngs: Option<&mut [Rng]>| {
                        let mut bucket = 0;
                        let mut ready = |range: Range<usize>, g: &[f32]| {
                            let grads = match slots.get_mut(bucket).and_then(Option::take) {
                                _ if unmoved => PartGrads::Unmoved(SphereGrads {
                                    ptr: g[range.clone()].as_ptr(),
                                    len: range.len(),
                                }),
                                Some(dst) => {
                                    dst.copy_from_slice(&g[range.clone()]);
                                    PartGrads::InPlace(dst)
                                }
                                None => PartGrads::Copied(g[range.clone()].to_vec()),
                            };
                            if let Some(parts) = &parts {
                                let _ = parts.send(Part {
                                    bucket,
                                    range,
                                    sphere: id,
                                    grads,
                                });
                            }
                            // The input embedding writes rows of wte next:
                            // not while the job still reads them.
                            if unmoved && bucket == before_embedding {
                                wait_until(wte_read);
                            }
                            bucket += 1;
                        };
                        let options = Backward {
                            dropout: rngs.map(DropoutRng::PerSequence),
                            ready: Some(&mut ready),
                            ..Backward::scaled(grad_scale)
                        };
                        let loss = model.forward_backward(ws, batch, grads, options);
                        // Now final: they replace what the early wte bucket
                        // summed.
                        let final_rows = gather_rows(grads, wte, c, touched);
                        if let Some(parts) = &parts {
                            let _ = parts.send(Part {
                                bucket: rows_bucket,
                                range: 0..final_rows.len(),
                                sphere: id,
                                grads: PartGrads::Copied(final_rows),
                            });
                        }
                        loss
                    };
                    let loss_sum = compute_share(
                        model,
                        job.ws,
                        job.grads,
                        input,
                        seqs,
                        max_share,
                        grad_scale,
                        &live[id],
                        Some(&mut last),
                    );
                    let own = if busy_with { sum_sq(job.grads) } else { 0.0 };
                    if busy_with {
                        live[id]
                            .state
                            .store(state_code(SphereState::Reducing), Ordering::Relaxed);
                    }
                    if let Some(done) = done {
                        let _ = done.send((id, loss_sum, began.elapsed(), own));
                    }
                }
                Task::Comm {
                    slots,
                    parts,
                    outcome,
                } => {
                    let parts = parts.take().expect("one communication job a step");
                    *outcome = sum_buckets(
                        &cluster,
                        &parts,
                        ranges,
                        std::mem::take(slots),
                        active,
                        n,
                        touched,
                        c,
                        sharded,
                        wte_read,
                    );
                }
            },
            || {
                let mut tick_now = || tick(snapshot(&tally_now, &live));
                collect_spheres(
                    &done_rx,
                    n,
                    tick_every,
                    &mut tick_now,
                    |(id, loss_sum, took, own)| {
                        loss_sums[id] = loss_sum;
                        busy[id] = took;
                        own_sq[id] = own;
                    },
                );
                computed_at = Instant::now();
            },
        );
        let Some(Task::Comm {
            outcome: Some((in_collective, total_sq, summed_at)),
            ..
        }) = tasks.pop()
        else {
            unreachable!("the communication job reports or panics")
        };
        drop(tasks);
        // Sphere 0's buffer now holds the step's gradient, as on one machine;
        // the old buffer is the next step's scratch (every bucket is rewritten).
        std::mem::swap(&mut self.grads[0], &mut self.reduced);

        // The loss over all ranks, and each rank's compute time.
        let k = cluster.size();
        let compute_secs = busy.iter().max().copied().unwrap_or_default().as_secs_f64();
        // Sharded, each rank's squared norm covers its shares only: each
        // rank's in its own slot, added in rank order (the same sum on
        // every rank and in every run of the layout).
        let mut sums = vec![0.0f64; 1 + 2 * k];
        sums[0] = loss_sums.iter().sum();
        sums[1 + cluster.rank()] = compute_secs;
        sums[1 + k + cluster.rank()] = total_sq;
        cluster.sum_f64(&mut sums);
        let total_sq = if sharded {
            sums[1 + k..].iter().fold(0.0, |a, x| a + x)
        } else {
            total_sq
        };
        let loss = (sums[0] / input.n_seqs as f64) as f32;
        let rank_tokens_per_sec = (0..k)
            .map(|r| {
                let seqs = share(input.n_seqs, k, r).len();
                (seqs * t) as f64 / sums[1 + r].max(1e-9)
            })
            .collect();

        let step_secs = started.elapsed().as_secs_f64().max(1e-9);
        let exposed = summed_at
            .saturating_duration_since(computed_at)
            .as_secs_f64();
        for id in 0..n {
            let seqs = sphere_seqs(id).len();
            let tally = &mut self.tally[id];
            tally.sequences += seqs as u64;
            if seqs > 0 {
                tally.loss_sum += loss_sums[id];
                tally.last_loss = (loss_sums[id] / seqs as f64) as f32;
                // Scaled as on one machine, comparable across layouts.
                tally.grad_norm = (own_sq[id].sqrt() * input.n_seqs as f64 / seqs as f64) as f32;
            }
            let frac = (busy[id].as_secs_f64() / step_secs).min(1.0) as f32;
            tally.busy = if tally.sequences == 0 {
                frac
            } else {
                0.7 * tally.busy + 0.3 * frac
            };
        }
        GradOutcome {
            loss,
            grad_norm: total_sq.sqrt() as f32,
            shards: shard_buckets,
            comm: Some(ClusterStats {
                ranks: k,
                threads_per_rank: n,
                rank_tokens_per_sec,
                allreduce_secs: in_collective.as_secs_f64(),
                exposed_secs: exposed,
                step_secs,
                exposed_share: exposed / step_secs,
                allreduce_bytes: (total * size_of::<f32>()) as u64,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_core::ModelConfig;

    #[test]
    fn buckets_cover_the_parameters_once_in_backward_order() {
        let mut cfg = ModelConfig::preset("tiny").unwrap();
        cfg.vocab_size = 64;
        let layout = ParamLayout::new(&cfg);
        let b = gradient_buckets(&layout);
        assert_eq!(b.len(), cfg.n_layer + 2);
        assert_eq!(b[0], layout.wte..layout.wpe);
        assert_eq!(b[1].end, layout.total);
        let mut covered = vec![0u8; layout.total];
        for r in &b {
            for c in &mut covered[r.clone()] {
                *c += 1;
            }
        }
        assert!(covered.iter().all(|&c| c == 1));
        // After wte: the top layer with ln_f; the last, the positions.
        assert!(b[1].contains(&layout.ln_f_weight));
        assert!(b.last().unwrap().contains(&layout.wpe));
        assert_eq!(step_rows(&[5, 3, 5, 9, 3]), vec![3, 5, 9]);
    }
}
