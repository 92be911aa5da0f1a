//! Evaluation on the spheres: the windows shared out, forward only, the
//! summed loss, the prediction counts and (when asked for) every scored
//! position's loss.

use super::Spheres;
use super::gradients::chunks;
use crate::metrics::ClassCounts;
use crate::tree::share;
use cllm_core::{Batch, Gpt, Loss, Workspace};

/// One sphere's evaluation: summed loss, prediction counts, per-position
/// losses (when asked for).
type EvalShare = (f64, ClassCounts, Vec<f32>);

impl Spheres {
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
}
