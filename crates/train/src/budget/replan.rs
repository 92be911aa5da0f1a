//! Re-planning a run given time while it trains: what it measures between
//! two looks at its plan, when a plan is changed, and what its checkpoints
//! keep of all that so a resumed run goes on with the same plan.
//!
//! The rule (docs/training.md, "A time budget that holds"): once at least
//! [`WINDOW_SHARE`] of the budget and [`WINDOW_STEPS`] steps have passed
//! since the last look, the run takes the mean step time measured since
//! then (steps only; evaluations and saves are counted by their own last
//! measured times) and projects when its schedule would end. Only when that
//! misses the deadline by more than [`TOLERANCE`] of the budget does it fix
//! a new length: the steps that fit in what is left, as after the warm-up.
//! Every plan is stored in the checkpoints with the budget spent and the
//! measurements under way.

use super::{WarmupTimes, steps_that_fit};
use serde::{Deserialize, Serialize};

/// The least share of the budget between two looks at the plan: long
/// enough to average a few seconds of noise, short enough to follow a load
/// that starts or stops.
pub const WINDOW_SHARE: f64 = 0.02;

/// The fewest steps a look at the plan is made from: a short budget's
/// window holds only a few steps, whose times vary more than a long
/// window's mean.
pub const WINDOW_STEPS: u64 = 8;

/// How far (a share of the budget) the projected end may be from the
/// deadline before the plan changes: smaller misses are noise, and each
/// change bends the learning-rate schedule.
pub const TOLERANCE: f64 = 0.02;

/// What a run given time has measured since it last looked at its plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The step it starts after, and the budget's time then (ns, all
    /// sessions).
    pub from_step: u64,
    pub from_ns: u64,
    /// Time spent in steps since then (ns).
    pub stepping_ns: u64,
}

impl Window {
    pub fn starting(step: u64, spent_ns: u64) -> Window {
        Window {
            from_step: step,
            from_ns: spent_ns,
            stepping_ns: 0,
        }
    }

    /// The mean step time in seconds over the window, at `step`; `None`
    /// before a step was measured.
    pub fn per_step(&self, step: u64) -> Option<f64> {
        let steps = step.saturating_sub(self.from_step);
        (steps > 0).then(|| crate::clock::secs(self.stepping_ns) / steps as f64)
    }

    /// True once the window, at `step`, spans at least [`WINDOW_SHARE`] of
    /// the budget and [`WINDOW_STEPS`] steps.
    pub fn is_long_enough(&self, step: u64, spent_ns: u64, budget_secs: f64) -> bool {
        let span = crate::clock::secs(spent_ns.saturating_sub(self.from_ns));
        span >= WINDOW_SHARE * budget_secs && step >= self.from_step + WINDOW_STEPS
    }
}

/// One plan of a run given time: the one fixed after the warm-up, or a
/// later change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    /// Made after this step: from the next one on, the schedule ends at
    /// `horizon` and the run stops at `last_step`.
    pub step: u64,
    pub horizon: u64,
    pub last_step: u64,
    /// The step time it was made from (ns).
    pub step_ns: u64,
}

/// What a checkpoint of a run given time keeps of its budget. All times
/// are whole nanoseconds, so a resumed run reads back exactly what was
/// measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// The budget's time spent up to the checkpoint, all sessions: a run
    /// stopped and resumed goes on from here (the time between, and the
    /// final save's, do not count).
    pub spent_ns: u64,
    /// The measurements since the last look at the plan.
    pub window: Window,
    /// The last evaluation's and checkpoint's times (0: none yet).
    pub eval_ns: u64,
    pub save_ns: u64,
    /// Every plan, in order.
    pub plans: Vec<PlanChange>,
}

/// When evaluations and periodic checkpoints come: an evaluation every
/// `eval_every` steps (0: none) and at each epoch's end, a checkpoint
/// every `checkpoint_every` epochs (0: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    pub eval_every: u64,
    pub steps_per_epoch: u64,
    pub checkpoint_every: u64,
}

impl Cadence {
    /// Evaluations after the steps in `from + 1 ..= to`.
    pub fn evaluations(&self, from: u64, to: u64) -> u64 {
        let epochs = multiples(self.steps_per_epoch, from, to);
        if self.eval_every == 0 {
            return epochs;
        }
        let both = lcm(self.eval_every, self.steps_per_epoch);
        multiples(self.eval_every, from, to) + epochs - multiples(both, from, to)
    }

