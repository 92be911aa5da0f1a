//! A run given time (`--time`): its budget's clock, and the end of its
//! warm-up, where the steps that fit in what is left of the budget are
//! first fixed. Later looks at that plan are in `replan.rs`.

use super::Run;
use crate::budget::replan::{BudgetRecord, Cadence, PlanChange, RunCosts, Window};
use crate::budget::{
    EVAL_SHARE, eval_every_within_share, format_duration, max_epochs, steps_within_epochs,
    warmup_steps_to_time,
};
use crate::clock::{nanos, secs};
use crate::error::TrainError;
use crate::evaluate::EvalWindows;
use crate::events::Event;
use crate::plan::Plan;

/// The budget of a run given time: what it has spent, what it measures
/// between two looks at its plan, and every plan it made.
pub struct BudgetClock {
    pub budget_secs: f64,
    /// The budget's time spent before this session (ns).
    spent_before_ns: u64,
    /// The session's clock when the run's steps ended: a final checkpoint
    /// stores the budget spent up to there.
    ended_ns: Option<u64>,
    /// The measurements since the last look at the plan (in the warm-up:
    /// since its first step ended, which pays page faults and cold
    /// caches); `None` until then.
    pub(super) window: Option<Window>,
    /// The step after which the warm-up is timed enough.
    warmup_end: Option<u64>,
    /// The last evaluation's and checkpoint's times (ns; 0: none yet).
    pub(super) eval_ns: u64,
    pub(super) save_ns: u64,
    pub(super) plans: Vec<PlanChange>,
}

impl BudgetClock {
    /// A new run's budget, or a resumed one's from its checkpoint's record:
    /// its plans, and, when its plan stands, the measurements under way (a
    /// run that stopped in its warm-up, or is given a new budget, times a
    /// new warm-up).
    pub fn new(
        budget_secs: f64,
        spent_before_ns: u64,
        resumed: Option<&BudgetRecord>,
        plan_stands: bool,
    ) -> Self {
        let saved = resumed.cloned().unwrap_or_default();
        BudgetClock {
            budget_secs,
            spent_before_ns,
            ended_ns: None,
            window: (plan_stands && resumed.is_some()).then_some(saved.window),
            warmup_end: None,
            eval_ns: saved.eval_ns,
            save_ns: saved.save_ns,
            plans: saved.plans,
        }
    }

    /// The budget's time spent when this session's clock reads `now_ns`.
    pub fn spent_ns(&self, now_ns: u64) -> u64 {
        self.spent_before_ns.saturating_add(now_ns)
    }

    /// Where a simulated clock starts the run's time (`crate::clock`).
    #[cfg(feature = "test-faults")]
    pub fn spent_before_ns(&self) -> u64 {
        self.spent_before_ns
    }

    /// Seconds of the budget left at `now_ns`.
    pub fn remaining(&self, now_ns: u64) -> f64 {
        self.budget_secs - secs(self.spent_ns(now_ns))
    }

    /// A step that ended at `now_ns` took `took_ns`; `step` steps are done.
    pub fn stepped(&mut self, step: u64, took_ns: u64, now_ns: u64) {
        match &mut self.window {
            Some(w) => w.stepping_ns = w.stepping_ns.saturating_add(took_ns),
            None => self.window = Some(Window::starting(step, self.spent_ns(now_ns))),
        }
    }

    /// The run's steps have ended at `now_ns` (what follows is its end).
    pub fn end(&mut self, now_ns: u64) {
        self.ended_ns.get_or_insert(now_ns);
    }

    /// What a checkpoint written at `now_ns` keeps of the budget.
    pub fn record(&self, now_ns: u64) -> BudgetRecord {
        BudgetRecord {
            spent_ns: self.spent_ns(self.ended_ns.unwrap_or(now_ns)),
            window: self.window.unwrap_or_default(),
            eval_ns: self.eval_ns,
            save_ns: self.save_ns,
            plans: self.plans.clone(),
        }
    }
}

