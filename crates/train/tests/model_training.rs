//! Training behaviour of the model with AdamW: the tiny model memorises one
//! fixed batch, and gradient accumulation over micro-batches reproduces the
//! large-batch gradient and update.

use cllm_core::rng::Rng;
use cllm_core::{Backward, Batch, DropoutRng, Gpt, Loss, ModelConfig, Workspace};
use cllm_train::optimizer::{AdamW, AdamWConfig};

fn random_tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

#[test]
fn tiny_model_overfits_one_batch() {
    let cfg = ModelConfig::preset("tiny").unwrap();
    let mut model = Gpt::new(cfg.clone(), 3).unwrap();
    let (b, t) = (4, 16);
    let inputs = random_tokens(b * t, cfg.vocab_size, 10);
    let targets = random_tokens(b * t, cfg.vocab_size, 11);
    let batch = Batch {
        inputs: &inputs,
        targets: &targets,
        batch: b,
        seq: t,
    };
    let mut ws = Workspace::new(&cfg, b, t);
    let mut opt = AdamW::new(
        AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        },
        model.params.len(),
        model.layout.decay_ranges(),
    );
    let mut grads = vec![0.0f32; model.params.len()];
    let first = model.forward(&mut ws, Loss::of(&batch));
    // Uniform guessing over 37 tokens costs ln 37 = 3.61 nats.
    assert!(
        (first - (cfg.vocab_size as f32).ln()).abs() < 0.2,
        "initial loss {first}"
    );
    let mut steps = 0;
    let mut loss = first;
    while loss >= 0.1 && steps < 400 {
        grads.fill(0.0);
        loss = model.forward_backward(
            &mut ws,
            &batch,
            &mut grads,
            Backward::scaled(1.0 / (b * t) as f32),
        );
        opt.update(&mut model.params, &grads, 1e-2);
        steps += 1;
    }
    let mut predictions = vec![0u32; b * t];
    let final_loss = model.forward(
        &mut ws,
        Loss {
            predictions: Some(&mut predictions),
            ..Loss::of(&batch)
        },
    );
    assert!(
        final_loss < 0.1,
        "loss {final_loss} after {steps} steps (started at {first})"
    );
    let right = predictions
        .iter()
        .zip(&targets)
        .filter(|(p, t)| p == t)
        .count();
    assert!(
        right >= b * t - 1,
        "only {right} of {} targets predicted",
        b * t
    );
}

#[test]
fn four_micro_batches_equal_one_batch_of_four_times_the_rows() {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.dropout = 0.0;
    let model = Gpt::new(cfg.clone(), 8).unwrap();
    let (micro, t) = (2, 12);
    let rows = 4 * micro;
    let inputs = random_tokens(rows * t, cfg.vocab_size, 20);
    let targets = random_tokens(rows * t, cfg.vocab_size, 21);
    let scale = 1.0 / (rows * t) as f32;

    let mut big_ws = Workspace::new(&cfg, rows, t);
    let mut big = vec![0.0f32; model.params.len()];
    let big_loss = model.forward_backward(
        &mut big_ws,
        &Batch {
            inputs: &inputs,
            targets: &targets,
            batch: rows,
            seq: t,
        },
        &mut big,
        Backward::scaled(scale),
    );

    let mut small_ws = Workspace::new(&cfg, micro, t);
    let mut accumulated = vec![0.0f32; model.params.len()];
    let mut loss_sum = 0.0;
    for m in 0..4 {
        let span = m * micro * t..(m + 1) * micro * t;
        loss_sum += model.forward_backward(
            &mut small_ws,
            &Batch {
                inputs: &inputs[span.clone()],
                targets: &targets[span],
                batch: micro,
                seq: t,
            },
            &mut accumulated,
            Backward::scaled(scale),
        );
    }
    assert!(
        (loss_sum / 4.0 - big_loss).abs() < 1e-5,
        "{} vs {big_loss}",
        loss_sum / 4.0
    );
    let norm = big.iter().map(|g| g * g).sum::<f32>().sqrt();
    for (a, b) in accumulated.iter().zip(&big) {
        // Only summation order differs.
        assert!((a - b).abs() <= 1e-5 * norm + 1e-6 * b.abs(), "{a} vs {b}");
    }

    // And the AdamW updates from the two agree.
    let mut p_big = model.params.clone();
    let mut p_acc = model.params.clone();
    let mut o_big = AdamW::new(
        AdamWConfig::default(),
        p_big.len(),
        model.layout.decay_ranges(),
    );
    let mut o_acc = o_big.clone();
    o_big.update(&mut p_big, &big, 1e-3);
    o_acc.update(&mut p_acc, &accumulated, 1e-3);
    // Adam's first step is ~lr * sign(g), so compare whole update vectors:
    // an element whose gradient is at rounding level may legitimately flip.
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let rel = dist(&p_big, &p_acc) / dist(&p_big, &model.params);
    assert!(rel < 1e-2, "updates differ by {rel:.2e} of their size");
}

/// Per-sequence dropout streams make a batch's gradient independent of how
/// its sequences are grouped: one call over 3 sequences equals three calls
/// over one sequence each, with the same stream per sequence.
#[test]
fn per_sequence_dropout_does_not_depend_on_grouping() {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.dropout = 0.2;
    let model = Gpt::new(cfg.clone(), 5).unwrap();
    let (b, t) = (3, 8);
    let inputs = random_tokens(b * t, cfg.vocab_size, 1);
    let targets = random_tokens(b * t, cfg.vocab_size, 2);
    let streams = || {
        (0..b)
            .map(|s| Rng::derive(9, &[4, s as u64]))
            .collect::<Vec<_>>()
    };
    let scale = 1.0 / (b * t) as f32;

    let mut ws = Workspace::new(&cfg, b, t);
    let mut together = vec![0.0f32; model.params.len()];
    let batch = Batch {
        inputs: &inputs,
        targets: &targets,
        batch: b,
        seq: t,
    };
    let mut rngs = streams();
    let together_options = Backward {
        dropout: Some(DropoutRng::PerSequence(&mut rngs)),
        ..Backward::scaled(scale)
    };
    let loss_together = model.forward_backward(&mut ws, &batch, &mut together, together_options);

    let mut apart = vec![0.0f32; model.params.len()];
    let mut loss_apart = 0.0;
    for (s, rng) in streams().iter_mut().enumerate() {
        let one = Batch {
            inputs: &inputs[s * t..(s + 1) * t],
            targets: &targets[s * t..(s + 1) * t],
            batch: 1,
            seq: t,
        };
        loss_apart += model.forward_backward(
            &mut ws,
            &one,
            &mut apart,
            Backward {
                dropout: Some(DropoutRng::Shared(rng)),
                ..Backward::scaled(scale)
            },
        ) / b as f32;
    }
    assert!(
        (loss_together - loss_apart).abs() < 1e-5,
        "{loss_together} vs {loss_apart}"
    );
    let max_g = together.iter().fold(0.0f32, |m, g| m.max(g.abs()));
    for (x, y) in together.iter().zip(&apart) {
        assert!((x - y).abs() <= 1e-5 * max_g.max(1.0), "{x} vs {y}");
    }
    // And dropout really acted: without it the gradient differs.
    let mut plain = vec![0.0f32; model.params.len()];
    model.forward_backward(&mut ws, &batch, &mut plain, Backward::scaled(scale));
    assert!(
        plain
            .iter()
            .zip(&together)
            .any(|(x, y)| (x - y).abs() > 1e-4 * max_g)
    );
}
