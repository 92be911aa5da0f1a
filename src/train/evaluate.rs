//! Validation: the loss, perplexity, bits per byte, accuracy and macro
//! P/R/F1 of a model on windows of a token dataset, shared across spheres.

use super::events::EvalStats;
use super::memory;
use super::metrics::{ClassCounts, bits_per_byte};
use super::spheres::Spheres;
use crate::data::dataset::TokenDataset;
use crate::model::Gpt;

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
    let mut spheres = Spheres::for_evaluation(model, threads, per_sphere * threads, seq_len);
    let bytes_per_token = data.bytes as f64 / data.tokens.len().max(1) as f64;
    Ok(evaluate(
        &mut spheres,
        model,
        data,
        &windows,
        seq_len,
        bytes_per_token,
        0,
        0,
    ))
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
    let mut inputs = Vec::with_capacity(windows.len() * seq_len);
    let mut targets = Vec::with_capacity(windows.len() * seq_len);
    for &w in windows {
        inputs.extend_from_slice(&val.tokens[w..w + seq_len]);
        targets.extend_from_slice(&val.tokens[w + 1..w + seq_len + 1]);
    }
    let (loss_sum, counts): (f64, ClassCounts) =
        spheres.evaluate(model, &inputs, &targets, windows.len(), seq_len);
    let loss = (loss_sum / (windows.len() * seq_len) as f64) as f32;
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
    }
}
