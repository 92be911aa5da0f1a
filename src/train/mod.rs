//! Training: the kissing-spheres worker tree, AdamW, schedules, the trainer
//! loop, metrics and the events it streams.

pub mod config;
pub mod events;
pub mod memory;
pub mod metrics;
pub mod optimizer;
pub mod prepare;
pub mod runlog;
pub mod scaling;
pub mod schedule;
pub mod spheres;

pub use config::{TokenizerKind, TrainConfig};
pub use events::{Command, Event};
pub use optimizer::{AdamW, AdamWConfig};
pub use schedule::{Schedule, ScheduleKind};
pub mod trainer;
pub use trainer::{TrainerHandle, spawn};
