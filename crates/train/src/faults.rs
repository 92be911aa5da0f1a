//! Faults a test injects into a run, to exercise the guards that real runs
//! rarely reach. Passed to `trainer::spawn_with_faults`, never part of the
//! user's `TrainConfig`, never read from or written to files.

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
}
