//! The Rust model against an independent PyTorch implementation
//! (tools/reference.py, float64): same weights, same tokens; logits, loss
//! and every parameter gradient must agree.
//!
//! Tolerances (the Rust side computes in f32):
//! - logits: |rust - torch| <= 1e-4 (logits are O(1)),
//! - loss: relative 1e-5,
//! - gradients: per tensor, max |rust - torch| <= 1e-4 * max |torch| + 1e-7.

use cllm_core::{Backward, Batch, Gpt, Logits, Loss, ModelConfig, Workspace};
use serde_json::Value;
use std::collections::HashMap;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/gpt_tiny_reference.json"
);

struct Reference {
    config: ModelConfig,
    batch: usize,
    seq: usize,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    params: HashMap<String, Vec<f32>>,
    logits: Vec<f32>,
    loss: f64,
    grads: HashMap<String, Vec<f32>>,
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn named(v: &Value) -> HashMap<String, Vec<f32>> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, x)| (k.clone(), floats(x)))
        .collect()
}

fn load() -> Reference {
    let text = std::fs::read_to_string(FIXTURE)
        .unwrap_or_else(|e| panic!("{FIXTURE}: {e} (run tools/reference.py)"));
    let v: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let ids = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    Reference {
        config: serde_json::from_value(v["config"].clone()).expect("config"),
        batch: v["batch"].as_u64().unwrap() as usize,
        seq: v["seq"].as_u64().unwrap() as usize,
        inputs: ids("inputs"),
        targets: ids("targets"),
        params: named(&v["params"]),
        logits: floats(&v["logits"]),
        loss: v["loss"].as_f64().unwrap(),
        grads: named(&v["grads"]),
    }
}

fn model_from(r: &Reference) -> Gpt {
    let mut model = Gpt::new(r.config.clone(), 0).unwrap();
    for spec in model.layout.specs.clone() {
        let values = r
            .params
            .get(&spec.name)
            .unwrap_or_else(|| panic!("fixture lacks {}", spec.name));
        assert_eq!(values.len(), spec.len(), "{}", spec.name);
        model.params[spec.range()].copy_from_slice(values);
    }
    assert_eq!(
        r.params.len(),
        model.layout.specs.len(),
        "fixture has extra tensors"
    );
    model
}

#[test]
fn logits_loss_and_every_gradient_match_pytorch() {
    let r = load();
    assert_eq!(
        r.config,
        ModelConfig::preset("tiny").unwrap(),
        "fixture is for the tiny preset"
    );
    let model = model_from(&r);
    let (b, t, v) = (r.batch, r.seq, r.config.vocab_size);
    let mut ws = Workspace::new(&model.config, b, t);

    for row in 0..b {
        let logits = model.forward(&mut ws, Logits(&r.inputs[row * t..(row + 1) * t]));
        let want = &r.logits[row * t * v..(row + 1) * t * v];
        for (i, (a, w)) in logits.iter().zip(want).enumerate() {
            assert!((a - w).abs() <= 1e-4, "logits row {row} [{i}]: {a} vs {w}");
        }
    }

    let batch = Batch {
        inputs: &r.inputs,
        targets: &r.targets,
        batch: b,
        seq: t,
    };
    let eval = model.forward(&mut ws, Loss::of(&batch)) as f64;
    assert!(
        (eval - r.loss).abs() <= 1e-5 * r.loss,
        "loss {eval} vs {}",
        r.loss
    );

    let mut grads = vec![0.0f32; model.params.len()];
    let loss = model.forward_backward(
        &mut ws,
        &batch,
        &mut grads,
        Backward::scaled(1.0 / (b * t) as f32),
    ) as f64;
    assert!(
        (loss - r.loss).abs() <= 1e-5 * r.loss,
        "training loss {loss} vs {}",
        r.loss
    );
    for spec in &model.layout.specs {
        let want = &r.grads[&spec.name];
        let got = &grads[spec.range()];
        let scale = want.iter().fold(0.0f32, |m, g| m.max(g.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, w)| (a - w).abs())
            .fold(0.0f32, f32::max);
        assert!(scale > 0.0, "{}: reference gradient is zero", spec.name);
        assert!(
            worst <= 1e-4 * scale + 1e-7,
            "{}: max error {worst:.3e} against max |grad| {scale:.3e}",
            spec.name
        );
    }
}
