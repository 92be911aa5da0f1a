//! Validation: the loss, perplexity, bits per byte, accuracy and macro
//! P/R/F1 of a model on windows of a token dataset, shared across spheres.

use super::adapt::{AdaptSettings, score_adapting};
use super::error::TrainError;
use super::events::EvalStats;
use super::memory;
use super::metrics::{ClassCounts, bits_per_byte};
use super::spheres::Spheres;
use cllm_core::Gpt;
use cllm_data::dataset::TokenDataset;
use cllm_memory::{FitStats, Memory};
use serde::Serialize;

/// Where an evaluation reads: windows of `seq_len` tokens starting every
/// `stride` tokens, each scoring only the positions no earlier window
/// scored. With `stride < seq_len` the windows overlap and every scored
/// token after the first window sees at least `seq_len - stride` tokens of
/// context, as a reader of the whole file would; non-overlapping windows
/// (`stride == seq_len`) give a window's first tokens almost none, which
/// overstates the loss of a model with a short context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalWindows {
    seq_len: usize,
    starts: Vec<usize>,
}

/// The stride every evaluation uses unless told otherwise: windows overlap
/// by half, so a scored token has at least half a window of context.
pub fn default_stride(seq_len: usize) -> usize {
    seq_len.div_ceil(2).max(1)
}

impl EvalWindows {
    /// Windows over the first `span` sequences' worth of tokens of `data`
    /// (`span * seq_len` tokens; 0 = all of it), every `stride` tokens
    /// (clamped to `1..=seq_len`). The last window ends where the span does,
    /// so every token after the first is scored exactly once.
    pub fn new(data: &TokenDataset, seq_len: usize, stride: usize, span: usize) -> EvalWindows {
        let seq_len = seq_len.max(1);
        let stride = stride.clamp(1, seq_len);
        // Tokens the windows may read: inputs and the last target.
        let mut len = data.tokens.len();
        if span > 0 {
            len = len.min(span.saturating_mul(seq_len).saturating_add(1));
        }
        let mut starts = Vec::new();
        if len > seq_len {
            let last = len - 1 - seq_len;
            starts.extend((0..=last).step_by(stride));
            if starts.last() != Some(&last) {
                starts.push(last);
            }
        }
        EvalWindows { seq_len, starts }
    }

    /// Windows at the given starts, which must increase; each scores what
    /// the one before it did not (for callers that choose their windows).
    pub fn from_starts(seq_len: usize, starts: Vec<usize>) -> Result<EvalWindows, TrainError> {
        if seq_len == 0 || starts.windows(2).any(|w| w[1] <= w[0]) {
            return Err(TrainError::EvalWindows { seq_len, starts });
        }
        Ok(EvalWindows { seq_len, starts })
    }

