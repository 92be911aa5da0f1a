//! [`Gpt::forward`]: the layers up to the final LayerNorm, then what the
//! caller asked for of the tied head: the logits of one sequence
//! ([`Logits`]) or a batch's loss against its targets ([`Loss`]).

use super::{Batch, Gpt};
use crate::block::{Attend, BlockBuffers, BlockDropout, BlockParams, block_forward};
use crate::ops::attention::AttnShape;
use crate::ops::crossentropy::{self, HeadShape};
use crate::ops::dropout::DropoutRng;
use crate::ops::{embedding, layernorm};
use crate::profile::{Profile, timed};
use crate::workspace::Workspace;

/// What [`Gpt::forward`] computes after the layers, and so what it
/// returns: [`Logits`] (a `Vec<f32>`) or [`Loss`] (an `f32`).
pub trait ForwardRequest: sealed::Sealed {
    type Output;

    /// Runs the request on `model` (through [`Gpt::forward`]).
    #[doc(hidden)]
    fn run(self, model: &Gpt, ws: &mut Workspace) -> Self::Output;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Logits<'_> {}
    impl Sealed for super::Loss<'_, '_> {}
}

/// The full logits (T, V), row-major, of one sequence of T tokens
/// (1 <= T <= the workspace's max_seq <= n_ctx), without dropout. The
/// head multiplies the f32 embedding even when the model runs in bf16.
pub struct Logits<'t>(pub &'t [u32]);

/// The mean loss per token of a batch against its targets, without
/// dropout or gradients; where given, also each position's arg-max token
/// and loss.
pub struct Loss<'b, 'o> {
    pub batch: Batch<'b>,
    /// (batch*seq) receives the arg-max token id of every position.
    pub predictions: Option<&'o mut [u32]>,
    /// (batch*seq, row-major) receives every position's loss,
    /// `-ln p(target)` in nats.
    pub losses: Option<&'o mut [f32]>,
}

impl<'b> Loss<'b, '_> {
    /// The mean loss of `batch` alone.
    pub fn of(batch: &Batch<'b>) -> Self {
        Loss {
            batch: *batch,
            predictions: None,
            losses: None,
        }
    }
}

impl Gpt {
    /// The forward pass, without dropout: `model.forward(&mut ws,
    /// Logits(&tokens))` gives the logits, `model.forward(&mut ws,
    /// Loss::of(&batch))` the mean loss per token.
    pub fn forward<R: ForwardRequest>(&self, ws: &mut Workspace, request: R) -> R::Output {
        request.run(self, ws)
    }

