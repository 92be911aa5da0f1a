//! What a run starts from: new weights, the checkpoint it resumes (its
//! model, optimizer, state and plan, checked against the data), or a base
//! model's weights with a fresh optimizer (`--init`); and the learning-rate
//! schedule and time budget it starts with.

use super::model_config_for;
use super::timed::BudgetClock;
use crate::TrainConfig;
use crate::checkpoint::{Checkpoint, TrainingState};
use crate::clock::nanos;
use crate::error::TrainError;
use crate::init::Base;
use crate::memory;
use crate::optimizer::AdamW;
use crate::plan::{PENDING, Plan, plan, resumed_plan};
use crate::schedule::Schedule;
use cllm_core::Gpt;
use cllm_data::fingerprint::DataFingerprint;

/// What a run starts from: its model and optimizer, where it stands, its
/// plan, and the memory a resumed checkpoint holds.
pub(super) struct Start {
    pub model: Gpt,
    pub opt: AdamW,
    pub state: TrainingState,
    pub plan: Plan,
    pub saved_memory: Option<Vec<u8>>,
}

/// A run given time keeps a budget. A new budget given on resume counts
/// from now; otherwise the budget spent before counts against it (older
/// files: the time trained). The checkpoint's plans are kept either way.
pub(super) fn budget_clock(
    config: &TrainConfig,
    state: &TrainingState,
    plan: &Plan,
) -> Option<BudgetClock> {
    if config.budget.time_budget_secs <= 0.0 {
        return None;
    }
    let before = if config.given.iter().any(|g| g == "time_budget_secs") {
        0
    } else {
        match &state.budget {
            Some(record) => record.spent_ns,
            None => nanos(state.elapsed_secs),
        }
    };
    Some(BudgetClock::new(
        config.budget.time_budget_secs,
        before,
        state.budget.as_ref(),
        !plan.is_pending(),
    ))
}

/// The learning-rate schedule at the run's start. A resumed run given time
/// replays the plans its checkpoint stored, so its rate is the one the run
/// had (`Schedule::retarget`); a horizon changed on resume bends it from
/// the step the run resumes at.
pub(super) fn schedule(config: &TrainConfig, state: &TrainingState, plan: &Plan) -> Schedule {
    let o = &config.optimizer;
    let plans = state.budget.as_ref().map_or(&[][..], |b| &b.plans[..]);
    if plans.is_empty() {
        return Schedule::new(o.schedule, o.lr, o.min_lr, o.warmup_steps, plan.horizon);
    }
    let mut schedule = Schedule::new(o.schedule, o.lr, o.min_lr, o.warmup_steps, PENDING);
    for p in plans {
        schedule.retarget(p.step, p.horizon);
    }
    if !plan.is_pending() && plan.horizon != schedule.total_steps() {
        schedule.retarget(state.step, plan.horizon);
    }
    schedule
}

/// What a run continues from: the checkpoint's model, optimizer, state and
/// plan, after checking that the data is the data it was trained on (or
/// that the user allowed a change), that its position agrees with its step,
/// that it fits in memory and that it has steps left.
pub(super) fn restore(
    config: &TrainConfig,
    ck: Checkpoint,
    fingerprint: DataFingerprint,
    windows: usize,
    threads: usize,
    notes: &mut Vec<String>,
) -> Result<Start, TrainError> {
    let mut state = ck.state;
    let plan = resumed_plan(config, &ck.train_config, &state, windows, notes);
    let changed = state
        .data
        .as_ref()
        .and_then(|saved| saved.difference(&fingerprint));
    if let Some(what) = &changed {
        if !config.allow_data_change {
            return Err(TrainError::DataChanged { what: what.clone() });
        }
        notes.push(format!(
            "the training data changed since the checkpoint ({what}); continuing on the \
                 new data as asked"
        ));
    }
    state.data = Some(fingerprint);
    let implied = (
        state.step / plan.steps_per_epoch,
        (state.step % plan.steps_per_epoch)
            * (config.batch.batch_size * config.batch.accum_steps) as u64,
    );
    if changed.is_none() && (state.data_epoch, state.data_index) != implied {
        return Err(TrainError::DataPosition {
            epoch: state.data_epoch,
            index: state.data_index,
            step: state.step,
            implied_epoch: implied.0,
            implied_index: implied.1,
        });
    }
    memory::check_training_fits(config, &ck.model, threads)?;
    let model = Gpt::from_params(ck.model, ck.params).map_err(TrainError::model)?;
    let opt = match ck.optimizer {
        Some(o) => AdamW::resume(o, &model.layout),
        None => {
            notes.push(
                "the checkpoint holds weights only: optimizer moments restart from zero".into(),
            );
            AdamW::new(
                config.optimizer.adamw.clone(),
                model.layout.total,
                model.layout.decay_ranges(),
            )
        }
    };
    if state.step >= plan.last_step {
        return Err(TrainError::NoStepsLeft {
            path: config.resume.clone().unwrap_or_default(),
            last_step: plan.last_step,
        });
    }
    Ok(Start {
        model,
        opt,
        state,
        plan,
        saved_memory: ck.memory,
    })
}

/// A new run's model, optimizer, state and plan. Its memory was checked in
/// `Run::settle_config`, before any data was read, with the vocabulary
/// asked for, which the trained tokenizer never exceeds.
pub(super) fn start_fresh(
    config: &TrainConfig,
    vocab_size: usize,
    fingerprint: DataFingerprint,
    windows: usize,
) -> Result<Start, TrainError> {
    let mc = model_config_for(config, vocab_size)?;
    let model = Gpt::new(mc, config.seed).map_err(TrainError::model)?;
    let state = TrainingState {
        data: Some(fingerprint),
        ..TrainingState::start()
    };
    Ok(first_step(config, model, state, windows))
}

/// A run from a base model: its weights (the run's dropout), a fresh
/// optimizer and state naming the base, a new plan. Its memory was checked
/// in `Run::settle_config`.
pub(super) fn start_from_base(
    config: &TrainConfig,
    base: Base,
    fingerprint: DataFingerprint,
    windows: usize,
) -> Result<Start, TrainError> {
    let mc = base.model_config(config);
    let model = Gpt::from_params(mc, base.checkpoint.params).map_err(TrainError::model)?;
    let state = TrainingState {
        data: Some(fingerprint),
        base: Some(base.model),
        ..TrainingState::start()
    };
    Ok(first_step(config, model, state, windows))
}

/// A run at its first step: `model` with a fresh optimizer and a new plan.
fn first_step(config: &TrainConfig, model: Gpt, state: TrainingState, windows: usize) -> Start {
    let opt = AdamW::new(
        config.optimizer.adamw.clone(),
        model.layout.total,
        model.layout.decay_ranges(),
    );
    Start {
        model,
        opt,
        state,
        plan: plan(config, windows),
        saved_memory: None,
    }
}
