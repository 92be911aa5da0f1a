//! Evaluation with the memory: the per-position losses are the model's
//! (checked against its full logits), the plain figures are unchanged, the
//! memory lowers the loss on repeated text, fitting works from a model, and
//! `cllm eval` reports both numbers.

use cllm_core::{Gpt, Logits, ModelConfig, Workspace};
use cllm_data::dataset::TokenDataset;
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::Memory;
use cllm_train::TrainConfig;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use cllm_train::evaluate::{
    EvalWindows, evaluate, evaluate_model, evaluate_model_with_memory, evaluate_with_memory,
    fit_memory,
};
use cllm_train::spheres::Spheres;
use std::process::Command;

fn model() -> Gpt {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 32;
    Gpt::new(cfg, 5).unwrap()
}

/// Text whose second half repeats "functions" of the first.
fn text() -> String {
    let mut s = String::new();
    for i in 0..40 {
        s.push_str(&format!(
            "static int helper_{i}(sqlite3 *db, int n) {{ return db->aLimit[n] + {i}; }}\n"
        ));
    }
    s
}

fn dataset(text: &str) -> TokenDataset {
    TokenDataset::from_texts(
        &Tokenizer::bytes(),
        &[("a.c".to_string(), text.to_string())],
    )
}

/// `-ln p(target)` from one row of logits, in f64: the brute-force
/// reference for the evaluation's per-position losses.
fn nll(row: &[f32], target: u32) -> f64 {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    lse - row[target as usize] as f64
}

