//! Phase 3, one optimizer step: the next batch, its gradients on the
//! spheres (summed across ranks), clipping, the AdamW update, and the
//! step's record (its state, its stats, the log and the events).

use super::Run;
use crate::clock::Work;
use crate::error::TrainError;
use crate::events::{Event, StepStats};
use crate::spheres::{GradOutcome, StepInput};
use cllm_data::batches::BatchPosition;
use std::time::Duration;

/// How often sphere stats are sent while a step runs.
const TICK: Duration = Duration::from_millis(100);
/// Consecutive non-finite steps after which the run stops.
const MAX_BAD_STEPS: u32 = 5;

/// One optimizer step's results.
pub struct StepOutcome {
    pub(super) loss: f32,
    pub(super) epoch: usize,
}

impl Run {
    /// Phase 3: one optimizer step, timed on the run's clock for a time
    /// budget's plans.
    pub fn step(&mut self, emit: &mut dyn FnMut(Event)) -> Result<StepOutcome, TrainError> {
        let started = self.measures.clock.now_ns();
        let outcome = self.take_step(emit)?;
        let clock = &mut self.measures.clock;
        clock.charge(Work::Step);
        let now = clock.now_ns();
        if let Some(budget) = self.progress.budget.as_mut() {
            budget.stepped(self.progress.state.step, now.saturating_sub(started), now);
        }
        Ok(outcome)
    }

    /// The step itself: batch, gradients, update, record.
    fn take_step(&mut self, emit: &mut dyn FnMut(Event)) -> Result<StepOutcome, TrainError> {
        let step = self.progress.state.step;
        self.next_batch(step);
        #[cfg(feature = "test-faults")]
        self.faults.inject(
            step,
            self.cluster.rank(),
            &mut self.learner.model.params,
            &mut self.spheres,
        );
        let grads = self.gradients(step, emit);
        let lr = self.progress.schedule.lr_at(step);
        let clipped = if grads.is_finite() {
            let (scale, clipped) = self.clip(grads.grad_norm);
            self.update(&grads, lr, scale, step, emit);
            clipped
        } else {
            self.skip_update(&grads, step, emit)?;
            false
        };
        self.record(step, grads, lr, clipped, emit)
    }

    /// Sequences in one step: `batch_size` per micro-batch group, times
    /// the accumulation.
    fn seqs_per_step(&self) -> usize {
        self.config.batch.batch_size * self.config.batch.accum_steps
    }

    /// Fills the step's token buffers from where the data loader stands at
    /// `step` (its epoch's shuffle order, and the sequence in it).
    fn next_batch(&mut self, step: u64) {
        let seq_len = self.config.batch.seq_len;
        let seqs_per_step = self.seqs_per_step();
        let steps_per_epoch = self.progress.plan.steps_per_epoch;
        let b = &mut self.batches;
        b.batcher.set_position(BatchPosition {
            epoch: step / steps_per_epoch,
            index: (step % steps_per_epoch) * seqs_per_step as u64,
        });
        for s in 0..seqs_per_step {
            let r = s * seq_len..(s + 1) * seq_len;
            b.batcher
                .next_into(&mut b.inputs[r.clone()], &mut b.targets[r]);
        }
    }

    /// Forward and backward over the step's sequences on the spheres (and
    /// ranks), the gradients reduced; the spheres' stats stream out as they
    /// work.
    fn gradients(&mut self, step: u64, emit: &mut dyn FnMut(Event)) -> GradOutcome {
        let input = StepInput {
            inputs: &self.batches.inputs,
            targets: &self.batches.targets,
            n_seqs: self.seqs_per_step(),
            seq_len: self.config.batch.seq_len,
            step,
            seed: self.config.seed,
            dropout: self.learner.model.config.dropout > 0.0,
        };
        let mut tick = |stats| emit(Event::Spheres(stats));
        self.spheres
            .compute_gradients(&self.learner.model, &input, TICK, &mut tick)
    }

    /// The factor that brings the gradient's norm down to `grad_clip`, and
    /// whether it clips (1 when the norm is within it, or clipping is off).
    fn clip(&self, grad_norm: f32) -> (f32, bool) {
        let max = self.config.optimizer.grad_clip;
        if max > 0.0 && grad_norm > max {
            (max / (grad_norm + 1e-6), true)
        } else {
            (1.0, false)
        }
    }