/// The plan that fits a budget from a step, and how it was decided.
pub(super) struct Fitted {
    pub plan: Plan,
    /// Steps that fit in the time left, and whether the epoch cap cut them.
    pub fit: u64,
    pub by_epochs: bool,
}

impl Run {
    /// After each step of a run whose length is not fixed yet: times the
    /// steps, then (with one evaluation timed too) fixes how many steps fit
    /// in the rest of the budget, and says so.
    pub(super) fn time_warmup(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), TrainError> {
        // Rank 0 times the run; the others take its plan (`agree_to_stop`).
        if !self.progress.plan.is_pending() || !self.cluster.is_writer() {
            return Ok(());
        }
        let Some(per_step) = self.time_steps() else {
            return Ok(());
        };
        let per_eval = self.time_evaluation(emit)?;
        let spaced = self.space_evaluations(per_step, per_eval);
        let costs = self.costs_from(per_step);
        self.fix_length(&costs, per_eval, &spaced, emit)
    }

    /// The mean time of a step once the warm-up has timed enough of them
    /// (`None` before).
    fn time_steps(&mut self) -> Option<f64> {
        let step = self.progress.state.step;
        // The warm-up ends by the epoch cap: a small corpus may have fewer
        // steps in all than the warm-up would time.
        let cap_steps = max_epochs(&self.config).saturating_mul(self.progress.plan.steps_per_epoch);
        let clock = self.progress.budget.as_mut()?;
        let window = clock.window?;
        let per_step = window.per_step(step)?;
        let s0 = window.from_step;
        let end = *clock.warmup_end.get_or_insert_with(|| {
            (s0 + warmup_steps_to_time(clock.budget_secs, per_step)).min(cap_steps.max(s0 + 3))
        });
        if step < end && step < self.progress.plan.last_step {
            return None;
        }
        Some(per_step)
    }

    /// One evaluation's time (the run's first: also its first best),
    /// evaluating unless this step was evaluated already.
    fn time_evaluation(&mut self, emit: &mut dyn FnMut(Event)) -> Result<f64, TrainError> {
        let step = self.progress.state.step;
        if self.validation.windows.is_empty() {
            return Ok(0.0);
        }
        if let Some(secs) = self.measures.eval_secs_at(step) {
            return Ok(secs);
        }
        self.evaluate(self.progress.state.epoch as usize, emit)?;
        Ok(self.measures.eval_secs_at(step).unwrap_or(0.0))
    }

    /// What the rest of the run costs at `per_step` seconds a step: the
    /// last evaluation and checkpoint as measured (a checkpoint not written
    /// yet, estimated), about half the evaluations writing a new best, and
    /// at the end the last step's evaluation, the memory's fit on the
    /// validation split (about two evaluations' work per evaluated share)
    /// and the final save.
    pub(super) fn costs_from(&self, per_step: f64) -> RunCosts {
        let (eval_ns, save_ns) = self
            .progress
            .budget
            .as_ref()
            .map_or((0, 0), |b| (b.eval_ns, b.save_ns));
        let per_eval = if self.validation.windows.is_empty() {
            0.0
        } else {
            secs(eval_ns)
        };
        let per_save = if save_ns > 0 {
            secs(save_ns)
        } else {
            self.save_estimate()
        };
        let v = &self.validation;
        let final_fit = if v.memory.is_some() && !v.windows.is_empty() {
            let all = EvalWindows::overlapping(&v.val, self.config.batch.seq_len, 0);
            2.0 * per_eval * all.len() as f64 / v.windows.len() as f64
        } else {
            0.0
        };
        RunCosts {
            per_step,
            per_eval: per_eval + 0.5 * per_save,
            per_save,
            at_end: per_eval + final_fit + per_save,
            cadence: Cadence {
                eval_every: self.config.evaluation.eval_every,
                steps_per_epoch: self.progress.plan.steps_per_epoch,
                checkpoint_every: self.config.outputs.checkpoint_every as u64,
            },
        }
    }

