//! The kissing-spheres trainer end to end: determinism, agreement across
//! thread counts, work sharing, stop, NaN guard, learning, exact resume.

use cllm_train::checkpoint;
use cllm_train::events::{Command, Event, StepStats, Summary};
use cllm_train::faults::Faults;
use cllm_train::{TokenizerKind, TrainConfig, TrainOptions, TrainerHandle};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        data: vec![corpus(dir)],
        preset: "tiny".into(),
        tokenizer: TokenizerKind::Bytes,
        threads,
        batch_size: 6,
        seq_len: 16,
        epochs: 1,
        max_steps: 12,
        lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 3,
        eval_every: 4,
        eval_batches: 4,
        checkpoint_every: 1,
        output: dir.join("models/final.cllm"),
        checkpoint_dir: dir.join("checkpoints"),
        runs_dir: dir.join("runs"),
        run_name: "test".into(),
        seed: 11,
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

#[test]
fn same_seed_and_threads_give_bit_identical_runs_with_dropout() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let make = |d: &Path| TrainConfig {
        dropout: Some(0.1),
        ..config(d, 3)
    };
    let a = run(make(d1.path()));
    let b = run(make(d2.path()));
    assert_eq!(a.steps.len(), 12);
    let la: Vec<u32> = a.steps.iter().map(|s| s.loss.to_bits()).collect();
    let lb: Vec<u32> = b.steps.iter().map(|s| s.loss.to_bits()).collect();
    assert_eq!(la, lb);
    assert_eq!(
        weights(&d1.path().join("models/final.cllm")),
        weights(&d2.path().join("models/final.cllm"))
    );
}

