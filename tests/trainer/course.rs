//! A run's course: stop, samples, the NaN guard, learning, warnings about
//! the validation split, the size `auto` picks, and what is refused up front.

use super::*;

#[test]
fn stop_ends_within_one_step_and_leaves_a_loadable_model() {
    let d = tempfile::tempdir().unwrap();
    let handle = spawn({
        let mut c = config(d.path(), 2);
        c.budget.max_steps = 0;
        c.budget.epochs = 50;
        c
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
    let out = run({
        let mut c = config(d.path(), 2);
        c.evaluation.sample_every = 4;
        c.evaluation.sample_prompt = "int ".into();
        c
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
    let out = run({
        let mut c = config(d.path(), 2);
        c.budget.max_steps = 80;
        c.evaluation.eval_every = 40;
        c.optimizer.lr = 1e-2;
        c
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
    let out = run({
        let mut c = config(d.path(), 1);
        c.corpus.val_fraction = 0.0;
        c.budget.max_steps = 2;
        c
    });
    assert!(
        out.events
            .iter()
            .any(|e| matches!(e, Event::Warning(w) if w.contains("too small to evaluate"))),
        "no warning"
    );
}

/// `cllm eval` on a model's own validation split measures what the trainer
/// measured at the same step: the same split, the same tokens.
#[test]
fn cllm_eval_sees_the_trainers_validation_split() {
    let d = tempfile::tempdir().unwrap();
    let out = run({
        let mut c = config(d.path(), 2);
        c.budget.max_steps = 8;
        c.evaluation.eval_every = 8;
        c.evaluation.eval_batches = 0;
        c.corpus.tokenizer = TokenizerKind::Bpe;
        c.corpus.vocab_size = 300;
        c
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

/// Settings no machine here can hold are refused with the memory they need,
/// before any data is read, never an allocation abort.
#[test]
fn settings_the_machine_cannot_hold_are_refused_up_front() {
    let d = tempfile::tempdir().unwrap();
    let handle = spawn({
        let mut c = config(d.path(), 2);
        c.model.preset = "seed".into();
        c.batch.batch_size = 100_000;
        c.batch.seq_len = 512;
        c
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

/// `--preset auto` resolves to a named size when the data is read, says
/// which and why, and the run's checkpoint names the size it trained.
#[test]
fn preset_auto_chooses_a_size_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path(), 1);
    cfg.model.preset = "auto".into();
    cfg.batch.seq_len = 16;
    cfg.budget.max_steps = 2;
    let out = run(cfg);
    let said = out.events.iter().find_map(|e| match e {
        Event::Info(t) if t.contains("preset auto chose") => Some(t.clone()),
        _ => None,
    });
    let said = said.expect("the choice is announced");
    let ck = checkpoint::load(&d.path().join("models/final.cllm")).unwrap();
    assert!(said.contains(&ck.train_config.model.preset), "{said}");
    assert_ne!(ck.train_config.model.preset, "auto");
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
    let out = run({
        let mut c = config(d.path(), 1);
        c.budget.max_steps = 2;
        c
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
    let out = run({
        let mut c = config(d.path(), 1);
        c.corpus.data = vec![data];
        c.budget.max_steps = 2;
        c
    });
    let (warnings, notes) = said(&out);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(notes.len(), 1);
    assert!(notes[0].starts_with("validation: 0% "), "{}", notes[0]);
}
