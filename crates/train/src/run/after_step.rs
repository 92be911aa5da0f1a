//! What follows a step: evaluation when due (a new best is saved, early
//! stopping counts), the cross-rank check, a sample, the epoch's end
//! (periodic checkpoint), a save the user asked for; and saving itself.

use super::{LastEval, Run, StepOutcome};
use crate::checkpoint;
use crate::clock::{Work, secs};
use crate::error::TrainError;
use crate::evaluate::evaluate_fitting_memory;
use crate::events::{Event, SaveReason};
use std::path::Path;
use std::time::Instant;

impl Run {
    /// What follows a step, in order, after a run given time has looked at
    /// its plan (`replan.rs`); then the warm-up's timing (`timed.rs`).
    pub fn after_step(
        &mut self,
        outcome: &StepOutcome,
        save_now: bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        self.replan_if_due(emit)?;
        let step = self.progress.state.step;
        let epoch_end = step.is_multiple_of(self.progress.plan.steps_per_epoch);
        let eval_due = (self.config.evaluation.eval_every > 0
            && step.is_multiple_of(self.config.evaluation.eval_every))
            || epoch_end;
        let can_evaluate = !self.validation.windows.is_empty();
        let writer = self.cluster.is_writer();
        self.settle_moments_before_saves(
            writer && ((eval_due && can_evaluate) || epoch_end || save_now),
        );
        if eval_due && can_evaluate && writer {
            self.evaluate(outcome.epoch, emit)?;
        }
        if self.cluster.is_distributed() && step.is_multiple_of(super::replicas::CHECK_EVERY) {
            self.check_replicas()?;
        }
        if writer
            && self.config.evaluation.sample_every > 0
            && step.is_multiple_of(self.config.evaluation.sample_every)
        {
            self.sample(step, emit);
        }
        if epoch_end {
            self.end_epoch(outcome.loss, emit)?;
        }
        if save_now && writer {
            let path = self
                .outputs
                .run_dir
                .join(format!("checkpoint_manual_step_{step}.cllm"));
            self.save(&path, SaveReason::Manual, emit)?;
        }
        self.time_warmup(emit)
    }

    /// Ranks that update only their share of the weights keep only their
    /// share of the moments: they gather them whole before rank 0 may save.
    /// Rank 0 alone knows when (a time budget's warm-up evaluates, and sets
    /// how often to, on rank 0 only), so it tells the others each step.
    fn settle_moments_before_saves(&mut self, saves_due: bool) {
        if !self.spheres.has_stale_moments() {
            return;
        }
        let may_save = saves_due || (self.cluster.is_writer() && self.progress.plan.is_pending());
        if self.cluster.gather(f64::from(u8::from(may_save)))[0] > 0.0 {
            self.spheres.settle_moments(&mut self.learner.opt);
        }
    }

    /// A short sample continuing the configured prompt.
    fn sample(&self, step: u64, emit: &mut dyn FnMut(Event)) {
        let prompt = &self.config.evaluation.sample_prompt;
        let text = cllm_generate::sample_text(
            &self.learner.model,
            &self.batches.tokenizer,
            prompt,
            64,
            self.config.seed ^ step,
        );
        emit(Event::Sample {
            step,
            text: format!("{prompt}{text}"),
        });
    }

