//! A run given time instead of epochs: the steps fixed after a timed
//! warm-up, the epoch cap, and resuming to the step it fixed.

use super::*;

/// A run given time: the steps it takes are fixed once after its timed
/// warm-up (a `Planned` event), the schedule decays to its floor at that
/// step, and the summary reports the budget and the time it used.
#[test]
fn a_run_given_time_fixes_its_steps_after_a_timed_warmup() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path(), 2);
    cfg.budget.epochs = 0;
    cfg.budget.max_steps = 0;
    cfg.budget.time_budget_secs = 2.0;
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
    let span = cfg.optimizer.lr - cfg.optimizer.min_lr;
    assert!(
        last.lr <= cfg.optimizer.min_lr + 0.01 * span,
        "lr {}",
        last.lr
    );
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
    let mut cfg = config(d.path(), 2);
    cfg.budget.epochs = 1;
    cfg.budget.max_steps = 0;
    cfg.budget.time_budget_secs = 30.0;
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
    let span = cfg.optimizer.lr - cfg.optimizer.min_lr;
    assert!(
        last.lr <= cfg.optimizer.min_lr + 0.01 * span,
        "lr {}",
        last.lr
    );
    assert!(out.summary.budget_used_secs.unwrap() < 30.0);
}

/// Stopped after its length was fixed, a run given time resumes with no
/// flag to the same last step, without timing a warm-up again.
#[test]
fn a_run_given_time_resumes_to_the_step_it_fixed() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path(), 2);
    cfg.budget.epochs = 0;
    cfg.budget.max_steps = 0;
    cfg.budget.time_budget_secs = 3.0;
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
