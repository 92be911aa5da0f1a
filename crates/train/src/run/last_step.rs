//! Each completed step of a distributed run handed to the cluster's
//! [`LastStep`](crate::cluster::last_step::LastStep), for rank 0 to save at
//! once when the job is ended (a signal cannot wait for the step under way).

use super::Run;
use crate::checkpoint::TrainingState;
use crate::cluster::last_step::StepRecord;

impl Run {
    /// After a step and all that follows it (every rank, after the ranks
    /// agreed to go on or stop).
    pub fn publish_last_step(&self) {
        let keep = self.cluster.last_step();
        if !self.cluster.is_distributed() || !keep.is_enabled() {
            return;
        }
        let state = self.state_to_save();
        let saver = &self.outputs.saver;
        keep.publish(
            &self.cluster,
            &StepRecord {
                model: &self.learner.model,
                opt: &self.learner.opt,
                moment_shares: self.spheres.moment_shares(),
                state: &state,
                memory: self.validation.memory.as_ref(),
                // An evaluation at this step refitted the memory's mix.
                memory_changed: self.measures.eval_secs_at(state.step).is_some(),
                config: &saver.config,
                tokenizer_json: &saver.tokenizer_json,
                started: saver.started,
            },
        );
    }

    /// The trainer is past its last step: a save at once can no longer
    /// start (the finish writes the final checkpoint, unless one was).
    pub fn close_last_step(&self) {
        if self.cluster.is_distributed() {
            self.cluster.last_step().close();
        }
    }

    /// The training state as [`Run::save`] stores it: a run given time
    /// that has not fixed its length stores 0 for both (resumed, it times
    /// its warm-up again), and its budget's plans and time spent.
    fn state_to_save(&self) -> TrainingState {
        let (plan, mut state) = (&self.progress.plan, self.progress.state.clone());
        let pending = plan.is_pending();
        state.horizon = if pending { 0 } else { plan.horizon };
        state.last_step = if pending { 0 } else { plan.last_step };
        let now = self.measures.clock.now_ns();
        state.budget = self.progress.budget.as_ref().map(|b| b.record(now));
        state
    }
}
