//! Rank 0 of a distributed run saves its last completed step at once, from
//! another thread, while the trainers go on (`cluster::last_step`): the
//! file is the state after that step, so a run resumed from it continues
//! with exactly the losses and weights of a run never interrupted. Ranks
//! are threads here (`LocalCluster`), over both ways ranks keep the AdamW
//! moments: shares of them (one host) and whole (MPI's all-reduce);
//! tests/cluster_mpi.rs does it to `mpirun` with Ctrl-C.

use cllm_train::checkpoint;
use cllm_train::cluster::Cluster;
use cllm_train::cluster::last_step::{LastStep, NotSaved, SHARE_PATIENCE, SavedAtOnce};
use cllm_train::cluster::local::LocalCluster;
use cllm_train::events::{Command, Event, StepStats};
use cllm_train::trainer::{TrainOptions, TrainerHandle};
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OptimizerSettings, OutputSettings, TokenizerKind, TrainConfig, spawn,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const STEPS: u64 = 14;

fn config(dir: &Path) -> TrainConfig {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let text: String = (0..300)
        .map(|i| format!("int f{}(int x) {{ return x * {}; }}\n", i % 13, i % 5))
        .collect();
    std::fs::write(data.join("a.c"), text).unwrap();
    TrainConfig {
        threads: 1,
        seed: 3,
        corpus: CorpusSettings {
            data: vec![data],
            tokenizer: TokenizerKind::Bytes,
            ..Default::default()
        },
        model: ModelSettings {
            preset: "tiny".into(),
            dropout: Some(0.1),
            memory: true,
            ..Default::default()
        },
        batch: BatchSettings {
            batch_size: 4,
            seq_len: 16,
            ..Default::default()
        },
        optimizer: OptimizerSettings {
            lr: 3e-3,
            warmup_steps: 2,
            ..Default::default()
        },
        budget: BudgetSettings {
            epochs: 1,
            max_steps: STEPS,
            ..Default::default()
        },
        evaluation: EvaluationSettings {
            eval_every: 3,
            eval_batches: 2,
            ..Default::default()
        },
        outputs: OutputSettings {
            output: dir.join("models/final.cllm"),
            checkpoint_dir: dir.join("checkpoints"),
            runs_dir: dir.join("runs"),
            run_name: "once".into(),
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

/// One rank's steps, until it ends; `at_step` runs once, on the first step
/// event at or past `when`, while the trainer goes on.
fn drive(handle: &TrainerHandle, when: u64, at_step: &mut dyn FnMut()) -> Vec<StepStats> {
    let mut steps = Vec::new();
    let mut done = false;
    loop {
        match handle.events.recv_timeout(Duration::from_secs(120)) {
            Ok(Event::Step(s)) => {
                if !done && s.step >= when {
                    at_step();
                    done = true;
                }
                steps.push(s);
            }
            Ok(Event::Finished(_)) => return steps,
            Ok(Event::Error(e)) => panic!("a rank failed: {e}"),
            Ok(_) => {}
            Err(_) => panic!("a rank did not finish within two minutes"),
        }
    }
}

/// A run on `ranks`, every rank keeping its last step; at rank 0's step
/// `save_at` (if any) rank 0 saves at once and asks to stop. Rank 0's
/// steps and the save.
fn run(
    ranks: Vec<LocalCluster>,
    config: &TrainConfig,
    save_at: Option<u64>,
) -> (Vec<StepStats>, Option<SavedAtOnce>) {
    let clusters: Vec<Cluster> = ranks
        .into_iter()
        .map(|r| Cluster::new(Arc::new(r)))
        .collect();
    for c in &clusters {
        c.last_step().enable();
    }
    let keep = Arc::clone(clusters[0].last_step());
    let handles: Vec<TrainerHandle> = clusters
        .into_iter()
        .map(|c| spawn(config.clone(), TrainOptions::in_cluster(c)))
        .collect();
    let mut saved = None;
    let steps = std::thread::scope(|scope| {
        let (first, rest) = handles.split_first().unwrap();
        let others: Vec<_> = rest
            .iter()
            .map(|h| scope.spawn(move || drive(h, u64::MAX, &mut || {})))
            .collect();
        let steps = drive(first, save_at.unwrap_or(u64::MAX), &mut || {
            let s = keep.save_now(SHARE_PATIENCE).expect("saved at once");
            assert!(!s.copied);
            keep.copy_to_output().expect("copied to the output path");
            first.commands.send(Command::Stop).unwrap();
            saved = keep.saved();
        });
        for o in others {
            o.join().unwrap();
        }
        steps
    });
    if saved.is_some() {
        // The run went on to its stop; its finish wrote no other final.
        let again = keep.save_now(SHARE_PATIENCE).unwrap();
        assert_eq!(Some(again), saved);
    } else {
        assert!(matches!(
            keep.save_now(SHARE_PATIENCE),
            Err(NotSaved::Finishing)
        ));
    }
    (steps, saved)
}

fn losses(steps: &[StepStats]) -> Vec<(u64, u32)> {
    steps.iter().map(|s| (s.step, s.loss.to_bits())).collect()
}

fn resume_from(path: &Path, dir: &Path) -> TrainConfig {
    let mut c = config(dir);
    c.resume = Some(path.to_path_buf());
    c.outputs.output = dir.join("models/resumed.cllm");
    c
}

fn saved_at_once_resumes_exactly(make: fn(usize) -> Vec<LocalCluster>) {
    let (straight_dir, cut_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (straight, _) = run(make(2), &config(straight_dir.path()), None);
    assert_eq!(straight.len() as u64, STEPS);
    let (cut, saved) = run(make(2), &config(cut_dir.path()), Some(5));
    let saved = saved.unwrap();
    // The last step handed over when rank 0 saw step 5: its step 4 at
    // the earliest (handed over after what follows the step).
    assert!(
        (4..=cut.last().unwrap().step).contains(&saved.step),
        "{saved:?}"
    );
    assert!(saved.copied);
    let ck = checkpoint::load(&saved.run_final).unwrap();
    assert_eq!(ck.state.step, saved.step);
    assert_eq!(ck.optimizer.as_ref().unwrap().step, saved.step);
    assert_eq!(checkpoint::load(&saved.output).unwrap(), ck);
    let memory = ck.repository_memory(&saved.run_final).unwrap();
    assert!(memory.is_some(), "the repository memory is carried");
    // Resumed, it goes on as the run that was never cut.
    let out: PathBuf = saved.output.clone();
    let (resumed, _) = run(make(2), &resume_from(&out, cut_dir.path()), None);
    assert_eq!(
        losses(&resumed),
        losses(&straight[saved.step as usize..]),
        "the steps after {}",
        saved.step
    );
    let weights = |p: &Path| checkpoint::load(p).unwrap().params;
    assert_eq!(
        weights(&cut_dir.path().join("models/resumed.cllm")),
        weights(&straight_dir.path().join("models/final.cllm"))
    );
}

#[test]
fn ranks_that_keep_shares_of_the_moments_save_at_once_exactly() {
    saved_at_once_resumes_exactly(LocalCluster::ranks);
}

#[test]
fn ranks_that_keep_the_whole_moments_save_at_once_exactly() {
    saved_at_once_resumes_exactly(LocalCluster::ranks_unsharded);
}

#[test]
fn nothing_is_saved_before_a_step_or_without_being_enabled() {
    let keep = LastStep::default();
    assert!(matches!(
        keep.save_now(SHARE_PATIENCE),
        Err(NotSaved::NoStepYet)
    ));
    assert_eq!(keep.copy_to_output().unwrap(), None);
    keep.close();
    assert!(matches!(
        keep.save_now(SHARE_PATIENCE),
        Err(NotSaved::Finishing)
    ));
}