#[test]
fn one_and_three_spheres_agree_to_float_tolerance() {
    let (d1, d3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // With dropout on: masks are drawn per sequence, so they agree too.
    let make = |d: &Path, n| TrainConfig {
        dropout: Some(0.1),
        ..config(d, n)
    };
    let one = run(make(d1.path(), 1));
    let three = run(make(d3.path(), 3));
    assert_eq!(one.steps.len(), 12);
    assert_eq!(one.steps.len(), three.steps.len());
    for (a, b) in one.steps.iter().zip(&three.steps) {
        assert!(
            (a.loss - b.loss).abs() <= 1e-4 * a.loss.abs(),
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
    let wa = weights(&d1.path().join("models/final.cllm"));
    let wb = weights(&d3.path().join("models/final.cllm"));
    let max_diff = wa
        .iter()
        .zip(&wb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-3, "weights differ by {max_diff}");
    // And the summation order really differs: not trivially the same path.
    assert_eq!(three.summary.sphere_sequences.len(), 3);
}

#[test]
fn every_sphere_gets_work_and_stats_stream() {
    let d = tempfile::tempdir().unwrap();
    let out = run(TrainConfig {
        batch_size: 5,
        ..config(d.path(), 4)
    });
    assert_eq!(out.summary.sphere_sequences.len(), 4);
    assert!(
        out.summary.sphere_sequences.iter().all(|&b| b > 0),
        "{:?}",
        out.summary.sphere_sequences
    );
    assert_eq!(out.summary.sphere_sequences.iter().sum::<u64>(), 12 * 5);
    let last = out
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Spheres(s) => Some(s.clone()),
            _ => None,
        })
        .expect("sphere stats were sent");
    assert_eq!(last.len(), 4);
    assert_eq!(last[3].parent, Some(0));
    assert!(last.iter().all(|s| s.sequences > 0 && s.avg_loss > 0.0));
    // Evaluations and the metrics log.
    assert!(out.events.iter().any(|e| matches!(e, Event::Eval(_))));
    let log = std::fs::read_to_string(d.path().join("runs/test/metrics.jsonl")).unwrap();
    assert!(
        log.lines()
            .filter(|l| l.contains("\"kind\":\"step\""))
            .count()
            == 12
    );
    assert!(log.contains("\"kind\":\"eval\""));
    assert!(d.path().join("runs/test/config.json").exists());
}

#[test]
fn stop_ends_within_one_step_and_leaves_a_loadable_model() {
    let d = tempfile::tempdir().unwrap();
    let handle = spawn(TrainConfig {
        max_steps: 0,
        epochs: 50,
        ..config(d.path(), 2)
    });
    let mut steps_after_stop = 0;
    let mut stopped = false;
    let mut finished = None;
    // Events already queued when Stop is sent were emitted before it (a
    // busy test thread reads them late): they do not count.
    let mut emitted_before_stop = 0;
    while let Ok(e) = handle.events.recv_timeout(Duration::from_secs(120)) {
        if emitted_before_stop > 0 {
            emitted_before_stop -= 1;
            if !matches!(e, Event::Finished(_) | Event::Error(_)) {
                continue;
            }
        }
        match e {
            Event::Step(_) if stopped => steps_after_stop += 1,
            Event::Step(s) if s.step >= 3 => {
                handle.commands.send(Command::Stop).unwrap();
                emitted_before_stop = handle.events.len();
                stopped = true;
            }
            Event::Finished(s) => {
                finished = Some(s);
                break;
            }
            Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    let summary = finished.expect("finished after stop");
    assert!(
        steps_after_stop <= 1,
        "{steps_after_stop} steps ran after Stop"
    );
    assert!(summary.steps < 50);
    let ck = checkpoint::load(&d.path().join("models/final.cllm")).expect("loadable");
    assert_eq!(ck.state.step, summary.steps);
}

#[test]
fn samples_are_generated_every_k_steps() {
    let d = tempfile::tempdir().unwrap();
    let out = run(TrainConfig {
        sample_every: 4,
        sample_prompt: "int ".into(),
        ..config(d.path(), 2)
    });
    let samples: Vec<(u64, String)> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Sample { step, text } => Some((*step, text.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        samples.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![4, 8, 12]
    );
    assert!(
        samples
            .iter()
            .all(|(_, t)| t.starts_with("int ") && t.len() > 4)
    );
}

#[test]
fn an_injected_nan_is_skipped_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let out = run_with(
        config(d.path(), 2),
        Faults {
            nan_at_step: Some(5),
            ..Faults::default()
        },
    );
    assert_eq!(out.summary.skipped_updates, 1);
    let warned = out.events.iter().any(|e| match e {
        Event::Warning(w) => w.contains("step 6") && w.contains("not finite"),
        _ => false,
    });
    assert!(warned, "no warning for the injected NaN");
    assert_eq!(out.steps.len(), 12, "training went on");
    assert!(
        weights(&d.path().join("models/final.cllm"))
            .iter()
            .all(|w| w.is_finite())
    );
}

#[test]
fn loss_falls_on_a_small_text() {
    let d = tempfile::tempdir().unwrap();
    let out = run(TrainConfig {
        max_steps: 80,
        eval_every: 40,
        lr: 1e-2,
        ..config(d.path(), 2)
    });
    let evals: Vec<f32> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Eval(ev) => Some(ev.loss),
            _ => None,
        })
        .collect();
    let first = out.steps.first().unwrap().loss;
    let last_eval = *evals.last().unwrap();
    // Bytes: a uniform guess is ln(256) = 5.55 nats.
    assert!(first > 4.5, "initial loss {first}");
    assert!(
        last_eval < 2.5,
        "validation loss only reached {last_eval} from {first}"
    );
}

#[test]
fn resuming_half_way_is_bit_identical_to_a_straight_run() {
    let (ds, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let base = |d: &Path| TrainConfig {
        max_steps: 0,
        epochs: 4,
        dropout: Some(0.1),
        ..config(d, 2)
    };
    let straight = run(base(ds.path()));
    let total = straight.steps.len() as u64;
    assert!(total >= 8, "need several steps, got {total}");

    // First half: same schedule horizon (epochs), stopped by max_steps.
    let half = total / 2;
    let first = run(TrainConfig {
        max_steps: half,
        output: dr.path().join("models/half.cllm"),
        ..base(dr.path())
    });
    assert_eq!(first.steps.len() as u64, half);
    // Resumed with one flag given: no step limit (the rest from the file).
    let second = run(TrainConfig {
        resume: Some(dr.path().join("models/half.cllm")),
        given: vec!["max_steps".into()],
        ..base(dr.path())
    });
    let resumed: Vec<(u64, u32)> = first
        .steps
        .iter()
        .chain(&second.steps)
        .map(|s| (s.step, s.loss.to_bits()))
        .collect();
    let expected: Vec<(u64, u32)> = straight
        .steps
        .iter()
        .map(|s| (s.step, s.loss.to_bits()))
        .collect();
    assert_eq!(resumed, expected);
    assert_eq!(
        weights(&ds.path().join("models/final.cllm")),
        weights(&dr.path().join("models/final.cllm"))
    );
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
        output: dir.join("models/resumed.cllm"),
        checkpoint_dir: dir.join("checkpoints"),
        runs_dir: dir.join("runs"),
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

#[test]
fn resume_of_a_run_by_steps_needs_no_flags() {
    check_exact_resume(
        |d| TrainConfig {
            epochs: 0,
            max_steps: 14,
            dropout: Some(0.1),
            ..config(d, 2)
        },
        5,
    );
}

#[test]
fn resume_of_a_run_by_epochs_needs_no_flags() {
    check_exact_resume(
        |d| TrainConfig {
            epochs: 3,
            max_steps: 0,
            checkpoint_every: 1,
            ..config(d, 2)
        },
        4,
    );
}

#[test]
fn resume_of_an_early_stopping_run_keeps_its_patience() {
    // A high learning rate on a tiny text: validation stops improving soon.
    let cfg = |d: &Path| TrainConfig {
        epochs: 0,
        max_steps: 200,
        lr: 5e-2,
        min_lr: 5e-2,
        warmup_steps: 0,
        eval_every: 2,
        early_stop_patience: 3,
        ..config(d, 2)
    };
    let d = tempfile::tempdir().unwrap();
    let straight = run(cfg(d.path()));
    assert!(straight.summary.stopped_early, "the run must stop early");
    // Interrupt at the evaluation before the one that stopped the run: the
    // counter then stands at patience - 1, and the resumed run stops at the
    // same step only if the counter survived the resume.
    let eval_steps: Vec<u64> = straight
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Eval(ev) => Some(ev.step),
            _ => None,
        })
        .collect();
    let last_eval = *eval_steps.last().unwrap();
    assert_eq!(
        last_eval,
        straight.steps.len() as u64,
        "stopped at its last evaluation"
    );
    let before = eval_steps[eval_steps.len() - 2];
    check_exact_resume(cfg, before);
    // And the checkpoint really carried the counter.
    let dr = tempfile::tempdir().unwrap();
    let first = run_and_stop(
        cfg(dr.path()),
        |e| matches!(e, Event::Step(s) if s.step == before),
    );
    assert!(!first.summary.stopped_early);
    let ck = checkpoint::load(&dr.path().join("models/final.cllm")).unwrap();
    assert_eq!(ck.state.evals_without_gain, 2, "{:?}", ck.state);
}

#[test]
fn resume_refuses_a_changed_setting_by_name() {
    let d = tempfile::tempdir().unwrap();
    run(TrainConfig {
        max_steps: 4,
        ..config(d.path(), 1)
    });
    let handle = spawn(TrainConfig {
        lr: 0.05,
        seq_len: 8,
        given: vec!["lr".into(), "seq_len".into()],
        ..resume_only(&d.path().join("models/final.cllm"), d.path())
    });
    let err = handle
        .events
        .iter()
        .find_map(|e| match e {
            Event::Error(e) => Some(e),
            Event::Finished(_) => panic!("a changed learning rate was accepted"),
            _ => None,
        })
        .expect("an error");
    assert!(err.contains("--lr") && err.contains("--seq-len"), "{err}");
}

#[test]
fn runs_keep_their_own_checkpoint_folders() {
    let d = tempfile::tempdir().unwrap();
    let base = |name: &str| TrainConfig {
        run_name: name.into(),
        epochs: 3,
        max_steps: 0,
        checkpoint_every: 1,
        ..config(d.path(), 1)
    };
    run(base("long"));
    let long_files: Vec<String> = std::fs::read_dir(d.path().join("checkpoints/long"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        long_files
            .iter()
            .any(|f| f.starts_with("checkpoint_epoch_3_"))
    );
    let best_before =
        std::fs::read(d.path().join("checkpoints/long/checkpoint_best.cllm")).unwrap();
    // A second, shorter run with another name: the first run's files stay.
    run(TrainConfig {
        epochs: 1,
        ..base("short")
    });
    let after: Vec<String> = std::fs::read_dir(d.path().join("checkpoints/long"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut a = after.clone();
    let mut b = long_files.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(
        std::fs::read(d.path().join("checkpoints/long/checkpoint_best.cllm")).unwrap(),
        best_before
    );
    assert!(
        d.path()
            .join("checkpoints/short/checkpoint_best.cllm")
            .exists()
    );
    // The same name again does not write into the first run's folder.
    let again = run(base("long"));
    let ready = again
        .events
        .iter()
        .find_map(|e| match e {
            Event::Ready(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ready.run_name, "long-2");
}

#[test]
fn the_previous_final_model_is_never_lost_without_a_copy() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("models/final.cllm");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    // A file from elsewhere (no run folder holds a copy of it).
    std::fs::write(&out, b"someone's model").unwrap();
    let first = run(TrainConfig {
        run_name: "a".into(),
        max_steps: 3,
        ..config(d.path(), 1)
    });
    assert!(
        first
            .events
            .iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("kept as")))
    );
    let kept = d.path().join("models/final.before-a.cllm");
    assert_eq!(std::fs::read(&kept).unwrap(), b"someone's model");
    // A model whose run folder holds its copy is replaced without a backup.
    run(TrainConfig {
        run_name: "b".into(),
        max_steps: 3,
        ..config(d.path(), 1)
    });
    let names: Vec<String> = std::fs::read_dir(d.path().join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(d.path().join("checkpoints/b/final.cllm")).unwrap()
    );
}

#[test]
fn a_stop_during_data_preparation_is_a_stop() {
    let d = tempfile::tempdir().unwrap();
    let handle = spawn(config(d.path(), 1));
    handle.commands.send(Command::Stop).unwrap();
    let mut finished = None;
    for e in handle.events.iter() {
        match e {
            Event::Finished(s) => finished = Some(s),
            Event::Error(e) => panic!("a stop became an error: {e}"),
            _ => {}
        }
    }
    // The stop may land before or after preparation ends; either way it
    // is not an error, and a stop before training saves nothing.
    let s = finished.expect("Finished");
    if s.steps == 0 && s.final_model.is_none() {
        assert!(!d.path().join("models/final.cllm").exists());
    }
}

#[test]
fn a_tiny_validation_split_is_a_visible_warning() {
    let d = tempfile::tempdir().unwrap();
    let out = run(TrainConfig {
        val_fraction: 0.0,
        max_steps: 2,
        ..config(d.path(), 1)
    });
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("too small to evaluate"))),
        "no warning"
    );
}

