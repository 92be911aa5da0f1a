//! The GPT-2 style model: configuration and presets, the flat parameter
//! buffer, one file per operation (forward and backward side by side), the
//! model's forward/backward over them, and the seeded random numbers every
//! crate draws from. Nothing here knows about training, data or files.

pub mod bf16_weights;
pub mod block;
pub mod config;
pub mod error;
pub mod gpt;
pub mod kv_cache;
pub mod ops;
pub mod params;
pub mod profile;
pub mod rng;
pub mod workspace;

pub use config::{ModelConfig, PRESET_NAMES};
pub use error::CoreError;
pub use gpt::{Backward, Batch, Gpt, Logits, Loss};
pub use kv_cache::KvCache;
pub use ops::dropout::DropoutRng;
pub use params::{ParamLayout, ParamSpec};
pub use workspace::Workspace;
