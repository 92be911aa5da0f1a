//! Training in bf16 (`--precision bf16`) end to end: it learns, it is
//! deterministic, it stays close to f32, and a run resumes across
//! precisions. On a CPU without AVX512_BF16 the same runs go through the
//! scalar model of the instruction, so these tests pass everywhere.

use cllm_core::ops::bf16::PrecisionChoice;
use cllm_train::checkpoint;
use cllm_train::events::{Event, StepStats};
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OptimizerSettings, OutputSettings, TokenizerKind, TrainConfig, spawn,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn corpus(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut text = String::new();
    for i in 0..400 {
        text.push_str(&format!(
            "int f{}(int x) {{ return x * {} + {}; }}\n",
            i % 13,
            i % 7,
            i % 5
        ));
    }
    std::fs::write(data.join("a.c"), text).unwrap();
    data
}

fn config(dir: &Path, precision: PrecisionChoice) -> TrainConfig {
    TrainConfig {
        threads: 2,
        seed: 5,
        corpus: CorpusSettings {
            data: vec![corpus(dir)],
            tokenizer: TokenizerKind::Bytes,
            ..Default::default()
        },
        model: ModelSettings {
            preset: "tiny".into(),
            memory: false,
            precision,
            ..Default::default()
        },
        batch: BatchSettings {
            batch_size: 8,
            seq_len: 16,
            ..Default::default()
        },
        optimizer: OptimizerSettings {
            lr: 1e-2,
            min_lr: 1e-3,
            warmup_steps: 5,
            ..Default::default()
        },
        budget: BudgetSettings {
            epochs: 0,
            max_steps: 60,
            ..Default::default()
        },
        evaluation: EvaluationSettings {
            eval_every: 30,
            eval_batches: 4,
            ..Default::default()
        },
        outputs: OutputSettings {
            output: dir.join("models/final.cllm"),
            checkpoint_dir: dir.join("checkpoints"),
            runs_dir: dir.join("runs"),
            run_name: "test".into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

struct Outcome {
    steps: Vec<StepStats>,
    events: Vec<Event>,
}

fn run(config: TrainConfig) -> Outcome {
    let handle = spawn(config, Default::default());
    let (mut steps, mut events) = (Vec::new(), Vec::new());
    while let Ok(e) = handle.events.recv_timeout(Duration::from_secs(120)) {
        match e {
            Event::Step(s) => steps.push(s),
            Event::Error(e) => panic!("training failed: {e}"),
            Event::Finished(_) => return Outcome { steps, events },
            other => events.push(other),
        }
    }
    panic!("trainer ended without Finished within two minutes")
}

fn last_val_loss(events: &[Event]) -> f32 {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Eval(e) => Some(e.loss),
            _ => None,
        })
        .expect("an evaluation")
}

fn infos(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Info(s) | Event::Warning(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn bf16_learns_deterministically_and_close_to_f32() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = run(config(dirs[0].path(), PrecisionChoice::Bf16));
    let b = run(config(dirs[1].path(), PrecisionChoice::Bf16));
    let f = run(config(dirs[2].path(), PrecisionChoice::Fp32));
    assert!(
        infos(&a.events)
            .iter()
            .any(|s| s.contains("matmuls in bf16")),
        "the run says it runs in bf16: {:?}",
        infos(&a.events)
    );
    assert!(
        !infos(&f.events)
            .iter()
            .any(|s| s.contains("matmuls in bf16"))
    );

    // Deterministic: the same seed gives the same losses, bit for bit.
    let bits = |o: &Outcome| o.steps.iter().map(|s| s.loss.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    // Different from f32 (the products are rounded) ...
    assert_ne!(bits(&a), bits(&f));
    // ... but it learns as f32 does.
    let first = a.steps.first().unwrap().loss;
    let last = a.steps.last().unwrap().loss;
    assert!(last < 0.6 * first, "bf16 loss {first} -> {last}");
    let (v16, v32) = (last_val_loss(&a.events), last_val_loss(&f.events));
    assert!(
        (v16 - v32).abs() < 0.05 * v32,
        "validation loss bf16 {v16} vs f32 {v32}"
    );
    // The checkpoint holds f32 master weights that load and evaluate.
    let ck = checkpoint::load(&dirs[0].path().join("models/final.cllm")).unwrap();
    assert!(ck.params.iter().all(|p| p.is_finite()));
    assert_eq!(ck.train_config.model.precision, PrecisionChoice::Bf16);
}

#[test]
fn a_bf16_run_resumes_in_f32_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = config(dir.path(), PrecisionChoice::Bf16);
    first.budget.max_steps = 20;
    run(first);
    let file = dir.path().join("models/final.cllm");
    let mut resumed = config(dir.path(), PrecisionChoice::Fp32);
    resumed.budget.max_steps = 40;
    resumed.model.precision = PrecisionChoice::Fp32;
    resumed.resume = Some(file.clone());
    resumed.given = vec!["max_steps".into(), "precision".into()];
    let out = run(resumed);
    assert_eq!(out.steps.first().unwrap().step, 21);
    assert!(
        infos(&out.events)
            .iter()
            .any(|s| s.contains("precision changed from 'bf16' to 'fp32'")),
        "{:?}",
        infos(&out.events)
    );
    assert!(
        !infos(&out.events)
            .iter()
            .any(|s| s.contains("matmuls in bf16"))
    );
}
