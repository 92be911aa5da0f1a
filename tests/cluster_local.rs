//! Data parallelism across ranks, on every machine: each rank is a thread
//! of this process joined by `LocalCluster`, running the same distributed
//! trainer code an `mpirun` rank runs (tests/cluster_mpi.rs runs the real
//! thing where OpenMPI is installed). Two ranks must train the same model
//! as one rank with two spheres, reproduce themselves bit for bit, resume
//! on another rank count, agree on when to stop, and refuse to go on when
//! their weights drift apart.

mod cluster_support;
use cllm_core::ops::bf16::PrecisionChoice;
use cllm_train::checkpoint;
use cllm_train::cluster::Cluster;
use cllm_train::cluster::local::LocalCluster;
use cllm_train::events::{Command, Event, StepStats, Summary};
use cllm_train::faults::Faults;
use cllm_train::trainer::{TrainOptions, TrainerHandle};
use cllm_train::{
    BatchSettings, BudgetSettings, CorpusSettings, EvaluationSettings, ModelSettings,
    OptimizerSettings, OutputSettings, TokenizerKind, TrainConfig, spawn,
};
use cluster_support::corpus;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config(dir: &Path, threads: usize) -> TrainConfig {
    TrainConfig {
        threads,
        seed: 5,
        corpus: CorpusSettings {
            data: vec![corpus(dir, 300)],
            tokenizer: TokenizerKind::Bytes,
            ..Default::default()
        },
        model: ModelSettings {
            preset: "tiny".into(),
            dropout: Some(0.1),
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

struct Outcome {
    steps: Vec<StepStats>,
    events: Vec<Event>,
    summary: Result<Summary, String>,
}

/// Collects one rank's events until it ends (two minutes at most), sending
/// Stop once `stop_when` says so.
fn drive(handle: &TrainerHandle, stop_when: &dyn Fn(&Event) -> bool) -> Outcome {
    let (mut steps, mut events) = (Vec::new(), Vec::new());
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
                    summary: Ok(summary),
                };
            }
            Event::Error(e) => {
                return Outcome {
                    steps,
                    events,
                    summary: Err(e),
                };
            }
            other => events.push(other),
        }
    }
    panic!("a rank did not finish within two minutes");
}

