//! The phases of a built run: a step, what follows it (evaluation, samples,
//! epoch ends, saves) and the finish.

use super::{MAX_BAD_STEPS, Run, StepOutcome, TICK};
use crate::FinalWeights;
use crate::checkpoint;
use crate::evaluate::{EvalWindows, evaluate_fitting_memory, fit_memory_on};
use crate::events::{Event, SaveReason, StepStats, Summary};
use crate::metrics::{imbalance, peak_memory_bytes};
use crate::saving::{RUN_FINAL_NAME, copy_atomically, keep_previous_output};
use crate::spheres::StepInput;
use cllm_data::batches::BatchPosition;
use std::path::Path;
use std::time::Instant;

/// How much worse (relative) than the best the last step's validation loss
/// must be before the final model takes the best step's weights: a run that
/// ends on its plateau (6 epochs of tinyshakespeare: 4.3001 against a best
/// of 4.2985 six steps before) keeps its last step's.
const PAST_BEST: f32 = 0.005;

impl Run {
    /// Phase 3: one optimizer step: the step's sequences, forward and
    /// backward on the spheres, the reduction, clipping and AdamW.
    pub fn step(&mut self, emit: &mut dyn FnMut(Event)) -> Result<StepOutcome, String> {
        let config = &self.config;
        let seq_len = config.seq_len;
        let seqs_per_step = config.batch_size * config.accum_steps;
        let step = self.state.step;
        let epoch = (step / self.plan.steps_per_epoch) as usize;
        self.batcher.set_position(BatchPosition {
            epoch: epoch as u64,
            index: (step % self.plan.steps_per_epoch) * seqs_per_step as u64,
        });
        for s in 0..seqs_per_step {
            let r = s * seq_len..(s + 1) * seq_len;
            self.batcher
                .next_into(&mut self.inputs[r.clone()], &mut self.targets[r]);
        }
        let input = StepInput {
            inputs: &self.inputs,
            targets: &self.targets,
            n_seqs: seqs_per_step,
            seq_len,
            step,
            seed: config.seed,
            dropout: self.model.config.dropout > 0.0,
        };
        if let Some((sphere, at)) = self.faults.panic_in_sphere_at_step
            && at == step
        {
            self.spheres.inject_panic(sphere);
        }
        let mut tick = |stats| emit(Event::Spheres(stats));
        let mut outcome = self
            .spheres
            .compute_gradients(&self.model, &input, TICK, &mut tick);
        if let Some((rank, at)) = self.faults.perturb_rank_at_step
            && rank == self.cluster.rank()
            && at == step
        {
            // A replica that drifted (the replica check must catch it).
            self.model.params[0] += 1e-3;
        }
        if self.faults.nan_at_step == Some(step) {
            self.spheres.gradient_mut()[0] = f32::NAN;
            outcome.grad_norm = f32::NAN;
        }
        let lr = self.schedule.lr_at(step);
        let finite = outcome.loss.is_finite() && outcome.grad_norm.is_finite();
        let mut clipped = false;
        if finite {
            self.bad_in_a_row = 0;
            let mut scale = 1.0;
            if config.grad_clip > 0.0 && outcome.grad_norm > config.grad_clip {
                scale = config.grad_clip / (outcome.grad_norm + 1e-6);
                clipped = true;
            }
            self.spheres.apply_update(
                &mut self.model.params,
                &mut self.opt,
                lr,
                scale,
                outcome.shards.as_deref(),
            );
            self.spheres.refresh_packs(&mut self.model);
            if let Some(w) = self.norm_watch.observe(outcome.grad_norm, step) {
                emit(Event::Warning(w));
            }
        } else {
            self.bad_in_a_row += 1;
            self.summary.skipped_updates += 1;
            emit(Event::Warning(format!(
                "step {}: loss {} / gradient norm {} is not finite; update skipped ({} skipped so far)",
                step + 1,
                outcome.loss,
                outcome.grad_norm,
                self.summary.skipped_updates
            )));
            if self.bad_in_a_row >= MAX_BAD_STEPS {
                return Err(format!(
                    "training diverged: {MAX_BAD_STEPS} steps in a row had non-finite loss or gradients; \
                     the last good checkpoint{} is intact",
                    self.saver
                        .last_saved
                        .as_ref()
                        .map(|p| format!(" ({})", p.display()))
                        .unwrap_or_default()
                ));
            }
        }
        let tokens = (seqs_per_step * seq_len) as u64;
        self.state.step += 1;
        self.state.lr = lr;
        self.state.tokens_seen += tokens;
        self.state.epoch = self.state.step / self.plan.steps_per_epoch;
        self.state.data_epoch = self.state.epoch;
        self.state.data_index =
            (self.state.step % self.plan.steps_per_epoch) * seqs_per_step as u64;
        self.tokens_done += tokens;
        if self.summary.initial_loss.is_nan() && finite {
            self.summary.initial_loss = outcome.loss;
        }
        if finite {
            self.summary.final_loss = outcome.loss;
        }

        let elapsed = self.train_started.elapsed().as_secs_f64();
        let done_here = self.state.step - self.first_step;
        // While a run given time is timing its warm-up, its length is not
        // known (0) and what is left is the rest of the budget.
        let (total_steps, eta_secs) = match &self.budget {
            Some(clock) if self.plan.is_pending() => (0, clock.remaining().max(0.0)),
            _ => (
                self.plan.last_step,
                elapsed / done_here as f64 * (self.plan.last_step - self.state.step) as f64,
            ),
        };
        let stats = StepStats {
            epoch,
            epochs: config.epochs,
            step: self.state.step,
            total_steps,
            loss: outcome.loss,
            lr,
            grad_norm: outcome.grad_norm,
            clipped,
            tokens_per_sec: self.tokens_done as f64 / elapsed.max(1e-9),
            elapsed_secs: self.state.elapsed_secs + elapsed,
            eta_secs,
        };
        if let Some(log) = self.log.as_mut() {
            log.step(&stats, &self.spheres.stats())?;
        }
        emit(Event::Step(stats));
        if let Some(comm) = outcome.comm {
            emit(Event::Cluster(comm));
        }
        emit(Event::Spheres(self.spheres.stats()));
        Ok(StepOutcome {
            loss: outcome.loss,
            epoch,
        })
    }

