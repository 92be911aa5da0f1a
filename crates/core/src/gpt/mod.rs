//! The GPT-2 model over the flat parameter buffer, built from the
//! operations in `ops/`: [`Gpt::forward`] (logits, or the loss against
//! targets; `forward.rs`) and [`Gpt::forward_backward`] (the training pass,
//! with its [`Backward`] options; `backward.rs`).
//!
//!   x_0 = dropout(wte[tokens] + wpe[positions])
//!   per layer l:  mid = x_l + dropout(attn_proj(causal_mha(ln_1(x_l))))
//!                 x_{l+1} = mid + dropout(mlp_proj(gelu(c_fc(ln_2(mid)))))
//!   logits = ln_f(x_L) · wteᵀ      (tied head, computed in row chunks)
//!
//! The `&self` methods only read the parameters, so many threads can run
//! them on one `Gpt` at once, each with its own `Workspace` and gradient
//! buffer. Token ids must be below the vocabulary size: callers validate
//! their data, so an id out of range is a programming error and panics with
//! a message naming it (never undefined behaviour).

mod backward;
mod forward;

pub use backward::{Backward, GradientsReady};
pub use forward::{ForwardRequest, Logits, Loss};

use crate::bf16_weights::{Bf16Weights, LayerPacks};
use crate::ops::bf16::{PackPart, Precision, WeightPacks};
use crate::ops::crossentropy::HeadWeights;
use crate::ops::linear_bf16::LinearWeight;
use crate::workspace::Workspace;
use crate::{CoreError, ModelConfig, ParamLayout};
use std::ops::Range;

/// A model: its config, the layout of its flat buffer, and the parameters;
/// in bf16, also the weights' bf16 packs, derived from the parameters.
#[derive(Clone, Debug)]
pub struct Gpt {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    pub params: Vec<f32>,
    bf16: Option<Box<Bf16Weights>>,
}

/// One micro-batch: `batch` rows of `seq` tokens, row-major; target[i] is
/// the token that follows input[i].
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub inputs: &'a [u32],
    pub targets: &'a [u32],
    pub batch: usize,
    pub seq: usize,
}

impl Gpt {
    /// A freshly initialised model (GPT-2 initialisation, seeded).
    pub fn new(config: ModelConfig, seed: u64) -> Result<Gpt, CoreError> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        let params = layout.init(&config, seed);
        Ok(Gpt {
            config,
            layout,
            params,
            bf16: None,
        })
    }

    /// A model of `config` over `params` (a checkpoint's), which must hold
    /// exactly the config's parameter count.
    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Gpt, CoreError> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        if params.len() != layout.total {
            return Err(CoreError::ParamCount {
                got: params.len(),
                want: layout.total,
            });
        }
        Ok(Gpt {
            config,
            layout,
            params,
            bf16: None,
        })
    }

    /// The matmul precision: bf16 packs the weights now, and the owner
    /// must call [`refresh_precision`](Self::refresh_precision) after every
    /// change of `params`.
    pub fn set_precision(&mut self, precision: Precision) {
        self.bf16 = match precision {
            Precision::Fp32 => None,
            Precision::Bf16 => {
                let cfg = &self.config;
                Some(Box::new(Bf16Weights::new(
                    &self.layout,
                    cfg.vocab_size,
                    cfg.n_embd,
                    cfg.n_inner,
                    &self.params,
                )))
            }
        };
    }

    pub fn precision(&self) -> Precision {
        if self.bf16.is_some() {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }

    /// [`refresh_precision`](Self::refresh_precision) of the pairs
    /// `part(n)` of every packed layout of `n` pairs only: a rank's share
    /// of packs the ranks of a host share ([`Gpt::share_packs`]).
    pub fn refresh_precision_part(&mut self, part: PackPart) {
        if let Some(w) = self.bf16.as_mut() {
            let cfg = &self.config;
            w.refresh_part(
                &self.layout,
                cfg.vocab_size,
                cfg.n_embd,
                cfg.n_inner,
                &self.params,
                part,
            );
        }
    }

    /// Words (u32) the bf16 packs take; 0 in f32.
    pub fn packed_words(&self) -> usize {
        self.bf16.as_ref().map_or(0, |w| w.words())
    }

    /// Moves the bf16 packs into memory the ranks of a host share (this
    /// rank copying the words `mine`); see
    /// [`Bf16Weights::place_shared`].
    ///
    /// # Safety
    /// As `place_shared`: `base` holds `packed_words()` u32 that stay
    /// mapped, written by nothing else, while this model lives.
    pub unsafe fn share_packs(&mut self, base: *mut u32, mine: Range<usize>) {
        if let Some(w) = self.bf16.as_mut() {
            // SAFETY: passed on from the caller.
            unsafe { w.place_shared(base, mine) }
        }
    }

    /// Re-derives the bf16 packs from `params` (after an update); a no-op
    /// in f32.
    pub fn refresh_precision(&mut self) {
        self.refresh_precision_part(&|n| 0..n)
    }

    /// The tied embedding as the head multiplies it.
    fn head_weights(&self) -> HeadWeights<'_> {
        match &self.bf16 {
            Some(w) => HeadWeights::Bf16(&w.wte),
            None => {
                let (c, v) = (self.config.n_embd, self.config.vocab_size);
                HeadWeights::F32(&self.params[self.layout.wte..self.layout.wte + v * c])
            }
        }
    }

    /// Layer `l`'s linear weight at `offset` (`pick` in bf16).
    fn linear_weight(
        &self,
        l: usize,
        offset: usize,
        pick: fn(&LayerPacks) -> &WeightPacks,
    ) -> LinearWeight<'_> {
        let packs = self.bf16.as_ref().map(|w| pick(&w.layers[l]));
        LinearWeight::of_layer(&self.params, offset, packs)
    }

    /// The model cut to its first `n_ctx` positions: for generation from a
    /// model trained on shorter sequences than its position table holds
    /// (files written before the context was set to the trained length),
    /// so it never runs over positions it has not learned. No-op when the
    /// model is already that short.
    pub fn with_context(self, n_ctx: usize) -> Result<Gpt, CoreError> {
        if n_ctx == 0 || n_ctx >= self.config.n_ctx {
            return Ok(self);
        }
        let c = self.config.n_embd;
        let cut = self.layout.wpe + n_ctx * c..self.layout.wpe + self.config.n_ctx * c;
        let mut params = self.params;
        params.drain(cut);
        let config = ModelConfig {
            n_ctx,
            ..self.config
        };
        Gpt::from_params(config, params)
    }

    /// Panics, naming the sizes, when `batch` does not fit `ws` or this model.
    fn check_batch(&self, ws: &Workspace, batch: &Batch) {
        assert_eq!(
            ws.config, self.config,
            "workspace was made for another model config"
        );
        assert!(
            batch.batch >= 1
                && batch.seq >= 1
                && batch.batch <= ws.max_batch
                && batch.seq <= ws.max_seq,
            "batch of {} x {} does not fit the workspace ({} x {})",
            batch.batch,
            batch.seq,
            ws.max_batch,
            ws.max_seq
        );
        let n = batch.batch * batch.seq;
        assert!(
            batch.inputs.len() == n && batch.targets.len() == n,
            "batch of {} x {} needs {n} inputs and targets, got {} and {}",
            batch.batch,
            batch.seq,
            batch.inputs.len(),
            batch.targets.len()
        );
    }
}