    /// [`new`](Self::new) with the [`default_stride`].
    pub fn overlapping(data: &TokenDataset, seq_len: usize, span: usize) -> EvalWindows {
        EvalWindows::new(data, seq_len, default_stride(seq_len), span)
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Each window's first token.
    pub fn starts(&self) -> &[usize] {
        &self.starts
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Leading positions of window `i` that an earlier window scored.
    pub fn skip(&self, i: usize) -> usize {
        match i.checked_sub(1).map(|p| self.starts[p]) {
            Some(prev) if self.starts[i] > prev && self.starts[i] < prev + self.seq_len => {
                prev + self.seq_len - self.starts[i]
            }
            _ => 0,
        }
    }

    pub fn skips(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.skip(i)).collect()
    }

    /// Positions scored over all windows.
    pub fn scored(&self) -> usize {
        (0..self.len()).map(|i| self.seq_len - self.skip(i)).sum()
    }

    /// The runs of windows whose scored positions follow each other in
    /// the stream: each is one document for the memory, whose cache reads
    /// it from its start. `tokens` is the run's span of the stream (its
    /// first input to its last target) and `losses` the run's share of the
    /// per-position losses, which score `tokens[1..]`.
    fn documents(&self) -> Vec<Document> {
        let mut out: Vec<Document> = Vec::new();
        let mut at = 0;
        for i in 0..self.len() {
            let skip = self.skip(i);
            let scored = self.seq_len - skip;
            let end = self.starts[i] + self.seq_len + 1;
            match out.last_mut() {
                Some(doc) if i > 0 && (skip > 0 || self.starts[i] == doc.tokens.end - 1) => {
                    doc.tokens.end = end;
                    doc.losses.end += scored;
                }
                _ => out.push(Document {
                    tokens: self.starts[i]..end,
                    losses: at..at + scored,
                }),
            }
            at += scored;
        }
        out
    }
}

/// A run of windows read as one document (see [`EvalWindows::documents`]).
struct Document {
    tokens: std::ops::Range<usize>,
    losses: std::ops::Range<usize>,
}

/// Evaluates `model` on `windows` of `data` shared across `threads`
/// spheres: loss, perplexity, bits per byte, accuracy and macro P/R/F1.
pub fn evaluate_model(
    model: &Gpt,
    data: &TokenDataset,
    windows: &EvalWindows,
    threads: usize,
) -> Result<EvalStats, TrainError> {
    evaluate_model_with_memory(model, data, windows, threads, None, None).map(|(s, _)| s)
}

/// [`evaluate_model`], and with a memory the same positions scored by the
/// transformer mixed with it. With `adapt`, the windows are scored in
/// order, one thread, by a copy of the model that learns from each window's
/// scored positions after scoring them ([`crate::adapt::score_adapting`]).
pub fn evaluate_model_with_memory(
    model: &Gpt,
    data: &TokenDataset,
    windows: &EvalWindows,
    threads: usize,
    memory: Option<&Memory>,
    adapt: Option<AdaptSettings>,
) -> Result<(EvalStats, Option<MemoryEval>), TrainError> {
    let bytes_per_token = data.bytes as f64 / data.tokens.len().max(1) as f64;
    if let Some(memory) = memory {
        check_vocabularies(model, memory)?;
    }
    let (loss_sum, counts, losses) = match adapt {
        Some(settings) => {
            check_windows(model, data, windows)?;
            score_adapting(
                model,
                data,
                windows.starts(),
                &windows.skips(),
                windows.seq_len(),
                settings,
            )?
        }
        None => {
            let mut spheres = evaluation_spheres(model, data, windows, threads)?;
            model_losses(&mut spheres, model, data, windows)
        }
    };
    let stats = eval_stats(loss_sum, &counts, windows.scored(), bytes_per_token, 0, 0);
    let with = memory.map(|memory| mixed_eval(memory, data, windows, &losses, bytes_per_token));
    Ok((stats, with))
}

/// Checks that the windows fit the model and hold something to score.
fn check_windows(
    model: &Gpt,
    data: &TokenDataset,
    windows: &EvalWindows,
) -> Result<(), TrainError> {
    let seq_len = windows.seq_len();
    if seq_len == 0 || seq_len > model.config.n_ctx {
        return Err(TrainError::EvalSequenceLength {
            seq_len,
            n_ctx: model.config.n_ctx,
        });
    }
    if windows.is_empty() {
        return Err(TrainError::TooFewTokensToEvaluate {
            tokens: data.tokens.len(),
            seq_len,
        });
    }
    Ok(())
}

/// Checks the windows and the memory an evaluation needs, and sets up its
/// spheres.
fn evaluation_spheres(
    model: &Gpt,
    data: &TokenDataset,
    windows: &EvalWindows,
    threads: usize,
) -> Result<Spheres, TrainError> {
    check_windows(model, data, windows)?;
    let seq_len = windows.seq_len();
    let threads = threads.max(1);
    let per_sphere = windows.len().div_ceil(threads).min(16);
    let need = memory::evaluation_memory(&model.config, threads, per_sphere, seq_len);
    memory::check_fits(
        &need,
        &format!(
            "evaluating {per_sphere} sequences of {seq_len} tokens on each of {threads} spheres"
        ),
    )?;
    Ok(Spheres::for_evaluation(
        model,
        threads,
        per_sphere * threads,
        seq_len,
    ))
}

/// The with-memory figures of an evaluation, over the same positions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MemoryEval {
    /// Mean loss of the mix, nats per token.
    pub loss: f32,
    pub bits_per_byte: f32,
    /// Positions scored.
    pub positions: usize,
}

/// [`evaluate`], and the same positions scored by the transformer mixed
/// with `memory`. Each run of windows whose scored positions follow each
/// other is read by the memory as one document, so its cache sees
/// everything before each position, while the transformer sees its window
/// only.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_with_memory(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &EvalWindows,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
    memory: &Memory,
) -> Result<(EvalStats, MemoryEval), TrainError> {
    check_vocabularies(model, memory)?;
    let (stats, losses) =
        plain_with_losses(spheres, model, val, windows, bytes_per_token, (epoch, step));
    let mixed = mixed_eval(memory, val, windows, &losses, bytes_per_token);
    Ok((stats, mixed))
}