    /// The forward pass up to ln_f (its output left in `ws.lnf`), keeping
    /// what the backward needs in `ws`.
    pub(super) fn forward_to_ln_f(
        &self,
        ws: &mut Workspace,
        tokens: &[u32],
        b: usize,
        t: usize,
        mut dropout: Option<DropoutRng>,
        profile: &mut Option<&mut Profile>,
    ) {
        let cfg = &self.config;
        let (c, l_count, inner, v) = (cfg.n_embd, cfg.n_layer, cfg.n_inner, cfg.vocab_size);
        let n = b * t;
        let nmax = ws.max_batch * ws.max_seq;
        let p = &self.params;
        let lay = &self.layout;
        let drop_p = cfg.dropout;
        let use_dropout = drop_p > 0.0 && dropout.is_some();
        let shape = AttnShape {
            batch: b,
            seq: t,
            channels: c,
            heads: cfg.n_head,
        };

        timed(profile, "embedding", || {
            embedding::embedding_forward(
                &mut ws.residual[..n * c],
                tokens,
                &p[lay.wte..lay.wte + v * c],
                &p[lay.wpe..lay.wpe + cfg.n_ctx * c],
                t,
                c,
            );
        });
        if use_dropout && let Some(rng) = dropout.as_mut() {
            timed(profile, "dropout", || {
                rng.draw(
                    &mut ws.residual[..n * c],
                    &mut ws.emb_mask[..n * c],
                    drop_p,
                    t * c,
                )
            });
        }
        for (l, o) in lay.layers.iter().enumerate() {
            let nc = l * nmax * c;
            let ni = l * nmax * inner;
            // Residual stream slots: x_l at 2l, mid_l at 2l+1, x_{l+1} at 2l+2.
            let (done, rest) = ws.residual.split_at_mut((2 * l + 1) * nmax * c);
            let (mid_all, next_all) = rest.split_at_mut(nmax * c);
            let buffers = BlockBuffers {
                x: &done[2 * l * nmax * c..2 * l * nmax * c + n * c],
                ln1: &mut ws.ln1[nc..nc + n * c],
                ln1_mean: &mut ws.ln1_mean[l * nmax..l * nmax + n],
                ln1_rstd: &mut ws.ln1_rstd[l * nmax..l * nmax + n],
                qkv: &mut ws.qkv[3 * nc..3 * nc + n * 3 * c],
                attn: &mut ws.attn[nc..nc + n * c],
                mid: &mut mid_all[..n * c],
                ln2: &mut ws.ln2[nc..nc + n * c],
                ln2_mean: &mut ws.ln2_mean[l * nmax..l * nmax + n],
                ln2_rstd: &mut ws.ln2_rstd[l * nmax..l * nmax + n],
                fc: &mut ws.fc[ni..ni + n * inner],
                fc_gelu: &mut ws.fc_gelu[ni..ni + n * inner],
                branch: &mut ws.branch[..n * c],
                out: &mut next_all[..n * c],
            };
            let attend = Attend::Within {
                shape,
                lse: &mut ws.attn_lse[l * nmax * cfg.n_head..],
                scratch: &mut ws.attn_scratch,
            };
            let block_dropout = match dropout.as_mut() {
                Some(rng) if use_dropout => Some(BlockDropout {
                    rng,
                    p: drop_p,
                    row: t * c,
                    attn_mask: &mut ws.attn_mask[nc..nc + n * c],
                    mlp_mask: &mut ws.mlp_mask[nc..nc + n * c],
                }),
                _ => None,
            };
            let weights = BlockParams {
                params: p,
                offsets: o,
                channels: c,
                inner,
                packs: self.bf16.as_ref().map(|w| &w.layers[l]),
            };
            block_forward(&weights, n, buffers, attend, block_dropout, profile);
        }
        let x_last = &ws.residual[2 * l_count * nmax * c..2 * l_count * nmax * c + n * c];
        timed(profile, "layernorm", || {
            layernorm::layernorm_forward(
                &mut ws.lnf[..n * c],
                &mut ws.lnf_mean[..n],
                &mut ws.lnf_rstd[..n],
                x_last,
                &p[lay.ln_f_weight..lay.ln_f_weight + c],
                &p[lay.ln_f_bias..lay.ln_f_bias + c],
                c,
            )
        });
        // Remember whether masks were drawn, for the backward pass.
        ws.masks_live = use_dropout;
    }
}

impl ForwardRequest for Logits<'_> {
    type Output = Vec<f32>;

    fn run(self, model: &Gpt, ws: &mut Workspace) -> Vec<f32> {
        let tokens = self.0;
        assert!(
            !tokens.is_empty() && tokens.len() <= ws.max_seq,
            "logits: {} tokens, the workspace holds 1 to {}",
            tokens.len(),
            ws.max_seq
        );
        assert_eq!(
            ws.config, model.config,
            "workspace was made for another model config"
        );
        let t = tokens.len();
        model.forward_to_ln_f(ws, tokens, 1, t, None, &mut None);
        let (c, v) = (model.config.n_embd, model.config.vocab_size);
        let mut out = vec![0.0f32; t * v];
        let wte = &model.params[model.layout.wte..model.layout.wte + v * c];
        crossentropy::head_logits(&mut out, &ws.lnf[..t * c], wte, t, c, v);
        out
    }
}

impl ForwardRequest for Loss<'_, '_> {
    type Output = f32;

    fn run(self, model: &Gpt, ws: &mut Workspace) -> f32 {
        let Loss {
            batch,
            predictions,
            losses,
        } = self;
        model.check_batch(ws, &batch);
        let n = batch.batch * batch.seq;
        if let Some(p) = &predictions {
            assert_eq!(p.len(), n, "predictions must hold batch*seq ids");
        }
        if let Some(l) = &losses {
            assert_eq!(l.len(), n, "losses must hold batch*seq values");
        }
        model.forward_to_ln_f(ws, batch.inputs, batch.batch, batch.seq, None, &mut None);
        let (c, v) = (model.config.n_embd, model.config.vocab_size);
        let head = HeadShape {
            rows: n,
            channels: c,
            vocab: v,
            chunk: ws.head_chunk,
        };
        let wte = model.head_weights();
        let total = crossentropy::head_loss_rows(
            &ws.lnf[..n * c],
            batch.targets,
            wte,
            &mut ws.logits,
            head,
            predictions,
            losses,
        );
        (total / n as f64) as f32
    }
}
