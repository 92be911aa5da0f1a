//! The runtime side of a training run: the trainer handle, START/STOP/Save,
//! and draining events into the `RunView` every frame without waiting.

use super::error_text::panic_text;
use super::run_state::RunView;
use cllm_train::{Command, Event, TrainConfig, TrainerHandle};
use crossbeam_channel::TryRecvError;
use std::time::{Duration, Instant};

/// How a run is started; `cllm_train::spawn` in the app, a scripted
/// trainer in tests.
pub type Spawner = fn(TrainConfig) -> TrainerHandle;

/// Longest the app waits for the final save when the window is closed
/// during training.
pub const CLOSE_GRACE: Duration = Duration::from_secs(30);

pub struct Session {
    spawner: Spawner,
    handle: Option<TrainerHandle>,
    pub run: RunView,
    pub stop_sent: bool,
    /// Set when the window was closed mid-run: close once the trainer ends
    /// or this deadline passes.
    pub close_deadline: Option<Instant>,
    /// Why START was refused, or a note about Save.
    pub message: Option<(String, bool)>,
    /// The configuration of the current or last run.
    pub config: Option<TrainConfig>,
}

impl Session {
    pub fn new(spawner: Spawner) -> Session {
        Session {
            spawner,
            handle: None,
            run: RunView::default(),
            stop_sent: false,
            close_deadline: None,
            message: None,
            config: None,
        }
    }

    pub fn is_training(&self) -> bool {
        self.handle.is_some()
    }

    /// Starts a run with `config` (already validated by the caller). A
    /// panic while spawning becomes a message; the UI stays up.
    pub fn start(&mut self, config: TrainConfig) {
        if self.is_training() {
            return;
        }
        let spawner = self.spawner;
        let cfg = config.clone();
        match std::panic::catch_unwind(move || spawner(cfg)) {
            Ok(handle) => {
                self.handle = Some(handle);
                self.run = RunView::default();
                self.stop_sent = false;
                self.message = None;
                self.config = Some(config);
            }
            Err(panic) => {
                let why = panic_text(&panic);
                self.message = Some((format!("the trainer could not start: {why}"), true));
            }
        }
    }

    pub fn refuse(&mut self, why: String) {
        self.message = Some((why, true));
    }

    /// Asks the trainer to finish its step, save and end.
    pub fn stop(&mut self) {
        if let Some(h) = &self.handle
            && !self.stop_sent
        {
            self.stop_sent = h.commands.send(Command::Stop).is_ok();
        }
    }

    pub fn save_now(&mut self) {
        if let Some(h) = &self.handle {
            let sent = h.commands.send(Command::SaveNow).is_ok();
            self.message = Some(if sent {
                ("Saving after the current step…".into(), false)
            } else {
                ("the trainer is no longer listening".into(), true)
            });
        }
    }

    /// Folds every event that has arrived into the view; returns how many.
    /// Never blocks. The handle is dropped once the run has ended.
    pub fn poll(&mut self) -> usize {
        let Some(h) = &self.handle else { return 0 };
        let mut n = 0;
        let mut disconnected = false;
        loop {
            match h.events.try_recv() {
                Ok(ev) => {
                    n += 1;
                    if let (Event::Checkpoint { path, .. }, Some((msg, false))) =
                        (&ev, &self.message)
                        && msg.starts_with("Saving")
                    {
                        self.message = Some((format!("Saved {}", path.display()), false));
                    }
                    self.run.apply(ev);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if disconnected && !self.run.ended {
            self.run.apply(Event::Error(
                "the trainer stopped without reporting why".into(),
            ));
        }
        if self.run.ended {
            self.finish();
        }
        n
    }

    fn finish(&mut self) {
        if let Some(mut h) = self.handle.take() {
            // The thread sends Finished/Error as its last act, so it is about
            // to return; join only if it already has, never wait here.
            if let Some(t) = h.thread.take()
                && t.is_finished()
            {
                let _ = t.join();
            }
        }
        self.stop_sent = false;
    }

    /// For the end of the process: stop and wait, bounded, for the final
    /// save. Only used when the window is already gone.
    pub fn stop_and_wait(&mut self, limit: Duration) {
        self.stop();
        let deadline = Instant::now() + limit;
        while let Some(h) = &self.handle {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match h.events.recv_timeout(left) {
                Ok(ev) => self.run.apply(ev),
                Err(_) => break,
            }
            if self.run.ended {
                self.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_train::events::{SaveReason, Summary};
    use std::path::PathBuf;

    fn panicking(_: TrainConfig) -> TrainerHandle {
        panic!("trainer missing")
    }

    /// Ends with a final checkpoint once told to stop.
    fn obedient(_: TrainConfig) -> TrainerHandle {
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let thread = std::thread::spawn(move || {
            while cmd_rx.recv() == Ok(Command::SaveNow) {
                let _ = ev_tx.send(Event::Checkpoint {
                    path: PathBuf::from("checkpoints/manual.cllm"),
                    reason: SaveReason::Manual,
                });
            }
            // As the real trainer ends a run the user stopped.
            let _ = ev_tx.send(Event::Warning("stopped at step 0 of 10".into()));
            let _ = ev_tx.send(Event::Checkpoint {
                path: PathBuf::from("models/final.cllm"),
                reason: SaveReason::Final,
            });
            let _ = ev_tx.send(Event::Finished(Summary {
                initial_loss: 0.0,
                final_loss: 0.0,
                ..Summary::empty(0.0)
            }));
        });
        TrainerHandle {
            commands: cmd_tx,
            events: ev_rx,
            thread: Some(thread),
        }
    }

    #[test]
    fn a_trainer_that_cannot_start_leaves_a_message() {
        let mut s = Session::new(panicking);
        s.start(TrainConfig::default());
        assert!(!s.is_training());
        let (msg, is_err) = s.message.clone().unwrap();
        assert!(is_err && msg.contains("trainer missing"), "{msg}");
    }

    #[test]
    fn save_then_stop_and_wait_for_the_final_checkpoint() {
        let mut s = Session::new(obedient);
        s.start(TrainConfig::default());
        assert!(s.is_training());
        s.save_now();
        s.stop_and_wait(Duration::from_secs(60));
        assert!(!s.is_training());
        assert!(s.run.ended);
        assert_eq!(
            s.run.last_checkpoint,
            Some((PathBuf::from("models/final.cllm"), SaveReason::Final))
        );
    }
}