/// The trainer's evaluation: [`evaluate`] without a memory; with one, the
/// same forward pass also fits the memory's mix on those positions and
/// scores them (in-sample for the mix's weights, as
/// [`EvalStats::bits_per_byte_with_memory`] says).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_fitting_memory(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &EvalWindows,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
    memory: Option<&mut Memory>,
) -> Result<EvalStats, TrainError> {
    let Some(memory) = memory else {
        return Ok(evaluate(
            spheres,
            model,
            val,
            windows,
            bytes_per_token,
            epoch,
            step,
        ));
    };
    check_vocabularies(model, memory)?;
    let (mut stats, losses) =
        plain_with_losses(spheres, model, val, windows, bytes_per_token, (epoch, step));
    fit_on_losses(memory, val, windows, &losses);
    let mixed = mixed_eval(memory, val, windows, &losses, bytes_per_token);
    stats.loss_with_memory = Some(mixed.loss);
    stats.bits_per_byte_with_memory = Some(mixed.bits_per_byte);
    Ok(stats)
}

/// One forward pass over the windows: the plain figures, and every scored
/// position's loss for the memory.
fn plain_with_losses(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &EvalWindows,
    bytes_per_token: f64,
    (epoch, step): (usize, u64),
) -> (EvalStats, Vec<f32>) {
    let (loss_sum, counts, losses) = model_losses(spheres, model, val, windows);
    let stats = eval_stats(
        loss_sum,
        &counts,
        windows.scored(),
        bytes_per_token,
        epoch,
        step,
    );
    (stats, losses)
}

/// The mix's figures over the windows, given the transformer's losses.
fn mixed_eval(
    memory: &Memory,
    val: &TokenDataset,
    windows: &EvalWindows,
    losses: &[f32],
    bytes_per_token: f64,
) -> MemoryEval {
    let mixed = memory_losses(memory, val, windows, losses);
    let loss = (mixed.iter().sum::<f64>() / mixed.len().max(1) as f64) as f32;
    MemoryEval {
        loss,
        bits_per_byte: bits_per_byte(loss, bytes_per_token),
        positions: mixed.len(),
    }
}

/// Fits `memory`'s mix on `windows` of `val` (the transformer's
/// probabilities of the true tokens come from `model`). A with-memory
/// figure later measured on the same `val` is in-sample for the mix's
/// weights (a few hundred buckets of three, held near their defaults by a
/// prior): slightly optimistic.
pub fn fit_memory(
    model: &Gpt,
    memory: &mut Memory,
    val: &TokenDataset,
    windows: &EvalWindows,
    threads: usize,
) -> Result<FitStats, TrainError> {
    check_vocabularies(model, memory)?;
    let mut spheres = evaluation_spheres(model, val, windows, threads)?;
    fit_memory_on(&mut spheres, model, memory, val, windows)
}

/// [`fit_memory`] with the caller's spheres (the trainer's).
pub fn fit_memory_on(
    spheres: &mut Spheres,
    model: &Gpt,
    memory: &mut Memory,
    val: &TokenDataset,
    windows: &EvalWindows,
) -> Result<FitStats, TrainError> {
    check_vocabularies(model, memory)?;
    let (_, _, losses) = model_losses(spheres, model, val, windows);
    Ok(fit_on_losses(memory, val, windows, &losses))
}

/// Fits the mix from the transformer's per-position losses on `windows`.
fn fit_on_losses(
    memory: &mut Memory,
    val: &TokenDataset,
    windows: &EvalWindows,
    losses: &[f32],
) -> FitStats {
    let docs: Vec<(&[u32], Vec<f32>)> = windows
        .documents()
        .into_iter()
        .map(|doc| (&val.tokens[doc.tokens], probabilities(&losses[doc.losses])))
        .collect();
    let refs: Vec<(&[u32], &[f32])> = docs.iter().map(|(t, p)| (*t, &p[..])).collect();
    memory.fit_documents(&refs)
}

/// The transformer's probabilities of the true tokens, from their losses.
fn probabilities(losses: &[f32]) -> Vec<f32> {
    losses.iter().map(|l| (-l).exp()).collect()
}

fn check_vocabularies(model: &Gpt, memory: &Memory) -> Result<(), TrainError> {
    if memory.vocab_size() != model.config.vocab_size {
        return Err(TrainError::MemoryVocabulary {
            memory: memory.vocab_size(),
            model: model.config.vocab_size,
        });
    }
    Ok(())
}

/// The windows' inputs and targets, laid end to end.
fn window_tokens(val: &TokenDataset, windows: &EvalWindows) -> (Vec<u32>, Vec<u32>) {
    let seq_len = windows.seq_len();
    let mut inputs = Vec::with_capacity(windows.len() * seq_len);
    let mut targets = Vec::with_capacity(windows.len() * seq_len);
    for &w in windows.starts() {
        inputs.extend_from_slice(&val.tokens[w..w + seq_len]);
        targets.extend_from_slice(&val.tokens[w + 1..w + seq_len + 1]);
    }
    (inputs, targets)
}