    /// AdamW at `lr` with the gradient times `scale`, sliced across the
    /// spheres; then the bf16 packs of the new weights, and the norm watch.
    fn update(
        &mut self,
        grads: &GradOutcome,
        lr: f32,
        scale: f32,
        step: u64,
        emit: &mut dyn FnMut(Event),
    ) {
        self.measures.bad_in_a_row = 0;
        let learner = &mut self.learner;
        self.spheres.apply_update(
            &mut learner.model.params,
            &mut learner.opt,
            lr,
            scale,
            grads.shards.as_deref(),
        );
        self.spheres.refresh_packs(&mut learner.model);
        if let Some(w) = self.measures.norm_watch.observe(grads.grad_norm, step) {
            emit(Event::Warning(w));
        }
    }

    /// A step whose loss or gradient is not finite changes no weight; after
    /// [`MAX_BAD_STEPS`] of them in a row the run stops.
    fn skip_update(
        &mut self,
        grads: &GradOutcome,
        step: u64,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), TrainError> {
        let m = &mut self.measures;
        m.bad_in_a_row += 1;
        m.summary.skipped_updates += 1;
        emit(Event::Warning(format!(
            "step {}: loss {} / gradient norm {} is not finite; update skipped ({} skipped so far)",
            step + 1,
            grads.loss,
            grads.grad_norm,
            m.summary.skipped_updates
        )));
        if m.bad_in_a_row >= MAX_BAD_STEPS {
            return Err(TrainError::Diverged {
                steps: MAX_BAD_STEPS,
                last_saved: self.outputs.saver.last_saved.clone(),
            });
        }
        Ok(())
    }

    /// The step taken: where the run stands after it, its losses in the
    /// summary, and its stats to the log and the front end.
    fn record(
        &mut self,
        step: u64,
        grads: GradOutcome,
        lr: f32,
        clipped: bool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<StepOutcome, TrainError> {
        let seqs_per_step = self.seqs_per_step() as u64;
        let tokens = seqs_per_step * self.config.batch.seq_len as u64;
        let steps_per_epoch = self.progress.plan.steps_per_epoch;
        let epoch = (step / steps_per_epoch) as usize;
        let state = &mut self.progress.state;
        state.step += 1;
        state.lr = lr;
        state.tokens_seen += tokens;
        state.epoch = state.step / steps_per_epoch;
        state.data_epoch = state.epoch;
        state.data_index = (state.step % steps_per_epoch) * seqs_per_step;
        let m = &mut self.measures;
        m.tokens_done += tokens;
        if grads.is_finite() {
            if m.summary.initial_loss.is_nan() {
                m.summary.initial_loss = grads.loss;
            }
            m.summary.final_loss = grads.loss;
        }

        let stats = self.step_stats(epoch, &grads, lr, clipped);
        if let Some(log) = self.outputs.log.as_mut() {
            log.step(&stats, &self.spheres.stats())?;
        }
        emit(Event::Step(stats));
        if let Some(comm) = grads.comm {
            emit(Event::Cluster(comm));
        }
        emit(Event::Spheres(self.spheres.stats()));
        Ok(StepOutcome {
            loss: grads.loss,
            epoch,
        })
    }

    /// The stats of the step just recorded, with the speed and the time
    /// left.
    fn step_stats(&self, epoch: usize, grads: &GradOutcome, lr: f32, clipped: bool) -> StepStats {
        let (state, plan) = (&self.progress.state, &self.progress.plan);
        let elapsed = self.measures.train_started.elapsed().as_secs_f64();
        let done_here = state.step - self.progress.first_step;
        // While a run given time is timing its warm-up, its length is not
        // known (0) and what is left is the rest of the budget. After it,
        // the plan ends the run at the budget (re-planning when the speed
        // changes), so the session's mean speed, which still holds a slow
        // start, would overstate the time left: at most the budget's rest.
        let now = self.measures.clock.now_ns();
        let by_speed = elapsed / done_here as f64 * (plan.last_step - state.step) as f64;
        let (total_steps, eta_secs) = match &self.progress.budget {
            Some(clock) if plan.is_pending() => (0, clock.remaining(now).max(0.0)),
            Some(clock) => (plan.last_step, by_speed.min(clock.remaining(now).max(0.0))),
            None => (plan.last_step, by_speed),
        };
        StepStats {
            epoch,
            epochs: self.config.budget.epochs,
            step: state.step,
            total_steps,
            loss: grads.loss,
            lr,
            grad_norm: grads.grad_norm,
            clipped,
            tokens_per_sec: self.measures.tokens_done as f64 / elapsed.max(1e-9),
            elapsed_secs: state.elapsed_secs + elapsed,
            eta_secs,
        }
    }
}
