//! A run given time instead of epochs: the steps fixed after a timed
//! warm-up, the epoch cap, resuming to the step it fixed, and the plan
//! changed as the machine's load changes (on a simulated machine: the
//! tests set what a step costs and when the machine is loaded).

use super::*;
use cllm_train::clock::SimulatedLoad;

/// A simulated machine: steps of 100 ms, evaluations of 400 ms and saves
/// of 20 ms, steps three times as slow while the run's time (seconds) is
/// in `loaded`.
fn machine(loaded: std::ops::Range<f64>) -> SimulatedLoad {
    let ns = |s: f64| (s * 1e9) as u64;
    SimulatedLoad {
        step_ns: ns(0.1),
        eval_ns: ns(0.4),
        save_ns: ns(0.02),
        loaded: ns(loaded.start)..ns(loaded.end),
        slowdown_percent: 300,
    }
}

/// A steady machine: nothing ever loads it.
fn steady() -> SimulatedLoad {
    machine(0.0..0.0)
}

/// A run given `secs` of time and no epochs nor steps, without the memory
/// (whose final fit a simulated machine does not charge).
fn timed(dir: &Path, secs: f64) -> TrainConfig {
    let mut cfg = config(dir, 2);
    cfg.budget.epochs = 0;
    cfg.budget.max_steps = 0;
    cfg.budget.time_budget_secs = secs;
    cfg.model.memory = false;
    cfg
}

fn faults(load: SimulatedLoad) -> Faults {
    Faults {
        load: Some(load),
        ..Faults::default()
    }
}

/// The steps a run re-planned after, and the step each new plan stops at.
fn replans(out: &Outcome) -> Vec<(u64, u64)> {
    out.events
        .iter()
        .filter_map(|e| match e {
            Event::Replanned {
                step, total_steps, ..
            } => Some((*step, *total_steps)),
            _ => None,
        })
        .collect()
}

