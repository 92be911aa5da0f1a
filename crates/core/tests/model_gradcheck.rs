//! Finite-difference check of the whole tiny model: every element of every
//! parameter tensor, with and without dropout.
//!
//! Method: central differences of the summed loss, extrapolated
//! (Richardson) to cancel the O(h²) truncation term:
//!   D(h) = (L(θ + h e_k) - L(θ - h e_k)) / 2h,  fd = (4 D(h/2) - D(h)) / 3,
//! h = 1e-2, against the analytic gradient from `forward_backward`
//! (grad_scale 1, so it is the gradient of the sum over the 16 tokens).
//! The loss comes back as an f32 mean, so fd carries ~5e-4 of rounding
//! noise; weights are drawn with std 0.3 rather than GPT-2's 0.02 so every
//! path carries a gradient well above that.
//! Tolerances: each element |fd - g| <= 2e-3 + 2e-2 |g|, and per tensor
//! ||fd - g|| <= 1e-2 ||g||. A wrong gradient in any op is off by O(|g|).

use cllm_core::rng::Rng;
use cllm_core::{Backward, Batch, DropoutRng, Gpt, Loss, ModelConfig, Workspace};

const H: f32 = 1e-2;

fn tiny_model(dropout: f32) -> Gpt {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.dropout = dropout;
    let mut model = Gpt::new(cfg, 5).unwrap();
    let mut rng = Rng::new(99);
    // Random everything, LayerNorm gains around 1, so no gradient is
    // trivially zero and biases matter.
    for spec in model.layout.specs.clone() {
        let gain = spec.name.ends_with("ln_1.weight")
            || spec.name.ends_with("ln_2.weight")
            || spec.name == "ln_f.weight";
        for x in &mut model.params[spec.range()] {
            *x = if gain {
                1.0 + 0.2 * rng.normal()
            } else {
                0.3 * rng.normal()
            };
        }
    }
    model
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

fn check_every_parameter(dropout: f32) {
    let model = tiny_model(dropout);
    let (b, t) = (2, 8);
    let vocab = model.config.vocab_size;
    let inputs = tokens(b * t, vocab, 1);
    let targets = tokens(b * t, vocab, 2);
    let batch = Batch {
        inputs: &inputs,
        targets: &targets,
        batch: b,
        seq: t,
    };
    let mut ws = Workspace::new(&model.config, b, t);
    let mask_rng = Rng::new(1234);
    let mut grads = vec![0.0f32; model.params.len()];
    let mut scratch_grads = vec![0.0f32; model.params.len()];
    model.forward_backward(
        &mut ws,
        &batch,
        &mut grads,
        Backward {
            dropout: Some(DropoutRng::Shared(&mut mask_rng.clone())),
            ..Backward::scaled(1.0)
        },
    );

    // The summed loss at a parameter vector, with the same dropout masks.
    let mut probe = model.clone();
    let mut sum_loss = |probe: &Gpt, ws: &mut Workspace| -> f64 {
        let mean = probe.forward_backward(
            ws,
            &batch,
            &mut scratch_grads,
            Backward {
                dropout: Some(DropoutRng::Shared(&mut mask_rng.clone())),
                ..Backward::scaled(0.0)
            },
        );
        mean as f64 * (b * t) as f64
    };
    let mut checked = 0;
    for spec in model.layout.specs.clone() {
        let mut err_sq = 0.0f64;
        let mut norm_sq = 0.0f64;
        for k in spec.range() {
            let x = model.params[k];
            let mut central = |h: f32| {
                probe.params[k] = x + h;
                let plus = sum_loss(&probe, &mut ws);
                probe.params[k] = x - h;
                let minus = sum_loss(&probe, &mut ws);
                probe.params[k] = x;
                (plus - minus) / (2.0 * h as f64)
            };
            let fd = (4.0 * central(H / 2.0) - central(H)) / 3.0;
            let g = grads[k] as f64;
            assert!(
                (fd - g).abs() <= 2e-3 + 2e-2 * g.abs(),
                "{} element {}: analytic {g:.6} vs finite difference {fd:.6}",
                spec.name,
                k - spec.offset
            );
            err_sq += (fd - g).powi(2);
            norm_sq += g * g;
            checked += 1;
        }
        assert!(norm_sq > 0.0, "{}: gradient is all zero", spec.name);
        let rel = (err_sq / norm_sq).sqrt();
        assert!(
            rel < 1e-2,
            "{}: relative error {rel:.2e} over the tensor",
            spec.name
        );
    }
    assert_eq!(checked, model.params.len());
}

#[test]
fn every_parameter_matches_finite_differences() {
    check_every_parameter(0.0);
}

#[test]
fn every_parameter_matches_finite_differences_with_dropout() {
    check_every_parameter(0.2);
}

#[test]
fn gradients_add_and_scale() {
    let model = tiny_model(0.0);
    let (b, t) = (3, 5);
    let inputs = tokens(b * t, model.config.vocab_size, 3);
    let targets = tokens(b * t, model.config.vocab_size, 4);
    let batch = Batch {
        inputs: &inputs,
        targets: &targets,
        batch: b,
        seq: t,
    };
    // A workspace bigger than the batch: the batch uses its beginning.
    let mut ws = Workspace::new(&model.config, 4, 16);
    let mut once = vec![0.0f32; model.params.len()];
    let loss1 = model.forward_backward(&mut ws, &batch, &mut once, Backward::scaled(0.5));
    let mut twice = vec![0.0f32; model.params.len()];
    model.forward_backward(&mut ws, &batch, &mut twice, Backward::scaled(0.25));
    let loss2 = model.forward_backward(&mut ws, &batch, &mut twice, Backward::scaled(0.25));
    assert_eq!(loss1, loss2);
    let eval = model.forward(&mut ws, Loss::of(&batch));
    assert!(
        (eval - loss1).abs() < 1e-6,
        "evaluate {eval} vs training loss {loss1}"
    );
    for (a, b) in once.iter().zip(&twice) {
        assert!((a - b).abs() <= 1e-6 * (1.0 + a.abs()), "{a} vs {b}");
    }
}
