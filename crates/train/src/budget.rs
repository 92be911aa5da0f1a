//! A run given time instead of epochs (`cllm train --time 30m`).
//!
//! The run starts with a provisional plan, times a short warm-up (a few
//! steps and one evaluation), then fixes how many steps fit in what is left
//! of the budget: the schedule's horizon and the last step. While it trains
//! it looks at that plan again and changes it when the machine got faster
//! or slower ([`replan`]). Every plan is stored in every checkpoint, so a
//! resumed run keeps the same schedule (exact resume) instead of measuring
//! again on a machine that may be busier.

pub mod replan;

use crate::config::ConfigError;
use std::time::Duration;

/// Parses a duration as people type it: `30m`, `90s`, `1h`, `1h30m`,
/// `2.5h`. A bare number is refused, since seconds and minutes are both
/// plausible.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let t = text.trim();
    let bad = || ConfigError::UnreadableDuration(text.to_string());
    if t.is_empty() {
        return Err(bad());
    }
    let mut secs = 0.0f64;
    let mut number = String::new();
    let mut any_unit = false;
    for ch in t.chars() {
        if ch.is_ascii_digit() || ch == '.' {
            number.push(ch);
            continue;
        }
        if ch.is_whitespace() {
            continue;
        }
        let scale = match ch {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86_400.0,
            _ => return Err(bad()),
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        secs += value * scale;
        number.clear();
        any_unit = true;
    }
    if !number.is_empty() || !any_unit {
        return Err(bad());
    }
    if !(secs.is_finite() && secs >= 1.0) {
        return Err(ConfigError::DurationTooShort(text.to_string()));
    }
    if secs > 366.0 * 86_400.0 {
        return Err(ConfigError::DurationTooLong(text.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `1h 05m 00s`, `12m 30s`, `45s`: how a budget or a run's time is shown.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// What the warm-up measured, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupTimes {
    /// One optimizer step (the mean over the timed steps).
    pub per_step: f64,
    /// One evaluation, with the best checkpoint it usually writes (0 when
    /// the run has no validation split).
    pub per_eval: f64,
    /// Writing one checkpoint.
    pub per_save: f64,
}

impl WarmupTimes {
    /// What evaluations and checkpoints add to each step on average: an
    /// evaluation every `eval_every` steps and at every epoch end, and a
    /// periodic checkpoint every `checkpoint_every` epochs.
    pub fn overhead_per_step(
        &self,
        eval_every: u64,
        steps_per_epoch: u64,
        checkpoint_every: u64,
    ) -> f64 {
        let rate = |every: u64| if every > 0 { 1.0 / every as f64 } else { 0.0 };
        let evals = rate(eval_every) + rate(steps_per_epoch);
        let saves = rate(steps_per_epoch.saturating_mul(checkpoint_every));
        evals * self.per_eval + saves * self.per_save
    }
}

/// Most of a time budget that evaluations take when the person did not say
/// how often to evaluate: the rest trains (the default interval alone can
/// spend a large share of a short budget evaluating).
pub const EVAL_SHARE: f64 = 0.05;

/// The evaluation interval of a run given time that left it to the
/// trainer: `eval_every`, or the shortest interval at which evaluations
/// (`per_eval` seconds each) take at most [`EVAL_SHARE`] of the steps'
/// time (`per_step` seconds each). 0 (never) stays 0.
pub fn eval_every_within_share(eval_every: u64, per_step: f64, per_eval: f64) -> u64 {
    if eval_every == 0 || !(per_step > 0.0 && per_eval > 0.0) {
        return eval_every;
    }
    let shortest = (per_eval / (EVAL_SHARE * per_step)).ceil();
    eval_every.max(shortest.min(1e12) as u64)
}

/// How many more steps fit in `remaining` seconds when each costs
/// `per_step` plus `overhead` (evaluations and checkpoints spread over the
/// steps), keeping `final_save` seconds for the final checkpoint. At least
/// one step, so a budget already spent still ends with a trained step and a
/// saved model.
pub fn steps_that_fit(remaining: f64, per_step: f64, overhead: f64, final_save: f64) -> u64 {
    let cost = per_step + overhead.max(0.0);
    if !(cost.is_finite() && cost > 0.0) {
        return 1;
    }
    (((remaining - final_save) / cost).floor().max(1.0)) as u64
}

/// Most passes over the training split a run given time makes when the
/// person gave no `--epochs`: past it, a small corpus is memorised (its
/// held-out loss gets worse with more passes), while a large corpus never
/// reaches it in a budget of hours.
pub const MAX_EPOCHS: u64 = 16;

/// The most passes a run given time makes: `--epochs` when given with
/// `--time`, else [`MAX_EPOCHS`].
pub fn max_epochs(config: &crate::config::TrainConfig) -> u64 {
    match config.budget.epochs {
        0 => MAX_EPOCHS,
        n => n as u64,
    }
}

/// The steps a run given time takes from `step`: the `fit` that fit in
/// the budget, but no more than `max_epochs` passes over the training split
/// in all (`steps_per_epoch` each). True when the epochs decided.
pub fn steps_within_epochs(
    fit: u64,
    step: u64,
    steps_per_epoch: u64,
    max_epochs: u64,
) -> (u64, bool) {
    let cap = max_epochs
        .saturating_mul(steps_per_epoch)
        .saturating_sub(step)
        .max(1);
    if fit > cap { (cap, true) } else { (fit, false) }
}

/// Steps the warm-up times: enough to average out the first steps' page
/// faults and cache warm-up and long enough to measure (about 2% of the
/// budget, at most 20 s), at least 3. Until the warm-up ends the schedule
/// holds its peak after the learning-rate warmup, which is what a cosine
/// schedule of thousands of steps gives there anyway.
pub fn warmup_steps_to_time(budget_secs: f64, secs_per_step_guess: f64) -> u64 {
    let target = (budget_secs * 0.02).min(20.0);
    let by_time = if secs_per_step_guess > 0.0 {
        (target / secs_per_step_guess).ceil()
    } else {
        3.0
    };
    (by_time.min(1e9) as u64).max(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluations_are_spaced_to_a_twentieth_of_the_steps_time() {
        // 36 ms steps, 0.6 s evaluations: every 50 steps would be 33% of
        // the steps' time; every 334 steps is 4.99%.
        let every = eval_every_within_share(50, 0.036, 0.6);
        assert_eq!(every, 334);
        assert!(0.6 / every as f64 <= EVAL_SHARE * 0.036);
        assert!(0.6 / (every - 1) as f64 > EVAL_SHARE * 0.036);
        // Cheap evaluations keep the interval asked for; never stays never.
        assert_eq!(eval_every_within_share(50, 1.0, 0.01), 50);
        assert_eq!(eval_every_within_share(0, 0.036, 0.6), 0);
        assert_eq!(eval_every_within_share(50, 0.0, 0.6), 50);
    }

    #[test]
    fn a_budget_longer_than_the_epoch_cap_stops_at_the_cap() {
        // 100 steps an epoch, 200 taken: 16 epochs end at step 1600.
        assert_eq!(steps_within_epochs(5000, 200, 100, 16), (1400, true));
        assert_eq!(steps_within_epochs(1400, 200, 100, 16), (1400, false));
        assert_eq!(steps_within_epochs(900, 200, 100, 16), (900, false));
        // A warm-up already past the cap still takes one step.
        assert_eq!(steps_within_epochs(50, 2000, 100, 16), (1, true));
    }

    #[test]
    fn durations_as_people_type_them() {
        let secs = |t: &str| parse_duration(t).unwrap().as_secs_f64();
        assert_eq!(secs("30m"), 1800.0);
        assert_eq!(secs("90s"), 90.0);
        assert_eq!(secs("1h"), 3600.0);
        assert_eq!(secs("1h30m"), 5400.0);
        assert_eq!(secs("1h 30m 15s"), 5415.0);
        assert_eq!(secs("2.5h"), 9000.0);
        assert_eq!(secs(" 10m "), 600.0);
        for bad in [
            "", "30", "m", "10x", "1h30", "abc", "0s", "0.5s", "1..5m", "400d",
        ] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(
                e.contains(bad.trim()) || bad.trim().is_empty(),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn durations_are_shown_in_units() {
        assert_eq!(format_duration(45.2), "45s");
        assert_eq!(format_duration(750.0), "12m 30s");
        assert_eq!(format_duration(3900.0), "1h 05m 00s");
    }

    #[test]
    fn steps_fit_the_budget_with_evaluations_and_saves() {
        let t = WarmupTimes {
            per_step: 0.5,
            per_eval: 2.0,
            per_save: 0.5,
        };
        // An evaluation every 50 steps and at each 1000-step epoch end, a
        // periodic checkpoint every 2 epochs.
        let overhead = t.overhead_per_step(50, 1000, 2);
        assert!((overhead - (2.0 / 50.0 + 2.0 / 1000.0 + 0.5 / 2000.0)).abs() < 1e-12);
        // 100 s, 0.5 s kept for the final save: 99.5 / 0.54225 = 183.49.
        assert_eq!(steps_that_fit(100.0, t.per_step, overhead, t.per_save), 183);
        let spent = 183.0 * (0.5 + overhead) + 0.5;
        assert!(spent <= 100.0 && spent > 100.0 - (0.5 + overhead));
        // No evaluations nor epochs: only steps and the final save.
        assert_eq!(t.overhead_per_step(0, 0, 0), 0.0);
        assert_eq!(steps_that_fit(100.0, 0.5, 0.0, 0.5), 199);
        // A spent budget still trains one step; a zero cost cannot divide.
        assert_eq!(steps_that_fit(-5.0, 0.5, overhead, 0.5), 1);
        assert_eq!(steps_that_fit(100.0, 0.0, 0.0, 0.0), 1);
    }

    #[test]
    fn warmup_times_about_two_percent_of_the_budget() {
        // 30 min at 0.1 s a step: 2% is 36 s, held to 20 s: 200 steps.
        assert_eq!(warmup_steps_to_time(1800.0, 0.1), 200);
        // 1 min at 0.1 s: 2% is 1.2 s, 12 steps.
        assert_eq!(warmup_steps_to_time(60.0, 0.1), 12);
        // Slow steps, or no guess: at least 3.
        assert_eq!(warmup_steps_to_time(60.0, 5.0), 3);
        assert_eq!(warmup_steps_to_time(60.0, 0.0), 3);
    }
}
