//! Where a run's files go: its own checkpoint folder, the previous final
//! model kept, and the final model's weights (the best or the last).

use super::*;

#[test]
fn runs_keep_their_own_checkpoint_folders() {
    let d = tempfile::tempdir().unwrap();
    let base = |name: &str| {
        let mut c = config(d.path(), 1);
        c.outputs.run_name = name.into();
        c.budget.epochs = 3;
        c.budget.max_steps = 0;
        c.outputs.checkpoint_every = 1;
        c
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
    run({
        let mut c = base("short");
        c.budget.epochs = 1;
        c
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
    let first = run({
        let mut c = config(d.path(), 1);
        c.outputs.run_name = "a".into();
        c.budget.max_steps = 3;
        c
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
    run({
        let mut c = config(d.path(), 1);
        c.outputs.run_name = "b".into();
        c.budget.max_steps = 3;
        c
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
        {
            let mut c = config(d, 2);
            c.corpus.data = vec![data];
            c.budget.epochs = 0;
            c.budget.max_steps = 60;
            c.optimizer.lr = 1e-2;
            c.optimizer.min_lr = 1e-2;
            c.optimizer.warmup_steps = 0;
            c.evaluation.eval_every = 3;
            c.outputs.final_weights = final_weights;
            c
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
