//! Validation: the loss, perplexity, bits per byte, accuracy and macro
//! P/R/F1 of a model on windows of a token dataset, shared across spheres.

use super::events::EvalStats;
use super::memory;
use super::metrics::{ClassCounts, bits_per_byte};
use super::spheres::Spheres;
use crate::data::dataset::TokenDataset;
use crate::memory::{FitStats, Memory};
use crate::model::Gpt;
use serde::Serialize;

/// Evaluates `model` on consecutive windows of `data` (at most
/// `max_windows`, 0 = all) shared across `threads` spheres: loss,
/// perplexity, bits per byte, accuracy and macro P/R/F1.
pub fn evaluate_model(
    model: &Gpt,
    data: &TokenDataset,
    seq_len: usize,
    threads: usize,
    max_windows: usize,
) -> Result<EvalStats, String> {
    evaluate_model_with_memory(model, data, seq_len, threads, max_windows, None).map(|(s, _)| s)
}

/// [`evaluate_model`], and with a memory the same windows scored by the
/// transformer mixed with it.
pub fn evaluate_model_with_memory(
    model: &Gpt,
    data: &TokenDataset,
    seq_len: usize,
    threads: usize,
    max_windows: usize,
    memory: Option<&Memory>,
) -> Result<(EvalStats, Option<MemoryEval>), String> {
    let (mut spheres, windows) = evaluation_spheres(model, data, seq_len, threads, max_windows)?;
    let bytes_per_token = data.bytes as f64 / data.tokens.len().max(1) as f64;
    match memory {
        None => Ok((
            evaluate(
                &mut spheres,
                model,
                data,
                &windows,
                seq_len,
                bytes_per_token,
                0,
                0,
            ),
            None,
        )),
        Some(memory) => {
            let (stats, with) = evaluate_with_memory(
                &mut spheres,
                model,
                data,
                &windows,
                seq_len,
                bytes_per_token,
                0,
                0,
                memory,
            )?;
            Ok((stats, Some(with)))
        }
    }
}

/// Checks the arguments, the windows and the memory an evaluation needs,
/// and sets up its spheres.
fn evaluation_spheres(
    model: &Gpt,
    data: &TokenDataset,
    seq_len: usize,
    threads: usize,
    max_windows: usize,
) -> Result<(Spheres, Vec<usize>), String> {
    if seq_len == 0 || seq_len > model.config.n_ctx {
        return Err(format!(
            "sequence length {seq_len} must be between 1 and the model's context {}",
            model.config.n_ctx
        ));
    }
    let windows = eval_windows(data, seq_len, max_windows);
    if windows.is_empty() {
        return Err(format!(
            "not enough tokens to evaluate: {} tokens, windows of {seq_len}",
            data.tokens.len()
        ));
    }
    let threads = threads.max(1);
    let per_sphere = windows.len().div_ceil(threads).min(16);
    let need = memory::evaluation_memory(&model.config, threads, per_sphere, seq_len);
    memory::check_fits(
        &need,
        &format!(
            "evaluating {per_sphere} sequences of {seq_len} tokens on each of {threads} spheres"
        ),
    )?;
    let spheres = Spheres::for_evaluation(model, threads, per_sphere * threads, seq_len);
    Ok((spheres, windows))
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

/// [`evaluate`], and the same windows scored by the transformer mixed with
/// `memory`. Runs of consecutive windows (as [`eval_windows`] makes them)
/// are read by the memory as one document, so its cache sees everything
/// before each position, while the transformer sees its window only.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_with_memory(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
    memory: &Memory,
) -> Result<(EvalStats, MemoryEval), String> {
    check_vocabularies(model, memory)?;
    let (stats, losses) = plain_with_losses(
        spheres,
        model,
        val,
        windows,
        seq_len,
        bytes_per_token,
        (epoch, step),
    );
    let mixed = mixed_eval(memory, val, windows, seq_len, &losses, bytes_per_token);
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
    windows: &[usize],
    seq_len: usize,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
    memory: Option<&mut Memory>,
) -> Result<EvalStats, String> {
    let Some(memory) = memory else {
        return Ok(evaluate(
            spheres,
            model,
            val,
            windows,
            seq_len,
            bytes_per_token,
            epoch,
            step,
        ));
    };
    check_vocabularies(model, memory)?;
    let (mut stats, losses) = plain_with_losses(
        spheres,
        model,
        val,
        windows,
        seq_len,
        bytes_per_token,
        (epoch, step),
    );
    fit_on_losses(memory, val, windows, seq_len, &losses);
    let mixed = mixed_eval(memory, val, windows, seq_len, &losses, bytes_per_token);
    stats.loss_with_memory = Some(mixed.loss);
    stats.bits_per_byte_with_memory = Some(mixed.bits_per_byte);
    Ok(stats)
}