#[test]
fn per_position_losses_are_the_models_log_probabilities() {
    let model = model();
    let val = dataset(&text()[..2000]);
    let seq_len = 16;
    let windows = EvalWindows::new(&val, seq_len, seq_len, 0);
    let windows = windows.starts();
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for &w in windows {
        inputs.extend_from_slice(&val.tokens[w..w + seq_len]);
        targets.extend_from_slice(&val.tokens[w + 1..w + seq_len + 1]);
    }
    for threads in [1, 3] {
        let mut spheres = Spheres::for_evaluation(&model, threads, 8 * threads, seq_len);
        let (sum, _, losses) = spheres.evaluate_with_losses(
            &model,
            &inputs,
            &targets,
            &vec![0; windows.len()],
            seq_len,
        );
        assert_eq!(losses.len(), windows.len() * seq_len);
        let total: f64 = losses.iter().map(|&l| l as f64).sum();
        assert!(
            (total - sum).abs() < 1e-3 * sum.abs().max(1.0),
            "{total} vs {sum}"
        );
        // Brute force: log-softmax of the full logits at each target.
        let mut ws = Workspace::new(&model.config, 1, seq_len);
        for (k, &w) in windows.iter().enumerate() {
            let logits = model.forward(&mut ws, Logits(&val.tokens[w..w + seq_len]));
            for t in 0..seq_len {
                let want = nll(&logits[t * 256..(t + 1) * 256], val.tokens[w + t + 1]);
                let got = losses[k * seq_len + t] as f64;
                assert!(
                    (got - want).abs() < 1e-4,
                    "window {k} position {t}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn the_memory_lowers_the_loss_on_text_it_has_seen_and_leaves_the_plain_figures_alone() {
    let model = model();
    let text = text();
    let train = dataset(&text);
    let val = dataset(&text[text.len() / 2..]);
    let memory = Memory::build(train.tokens.clone(), 256);
    let seq_len = 16;
    let all = EvalWindows::overlapping(&val, seq_len, 0);
    let plain = evaluate_model(&model, &val, &all, 2).unwrap();
    let (stats, with) =
        evaluate_model_with_memory(&model, &val, &all, 2, Some(&memory), None).unwrap();
    assert_eq!(stats, plain);
    let with = with.unwrap();
    // Every token after the first is scored once.
    assert_eq!(with.positions, val.tokens.len() - 1);
    // An untrained model is near uniform; the memory has seen every byte.
    assert!(
        with.bits_per_byte < 0.25 * plain.bits_per_byte,
        "{with:?} vs {plain:?}"
    );
    // The trainer's form gives the same numbers.
    let windows = EvalWindows::overlapping(&val, seq_len, 5);
    let bpt = val.bytes as f64 / val.tokens.len() as f64;
    let mut spheres = Spheres::for_evaluation(&model, 2, 4, seq_len);
    let a = evaluate(&mut spheres, &model, &val, &windows, bpt, 1, 7);
    let (b, m) =
        evaluate_with_memory(&mut spheres, &model, &val, &windows, bpt, 1, 7, &memory).unwrap();
    assert_eq!(a, b);
    assert_eq!(m.positions, 5 * seq_len);
    // A memory of another vocabulary is refused.
    let other = Memory::build(vec![1, 2, 3], 300);
    assert!(evaluate_model_with_memory(&model, &val, &all, 1, Some(&other), None).is_err());
}

#[test]
fn fitting_from_the_model_never_worsens_the_fitted_stream() {
    let model = model();
    let text = text();
    let mut memory = Memory::build(dataset(&text[..text.len() / 2]).tokens, 256);
    let val = dataset(&text[text.len() / 2..]);
    let windows = EvalWindows::overlapping(&val, 16, 0);
    let before = evaluate_model_with_memory(&model, &val, &windows, 2, Some(&memory), None)
        .unwrap()
        .1
        .unwrap();
    let stats = fit_memory(&model, &mut memory, &val, &windows, 2).unwrap();
    let after = evaluate_model_with_memory(&model, &val, &windows, 2, Some(&memory), None)
        .unwrap()
        .1
        .unwrap();
    assert!(stats.bits_fitted <= stats.bits_default, "{stats:?}");
    assert!(after.loss <= before.loss + 1e-6, "{before:?} -> {after:?}");
    assert_eq!(stats.positions, windows.scored());
}

#[test]
fn cllm_eval_reports_bits_per_byte_with_and_without_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    let model = model();
    let text = text();
    let data = dir.path().join("val.c");
    std::fs::write(&data, &text[text.len() / 2..]).unwrap();
    let memory = Memory::build(dataset(&text).tokens, 256).to_bytes();
    let tokenizer_json = Tokenizer::bytes().to_json();
    let train_config = TrainConfig::default();
    let state = TrainingState::start();
    let path = dir.path().join("m.cllm");
    let save_with = |memory: Option<&[u8]>| {
        save(
            &path,
            &CheckpointRef {
                model: &model.config,
                params: &model.params,
                optimizer: None,
                tokenizer_json: &tokenizer_json,
                train_config: &train_config,
                state: &state,
                memory,
            },
        )
        .unwrap();
    };
    let eval = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cllm"))
            .args(["eval", "--model", path.to_str().unwrap(), "--data"])
            .arg(&data)
            .args(["--seq-len", "16", "--threads", "1"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    save_with(Some(&memory));
    let json: serde_json::Value = serde_json::from_str(eval(&["--json"]).trim()).unwrap();
    let plain = json["bits_per_byte"].as_f64().unwrap();
    let with = json["bits_per_byte_with_memory"].as_f64().unwrap();
    assert!(with < 0.25 * plain, "{json}");
    let text_out = eval(&[]);
    assert!(
        text_out.contains("bits/byte") && text_out.contains("with its memory"),
        "{text_out}"
    );
    let off: serde_json::Value =
        serde_json::from_str(eval(&["--json", "--memory", "off"]).trim()).unwrap();
    assert!(off.get("bits_per_byte_with_memory").is_none(), "{off}");
    assert_eq!(off["bits_per_byte"], json["bits_per_byte"]);
    // Without a memory in the file: the plain report only.
    save_with(None);
    let none: serde_json::Value = serde_json::from_str(eval(&["--json"]).trim()).unwrap();
    assert!(none.get("bits_per_byte_with_memory").is_none(), "{none}");
    assert!(!eval(&[]).contains("with its memory"));
}

#[test]
fn windows_with_gaps_are_read_as_separate_documents() {
    let model = model();
    let text = text();
    let val = dataset(&text[text.len() / 2..]);
    let mut memory = Memory::build(dataset(&text[..text.len() / 2]).tokens, 256);
    let seq_len = 16;
    let starts = [0, 16, 64, 80, 96, 160];
    let windows = EvalWindows::from_starts(seq_len, starts.to_vec()).unwrap();
    let bpt = val.bytes as f64 / val.tokens.len() as f64;
    let mut spheres = Spheres::for_evaluation(&model, 2, 4, seq_len);
    let (_, with) =
        evaluate_with_memory(&mut spheres, &model, &val, &windows, bpt, 0, 0, &memory).unwrap();
    assert_eq!(with.positions, windows.len() * seq_len);
    // By hand: the model's losses per window, the memory over each run.
    let mut ws = Workspace::new(&model.config, 1, seq_len);
    let mut model_prob = |w: usize, t: usize| {
        let logits = model.forward(&mut ws, Logits(&val.tokens[w..w + seq_len]));
        (-nll(&logits[t * 256..(t + 1) * 256], val.tokens[w + t + 1])).exp() as f32
    };
    let mut total = 0.0f64;
    for run in [&starts[0..2], &starts[2..5], &starts[5..6]] {
        let probs: Vec<f32> = run
            .iter()
            .flat_map(|&w| (0..seq_len).map(move |t| (w, t)))
            .map(|(w, t)| model_prob(w, t))
            .collect();
        let tokens = &val.tokens[run[0]..=run[run.len() - 1] + seq_len];
        total += memory
            .score(tokens, &probs)
            .iter()
            .map(|&p| -(p as f64).ln())
            .sum::<f64>();
    }
    let want = total / with.positions as f64;
    assert!(
        (with.loss as f64 - want).abs() < 1e-4,
        "{} vs {want}",
        with.loss
    );
    // Fitting on the same windows sees as many positions.
    let stats =
        cllm_train::evaluate::fit_memory_on(&mut spheres, &model, &mut memory, &val, &windows)
            .unwrap();
    assert_eq!(stats.positions, windows.len() * seq_len);
    assert!(stats.bits_fitted <= stats.bits_default);
}

#[test]
fn overlapping_windows_score_each_token_from_its_own_window() {
    let model = model();
    let val = dataset(&text()[..700]);
    let seq_len = 16;
    let windows = EvalWindows::new(&val, seq_len, 5, 0);
    let starts = windows.starts();
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    for &w in starts {
        inputs.extend_from_slice(&val.tokens[w..w + seq_len]);
        targets.extend_from_slice(&val.tokens[w + 1..w + seq_len + 1]);
    }
    let mut spheres = Spheres::for_evaluation(&model, 2, 8, seq_len);
    let (sum, _, losses) =
        spheres.evaluate_with_losses(&model, &inputs, &targets, &windows.skips(), seq_len);
    assert_eq!(losses.len(), val.tokens.len() - 1);
    assert_eq!(windows.scored(), val.tokens.len() - 1);
    let total: f64 = losses.iter().map(|&l| l as f64).sum();
    assert!((total - sum).abs() < 1e-6 * sum.abs(), "{total} vs {sum}");
    // Brute force: position p of the stream is scored by the first window
    // that reaches it, at the place it has in that window.
    let mut ws = Workspace::new(&model.config, 1, seq_len);
    let mut at = 0;
    for (k, &w) in starts.iter().enumerate() {
        let logits = model.forward(&mut ws, Logits(&val.tokens[w..w + seq_len]));
        for t in windows.skip(k)..seq_len {
            let want = nll(&logits[t * 256..(t + 1) * 256], val.tokens[w + t + 1]);
            assert_eq!(at, w + t, "scored in stream order");
            assert!(
                (losses[at] as f64 - want).abs() < 1e-4,
                "window {k} position {t}"
            );
            at += 1;
        }
    }
    // Context helps a trained model; here the check is only that the
    // figure is the mean of exactly these losses.
    let bpt = val.bytes as f64 / val.tokens.len() as f64;
    let stats = evaluate(&mut spheres, &model, &val, &windows, bpt, 0, 0);
    assert!((stats.loss as f64 - total / losses.len() as f64).abs() < 1e-5);
}
