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
    let per_step = (config.batch_size * config.accum_steps) as u64;
    let steps_per_epoch = (windows as u64 / per_step).max(1);
    let horizon = if config.epochs > 0 {
        steps_per_epoch * config.epochs as u64
    } else {
        config.max_steps
    };
    Plan {
        steps_per_epoch,
        horizon,
        last_step: stop_at(horizon, config.max_steps),
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
    let stored_horizon = if state.horizon > 0 {
        state.horizon
    } else {
        plan(saved, windows).horizon
    };
    let stored_stop = if state.last_step > 0 {
        state.last_step
    } else {
        stop_at(stored_horizon, saved.max_steps)
    };
    let given = |field: &str| config.given.iter().any(|g| g == field);
    let horizon = if given("epochs") || (config.epochs == 0 && given("max_steps")) {
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
        stop_at(horizon, config.max_steps)
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
        let cfg = TrainConfig {
            batch_size: 4,
            accum_steps: 2,
            epochs: 3,
            ..TrainConfig::default()
        };
        let p = plan(&cfg, 100);
        assert_eq!((p.steps_per_epoch, p.horizon, p.last_step), (12, 36, 36));
        let p = plan(&cfg, 3);
        assert_eq!((p.steps_per_epoch, p.horizon), (1, 3));
        let cfg = TrainConfig {
            epochs: 0,
            max_steps: 7,
            ..cfg
        };
        assert_eq!(plan(&cfg, 100).horizon, 7);
    }
}