#[test]
fn accumulation_runs_micro_batches_in_the_same_memory() {
    let ready = |out: &Outcome| {
        out.events
            .iter()
            .find_map(|e| match e {
                Event::Ready(r) => Some(r.clone()),
                _ => None,
            })
            .unwrap()
    };
    let (d1, d8) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = run(TrainConfig {
        max_steps: 3,
        ..config(d1.path(), 2)
    });
    let eight = run(TrainConfig {
        max_steps: 3,
        accum_steps: 8,
        ..config(d8.path(), 2)
    });
    let (w1, w8) = (ready(&one).workspace_bytes, ready(&eight).workspace_bytes);
    eprintln!("workspace at K = 1: {w1} bytes; at K = 8: {w8} bytes");
    assert!(w1 > 0);
    assert_eq!(w1, w8, "the workspace grew with accumulation");
    // And the step really saw 8x the sequences.
    assert_eq!(
        eight.summary.sphere_sequences.iter().sum::<u64>(),
        8 * one.summary.sphere_sequences.iter().sum::<u64>()
    );
}

#[test]
fn resume_refuses_changed_data_unless_asked() {
    let d = tempfile::tempdir().unwrap();
    run(TrainConfig {
        max_steps: 4,
        ..config(d.path(), 1)
    });
    let ck = d.path().join("models/final.cllm");
    let second = d.path().join("models/second.cllm");
    std::fs::copy(&ck, &second).unwrap();
    // Someone edits a file of the corpus after the checkpoint.
    let a = d.path().join("data/a.c");
    let mut text = std::fs::read_to_string(&a).unwrap();
    text.push_str("int added(void) { return 42; }\n");
    std::fs::write(&a, text).unwrap();
    let resume = |allow: bool, file: &Path| {
        spawn(TrainConfig {
            max_steps: 6,
            given: vec!["max_steps".into()],
            allow_data_change: allow,
            ..resume_only(file, d.path())
        })
    };
    let err = resume(false, &ck)
        .events
        .iter()
        .find_map(|e| match e {
            Event::Error(e) => Some(e),
            Event::Finished(_) => panic!("changed data was accepted silently"),
            _ => None,
        })
        .unwrap();
    assert!(
        err.contains("not what the checkpoint was trained on")
            && err.contains("--allow-data-change"),
        "{err}"
    );
    assert!(err.contains("a.c") || err.contains("file"), "{err}");
    // Asked for explicitly: it goes on, and says so.
    let out = drive(resume(true, &second), |_| false);
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("training data changed")))
    );
    assert_eq!(out.summary.steps, 6);
}