    /// What follows a step: evaluation when due (best checkpoint, early
    /// stopping), a sample, the epoch's end (periodic checkpoint), and a
    /// save the user asked for.
    pub fn after_step(
        &mut self,
        outcome: &StepOutcome,
        save_now: bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
        let started = Instant::now();
        let step = self.state.step;
        let epoch_end = step.is_multiple_of(self.plan.steps_per_epoch);
        let eval_due = (self.config.eval_every > 0 && step.is_multiple_of(self.config.eval_every))
            || epoch_end;
        let writer = self.cluster.is_writer();
        // Ranks that update only their share of the weights keep only
        // their share of the moments: they gather them whole before rank 0
        // may save. Rank 0 alone knows when (a time budget's warm-up
        // evaluates, and sets how often to, on rank 0 only), so it tells
        // the others each step.
        if self.spheres.has_stale_moments() {
            let may_save = writer
                && ((eval_due && !self.val_windows.is_empty())
                    || epoch_end
                    || save_now
                    || self.plan.is_pending());
            if self.cluster.gather(f64::from(u8::from(may_save)))[0] > 0.0 {
                self.spheres.settle_moments(&mut self.opt);
            }
        }
        if eval_due && !self.val_windows.is_empty() && writer {
            self.evaluate(outcome.epoch, emit)?;
        }
        if self.cluster.is_distributed() && step.is_multiple_of(super::replicas::CHECK_EVERY) {
            self.check_replicas()?;
        }
        if writer && self.config.sample_every > 0 && step.is_multiple_of(self.config.sample_every) {
            let text = cllm_generate::sample_text(
                &self.model,
                &self.tokenizer,
                &self.config.sample_prompt,
                64,
                self.config.seed ^ step,
            );
            emit(Event::Sample {
                step,
                text: format!("{}{text}", self.config.sample_prompt),
            });
        }
        if epoch_end {
            self.end_epoch(outcome.loss, emit)?;
        }
        if save_now && writer {
            let path = self
                .run_dir
                .join(format!("checkpoint_manual_step_{step}.cllm"));
            self.save(&path, SaveReason::Manual, emit)?;
        }
        self.between_steps_secs += started.elapsed().as_secs_f64();
        self.time_warmup(emit)
    }

