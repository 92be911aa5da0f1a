//! [`Gpt::forward_backward`]: the training pass over one micro-batch, its
//! [`Backward`] options, and the backward from the head down to the
//! embeddings.

use super::{Batch, Gpt};
use crate::ops::attention::{self, AttnShape};
use crate::ops::crossentropy::{self, HeadShape};
use crate::ops::dropout::DropoutRng;
use crate::ops::{dropout, embedding, gelu, layernorm};
use crate::profile::{Profile, timed};
use crate::workspace::Workspace;
use std::ops::Range;

/// Told which parameters' gradients are final, with the whole buffer
/// ([`Backward::ready`]).
pub type GradientsReady<'a> = &'a mut dyn FnMut(Range<usize>, &[f32]);

/// How [`Gpt::forward_backward`] runs; `Backward::default()` is no dropout,
/// gradients of the summed loss (scale 1), no profile, no hook.
pub struct Backward<'a> {
    /// Adds `grad_scale * d(sum of per-token losses)/d(params)` into the
    /// gradients (`1 / tokens` gives the mean's gradient).
    pub grad_scale: f32,
    /// Where dropout masks come from while training: one stream for the
    /// micro-batch, or one per sequence (sequence b's masks then come from
    /// its own stream alone, so they do not depend on how sequences are
    /// grouped into micro-batches). `None`: no dropout.
    pub dropout: Option<DropoutRng<'a>>,
    /// Adds each operation's thread CPU time here (benchmarking).
    pub profile: Option<&'a mut Profile>,
    /// Called with `(range, grads)` as soon as the gradients in `range` are
    /// final for this micro-batch: the token embedding right after the
    /// tied head, the top layer with the final LayerNorm, each layer down,
    /// the position embedding last. The ranges cover the buffer once. One
    /// exception: the input embedding's backward, last of all, still adds
    /// into the wte rows of this micro-batch's tokens after wte was
    /// reported; the caller takes those rows from the buffer at the end. A
    /// data-parallel trainer sends each range over the network while
    /// backward goes on with the rest.
    pub ready: Option<GradientsReady<'a>>,
}

impl Default for Backward<'_> {
    fn default() -> Self {
        Backward::scaled(1.0)
    }
}

impl Backward<'_> {
    /// No dropout, profile or hook; gradients scaled by `grad_scale`.
    pub fn scaled(grad_scale: f32) -> Self {
        Backward {
            grad_scale,
            dropout: None,
            profile: None,
            ready: None,
        }
    }
}

/// Two disjoint mutable views of the gradient buffer: a layer's weight and
/// its bias (`a` must come before `b`).
fn two_mut(buf: &mut [f32], a: (usize, usize), b: (usize, usize)) -> (&mut [f32], &mut [f32]) {
    assert!(a.0 + a.1 <= b.0, "gradient views overlap");
    let (head, tail) = buf.split_at_mut(b.0);
    (&mut head[a.0..a.0 + a.1], &mut tail[..b.1])
}

impl Gpt {
    /// Forward and backward over one micro-batch: adds the gradients into
    /// `grads` (see [`Backward::grad_scale`]) and returns the mean loss per
    /// token.
    pub fn forward_backward(
        &self,
        ws: &mut Workspace,
        batch: &Batch,
        grads: &mut [f32],
        options: Backward,
    ) -> f32 {
        let Backward {
            grad_scale,
            dropout,
            mut profile,
            mut ready,
        } = options;
        if let Some(DropoutRng::PerSequence(rngs)) = &dropout {
            assert_eq!(rngs.len(), batch.batch, "one dropout stream per sequence");
        }
        assert_eq!(
            grads.len(),
            self.params.len(),
            "gradient buffer does not match the parameters"
        );
        self.check_batch(ws, batch);
        let n = batch.batch * batch.seq;
        self.forward_to_ln_f(
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
