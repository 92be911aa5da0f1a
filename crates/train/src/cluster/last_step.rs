//! The last completed step of a distributed run, kept so that rank 0 can
//! write it as the run's final checkpoint at once when the job is ended:
//! Ctrl-C on `mpirun` has OpenMPI send the ranks SIGTERM and SIGKILL a
//! second later (`odls_base_sigkill_timeout`), too soon to finish a step
//! and save. docs/cluster.md explains the choice.
//!
//! After each step, and what follows it, every rank publishes the step
//! ([`LastStep::publish`]): rank 0 copies the weights, the training state
//! and, where it holds them whole, the AdamW moments; where the ranks of a
//! host keep only their shares of the moments, every rank copies its shares
//! into memory they share (`moment_slots.rs`). [`LastStep::save_now`], on
//! another thread than the trainer's, writes rank 0's last published step,
//! exactly as a checkpoint saved after that step would hold it:
//! - rank 0's copies are made under a lock the save holds, so its trainer
//!   cannot publish a later step meanwhile (a trainer blocked in a
//!   collective holds no lock);
//! - a rank publishes step s after the collective that agrees to stop or go
//!   on after s, which needs every rank; so while rank 0 holds step S no
//!   rank can publish S + 2, and the slot of S's parity is left alone; and
//!   every other rank has passed S's collective, so it publishes S at once
//!   (the save waits for its stamp, briefly).
//!
//! Every rank enables it or none does ([`LastStep::enable`]): the shared
//! memory is allocated by a collective at the first step.

use super::Cluster;
use super::moment_slots::{MomentSlots, covers, ranges_of};
use crate::checkpoint::{self, CheckpointError, CheckpointRef, OptimizerRef, TrainingState};
use crate::config::{AdamWConfig, TrainConfig};
use crate::error::TrainError;
use crate::optimizer::AdamW;
use crate::saving::{RUN_FINAL_NAME, copy_atomically, keep_previous_output};
use cllm_core::Gpt;
use cllm_memory::Memory;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a rank hands over after a step (borrowed from the run).
pub struct StepRecord<'a> {
    pub model: &'a Gpt,
    pub opt: &'a AdamW,
    /// The gradient buckets whose moments hold this rank's shares only
    /// (after sharded updates); `None`: every rank holds them whole.
    pub moment_shares: Option<&'a [Range<usize>]>,
    /// Where the run stands, as its checkpoints store it.
    pub state: &'a TrainingState,
    /// The run's repository memory (rank 0), and whether it changed since
    /// the last step handed over (its mix is refitted at evaluations).
    pub memory: Option<&'a Memory>,
    pub memory_changed: bool,
    /// The config, tokenizer and start time the run's checkpoints carry.
    pub config: &'a TrainConfig,
    pub tokenizer_json: &'a str,
    pub started: Instant,
}

/// A final checkpoint written at once.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedAtOnce {
    /// The step it holds.
    pub step: u64,
    /// The run folder's final checkpoint (written first).
    pub run_final: PathBuf,
    /// Where the run's final model goes (`--output`).
    pub output: PathBuf,
    /// Whether it is there too ([`LastStep::copy_to_output`]).
    pub copied: bool,
    /// Seconds the write took.
    pub secs: f64,
}

/// Why no checkpoint was written at once.
#[derive(Debug, thiserror::Error)]
pub enum NotSaved {
    #[error("no step has been completed yet")]
    NoStepYet,
    #[error("the run is already finishing and writes its own final checkpoint")]
    Finishing,
    #[error(
        "the ranks keep only their shares of the optimizer state and there was no shared \
         memory to leave a copy in"
    )]
    MomentsSpread,
    #[error("rank {rank} did not hand over its share of step {step}'s optimizer state in time")]
    ShareLate { rank: usize, step: u64 },
    #[error(transparent)]
    Write(#[from] CheckpointError),
}

/// See the module's comment.
#[derive(Default)]
pub struct LastStep {
    enabled: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Rank 0's copy of its last published step.
    kept: Option<Kept>,
    slots: Slots,
    /// The trainer is past its last step: it writes the final checkpoint.
    closed: bool,
    saved: Option<SavedAtOnce>,
}

#[derive(Default)]
enum Slots {
    #[default]
    NotAsked,
    Refused,
    Ready(MomentSlots),
}

/// Rank 0's copy of a step.
struct Kept {
    model: cllm_core::ModelConfig,
    params: Vec<f32>,
    moments: Moments,
    m: Vec<f32>,
    v: Vec<f32>,
    opt_config: AdamWConfig,
    opt_step: u64,
    state: TrainingState,
    memory: Option<Vec<u8>>,
    config: TrainConfig,
    tokenizer_json: String,
    started: Instant,
}

/// Where a kept step's moments are.
#[derive(Clone, Copy, PartialEq)]
enum Moments {
    /// In `m` and `v`.
    Whole,
    /// In the shared slots, every rank's ranges.
    Slots,
    /// Spread over the ranks' memories, with no copy.
    Spread,
}

/// How long a save waits for the other ranks' shares of the step.
pub const SHARE_PATIENCE: Duration = Duration::from_millis(300);

