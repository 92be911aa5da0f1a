//! The GPT-2 style model: nothing here knows about training, data or files.
//!
//! Where things are:
//! - the model: [`Gpt`] (`gpt/mod.rs`: construction, precision);
//!   [`Gpt::forward`] in `gpt/forward.rs` (embedding, the layers, ln_f, then
//!   [`Logits`] or [`Loss`]); [`Gpt::forward_backward`] with its [`Backward`]
//!   options in `gpt/backward.rs`; one transformer block's forward in
//!   `block.rs`, shared with the key/value-cache decoder ([`KvCache`],
//!   `kv_cache.rs`);
//! - the shape: [`ModelConfig`] and the presets (`config.rs`), the flat
//!   parameter buffer's layout ([`ParamLayout`], `params.rs`), a worker's
//!   activations ([`Workspace`], `workspace.rs`), the bf16 packs of the
//!   weights (`bf16_weights.rs`);
//! - each operation's maths, forward beside backward, in `ops/`:
//!   `embedding.rs`, `layernorm.rs`, `attention/` (causal attention),
//!   `matmul.rs` (the f32 linear layer) and `linear_bf16.rs` (the bf16 one,
//!   on the kernels of `bf16/`), `gelu.rs`, `residual.rs`, `dropout.rs`,
//!   `crossentropy/` (the tied head, softmax and loss, fused), `softmax.rs`
//!   and `fast_math.rs` (the vectorised exp and tanh they share),
//!   `matmul_tn.rs` (the head's weight-gradient product), `bf16_gemv.rs`
//!   (decoding's bf16 matrix-vector product);
//! - [`CoreError`] (`error.rs`), the seeded random numbers every crate draws
//!   from (`rng.rs`), the benchmark's per-operation timing (`profile.rs`).

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
