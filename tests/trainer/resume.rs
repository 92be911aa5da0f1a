//! Exact resume: a run stopped and resumed with no flag repeated is the
//! straight run, bit for bit; changed settings and data are refused by name.

use super::*;

#[test]
fn resuming_half_way_is_bit_identical_to_a_straight_run() {
    let (ds, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let base = |d: &Path| {
        let mut c = config(d, 2);
        c.budget.max_steps = 0;
        c.budget.epochs = 4;
        c.model.dropout = Some(0.1);
        c
    };
    let straight = run(base(ds.path()));
    let total = straight.steps.len() as u64;
    assert!(total >= 8, "need several steps, got {total}");

    // First half: same schedule horizon (epochs), stopped by max_steps.
    let half = total / 2;
    let first = run({
        let mut c = base(dr.path());
        c.budget.max_steps = half;
        c.outputs.output = dr.path().join("models/half.cllm");
        c
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

#[test]
fn resume_of_a_run_by_steps_needs_no_flags() {
    check_exact_resume(
        |d| {
            let mut c = config(d, 2);
            c.budget.epochs = 0;
            c.budget.max_steps = 14;
            c.model.dropout = Some(0.1);
            c
        },
        5,
    );
}

#[test]
fn resume_of_a_run_by_epochs_needs_no_flags() {
    check_exact_resume(
        |d| {
            let mut c = config(d, 2);
            c.budget.epochs = 3;
            c.budget.max_steps = 0;
            c.outputs.checkpoint_every = 1;
            c
        },
        4,
    );
}

#[test]
fn resume_of_an_early_stopping_run_keeps_its_patience() {
    // A high learning rate on a tiny text: validation stops improving soon.
    let cfg = |d: &Path| {
        let mut c = config(d, 2);
        c.budget.epochs = 0;
        c.budget.max_steps = 200;
        c.optimizer.lr = 5e-2;
        c.optimizer.min_lr = 5e-2;
        c.optimizer.warmup_steps = 0;
        c.evaluation.eval_every = 2;
        c.budget.early_stop_patience = 3;
        c
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
    run({
        let mut c = config(d.path(), 1);
        c.budget.max_steps = 4;
        c
    });
    let handle = spawn({
        let mut c = resume_only(&d.path().join("models/final.cllm"), d.path());
        c.optimizer.lr = 0.05;
        c.batch.seq_len = 8;
        c.given = vec!["lr".into(), "seq_len".into()];
        c
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
fn resume_refuses_changed_data_unless_asked() {
    let d = tempfile::tempdir().unwrap();
    run({
        let mut c = config(d.path(), 1);
        c.budget.max_steps = 4;
        c
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
        spawn({
            let mut c = resume_only(file, d.path());
            c.budget.max_steps = 6;
            c.given = vec!["max_steps".into()];
            c.allow_data_change = allow;
            c
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
