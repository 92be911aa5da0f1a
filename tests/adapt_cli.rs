//! `cllm eval --adapt`: the flags reach the scorer, the model's saved
//! setting is the default, and bad values are refused naming the flag.

use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_train::TrainConfig;
use cllm_train::adapt::AdaptSettings;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use std::path::Path;
use std::process::{Command, Output};

fn save_model(path: &Path, adapt: AdaptSettings) {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 32;
    let model = Gpt::new(cfg, 3).unwrap();
    let mut train_config = TrainConfig::default();
    train_config.evaluation.adapt = adapt;
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &Tokenizer::bytes().to_json(),
            train_config: &train_config,
            state: &TrainingState::start(),
            memory: None,
        },
    )
    .unwrap();
}

fn eval(model: &Path, data: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args([
            "eval",
            "--json",
            "--seq-len",
            "32",
            "--threads",
            "1",
            "--model",
        ])
        .arg(model)
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .unwrap()
}

fn json(out: Output) -> serde_json::Value {
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_adapts_as_told_or_as_the_model_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("twice.c");
    let once: String = (0..5)
        .map(|i| format!("static int g_{i}(int a) {{ return a << {i}; }}\n"))
        .collect();
    std::fs::write(&data, format!("{once}{once}")).unwrap();
    let model = dir.path().join("m.cllm");
    save_model(&model, AdaptSettings::default());

    let off = json(eval(&model, &data, &["--adapt", "off"]));
    assert!(off["adapt"].is_null(), "{off}");
    let on = json(eval(&model, &data, &["--adapt", "on", "--adapt-lr", "0.3"]));
    assert_eq!(on["adapt"]["lr"].as_f64().unwrap() as f32, 0.3);
    assert_eq!(on["adapt"]["decay"].as_f64().unwrap() as f32, 0.0);
    let (bits_off, bits_on) = (
        off["bits_per_byte"].as_f64().unwrap(),
        on["bits_per_byte"].as_f64().unwrap(),
    );
    assert!(bits_on < bits_off, "on {bits_on}, off {bits_off}");
    // Left out, the flag takes the model's setting (off by default).
    let default = json(eval(&model, &data, &[]));
    assert_eq!(default["bits_per_byte"], off["bits_per_byte"]);

    // A model saved adapting: adapts unless told not to.
    let adapting = dir.path().join("adapting.cllm");
    save_model(
        &adapting,
        AdaptSettings {
            enabled: true,
            lr: 0.3,
            decay: 0.0,
        },
    );
    let saved = json(eval(&adapting, &data, &[]));
    assert_eq!(saved["bits_per_byte"], on["bits_per_byte"]);
    let told_off = json(eval(&adapting, &data, &["--adapt", "off"]));
    assert_eq!(told_off["bits_per_byte"], off["bits_per_byte"]);
    // A decay of 1 forgets every step at once: the plain figure.
    let forget = json(eval(&adapting, &data, &["--adapt-decay", "1"]));
    assert_eq!(forget["bits_per_byte"], off["bits_per_byte"]);
}

#[test]
fn bad_adaptation_values_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a.c");
    std::fs::write(&data, "int main(void) { return 0; }\n".repeat(4)).unwrap();
    let model = dir.path().join("m.cllm");
    save_model(&model, AdaptSettings::default());
    for (flag, value) in [
        ("--adapt-lr", "-0.5"),
        ("--adapt-decay", "1.5"),
        ("--adapt-decay", "-0.1"),
    ] {
        let out = eval(&model, &data, &["--adapt", "on", flag, value]);
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag) && err.contains(value), "{err}");
    }
}

#[test]
fn generate_continues_from_weights_adapted_to_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.cllm");
    save_model(&model, AdaptSettings::default());
    let prompt = "int add(int a, int b) { return a + b; }\n".repeat(3);
    let generate = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cllm"))
            .args(["generate", "--temperature", "0", "--max-tokens", "24"])
            .args(["--threads", "1", "--no-echo", "--model"])
            .arg(&model)
            .args(["--prompt", &prompt])
            .args(extra)
            .output()
            .unwrap()
    };
    let plain = generate(&[]);
    assert!(plain.status.success(), "{plain:?}");
    let adapted = generate(&["--adapt", "on", "--adapt-lr", "0.5"]);
    assert!(adapted.status.success(), "{adapted:?}");
    let note = String::from_utf8_lossy(&adapted.stderr);
    assert!(note.contains("adapted to the prompt at lr 0.5"), "{note}");
    assert!(!String::from_utf8_lossy(&plain.stderr).contains("adapted"));
    assert_ne!(plain.stdout, adapted.stdout, "the steps changed nothing");
    // A decay of 1 undoes every step: the plain reply.
    let undone = generate(&["--adapt", "on", "--adapt-decay", "1"]);
    assert_eq!(undone.stdout, plain.stdout);
    let bad = generate(&["--adapt", "on", "--adapt-lr", "-1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--adapt-lr"));
}
