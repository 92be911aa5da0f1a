//! Adapting while reading: the adapted scoring is "score segment k with
//! W_k, then W_{k+1} = step(W_k, segment k)" run by hand on the model's own
//! forward and backward; nothing is scored after it was learned; each
//! document starts from the trained weights; a repeated document scores
//! better the second time; bad settings are refused; configs written before
//! the setting existed still read.

use cllm_core::{Backward, Batch, Gpt, Loss, ModelConfig, Workspace};
use cllm_data::dataset::TokenDataset;
use cllm_data::tokenizer::Tokenizer;
use cllm_train::TrainConfig;
use cllm_train::adapt::{AdaptSettings, Adapter, score_adapting};
use cllm_train::evaluate::{EvalWindows, evaluate_model, evaluate_model_with_memory};
use cllm_train::spheres::Spheres;

fn model() -> Gpt {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 32;
    Gpt::new(cfg, 9).unwrap()
}

fn text(n: usize) -> String {
    (0..n)
        .map(|i| format!("int f_{i}(int x) {{ return x * {i} + y_{}; }}\n", i % 7))
        .collect()
}

fn dataset(files: &[&str]) -> TokenDataset {
    let files: Vec<(String, String)> = files
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("f{i}.c"), t.to_string()))
        .collect();
    TokenDataset::from_texts(&Tokenizer::bytes(), &files)
}

const SETTINGS: AdaptSettings = AdaptSettings {
    enabled: true,
    lr: 0.5,
    decay: 0.1,
};

/// Every position's loss of one sequence under `model`.
fn losses_of(model: &Gpt, ws: &mut Workspace, inputs: &[u32], targets: &[u32]) -> Vec<f32> {
    let mut losses = vec![0.0; inputs.len()];
    let batch = Batch {
        inputs,
        targets,
        batch: 1,
        seq: inputs.len(),
    };
    model.forward(
        ws,
        Loss {
            batch,
            predictions: None,
            losses: Some(&mut losses),
        },
    );
    losses
}

#[test]
fn adapted_scoring_is_score_then_step_by_hand() {
    let trained = model();
    let data = dataset(&[&text(8)]);
    let seq = 16;
    let windows = EvalWindows::new(&data, seq, 8, 0);
    let (sum, _, got) = score_adapting(
        &trained,
        &data,
        windows.starts(),
        &windows.skips(),
        seq,
        SETTINGS,
    )
    .unwrap();
    assert_eq!(got.len(), windows.scored());
    let total: f64 = got.iter().map(|&l| l as f64).sum();
    assert!((total - sum).abs() < 1e-6 * sum.abs());

    // By hand: score window k's new positions with W_k, then one SGD step
    // on them, pulled toward the trained weights.
    let mut w = trained.clone();
    let mut ws = Workspace::new(&w.config, 1, seq);
    let mut want = Vec::new();
    for (&start, &skip) in windows.starts().iter().zip(&windows.skips()) {
        let all = losses_of(
            &w,
            &mut ws,
            &data.tokens[start..start + seq],
            &data.tokens[start + 1..start + seq + 1],
        );
        want.extend_from_slice(&all[skip..]);
        let (from, to) = (start + skip, start + seq);
        let mut grads = vec![0.0; w.params.len()];
        let batch = Batch {
            inputs: &data.tokens[from..to],
            targets: &data.tokens[from + 1..to + 1],
            batch: 1,
            seq: to - from,
        };
        w.forward_backward(
            &mut ws,
            &batch,
            &mut grads,
            Backward::scaled(1.0 / (to - from) as f32),
        );
        for ((p, &g), &p0) in w.params.iter_mut().zip(&grads).zip(&trained.params) {
            let stepped = *p - SETTINGS.lr * g;
            *p = (1.0 - SETTINGS.decay) * stepped + SETTINGS.decay * p0;
        }
    }
    assert_eq!(got, want);
    // The steps moved the weights: later segments were scored differently.
    let plain = score_adapting(
        &trained,
        &data,
        windows.starts(),
        &windows.skips(),
        seq,
        AdaptSettings {
            lr: 0.0,
            ..SETTINGS
        },
    )
    .unwrap()
    .2;
    assert_ne!(plain[seq..], got[seq..]);
}

#[test]
fn the_first_segment_is_scored_by_the_trained_weights_and_nothing_after_it_was_learned() {
    let trained = model();
    let text = text(8);
    let data = dataset(&[&text]);
    let seq = 16;
    let windows = EvalWindows::new(&data, seq, 8, 0);
    let adapted = score_adapting(
        &trained,
        &data,
        windows.starts(),
        &windows.skips(),
        seq,
        SETTINGS,
    )
    .unwrap()
    .2;
    let (inputs, targets): (Vec<u32>, Vec<u32>) = windows
        .starts()
        .iter()
        .flat_map(|&s| (s..s + seq).map(|i| (data.tokens[i], data.tokens[i + 1])))
        .unzip();
    let mut spheres = Spheres::for_evaluation(&trained, 1, 4, seq);
    let plain = spheres
        .evaluate_with_losses(&trained, &inputs, &targets, &windows.skips(), seq)
        .2;
    assert_eq!(plain.len(), adapted.len());
    for t in 0..seq {
        assert!(
            (plain[t] - adapted[t]).abs() < 1e-5,
            "position {t}: {} vs {}",
            plain[t],
            adapted[t]
        );
    }
    // Honesty: changing the text after window k leaves every score up to
    // window k's end as it was (no position is scored by weights that have
    // learned it or anything after it).
    let mut changed = data.clone();
    let cut = windows.starts()[5] + seq + 1;
    for t in &mut changed.tokens[cut..] {
        *t = (*t + 1) % 256;
    }
    let again = score_adapting(
        &trained,
        &changed,
        windows.starts(),
        &windows.skips(),
        seq,
        SETTINGS,
    )
    .unwrap()
    .2;
    let upto: usize = (0..=5).map(|i| seq - windows.skip(i)).sum();
    assert_eq!(again[..upto], adapted[..upto]);
    assert_ne!(again[upto..], adapted[upto..]);
}

