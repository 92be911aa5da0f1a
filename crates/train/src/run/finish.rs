//! Phase 6, the finish: the final weights settled (the best step's when the
//! run trained past it), the memory's mix fitted, the final model in the
//! run's folder and at the output path, and the summary.

use super::Run;
use crate::FinalWeights;
use crate::checkpoint;
use crate::error::TrainError;
use crate::evaluate::{EvalWindows, fit_memory_on};
use crate::events::{Event, SaveReason, Summary};
use crate::metrics::{imbalance, peak_memory_bytes};
use crate::saving::{RUN_FINAL_NAME, copy_atomically, keep_previous_output};
use std::time::Instant;

/// How much worse (relative) than the best the last step's validation loss
/// must be before the final model takes the best step's weights: a run that
/// ends on its plateau, a hair above its best, keeps its last step's.
const PAST_BEST: f32 = 0.005;

impl Run {
    /// Phase 6: the final model (also after a stop: the last step's
    /// weights) in the run's folder and at the output path, and the summary.
    pub fn finish(mut self, emit: &mut dyn FnMut(Event)) -> Result<Summary, TrainError> {
        let finished = self.wrap_up(emit);
        if let Err(e) = &finished {
            self.log_failure(e);
        }
        finished
    }

    fn wrap_up(&mut self, emit: &mut dyn FnMut(Event)) -> Result<Summary, TrainError> {
        // The final checkpoint stores the budget spent by the steps: a
        // resumed run pays its own end again.
        let now = self.measures.clock.now_ns();
        if let Some(budget) = self.progress.budget.as_mut() {
            budget.end(now);
        }
        self.spheres.settle_moments(&mut self.learner.opt);
        self.spheres.rest();
        emit(Event::Spheres(self.spheres.stats()));
        if self.cluster.is_distributed() {
            self.check_replicas()?;
        }
        if !self.cluster.is_writer() {
            return Ok(self.replica_summary());
        }
        let output = match self.cluster.last_step().saved() {
            // Written at once when the job was ended: the final checkpoint.
            Some(saved) => {
                let path = if saved.copied {
                    saved.output
                } else {
                    saved.run_final
                };
                emit(Event::Warning(format!(
                    "the final model holds step {}, saved at once when the run was ended",
                    saved.step
                )));
                emit(Event::Checkpoint {
                    path: path.clone(),
                    reason: SaveReason::Final,
                });
                path
            }
            None => {
                self.settle_final_weights(emit)?;
                self.publish_final_model(emit)?
            }
        };
        self.fill_summary(output);
        self.warn_if_stopped(emit);
        // The log's end line (runlog): stopped before the last step, or finished.
        let stopped = self.stopped();
        if let Some(log) = self.outputs.log.as_mut() {
            log.end(&self.measures.summary, stopped, &self.spheres.stats())?;
        }
        Ok(self.measures.summary.clone())
    }

    /// Before the final save, in a run that finished its schedule: the last
    /// step evaluated (when its step was not), and under
    /// `FinalWeights::Best` the best validation loss's weights in place of
    /// the last step's when those are worse: many epochs over a small
    /// corpus overfit, and the last step can be far worse than the best.
    fn settle_final_weights(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), TrainError> {
        // A run cut short by --max-steps or a stop is resumable exactly: its
        // final model keeps the last step's weights. One that finished its
        // schedule (or stopped early) is done.
        let (state, plan) = (&self.progress.state, &self.progress.plan);
        let finished = state.step >= plan.horizon || self.measures.summary.stopped_early;
        if !finished || plan.is_pending() || self.validation.windows.is_empty() {
            return Ok(());
        }
        if self.measures.eval_secs_at(state.step).is_none() {
            // An evaluation, not a patience check: the run has ended.
            let stopped_early = self.measures.summary.stopped_early;
            self.evaluate(self.progress.state.epoch as usize, emit)?;
            self.measures.summary.stopped_early = stopped_early;
        }
        let (Some(best), Some(last)) = (
            self.progress.state.best_val_loss,
            self.measures.last_val_loss,
        ) else {
            return Ok(());
        };
        self.measures.summary.last_val_loss = Some(last);
        if self.config.outputs.final_weights != FinalWeights::Best
            || last <= best * (1.0 + PAST_BEST)
        {
            return Ok(());
        }
        // The best checkpoint holds them (written at each new best, by this
        // process or the one this run resumed from): no copy kept in memory.
        let path = checkpoint::best_path(&self.outputs.run_dir);
        let model = &mut self.learner.model;
        let (step, weights) = match checkpoint::load(&path) {
            Ok(ck)
                if ck.params.len() == model.params.len()
                    && ck.state.best_val_loss == Some(best) =>
            {
                (ck.state.step, ck.params)
            }
            Ok(_) => {
                emit(Event::Warning(format!(
                    "{} is not this run's best (another model, or another validation loss): \
                     the final model holds the last step's weights",
                    path.display()
                )));
                return Ok(());
            }
            Err(e) => {
                emit(Event::Warning(format!(
                    "the best checkpoint could not be read ({e}): the final model holds the \
                     last step's weights"
                )));
                return Ok(());
            }
        };
        model.params = weights;
        model.refresh_precision();
        self.measures.summary.final_weights_step = Some(step);
        emit(Event::Info(format!(
            "the final model holds step {step}'s weights, the best validation loss ({best:.4}); \
             the last step's were worse ({last:.4}): the run trained past its best \
             (--final-weights last keeps the last step's)"
        )));
        Ok(())
    }