    /// Phase 4: the validation loss; a new best is saved, and early
    /// stopping counts evaluations without one.
    pub fn evaluate(&mut self, epoch: usize, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        let started = Instant::now();
        let ev = evaluate_fitting_memory(
            &mut self.spheres,
            &self.model,
            &self.val,
            &self.val_windows,
            self.bytes_per_token,
            epoch,
            self.state.step,
            self.repo_memory.as_mut(),
        )?;

        let mut ev = ev;
        if let Some(check) = &self.code_check {
            let never = std::sync::atomic::AtomicBool::new(false);
            if let Some(summary) = check.run(
                &self.model,
                &self.tokenizer,
                self.repo_memory.as_ref(),
                &never,
            )? {
                ev.syntax_accuracy = Some(summary.syntax_accuracy);
                ev.closed_rate = Some(summary.closed_rate);
            }
        }
        // Without the best checkpoint it may write (timed by `save`).
        self.last_eval_secs = Some(started.elapsed().as_secs_f64());
        self.last_eval_step = Some(self.state.step);
        if let Some(log) = self.log.as_mut() {
            log.eval(&ev)?;
        }
        emit(Event::Eval(ev.clone()));
        self.last_val_loss = Some(ev.loss);
        let better = self.state.best_val_loss.is_none_or(|b| ev.loss < b);
        if better && ev.loss.is_finite() {
            self.state.best_val_loss = Some(ev.loss);
            self.state.evals_without_gain = 0;
            self.summary.best_val_loss = Some(ev.loss);
            self.summary.best_bits_per_byte = Some(ev.bits_per_byte);
            let path = checkpoint::best_path(&self.run_dir);
            self.save(&path, SaveReason::Best, emit)?;
        } else {
            self.state.evals_without_gain += 1;
            let patience = self.config.early_stop_patience as u64;
            if patience > 0 && self.state.evals_without_gain >= patience {
                emit(Event::Warning(format!(
                    "early stop: no validation gain in {} evaluations",
                    self.state.evals_without_gain
                )));
                self.summary.stopped_early = true;
            }
        }
        Ok(())
    }

    /// The end of an epoch: its time, and the periodic checkpoint (older
    /// ones of this run pruned).
    pub fn end_epoch(&mut self, last_loss: f32, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        self.summary
            .epoch_secs
            .push(self.epoch_started.elapsed().as_secs_f64());
        self.epoch_started = Instant::now();
        self.summary.epochs_done += 1;
        let n_epoch = self.state.step / self.plan.steps_per_epoch;
        let every = self.config.checkpoint_every as u64;
        // Rank 0 alone touches the run's files (saving and pruning).
        if every > 0 && n_epoch.is_multiple_of(every) && self.cluster.is_writer() {
            let loss = self.state.best_val_loss.unwrap_or(last_loss);
            let path = checkpoint::periodic_path(&self.run_dir, n_epoch, loss);
            self.save(&path, SaveReason::Periodic, emit)?;
            if let Err(e) =
                checkpoint::prune_periodic(&self.run_dir, self.config.keep_checkpoints.max(1))
            {
                emit(Event::Warning(format!("old checkpoints not pruned: {e}")));
            }
        }
        Ok(())
    }