    /// Periodic checkpoints after the steps in `from + 1 ..= to`.
    pub fn checkpoints(&self, from: u64, to: u64) -> u64 {
        let every = self.steps_per_epoch.saturating_mul(self.checkpoint_every);
        multiples(every, from, to)
    }
}

/// Multiples of `every` in `from + 1 ..= to` (none of 0).
fn multiples(every: u64, from: u64, to: u64) -> u64 {
    if every == 0 || to <= from {
        0
    } else {
        to / every - from / every
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a.checked_div(x).map_or(0, |q| q.saturating_mul(b))
}

/// More steps than any budget holds: a bound for the search.
const MOST_STEPS: u64 = 1 << 40;

/// What the rest of a run costs, in seconds: a step, an evaluation (with
/// the best checkpoint about half of them write), a periodic checkpoint,
/// when they come, and what the end adds (the final save, the memory's
/// fit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunCosts {
    pub per_step: f64,
    pub per_eval: f64,
    pub per_save: f64,
    pub at_end: f64,
    pub cadence: Cadence,
}

impl RunCosts {
    /// The steps `from + 1 ..= to`, with their evaluations and checkpoints.
    pub fn between(&self, from: u64, to: u64) -> f64 {
        let c = &self.cadence;
        to.saturating_sub(from) as f64 * self.per_step
            + c.evaluations(from, to) as f64 * self.per_eval
            + c.checkpoints(from, to) as f64 * self.per_save
    }

    /// When a run at `spent` seconds after step `from` ends if it stops
    /// after step `to`.
    pub fn projected_end(&self, spent: f64, from: u64, to: u64) -> f64 {
        spent + self.between(from, to) + self.at_end
    }

    /// Evaluations and checkpoints spread over the steps (seconds a step),
    /// as a long run sees them.
    pub fn overhead_per_step(&self) -> f64 {
        let c = &self.cadence;
        let times = WarmupTimes {
            per_step: self.per_step,
            per_eval: self.per_eval,
            per_save: self.per_save,
        };
        times.overhead_per_step(c.eval_every, c.steps_per_epoch, c.checkpoint_every)
    }

    /// The most steps after `from` that end by `budget` seconds, at least
    /// one (a budget already spent still ends with a trained step): a
    /// search for the last step whose evaluations and checkpoints, counted
    /// where they fall, end in time, from the estimate that spreads them
    /// evenly.
    pub fn steps_that_fit(&self, budget: f64, spent: f64, from: u64) -> u64 {
        let fits = |n: u64| self.projected_end(spent, from, from.saturating_add(n)) <= budget;
        let estimate = steps_that_fit(
            budget - spent,
            self.per_step,
            self.overhead_per_step(),
            self.at_end,
        );
        // The answer lies in lo..=hi; lo = 1 stands even when it does not fit.
        let (mut lo, mut hi) = (1, MOST_STEPS);
        let mut probe = estimate.clamp(1, MOST_STEPS);
        while lo < hi {
            if fits(probe) {
                lo = probe;
            } else {
                hi = probe - 1;
            }
            probe = lo + hi.saturating_sub(lo).div_ceil(2);
        }
        lo
    }
}

/// True when a run at `spent` seconds after step `from`, whose schedule
/// ends after step `to`, would end more than [`TOLERANCE`] of the budget
/// before or after it.
pub fn misses_deadline(budget: f64, spent: f64, from: u64, to: u64, costs: &RunCosts) -> bool {
    (costs.projected_end(spent, from, to) - budget).abs() > TOLERANCE * budget
}

