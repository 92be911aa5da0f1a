//! Learning-rate schedules: linear warmup, then constant, cosine, linear or
//! step decay down to a floor.
//!
//! Warmup (steps are counted from 0): for `step < warmup`,
//! `lr = base_lr * (step + 1) / warmup`, so the first step already moves
//! (lr = base/warmup) and step `warmup - 1` reaches `base_lr` exactly. The
//! system this replaces divided by the wrong count and never reached the base
//! rate; the tests below pin every boundary.
//!
//! After warmup, progress `p = (step - warmup) / (total - warmup)` runs from
//! 0 to 1 and is held at 1 past the end:
//! - constant: `base_lr`
//! - cosine: `min + (base - min) * (1 + cos(pi p)) / 2`
//! - linear: `base - (base - min) * p`
//! - step: `base`, times 0.1 from p = 0.5, times 0.01 from p = 0.75, never
//!   below `min`.
//!
//! A run given time may change its total while it trains
//! ([`Schedule::retarget`]). Putting the new total into the formula above
//! would move `p`, and so the learning rate, at once; instead the progress
//! already made is kept: from the step `s` of the change, with progress
//! `p_s` there, `p = p_s + (1 - p_s) * (step - s) / (total - s)`. The rate
//! at `s` is the one it was, and the rest of the decay stretches or shrinks
//! to end exactly at the new total. Until a total is known ([`PENDING`])
//! the rate holds its peak after the warmup; the first total (fixed after
//! a run's short timed warm-up) is taken as if known from the start, so the
//! rate then steps down by what the decay would have done meanwhile (a
//! fraction of a percent for a warm-up of 2% of the run).

use serde::{Deserialize, Serialize};

pub use crate::config::ScheduleKind;
pub use crate::plan::PENDING;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f32,
    pub min_lr: f32,
    pub warmup_steps: u64,
    /// The step the decay ends at ([`PENDING`]: not known yet).
    total_steps: u64,
    /// Where the decay's current stretch starts: its step and the progress
    /// there (the warmup's end and 0 until the total changes).
    #[serde(default)]
    from: (u64, f64),
}

impl Schedule {
    pub fn new(
        kind: ScheduleKind,
        base_lr: f32,
        min_lr: f32,
        warmup_steps: u64,
        total_steps: u64,
    ) -> Schedule {
        Schedule {
            kind,
            base_lr,
            min_lr,
            warmup_steps,
            total_steps,
            from: (warmup_steps, 0.0),
        }
    }

    /// The step the decay ends at ([`PENDING`] while not known).
    pub fn total_steps(&self) -> u64 {
        self.total_steps
    }

    /// From `step` on, the decay ends at `total`; the learning rate at
    /// `step` stays what it was, unless no total was known before (see the
    /// module's notes).
    pub fn retarget(&mut self, step: u64, total: u64) {
        if self.total_steps != PENDING {
            let at = step.max(self.warmup_steps);
            self.from = (at, self.progress(at));
        }
        self.total_steps = total;
    }

    /// How far the decay has gone at `step` (from the warmup's end on):
    /// 0 at its start, 1 at its end and after. Steps before the last
    /// change read the progress at the change.
    fn progress(&self, step: u64) -> f64 {
        if self.total_steps == PENDING {
            return 0.0;
        }
        let (at, done) = self.from;
        if step <= at {
            return done;
        }
        let span = self.total_steps.saturating_sub(at).max(1);
        (done + (1.0 - done) * ((step - at) as f64 / span as f64)).min(1.0)
    }

    pub fn lr_at(&self, step: u64) -> f32 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let p = self.progress(step);
        let (base, min) = (self.base_lr as f64, self.min_lr as f64);
        let lr = match self.kind {
            ScheduleKind::Constant => base,
            ScheduleKind::Cosine => {
                min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            ScheduleKind::Linear => base - (base - min) * p,
            ScheduleKind::Step => {
                let factor = if p >= 0.75 {
                    0.01
                } else if p >= 0.5 {
                    0.1
                } else {
                    1.0
                };
                (base * factor).max(min)
            }
        };
        lr as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: ScheduleKind) -> Schedule {
        Schedule::new(kind, 1e-3, 1e-4, 10, 110)
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-9 + 1e-6 * b.abs()
    }

    #[test]
    fn warmup_is_exact_at_its_boundaries() {
        for kind in ScheduleKind::ALL {
            let s = sched(kind);
            assert!(close(s.lr_at(0), 1e-4), "{kind:?} step 0: {}", s.lr_at(0));
            assert!(close(s.lr_at(1), 2e-4), "{kind:?} step 1");
            assert!(close(s.lr_at(9), 1e-3), "{kind:?} step warmup-1");
            assert!(close(s.lr_at(10), 1e-3), "{kind:?} step warmup");
        }
    }

