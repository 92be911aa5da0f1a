//! A training run between its phases. [`Run::settle_config`] (a resumed run
//! takes its checkpoint's settings), [`Run::prepare_data`], [`Run::build`]
//! (model, optimizer, plan, spheres, the run's folder), [`Run::step`],
//! [`Run::after_step`] (evaluation, samples, epoch ends, saves) and
//! [`Run::finish`]; the loop that calls them is `trainer::run`. Building is in `build.rs`, the
//! phases of a built run in `step.rs`.

use super::auto::LADDER;
use super::config::AUTO;
use super::events::{Command, Event, Summary};
use super::faults::Faults;
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
use cllm_core::{Gpt, ModelConfig};
use cllm_data::batches::Batcher;
use cllm_data::dataset::TokenDataset;
use cllm_data::tokenizer::Tokenizer;
use crossbeam_channel::Receiver;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often sphere stats are sent while a step runs.
const TICK: Duration = Duration::from_millis(100);
/// Consecutive non-finite steps after which the run stops.
const MAX_BAD_STEPS: u32 = 5;

/// The model config a run uses: the preset, sized for the tokenizer, with
/// the dropout override. Its context is the sequence length it is trained
/// at, so generation never runs over positions the model never learned.
pub fn model_config_for(config: &TrainConfig, vocab_size: usize) -> Result<ModelConfig, String> {
    // `auto` is resolved once the data is read (`train::auto`); before
    // that, its smallest size stands for it.
    let name = if config.preset == AUTO {
        LADDER[0]
    } else {
        config.preset.as_str()
    };
    let mut mc = ModelConfig::preset(name)
        .ok_or_else(|| format!("unknown model preset '{}'", config.preset))?;
    mc.vocab_size = vocab_size;
    mc.n_ctx = config.seq_len;
    if let Some(d) = config.dropout {
        mc.dropout = d;
    }
    mc.validate()?;
    Ok(mc)
}

/// One optimizer step's results.
pub struct StepOutcome {
    loss: f32,
    epoch: usize,
}

/// A training run between its phases: data, model, optimizer, where it
/// stands, and what it has measured so far.
pub struct Run {
    faults: Faults,
    config: TrainConfig,
    tokenizer: Tokenizer,
    val: TokenDataset,
    model: Gpt,
    opt: AdamW,
    state: TrainingState,
    plan: Plan,
    schedule: Schedule,
    spheres: Spheres,
    batcher: Batcher,
    val_windows: crate::evaluate::EvalWindows,
    bytes_per_token: f64,
    /// The metrics log: rank 0 of a distributed run alone writes it.
    log: Option<RunLog>,
    /// The ranks above this machine's sphere tree (one machine: solo).
    cluster: super::cluster::Cluster,
    saver: Saver,
    run_dir: PathBuf,
    summary: Summary,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    bad_in_a_row: u32,
    norm_watch: NormWatch,
    first_step: u64,
    tokens_done: u64,
    train_started: Instant,
    epoch_started: Instant,
    /// The repository memory over the training tokens (`config.memory`).
    repo_memory: Option<cllm_memory::Memory>,
    /// The code check at each evaluation (`config.eval_gen`).
    code_check: Option<cllm_generate::code_eval::PeriodicCodeCheck>,
    /// A run given time, until its warm-up fixes the run's length.
    budget: Option<timed::BudgetClock>,
    /// The last evaluation's time (without the checkpoint it may write) and
    /// step, and the last checkpoint's write time: what the warm-up
    /// measures.
    last_eval_secs: Option<f64>,
    last_eval_step: Option<u64>,
    last_save_secs: Option<f64>,
    /// Seconds spent between steps (evaluations, samples, checkpoints), so
    /// the warm-up times the steps alone.
    between_steps_secs: f64,
    /// The last evaluation's validation loss.
    last_val_loss: Option<f32>,
}

impl Run {
    /// True once the run has reached the step it stops at.
    pub fn is_done(&self) -> bool {
        self.state.step >= self.plan.last_step
    }

    /// True once early stopping has ended the run.
    pub fn stopped_early(&self) -> bool {
        self.summary.stopped_early
    }

    /// Phase 0: the config the run uses. A resumed run takes the
    /// checkpoint's settings except those the user gave (`train::resume`).
    pub fn settle_config(
        user: TrainConfig,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(TrainConfig, Option<Checkpoint>), String> {
        let Some(path) = user.resume.clone() else {
            // Refuse what the machine cannot hold before reading any data:
            // the vocabulary asked for bounds the one the tokenizer learns.
            let vocab = match user.tokenizer {
                TokenizerKind::Bpe => user.vocab_size,
                TokenizerKind::Bytes => 256,
            };
            let model = model_config_for(&user, vocab)?;
            memory::check_training_fits(&user, &model, user.resolved_threads())?;
            return Ok((user, None));
        };
        let ck = checkpoint::load(&path).map_err(|e| e.to_string())?;
        let (config, notes) = resume::resumed_config(&ck.train_config, &user, &user.given)?;
        for note in notes {
            emit(Event::Warning(note));
        }
        config.validate()?;
        Ok((config, Some(ck)))
    }

    /// Phase 1: scan, read, tokenize and split the data. `None` when the
    /// user stopped it (a stop, not an error).
    pub fn prepare_data(
        config: &TrainConfig,
        resumed: Option<&Checkpoint>,
        commands: &Receiver<Command>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Option<Prepared>, String> {
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
        let saved_tokenizer = match resumed {
            Some(ck) => Some(Tokenizer::from_json(&ck.tokenizer_json)?),
            None => None,
        };
        let prepared = prepare(config, saved_tokenizer, &cancel, emit);
        done.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        match prepared {
            Err(PrepareError::Stopped) => Ok(None),
            Err(PrepareError::Failed(message)) => Err(message),
            // A Stop that came as preparation ended still stops the run.
            Ok(_) if cancel.load(Ordering::Relaxed) => Ok(None),
            Ok(p) => Ok(Some(p)),
        }
    }
}

mod build;
mod replicas;
mod step;
mod timed;
