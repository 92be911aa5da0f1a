//! The GPT model over the flat parameter buffer (API fixed; bodies to come).

use super::{ModelConfig, ParamLayout};
use crate::rng::Rng;

/// A model: its config, the layout of its flat buffer, and the parameters.
#[derive(Clone, Debug)]
pub struct Gpt {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    pub params: Vec<f32>,
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

/// Per-worker scratch memory (activations and their gradients) for up to
/// `max_batch x max_seq` tokens, reused from step to step.
pub struct Workspace {
    pub max_batch: usize,
    pub max_seq: usize,
}

impl Workspace {
    pub fn new(_cfg: &ModelConfig, max_batch: usize, max_seq: usize) -> Workspace {
        Workspace { max_batch, max_seq }
    }

    /// Bytes of activation memory held.
    pub fn bytes(&self) -> usize {
        0
    }
}

impl Gpt {
    /// A freshly initialised model (GPT-2 initialisation, seeded).
    pub fn new(config: ModelConfig, seed: u64) -> Result<Gpt, String> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        let params = layout.init(&config, seed);
        Ok(Gpt {
            config,
            layout,
            params,
        })
    }

    pub fn from_params(config: ModelConfig, params: Vec<f32>) -> Result<Gpt, String> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        if params.len() != layout.total {
            return Err(format!(
                "parameter buffer has {} values, the config needs {}",
                params.len(),
                layout.total
            ));
        }
        Ok(Gpt {
            config,
            layout,
            params,
        })
    }

    /// Forward and backward over one micro-batch. Adds
    /// `grad_scale * d(sum of per-token losses)/d(params)` into `grads`
    /// and returns the mean loss per token. `dropout`: `Some(rng)` while
    /// training (masks drawn from it), `None` for no dropout.
    pub fn forward_backward(
        &self,
        _ws: &mut Workspace,
        _batch: &Batch,
        _grads: &mut [f32],
        _grad_scale: f32,
        _dropout: Option<&mut Rng>,
    ) -> f32 {
        unimplemented!("model forward/backward")
    }

    /// Full logits (T, V) for one sequence (T <= n_ctx), no dropout.
    pub fn logits(&self, _ws: &mut Workspace, _tokens: &[u32]) -> Vec<f32> {
        unimplemented!("model logits")
    }

    /// Mean loss per token without dropout or gradients; when `predictions`
    /// is given (len batch*seq) it receives the arg-max token per position.
    pub fn evaluate(
        &self,
        _ws: &mut Workspace,
        _batch: &Batch,
        _predictions: Option<&mut [u32]>,
    ) -> f32 {
        unimplemented!("model evaluate")
    }
}