/// One forward pass over the windows: the plain figures, and every
/// position's loss for the memory.
fn plain_with_losses(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
    bytes_per_token: f64,
    (epoch, step): (usize, u64),
) -> (EvalStats, Vec<f32>) {
    let (loss_sum, counts, losses) = model_losses(spheres, model, val, windows, seq_len);
    let stats = eval_stats(
        loss_sum,
        &counts,
        windows.len() * seq_len,
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
    windows: &[usize],
    seq_len: usize,
    losses: &[f32],
    bytes_per_token: f64,
) -> MemoryEval {
    let mixed = memory_losses(memory, val, windows, seq_len, losses);
    let loss = (mixed.iter().sum::<f64>() / mixed.len().max(1) as f64) as f32;
    MemoryEval {
        loss,
        bits_per_byte: bits_per_byte(loss, bytes_per_token),
        positions: mixed.len(),
    }
}

/// Fits `memory`'s mix on every window of `val` (the transformer's
/// probabilities of the true tokens come from `model`). A with-memory
/// figure later measured on the same `val` is in-sample for the mix's
/// weights (a few hundred buckets of three, held near their defaults by a
/// prior): slightly optimistic.
pub fn fit_memory(
    model: &Gpt,
    memory: &mut Memory,
    val: &TokenDataset,
    seq_len: usize,
    threads: usize,
) -> Result<FitStats, String> {
    check_vocabularies(model, memory)?;
    let (mut spheres, windows) = evaluation_spheres(model, val, seq_len, threads, 0)?;
    fit_memory_on(&mut spheres, model, memory, val, &windows, seq_len)
}

/// [`fit_memory`] on given windows with the caller's spheres (the
/// trainer's); each run of consecutive windows is one document.
pub fn fit_memory_on(
    spheres: &mut Spheres,
    model: &Gpt,
    memory: &mut Memory,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
) -> Result<FitStats, String> {
    check_vocabularies(model, memory)?;
    let (_, _, losses) = model_losses(spheres, model, val, windows, seq_len);
    Ok(fit_on_losses(memory, val, windows, seq_len, &losses))
}

/// Fits the mix from the transformer's per-position losses on `windows`.
fn fit_on_losses(
    memory: &mut Memory,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
    losses: &[f32],
) -> FitStats {
    let docs: Vec<(Vec<u32>, Vec<f32>)> = documents(windows, seq_len)
        .map(|(first, last)| {
            let tokens = val.tokens[windows[first]..=windows[last] + seq_len].to_vec();
            let probs = losses[first * seq_len..(last + 1) * seq_len]
                .iter()
                .map(|l| (-l).exp())
                .collect();
            (tokens, probs)
        })
        .collect();
    let refs: Vec<(&[u32], &[f32])> = docs.iter().map(|(t, p)| (&t[..], &p[..])).collect();
    memory.fit_documents(&refs)
}

/// The runs of consecutive windows, as (first, last) indices into `windows`.
fn documents(windows: &[usize], seq_len: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut first = 0;
    std::iter::from_fn(move || {
        if first >= windows.len() {
            return None;
        }
        let mut last = first;
        while last + 1 < windows.len() && windows[last + 1] == windows[last] + seq_len {
            last += 1;
        }
        let run = (first, last);
        first = last + 1;
        Some(run)
    })
}

fn check_vocabularies(model: &Gpt, memory: &Memory) -> Result<(), String> {
    if memory.vocab_size() != model.config.vocab_size {
        return Err(format!(
            "the memory's vocabulary has {} tokens, the model's {}",
            memory.vocab_size(),
            model.config.vocab_size
        ));
    }
    Ok(())
}

/// The windows' inputs and targets, laid end to end.
fn window_tokens(val: &TokenDataset, windows: &[usize], seq_len: usize) -> (Vec<u32>, Vec<u32>) {
    let mut inputs = Vec::with_capacity(windows.len() * seq_len);
    let mut targets = Vec::with_capacity(windows.len() * seq_len);
    for &w in windows {
        inputs.extend_from_slice(&val.tokens[w..w + seq_len]);
        targets.extend_from_slice(&val.tokens[w + 1..w + seq_len + 1]);
    }
    (inputs, targets)
}

/// The summed loss, the prediction counts and every position's loss
/// (nats), window by window.
fn model_losses(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
) -> (f64, ClassCounts, Vec<f32>) {
    let (inputs, targets) = window_tokens(val, windows, seq_len);
    spheres.evaluate_with_losses(model, &inputs, &targets, windows.len(), seq_len)
}

/// The mix's loss (nats) at every position of the windows, given the
/// transformer's losses there.
fn memory_losses(
    memory: &Memory,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
    losses: &[f32],
) -> Vec<f64> {
    let mut out = Vec::with_capacity(losses.len());
    for (first, last) in documents(windows, seq_len) {
        let probs: Vec<f32> = losses[first * seq_len..(last + 1) * seq_len]
            .iter()
            .map(|l| (-l).exp())
            .collect();
        let tokens = &val.tokens[windows[first]..=windows[last] + seq_len];
        let mixed = memory.score(tokens, &probs);
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
    let loss = (loss_sum / positions as f64) as f32;
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

/// Start offsets of the validation windows (at most `limit`, 0 = all).
pub fn eval_windows(val: &TokenDataset, seq_len: usize, limit: usize) -> Vec<usize> {
    let n = val.tokens.len().saturating_sub(1) / seq_len;
    let n = if limit > 0 { n.min(limit) } else { n };
    (0..n).map(|i| i * seq_len).collect()
}

#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    spheres: &mut Spheres,
    model: &Gpt,
    val: &TokenDataset,
    windows: &[usize],
    seq_len: usize,
    bytes_per_token: f64,
    epoch: usize,
    step: u64,
) -> EvalStats {
    let (inputs, targets) = window_tokens(val, windows, seq_len);
    let (loss_sum, counts): (f64, ClassCounts) =
        spheres.evaluate(model, &inputs, &targets, windows.len(), seq_len);
    eval_stats(
        loss_sum,
        &counts,
        windows.len() * seq_len,
        bytes_per_token,
        epoch,
        step,
    )
}