/// The ranks of one run; `stop_rank` is sent Stop when its `stop_when` says so.
fn run_ranks_with(
    ranks: Vec<LocalCluster>,
    config: TrainConfig,
    faults: Faults,
    stop_rank: usize,
    stop_when: &(dyn Fn(&Event) -> bool + Sync),
) -> Vec<Outcome> {
    let handles: Vec<TrainerHandle> = ranks
        .into_iter()
        .map(|r| {
            let options = TrainOptions {
                cluster: Cluster::new(Arc::new(r)),
                faults: faults.clone(),
            };
            spawn(config.clone(), options)
        })
        .collect();
    // Each rank's events are read as they come (a stop must land mid-run).
    std::thread::scope(|scope| {
        let readers: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(r, h)| {
                let when: &(dyn Fn(&Event) -> bool + Sync) = if r == stop_rank {
                    stop_when
                } else {
                    &|_| false
                };
                scope.spawn(move || drive(h, when))
            })
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

fn run_ranks(k: usize, config: TrainConfig) -> Vec<Outcome> {
    run_ranks_with(
        LocalCluster::ranks(k),
        config,
        Faults::default(),
        0,
        &|_| false,
    )
}

fn run_solo(config: TrainConfig) -> Outcome {
    drive(&spawn(config, TrainOptions::default()), &|_| false)
}

fn weights(path: &Path) -> Vec<f32> {
    checkpoint::load(path).expect("final model loads").params
}

fn loss_bits(steps: &[StepStats]) -> Vec<(u64, u32)> {
    steps.iter().map(|s| (s.step, s.loss.to_bits())).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn two_ranks_train_the_model_one_rank_with_two_spheres_trains() {
    let (dk, d1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ranks = run_ranks(2, config(dk.path(), 1));
    let one = run_solo(config(d1.path(), 2));
    let r0 = &ranks[0];
    r0.summary.as_ref().expect("rank 0 finished");
    assert_eq!(r0.steps.len(), 12);
    assert_eq!(r0.steps.len(), one.steps.len());
    for (a, b) in r0.steps.iter().zip(&one.steps) {
        assert!(
            (a.loss - b.loss).abs() <= 1e-4 * b.loss.abs(),
            "step {}: {} on 2 ranks vs {} on 1",
            a.step,
            a.loss,
            b.loss
        );
        assert!((a.grad_norm - b.grad_norm).abs() <= 1e-3 * b.grad_norm.abs());
    }
    // Every rank saw the whole step's loss, not its own share's.
    assert_eq!(loss_bits(&ranks[1].steps), loss_bits(&r0.steps));
    let d = max_diff(
        &weights(&dk.path().join("models/final.cllm")),
        &weights(&d1.path().join("models/final.cllm")),
    );
    assert!(d < 1e-3, "final weights differ by {d}");
    // The cluster's figures came with every step.
    let cluster: Vec<_> = r0
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Cluster(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(cluster.len(), 12);
    assert_eq!((cluster[0].ranks, cluster[0].threads_per_rank), (2, 1));
    assert_eq!(cluster[0].rank_tokens_per_sec.len(), 2);
    assert!(
        cluster
            .iter()
            .all(|c| c.rank_tokens_per_sec.iter().all(|t| *t > 0.0))
    );
    // Each rank computed half of every step: 36 of the 72 sequences.
    assert_eq!(r0.summary.as_ref().unwrap().sphere_sequences, vec![36]);
}

/// Ranks that update only their share of the weights (and gather the
/// moments whole before rank 0 saves), and pack their share of the bf16
/// weights into memory they share, train the run that ranks updating and
/// packing every weight train, bit for bit, and save the same checkpoints:
/// the weights and both AdamW moments, at every evaluation and epoch end.
/// In bf16 on every CPU (the scalar model where AVX512_BF16 is missing), so
/// the shared packs are tested everywhere.
#[test]
fn sharded_updates_give_the_same_run_and_checkpoints_as_whole_ones() {
    let (ds, dw) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = |d: &Path| {
        let mut c = config(d, 1);
        c.budget.max_steps = 0;
        c.budget.epochs = 2;
        c.evaluation.eval_every = 3;
        c.model.precision = PrecisionChoice::Bf16;
        c
    };
    let sharded = run_ranks_with(
        LocalCluster::ranks(2),
        cfg(ds.path()),
        Faults::default(),
        0,
        &|_| false,
    );
    let whole = run_ranks_with(
        LocalCluster::ranks_unsharded(2),
        cfg(dw.path()),
        Faults::default(),
        0,
        &|_| false,
    );
    assert!(sharded[0].steps.len() >= 8);
    assert_eq!(loss_bits(&sharded[0].steps), loss_bits(&whole[0].steps));
    let grad_norms =
        |o: &Outcome| -> Vec<u32> { o.steps.iter().map(|s| s.grad_norm.to_bits()).collect() };
    assert_eq!(grad_norms(&sharded[0]), grad_norms(&whole[0]));
    // Every checkpoint the run wrote, mid-run ones included.
    let saved = |d: &Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(d.join("checkpoints/test"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cllm"))
            .collect();
        v.sort();
        v.push(d.join("models/final.cllm"));
        v
    };
    let (a, b) = (saved(ds.path()), saved(dw.path()));
    assert!(a.len() >= 3, "{a:?}");
    assert_eq!(
        a.iter().map(|p| p.file_name()).collect::<Vec<_>>(),
        b.iter().map(|p| p.file_name()).collect::<Vec<_>>()
    );
    for (x, y) in a.iter().zip(&b) {
        let (x, y) = (checkpoint::load(x).unwrap(), checkpoint::load(y).unwrap());
        assert_eq!(x.state.step, y.state.step);
        assert_eq!(x.params, y.params, "weights at step {}", x.state.step);
        let (ox, oy) = (x.optimizer.unwrap(), y.optimizer.unwrap());
        assert!(
            ox.m == oy.m && ox.v == oy.v,
            "AdamW moments at step {}",
            x.state.step
        );
    }
}

#[test]
fn the_same_seed_and_layout_give_bit_identical_runs() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = run_ranks(2, config(da.path(), 2));
    let b = run_ranks(2, config(db.path(), 2));
    assert_eq!(a[0].steps.len(), 12);
    assert_eq!(loss_bits(&a[0].steps), loss_bits(&b[0].steps));
    assert_eq!(
        weights(&da.path().join("models/final.cllm")),
        weights(&db.path().join("models/final.cllm"))
    );
}

#[test]
fn only_rank_zero_writes_and_every_rank_stops_at_the_same_step() {
    let d = tempfile::tempdir().unwrap();
    // Stop asked of rank 1 alone (as a signal to one process would be).
    let out = run_ranks_with(
        LocalCluster::ranks(3),
        {
            let mut c = config(d.path(), 1);
            c.budget.max_steps = 40;
            c.batch.batch_size = 7;
            c
        },
        Faults::default(),
        1,
        &|e| matches!(e, Event::Step(s) if s.step == 5),
    );
    let ended: Vec<u64> = out
        .iter()
        .map(|o| o.summary.as_ref().expect("every rank ends cleanly").steps)
        .collect();
    assert!(ended[0] < 40, "the stop did not reach rank 0");
    assert!(
        ended.iter().all(|&s| s == ended[0]),
        "ranks ended at {ended:?}"
    );
    // One run folder, one log, one final model: rank 0's.
    let folders = |p: &str| std::fs::read_dir(d.path().join(p)).unwrap().count();
    assert_eq!(folders("checkpoints"), 1);
    assert_eq!(folders("runs"), 1);
    assert!(out[0].summary.as_ref().unwrap().final_model.is_some());
    assert!(out[1].summary.as_ref().unwrap().final_model.is_none());
    let log = std::fs::read_to_string(d.path().join("runs/test/metrics.jsonl")).unwrap();
    let steps_logged = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"step\""))
        .count();
    assert_eq!(steps_logged as u64, ended[0], "each step logged once");
    // 7 sequences over 3 ranks: 3, 2, 2 per step.
    let seqs: Vec<u64> = out
        .iter()
        .map(|o| o.summary.as_ref().unwrap().sphere_sequences[0])
        .collect();
    assert_eq!(seqs, vec![3 * ended[0], 2 * ended[0], 2 * ended[0]]);
}

#[test]
fn a_two_rank_run_resumes_exactly_on_two_ranks_and_closely_on_one() {
    let (ds, d2, d1) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let base = |d: &Path| {
        let mut c = config(d, 1);
        c.budget.max_steps = 0;
        c.budget.epochs = 2;
        c
    };
    let straight = run_ranks(2, base(ds.path()));
    let total = straight[0].steps.len() as u64;
    assert!(total >= 8, "need several steps, got {total}");
    let half = total / 2;
    for d in [&d2, &d1] {
        let first = run_ranks(2, {
            let mut c = base(d.path());
            c.budget.max_steps = half;
            c.outputs.output = d.path().join("models/half.cllm");
            c
        });
        assert_eq!(first[0].steps.len() as u64, half);
    }
    let resume = |d: &Path| TrainConfig {
        resume: Some(d.join("models/half.cllm")),
        given: vec!["max_steps".into()],
        ..base(d)
    };
    // On two ranks: the same run, bit for bit.
    let again = run_ranks(2, resume(d2.path()));
    let ck_half = checkpoint::load(&d2.path().join("models/half.cllm")).unwrap();
    assert_eq!(ck_half.train_config.ranks, 2);
    assert_eq!(
        loss_bits(&again[0].steps),
        loss_bits(&straight[0].steps[half as usize..])
    );
    assert_eq!(
        weights(&ds.path().join("models/final.cllm")),
        weights(&d2.path().join("models/final.cllm"))
    );
    // On one rank with two spheres: the same sequences, summed in another
    // order, and the run says so.
    let solo = run_solo(TrainConfig {
        threads: 2,
        given: vec!["max_steps".into(), "threads".into()],
        ..resume(d1.path())
    });
    assert!(solo.events.iter().any(|e| matches!(
        e,
        Event::Warning(w) if w.contains("resumed on 1 rank") && w.contains("order")
    )));
    assert_eq!(solo.steps.len(), again[0].steps.len());
    for (a, b) in solo.steps.iter().zip(&again[0].steps) {
        assert!((a.loss - b.loss).abs() <= 1e-4 * b.loss.abs());
    }
    let d = max_diff(
        &weights(&ds.path().join("models/final.cllm")),
        &weights(&d1.path().join("models/final.cllm")),
    );
    assert!(d < 1e-3, "weights differ by {d}");
}

#[test]
fn ranks_whose_weights_drift_apart_stop_with_an_error_and_keep_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    // Ranks that each update their share of the weights cannot drift (each
    // weight comes from one rank every step): the check guards ranks that
    // all update every weight.
    let out = run_ranks_with(
        LocalCluster::ranks_unsharded(2),
        config(d.path(), 1),
        Faults {
            perturb_rank_at_step: Some((1, 6)),
            ..Faults::default()
        },
        0,
        &|_| false,
    );
    for o in &out {
        let e = o
            .summary
            .as_ref()
            .expect_err("a drifted replica must stop the run");
        assert!(e.contains("rank 1 differ from rank 0"), "{e}");
    }
    // The best checkpoint written before the drift is intact.
    let best = checkpoint::best_path(&d.path().join("checkpoints/test"));
    assert!(checkpoint::load(&best).is_ok(), "{}", best.display());
    assert!(!d.path().join("models/final.cllm").exists());
    // The run's log ends with the failure and its reason.
    let log = std::fs::read_to_string(d.path().join("runs/test/metrics.jsonl")).unwrap();
    let end = log.lines().last().unwrap();
    assert!(
        end.contains("\"failed\"") && end.contains("differ from rank 0"),
        "{end}"
    );
}

#[test]
fn ranks_given_time_take_rank_zeros_plan() {
    let d = tempfile::tempdir().unwrap();
    let out = run_ranks(2, {
        let mut c = config(d.path(), 1);
        c.budget.epochs = 0;
        c.budget.max_steps = 0;
        c.budget.time_budget_secs = 2.0;
        c
    });
    let planned = |o: &Outcome| {
        o.events
            .iter()
            .filter(|e| matches!(e, Event::Planned { .. }))
            .count()
    };
    assert_eq!(planned(&out[0]), 1);
    assert_eq!(planned(&out[1]), 1, "rank 1 heard rank 0's plan");
    let steps: Vec<u64> = out
        .iter()
        .map(|o| o.summary.as_ref().unwrap().steps)
        .collect();
    assert_eq!(steps[0], steps[1]);
    assert_eq!(out[0].steps.last().unwrap().total_steps, steps[0]);
}

/// K copies of a build without MPI would each train alone and overwrite
/// each other's files: under `mpirun` such a build refuses, and says how
/// to build one that can.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_started_by_mpirun_refuses_to_train_alone() {
    let d = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(["train", "--data", "data", "--max-steps", "1"])
        .current_dir(d.path())
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one of 2 MPI processes"), "{err}");
    assert!(err.contains("--features mpi"), "{err}");
    assert!(!d.path().join("checkpoints").exists());
}
