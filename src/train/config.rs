//! The run's settings live in [`crate::config`], below the trainer and the
//! checkpoint format; re-exported here where the trainer's users look.

pub use crate::config::{AdamWConfig, FinalWeights, ScheduleKind, TokenizerKind, TrainConfig};
