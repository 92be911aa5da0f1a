//! How well a model predicts the middle of a line given the prefix only, a
//! PSM prompt and an SPM prompt: bits per byte of up to 300 holes (a random
//! point of a line to its end) drawn from a C file. The table in
//! docs/infill.md.
//!
//! `cargo run --release -p cllm-train --example fim_probe -- MODEL.cllm FILE.c`

use cllm_core::rng::Rng;
use cllm_core::{Gpt, Logits, Workspace};
use cllm_data::fim::infill_prompt;
use cllm_data::tokenizer::Tokenizer;
use std::path::Path;

/// Negative log-likelihood (nats) of `target` after `ctx`.
fn nll(model: &Gpt, ws: &mut Workspace, ctx: &[u32], target: &[u32]) -> f64 {
    let mut seq = ctx.to_vec();
    seq.extend_from_slice(target);
    let v = model.config.vocab_size;
    let logits = model.forward(ws, Logits(&seq[..seq.len() - 1]));
    let mut total = 0.0;
    for (i, &t) in target.iter().enumerate() {
        let row = &logits[(ctx.len() - 1 + i) * v..(ctx.len() + i) * v];
        let max = row.iter().copied().fold(f32::MIN, f32::max);
        let z: f64 = row.iter().map(|&x| f64::from(x - max).exp()).sum();
        total -= f64::from(row[t as usize] - max) - z.ln();
    }
    total
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_path, data_path] = &args[..] else {
        return Err("usage: fim_probe MODEL.cllm FILE.c".into());
    };
    let ck = cllm_train::checkpoint::load(Path::new(model_path)).map_err(|e| e.to_string())?;
    let tok = Tokenizer::from_json(&ck.tokenizer_json).map_err(|e| e.to_string())?;
    let context = cllm_train::checkpoint::trained_context(&ck);
    let model = Gpt::from_params(ck.model, ck.params)
        .and_then(|m| m.with_context(context))
        .map_err(|e| e.to_string())?;
    let f = tok
        .fim_tokens()
        .ok_or("the model's tokenizer has no FIM tokens")?;
    let text = std::fs::read_to_string(data_path).map_err(|e| format!("{data_path}: {e}"))?;
    let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i).collect();
    if ends.len() < 300 {
        return Err(format!("{data_path}: fewer than 300 lines"));
    }
    let mut rng = Rng::new(7);
    let mut ws = Workspace::new(&model.config, 1, model.config.n_ctx);
    let (mut psm_nll, mut spm_nll, mut prefix_nll) = (0.0, 0.0, 0.0);
    let (mut tokens, mut bytes) = (0, 0);
    for _ in 0..300 {
        let line = 100 + rng.below((ends.len() - 200) as u64) as usize;
        let (start, end) = (ends[line - 1] + 1, ends[line]);
        if end - start < 8 {
            continue;
        }
        let cut = start + 2 + rng.below((end - start - 4) as u64) as usize;
        let from = (cut.saturating_sub(400)..cut).find(|&i| text.is_char_boundary(i));
        let to = ((end + 200).min(text.len())..=text.len()).find(|&i| text.is_char_boundary(i));
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        if !text.is_char_boundary(cut) {
            continue;
        }
        let (prefix, middle, suffix) = (&text[from..cut], &text[cut..end], &text[end..to]);
        let mid = tok.encode(middle);
        let p = infill_prompt(&tok, f, &[], prefix, suffix, 96);
        if p.ids.len() + mid.len() + 1 > model.config.n_ctx {
            continue;
        }
        // infill_prompt is SPM; the same pieces in PSM order.
        let mut psm = vec![f.prefix];
        psm.extend(&p.prefix_ids);
        psm.push(f.suffix);
        psm.extend(&p.suffix_ids);
        psm.push(f.middle);
        psm_nll += nll(&model, &mut ws, &psm, &mid);
        spm_nll += nll(&model, &mut ws, &p.ids, &mid);
        prefix_nll += nll(&model, &mut ws, &p.prefix_ids, &mid);
        tokens += mid.len();
        bytes += middle.len();
    }
    let bits = bytes as f64 * std::f64::consts::LN_2;
    println!(
        "{tokens} middle tokens, bits per byte: prefix only {:.3}, PSM {:.3}, SPM {:.3}",
        prefix_nll / bits,
        psm_nll / bits,
        spm_nll / bits
    );
    Ok(())
}
