//! A training run between its phases. [`Run::settle_config`] (a resumed run
//! takes its checkpoint's settings, a run from a base model the base's size
//! and tokenizer), [`Run::prepare_data`], [`Run::build`]
//! (model, optimizer, plan, spheres, the run's folder: `build.rs`),
//! [`Run::step`] (`step.rs`), [`Run::after_step`] (evaluation, samples,
//! epoch ends, saves: `after_step.rs`) and [`Run::finish`] (`finish.rs`);
//! the loop that calls them is `trainer::run`. A run given time fixes its
//! length after a timed warm-up (`timed.rs`) and changes it as the machine
//! gets faster or slower (`replan.rs`); the ranks of a distributed run keep
//! to one run (`replicas.rs`).

use super::auto::LADDER;
use super::config::{AUTO, ConfigError};
use super::error::TrainError;
use super::events::{Command, Event, Summary};
#[cfg(feature = "test-faults")]
use super::faults::Faults;
use super::init::{self, Base};
use super::memory;
use super::optimizer::AdamW;
use super::plan::Plan;
use super::prepare::{PrepareError, Prepared, prepare};
use super::resume;
use super::runlog::RunLog;
use super::saving::Saver;
use super::schedule::Schedule;
use super::spheres::Spheres;
use super::watch::NormWatch;
use super::{TokenizerKind, TrainConfig};
use crate::checkpoint::{self, Checkpoint, TrainingState};
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::evaluate::EvalWindows;
use cllm_core::{Gpt, ModelConfig};
use cllm_data::batches::Batcher;
use cllm_data::dataset::TokenDataset;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::code_eval::PeriodicCodeCheck;
use cllm_memory::Memory;
use crossbeam_channel::Receiver;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use timed::BudgetClock;

mod after_step;
mod build;
mod finish;
mod last_step;
mod replan;
mod replicas;
mod start;
mod step;
mod timed;

pub use step::StepOutcome;

/// The model config a run uses: the preset, sized for the tokenizer, with
/// the dropout override. Its context is the sequence length it is trained
/// at, so generation never runs over positions the model never learned.
pub fn model_config_for(
    config: &TrainConfig,
    vocab_size: usize,
) -> Result<ModelConfig, TrainError> {
    // `auto` is resolved once the data is read (`train::auto`); before
    // that, its smallest size stands for it.
    let name = if config.model.preset == AUTO {
        LADDER[0]
    } else {
        config.model.preset.as_str()
    };
    let mut mc =
        ModelConfig::preset(name).map_err(|_| ConfigError::unknown_preset(&config.model.preset))?;
    mc.vocab_size = vocab_size;
    mc.n_ctx = config.batch.seq_len;
    if let Some(d) = config.model.dropout {
        mc.dropout = d;
    }
    mc.validate().map_err(TrainError::model)?;
    Ok(mc)
}

/// What a run starts from.
pub enum Origin {
    /// New weights and a tokenizer trained on the data.
    New,
    /// A checkpoint it continues exactly (`--resume`).
    Resumed(Box<Checkpoint>),
    /// A base model's architecture, tokenizer and weights (`--init`).
    Base(Box<Base>),
}

/// A training run between its phases, in the parts a step works with.
pub struct Run {
    config: TrainConfig,
    /// The ranks above this machine's sphere tree (one machine: solo).
    cluster: Cluster,
    /// The worker threads that compute, reduce and update.
    spheres: Spheres,
    learner: Learner,
    batches: Batches,
    validation: Validation,
    progress: Progress,
    outputs: Outputs,
    measures: Measures,
    #[cfg(feature = "test-faults")]
    faults: Faults,
}

/// The model and its optimizer: what the steps change.
struct Learner {
    model: Gpt,
    opt: AdamW,
}

/// The training data as the steps read it: the tokenizer, the loader, and
/// the step's token buffers.
struct Batches {
    tokenizer: Tokenizer,
    batcher: Batcher,
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

/// What evaluations read and fit: the validation split, its windows, the
/// bytes a token stands for, the repository memory and the code check
/// (rank 0 of a distributed run alone evaluates).
struct Validation {
    val: TokenDataset,
    windows: EvalWindows,
    bytes_per_token: f64,
    /// The repository memory over the training tokens (`config.memory`).
    memory: Option<Memory>,
    /// The code check at each evaluation (`config.eval_gen`).
    code_check: Option<PeriodicCodeCheck>,
}

/// Where the run stands: the state its checkpoints store, its plan and
/// schedule, and the clock of a run given time.
struct Progress {
    state: TrainingState,
    plan: Plan,
    schedule: Schedule,
    /// A run given time: its budget, measurements and plans.
    budget: Option<BudgetClock>,
    /// The step this session started at.
    first_step: u64,
}

/// What the run writes: its folder, its checkpoints, its metrics log.
struct Outputs {
    run_dir: PathBuf,
    saver: Saver,
    /// The metrics log: rank 0 of a distributed run alone writes it.
    log: Option<RunLog>,
}

/// What the run has measured so far: the summary it ends with, the
/// guards' counters, and the clock a time budget's plans are timed by.
struct Measures {
    summary: Summary,
    norm_watch: NormWatch,
    /// Steps in a row whose loss or gradient was not finite.
    bad_in_a_row: u32,
    /// Tokens trained in this session.
    tokens_done: u64,
    train_started: Instant,
    epoch_started: Instant,
    /// The last evaluation: its step and time on `clock` (without the
    /// checkpoint it may write).
    last_eval: Option<LastEval>,
    /// What steps, evaluations and checkpoints are timed by (the machine's
    /// clock; a simulated one in tests).
    clock: Box<dyn Clock>,
    /// The last evaluation's validation loss.
    last_val_loss: Option<f32>,
}

#[derive(Clone, Copy)]
struct LastEval {
    step: u64,
    secs: f64,
}

impl Measures {
    fn new(summary: Summary, clock: Box<dyn Clock>) -> Measures {
        Measures {
            summary,
            norm_watch: NormWatch::default(),
            bad_in_a_row: 0,
            tokens_done: 0,
            train_started: Instant::now(),
            epoch_started: Instant::now(),
            last_eval: None,
            clock,
            last_val_loss: None,
        }
    }

