//! The model's weights in bf16 for the bf16 matmuls: every linear layer's
//! weight and the tied embedding (the head's `x · wteᵀ` and `dlogits ·
//! wte`), each a [`WeightPacks`] (`ops::bf16`) in the two layouts the
//! products need. The f32 parameters stay the master copy: these packs are
//! derived from them and must be rebuilt after every change
//! ([`Bf16Weights::refresh_part`]), which the trainer does after each
//! update. Packing reads every weight once and writes it twice in half the
//! bytes, about 1% of a step's matmul work at 512 rows per sphere.

use crate::ops::bf16::{PackPart, WeightPacks};
use crate::params::ParamLayout;
use rayon::prelude::*;
use std::ops::Range;

/// The four linear weights of one block.
#[derive(Clone, Debug, Default)]
pub struct LayerPacks {
    pub c_attn: WeightPacks,
    pub attn_proj: WeightPacks,
    pub c_fc: WeightPacks,
    pub mlp_proj: WeightPacks,
}

/// Every matmul weight of a model in bf16.
#[derive(Clone, Debug, Default)]
pub struct Bf16Weights {
    pub wte: WeightPacks,
    pub layers: Vec<LayerPacks>,
}

impl Bf16Weights {
    pub fn new(layout: &ParamLayout, vocab: usize, c: usize, inner: usize, params: &[f32]) -> Self {
        let mut w = Bf16Weights {
            wte: WeightPacks::default(),
            layers: vec![LayerPacks::default(); layout.layers.len()],
        };
        w.refresh_part(layout, vocab, c, inner, params, &|n| 0..n);
        w
    }

    /// Re-packs the pairs `part(n)` of every layout of `n` pairs from
    /// `params` (on rayon's threads): all of them (`|n| 0..n`), or a
    /// rank's share of packs the ranks of a host share.
    pub fn refresh_part(
        &mut self,
        layout: &ParamLayout,
        vocab: usize,
        c: usize,
        inner: usize,
        params: &[f32],
        part: PackPart,
    ) {
        let mut jobs: Vec<(&mut WeightPacks, usize, usize, usize)> =
            vec![(&mut self.wte, layout.wte, vocab, c)];
        for (packs, o) in self.layers.iter_mut().zip(&layout.layers) {
            jobs.push((&mut packs.c_attn, o.c_attn_weight, 3 * c, c));
            jobs.push((&mut packs.attn_proj, o.attn_proj_weight, c, c));
            jobs.push((&mut packs.c_fc, o.c_fc_weight, inner, c));
            jobs.push((&mut packs.mlp_proj, o.mlp_proj_weight, c, inner));
        }
        jobs.into_par_iter().for_each(|(packs, at, rows, cols)| {
            packs.pack_part(&params[at..at + rows * cols], rows, cols, part)
        });
    }

    /// Every weight, in one fixed order.
    fn weights_mut(&mut self) -> Vec<&mut WeightPacks> {
        let mut all = vec![&mut self.wte];
        for l in &mut self.layers {
            all.extend([
                &mut l.c_attn,
                &mut l.attn_proj,
                &mut l.c_fc,
                &mut l.mlp_proj,
            ]);
        }
        all
    }

    /// Words (u32) of all layouts together.
    pub fn words(&self) -> usize {
        let layers = self.layers.iter();
        let per_layer = layers.flat_map(|l| [&l.c_attn, &l.attn_proj, &l.c_fc, &l.mlp_proj]);
        self.wte.words() + per_layer.map(WeightPacks::words).sum::<usize>()
    }

    /// Moves every layout into the `words()` u32 at `base`, which the
    /// ranks of a host all map, one after another in a fixed order; each
    /// rank copies `mine(words)` of what it holds (every rank holds the
    /// same), and must wait for the others before reading.
    ///
    /// # Safety
    /// `base` points to `words()` u32 that stay mapped, and are written by
    /// nothing else than these packs, for as long as this model lives.
    pub unsafe fn place_shared(&mut self, base: *mut u32, mine: Range<usize>) {
        let mut at = 0;
        for w in self.weights_mut() {
            // SAFETY: passed on from the caller; each weight takes the
            // words after the previous one's, within `words()`.
            at += unsafe { w.place_shared(base, at, &mine) };
        }
    }
}