    #[test]
    fn decays_reach_their_ends() {
        let end = 110;
        assert!(close(sched(ScheduleKind::Constant).lr_at(end), 1e-3));
        assert!(close(sched(ScheduleKind::Cosine).lr_at(end), 1e-4));
        assert!(close(sched(ScheduleKind::Linear).lr_at(end), 1e-4));
        assert!(close(sched(ScheduleKind::Step).lr_at(end), 1e-4));
        // Held at the floor past the end.
        assert!(close(sched(ScheduleKind::Cosine).lr_at(10_000), 1e-4));
        // Midpoints: cosine and linear are halfway at p = 0.5.
        assert!(close(sched(ScheduleKind::Cosine).lr_at(60), 5.5e-4));
        assert!(close(sched(ScheduleKind::Linear).lr_at(60), 5.5e-4));
        assert!(close(sched(ScheduleKind::Step).lr_at(59), 1e-3));
        assert!(close(sched(ScheduleKind::Step).lr_at(60), 1e-4));
    }

    #[test]
    fn no_warmup_starts_at_base() {
        let s = Schedule::new(ScheduleKind::Cosine, 1e-3, 1e-4, 0, 110);
        assert!(close(s.lr_at(0), 1e-3));
        assert!("cosine".parse::<ScheduleKind>().unwrap() == ScheduleKind::Cosine);
        assert!("warm".parse::<ScheduleKind>().is_err());
    }

    /// The old formula, `p = (step - warmup) / (total - warmup)`, which a
    /// schedule never retargeted must still give to the bit (checkpoints
    /// written before retargeting resume on it).
    fn plain_lr(s: &Schedule, total: u64, step: u64) -> f32 {
        let mut plain = s.clone();
        plain.total_steps = total;
        plain.from = (s.warmup_steps, 0.0);
        let p = ((step - s.warmup_steps) as f64 / (total - s.warmup_steps) as f64).min(1.0);
        let (base, min) = (s.base_lr as f64, s.min_lr as f64);
        let want = (min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32;
        assert_eq!(plain.lr_at(step).to_bits(), want.to_bits(), "step {step}");
        want
    }

    #[test]
    fn a_new_total_keeps_the_rate_and_ends_the_decay_at_the_new_total() {
        for kind in ScheduleKind::ALL {
            for (at, total) in [(40, 200), (40, 60), (40, 41), (5, 300), (100, 500)] {
                let mut s = sched(kind);
                let before = s.lr_at(at);
                s.retarget(at, total);
                assert_eq!(s.lr_at(at).to_bits(), before.to_bits(), "{kind:?} at {at}");
                assert!(
                    close(s.lr_at(total), s.lr_at(10_000)),
                    "{kind:?} ends at {total}"
                );
                // No step of the new stretch rises above the one before it.
                for step in at.max(10)..total + 5 {
                    assert!(s.lr_at(step + 1) <= s.lr_at(step), "{kind:?} step {step}");
                }
                let end = if kind == ScheduleKind::Constant {
                    1e-3
                } else {
                    1e-4
                };
                assert!(close(s.lr_at(total), end), "{kind:?} {}", s.lr_at(total));
            }
        }
    }

    #[test]
    fn retargets_chain_and_a_pending_total_holds_the_peak() {
        let mut s = Schedule::new(ScheduleKind::Cosine, 1e-3, 1e-4, 10, PENDING);
        assert_eq!(s.lr_at(10), 1e-3);
        assert_eq!(s.lr_at(500), 1e-3);
        // Fixed at step 30: as if the total had been known from the start.
        s.retarget(30, 110);
        assert_eq!(s.lr_at(30), sched(ScheduleKind::Cosine).lr_at(30));
        assert!(close(s.lr_at(60), 5.5e-4));
        // Halfway, the total grows: the rate at 60 stays, the rest (half
        // the decay) now spans 150 steps instead of 50.
        s.retarget(60, 210);
        assert!(close(s.lr_at(60), 5.5e-4));
        let quarter = 1e-4 + 0.9e-3 * 0.5 * (1.0 + (std::f64::consts::PI * 0.75).cos()) as f32;
        assert!(close(s.lr_at(135), quarter), "{}", s.lr_at(135));
        assert!(close(s.lr_at(210), 1e-4));
        // A schedule never retargeted is the plain formula, to the bit.
        let plain = sched(ScheduleKind::Cosine);
        for step in [10, 11, 57, 109, 110, 111] {
            assert_eq!(plain.lr_at(step), plain_lr(&plain, 110, step));
        }
        // Retargeted during the warmup: the decay still starts at its end.
        let mut early = sched(ScheduleKind::Cosine);
        early.retarget(3, 210);
        assert_eq!(early.from, (10, 0.0));
        assert_eq!(early.lr_at(3), sched(ScheduleKind::Cosine).lr_at(3));
        assert_eq!(early.lr_at(57), plain_lr(&early, 210, 57));
    }
}