    /// The last evaluation's time, when it evaluated `step`.
    fn eval_secs_at(&self, step: u64) -> Option<f64> {
        self.last_eval.filter(|e| e.step == step).map(|e| e.secs)
    }
}

impl Run {
    /// True once the run has reached the step it stops at.
    pub fn is_done(&self) -> bool {
        self.progress.state.step >= self.progress.plan.last_step
    }

    /// True once early stopping has ended the run.
    pub fn stopped_early(&self) -> bool {
        self.measures.summary.stopped_early
    }

    /// Injects a test's faults into this run's steps, and its simulated
    /// machine into the run's clock.
    #[cfg(feature = "test-faults")]
    pub fn inject(&mut self, faults: Faults) {
        if let Some(load) = faults.load.clone() {
            let before = self
                .progress
                .budget
                .as_ref()
                .map_or(0, |b| b.spent_before_ns());
            self.measures.clock = Box::new(crate::clock::SimulatedClock::new(load, before));
        }
        self.faults = faults;
    }

    /// Phase 0: the config the run uses and what it starts from. A resumed
    /// run takes the checkpoint's settings except those the user gave
    /// (`train::resume`); a run from a base model, the base's size and
    /// tokenizer (`train::init`).
    pub fn settle_config(
        user: TrainConfig,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(TrainConfig, Origin), TrainError> {
        if let (Some(init), Some(resume)) = (&user.model.init, &user.resume) {
            return Err(TrainError::InitWithResume {
                init: init.clone(),
                resume: resume.clone(),
            });
        }
        if let Some(path) = user.model.init.clone() {
            let base = init::load_base(&path)?;
            let config = init::config_from_base(user, &base)?;
            config.validate()?;
            let model = base.model_config(&config);
            memory::check_training_fits(&config, &model, config.resolved_threads())?;
            emit(Event::Info(format!(
                "starting from the base model {} (run '{}', step {}): a {} model with its \
                 tokenizer and weights, a fresh optimizer and schedule",
                path.display(),
                base.model.run,
                base.model.step,
                base.describe(),
            )));
            return Ok((config, Origin::Base(Box::new(base))));
        }
        let Some(path) = user.resume.clone() else {
            // Refuse what the machine cannot hold before reading any data:
            // the vocabulary asked for bounds the one the tokenizer learns.
            let vocab = match user.corpus.tokenizer {
                TokenizerKind::Bpe => user.corpus.vocab_size,
                TokenizerKind::Bytes => 256,
            };
            let model = model_config_for(&user, vocab)?;
            memory::check_training_fits(&user, &model, user.resolved_threads())?;
            return Ok((user, Origin::New));
        };
        let ck = checkpoint::load(&path)?;
        let (config, notes) = resume::resumed_config(&ck.train_config, &user, &user.given)?;
        for note in notes {
            emit(Event::Warning(note));
        }
        config.validate()?;
        Ok((config, Origin::Resumed(Box::new(ck))))
    }

    /// Phase 1: scan, read, tokenize and split the data. `None` when the
    /// user stopped it (a stop, not an error).
    pub fn prepare_data(
        config: &TrainConfig,
        origin: &Origin,
        commands: &Receiver<Command>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Option<Prepared>, TrainError> {
        // A watcher turns Stop into the cancel flag the data phases poll.
        let cancel = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (cancel, done, commands) = (cancel.clone(), done.clone(), commands.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if let Ok(Command::Stop) = commands.recv_timeout(Duration::from_millis(50)) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            })
        };
        let saved_tokenizer = match origin {
            Origin::New => None,
            Origin::Resumed(ck) => Some(
                Tokenizer::from_json(&ck.tokenizer_json)
                    .map_err(|e| TrainError::SavedTokenizer(e.to_string()))?,
            ),
            Origin::Base(base) => Some(base.tokenizer()?),
        };
        let prepared = prepare(config, saved_tokenizer, &cancel, emit);
        done.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        match prepared {
            Err(PrepareError::Stopped) => Ok(None),
            Err(PrepareError::Failed(e)) => Err(e),
            // A Stop that came as preparation ended still stops the run.
            Ok(_) if cancel.load(Ordering::Relaxed) => Ok(None),
            Ok(p) => Ok(Some(p)),
        }
    }
}
