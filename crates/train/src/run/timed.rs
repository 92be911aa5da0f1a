//! A run given time (`--time`): its clock, and the end of its warm-up,
//! where the steps that fit in what is left of the budget are fixed.

use super::Run;
use crate::budget::{
    EVAL_SHARE, WarmupTimes, eval_every_within_share, format_duration, max_epochs, steps_that_fit,
    steps_within_epochs, warmup_steps_to_time,
};
use crate::error::TrainError;
use crate::evaluate::EvalWindows;
use crate::events::Event;
use std::time::Instant;

/// What the warm-up measured: the times the plan is made from, the
/// evaluation's own time (said in the plan's message) and the memory's
/// final fit.
struct WarmupCosts {
    times: WarmupTimes,
    per_eval: f64,
    final_fit: f64,
}

/// The budget of a run given time, while its warm-up is being timed.
pub struct BudgetClock {
    pub budget_secs: f64,
    /// Seconds of this budget spent before this session's trainer started
    /// (a resumed run stopped during its warm-up).
    pub spent_before: f64,
    /// When this session's trainer started (data preparation counts).
    pub started: Instant,
    /// The first step pays page faults and cold caches: timing starts when
    /// it ends (the instant, the step, and the run's seconds between steps
    /// then, which the timing leaves out).
    timing_from: Option<(Instant, u64, f64)>,
    /// The step after which the warm-up is timed enough.
    warmup_end: Option<u64>,
}

impl BudgetClock {
    pub fn new(budget_secs: f64, spent_before: f64, started: Instant) -> BudgetClock {
        BudgetClock {
            budget_secs,
            spent_before,
            started,
            timing_from: None,
            warmup_end: None,
        }
    }

    /// Seconds of the budget spent so far.
    pub fn spent(&self) -> f64 {
        self.spent_before + self.started.elapsed().as_secs_f64()
    }