/// `cllm eval` on a model's own validation split measures what the trainer
/// measured at the same step: the same split, the same tokens.
#[test]
fn cllm_eval_sees_the_trainers_validation_split() {
    let d = tempfile::tempdir().unwrap();
    let out = run(TrainConfig {
        max_steps: 8,
        eval_every: 8,
        eval_batches: 0,
        tokenizer: TokenizerKind::Bpe,
        vocab_size: 300,
        ..config(d.path(), 2)
    });
    let last = out
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Eval(ev) => Some(ev.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(last.step, 8);
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_cllm"))
        .current_dir(d.path())
        .args([
            "eval",
            "--model",
            "models/final.cllm",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    let loss = v["loss"].as_f64().unwrap();
    assert!(
        (loss - last.loss as f64).abs() < 1e-4 * loss,
        "cllm eval {loss} vs the trainer's {}",
        last.loss
    );
}

/// While a run trains, no snapshot calls a working sphere idle: each reads
/// computing, waiting or reducing; the last one, after the run, reads idle.
#[test]
fn sphere_states_say_what_the_spheres_do() {
    use cllm_train::events::SphereState;
    let d = tempfile::tempdir().unwrap();
    let out = run(TrainConfig {
        max_steps: 6,
        ..config(d.path(), 3)
    });
    let snapshots: Vec<&Vec<cllm_train::events::SphereStats>> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Spheres(s) => Some(s),
            _ => None,
        })
        .collect();
    let (last, during) = snapshots.split_last().unwrap();
    assert!(last.iter().all(|s| s.state == SphereState::Idle));
    let trained: Vec<_> = during
        .iter()
        .filter(|s| s.iter().any(|x| x.sequences > 0))
        .collect();
    assert!(!trained.is_empty());
    for snap in &trained {
        assert!(
            snap.iter().all(|s| s.state != SphereState::Idle),
            "a sphere with work reads idle: {snap:?}"
        );
    }
    let seen = |st: SphereState| trained.iter().any(|s| s.iter().any(|x| x.state == st));
    assert!(seen(SphereState::Computing) && seen(SphereState::Reducing));
}

/// Settings no machine here can hold are refused with the memory they need,
/// before any data is read, never an allocation abort.
#[test]
fn settings_the_machine_cannot_hold_are_refused_up_front() {
    let d = tempfile::tempdir().unwrap();
    let handle = spawn(TrainConfig {
        preset: "seed".into(),
        batch_size: 100_000,
        seq_len: 512,
        ..config(d.path(), 2)
    });
    let mut phases = 0;
    let err = loop {
        match handle.events.recv_timeout(Duration::from_secs(60)).unwrap() {
            Event::Error(e) => break e,
            Event::Phase(_) => phases += 1,
            Event::Finished(_) => panic!("a run of 100,000 x 512 tokens was started"),
            _ => {}
        }
    };
    assert!(err.contains("needs about") && err.contains("TiB"), "{err}");
    assert_eq!(phases, 0, "data was prepared before the refusal");
}

/// A run given time: the steps it takes are fixed once after its timed
/// warm-up (a `Planned` event), the schedule decays to its floor at that
/// step, and the summary reports the budget and the time it used.
#[test]
fn a_run_given_time_fixes_its_steps_after_a_timed_warmup() {
    let d = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 0,
        max_steps: 0,
        time_budget_secs: 2.0,
        ..config(d.path(), 2)
    };
    let out = run(cfg.clone());
    let planned: Vec<u64> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Planned { total_steps, .. } => Some(*total_steps),
            _ => None,
        })
        .collect();
    assert_eq!(planned.len(), 1, "the length is fixed exactly once");
    let total = planned[0];
    let last = out.steps.last().unwrap();
    assert_eq!(last.step, total);
    assert_eq!(out.summary.steps, total);
    // Before the plan the length is unknown (0); after it, every step says it.
    assert_eq!(out.steps[0].total_steps, 0);
    assert_eq!(last.total_steps, total);
    // The schedule reached its floor at the last step.
    let span = cfg.lr - cfg.min_lr;
    assert!(last.lr <= cfg.min_lr + 0.01 * span, "lr {}", last.lr);
    assert_eq!(out.summary.time_budget_secs, Some(2.0));
    assert!(out.summary.budget_used_secs.unwrap() > 0.0);
    // The checkpoint stores the fixed length, so a resume keeps it.
    let ck = checkpoint::load(&d.path().join("models/final.cllm")).unwrap();
    assert_eq!((ck.state.horizon, ck.state.last_step), (total, total));
}

