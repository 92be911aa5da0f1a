//! The trainer thread (API fixed; loop to come).

use super::{Command, Event, TrainConfig};
use crossbeam_channel::{Receiver, Sender};
use std::thread::JoinHandle;

/// A running training job: send it commands, drain its events.
pub struct TrainerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub thread: Option<JoinHandle<()>>,
}

/// Starts training on a new thread. Everything, including data preparation
/// and errors, is reported through the event channel; the run ends with
/// `Event::Finished` or `Event::Error`.
pub fn spawn(_config: TrainConfig) -> TrainerHandle {
    unimplemented!("trainer")
}