    /// Before the final save, in a run that finished its schedule: the last
    /// step evaluated (when its step was not), and under `FinalWeights::Best` the
    /// best validation loss's weights in place of the last step's when those
    /// are worse. Many epochs over a small corpus overfit: on
    /// tinyshakespeare, 59 epochs in 10 minutes ended at 5.4 bits per byte
    /// on held-out text where the best checkpoint had 2.6.
    fn settle_final_weights(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        // A run cut short by --max-steps or a stop is resumable exactly: its
        // final model keeps the last step's weights. One that finished its
        // schedule (or stopped early) is done.
        let finished = self.state.step >= self.plan.horizon || self.summary.stopped_early;
        if !finished || self.plan.is_pending() || self.val_windows.is_empty() {
            return Ok(());
        }
        if self.last_eval_step != Some(self.state.step) {
            // An evaluation, not a patience check: the run has ended.
            let stopped_early = self.summary.stopped_early;
            self.evaluate(self.state.epoch as usize, emit)?;
            self.summary.stopped_early = stopped_early;
        }
        let (Some(best), Some(last)) = (self.state.best_val_loss, self.last_val_loss) else {
            return Ok(());
        };
        self.summary.last_val_loss = Some(last);
        if self.config.final_weights != FinalWeights::Best || last <= best * (1.0 + PAST_BEST) {
            return Ok(());
        }
        // The best checkpoint holds them (written at each new best, by this
        // process or the one this run resumed from): no copy kept in memory.
        let path = checkpoint::best_path(&self.run_dir);
        let (step, weights) = match checkpoint::load(&path) {
            Ok(ck)
                if ck.params.len() == self.model.params.len()
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
        self.model.params = weights;
        self.model.refresh_precision();
        self.summary.final_weights_step = Some(step);
        emit(Event::Info(format!(
            "the final model holds step {step}'s weights, the best validation loss ({best:.4}); \
             the last step's were worse ({last:.4}): the run trained past its best \
             (--final-weights last keeps the last step's)"
        )));
        Ok(())
    }

    /// Before the final save: the memory's mix fitted on the whole
    /// validation split (evaluations fit it on their windows only).
    fn fit_memory_on_validation(&mut self, emit: &mut dyn FnMut(Event)) -> Result<(), String> {
        let Some(memory) = self.repo_memory.as_mut() else {
            return Ok(());
        };
        let windows = EvalWindows::overlapping(&self.val, self.config.seq_len, 0);
        if windows.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let fit = fit_memory_on(&mut self.spheres, &self.model, memory, &self.val, &windows)?;
        let per_byte = |bits_per_token: f64| bits_per_token / self.bytes_per_token.max(1e-9);
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

    /// Phase 5: a checkpoint of where the run stands.
    pub fn save(
        &mut self,
        path: &Path,
        reason: SaveReason,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), String> {
        if !self.cluster.is_writer() {
            return Ok(());
        }
        // A run given time that has not fixed its length stores 0: resumed,
        // it times its warm-up again.
        let pending = self.plan.is_pending();
        self.state.horizon = if pending { 0 } else { self.plan.horizon };
        self.state.last_step = if pending { 0 } else { self.plan.last_step };
        let started = Instant::now();
        self.saver.save(
            path,
            reason,
            &self.model,
            &self.opt,
            &self.state,
            self.repo_memory.as_ref(),
            emit,
        )?;
        self.last_save_secs = Some(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Phase 6: the final model (also after a stop: the last step's
    /// weights) in the run's folder and at the output path, and the summary.
    pub fn finish(mut self, emit: &mut dyn FnMut(Event)) -> Result<Summary, String> {
        let finished = self.wrap_up(emit);
        if let Err(message) = &finished {
            self.log_failure(message);
        }
        finished
    }

    fn wrap_up(&mut self, emit: &mut dyn FnMut(Event)) -> Result<Summary, String> {
        self.spheres.settle_moments(&mut self.opt);
        self.spheres.rest();
        emit(Event::Spheres(self.spheres.stats()));
        if self.cluster.is_distributed() {
            self.check_replicas()?;
        }
        if !self.cluster.is_writer() {
            return Ok(self.replica_summary());
        }
        self.settle_final_weights(emit)?;
        let run_final = self.run_dir.join(RUN_FINAL_NAME);
        let output = self.config.output.clone();
        let publish = output != run_final;
        if publish
            && let Some(kept) =
                keep_previous_output(&output, &self.config.checkpoint_dir, &self.config.run_name)?
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
        let train_secs = self.train_started.elapsed().as_secs_f64();
        let steps_here = self.state.step - self.first_step;
        let seqs_per_step = (self.config.batch_size * self.config.accum_steps) as u64;
        let s = &mut self.summary;
        s.steps = self.state.step;
        s.total_secs = self.saver.started.elapsed().as_secs_f64();
        s.secs_per_sequence = train_secs / (steps_here * seqs_per_step).max(1) as f64;
        s.tokens_per_sec = self.tokens_done as f64 / train_secs.max(1e-9);
        s.sphere_sequences = self.spheres.sequences();
        s.load_imbalance = imbalance(&s.sphere_sequences);
        s.peak_memory_bytes = peak_memory_bytes();
        s.final_model = Some(output);
        if self.config.time_budget_secs > 0.0 {
            s.time_budget_secs = Some(self.config.time_budget_secs);
            s.budget_used_secs = Some(match &self.budget {
                Some(clock) => clock.spent(),
                None => self.state.elapsed_secs + self.saver.started.elapsed().as_secs_f64(),
            });
        }
        if self.plan.is_pending() {
            emit(Event::Warning(format!(
                "stopped at step {} while timing the warm-up of the time budget",
                self.state.step
            )));
        } else if self.state.step < self.plan.last_step && !s.stopped_early {
            emit(Event::Warning(format!(
                "stopped at step {} of {}",
                self.state.step, self.plan.last_step
            )));
        }
        // The log's end line (runlog): stopped before the last step, or finished.
        let stopped = self.plan.is_pending()
            || (self.state.step < self.plan.last_step && !self.summary.stopped_early);
        if let Some(log) = self.log.as_mut() {
            log.end(&self.summary, stopped, &self.spheres.stats())?;
        }
        Ok(self.summary.clone())
    }
}