/// A budget that would fit more passes over the data than the cap (here
/// `--epochs 1` given with the time) ends at the cap, long before the
/// time, with the schedule at its floor, and says so.
#[test]
fn a_run_given_time_stops_at_its_epoch_cap() {
    let d = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        max_steps: 0,
        time_budget_secs: 30.0,
        ..config(d.path(), 2)
    };
    let out = run(cfg.clone());
    let plan = out
        .events
        .iter()
        .find_map(|e| match e {
            Event::Planned { message, .. } => Some(message.clone()),
            _ => None,
        })
        .expect("the length is fixed");
    assert!(
        plan.contains("stops after 1 (") && plan.contains("as --epochs asks"),
        "{plan}"
    );
    assert_eq!(out.summary.epoch_cap, Some(1));
    assert_eq!(out.summary.epochs_done, 1);
    let last = out.steps.last().unwrap();
    let span = cfg.lr - cfg.min_lr;
    assert!(last.lr <= cfg.min_lr + 0.01 * span, "lr {}", last.lr);
    assert!(out.summary.budget_used_secs.unwrap() < 30.0);
}

/// Stopped after its length was fixed, a run given time resumes with no
/// flag to the same last step, without timing a warm-up again.
#[test]
fn a_run_given_time_resumes_to_the_step_it_fixed() {
    let d = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 0,
        max_steps: 0,
        time_budget_secs: 3.0,
        ..config(d.path(), 2)
    };
    let planned = std::sync::Mutex::new(None::<u64>);
    let first = run_and_stop(cfg, |e| {
        let mut p = planned.lock().unwrap();
        match e {
            Event::Planned { total_steps, .. } => {
                *p = Some(*total_steps);
                false
            }
            Event::Step(s) => p.is_some_and(|t| s.step + 5 < t),
            _ => false,
        }
    });
    let total = planned.lock().unwrap().expect("the run fixed its length");
    let stopped = first.steps.last().unwrap().step;
    assert!(stopped < total, "the stop came before the end");
    let second = run(resume_only(&d.path().join("models/final.cllm"), d.path()));
    assert!(
        !second
            .events
            .iter()
            .any(|e| matches!(e, Event::Planned { .. })),
        "a resumed run keeps its fixed length"
    );
    assert_eq!(second.steps.first().unwrap().step, stopped + 1);
    assert_eq!(second.steps.last().unwrap().step, total);
    assert!(second.steps.iter().all(|s| s.total_steps == total));
}