/// The summed loss, the prediction counts and every scored position's
/// loss (nats), window by window.
fn model_losses(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &EvalWindows,
) -> (f64, ClassCounts, Vec<f32>) {
    let (inputs, targets) = window_tokens(val, windows);
    spheres.evaluate_with_losses(
        model,
        &inputs,
        &targets,
        &windows.skips(),
        windows.seq_len(),
    )
}

/// The mix's loss (nats) at every scored position, given the
/// transformer's losses there.
fn memory_losses(
    memory: &Memory,
    val: &TokenDataset,
    windows: &EvalWindows,
    losses: &[f32],
) -> Vec<f64> {
    let mut out = Vec::with_capacity(losses.len());
    for doc in windows.documents() {
        let probs = probabilities(&losses[doc.losses]);
        let mixed = memory.score(&val.tokens[doc.tokens], &probs);
        out.extend(mixed.iter().map(|&p| -(p.max(1e-30) as f64).ln()));
    }
    out
}

fn eval_stats(
    loss_sum: f64,
    counts: &ClassCounts,
    positions: usize,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
) -> EvalStats {
    let loss = (loss_sum / positions.max(1) as f64) as f32;
    let (precision, recall, f1) = counts.macro_prf();
    EvalStats {
        epoch,
        step,
        loss,
        perplexity: loss.exp(),
        bits_per_byte: bits_per_byte(loss, bytes_per_token),
        accuracy: counts.accuracy(),
        precision,
        recall,
        f1,
        ..EvalStats::default()
    }
}

pub fn evaluate(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &EvalWindows,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
) -> EvalStats {
    let (inputs, targets) = window_tokens(val, windows);
    let (loss_sum, counts): (f64, ClassCounts) = spheres.evaluate(
        model,
        &inputs,
        &targets,
        &windows.skips(),
        windows.seq_len(),
    );
    eval_stats(
        loss_sum,
        &counts,
        windows.scored(),
        bytes_per_token,
        epoch,
        step,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(len: usize) -> TokenDataset {
        TokenDataset {
            tokens: (0..len as u32).collect(),
            docs: std::iter::once(0..len).collect(),
            bytes: len as u64,
            doc_bytes: vec![len as u64],
            names: vec!["s".into()],
            eot: None,
        }
    }

    /// The targets (stream indices) window `i` scores, and the context each
    /// has inside its window.
    fn scored_by(w: &EvalWindows, i: usize) -> Vec<(usize, usize)> {
        let start = w.starts()[i];
        (w.skip(i)..w.seq_len())
            .map(|t| (start + t + 1, t + 1))
            .collect()
    }

    #[test]
    fn every_token_is_scored_once_with_the_promised_context() {
        for len in [0, 1, 5, 16, 17, 18, 33, 100, 257] {
            for seq in [1, 4, 16] {
                for stride in [1, 3, 4, 8, 16, 99] {
                    for span in [0, 1, 3] {
                        let w = EvalWindows::new(&stream(len), seq, stride, span);
                        let reach = if span == 0 {
                            len
                        } else {
                            len.min(span * seq + 1)
                        };
                        let mut seen = vec![0u32; len];
                        let mut scored = 0;
                        for i in 0..w.len() {
                            assert!(w.starts()[i] + seq < reach.max(1));
                            for (target, context) in scored_by(&w, i) {
                                seen[target] += 1;
                                scored += 1;
                                if i > 0 {
                                    let least = seq - stride.clamp(1, seq);
                                    assert!(context > least, "{len} {seq} {stride} {span}");
                                }
                            }
                        }
                        let want: Vec<u32> = (0..len)
                            .map(|t| u32::from(t >= 1 && t < reach && reach > seq))
                            .collect();
                        assert_eq!(
                            seen, want,
                            "len {len} seq {seq} stride {stride} span {span}"
                        );
                        assert_eq!(w.scored(), scored);
                    }
                }
            }
        }
    }

    #[test]
    fn documents_are_runs_of_following_positions() {
        let w = EvalWindows::from_starts(4, vec![0, 2, 4, 8, 20, 21]).unwrap();
        let docs = w.documents();
        let spans: Vec<_> = docs
            .iter()
            .map(|d| (d.tokens.clone(), d.losses.clone()))
            .collect();
        // 0,2,4 overlap; 8 follows 4's last target (9 = 8 + 1); 20 stands
        // apart; 21 overlaps 20.
        assert_eq!(spans, vec![(0..13, 0..12), (20..26, 12..17)]);
        for d in &docs {
            assert_eq!(d.tokens.len() - 1, d.losses.len());
        }
        assert_eq!(w.scored(), 17);
        assert!(EvalWindows::from_starts(4, vec![3, 3]).is_err());
        assert!(EvalWindows::from_starts(0, vec![0]).is_err());
    }
}
