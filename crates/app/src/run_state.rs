//! The live picture of one training run, built only from trainer `Event`s:
//! phase, sphere stats, loss history, progress, checkpoints and notices.
//! No drawing here, so feeding a scripted event sequence tests the view.

use super::loss_plot::LossHistory;
use cllm_train::Event;
use cllm_train::events::{EvalStats, Phase, SaveReason, SphereStats, StepStats, Summary};
use std::path::PathBuf;

pub use cllm_train::events::RunInfo;

/// How a notice reads: what the run decided or did (the plan a time
/// budget fixed, the weights the final model holds), what may be wrong, or
/// why it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    Note,
    Warning,
    Error,
}

/// A note, warning or error shown as a visible notice.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub text: String,
    pub kind: NoticeKind,
    /// Step the notice arrived at (0 before training).
    pub step: u64,
}

#[derive(Clone, Debug, Default)]
pub struct RunView {
    pub phase: Option<Phase>,
    pub info: Option<RunInfo>,
    pub spheres: Vec<SphereStats>,
    pub last_step: Option<StepStats>,
    pub last_eval: Option<EvalStats>,
    pub best_train_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    pub history: LossHistory,
    pub last_checkpoint: Option<(PathBuf, SaveReason)>,
    pub notices: Vec<Notice>,
    pub last_sample: Option<(u64, String)>,
    pub summary: Option<Summary>,
    /// Set by `Finished` or `Error`: nothing more will arrive.
    pub ended: bool,
}

impl RunView {
    /// Folds one event into the view.
    pub fn apply(&mut self, event: Event) {
        let step = self.last_step.as_ref().map_or(0, |s| s.step);
        match event {
            Event::Phase(p) => self.phase = Some(p),
            Event::Ready(info) => self.info = Some(info),
            Event::Spheres(s) => self.spheres = s,
            // The app trains on one machine.
            Event::Cluster(_) => {}
            Event::Step(s) => {
                self.phase = Some(Phase::Training);
                if s.loss.is_finite() {
                    self.best_train_loss =
                        Some(self.best_train_loss.map_or(s.loss, |b| b.min(s.loss)));
                }
                self.history.push_step(&s);
                self.last_step = Some(s);
            }
            Event::Eval(e) => {
                if e.loss.is_finite() {
                    self.best_val_loss = Some(self.best_val_loss.map_or(e.loss, |b| b.min(e.loss)));
                }
                self.history.push_eval(&e);
                self.last_eval = Some(e);
            }
            Event::Sample { step, text } => self.last_sample = Some((step, text)),
            Event::Checkpoint { path, reason } => self.last_checkpoint = Some((path, reason)),
            Event::Planned {
                total_steps,
                message,
            }
            | Event::Replanned {
                total_steps,
                message,
                ..
            } => {
                if let Some(info) = &mut self.info {
                    info.total_steps = total_steps;
                }
                self.notices.push(Notice {
                    text: message,
                    kind: NoticeKind::Note,
                    step,
                });
            }
            Event::Info(text) => self.notices.push(Notice {
                text,
                kind: NoticeKind::Note,
                step,
            }),
            Event::Warning(text) => self.notices.push(Notice {
                text,
                kind: NoticeKind::Warning,
                step,
            }),
            Event::Error(text) => {
                self.notices.push(Notice {
                    text,
                    kind: NoticeKind::Error,
                    step,
                });
                self.ended = true;
                self.settle_spheres();
            }
            Event::Finished(s) => {
                if let Some(p) = &s.final_model {
                    self.last_checkpoint = Some((p.clone(), SaveReason::Final));
                }
                self.summary = Some(s);
                self.ended = true;
                self.settle_spheres();
            }
        }
    }

    /// The workers are gone once the run ends: show them idle (their
    /// counts stay for the record).
    fn settle_spheres(&mut self) {
        for s in &mut self.spheres {
            s.state = cllm_train::events::SphereState::Idle;
            s.busy = 0.0;
        }
    }

    /// Fraction of the run done, 0..1, from the latest step.
    pub fn fraction(&self) -> f32 {
        match &self.last_step {
            Some(s) if s.total_steps > 0 => {
                (s.step as f64 / s.total_steps as f64).clamp(0.0, 1.0) as f32
            }
            _ => 0.0,
        }
    }
}
