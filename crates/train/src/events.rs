//! What the trainer tells its front ends, and what they may ask of it.
//!
//! The trainer runs on its own thread; the app drains `Event`s every frame
//! and the CLI prints them, so both show the same run the same way.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Requests from a front end to a running trainer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Finish the current step, save, and end the run.
    Stop,
    /// Write a checkpoint after the current step.
    SaveNow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SphereState {
    /// No work: before the first step, after the run, or a step with fewer
    /// sequences than spheres left this one without a share.
    Idle,
    /// Forward and backward over its share of the step.
    Computing,
    /// Its share is done; the step waits for the other spheres.
    Waiting,
    /// Adding gradients up the tree (all spheres share this work).
    Reducing,
}

impl SphereState {
    /// The word a front end shows.
    pub fn name(self) -> &'static str {
        match self {
            SphereState::Idle => "idle",
            SphereState::Computing => "computing",
            SphereState::Waiting => "waiting",
            SphereState::Reducing => "reducing",
        }
    }
}

/// One worker ("sphere") as the sphere view and stats table show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SphereStats {
    pub id: usize,
    /// `None` for the root; otherwise `(id - 1) / 12`.
    pub parent: Option<usize>,
    /// 0 for the root, 1 for its children, ...
    pub level: usize,
    /// Sequences this sphere has run forward and backward since the run started.
    pub sequences: u64,
    pub avg_loss: f32,
    pub last_loss: f32,
    /// Norm of this sphere's own last micro-batch gradient.
    pub grad_norm: f32,
    /// Share of the recent wall time spent computing or reducing, 0..1.
    pub busy: f32,
    pub state: SphereState,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// 0-based epoch of this step.
    pub epoch: usize,
    pub epochs: usize,
    /// Optimizer steps done, counting this one.
    pub step: u64,
    pub total_steps: u64,
    pub loss: f32,
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    pub clipped: bool,
    pub tokens_per_sec: f64,
    pub elapsed_secs: f64,
    pub eta_secs: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalStats {
    pub epoch: usize,
    pub step: u64,
    /// Mean validation loss, nats per token.
    pub loss: f32,
    pub perplexity: f32,
    pub bits_per_byte: f32,
    /// Top-1 next-token accuracy.
    pub accuracy: f32,
    /// Macro averages over the token classes that occur.
    pub precision: f32,
    pub recall: f32,
    pub f1: f32,
    /// The same positions with the repository memory mixed in (`None`
    /// when the run has no memory). Its mix is fitted on these positions
    /// first, so the figure is in-sample for the mix's few weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_with_memory: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_byte_with_memory: Option<f32>,
    /// The code check (`--eval-gen N`): of N function openings from the
    /// validation split, the share completed so that the braces close and
    /// the function parses as C, and the share that closed at all. `None`
    /// when off or when the split has no C functions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syntax_accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_rate: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveReason {
    Periodic,
    Best,
    Manual,
    Final,
}

/// Data preparation before the first step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Phase {
    Scanning { files_seen: usize },
    Tokenizing { done: usize, total: usize },
    Training,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub steps: u64,
    pub epochs_done: usize,
    pub total_secs: f64,
    pub epoch_secs: Vec<f64>,
    pub secs_per_sequence: f64,
    pub tokens_per_sec: f64,
    pub initial_loss: f32,
    pub final_loss: f32,
    pub best_val_loss: Option<f32>,
    pub best_bits_per_byte: Option<f32>,
    /// Sequences each sphere computed.
    pub sphere_sequences: Vec<u64>,
    /// (max - min) / mean of `sphere_sequences`.
    pub load_imbalance: f64,
    pub peak_memory_bytes: u64,
    pub skipped_updates: u64,
    pub stopped_early: bool,
    pub final_model: Option<PathBuf>,
    /// A run given time: its budget, and the seconds it took, all sessions
    /// together (from the start of the trainer, data preparation included).
    #[serde(default)]
    pub time_budget_secs: Option<f64>,
    #[serde(default)]
    pub budget_used_secs: Option<f64>,
    /// The step whose weights the final model holds when they are not the
    /// last step's (`FinalWeights::Best` and the run went past its best),
    /// with the last step's validation loss.
    #[serde(default)]
    pub final_weights_step: Option<u64>,
    #[serde(default)]
    pub last_val_loss: Option<f32>,
    /// A run given time that stopped at its most epochs before the budget
    /// ran out (`train::budget::MAX_EPOCHS` or `--epochs`).
    #[serde(default)]
    pub epoch_cap: Option<u64>,
}