/// A run given time: the steps it takes are fixed once after its timed
/// warm-up (a `Planned` event), the schedule decays to its floor at that
/// step, and the summary reports the budget and the time it used.
#[test]
fn a_run_given_time_fixes_its_steps_after_a_timed_warmup() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path(), 2);
    cfg.budget.epochs = 0;
    cfg.budget.max_steps = 0;
    cfg.budget.time_budget_secs = 20.0;
    let out = run_with(cfg.clone(), faults(steady()));
    let planned: Vec<u64> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Planned { total_steps, .. } => Some(*total_steps),
            _ => None,
        })
        .collect();
    assert_eq!(planned.len(), 1, "the length is fixed exactly once");
    assert_eq!(replans(&out), [], "a steady machine keeps its plan");
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
    assert_eq!(out.summary.time_budget_secs, Some(20.0));
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
    cfg.budget.time_budget_secs = 30.0;
    let planned = std::sync::Mutex::new(None::<u64>);
    let first = run_and_stop_on(cfg, steady(), |e| {
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
    let second = run_with(
        resume_only(&d.path().join("models/final.cllm"), d.path()),
        faults(steady()),
    );
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

/// Runs `config` on the simulated machine `load`, sending Stop once
/// `stop_when` says so.
fn run_and_stop_on(
    config: TrainConfig,
    load: SimulatedLoad,
    stop_when: impl Fn(&Event) -> bool,
) -> Outcome {
    let options = TrainOptions {
        faults: faults(load),
        ..TrainOptions::default()
    };
    drive(cllm_train::spawn(config, options), stop_when)
}

/// The step the warm-up's plan stops at.
fn planned_total(out: &Outcome) -> u64 {
    out.events
        .iter()
        .find_map(|e| match e {
            Event::Planned { total_steps, .. } => Some(*total_steps),
            _ => None,
        })
        .expect("the warm-up fixed a length")
}

/// The share of its budget a run used (on the simulated machine).
fn budget_used(out: &Outcome) -> f64 {
    out.summary.budget_used_secs.unwrap() / out.summary.time_budget_secs.unwrap()
}

/// Between two steps the learning rate moves by less than 1% of its span
/// (a plan changed without bending the schedule would jump), and the last
/// step is at the floor.
fn assert_schedule_is_smooth(cfg: &TrainConfig, out: &Outcome) {
    let span = cfg.optimizer.lr - cfg.optimizer.min_lr;
    for pair in out.steps.windows(2) {
        let jump = (pair[1].lr - pair[0].lr).abs();
        if pair[0].step >= cfg.optimizer.warmup_steps {
            assert!(
                jump < 0.01 * span,
                "lr jumps by {jump} at step {}",
                pair[1].step
            );
        }
    }
    let last = out.steps.last().unwrap();
    assert!(
        last.lr <= cfg.optimizer.min_lr + 0.01 * span,
        "lr {}",
        last.lr
    );
}

/// A run whose start is slowed by another program (its warm-up times the
/// slow steps) speeds up once the load stops, re-plans to more steps, and
/// ends within 5% of its budget.
#[test]
fn a_run_loaded_at_its_start_replans_and_ends_on_time() {
    let d = tempfile::tempdir().unwrap();
    let cfg = timed(d.path(), 200.0);
    let out = run_with(cfg.clone(), faults(machine(0.0..30.0)));
    let changes = replans(&out);
    assert!(
        !changes.is_empty(),
        "the plan changed when the load stopped"
    );
    let planned = planned_total(&out);
    let (first_at, first_total) = changes[0];
    assert!(first_total > planned, "{planned} -> {first_total}");
    // The load ends near step 90 (steps of 0.3 s, evaluations, the
    // warm-up): the plan holds while the machine is as slow as when it was
    // timed, and changes within two looks (4 s each) after.
    assert!(
        (60..200).contains(&first_at),
        "re-planned at step {first_at}"
    );
    let used = budget_used(&out);
    assert!(
        (0.95..=1.05).contains(&used),
        "used {used:.3} of the budget"
    );
    assert_eq!(out.steps.last().unwrap().step, changes.last().unwrap().1);
    assert_schedule_is_smooth(&cfg, &out);
    // Said as it happened, and kept in the run's log and checkpoint.
    let said = out
        .events
        .iter()
        .find_map(|e| match e {
            Event::Replanned { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        said.starts_with(&format!("re-planned at step {first_at}, "))
            && said.contains(&format!("{planned} -> {first_total} steps"))
            && said.ends_with("k tok/s"),
        "{said}"
    );
    let log = std::fs::read_to_string(d.path().join("runs/test/metrics.jsonl")).unwrap();
    let plan_lines = log
        .lines()
        .filter(|l| l.contains(r#""kind":"plan""#))
        .count();
    assert_eq!(plan_lines, 1 + changes.len());
    let ck = checkpoint::load(&d.path().join("models/final.cllm")).unwrap();
    let record = ck.state.budget.expect("a run given time keeps its budget");
    assert_eq!(record.plans.len(), 1 + changes.len());
    assert_eq!(record.plans[1].step, first_at);
}

/// A run that meets a load in its middle re-plans to fewer steps, then,
/// when the load is gone, to more, and ends within 5% of its budget.
#[test]
fn a_run_loaded_in_its_middle_replans_and_ends_on_time() {
    let d = tempfile::tempdir().unwrap();
    let cfg = timed(d.path(), 200.0);
    let out = run_with(cfg.clone(), faults(machine(70.0..130.0)));
    // The plan's length, from the warm-up's on: first cut, then grown.
    let mut totals = vec![planned_total(&out)];
    totals.extend(replans(&out).iter().map(|c| c.1));
    let cut = totals.windows(2).position(|w| w[1] < w[0]);
    let cut = cut.unwrap_or_else(|| panic!("the load cut the plan: {totals:?}"));
    assert!(
        totals[cut + 1..].windows(2).any(|w| w[1] > w[0]),
        "the plan grew again after the load: {totals:?}"
    );
    let used = budget_used(&out);
    assert!(
        (0.95..=1.05).contains(&used),
        "used {used:.3} of the budget"
    );
    assert_schedule_is_smooth(&cfg, &out);
}

/// Stopped after a re-plan and resumed, a run given time replays the plans
/// its checkpoint stored and goes on re-planning from the budget it had
/// left: on the same (simulated) machine its losses, plans and weights are
/// those of the run that never stopped.
#[test]
fn a_run_resumed_after_a_replan_is_bit_identical() {
    let (ds, dr) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let load = || machine(0.0..30.0);
    let straight = run_with(timed(ds.path(), 200.0), faults(load()));
    let changes = replans(&straight);
    assert!(changes.len() >= 2, "{changes:?}");
    let stop_at = changes[0].0 + 5;
    let first = run_and_stop_on(
        timed(dr.path(), 200.0),
        load(),
        |e| matches!(e, Event::Step(s) if s.step == stop_at),
    );
    let stopped = first.steps.last().unwrap().step;
    assert!(stopped > changes[0].0 && stopped < straight.steps.len() as u64);
    let second = run_with(
        resume_only(&dr.path().join("models/final.cllm"), dr.path()),
        faults(load()),
    );
    assert!(
        !second
            .events
            .iter()
            .any(|e| matches!(e, Event::Planned { .. })),
        "a resumed run does not time a warm-up again"
    );
    let mut joined = first.steps.clone();
    joined.extend(second.steps.iter().cloned());
    assert_eq!(loss_bits(&joined), loss_bits(&straight.steps));
    let lrs = |steps: &[StepStats]| steps.iter().map(|s| s.lr.to_bits()).collect::<Vec<_>>();
    assert_eq!(lrs(&joined), lrs(&straight.steps));
    let later: Vec<(u64, u64)> = changes.iter().copied().filter(|c| c.0 > stopped).collect();
    assert_eq!(replans(&second), later);
    assert_eq!(
        weights(&ds.path().join("models/final.cllm")),
        weights(&dr.path().join("models/resumed.cllm"))
    );
    assert_eq!(
        second.summary.budget_used_secs,
        straight.summary.budget_used_secs
    );
}

/// Under `--max-steps` a re-plan moves the schedule's end, never the stop.
#[test]
fn a_replanned_run_keeps_its_step_cap() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = timed(d.path(), 200.0);
    cfg.budget.max_steps = 500;
    let out = run_with(cfg, faults(machine(20.0..40.0)));
    let changes = replans(&out);
    assert!(!changes.is_empty(), "the load changed the plan");
    assert!(changes.iter().all(|c| c.1 == 500), "{changes:?}");
    assert_eq!(out.steps.last().unwrap().step, 500);
    let said = out.events.iter().find_map(|e| match e {
        Event::Replanned { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert!(said.unwrap().contains("steps in the schedule"));
}
