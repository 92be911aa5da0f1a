//! Faults a test injects into a run, to exercise the guards that real runs
//! rarely reach. Compiled only with the `test-faults` feature (the test
//! targets turn it on), so a release binary holds none of this. Passed in
//! [`TrainOptions::faults`](crate::trainer::TrainOptions), never part of the
//! user's `TrainConfig`, never read from or written to files.

use crate::spheres::Spheres;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Poison the reduced gradient at this step (0-based), as a numerical
    /// blow-up would: the non-finite guard must skip the update.
    pub nan_at_step: Option<u64>,
    /// Nudge one rank's weights at this step, as a replica that drifted
    /// would be: the cross-rank check must stop the run.
    pub perturb_rank_at_step: Option<(usize, u64)>,
    /// Make this sphere panic in this step (0-based), as a bug in a sphere
    /// would: the run must end with an error, not hang, and its threads end.
    pub panic_in_sphere_at_step: Option<(usize, u64)>,
    /// Time the run on this simulated machine instead of the real clock,
    /// as a machine whose load changes would: a time budget's plans follow
    /// it (`crate::clock`).
    pub load: Option<crate::clock::SimulatedLoad>,
}

/// What a test of the MPI path sets in the environment of a real
/// `cllm train` (its ranks are started by `mpirun`, so it cannot pass
/// faults in): `RANK:STEP` nudges that rank's weights at that step.
const PERTURB_RANK_VARIABLE: &str = "CLLM_TEST_PERTURB_RANK";

impl Faults {
    /// These faults, with the drifted replica the environment asks for
    /// when none was given.
    pub(crate) fn with_environment(mut self) -> Faults {
        if self.perturb_rank_at_step.is_none() {
            self.perturb_rank_at_step = std::env::var(PERTURB_RANK_VARIABLE).ok().and_then(|v| {
                let (rank, step) = v.split_once(':')?;
                Some((rank.parse().ok()?, step.parse().ok()?))
            });
        }
        self
    }

    /// Before step `step`'s gradients: arms the faults due at this step on
    /// this `rank`'s weights and spheres.
    pub(crate) fn inject(&self, step: u64, rank: usize, params: &mut [f32], spheres: &mut Spheres) {
        if let Some((sphere, at)) = self.panic_in_sphere_at_step
            && at == step
        {
            spheres.inject_panic(sphere);
        }
        if let Some((drifting, at)) = self.perturb_rank_at_step
            && drifting == rank
            && at == step
        {
            // A replica that drifted (the replica check must catch it).
            params[0] += 1e-3;
        }
        if self.nan_at_step == Some(step) {
            spheres.inject_nan();
        }
    }
}
