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

use serde::{Deserialize, Serialize};

pub use crate::config::ScheduleKind;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f32,
    pub min_lr: f32,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Schedule {
    pub fn lr_at(&self, step: u64) -> f32 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let p = ((step - self.warmup_steps) as f64 / decay_steps as f64).min(1.0);
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
        Schedule {
            kind,
            base_lr: 1e-3,
            min_lr: 1e-4,
            warmup_steps: 10,
            total_steps: 110,
        }
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
        let mut s = sched(ScheduleKind::Cosine);
        s.warmup_steps = 0;
        assert!(close(s.lr_at(0), 1e-3));
        assert!("cosine".parse::<ScheduleKind>().unwrap() == ScheduleKind::Cosine);
        assert!("warm".parse::<ScheduleKind>().is_err());
    }
}
