//! The sphere threads stay up for a run: started once, reused by every
//! phase of every step, joined when the spheres go; a sphere that panics
//! ends the run with an error (one machine and a cluster), never a hang,
//! and leaves no thread behind.

use cllm_core::{Gpt, ModelConfig};
use cllm_train::cluster::Cluster;
use cllm_train::cluster::local::LocalCluster;
use cllm_train::events::Event;
use cllm_train::faults::Faults;
use cllm_train::optimizer::{AdamW, AdamWConfig};
use cllm_train::spheres::{Spheres, StepInput};
use cllm_train::trainer::{TrainOptions, spawn};
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OutputSettings, TokenizerKind, TrainConfig, TrainerHandle,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests count this process's sphere threads: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Threads of this process named as sphere threads (Linux; elsewhere
/// `None`, and the counts are not checked).
fn sphere_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("cllm-sphere-"))
            .count(),
    )
}

/// Waits (up to a deadline) until the sphere threads number `want`.
fn expect_sphere_threads(want: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sphere_threads() {
            None => return,
            Some(n) if n == want => return,
            Some(n) if Instant::now() >= deadline => {
                panic!("{n} sphere threads alive, expected {want}")
            }
            Some(_) => std::thread::yield_now(),
        }
    }
}

#[test]
fn sphere_threads_start_once_and_end_with_the_spheres() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    expect_sphere_threads(0);
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 64;
    let mut model = Gpt::new(cfg, 3).unwrap();
    let (n, seq, n_seqs) = (13, 8, 20);
    let inputs: Vec<u32> = (0..n_seqs * seq).map(|i| (i * 7 % 64) as u32).collect();
    let targets: Vec<u32> = (0..n_seqs * seq).map(|i| (i * 5 % 64) as u32).collect();
    let mut spheres = Spheres::new(&model, n, n_seqs, seq);
    // Nothing starts before the first phase.
    assert_eq!(spheres.threads_started(), 0);
    let mut opt = AdamW::new(
        AdamWConfig::default(),
        model.layout.total,
        model.layout.decay_ranges(),
    );
    let mut losses = Vec::new();
    for step in 0..4 {
        let input = StepInput {
            inputs: &inputs,
            targets: &targets,
            n_seqs,
            seq_len: seq,
            step,
            seed: 5,
            dropout: false,
        };
        let out = spheres.compute_gradients(&model, &input, Duration::from_secs(60), &mut |_| {});
        spheres.apply_update(&mut model.params, &mut opt, 1e-2, 1.0, None);
        let (eval_loss, _) = spheres.evaluate(&model, &inputs, &targets, &vec![0; n_seqs], seq);
        assert!(out.loss.is_finite() && eval_loss.is_finite());
        losses.push(out.loss);
        // The same threads every phase and every step.
        assert_eq!(spheres.threads_started(), n);
        expect_sphere_threads(n);
    }
    assert!(losses.last() < losses.first(), "{losses:?}");
    // Every sphere worked its share, on its own thread.
    assert!(spheres.sequences().iter().all(|&s| s > 0));
    drop(spheres);
    expect_sphere_threads(0);
}

fn corpus(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let text: String = (0..400)
        .map(|i| format!("int f{}(int x) {{ return x * {}; }}\n", i % 17, i % 7))
        .collect();
    std::fs::write(data.join("a.c"), text).unwrap();
    data
}

fn config(dir: &Path, threads: usize) -> TrainConfig {
    TrainConfig {
        threads,
        seed: 3,
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
        budget: BudgetSettings {
            epochs: 1,
            max_steps: 8,
            ..Default::default()
        },
        evaluation: EvaluationSettings {
            eval_every: 4,
            eval_batches: 2,
            ..Default::default()
        },
        outputs: OutputSettings {
            output: dir.join("models/final.cllm"),
            checkpoint_dir: dir.join("checkpoints"),
            runs_dir: dir.join("runs"),
            run_name: "pool".into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

/// The run's error, or a failure if it finished or went quiet.
fn error_of(handle: TrainerHandle) -> String {
    let mut steps = 0;
    let error = loop {
        match handle.events.recv_timeout(Duration::from_secs(60)) {
            Ok(Event::Step(_)) => steps += 1,
            Ok(Event::Error(e)) => break e,
            Ok(Event::Finished(_)) => panic!("the run finished despite a sphere's panic"),
            Ok(_) => {}
            Err(e) => panic!("no error event after {steps} steps: the run hung ({e})"),
        }
    };
    assert_eq!(steps, 2, "the two steps before the fault completed");
    let mut handle = handle;
    handle
        .thread
        .take()
        .unwrap()
        .join()
        .expect("the trainer thread ends");
    error
}

fn sphere_panic() -> Faults {
    Faults {
        panic_in_sphere_at_step: Some((1, 2)),
        ..Faults::default()
    }
}

#[test]
fn a_sphere_that_panics_ends_the_run_with_an_error_and_no_threads_left() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let d = tempfile::tempdir().unwrap();
    let options = TrainOptions {
        cluster: Cluster::solo(),
        faults: sphere_panic(),
    };
    let handle = spawn(config(d.path(), 3), options);
    let error = error_of(handle);
    assert!(error.contains("sphere 1 failed at step 3"), "{error}");
    expect_sphere_threads(0);
}

#[test]
fn a_sphere_that_panics_in_a_cluster_step_ends_every_rank_with_an_error() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let d = tempfile::tempdir().unwrap();
    let handles: Vec<TrainerHandle> = LocalCluster::ranks(2)
        .into_iter()
        .map(|r| {
            let options = TrainOptions {
                cluster: Cluster::new(Arc::new(r)),
                faults: sphere_panic(),
            };
            spawn(config(d.path(), 2), options)
        })
        .collect();
    let errors: Vec<String> = std::thread::scope(|s| {
        let readers: Vec<_> = handles
            .into_iter()
            .map(|h| s.spawn(move || error_of(h)))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for e in &errors {
        assert!(e.contains("sphere 1 failed at step 3"), "{e}");
    }
    expect_sphere_threads(0);
}
