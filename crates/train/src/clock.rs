//! Where a run's timings come from: the machine's clock, or (tests only) a
//! simulated clock whose steps, evaluations and saves cost what the test
//! says, a stand-in for a machine whose load changes. A time budget's plan
//! is made from these timings alone (`crate::budget`, `run/timed.rs`), so a
//! test can load the machine, or stop loading it, at any point of a run
//! without sleeping.

use std::time::Instant;

/// What just ended, for a clock that charges work instead of measuring it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Step,
    Evaluation,
    Save,
}

/// A run's clock, in nanoseconds since the session's trainer started.
pub trait Clock: Send {
    fn now_ns(&self) -> u64;

    /// `work` has just ended. The machine's clock has already measured it;
    /// a simulated one moves on by what it costs.
    fn charge(&mut self, _work: Work) {}
}

/// The machine's clock.
pub struct WallClock {
    started: Instant,
}

impl WallClock {
    /// A clock whose zero is `started` (the trainer's start: data
    /// preparation counts).
    pub fn since(started: Instant) -> WallClock {
        WallClock { started }
    }
}

impl Clock for WallClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Nanoseconds as seconds.
pub fn secs(ns: u64) -> f64 {
    ns as f64 * 1e-9
}

/// Seconds as whole nanoseconds (negative and non-finite: 0).
pub fn nanos(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1e9).round().min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// A machine a test describes: what a step, an evaluation and a save
/// cost, and a stretch of the run's time during which steps are slower
/// (another program sharing the cores). All in nanoseconds, so a run and
/// its resumed half see the same times to the bit.
#[cfg(feature = "test-faults")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedLoad {
    pub step_ns: u64,
    pub eval_ns: u64,
    pub save_ns: u64,
    /// The budget's time (all sessions) during which steps cost `slowdown`
    /// percent of `step_ns`.
    pub loaded: std::ops::Range<u64>,
    pub slowdown_percent: u64,
}

/// The clock of a [`SimulatedLoad`]: it starts at 0 like the machine's,
/// `spent_before` being the budget's time the session resumed at.
#[cfg(feature = "test-faults")]
pub struct SimulatedClock {
    load: SimulatedLoad,
    spent_before_ns: u64,
    now_ns: u64,
}

#[cfg(feature = "test-faults")]
impl SimulatedClock {
    pub fn new(load: SimulatedLoad, spent_before_ns: u64) -> SimulatedClock {
        SimulatedClock {
            load,
            spent_before_ns,
            now_ns: 0,
        }
    }
}

#[cfg(feature = "test-faults")]
impl Clock for SimulatedClock {
    fn now_ns(&self) -> u64 {
        self.now_ns
    }

    fn charge(&mut self, work: Work) {
        let l = &self.load;
        let cost = match work {
            Work::Step if l.loaded.contains(&(self.spent_before_ns + self.now_ns)) => {
                l.step_ns * l.slowdown_percent / 100
            }
            Work::Step => l.step_ns,
            Work::Evaluation => l.eval_ns,
            Work::Save => l.save_ns,
        };
        self.now_ns += cost;
    }
}

#[cfg(all(test, feature = "test-faults"))]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_machine_is_slow_only_while_loaded() {
        let load = SimulatedLoad {
            step_ns: 100,
            eval_ns: 1000,
            save_ns: 10,
            loaded: 200..400,
            slowdown_percent: 300,
        };
        let mut c = SimulatedClock::new(load.clone(), 0);
        let mut ends = Vec::new();
        for _ in 0..5 {
            c.charge(Work::Step);
            ends.push(c.now_ns());
        }
        // The step that starts at 200 is loaded: it costs 300.
        assert_eq!(ends, [100, 200, 500, 600, 700]);
        c.charge(Work::Evaluation);
        c.charge(Work::Save);
        assert_eq!(c.now_ns(), 1710);
        // A resumed session starts its own count at 0, in the run's time.
        let mut resumed = SimulatedClock::new(load, 250);
        resumed.charge(Work::Step);
        assert_eq!(resumed.now_ns(), 300);
    }

    #[test]
    fn seconds_and_nanoseconds() {
        assert_eq!(nanos(1.5), 1_500_000_000);
        assert_eq!(nanos(-1.0), 0);
        assert_eq!(nanos(f64::NAN), 0);
        assert_eq!(secs(2_500_000_000), 2.5);
    }
}