    /// The final checkpoint in the run's folder, and its copy at the output
    /// path (a file there from elsewhere is kept beside it). Returns the
    /// output path.
    fn publish_final_model(
        &mut self,
        emit: &mut dyn FnMut(Event),
    ) -> Result<std::path::PathBuf, TrainError> {
        let run_final = self.outputs.run_dir.join(RUN_FINAL_NAME);
        let output = self.config.outputs.output.clone();
        let publish = output != run_final;
        if publish
            && let Some(kept) = keep_previous_output(
                &output,
                &self.config.outputs.checkpoint_dir,
                &self.config.outputs.run_name,
            )?
        {
            emit(Event::Warning(format!(
                "the previous {} is from no run folder (or differs from its run's copy): \
                 kept as {}",
                output.display(),
                kept.display()
            )));
        }
        self.fit_memory_on_validation(emit)?;
        self.save(&run_final, SaveReason::Final, emit)?;
        if publish {
            copy_atomically(&run_final, &output)?;
            emit(Event::Checkpoint {
                path: output.clone(),
                reason: SaveReason::Final,
            });
        }
        Ok(output)
    }

    /// Before the final save: the memory's mix fitted on the whole
    /// validation split (evaluations fit it on their windows only).
    fn fit_memory_on_validation(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), TrainError> {
        let v = &mut self.validation;
        let Some(memory) = v.memory.as_mut() else {
            return Ok(());
        };
        let windows = EvalWindows::overlapping(&v.val, self.config.batch.seq_len, 0);
        if windows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let fit = fit_memory_on(
            &mut self.spheres,
            &self.learner.model,
            memory,
            &v.val,
            &windows,
        )?;
        let per_byte = |bits_per_token: f64| bits_per_token / v.bytes_per_token.max(1e-9);
        emit(Event::Info(format!(
            "repository memory fitted on {} validation tokens in {:.1} s: {:.3} bits/byte with \
             it, {:.3} without (in-sample for the mix's weights)",
            windows.scored(),
            started.elapsed().as_secs_f64(),
            per_byte(fit.bits_fitted),
            per_byte(fit.bits_transformer),
        )));
        Ok(())
    }

    /// The summary's figures for the whole run, the final model at `output`.
    fn fill_summary(&mut self, output: std::path::PathBuf) {
        let m = &mut self.measures;
        let (state, started) = (&self.progress.state, self.outputs.saver.started);
        let train_secs = m.train_started.elapsed().as_secs_f64();
        let steps_here = state.step - self.progress.first_step;
        let seqs_per_step = (self.config.batch.batch_size * self.config.batch.accum_steps) as u64;
        let s = &mut m.summary;
        s.steps = state.step;
        s.total_secs = started.elapsed().as_secs_f64();
        s.secs_per_sequence = train_secs / (steps_here * seqs_per_step).max(1) as f64;
        s.tokens_per_sec = m.tokens_done as f64 / train_secs.max(1e-9);
        s.sphere_sequences = self.spheres.sequences();
        s.load_imbalance = imbalance(&s.sphere_sequences);
        s.peak_memory_bytes = peak_memory_bytes();
        s.final_model = Some(output);
        if self.config.budget.time_budget_secs > 0.0 {
            s.time_budget_secs = Some(self.config.budget.time_budget_secs);
            let now = m.clock.now_ns();
            s.budget_used_secs = Some(match &self.progress.budget {
                Some(clock) => crate::clock::secs(clock.spent_ns(now)),
                None => state.elapsed_secs + started.elapsed().as_secs_f64(),
            });
        }
    }

    /// Whether the run ended before its last step (a stop, or a stop while
    /// a time budget's warm-up was being timed), not by finishing or by
    /// early stopping.
    fn stopped(&self) -> bool {
        let (state, plan) = (&self.progress.state, &self.progress.plan);
        plan.is_pending() || (state.step < plan.last_step && !self.measures.summary.stopped_early)
    }

    /// Says where a stopped run stopped.
    fn warn_if_stopped(&self, emit: &mut dyn FnMut(Event)) {
        let (step, plan) = (self.progress.state.step, &self.progress.plan);
        if plan.is_pending() {
            emit(Event::Warning(format!(
                "stopped at step {step} while timing the warm-up of the time budget"
            )));
        } else if self.stopped() {
            emit(Event::Warning(format!(
                "stopped at step {step} of {}",
                plan.last_step
            )));
        }
    }
}
