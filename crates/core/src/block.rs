//! One transformer block's forward pass, the only one: training and
//! evaluation (`Gpt`) and cached decoding (`KvCache`) all run it. They
//! differ only in where attention finds its keys and values ([`Attend`]):
//! within each sequence of the batch, or in a key/value cache that the block
//! also fills.
//!
//!   mid = x + dropout(attn_proj(causal_mha(ln_1(x))))
//!   out = mid + dropout(mlp_proj(gelu(c_fc(ln_2(mid)))))

use crate::bf16_weights::LayerPacks;
use crate::ops::attention::{self, AttnShape};
use crate::ops::bf16::WeightPacks;
use crate::ops::dropout::DropoutRng;
use crate::ops::linear_bf16::LinearWeight;
use crate::ops::{gelu, layernorm, residual};
use crate::params::LayerOffsets;
use crate::profile::{Profile, timed};

/// The activations of one block over `n` rows: the input `x` (n, C), what
/// the backward pass needs (kept by training, scratch for decoding), and
/// the output `out` (n, C).
pub struct BlockBuffers<'a> {
    pub x: &'a [f32],
    /// (n, C) ln_1 output and (n) its mean and 1/std.
    pub ln1: &'a mut [f32],
    pub ln1_mean: &'a mut [f32],
    pub ln1_rstd: &'a mut [f32],
    /// (n, 3C) queries, keys, values.
    pub qkv: &'a mut [f32],
    /// (n, C) attention output before c_proj.
    pub attn: &'a mut [f32],
    /// (n, C) the residual stream between attention and MLP.
    pub mid: &'a mut [f32],
    /// (n, C) ln_2 output and its statistics.
    pub ln2: &'a mut [f32],
    pub ln2_mean: &'a mut [f32],
    pub ln2_rstd: &'a mut [f32],
    /// (n, I) MLP pre-activation and GELU output.
    pub fc: &'a mut [f32],
    pub fc_gelu: &'a mut [f32],
    /// (n, C) scratch for a branch's projection.
    pub branch: &'a mut [f32],
    /// (n, C) the block's output.
    pub out: &'a mut [f32],
}

/// Where attention reads keys and values.
pub enum Attend<'a> {
    /// Causal attention within each of `shape.batch` sequences of
    /// `shape.seq` rows; `lse` keeps each row's log-sum-exp for the backward.
    Within {
        shape: AttnShape,
        lse: &'a mut [f32],
        scratch: &'a mut [f32],
    },
    /// The rows are new positions `start ..` of one sequence; earlier
    /// positions' keys and values come from this layer's cache (T_max, C),
    /// where the new rows' are written too.
    Cached {
        keys: &'a mut [f32],
        values: &'a mut [f32],
        start: usize,
        scores: &'a mut [f32],
        heads: usize,
    },
}

/// Dropout on the two branches while training: masks are drawn from `rng`
/// (sequences of `row` floats) and kept for the backward pass.
pub struct BlockDropout<'r, 'a> {
    pub rng: &'r mut DropoutRng<'a>,
    pub p: f32,
    pub row: usize,
    pub attn_mask: &'r mut [f32],
    pub mlp_mask: &'r mut [f32],
}

/// The parameters of one block: the flat buffer and the block's offsets,
/// and the block's bf16 weight packs when the model runs in bf16.
pub struct BlockParams<'a> {
    pub params: &'a [f32],
    pub offsets: &'a LayerOffsets,
    pub channels: usize,
    pub inner: usize,
    pub packs: Option<&'a LayerPacks>,
}

impl<'a> BlockParams<'a> {
    /// The linear weight at `offset`, in bf16 (`pick` from the packs) when
    /// the block has packs.
    pub fn linear(&self, offset: usize, pick: fn(&LayerPacks) -> &WeightPacks) -> LinearWeight<'a> {
        LinearWeight::of_layer(self.params, offset, self.packs.map(pick))
    }
}

/// Runs one block over `n` rows.
pub fn block_forward(
    w: &BlockParams,
    n: usize,
    b: BlockBuffers,
    attend: Attend,
    mut dropout: Option<BlockDropout>,
    profile: &mut Option<&mut Profile>,
) {
    let (p, o, c, inner) = (w.params, w.offsets, w.channels, w.inner);
    timed(profile, "layernorm", || {
        layernorm::layernorm_forward(
            b.ln1,
            b.ln1_mean,
            b.ln1_rstd,
            b.x,
            &p[o.ln_1_weight..o.ln_1_weight + c],
            &p[o.ln_1_bias..o.ln_1_bias + c],
            c,
        )
    });
    timed(profile, "matmul c_attn", || {
        w.linear(o.c_attn_weight, |k| &k.c_attn).forward(
            b.qkv,
            b.ln1,
            Some(&p[o.c_attn_bias..o.c_attn_bias + 3 * c]),
            n,
            c,
            3 * c,
        )
    });
    timed(profile, "attention", || match attend {
        Attend::Within {
            shape,
            lse,
            scratch,
        } => attention::attention_forward(b.attn, lse, b.qkv, scratch, shape),
        Attend::Cached {
            keys,
            values,
            start,
            scores,
            heads,
        } => {
            let shape = AttnShape {
                batch: 1,
                seq: n,
                channels: c,
                heads,
            };
            attention::attention_forward_cached(b.attn, b.qkv, keys, values, start, scores, shape)
        }
    });
    timed(profile, "matmul attn.c_proj", || {
        w.linear(o.attn_proj_weight, |k| &k.attn_proj).forward(
            b.branch,
            b.attn,
            Some(&p[o.attn_proj_bias..o.attn_proj_bias + c]),
            n,
            c,
            c,
        )
    });
    if let Some(d) = dropout.as_mut() {
        timed(profile, "dropout", || {
            d.rng.draw(b.branch, d.attn_mask, d.p, d.row)
        });
    }
    timed(profile, "residual", || {
        residual::residual_forward(b.mid, b.x, b.branch)
    });

    timed(profile, "layernorm", || {
        layernorm::layernorm_forward(
            b.ln2,
            b.ln2_mean,
            b.ln2_rstd,
            b.mid,
            &p[o.ln_2_weight..o.ln_2_weight + c],
            &p[o.ln_2_bias..o.ln_2_bias + c],
            c,
        )
    });
    timed(profile, "matmul mlp.c_fc", || {
        w.linear(o.c_fc_weight, |k| &k.c_fc).forward(
            b.fc,
            b.ln2,
            Some(&p[o.c_fc_bias..o.c_fc_bias + inner]),
            n,
            c,
            inner,
        )
    });
    timed(profile, "gelu", || gelu::gelu_forward(b.fc_gelu, b.fc));
    timed(profile, "matmul mlp.c_proj", || {
        w.linear(o.mlp_proj_weight, |k| &k.mlp_proj).forward(
            b.branch,
            b.fc_gelu,
            Some(&p[o.mlp_proj_bias..o.mlp_proj_bias + c]),
            n,
            inner,
            c,
        )
    });
    if let Some(d) = dropout.as_mut() {
        timed(profile, "dropout", || {
            d.rng.draw(b.branch, d.mlp_mask, d.p, d.row)
        });
    }
    timed(profile, "residual", || {
        residual::residual_forward(b.out, b.mid, b.branch)
    });
}
