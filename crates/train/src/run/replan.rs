//! A run given time looks at its plan again as it trains (the rule is in
//! `crate::budget::replan`); and any plan, the warm-up's or a later one, is
//! adopted the same way: the schedule retargeted without a jump, the change
//! kept for the checkpoints, said and logged.

use super::Run;
use super::timed::plan_change;
use crate::budget::format_duration;
use crate::budget::replan::{Window, k_tokens_per_sec, misses_deadline};
use crate::clock::{nanos, secs};
use crate::error::TrainError;
use crate::events::Event;
use crate::plan::Plan;

impl Run {
    /// Before what follows a step (its evaluation and saves, which then
    /// store the new plan): once a window of the budget has passed since
    /// the last look, the plan changes when it would miss the deadline.
    pub(super) fn replan_if_due(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), TrainError> {
        let (step, plan) = (self.progress.state.step, self.progress.plan);
        if plan.is_pending() || !self.cluster.is_writer() || step >= plan.last_step {
            return Ok(());
        }
        let now = self.measures.clock.now_ns();
        let Some(clock) = self.progress.budget.as_mut() else {
            return Ok(());
        };
        let spent = clock.spent_ns(now);
        let Some(window) = clock.window else {
            return Ok(());
        };
        if !window.is_long_enough(step, spent, clock.budget_secs) {
            return Ok(());
        }
        let Some(per_step) = window.per_step(step) else {
            return Ok(());
        };
        clock.window = Some(Window::starting(step, spent));
        let (budget, before_ns) = (clock.budget_secs, clock.plans.last().map(|p| p.step_ns));
        let costs = self.costs_from(per_step);
        if !misses_deadline(budget, secs(spent), step, plan.horizon, &costs) {
            return Ok(());
        }
        let remaining = budget - secs(spent);
        let fitted = self.fit_budget(step, secs(spent), &costs);
        if fitted.plan == plan {
            return Ok(());
        }
        let tokens = self.tokens_per_step();
        let rate = |per_step: f64| k_tokens_per_sec(tokens, per_step);
        let before = before_ns.map_or(per_step, secs);
        let cap = if fitted.by_epochs {
            format!(
                " (at most {} epochs)",
                crate::budget::max_epochs(&self.config)
            )
        } else {
            String::new()
        };
        // Under --max-steps the stop may stay where it was: then the
        // schedule's end is what changed.
        let (from, to, what) = if fitted.plan.last_step == plan.last_step {
            (plan.horizon, fitted.plan.horizon, "steps in the schedule")
        } else {
            (plan.last_step, fitted.plan.last_step, "steps")
        };
        let message = format!(
            "re-planned at step {step}, {} of {} left: {from} -> {to} {what}{cap}, {:.1} -> {:.1} \
             k tok/s",
            format_duration(remaining.max(0.0)),
            format_duration(budget),
            rate(before),
            rate(per_step),
        );
        self.adopt_plan(fitted.plan, per_step, message, emit)
    }

    /// Tokens one step trains (all ranks).
    fn tokens_per_step(&self) -> u64 {
        let b = &self.config.batch;
        (b.batch_size * b.accum_steps * b.seq_len) as u64
    }

    /// From this step on the run follows `plan`, made from steps of
    /// `per_step` seconds: the schedule ends at its horizon without a jump
    /// in the learning rate, the change is kept for the checkpoints, a new
    /// window of measurements starts, and `message` is said and logged.
    pub(super) fn adopt_plan(
        &mut self,
        plan: Plan,
        per_step: f64,
        message: String,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        let step = self.progress.state.step;
        let first = self.progress.plan.is_pending();
        self.progress.plan = plan;
        self.progress.schedule.retarget(step, plan.horizon);
        let now = self.measures.clock.now_ns();
        if let Some(clock) = self.progress.budget.as_mut() {
            clock.plans.push(plan_change(step, &plan, per_step));
            clock.window = Some(Window::starting(step, clock.spent_ns(now)));
        }
        if let Some(log) = self.outputs.log.as_mut() {
            log.plan(step, &plan, nanos(per_step), &message)?;
        }
        emit(if first {
            Event::Planned {
                total_steps: plan.last_step,
                message,
            }
        } else {
            Event::Replanned {
                step,
                total_steps: plan.last_step,
                message,
            }
        });
        Ok(())
    }

    /// A rank other than 0 takes rank 0's plan, heard after `step`: the
    /// same schedule from the same step.
    pub(super) fn take_plan(&mut self, plan: Plan, emit: &mut dyn FnMut(Event)) {
        let (step, before) = (self.progress.state.step, self.progress.plan);
        self.progress.plan = plan;
        self.progress.schedule.retarget(step, plan.horizon);
        emit(if before.is_pending() {
            Event::Planned {
                total_steps: plan.last_step,
                message: format!("rank 0 fixed the run's length: step {}", plan.last_step),
            }
        } else {
            Event::Replanned {
                step,
                total_steps: plan.last_step,
                message: format!(
                    "rank 0 re-planned at step {step}: {} -> {} steps",
                    before.last_step, plan.last_step
                ),
            }
        });
    }
}
