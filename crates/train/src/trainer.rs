//! The trainer: a training run on its own thread ([`spawn`]). Front ends talk
//! to it only through the command and event channels. [`run`] is the loop;
//! the phases it calls (data, model, step, evaluation, saving, finish) are
//! methods of [`Run`].

use super::TrainConfig;
use super::cluster::Cluster;
use super::error::TrainError;
use super::events::{Command, Event, Summary};
#[cfg(feature = "test-faults")]
use super::faults::Faults;
use super::run::Run;
use crossbeam_channel::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Instant;

pub use super::evaluate::evaluate_model;
pub use super::run::model_config_for;

/// How a run is started besides its config.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// The ranks this process trains with, which must all run the same
    /// config (MPI, or threads in tests); by default this machine alone.
    pub cluster: Cluster,
    /// Faults a test injects (the `test-faults` feature only).
    #[cfg(feature = "test-faults")]
    pub faults: Faults,
}

impl TrainOptions {
    /// One rank of a distributed run over `cluster`.
    pub fn in_cluster(cluster: Cluster) -> TrainOptions {
        TrainOptions {
            cluster,
            #[cfg(feature = "test-faults")]
            faults: Faults::default(),
        }
    }
}

/// A running training job: send it commands, drain its events.
pub struct TrainerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub thread: Option<JoinHandle<()>>,
}

impl TrainerHandle {
    /// Asks the trainer to stop (it finishes the current step and saves).
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
    }

    /// True once the trainer thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

/// Starts training on a new thread. Everything, including data preparation
/// and errors, is reported through the event channel; the run ends with
/// `Event::Finished` or `Event::Error`.
pub fn spawn(config: TrainConfig, options: TrainOptions) -> TrainerHandle {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("cllm-trainer".into())
        .spawn(move || {
            let mut emit = |e: Event| {
                let _ = ev_tx.send(e);
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(config, options, &cmd_rx, &mut emit)
            }));
            match outcome {
                Ok(Ok(summary)) => emit(Event::Finished(summary)),
                Ok(Err(e)) => emit(Event::Error(e.to_string())),
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    emit(Event::Error(TrainError::Panic(what).to_string()))
                }
            }
        })
        .expect("spawning the trainer thread");
    TrainerHandle {
        commands: cmd_tx,
        events: ev_rx,
        thread: Some(thread),
    }
}

/// Runs one training job to the end on the calling thread: the phases in
/// order, each a method of [`Run`]: the loop reads like nanoGPT's. In a
/// distributed run every rank reads and prepares the same data (checked by
/// hash); rank 0 alone evaluates and saves.
pub fn run(
    user_config: TrainConfig,
    options: TrainOptions,
    commands: &Receiver<Command>,
    emit: &mut dyn FnMut(Event),
) -> Result<Summary, TrainError> {
    let started = Instant::now();
    user_config.validate()?;
    let (config, origin) = Run::settle_config(user_config, emit)?;
    let Some(prepared) = Run::prepare_data(&config, &origin, commands, emit)? else {
        emit(Event::Warning(
            "stopped before training began: nothing was trained or saved".into(),
        ));
        return Ok(Summary::empty(started.elapsed().as_secs_f64()));
    };
    let mut run = Run::build(config, prepared, origin, started, options.cluster, emit)?;
    #[cfg(feature = "test-faults")]
    run.inject(options.faults.with_environment());
    let mut train = || -> Result<(), TrainError> {
        while !run.is_done() {
            let outcome = run.step(emit)?;
            let control = Control::read(commands);
            run.after_step(&outcome, control.save_now, emit)?;
            // All ranks of a distributed run stop at the same step.
            let stop = run.agree_to_stop(control.stop, emit);
            run.publish_last_step();
            if stop || run.stopped_early() {
                break;
            }
        }
        Ok(())
    };
    let trained = train();
    run.close_last_step();
    if let Err(e) = trained {
        run.log_failure(&e);
        return Err(e);
    }
    run.finish(emit)
}

/// What the front end asked for between two steps.
#[derive(Default)]
struct Control {
    stop: bool,
    save_now: bool,
}

impl Control {
    fn read(commands: &Receiver<Command>) -> Control {
        let mut c = Control::default();
        for cmd in commands.try_iter() {
            match cmd {
                Command::Stop => c.stop = true,
                Command::SaveNow => c.save_now = true,
            }
        }
        c
    }
}
