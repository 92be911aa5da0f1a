//! Shared fixtures for the checkpoint tests: a checkpoint with every field
//! set to something distinctive, and bit-exact comparisons.
#![allow(dead_code)]

use cllm_core::rng::Rng;
use cllm_core::{ModelConfig, ParamLayout};
use cllm_train::budget::replan::{BudgetRecord, PlanChange, Window};
use cllm_train::checkpoint::{BaseModel, Checkpoint, OptimizerState, TrainingState};
use cllm_train::{AdamWConfig, TrainConfig};

/// A tokenizer string with quotes, escapes, non-ASCII text and a token that
/// looks like the checksum placeholder, to show none of it confuses the format.
pub const TOKENIZER_JSON: &str = r#"{"version":"1.0","model":{"type":"BPE","vocab":{"0000000000000000000000000000000000000000000000000000000000000000":0,"é\"\\":1,"int":2}}}"#;

/// A checkpoint of `preset` whose every value is seeded and distinctive.
pub fn sample(preset: &str, with_optimizer: bool, seed: u64) -> Checkpoint {
    let model = ModelConfig::preset(preset).expect("preset");
    let layout = ParamLayout::new(&model);
    let mut rng = Rng::new(seed);
    let mut params: Vec<f32> = (0..layout.total).map(|_| rng.normal()).collect();
    // Values a lossy encoding would break.
    params[0] = -0.0;
    params[1] = f32::MIN_POSITIVE / 4.0; // subnormal
    params[2] = f32::MAX;
    params[3] = f32::from_bits(0x7fc0_1234); // a NaN with a payload
    let optimizer = with_optimizer.then(|| OptimizerState {
        config: AdamWConfig {
            beta1: 0.85,
            beta2: 0.975,
            eps: 3e-8,
            weight_decay: 0.05,
        },
        step: 1234 + seed,
        m: (0..layout.total).map(|_| rng.normal() * 1e-3).collect(),
        v: (0..layout.total).map(|_| rng.next_f32() * 1e-6).collect(),
    });
    let mut train_config = TrainConfig::default();
    train_config.model.preset = preset.to_string();
    train_config.optimizer.lr = 1.7e-3;
    train_config.budget.epochs = 7;
    train_config.seed = 99 + seed;
    let state = TrainingState {
        epoch: 3,
        step: 4321,
        data_epoch: 4,
        data_index: 987,
        best_val_loss: Some(rng.next_f32() * 3.0),
        lr: rng.next_f32() * 1e-3,
        tokens_seen: 123_456_789,
        elapsed_secs: 3600.25,
        horizon: 9000,
        last_step: 8000,
        evals_without_gain: 2,
        data: None,
        budget: Some(BudgetRecord {
            spent_ns: 1_234_567_890_123,
            window: Window {
                from_step: 4300,
                from_ns: 1_200_000_000_001,
                stepping_ns: 30_000_000_007,
            },
            eval_ns: 2_500_000_003,
            save_ns: 400_000_009,
            plans: vec![PlanChange {
                step: 200,
                horizon: 9000,
                last_step: 8000,
                step_ns: 123_456_789,
            }],
        }),
        base: Some(BaseModel {
            path: "bases/c-headers.cllm".into(),
            checksum_sha256: "ab".repeat(32),
            run: "base-run".into(),
            step: 9000,
        }),
    };
    Checkpoint {
        model,
        params,
        optimizer,
        tokenizer_json: TOKENIZER_JSON.to_string(),
        train_config,
        state,
        created_unix: 0,
        program_version: String::new(),
        memory: None,
    }
}

/// `ckpt` with a tokenizer the exports can read (they read its special
/// tokens): the byte tokenizer, which has no `<|endoftext|>` and no FIM
/// tokens.
pub fn exportable(mut ckpt: Checkpoint) -> Checkpoint {
    ckpt.tokenizer_json = cllm_data::tokenizer::Tokenizer::bytes().to_json();
    ckpt
}

pub fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// Everything saved comes back bit for bit (creation time and program
/// version are set by `save`, so they are checked separately).
pub fn assert_same(saved: &Checkpoint, loaded: &Checkpoint) {
    assert_eq!(saved.model, loaded.model);
    assert!(
        bits(&saved.params) == bits(&loaded.params),
        "weights differ"
    );
    match (&saved.optimizer, &loaded.optimizer) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!(a.config, b.config);
            assert_eq!(a.step, b.step);
            assert!(bits(&a.m) == bits(&b.m), "first moments differ");
            assert!(bits(&a.v) == bits(&b.v), "second moments differ");
        }
        _ => panic!("optimizer presence differs"),
    }
    assert_eq!(saved.tokenizer_json, loaded.tokenizer_json);
    assert!(saved.memory == loaded.memory, "memories differ");
    assert_eq!(saved.train_config, loaded.train_config);
    assert_eq!(saved.state, loaded.state);
    assert_eq!(
        saved.state.best_val_loss.map(f32::to_bits),
        loaded.state.best_val_loss.map(f32::to_bits)
    );
    assert_eq!(saved.state.lr.to_bits(), loaded.state.lr.to_bits());
}
