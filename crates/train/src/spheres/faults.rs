//! Faults a test arms in the spheres (the `test-faults` feature only): a
//! sphere that panics, a reduced gradient that is not finite.

use super::{GradOutcome, Spheres};

/// What the next gradient phase is to go through.
#[derive(Default)]
pub(crate) struct Armed {
    panic: Option<usize>,
    nan: bool,
}

impl Armed {
    /// The sphere armed to panic in this gradient phase, if any (disarmed).
    pub(crate) fn take_panic(&mut self) -> Option<usize> {
        self.panic.take()
    }
}

impl Spheres {
    /// Makes sphere `id` panic in the next gradient phase (a test of how a
    /// run survives a bug in a sphere: it must end with an error, not hang).
    pub(crate) fn inject_panic(&mut self, id: usize) {
        self.armed.panic = Some(id.min(self.n - 1));
    }

    /// Poisons the next gradient phase's reduced gradient, as a numerical
    /// blow-up would.
    pub(crate) fn inject_nan(&mut self) {
        self.armed.nan = true;
    }

    /// The gradient phase's outcome, poisoned when a NaN was armed.
    pub(super) fn poisoned_if_armed(&mut self, mut outcome: GradOutcome) -> GradOutcome {
        if std::mem::take(&mut self.armed.nan) {
            self.grads[0][0] = f32::NAN;
            outcome.grad_norm = f32::NAN;
        }
        outcome
    }
}

/// In sphere `id`'s job at `step`: the panic a test armed for it.
pub(crate) fn panic_if_armed(armed: Option<usize>, id: usize, step: u64) {
    if armed == Some(id) {
        panic!("sphere {id} failed at step {} (injected fault)", step + 1);
    }
}