/// `--preset auto` resolves to a named size when the data is read, says
/// which and why, and the run's checkpoint names the size it trained.
#[test]
fn preset_auto_chooses_a_size_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        preset: "auto".into(),
        seq_len: 16,
        max_steps: 2,
        ..config(d.path(), 1)
    };
    let out = run(cfg);
    let said = out.events.iter().find_map(|e| match e {
        Event::Info(t) if t.contains("preset auto chose") => Some(t.clone()),
        _ => None,
    });
    let said = said.expect("the choice is announced");
    let ck = checkpoint::load(&d.path().join("models/final.cllm")).unwrap();
    assert!(said.contains(&ck.train_config.preset), "{said}");
    assert_ne!(ck.train_config.preset, "auto");
}

/// A validation split that mostly repeats the training part (this corpus
/// is a few lines over and over) is a visible warning at the start of a
/// run; one that does not is a plain note with its share.
#[test]
fn a_validation_split_that_repeats_training_is_a_visible_warning() {
    let said = |out: &Outcome| -> (Vec<String>, Vec<String>) {
        let pick = |warning: bool| {
            out.events
                .iter()
                .filter_map(|e| match e {
                    Event::Warning(w) if warning && w.contains("passages") => Some(w.clone()),
                    Event::Info(i) if !warning && i.contains("passages") => Some(i.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        (pick(true), pick(false))
    };
    let d = tempfile::tempdir().unwrap();
    let out = run(TrainConfig {
        max_steps: 2,
        ..config(d.path(), 1)
    });
    let (warnings, notes) = said(&out);
    assert_eq!(warnings.len(), 1, "{warnings:?} {notes:?}");
    assert!(warnings[0].contains("flatter"), "{}", warnings[0]);
    assert!(notes.is_empty());

    // Text that never repeats a 32-byte passage: a note, no warning.
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("fresh");
    std::fs::create_dir_all(&data).unwrap();
    let mut x = 12345u64;
    let text: String = (0..20_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + (x >> 59) as u8 % 26) as char
        })
        .collect();
    std::fs::write(data.join("fresh.txt"), text).unwrap();
    let out = run(TrainConfig {
        data: vec![data],
        max_steps: 2,
        ..config(d.path(), 1)
    });
    let (warnings, notes) = said(&out);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(notes.len(), 1);
    assert!(notes[0].starts_with("validation: 0% "), "{}", notes[0]);
}

/// A run that trains past its best validation loss ends with the best
/// step's weights (the default), or the last step's when asked; a resumed
/// run whose best came before the resume reads them from the best
/// checkpoint and ends with the same model as a straight run.
#[test]
fn a_run_past_its_best_ends_with_the_best_weights() {
    use cllm_train::FinalWeights;
    // Digits that count up, and a validation tail (the last tenth) that
    // counts down: the model first learns which characters occur (both
    // losses fall), then that each digit follows the one below it, which
    // the validation text contradicts.
    let cfg = |d: &Path, final_weights: FinalWeights| {
        let data = d.join("counting");
        std::fs::create_dir_all(&data).unwrap();
        let text = "0123456789\n".repeat(900) + &"9876543210\n".repeat(100);
        std::fs::write(data.join("digits.txt"), text).unwrap();
        TrainConfig {
            data: vec![data],
            epochs: 0,
            max_steps: 60,
            lr: 1e-2,
            min_lr: 1e-2,
            warmup_steps: 0,
            eval_every: 3,
            final_weights,
            ..config(d, 2)
        }
    };
    let (db, dl) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let best = run(cfg(db.path(), FinalWeights::Best));
    let last = run(cfg(dl.path(), FinalWeights::Last));
    let evals: Vec<(u64, f32)> = best
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Eval(ev) => Some((ev.step, ev.loss)),
            _ => None,
        })
        .collect();
    let step = best
        .summary
        .final_weights_step
        .unwrap_or_else(|| panic!("the run went past its best (the test needs it to): {evals:?}"));
    assert!(
        step < 60 && step.is_multiple_of(3),
        "best at step {step}: {evals:?}"
    );
    let (b, l) = (
        best.summary.best_val_loss.unwrap(),
        best.summary.last_val_loss.unwrap(),
    );
    assert!(b < l, "best {b} last {l}");
    assert!(
        best.events
            .iter()
            .any(|e| matches!(e, Event::Info(t) if t.contains(&format!("step {step}'s weights")))),
        "the choice is announced"
    );
    // The final model is the best checkpoint's weights, which the run that
    // keeps the last step's ends without.
    let best_ck = weights(&db.path().join("checkpoints/test/checkpoint_best.cllm"));
    let final_best = weights(&db.path().join("models/final.cllm"));
    let final_last = weights(&dl.path().join("models/final.cllm"));
    assert_eq!(final_best, best_ck);
    assert_ne!(final_last, best_ck);
    assert_eq!(last.summary.final_weights_step, None);
    assert_eq!(
        weights(&dl.path().join("checkpoints/test/checkpoint_best.cllm")),
        best_ck,
        "same seed, same trajectory"
    );
    // Stopped after its best and resumed: the best comes from the file.
    check_exact_resume(|d| cfg(d, FinalWeights::Best), step + 7);
}
