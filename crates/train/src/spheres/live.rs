//! What a front end sees of the spheres: each sphere's state and sequence
//! count while a step runs (lock-free), its running tally between steps,
//! and the snapshot rows built from both.

use crate::events::{SphereState, SphereStats};
use crate::tree::{level_of, parent_of};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the UI sees of a sphere while a step runs (updated lock-free).
#[derive(Default)]
pub(crate) struct Live {
    pub(crate) state: AtomicU8,
    pub(crate) sequences: AtomicU64,
}

pub(crate) fn state_code(s: SphereState) -> u8 {
    match s {
        SphereState::Idle => 0,
        SphereState::Computing => 1,
        SphereState::Waiting => 2,
        SphereState::Reducing => 3,
    }
}

fn state_from(code: u8) -> SphereState {
    match code {
        1 => SphereState::Computing,
        2 => SphereState::Waiting,
        3 => SphereState::Reducing,
        _ => SphereState::Idle,
    }
}

/// Running statistics of one sphere, kept between steps.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) sequences: u64,
    pub(crate) loss_sum: f64,
    pub(crate) last_loss: f32,
    pub(crate) grad_norm: f32,
    /// Exponential average of the share of each step this sphere was busy.
    pub(crate) busy: f32,
}

/// Waits for each of `n` spheres to report on `done` (calling `on_done`),
/// calling `tick` about every `tick_every` meanwhile so a front end can
/// watch the step live.
pub(crate) fn collect_spheres<T>(
    done: &crossbeam_channel::Receiver<T>,
    n: usize,
    tick_every: Duration,
    tick: &mut dyn FnMut(),
    mut on_done: impl FnMut(T),
) {
    let mut finished = 0;
    let mut last_tick = Instant::now();
    while finished < n {
        match done.recv_timeout(tick_every) {
            Ok(report) => {
                on_done(report);
                finished += 1;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= tick_every {
            tick();
            last_tick = Instant::now();
        }
    }
}

pub(crate) fn snapshot(tally: &[Tally], live: &[Live]) -> Vec<SphereStats> {
    tally
        .iter()
        .zip(live)
        .enumerate()
        .map(|(id, (t, l))| SphereStats {
            id,
            parent: parent_of(id),
            level: level_of(id),
            sequences: l.sequences.load(Ordering::Relaxed),
            avg_loss: if t.sequences > 0 {
                (t.loss_sum / t.sequences as f64) as f32
            } else {
                0.0
            },
            last_loss: t.last_loss,
            grad_norm: t.grad_norm,
            busy: t.busy,
            state: state_from(l.state.load(Ordering::Relaxed)),
        })
        .collect()
}
