//! Training a GPT on every core: the trainer and what it is made of.
//!
//! Where to look:
//! - Starting a run: [`spawn`]`(config, options)` in [`trainer`] runs it on
//!   its own thread; front ends send [`Command`]s and drain [`Event`]s
//!   ([`events`]). What a run is configured with: [`config`].
//! - A run's phases: [`run`] (`build.rs`, then `step.rs` for the training
//!   step: next batch, gradients, clip, update, record; `after_step.rs`,
//!   `finish.rs`). The data it reads: [`prepare`].
//! - The sphere tree that computes a step: [`spheres`] (its shape in
//!   [`tree`], its threads in [`pool`]); across ranks: [`data_parallel`]
//!   over a [`cluster`].
//! - The optimizer: [`optimizer`] (AdamW, clipping), the gradient-norm
//!   watch: [`watch`]; the learning rate: [`schedule`]; how long a run is:
//!   [`plan`]; a run given time: [`budget`], timed by a [`clock`]; the model
//!   size `auto` picks: [`auto`].
//! - Checkpoints: [`checkpoint`] (the format's records), [`saving`]
//!   (writing them), [`resume`] (a resumed run's settings), [`init`] (a run
//!   from a base model).
//! - The run log: [`runlog`]; validation: [`evaluate`], [`metrics`];
//!   adapting while reading: [`adapt`].
//! - Errors: [`TrainError`] ([`error`]); memory checks: [`memory`]; faults
//!   tests inject: `faults` (the `test-faults` feature only).
//! - Benchmarks: [`bench`](mod@bench), [`scaling`].

pub mod adapt;
pub mod auto;
pub mod bench;
pub mod budget;
pub mod checkpoint;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod data_parallel;
pub mod error;
pub mod evaluate;
pub mod events;
#[cfg(feature = "test-faults")]
pub mod faults;
pub mod init;
pub mod memory;
pub mod metrics;
pub mod optimizer;
pub mod plan;
pub mod pool;
pub mod prepare;
pub mod resume;
pub mod run;
pub mod runlog;
pub mod saving;
pub mod scaling;
pub mod schedule;
pub mod spheres;
pub mod trainer;
pub mod tree;
pub mod watch;

pub use config::{
    BatchSettings, BudgetSettings, ConfigError, CorpusSettings, EvaluationSettings, FinalWeights,
    ModelSettings, OptimizerSettings, OutputSettings, TokenizerKind, TrainConfig,
};
pub use error::TrainError;
pub use events::{Command, Event};
pub use optimizer::{AdamW, AdamWConfig};
pub use schedule::{Schedule, ScheduleKind};
pub use trainer::{TrainOptions, TrainerHandle, spawn};
