//! The GPT-2 model over the flat parameter buffer: forward, backward and
//! evaluation, built from the operations in `ops/`.
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

use super::bf16_weights::{Bf16Weights, LayerPacks, WeightPacks};
use super::block::{Attend, BlockBuffers, BlockDropout, BlockParams, block_forward};
use super::ops::attention::{self, AttnShape};
use super::ops::bf16::Precision;
use super::ops::crossentropy::{self, HeadShape, HeadWeights};
use super::ops::dropout::DropoutRng;
use super::ops::linear_bf16::LinearWeight;
use super::ops::{dropout, embedding, gelu, layernorm};
use super::profile::{Profile, timed};
use super::workspace::Workspace;
use super::{ModelConfig, ParamLayout};
use crate::rng::Rng;
use std::ops::Range;

/// Told which parameters' gradients are final, with the whole buffer
/// (`Gpt::forward_backward_streaming`).
pub type GradientsReady<'a> = &'a mut dyn FnMut(Range<usize>, &[f32]);

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

/// Two disjoint mutable views of the gradient buffer: a layer's weight and
/// its bias (`a` must come before `b`).
fn two_mut(buf: &mut [f32], a: (usize, usize), b: (usize, usize)) -> (&mut [f32], &mut [f32]) {
    assert!(a.0 + a.1 <= b.0, "gradient views overlap");
    let (head, tail) = buf.split_at_mut(b.0);
    (&mut head[a.0..a.0 + a.1], &mut tail[..b.1])
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
            bf16: None,
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
    pub fn refresh_precision_part(&mut self, part: super::bf16_weights::PackPart) {
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
    pub fn packed_words(&mut self) -> usize {
        self.bf16.as_mut().map_or(0, |w| w.words())
    }

    /// Moves the bf16 packs into memory the ranks of a host share (this
    /// rank copying the words `mine`); see
    /// [`Bf16Weights::place_shared`](super::bf16_weights::Bf16Weights::place_shared).
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
        let packs = self.bf16.as_ref().map(|w| &w.layers[l]);
        LinearWeight::of_layer(&self.params, offset, packs, pick)
    }

    /// The model cut to its first `n_ctx` positions: for generation from a
    /// model trained on shorter sequences than its position table holds
    /// (files written before the context was set to the trained length),
    /// so it never runs over positions it has not learned. No-op when the
    /// model is already that short.
    pub fn with_context(self, n_ctx: usize) -> Result<Gpt, String> {
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

    /// Forward and backward over one micro-batch. Adds
    /// `grad_scale * d(sum of per-token losses)/d(params)` into `grads`
    /// and returns the mean loss per token. `dropout`: `Some(rng)` while
    /// training (masks drawn from it), `None` for no dropout.
    pub fn forward_backward(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        grad_scale: f32,
        dropout: Option<&mut Rng>,
    ) -> f32 {
        self.forward_backward_profiled(ws, batch, grads, grad_scale, dropout, None)
    }

    /// [`Gpt::forward_backward`] with one dropout stream per sequence
    /// (`rngs.len() == batch.batch`): sequence b's masks come from `rngs[b]`
    /// alone, so they do not depend on how sequences are grouped into
    /// micro-batches (the trainer's spheres rely on this).
    pub fn forward_backward_per_sequence(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        grad_scale: f32,
        rngs: &mut [Rng],
    ) -> f32 {
        assert_eq!(rngs.len(), batch.batch, "one dropout stream per sequence");
        self.forward_backward_from(
            ws,
            batch,
            grads,
            grad_scale,
            Some(DropoutRng::PerSequence(rngs)),
            None,
        )
    }

    /// [`Gpt::forward_backward`] (with per-sequence dropout streams when
    /// `rngs` is given) that also calls `ready(range, grads)` as soon as the
    /// gradients in `range` are final for this micro-batch: the token
    /// embedding right after the tied head, the top layer with the final
    /// LayerNorm, each layer down, the position embedding last. The ranges
    /// cover the buffer once. One exception: the input embedding's backward,
    /// last of all, still adds into the wte rows of this micro-batch's
    /// tokens after wte was reported; the caller takes those rows from the
    /// buffer at the end. A data-parallel trainer sends each range over the
    /// network while backward goes on with the rest.
    pub fn forward_backward_streaming(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        grad_scale: f32,
        rngs: Option<&mut [Rng]>,
        ready: &mut dyn FnMut(Range<usize>, &[f32]),
    ) -> f32 {
        let dropout = rngs.map(|r| {
            assert_eq!(r.len(), batch.batch, "one dropout stream per sequence");
            DropoutRng::PerSequence(r)
        });
        self.forward_backward_hooked(ws, batch, grads, grad_scale, dropout, None, Some(ready))
    }

    /// [`Gpt::forward_backward`] that also adds each operation's wall time
    /// into `profile` (benchmarking).
    pub fn forward_backward_profiled(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        grad_scale: f32,
        dropout: Option<&mut Rng>,
        profile: Option<&mut Profile>,
    ) -> f32 {
        let dropout = dropout.map(DropoutRng::Shared);
        self.forward_backward_from(ws, batch, grads, grad_scale, dropout, profile)
    }

    fn forward_backward_from(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        grad_scale: f32,
        dropout: Option<DropoutRng>,
        profile: Option<&mut Profile>,
    ) -> f32 {
        self.forward_backward_hooked(ws, batch, grads, grad_scale, dropout, profile, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_backward_hooked(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        grad_scale: f32,
        dropout: Option<DropoutRng>,
        mut profile: Option<&mut Profile>,
        mut ready: Option<GradientsReady<'_>>,
    ) -> f32 {
        assert_eq!(
            grads.len(),
            self.params.len(),
            "gradient buffer does not match the parameters"
        );
        self.check_batch(ws, batch);
        let n = batch.batch * batch.seq;
        self.forward(
            ws,
            batch.inputs,
            batch.batch,
            batch.seq,
            dropout,
            &mut profile,
        );
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        let lay = &self.layout;
        let head = HeadShape {
            rows: n,
            channels: c,
            vocab: v,
            chunk: ws.head_chunk,
        };
        let wte = self.head_weights();
        let total = timed(&mut profile, "head+softmax+cross-entropy (fwd+bwd)", || {
            crossentropy::head_loss_backward(
                &mut ws.d_ln[..n * c],
                &mut grads[lay.wte..lay.wte + v * c],
                &ws.lnf[..n * c],
                batch.targets,
                wte,
                &mut ws.logits,
                head,
                grad_scale,
            )
        });
        // The head has written its whole share of wte's gradient: it can
        // travel now; the input embedding adds to a few rows of it at the
        // very end (the caller takes those rows separately).
        if let Some(ready) = ready.as_mut() {
            ready(lay.wte..lay.wte + v * c, grads);
        }
        self.backward(ws, batch, grads, &mut profile, &mut ready);
        (total / n as f64) as f32
    }

    /// Mean loss per token without dropout or gradients; when `predictions`
    /// is given (len batch*seq) it receives the arg-max token per position.
    pub fn evaluate(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        predictions: Option<&mut [u32]>,
    ) -> f32 {
        self.evaluate_rows(ws, batch, predictions, None)
    }

    /// [`evaluate`](Self::evaluate), also writing each position's loss
    /// (`-ln p(target)`, nats) into `losses` (batch*seq, row-major) when
    /// given.
    pub fn evaluate_rows(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        predictions: Option<&mut [u32]>,
        losses: Option<&mut [f32]>,
    ) -> f32 {
        self.check_batch(ws, batch);
        let n = batch.batch * batch.seq;
        if let Some(p) = &predictions {
            assert_eq!(p.len(), n, "predictions must hold batch*seq ids");
        }
        if let Some(l) = &losses {
            assert_eq!(l.len(), n, "losses must hold batch*seq values");
        }
        self.forward(ws, batch.inputs, batch.batch, batch.seq, None, &mut None);
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        let head = HeadShape {
            rows: n,
            channels: c,
            vocab: v,
            chunk: ws.head_chunk,
        };
        let wte = self.head_weights();
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

    /// Full logits (T, V), row-major, for one sequence (1 <= T <= the
    /// workspace's max_seq <= n_ctx), without dropout.
    pub fn logits(&self, ws: &mut Workspace, tokens: &[u32]) -> Vec<f32> {
        assert!(
            !tokens.is_empty() && tokens.len() <= ws.max_seq,
            "logits: {} tokens, the workspace holds 1 to {}",
            tokens.len(),
            ws.max_seq
        );
        assert_eq!(
            ws.config, self.config,
            "workspace was made for another model config"
        );
        let t = tokens.len();
        self.forward(ws, tokens, 1, t, None, &mut None);
        let (c, v) = (self.config.n_embd, self.config.vocab_size);
        let mut out = vec![0.0f32; t * v];
        let wte = &self.params[self.layout.wte..self.layout.wte + v * c];
        crossentropy::head_logits(&mut out, &ws.lnf[..t * c], wte, t, c, v);
        out
    }

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

    /// The forward pass up to ln_f, keeping what the backward needs in `ws`.
    fn forward(
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

    /// The backward pass from d(ln_f output), which the head left in
    /// `ws.d_ln`, down to the embeddings; parameter gradients are added.
    fn backward(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        profile: &mut Option<&mut Profile>,
        ready: &mut Option<GradientsReady<'_>>,
    ) {
        let cfg = &self.config;
        let (c, inner, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let (b, t) = (batch.batch, batch.seq);
        let n = b * t;
        let nmax = ws.max_batch * ws.max_seq;
        let p = &self.params;
        let lay = &self.layout;
        let masks = ws.masks_live;
        let shape = AttnShape {
            batch: b,
            seq: t,
            channels: c,
            heads: cfg.n_head,
        };
        let l_count = cfg.n_layer;

        let d_res = &mut ws.d_residual[..n * c];
        d_res.fill(0.0);
        {
            let (dw, db) = two_mut(grads, (lay.ln_f_weight, c), (lay.ln_f_bias, c));
            let x_last = &ws.residual[2 * l_count * nmax * c..2 * l_count * nmax * c + n * c];
            timed(profile, "layernorm", || {
                layernorm::layernorm_backward(
                    d_res,
                    dw,
                    db,
                    &ws.d_ln[..n * c],
                    x_last,
                    &ws.lnf_mean[..n],
                    &ws.lnf_rstd[..n],
                    &p[lay.ln_f_weight..lay.ln_f_weight + c],
                    c,
                )
            });
        }
        for (l, o) in lay.layers.iter().enumerate().rev() {
            let nc = l * nmax * c;
            let ni = l * nmax * inner;
            let x = &ws.residual[2 * l * nmax * c..2 * l * nmax * c + n * c];
            let mid = &ws.residual[(2 * l + 1) * nmax * c..(2 * l + 1) * nmax * c + n * c];

            // MLP branch: x_{l+1} = mid + dropout(c_proj(gelu(c_fc(ln_2(mid))))).
            let d_branch = &mut ws.branch[..n * c];
            d_branch.copy_from_slice(d_res);
            if masks {
                timed(profile, "dropout", || {
                    dropout::dropout_backward(d_branch, &ws.mlp_mask[nc..nc + n * c])
                });
            }
            {
                let (dw, db) = two_mut(grads, (o.mlp_proj_weight, c * inner), (o.mlp_proj_bias, c));
                timed(profile, "matmul mlp.c_proj", || {
                    self.linear_weight(l, o.mlp_proj_weight, |k| &k.mlp_proj)
                        .backward(
                            Some(&mut ws.d_gelu[..n * inner]),
                            dw,
                            Some(db),
                            d_branch,
                            &ws.fc_gelu[ni..ni + n * inner],
                            n,
                            inner,
                            c,
                        )
                });
            }
            timed(profile, "gelu", || {
                gelu::gelu_backward(
                    &mut ws.d_fc[..n * inner],
                    &ws.d_gelu[..n * inner],
                    &ws.fc[ni..ni + n * inner],
                )
            });
            {
                let (dw, db) = two_mut(grads, (o.c_fc_weight, inner * c), (o.c_fc_bias, inner));
                timed(profile, "matmul mlp.c_fc", || {
                    self.linear_weight(l, o.c_fc_weight, |k| &k.c_fc).backward(
                        Some(&mut ws.d_ln[..n * c]),
                        dw,
                        Some(db),
                        &ws.d_fc[..n * inner],
                        &ws.ln2[nc..nc + n * c],
                        n,
                        c,
                        inner,
                    )
                });
            }
            {
                let (dw, db) = two_mut(grads, (o.ln_2_weight, c), (o.ln_2_bias, c));
                timed(profile, "layernorm", || {
                    layernorm::layernorm_backward(
                        d_res,
                        dw,
                        db,
                        &ws.d_ln[..n * c],
                        mid,
                        &ws.ln2_mean[l * nmax..l * nmax + n],
                        &ws.ln2_rstd[l * nmax..l * nmax + n],
                        &p[o.ln_2_weight..o.ln_2_weight + c],
                        c,
                    )
                });
            }

            // Attention branch: mid = x_l + dropout(c_proj(attn(c_attn(ln_1(x_l))))).
            d_branch.copy_from_slice(d_res);
            if masks {
                timed(profile, "dropout", || {
                    dropout::dropout_backward(d_branch, &ws.attn_mask[nc..nc + n * c])
                });
            }
            {
                let (dw, db) = two_mut(grads, (o.attn_proj_weight, c * c), (o.attn_proj_bias, c));
                timed(profile, "matmul attn.c_proj", || {
                    self.linear_weight(l, o.attn_proj_weight, |k| &k.attn_proj)
                        .backward(
                            Some(&mut ws.d_attn[..n * c]),
                            dw,
                            Some(db),
                            d_branch,
                            &ws.attn[nc..nc + n * c],
                            n,
                            c,
                            c,
                        )
                });
            }
            timed(profile, "attention", || {
                attention::attention_backward(
                    &mut ws.d_qkv[..n * 3 * c],
                    &ws.d_attn[..n * c],
                    &ws.qkv[3 * nc..3 * nc + n * 3 * c],
                    &ws.attn_lse[l * nmax * cfg.n_head..],
                    &mut ws.attn_scratch,
                    shape,
                )
            });
            {
                let (dw, db) = two_mut(grads, (o.c_attn_weight, 3 * c * c), (o.c_attn_bias, 3 * c));
                timed(profile, "matmul c_attn", || {
                    self.linear_weight(l, o.c_attn_weight, |k| &k.c_attn)
                        .backward(
                            Some(&mut ws.d_ln[..n * c]),
                            dw,
                            Some(db),
                            &ws.d_qkv[..n * 3 * c],
                            &ws.ln1[nc..nc + n * c],
                            n,
                            c,
                            3 * c,
                        )
                });
            }
            {
                let (dw, db) = two_mut(grads, (o.ln_1_weight, c), (o.ln_1_bias, c));
                timed(profile, "layernorm", || {
                    layernorm::layernorm_backward(
                        d_res,
                        dw,
                        db,
                        &ws.d_ln[..n * c],
                        x,
                        &ws.ln1_mean[l * nmax..l * nmax + n],
                        &ws.ln1_rstd[l * nmax..l * nmax + n],
                        &p[o.ln_1_weight..o.ln_1_weight + c],
                        c,
                    )
                });
            }
            // Layer l's block (and above the top layer, ln_f) is final.
            if let Some(ready) = ready.as_mut() {
                let end = lay.layers.get(l + 1).map_or(lay.total, |n| n.ln_1_weight);
                ready(o.ln_1_weight..end, grads);
            }
        }
        if masks {
            timed(profile, "dropout", || {
                dropout::dropout_backward(d_res, &ws.emb_mask[..n * c])
            });
        }
        let (dwte, dwpe) = two_mut(grads, (lay.wte, v * c), (lay.wpe, cfg.n_ctx * c));
        timed(profile, "embedding", || {
            embedding::embedding_backward(dwte, dwpe, d_res, batch.inputs, t, c)
        });
        if let Some(ready) = ready.as_mut() {
            let end = lay.layers.first().map_or(lay.total, |o| o.ln_1_weight);
            ready(lay.wpe..end, grads);
        }
    }
}
