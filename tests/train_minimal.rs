//! The reference trainer in `examples/train_minimal.rs` and `cllm train` at
//! one thread compute the same run: every step's loss, and the saved
//! weights, bit for bit.

#[path = "../examples/train_minimal.rs"]
#[allow(dead_code)]
mod train_minimal;

use cllm_core::ops::bf16::PrecisionChoice;
use cllm_train::checkpoint;
use cllm_train::events::Event;
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, FinalWeights, ModelSettings, OptimizerSettings,
    OutputSettings, ScheduleKind, TokenizerKind, TrainConfig,
};
use std::path::{Path, PathBuf};
use train_minimal::{Settings, train};

/// A text of this repository's own sources: real code, enough windows for
/// the steps to cross an epoch's end.
fn write_text(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = String::new();
    for file in ["src/main.rs", "src/cli/mod.rs", "crates/core/src/rng.rs"] {
        text.push_str(&std::fs::read_to_string(root.join(file)).expect("a source file"));
    }
    text.truncate(text.floor_char_boundary(2_400));
    let path = dir.join("text.rs");
    std::fs::write(&path, text).unwrap();
    path
}

/// `cllm train`'s settings for the same run, on one sphere in fp32.
fn full_trainer_config(s: &Settings, dir: &Path) -> TrainConfig {
    TrainConfig {
        threads: 1,
        seed: s.seed,
        corpus: CorpusSettings {
            files: vec![s.text.clone()],
            tokenizer: TokenizerKind::Bytes,
            val_fraction: s.val_fraction,
            ..Default::default()
        },
        model: ModelSettings {
            preset: "baby".into(),
            precision: PrecisionChoice::Fp32,
            memory: false,
            ..Default::default()
        },
        batch: BatchSettings {
            batch_size: s.batch_size,
            seq_len: s.seq_len,
            ..Default::default()
        },
        optimizer: OptimizerSettings {
            lr: s.lr,
            min_lr: s.min_lr,
            warmup_steps: s.warmup_steps,
            schedule: ScheduleKind::Cosine,
            grad_clip: s.grad_clip,
            ..Default::default()
        },
        budget: BudgetSettings {
            epochs: 0,
            max_steps: s.steps,
            ..Default::default()
        },
        outputs: OutputSettings {
            final_weights: FinalWeights::Last,
            output: dir.join("full.cllm"),
            checkpoint_dir: dir.join("checkpoints"),
            runs_dir: dir.join("runs"),
            run_name: "full".into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

#[test]
fn the_minimal_trainer_computes_the_full_trainers_run() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        text: write_text(dir.path()),
        steps: 24,
        batch_size: 4,
        seq_len: 32,
        warmup_steps: 3,
        // Low enough that the early steps clip.
        grad_clip: 0.5,
        output: Some(dir.path().join("minimal.cllm")),
        ..Settings::default()
    };
    let minimal = train(&settings).expect("the minimal trainer runs");

    let config = full_trainer_config(&settings, dir.path());
    let (_commands, rx) = crossbeam_channel::unbounded();
    let mut steps = Vec::new();
    cllm_train::trainer::run(config, Default::default(), &rx, &mut |e| {
        if let Event::Step(s) = e {
            steps.push(s);
        }
    })
    .expect("the full trainer runs");

    // The run crosses an epoch's end (the loader's reshuffle) and clips.
    assert!(
        steps.iter().any(|s| s.epoch > 0),
        "the steps stay in one epoch"
    );
    assert!(steps.iter().any(|s| s.clipped), "no step clipped");
    let full: Vec<f32> = steps.iter().map(|s| s.loss).collect();
    assert_eq!(minimal.losses.len(), full.len());
    for (i, (a, b)) in minimal.losses.iter().zip(&full).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "step {}: {a} against {b}", i + 1);
    }
    // It learns: the last steps' loss well under the first's.
    assert!(full[full.len() - 1] < full[0] - 0.5, "{full:?}");

    let ours = checkpoint::load(&dir.path().join("minimal.cllm")).unwrap();
    let theirs = checkpoint::load(&dir.path().join("full.cllm")).unwrap();
    assert_eq!(ours.model, theirs.model);
    assert_eq!(ours.tokenizer_json, theirs.tokenizer_json);
    assert!(
        ours.params
            .iter()
            .zip(&theirs.params)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the saved weights differ"
    );
}