    pub fn remaining(&self) -> f64 {
        self.budget_secs - self.spent()
    }
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
        let costs = self.time_costs(per_step, emit)?;
        let spaced = self.space_evaluations(per_step, costs.times.per_eval);
        self.fix_length(&costs, &spaced, emit);
        Ok(())
    }

    /// The mean time of a step once the warm-up has timed enough of them
    /// (`None` before).
    fn time_steps(&mut self) -> Option<f64> {
        let step = self.progress.state.step;
        // The warm-up ends by the epoch cap: a small corpus may have fewer
        // steps in all than the warm-up would time.
        let cap_steps = max_epochs(&self.config).saturating_mul(self.progress.plan.steps_per_epoch);
        let between_steps = self.measures.between_steps_secs;
        let clock = self.progress.budget.as_mut()?;
        let Some((t0, s0, between0)) = clock.timing_from else {
            clock.timing_from = Some((Instant::now(), step, between_steps));
            return None;
        };
        let stepping = t0.elapsed().as_secs_f64() - (between_steps - between0);
        let per_step = stepping.max(0.0) / (step - s0).max(1) as f64;
        let end = *clock.warmup_end.get_or_insert_with(|| {
            (s0 + warmup_steps_to_time(clock.budget_secs, per_step)).min(cap_steps.max(s0 + 3))
        });
        if step < end && step < self.progress.plan.last_step {
            return None;
        }
        Some(per_step)
    }

    /// What the rest of the run costs besides its steps: one evaluation,
    /// timed (the run's first: also its first best), a checkpoint's write,
    /// and the memory's final fit.
    fn time_costs(
        &mut self,
        per_step: f64,
        emit: &mut dyn FnMut(Event),
    ) -> Result<WarmupCosts, TrainError> {
        let step = self.progress.state.step;
        let v = &self.validation;
        let per_eval = if v.windows.is_empty() {
            0.0
        } else {
            match self.measures.eval_secs_at(step) {
                Some(secs) => secs,
                None => {
                    self.evaluate(self.progress.state.epoch as usize, emit)?;
                    self.measures.eval_secs_at(step).unwrap_or(0.0)
                }
            }
        };
        let per_save = self
            .measures
            .last_save_secs
            .unwrap_or_else(|| self.save_estimate());
        // Before the final save, the memory's mix is fitted on the whole
        // validation split: about two evaluations' work per evaluated share.
        let v = &self.validation;
        let final_fit = if v.memory.is_some() && !v.windows.is_empty() {
            let all = EvalWindows::overlapping(&v.val, self.config.batch.seq_len, 0);
            2.0 * per_eval * all.len() as f64 / v.windows.len() as f64
        } else {
            0.0
        };
        Ok(WarmupCosts {
            // About half the evaluations of a run find a new best and
            // write it.
            times: WarmupTimes {
                per_step,
                per_eval: per_eval + 0.5 * per_save,
                per_save,
            },
            per_eval,
            final_fit,
        })
    }

    /// Unless the person chose how often to evaluate, evaluations take at
    /// most a twentieth of the steps' time. Returns what the plan's message
    /// says of it (empty when the interval stays).
    fn space_evaluations(&mut self, per_step: f64, per_eval: f64) -> String {
        let asked_every = self.config.evaluation.eval_every;
        if !self.config.given.iter().any(|g| g == "eval_every") {
            self.config.evaluation.eval_every =
                eval_every_within_share(asked_every, per_step, per_eval);
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

    /// Fixes the run's length to the steps that fit in what is left of the
    /// budget (no more than the epoch cap), and says so.
    fn fix_length(&mut self, costs: &WarmupCosts, spaced: &str, emit: &mut dyn FnMut(Event)) {
        let step = self.progress.state.step;
        let per_step = costs.times.per_step;
        let steps_per_epoch = self.progress.plan.steps_per_epoch;
        let overhead = costs.times.overhead_per_step(
            self.config.evaluation.eval_every,
            steps_per_epoch,
            self.config.outputs.checkpoint_every as u64,
        );
        let Some(clock) = self.progress.budget.as_ref() else {
            return;
        };
        let remaining = clock.remaining();
        let final_save = costs.times.per_save + costs.final_fit;
        let fit = steps_that_fit(remaining, per_step, overhead, final_save);
        let max_epochs = max_epochs(&self.config);
        let (steps, by_epochs) = steps_within_epochs(fit, step, steps_per_epoch, max_epochs);
        let plan = self
            .progress
            .plan
            .fixed(step, steps, self.config.budget.max_steps);
        self.progress.plan = plan;
        self.progress.schedule.total_steps = plan.horizon;
        let capped = if plan.last_step < plan.horizon {
            format!(" (--max-steps stops it at step {})", plan.last_step)
        } else {
            String::new()
        };
        let left = format_duration(remaining.max(0.0));
        let fits = if by_epochs {
            let epochs = (step + fit) as f64 / steps_per_epoch as f64;
            let why = if self.config.budget.epochs > 0 {
                "as --epochs asks"
            } else {
                "since more passes over a corpus this small overfit (--epochs N with --time \
                 sets another cap)"
            };
            self.measures.summary.epoch_cap = Some(max_epochs);
            format!(
                "{fit} more steps fit in the {left} left, {epochs:.0} passes over the data; the \
                 run stops after {max_epochs} ({steps} more steps, about {}), {why}",
                format_duration(steps as f64 * (per_step + overhead)),
            )
        } else {
            format!("{steps} more steps fit in the {left} left")
        };
        emit(Event::Planned {
            total_steps: plan.last_step,
            message: format!(
                "time budget {}: a step takes {:.0} ms and an evaluation {:.1} s, so {fits}; the \
                 schedule ends at step {}{capped}{spaced}",
                format_duration(clock.budget_secs),
                per_step * 1e3,
                costs.per_eval,
                plan.horizon,
            ),
        });
    }

    /// A checkpoint's write time before one was timed: the weights and both
    /// moments at a conservative 200 MB/s (write, sync, checksum).
    fn save_estimate(&self) -> f64 {
        (self.learner.model.layout.total * 3 * 4) as f64 / 200e6
    }
}