impl LastStep {
    /// Keeps steps from now on. Every rank of the run, or none, before the
    /// run starts.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands over the step just completed (`record.state.step`). Every
    /// rank, after each step; collective the first time where the ranks
    /// keep shares of the moments.
    pub fn publish(&self, cluster: &Cluster, record: &StepRecord<'_>) {
        if !self.is_enabled() {
            return;
        }
        let sharded = cluster.shards();
        if sharded && matches!(self.lock().slots, Slots::NotAsked) {
            // Outside the lock: the save must never wait on a collective.
            let slots = MomentSlots::allocate(cluster, record.opt.m.len());
            self.lock().slots = slots.map_or(Slots::Refused, Slots::Ready);
        }
        let step = record.state.step;
        let (rank, ranks) = (cluster.rank(), cluster.size());
        let len = record.opt.m.len();
        // The memory's stored form when its mix changed (or none is kept).
        let memory = match record.memory {
            Some(memory) if cluster.is_writer() => {
                let none_kept = self.lock().kept.as_ref().is_none_or(|k| k.memory.is_none());
                (record.memory_changed || none_kept).then(|| memory.to_bytes())
            }
            _ => None,
        };
        let mut inner = self.lock();
        let moments = match &inner.slots {
            Slots::Ready(slots) => {
                let mine = ranges_of(record.moment_shares, len, ranks, rank);
                slots.write(step, rank, &mine, &record.opt.m, &record.opt.v);
                if covers(record.moment_shares, len, ranks) {
                    Moments::Slots
                } else {
                    Moments::Spread
                }
            }
            _ if record.moment_shares.is_some() => Moments::Spread,
            _ => Moments::Whole,
        };
        if !cluster.is_writer() {
            return;
        }
        let kept = inner.kept.get_or_insert_with(|| Kept {
            model: record.model.config.clone(),
            params: Vec::new(),
            moments,
            m: Vec::new(),
            v: Vec::new(),
            opt_config: record.opt.config.clone(),
            opt_step: 0,
            state: record.state.clone(),
            memory: None,
            config: record.config.clone(),
            tokenizer_json: record.tokenizer_json.to_string(),
            started: record.started,
        });
        copy_into(&mut kept.params, &record.model.params);
        kept.moments = moments;
        if moments == Moments::Whole {
            copy_into(&mut kept.m, &record.opt.m);
            copy_into(&mut kept.v, &record.opt.v);
        }
        kept.opt_step = record.opt.step;
        kept.state = record.state.clone();
        if record.memory.is_none() {
            kept.memory = None;
        } else if memory.is_some() {
            kept.memory = memory;
        }
    }

    /// The trainer is past its last step and goes on to finish: no save
    /// may start any more. Returns the save made at once, if one was.
    pub fn close(&self) -> Option<SavedAtOnce> {
        let mut inner = self.lock();
        inner.closed = true;
        inner.saved.clone()
    }

    /// The save made at once, if one was.
    pub fn saved(&self) -> Option<SavedAtOnce> {
        self.lock().saved.clone()
    }

    /// Rank 0: writes the last published step as the run's final
    /// checkpoint (in its folder; [`copy_to_output`](Self::copy_to_output)
    /// then puts it at the output path). The trainer may be anywhere,
    /// blocked in a collective included; it cannot publish meanwhile. A
    /// second call returns the first one's save.
    pub fn save_now(&self, patience: Duration) -> Result<SavedAtOnce, NotSaved> {
        let started = Instant::now();
        let mut inner = self.lock();
        if let Some(saved) = &inner.saved {
            return Ok(saved.clone());
        }
        if inner.closed {
            return Err(NotSaved::Finishing);
        }
        let Some(kept) = inner.kept.as_ref() else {
            return Err(NotSaved::NoStepYet);
        };
        let step = kept.state.step;
        let shared;
        let (m, v) = match (kept.moments, &inner.slots) {
            (Moments::Whole, _) => (&kept.m, &kept.v),
            (Moments::Slots, Slots::Ready(slots)) => {
                shared = slots
                    .read(step, patience)
                    .map_err(|rank| NotSaved::ShareLate { rank, step })?;
                (&shared.0, &shared.1)
            }
            _ => return Err(NotSaved::MomentsSpread),
        };
        let mut state = kept.state.clone();
        state.elapsed_secs += kept.started.elapsed().as_secs_f64();
        let outputs = &kept.config.outputs;
        let run_final = outputs
            .checkpoint_dir
            .join(&outputs.run_name)
            .join(RUN_FINAL_NAME);
        let ck = CheckpointRef {
            model: &kept.model,
            params: &kept.params,
            optimizer: Some(OptimizerRef {
                config: &kept.opt_config,
                step: kept.opt_step,
                m,
                v,
            }),
            tokenizer_json: &kept.tokenizer_json,
            train_config: &kept.config,
            state: &state,
            memory: kept.memory.as_deref(),
        };
        checkpoint::save(&run_final, &ck)?;
        let saved = SavedAtOnce {
            step,
            run_final,
            output: outputs.output.clone(),
            copied: false,
            secs: started.elapsed().as_secs_f64(),
        };
        inner.saved = Some(saved.clone());
        Ok(saved)
    }

    /// After [`save_now`](Self::save_now): the final checkpoint at the
    /// output path too (a file there from elsewhere is kept beside it, as
    /// at a normal finish). Returns where such a file went.
    pub fn copy_to_output(&self) -> Result<Option<PathBuf>, TrainError> {
        let (saved, outputs) = {
            let inner = self.lock();
            match (&inner.saved, &inner.kept) {
                (Some(saved), Some(kept)) => (saved.clone(), kept.config.outputs.clone()),
                _ => return Ok(None),
            }
        };
        let mut kept = None;
        if saved.output != saved.run_final {
            kept = keep_previous_output(&saved.output, &outputs.checkpoint_dir, &outputs.run_name)?;
            copy_atomically(&saved.run_final, &saved.output)?;
        }
        if let Some(saved) = self.lock().saved.as_mut() {
            saved.copied = true;
        }
        Ok(kept)
    }
}

/// `to` becomes a copy of `from`, in the memory `to` already has.
fn copy_into(to: &mut Vec<f32>, from: &[f32]) {
    to.clear();
    to.extend_from_slice(from);
}
