//! The AdamW update sliced across spheres (a rank's share of it in a
//! sharded cluster step), the bf16 packs of the updated weights, and the
//! moments gathered whole again before anything saves them.

use super::Spheres;
use crate::optimizer::{AdamW, AdamWStep};
use crate::tree::{share, shares_mut};
use cllm_core::Gpt;
use std::ops::Range;

impl Spheres {
    /// clipping folds in) to the parameters, sliced across spheres. After a
    /// sharded step (`shards`, see [`GradOutcome::shards`](super::GradOutcome::shards)) this rank
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

    /// The gradient buckets whose AdamW moments hold this rank's shares
    /// only (`None`: they are whole).
    pub fn moment_shares(&self) -> Option<&[Range<usize>]> {
        self.stale_moments.as_deref()
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
