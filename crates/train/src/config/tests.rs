use super::*;

/// `serde_json::to_string(&TrainConfig::default())` when the config was one
/// flat struct: checkpoints and `runs/<run>/config.json` hold this shape.
const FLAT_DEFAULT: &str = r#"{"data":["training_data"],"extensions":[],"files":[],"preset":"auto","tokenizer":"bpe","vocab_size":2048,"threads":0,"ranks":1,"batch_size":16,"seq_len":128,"epochs":10,"max_steps":0,"time_budget_secs":0.0,"lr":0.003,"min_lr":0.0003,"warmup_steps":20,"schedule":"cosine","adamw":{"beta1":0.9,"beta2":0.95,"eps":1e-8,"weight_decay":0.1},"grad_clip":1.0,"accum_steps":1,"dropout":null,"memory":true,"eval_gen":0,"precision":"auto","val_fraction":0.1,"eval_every":50,"eval_batches":16,"checkpoint_every":2,"keep_checkpoints":3,"early_stop_patience":0,"final_weights":"best","sample_every":0,"sample_prompt":"// ","seed":1337,"resume":null,"output":"models/trained_model_kissing_spheres.cllm","checkpoint_dir":"checkpoints","runs_dir":"runs","run_name":""}"#;

#[test]
fn default_is_valid_and_bad_values_are_named() {
    TrainConfig::default().validate().unwrap();
    let mut c = TrainConfig::default();
    c.optimizer.lr = -1.0;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("learning rate")
    );
    c.optimizer.lr = 1e-3;
    c.batch.batch_size = 0;
    assert!(c.validate().unwrap_err().to_string().contains("batch size"));
    c.batch.batch_size = 4;
    c.model.preset = "huge".into();
    assert!(c.validate().unwrap_err().to_string().contains("huge"));
    let json = serde_json::to_string(&TrainConfig::default()).unwrap();
    let back: TrainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, TrainConfig::default());
    // Missing fields take defaults (older config files still load).
    let partial: TrainConfig = serde_json::from_str(r#"{"epochs": 3}"#).unwrap();
    assert_eq!(partial.budget.epochs, 3);
    assert_eq!(partial.batch.seq_len, TrainConfig::default().batch.seq_len);
}

#[test]
fn the_flat_json_of_the_one_struct_layout_still_loads() {
    let old: TrainConfig = serde_json::from_str(FLAT_DEFAULT).unwrap();
    // Written before fill-in-the-middle: it goes on without it.
    let mut before_fim = TrainConfig::default();
    before_fim.batch.fim_rate = 0.0;
    assert_eq!(old, before_fim);
    // A partial file: the keys given land in their parts, every other
    // setting (in those parts too) keeps its default.
    let partial: TrainConfig = serde_json::from_str(r#"{"epochs": 3, "lr": 0.01}"#).unwrap();
    let mut expected = before_fim.clone();
    expected.budget.epochs = 3;
    expected.optimizer.lr = 0.01;
    assert_eq!(partial, expected);
    // A nested table merges with its default only as a whole value.
    let adamw: TrainConfig =
        serde_json::from_str(r#"{"adamw": {"beta1": 0.8, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.0}, "threads": 2}"#)
            .unwrap();
    assert_eq!(adamw.optimizer.adamw.beta1, 0.8);
    assert_eq!(adamw.threads, 2);
    // Keys the config does not have are ignored, as before.
    let extra: TrainConfig = serde_json::from_str(r#"{"no_such_key": 1, "seed": 5}"#).unwrap();
    assert_eq!(extra.seed, 5);
}

#[test]
fn the_serialised_config_is_flat_with_the_same_keys() {
    let keys = |v: serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let mut old: serde_json::Value = serde_json::from_str(FLAT_DEFAULT).unwrap();
    // The keys added since that layout.
    old["fim_rate"] = serde_json::json!(0.5);
    old["init"] = serde_json::Value::Null;
    old["adapt"] = serde_json::json!({"enabled": false, "lr": 0.01, "decay": 0.0});
    // Through the text, as files hold it (a `to_value` widens the f32s).
    let text = serde_json::to_string(&TrainConfig::default()).unwrap();
    let new: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(keys(new.clone()), keys(old.clone()));
    assert_eq!(new, old, "same keys, same default values");
    // The fields a resume decides with are not serialised.
    let c = TrainConfig {
        given: vec!["lr".into()],
        allow_data_change: true,
        ..TrainConfig::default()
    };
    let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert!(back.given.is_empty() && !back.allow_data_change);
}