    /// Unless the person chose how often to evaluate, evaluations take at
    /// most a twentieth of the steps' time (the checkpoints keep the new
    /// interval). Returns what the plan's message says of it (empty when
    /// the interval stays).
    fn space_evaluations(&mut self, per_step: f64, per_eval: f64) -> String {
        let asked_every = self.config.evaluation.eval_every;
        if !self.config.given.iter().any(|g| g == "eval_every") {
            self.config.evaluation.eval_every =
                eval_every_within_share(asked_every, per_step, per_eval);
            self.outputs.saver.config.evaluation.eval_every = self.config.evaluation.eval_every;
        }
        if self.config.evaluation.eval_every == asked_every {
            return String::new();
        }
        format!(
            "; evaluating every {} steps instead of {asked_every} keeps evaluations within {:.0}% \
             of the time",
            self.config.evaluation.eval_every,
            100.0 * EVAL_SHARE
        )
    }

    /// The plan whose steps after `step` end by the deadline at `costs`
    /// (the budget's time now being `spent` seconds), no more than the
    /// epoch cap, stopped by `--max-steps`.
    pub(super) fn fit_budget(&self, step: u64, spent: f64, costs: &RunCosts) -> Fitted {
        let budget = self.config.budget.time_budget_secs;
        let fit = costs.steps_that_fit(budget, spent, step);
        let max_epochs = max_epochs(&self.config);
        let steps_per_epoch = self.progress.plan.steps_per_epoch;
        let (steps, by_epochs) = steps_within_epochs(fit, step, steps_per_epoch, max_epochs);
        Fitted {
            plan: self
                .progress
                .plan
                .fixed(step, steps, self.config.budget.max_steps),
            fit,
            by_epochs,
        }
    }

    /// Fixes the run's length to the steps that fit in what is left of the
    /// budget (no more than the epoch cap), and says so.
    fn fix_length(
        &mut self,
        costs: &RunCosts,
        per_eval: f64,
        spaced: &str,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        let step = self.progress.state.step;
        let now = self.measures.clock.now_ns();
        let Some(clock) = self.progress.budget.as_ref() else {
            return Ok(());
        };
        let (budget_secs, remaining) = (clock.budget_secs, clock.remaining(now));
        let fitted = self.fit_budget(step, secs(clock.spent_ns(now)), costs);
        let plan = fitted.plan;
        let steps = plan.horizon - step;
        let capped = if plan.last_step < plan.horizon {
            format!(" (--max-steps stops it at step {})", plan.last_step)
        } else {
            String::new()
        };
        let left = format_duration(remaining.max(0.0));
        let fits = if fitted.by_epochs {
            let max_epochs = max_epochs(&self.config);
            let epochs = (step + fitted.fit) as f64 / plan.steps_per_epoch as f64;
            let why = if self.config.budget.epochs > 0 {
                "as --epochs asks"
            } else {
                "since more passes over a corpus this small overfit (--epochs N with --time \
                 sets another cap)"
            };
            self.measures.summary.epoch_cap = Some(max_epochs);
            format!(
                "{} more steps fit in the {left} left, {epochs:.0} passes over the data; the \
                 run stops after {max_epochs} ({steps} more steps, about {}), {why}",
                fitted.fit,
                format_duration(costs.between(step, plan.horizon)),
            )
        } else {
            format!("{steps} more steps fit in the {left} left")
        };
        let message = format!(
            "time budget {}: a step takes {:.0} ms and an evaluation {per_eval:.1} s, so {fits}; \
             the schedule ends at step {}{capped}{spaced}",
            format_duration(budget_secs),
            costs.per_step * 1e3,
            plan.horizon,
        );
        self.adopt_plan(plan, costs.per_step, message, emit)
    }

    /// A checkpoint's write time before one was timed: the weights and both
    /// moments at a conservative 200 MB/s (write, sync, checksum).
    fn save_estimate(&self) -> f64 {
        (self.learner.model.layout.total * 3 * 4) as f64 / 200e6
    }
}

/// The plan change a clock records, with its step time in nanoseconds.
pub(super) fn plan_change(step: u64, plan: &Plan, per_step: f64) -> PlanChange {
    PlanChange {
        step,
        horizon: plan.horizon,
        last_step: plan.last_step,
        step_ns: nanos(per_step),
    }
}