impl Summary {
    /// The summary of a run that has not taken a step.
    pub fn empty(total_secs: f64) -> Summary {
        Summary {
            steps: 0,
            epochs_done: 0,
            total_secs,
            epoch_secs: Vec::new(),
            secs_per_sequence: 0.0,
            tokens_per_sec: 0.0,
            initial_loss: f32::NAN,
            final_loss: f32::NAN,
            best_val_loss: None,
            best_bits_per_byte: None,
            sphere_sequences: Vec::new(),
            load_imbalance: 0.0,
            peak_memory_bytes: 0,
            skipped_updates: 0,
            stopped_early: false,
            final_model: None,
            time_budget_secs: None,
            budget_used_secs: None,
            final_weights_step: None,
            last_val_loss: None,
            epoch_cap: None,
        }
    }
}

/// What a run will train, sent once data and model are ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub files: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub vocab_size: usize,
    pub params: usize,
    pub threads: usize,
    /// The step the run stops at.
    pub total_steps: u64,
    /// The step it starts from (above 0 when resuming).
    pub first_step: u64,
    /// The run's name and the folder its checkpoints go to.
    pub run_name: String,
    pub run_dir: PathBuf,
    /// Bytes of activation workspace over all spheres: one micro-batch each,
    /// whatever the gradient accumulation.
    pub workspace_bytes: u64,
}

/// One step of a run across several ranks (`mpirun -np K`): the level
/// above the spheres.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStats {
    pub ranks: usize,
    /// Sphere threads on each rank.
    pub threads_per_rank: usize,
    /// Each rank's training tokens per second of its own compute this step.
    pub rank_tokens_per_sec: Vec<f64>,
    /// Seconds this rank spent inside all-reduce calls this step.
    pub allreduce_secs: f64,
    /// Of those, the seconds no compute hid: from the rank's last sphere
    /// finishing backward to the gradient being summed everywhere.
    pub exposed_secs: f64,
    /// The step's wall time on this rank, and the exposed share of it.
    pub step_secs: f64,
    pub exposed_share: f64,
    /// Gradient bytes all-reduced per step.
    pub allreduce_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Phase(Phase),
    /// Data and model are ready: what will be trained.
    Ready(RunInfo),
    Spheres(Vec<SphereStats>),
    Step(StepStats),
    /// A distributed run's step across its ranks (after each `Step`).
    Cluster(ClusterStats),
    Eval(EvalStats),
    Sample {
        step: u64,
        text: String,
    },
    Checkpoint {
        path: PathBuf,
        reason: SaveReason,
    },
    /// A run given time has timed its warm-up and fixed its length:
    /// `total_steps` is now the step it stops at.
    Planned {
        total_steps: u64,
        message: String,
    },
    /// A run given time changed its plan after `step`, the machine having
    /// got faster or slower: `total_steps` is now the step it stops at;
    /// `message` says from what to what (steps and tokens per second).
    Replanned {
        step: u64,
        total_steps: u64,
        message: String,
    },
    /// Something the run decided that the person should know (not a
    /// problem): e.g. the size `--preset auto` chose.
    Info(String),
    Warning(String),
    /// The run ended on an error: its message ([`TrainError`](crate::TrainError)'s,
    /// which names the setting, file or rank and what to do), for the front
    /// end to print.
    Error(String),
    Finished(Summary),
}
