//! The kissing-spheres trainer end to end: determinism, agreement across
//! thread counts, work sharing, stop, NaN guard, learning, exact resume.

use cllm_train::checkpoint;
use cllm_train::events::{Command, Event, StepStats, Summary};
use cllm_train::faults::Faults;
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OptimizerSettings, OutputSettings, TokenizerKind, TrainConfig, TrainOptions, TrainerHandle,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod course;
mod files;
mod init;
mod resume;
mod spheres;
mod time_budget;

/// A small text with learnable structure, written into `dir/data`.
fn corpus(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut a = String::new();
    let mut b = String::new();
    for i in 0..300 {
        a.push_str(&format!(
            "int f{}(int x) {{ return x * {}; }}\n",
            i % 17,
            i % 7
        ));
        b.push_str(&format!(
            "// the quick brown fox jumps over dog {}\n",
            i % 11
        ));
    }
    std::fs::write(data.join("a.c"), a).unwrap();
    std::fs::write(data.join("b.txt"), b).unwrap();
    data
}

fn config(dir: &Path, threads: usize) -> TrainConfig {
    TrainConfig {
        threads,
        seed: 11,
        corpus: CorpusSettings {
            data: vec![corpus(dir)],
            tokenizer: TokenizerKind::Bytes,
            ..Default::default()
        },
        model: ModelSettings {
            preset: "tiny".into(),
            ..Default::default()
        },
        batch: BatchSettings {
            batch_size: 6,
            seq_len: 16,
            ..Default::default()
        },
        optimizer: OptimizerSettings {
            lr: 3e-3,
            min_lr: 3e-4,
            warmup_steps: 3,
            ..Default::default()
        },
        budget: BudgetSettings {
            epochs: 1,
            max_steps: 12,
            ..Default::default()
        },
        evaluation: EvaluationSettings {
            eval_every: 4,
            eval_batches: 4,
            ..Default::default()
        },
        outputs: OutputSettings {
            checkpoint_every: 1,
            output: dir.join("models/final.cllm"),
            checkpoint_dir: dir.join("checkpoints"),
            runs_dir: dir.join("runs"),
            run_name: "test".into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

/// A run on this machine alone, without faults.
fn spawn(config: TrainConfig) -> TrainerHandle {
    cllm_train::spawn(config, TrainOptions::default())
}

struct Outcome {
    steps: Vec<StepStats>,
    events: Vec<Event>,
    summary: Summary,
}

fn run(config: TrainConfig) -> Outcome {
    run_with(config, Faults::default())
}

fn run_with(config: TrainConfig, faults: Faults) -> Outcome {
    let options = TrainOptions {
        faults,
        ..TrainOptions::default()
    };
    drive(cllm_train::spawn(config, options), |_| false)
}

/// Collects a run's events until it finishes (two minutes at most), sending
/// Stop once `stop_when` says so.
fn drive(handle: cllm_train::TrainerHandle, stop_when: impl Fn(&Event) -> bool) -> Outcome {
    let mut steps = Vec::new();
    let mut events = Vec::new();
    let mut sent = false;
    while let Ok(e) = handle.events.recv_timeout(Duration::from_secs(120)) {
        if !sent && stop_when(&e) {
            handle.commands.send(Command::Stop).unwrap();
            sent = true;
        }
        match e {
            Event::Step(s) => steps.push(s),
            Event::Finished(summary) => {
                return Outcome {
                    steps,
                    events,
                    summary,
                };
            }
            Event::Error(e) => panic!("training failed: {e}"),
            other => events.push(other),
        }
    }
    panic!("trainer ended without Finished within two minutes");
}

fn weights(path: &Path) -> Vec<f32> {
    checkpoint::load(path).expect("final model loads").params
}

/// Runs `config`, sending Stop once `stop_when` says so. The stop lands
/// within a step, wherever exactly: the resume tests only need the two
/// halves to join up.
fn run_and_stop(config: TrainConfig, stop_when: impl Fn(&Event) -> bool) -> Outcome {
    drive(spawn(config), stop_when)
}

/// The config a front end sends to resume `file` when the user gives no
/// other flag: its own defaults everywhere (which must not apply), only
/// the places files go.
fn resume_only(file: &Path, dir: &Path) -> TrainConfig {
    TrainConfig {
        resume: Some(file.to_path_buf()),
        outputs: OutputSettings {
            output: dir.join("models/resumed.cllm"),
            checkpoint_dir: dir.join("checkpoints"),
            runs_dir: dir.join("runs"),
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

fn loss_bits(steps: &[StepStats]) -> Vec<(u64, u32)> {
    steps.iter().map(|s| (s.step, s.loss.to_bits())).collect()
}

/// A straight run, and the same run stopped part-way and resumed with no
/// flag repeated, give the same per-step losses and final weights.
fn check_exact_resume(straight_cfg: impl Fn(&Path) -> TrainConfig, stop_at: u64) {
    let (ds, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let straight = run(straight_cfg(ds.path()));
    let total = straight.steps.len() as u64;
    assert!(
        total > stop_at + 1,
        "need steps after the stop, got {total}"
    );
    let first = run_and_stop(
        straight_cfg(dr.path()),
        |e| matches!(e, Event::Step(s) if s.step == stop_at),
    );
    assert!(
        (first.steps.len() as u64) < total,
        "the stop did not interrupt the run"
    );
    let half = dr.path().join("models/final.cllm");
    let second = run(resume_only(&half, dr.path()));
    let mut joined = first.steps.clone();
    joined.extend(second.steps.iter().cloned());
    assert_eq!(joined.len(), straight.steps.len());
    assert_eq!(loss_bits(&joined), loss_bits(&straight.steps));
    assert_eq!(
        weights(&ds.path().join("models/final.cllm")),
        weights(&dr.path().join("models/resumed.cllm"))
    );
    assert_eq!(second.summary.stopped_early, straight.summary.stopped_early);
    // The resumed run continued in the same run folder and log.
    let log = std::fs::read_to_string(dr.path().join("runs/test/metrics.jsonl")).unwrap();
    assert!(log.contains("\"kind\":\"resume\""));
    assert!(dr.path().join("checkpoints/test/final.cllm").exists());
}