/// Tokens per second at `per_step` seconds a step, in thousands.
pub fn k_tokens_per_sec(tokens_per_step: u64, per_step: f64) -> f64 {
    if per_step > 0.0 {
        tokens_per_step as f64 / per_step / 1e3
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_measures_its_steps_and_spans_a_share_of_the_budget() {
        let mut w = Window::starting(100, 5_000_000_000);
        assert_eq!(w.per_step(100), None);
        w.stepping_ns = 3_000_000_000;
        assert_eq!(w.per_step(130), Some(0.1));
        // 2% of 100 s is 2 s, and 8 steps at least.
        assert!(!w.is_long_enough(130, 6_999_999_999, 100.0));
        assert!(w.is_long_enough(130, 7_000_000_000, 100.0));
        assert!(!w.is_long_enough(107, 9_000_000_000, 100.0));
        assert!(w.is_long_enough(108, 9_000_000_000, 100.0));
    }

    fn costs() -> RunCosts {
        RunCosts {
            per_step: 0.5,
            per_eval: 2.0,
            per_save: 1.0,
            at_end: 2.0,
            cadence: Cadence {
                eval_every: 50,
                steps_per_epoch: 300,
                checkpoint_every: 2,
            },
        }
    }

    #[test]
    fn evaluations_and_checkpoints_are_counted_where_they_fall() {
        let c = costs().cadence;
        // After steps 1..=600: every 50th (12), the epoch ends at 300 and
        // 600 being among them; one checkpoint, at 600.
        assert_eq!(c.evaluations(0, 600), 12);
        assert_eq!(c.checkpoints(0, 600), 1);
        assert_eq!(c.evaluations(299, 301), 1);
        assert_eq!(c.evaluations(600, 600), 0);
        // Epoch ends off the interval count too.
        let odd = Cadence {
            eval_every: 40,
            ..c
        };
        // Every 40th (15) and the epoch end at 300; 600 is both.
        assert_eq!(odd.evaluations(0, 600), 16);
        let never = Cadence {
            eval_every: 0,
            checkpoint_every: 0,
            ..c
        };
        assert_eq!(
            (never.evaluations(0, 600), never.checkpoints(0, 600)),
            (2, 0)
        );
    }

    #[test]
    fn only_a_miss_beyond_the_tolerance_changes_the_plan() {
        let costs = costs();
        // 1000 s, 400 spent at step 100, to step 1100: 1000 steps (500 s),
        // 20 evaluations (40 s), one checkpoint, 2 s at the end: 943 s,
        // 5.7% early.
        assert_eq!(costs.projected_end(400.0, 100, 1100), 943.0);
        assert!(misses_deadline(1000.0, 400.0, 100, 1100, &costs));
        // To 1190: 990 s, within 2%; to 1130 (958 s) and 1250 (1025 s),
        // beyond.
        assert_eq!(costs.projected_end(400.0, 100, 1190), 990.0);
        assert!(!misses_deadline(1000.0, 400.0, 100, 1190, &costs));
        assert!(!misses_deadline(1000.0, 400.0, 100, 1235, &costs));
        assert!(misses_deadline(1000.0, 400.0, 100, 1130, &costs));
        assert!(misses_deadline(1000.0, 400.0, 100, 1250, &costs));
        assert_eq!(k_tokens_per_sec(2048, 0.2), 10.24);
        assert_eq!(k_tokens_per_sec(2048, 0.0), 0.0);
    }

    #[test]
    fn the_steps_that_fit_end_by_the_deadline_counting_each_evaluation() {
        let costs = costs();
        // Spread evenly, evaluations would let about 1090 steps fit; counted
        // where they fall, 1104 do (to step 1204: 1000 s on the dot).
        assert_eq!(costs.steps_that_fit(1000.0, 400.0, 100), 1104);
        assert_eq!(costs.projected_end(400.0, 100, 1204), 1000.0);
        // The evaluation after step 1250 costs 2 s: a budget that ends
        // within it stops at 1249, one that covers it at 1250.
        assert_eq!(costs.steps_that_fit(1024.5, 400.0, 100), 1149);
        assert_eq!(costs.steps_that_fit(1025.0, 400.0, 100), 1150);
        // Spent already: one step.
        assert_eq!(costs.steps_that_fit(1000.0, 1200.0, 100), 1);
    }

    #[test]
    fn a_record_reads_back_to_the_nanosecond() {
        let r = BudgetRecord {
            spent_ns: 1_234_567_890_123,
            window: Window {
                from_step: 7,
                from_ns: 987_654_321_987,
                stepping_ns: 3,
            },
            eval_ns: 11,
            save_ns: 13,
            plans: vec![PlanChange {
                step: 7,
                horizon: 4120,
                last_step: 4000,
                step_ns: 123_456_789,
            }],
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<BudgetRecord>(&json).unwrap(), r);
    }
}
