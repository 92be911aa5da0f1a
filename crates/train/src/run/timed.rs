//! A run given time (`--time`): its clock, and the end of its warm-up,
//! where the steps that fit in what is left of the budget are fixed.

use super::Run;
use crate::budget::{
    EVAL_SHARE, WarmupTimes, eval_every_within_share, format_duration, max_epochs, steps_that_fit,
    steps_within_epochs, warmup_steps_to_time,
};
use crate::error::TrainError;
use crate::events::Event;
use std::time::Instant;

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
        let step = self.progress.state.step;
        // The warm-up ends by the epoch cap: a small corpus may have fewer
        // steps in all than the warm-up would time.
        let cap_steps = max_epochs(&self.config).saturating_mul(self.progress.plan.steps_per_epoch);
        let Some(clock) = self.progress.budget.as_mut() else {
            return Ok(());
        };
        let Some((t0, s0, between0)) = clock.timing_from else {
            clock.timing_from = Some((Instant::now(), step, self.measures.between_steps_secs));
            return Ok(());
        };
        let stepping = t0.elapsed().as_secs_f64() - (self.measures.between_steps_secs - between0);
        let per_step = stepping.max(0.0) / (step - s0).max(1) as f64;
        let end = *clock.warmup_end.get_or_insert_with(|| {
            (s0 + warmup_steps_to_time(clock.budget_secs, per_step)).min(cap_steps.max(s0 + 3))
        });
        if step < end && step < self.progress.plan.last_step {
            return Ok(());
        }
        // One evaluation, timed (the run's first: also its first best).
        let per_eval = if self.validation.windows.is_empty() {
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
        // About half the evaluations of a run find a new best and write it.
        let times = WarmupTimes {
            per_step,
            per_eval: per_eval + 0.5 * per_save,
            per_save,
        };
        // Before the final save, the memory's mix is fitted on the whole
        // validation split: about two evaluations' work per evaluated share.
        let final_fit = if self.validation.memory.is_some() && !self.validation.windows.is_empty() {
            let all = crate::evaluate::EvalWindows::overlapping(
                &self.validation.val,
                self.config.seq_len,
                0,
            );
            2.0 * per_eval * all.len() as f64 / self.validation.windows.len() as f64
        } else {
            0.0
        };
        // Unless the person chose how often to evaluate, evaluations take
        // at most a twentieth of the steps' time.
        let asked_every = self.config.eval_every;
        if !self.config.given.iter().any(|g| g == "eval_every") {
            self.config.eval_every = eval_every_within_share(asked_every, per_step, times.per_eval);
        }
        let spaced = if self.config.eval_every != asked_every {
            format!(
                "; evaluating every {} steps instead of {asked_every} keeps evaluations within {:.0}% \
                 of the time",
                self.config.eval_every,
                100.0 * EVAL_SHARE
            )
        } else {
            String::new()
        };
        let overhead = times.overhead_per_step(
            self.config.eval_every,
            self.progress.plan.steps_per_epoch,
            self.config.checkpoint_every as u64,
        );
        let Some(clock) = self.progress.budget.as_ref() else {
            return Ok(());
        };
        let remaining = clock.remaining();
        let fit = steps_that_fit(remaining, per_step, overhead, per_save + final_fit);
        let max_epochs = max_epochs(&self.config);
        let (steps, by_epochs) =
            steps_within_epochs(fit, step, self.progress.plan.steps_per_epoch, max_epochs);
        self.progress.plan = self.progress.plan.fixed(step, steps, self.config.max_steps);
        self.progress.schedule.total_steps = self.progress.plan.horizon;
        let capped = if self.progress.plan.last_step < self.progress.plan.horizon {
            format!(
                " (--max-steps stops it at step {})",
                self.progress.plan.last_step
            )
        } else {
            String::new()
        };
        let fits = if by_epochs {
            let epochs = (step + fit) as f64 / self.progress.plan.steps_per_epoch as f64;
            let why = if self.config.epochs > 0 {
                "as --epochs asks".to_string()
            } else {
                "since more passes over a corpus this small overfit (--epochs N with --time \
                 sets another cap)"
                    .to_string()
            };
            self.measures.summary.epoch_cap = Some(max_epochs);
            format!(
                "{fit} more steps fit in the {} left, {epochs:.0} passes over the data; the run \
                 stops after {max_epochs} ({steps} more steps, about {}), {why}",
                format_duration(remaining.max(0.0)),
                format_duration(steps as f64 * (per_step + overhead)),
            )
        } else {
            format!(
                "{steps} more steps fit in the {} left",
                format_duration(remaining.max(0.0))
            )
        };
        emit(Event::Planned {
            total_steps: self.progress.plan.last_step,
            message: format!(
                "time budget {}: a step takes {:.0} ms and an evaluation {:.1} s, so {fits}; the \
                 schedule ends at step {}{capped}{spaced}",
                format_duration(clock.budget_secs),
                per_step * 1e3,
                per_eval,
                self.progress.plan.horizon,
            ),
        });
        Ok(())
    }

    /// A checkpoint's write time before one was timed: the weights and both
    /// moments at a conservative 200 MB/s (write, sync, checksum).
    fn save_estimate(&self) -> f64 {
        (self.learner.model.layout.total * 3 * 4) as f64 / 200e6
    }
}
