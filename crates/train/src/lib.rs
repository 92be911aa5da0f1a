//! Training: the kissing-spheres worker tree, AdamW, schedules, the trainer
//! loop, metrics and the events it streams.

pub mod auto;
pub mod bench;
pub mod budget;
pub mod checkpoint;
pub mod cluster;
pub mod config;
pub mod data_parallel;
pub mod error;
pub mod evaluate;
pub mod events;
#[cfg(feature = "test-faults")]
pub mod faults;
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
pub mod tree;
pub mod watch;

pub use config::{ConfigError, FinalWeights, TokenizerKind, TrainConfig};
pub use error::TrainError;
pub use events::{Command, Event};
pub use optimizer::{AdamW, AdamWConfig};
pub use schedule::{Schedule, ScheduleKind};
pub mod trainer;
pub use trainer::{TrainOptions, TrainerHandle, spawn};
