//! Adapting while reading (dynamic evaluation, Krause et al. 2018, 2019):
//! after a segment of a document is scored, one SGD step on that segment,
//! pulled back toward the trained weights, so the rest of the document is
//! scored by weights that have learned its identifiers and idioms. Each
//! segment is scored before the weights learn from it, and every document
//! starts from the trained weights.

use crate::error::TrainError;
use crate::metrics::ClassCounts;
use cllm_core::{Backward, Batch, Gpt, Loss, Workspace};
use cllm_data::dataset::TokenDataset;

pub use crate::config::AdaptSettings;

/// A copy of a model that learns from what it reads, and the trained
/// weights it decays toward and starts each document from.
pub struct Adapter {
    model: Gpt,
    trained: Vec<f32>,
    grads: Vec<f32>,
    ws: Workspace,
    settings: AdaptSettings,
}

impl Adapter {
    /// An adapter over a copy of `model`, for segments of at most `max_seq`
    /// tokens (at most the model's context).
    pub fn new(
        model: &Gpt,
        settings: AdaptSettings,
        max_seq: usize,
    ) -> Result<Adapter, TrainError> {
        settings.check().map_err(TrainError::AdaptSetting)?;
        if max_seq == 0 || max_seq > model.config.n_ctx {
            return Err(TrainError::EvalSequenceLength {
                seq_len: max_seq,
                n_ctx: model.config.n_ctx,
            });
        }
        Ok(Adapter {
            model: model.clone(),
            trained: model.params.clone(),
            grads: vec![0.0; model.params.len()],
            ws: Workspace::new(&model.config, 1, max_seq),
            settings,
        })
    }

    /// The weights as adapted so far.
    pub fn model(&self) -> &Gpt {
        &self.model
    }

    /// The weights as adapted, kept.
    pub fn into_model(self) -> Gpt {
        self.model
    }

    /// Back to the trained weights (a new document).
    pub fn reset(&mut self) {
        self.model.params.copy_from_slice(&self.trained);
        self.model.refresh_precision();
    }

    /// Scores one sequence with the current weights: every position's loss
    /// (nats) and arg-max prediction.
    pub fn score(&mut self, inputs: &[u32], targets: &[u32]) -> (Vec<f32>, Vec<u32>) {
        let mut losses = vec![0.0; inputs.len()];
        let mut predictions = vec![0; inputs.len()];
        let batch = Batch {
            inputs,
            targets,
            batch: 1,
            seq: inputs.len(),
        };
        self.model.forward(
            &mut self.ws,
            Loss {
                batch,
                predictions: Some(&mut predictions),
                losses: Some(&mut losses),
            },
        );
        (losses, predictions)
    }

    /// One step on a segment already scored: `w -= lr * grad(mean loss)`,
    /// then `w = (1 - decay) * w + decay * trained`. Returns the segment's mean loss
    /// before the step.
    pub fn learn(&mut self, inputs: &[u32], targets: &[u32]) -> f32 {
        let n = inputs.len();
        self.grads.fill(0.0);
        let batch = Batch {
            inputs,
            targets,
            batch: 1,
            seq: n,
        };
        let loss = self.model.forward_backward(
            &mut self.ws,
            &batch,
            &mut self.grads,
            Backward::scaled(1.0 / n as f32),
        );
        let AdaptSettings { lr, decay, .. } = self.settings;
        for ((w, &g), &w0) in self
            .model
            .params
            .iter_mut()
            .zip(&self.grads)
            .zip(&self.trained)
        {
            let stepped = *w - lr * g;
            *w = (1.0 - decay) * stepped + decay * w0;
        }
        self.model.refresh_precision();
        loss
    }

    /// Reads `tokens` (a prompt) segment by segment of `segment` tokens,
    /// learning from each: what generation does before it continues the
    /// prompt. Returns the mean loss of the segments before each learned.
    pub fn read(&mut self, tokens: &[u32], segment: usize) -> f32 {
        let segment = segment.clamp(1, self.ws.max_seq);
        let mut sum = 0.0f64;
        let mut count = 0usize;
        let mut at = 0;
        while at + 1 < tokens.len() {
            let end = (at + segment).min(tokens.len() - 1);
            let loss = self.learn(&tokens[at..end], &tokens[at + 1..end + 1]);
            sum += loss as f64 * (end - at) as f64;
            count += end - at;
            at = end;
        }
        (sum / count.max(1) as f64) as f32
    }
}

/// `model` after reading `prompt` (its tokens) segment by segment of the
/// model's context, one step on each: what generation continues from when
/// it adapts.
pub fn adapt_to_prompt(
    model: &Gpt,
    prompt: &[u32],
    settings: AdaptSettings,
) -> Result<Gpt, TrainError> {
    let segment = model.config.n_ctx;
    let mut adapter = Adapter::new(model, settings, segment)?;
    adapter.read(prompt, segment);
    Ok(adapter.into_model())
}

/// The figures of an adapting evaluation: as [`Spheres::evaluate_with_losses`]
/// returns them (summed loss, prediction counts, each scored position's
/// loss in window order).
///
/// [`Spheres::evaluate_with_losses`]: crate::spheres::Spheres::evaluate_with_losses
pub type AdaptedLosses = (f64, ClassCounts, Vec<f32>);

/// Scores the windows (each from `skips[i]` on, starting at `starts[i]`)
/// in order with an adapting copy of `model`: window `i`'s scored positions
/// are scored first, then the weights take one step on them (its segment,
/// clipped to its document). The copy goes back to the trained weights at
/// each new document of `data` (the one holding the window's last scored
/// target).
pub fn score_adapting(
    model: &Gpt,
    data: &TokenDataset,
    starts: &[usize],
    skips: &[usize],
    seq_len: usize,
    settings: AdaptSettings,
) -> Result<AdaptedLosses, TrainError> {
    let mut adapter = Adapter::new(model, settings, seq_len)?;
    let mut loss_sum = 0.0f64;
    let mut counts = ClassCounts::default();
    let mut losses = Vec::new();
    let mut current_doc = None;
    for (&start, &skip) in starts.iter().zip(skips) {
        let skip = skip.min(seq_len);
        if skip == seq_len {
            continue;
        }
        let doc = document_of(data, start + seq_len);
        if current_doc != Some(doc) {
            if current_doc.is_some() {
                adapter.reset();
            }
            current_doc = Some(doc);
        }
        let inputs = &data.tokens[start..start + seq_len];
        let targets = &data.tokens[start + 1..start + seq_len + 1];
        let (all, predictions) = adapter.score(inputs, targets);
        loss_sum += all[skip..].iter().map(|&l| l as f64).sum::<f64>();
        counts.add(&targets[skip..], &predictions[skip..]);
        losses.extend_from_slice(&all[skip..]);
        if settings.lr > 0.0 {
            // The segment's inputs start no earlier than its document.
            let doc_start = data.docs.get(doc).map_or(0, |r| r.start);
            let from = (start + skip).max(doc_start).min(start + seq_len - 1);
            adapter.learn(
                &data.tokens[from..start + seq_len],
                &data.tokens[from + 1..start + seq_len + 1],
            );
        }
    }
    Ok((loss_sum, counts, losses))
}

/// The document holding token `position` (a separator counts with the
/// document after it).
fn document_of(data: &TokenDataset, position: usize) -> usize {
    data.docs.partition_point(|r| r.end <= position)
}