#[test]
fn each_document_starts_from_the_trained_weights() {
    let trained = model();
    let a = text(3);
    let data = dataset(&[&a, &a]);
    let seq = 16;
    let len = data.docs[0].len();
    assert_eq!(data.docs[1].start, len, "bytes: no separator");
    // Windows laid end to end; the one at `len` starts the second file.
    let second = len - len % seq;
    let mut starts: Vec<usize> = (0..second).step_by(seq).collect();
    starts.push(len);
    starts.push(len + seq);
    let windows = EvalWindows::from_starts(seq, starts).unwrap();
    let adapted = score_adapting(
        &trained,
        &data,
        windows.starts(),
        &windows.skips(),
        seq,
        SETTINGS,
    )
    .unwrap()
    .2;
    let mut fresh = Adapter::new(&trained, SETTINGS, seq).unwrap();
    let first_of_second = fresh
        .score(
            &data.tokens[len..len + seq],
            &data.tokens[len + 1..len + seq + 1],
        )
        .0;
    let at = windows.len() - 2;
    assert_eq!(adapted[at * seq..(at + 1) * seq], first_of_second[..]);
}

#[test]
fn a_document_read_twice_scores_better_the_second_time() {
    let trained = model();
    let once = text(6);
    let data = dataset(&[&format!("{once}{once}")]);
    let seq = 32;
    let windows = EvalWindows::new(&data, seq, 16, 0);
    let half = once.len();
    let settings = AdaptSettings {
        enabled: true,
        lr: 0.3,
        decay: 0.0,
    };
    let (stats_plain, _) =
        evaluate_model_with_memory(&trained, &data, &windows, 1, None, None).unwrap();
    assert_eq!(
        stats_plain,
        evaluate_model(&trained, &data, &windows, 1).unwrap()
    );
    let (stats, _) =
        evaluate_model_with_memory(&trained, &data, &windows, 1, None, Some(settings)).unwrap();
    assert!(
        stats.loss < stats_plain.loss,
        "{} vs {}",
        stats.loss,
        stats_plain.loss
    );
    let losses = score_adapting(
        &trained,
        &data,
        windows.starts(),
        &windows.skips(),
        seq,
        settings,
    )
    .unwrap()
    .2;
    // losses[i] scores token i + 1.
    let mean = |r: std::ops::Range<usize>| losses[r.clone()].iter().sum::<f32>() / r.len() as f32;
    let (first, second) = (mean(0..half - 1), mean(half - 1..losses.len()));
    assert!(second < first - 0.5, "first {first}, second {second}");
}

#[test]
fn bad_settings_are_refused_with_the_flag_named() {
    for (lr, decay, flag) in [
        (-0.1, 0.0, "--adapt-lr"),
        (f32::NAN, 0.0, "--adapt-lr"),
        (0.1, -0.5, "--adapt-decay"),
        (0.1, 1.5, "--adapt-decay"),
    ] {
        let settings = AdaptSettings {
            enabled: true,
            lr,
            decay,
        };
        let err = settings.check().unwrap_err();
        assert!(err.contains(flag), "{err}");
        assert!(Adapter::new(&model(), settings, 16).is_err());
    }
    for decay in [0.0, 1.0] {
        let ok = AdaptSettings {
            enabled: true,
            lr: 0.0,
            decay,
        };
        assert!(ok.check().is_ok());
    }
    let long = Adapter::new(&model(), SETTINGS, 33);
    assert!(long.is_err(), "a segment longer than the context");
}

#[test]
fn a_config_written_before_adaptation_reads_with_the_default() {
    let mut saved = serde_json::to_value(TrainConfig::default()).unwrap();
    // Flat keys: the setting is `"adapt": {"enabled", "lr", "decay"}`.
    let keys = saved.as_object_mut().unwrap();
    assert!(keys.remove("adapt").is_some());
    let read: TrainConfig = serde_json::from_value(saved).unwrap();
    assert_eq!(read.evaluation.adapt, AdaptSettings::default());
    assert_eq!(read, TrainConfig::default());
    // And a stored setting reads back.
    let mut with = TrainConfig::default();
    with.evaluation.adapt = SETTINGS;
    let json = serde_json::to_string(&with).unwrap();
    let back: TrainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.evaluation.adapt, SETTINGS);
}

#[test]
fn reading_a_prompt_learns_it() {
    let trained = model();
    let data = dataset(&[&text(4)]);
    let tokens = &data.tokens;
    let mut adapter = Adapter::new(&trained, SETTINGS, 16).unwrap();
    let before = adapter.score(&tokens[..16], &tokens[1..17]).0;
    let first_pass = adapter.read(tokens, 16);
    let second_pass = adapter.read(tokens, 16);
    assert!(second_pass < first_pass, "{first_pass} -> {second_pass}");
    let after = adapter.score(&tokens[..16], &tokens[1..17]).0;
    assert!(after.iter().sum::<f32>() < before.iter().sum::<f32>());
    adapter.reset();
    assert_eq!(adapter.model().params, trained.params);
}