    /// Phase 4: the validation loss; a new best is saved, and early
    /// stopping counts evaluations without one.
    pub fn evaluate(
        &mut self,
        epoch: usize,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        let started = self.measures.clock.now_ns();
        let v = &mut self.validation;
        let model = &self.learner.model;
        let mut ev = evaluate_fitting_memory(
            &mut self.spheres,
            model,
            &v.val,
            &v.windows,
            v.bytes_per_token,
            epoch,
            self.progress.state.step,
            v.memory.as_mut(),
        )?;
        if let Some(check) = &v.code_check {
            let never = std::sync::atomic::AtomicBool::new(false);
            if let Some(summary) = check
                .run(model, &self.batches.tokenizer, v.memory.as_ref(), &never)
                .map_err(|e| TrainError::CodeCheck(e.to_string()))?
            {
                ev.syntax_accuracy = Some(summary.syntax_accuracy);
                ev.closed_rate = Some(summary.closed_rate);
            }
        }
        // Without the best checkpoint it may write (timed by `save`).
        self.measures.clock.charge(Work::Evaluation);
        let took = self.measures.clock.now_ns().saturating_sub(started);
        self.measures.last_eval = Some(LastEval {
            step: self.progress.state.step,
            secs: secs(took),
        });
        if let Some(budget) = self.progress.budget.as_mut() {
            budget.eval_ns = took;
        }
        if let Some(log) = self.outputs.log.as_mut() {
            log.eval(&ev)?;
        }
        emit(Event::Eval(ev.clone()));
        self.measures.last_val_loss = Some(ev.loss);
        let state = &mut self.progress.state;
        let summary = &mut self.measures.summary;
        let better = state.best_val_loss.is_none_or(|b| ev.loss < b);
        if better && ev.loss.is_finite() {
            state.best_val_loss = Some(ev.loss);
            state.evals_without_gain = 0;
            summary.best_val_loss = Some(ev.loss);
            summary.best_bits_per_byte = Some(ev.bits_per_byte);
            let path = checkpoint::best_path(&self.outputs.run_dir);
            self.save(&path, SaveReason::Best, emit)?;
        } else {
            state.evals_without_gain += 1;
            let patience = self.config.budget.early_stop_patience as u64;
            if patience > 0 && state.evals_without_gain >= patience {
                emit(Event::Warning(format!(
                    "early stop: no validation gain in {} evaluations",
                    state.evals_without_gain
                )));
                summary.stopped_early = true;
            }
        }
        Ok(())
    }

    /// The end of an epoch: its time, and the periodic checkpoint (older
    /// ones of this run pruned).
    fn end_epoch(&mut self, last_loss: f32, emit: &mut dyn FnMut(Event)) -> Result<(), TrainError> {
        let m = &mut self.measures;
        m.summary
            .epoch_secs
            .push(m.epoch_started.elapsed().as_secs_f64());
        m.epoch_started = Instant::now();
        m.summary.epochs_done += 1;
        let n_epoch = self.progress.state.step / self.progress.plan.steps_per_epoch;
        let every = self.config.outputs.checkpoint_every as u64;
        // Rank 0 alone touches the run's files (saving and pruning).
        if every > 0 && n_epoch.is_multiple_of(every) && self.cluster.is_writer() {
            let loss = self.progress.state.best_val_loss.unwrap_or(last_loss);
            let run_dir = &self.outputs.run_dir;
            let path = checkpoint::periodic_path(run_dir, n_epoch, loss);
            self.save(&path, SaveReason::Periodic, emit)?;
            let keep = self.config.outputs.keep_checkpoints.max(1);
            if let Err(e) = checkpoint::prune_periodic(&self.outputs.run_dir, keep) {
                emit(Event::Warning(format!("old checkpoints not pruned: {e}")));
            }
        }
        Ok(())
    }

    /// Phase 5: a checkpoint of where the run stands (rank 0 only).
    pub fn save(
        &mut self,
        path: &Path,
        reason: SaveReason,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        if !self.cluster.is_writer() {
            return Ok(());
        }
        // A run given time that has not fixed its length stores 0: resumed,
        // it times its warm-up again.
        let progress = &mut self.progress;
        let pending = progress.plan.is_pending();
        progress.state.horizon = if pending { 0 } else { progress.plan.horizon };
        progress.state.last_step = if pending { 0 } else { progress.plan.last_step };
        let started = self.measures.clock.now_ns();
        progress.state.budget = progress.budget.as_ref().map(|b| b.record(started));
        self.outputs.saver.save(
            path,
            reason,
            &self.learner.model,
            &self.learner.opt,
            &progress.state,
            self.validation.memory.as_ref(),
            emit,
        )?;
        self.measures.clock.charge(Work::Save);
        if let Some(budget) = self.progress.budget.as_mut() {
            budget.save_ns = self.measures.clock.now_ns().saturating_sub(started);
        }
        Ok(())
    }
}
