//! How long a run is: steps per epoch, the learning-rate schedule's horizon
//! and the step it stops at, for a new run and for a resumed one.

use super::TrainConfig;
use crate::checkpoint::TrainingState;

/// How long a run is: steps per epoch, the learning-rate schedule's horizon
/// and the step the run stops at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub steps_per_epoch: u64,
    pub horizon: u64,
    pub last_step: u64,
}

/// The horizon of a run given time whose step count is not fixed yet (see
/// `train::budget`): the schedule holds its peak until it is.
pub const PENDING: u64 = u64::MAX;

impl Plan {
    /// True while a run given time is still timing its warm-up.
    pub fn is_pending(&self) -> bool {
        self.horizon == PENDING
    }

    /// The plan once the warm-up has fixed the run's length: `steps` more
    /// from `step`, the stop moved no later than `--max-steps`.
    pub fn fixed(self, step: u64, steps: u64, max_steps: u64) -> Plan {
        let horizon = step.saturating_add(steps.max(1));
        Plan {
            horizon,
            last_step: stop_at(horizon, max_steps),
            ..self
        }
    }

    /// The plan of a run given time, before the warm-up fixes its length.
    fn pending(steps_per_epoch: u64, max_steps: u64) -> Plan {
        Plan {
            steps_per_epoch,
            horizon: PENDING,
            last_step: if max_steps > 0 { max_steps } else { PENDING },
        }
    }
}

/// Where a run with this `horizon` stops, given `--max-steps` (0 = none).
pub fn stop_at(horizon: u64, max_steps: u64) -> u64 {
    if max_steps > 0 {
        horizon.min(max_steps)
    } else {
        horizon
    }
}

/// The plan of a new run over `windows` training sequences per epoch.
pub fn plan(config: &TrainConfig, windows: usize) -> Plan {
    let per_step = (config.batch.batch_size * config.batch.accum_steps) as u64;
    let steps_per_epoch = (windows as u64 / per_step).max(1);
    if config.budget.time_budget_secs > 0.0 {
        return Plan::pending(steps_per_epoch, config.budget.max_steps);
    }
    let horizon = if config.budget.epochs > 0 {
        steps_per_epoch * config.budget.epochs as u64
    } else {
        config.budget.max_steps
    };
    Plan {
        steps_per_epoch,
        horizon,
        last_step: stop_at(horizon, config.budget.max_steps),
    }
}

/// The plan of a resumed run: the horizon and stop stored in the checkpoint,
/// unless the user gave epochs or steps. Given epochs (or, for a run trained
/// by steps, given steps) set a new horizon, which changes the schedule from
/// here on: said in `notes`. `--max-steps` on a run by epochs only moves
/// where it stops.
pub fn resumed_plan(
    config: &TrainConfig,
    saved: &TrainConfig,
    state: &TrainingState,
    windows: usize,
    notes: &mut Vec<String>,
) -> Plan {
    let fresh = plan(config, windows);
    let given = |field: &str| config.given.iter().any(|g| g == field);
    // A run given time that stopped before its warm-up ended, or one given
    // a new budget now: measure again and fix the length from here.
    if config.budget.time_budget_secs > 0.0 && (state.horizon == 0 || given("time_budget_secs")) {
        if state.horizon > 0 {
            notes.push(
                "a new time budget: the learning-rate schedule will span the steps that fit \
                 in it from here, so the run differs from one that never stopped"
                    .into(),
            );
        }
        return fresh;
    }
    let stored_horizon = if state.horizon > 0 {
        state.horizon
    } else {
        plan(saved, windows).horizon
    };
    let stored_stop = if state.last_step > 0 {
        state.last_step
    } else {
        stop_at(stored_horizon, saved.budget.max_steps)
    };
    let horizon = if given("epochs") || (config.budget.epochs == 0 && given("max_steps")) {
        fresh.horizon
    } else {
        stored_horizon
    };
    if horizon != stored_horizon {
        notes.push(format!(
            "the learning-rate schedule now spans {horizon} steps (it spanned {stored_horizon}): \
             from here on the run differs from one that never stopped"
        ));
    }
    let last_step = if given("epochs") || given("max_steps") {
        stop_at(horizon, config.budget.max_steps)
    } else {
        stored_stop
    };
    Plan {
        steps_per_epoch: fresh.steps_per_epoch,
        horizon,
        last_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_of_a_new_run() {
        let mut cfg = TrainConfig::default();
        cfg.batch.batch_size = 4;
        cfg.batch.accum_steps = 2;
        cfg.budget.epochs = 3;
        let p = plan(&cfg, 100);
        assert_eq!((p.steps_per_epoch, p.horizon, p.last_step), (12, 36, 36));
        let p = plan(&cfg, 3);
        assert_eq!((p.steps_per_epoch, p.horizon), (1, 3));
        cfg.budget.epochs = 0;
        cfg.budget.max_steps = 7;
        assert_eq!(plan(&cfg, 100).horizon, 7);
    }

    #[test]
    fn a_run_given_time_is_pending_until_its_warmup_fixes_it() {
        let mut cfg = TrainConfig::default();
        cfg.batch.batch_size = 4;
        cfg.budget.time_budget_secs = 60.0;
        let p = plan(&cfg, 100);
        assert!(p.is_pending());
        assert_eq!((p.steps_per_epoch, p.last_step), (25, PENDING));
        let f = p.fixed(12, 300, 0);
        assert!(!f.is_pending());
        assert_eq!((f.steps_per_epoch, f.horizon, f.last_step), (25, 312, 312));
        // --max-steps still caps a run given time.
        let mut capped = cfg.clone();
        capped.budget.max_steps = 100;
        let p = plan(&capped, 100);
        assert_eq!(p.last_step, 100);
        assert_eq!(p.fixed(12, 300, 100).last_step, 100);
        // Resumed with its length fixed: the stored plan stands.
        let state = TrainingState {
            step: 50,
            horizon: 312,
            last_step: 312,
            ..TrainingState::start()
        };
        let mut notes = Vec::new();
        let r = resumed_plan(&cfg, &cfg, &state, 100, &mut notes);
        assert_eq!((r.horizon, r.last_step), (312, 312));
        assert!(notes.is_empty());
        // Stopped during the warm-up (nothing fixed): measure again.
        let early = TrainingState {
            step: 3,
            ..TrainingState::start()
        };
        assert!(resumed_plan(&cfg, &cfg, &early, 100, &mut notes).is_pending());
        // A new budget given on resume: measure again, and say so.
        let again = TrainConfig {
            given: vec!["time_budget_secs".into()],
            ..cfg.clone()
        };
        assert!(resumed_plan(&again, &cfg, &state, 100, &mut notes).is_pending());
        assert_eq!(notes.len(), 1);
    }
}
