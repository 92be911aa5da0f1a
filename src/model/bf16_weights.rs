//! The weights in bf16, packed once per optimizer step for the bf16
//! matmuls (`ops::bf16`), in the two layouts the products need:
//!   forward  `x · Wᵀ`   wants W's row pairs laid out transposed,
//!   backward `dy · W`   wants W's column pairs,
//! for every linear layer's weight and for the tied embedding (the head's
//! `x · wteᵀ` and `dlogits · wte`). The f32 parameters stay the master
//! copy: these packs are derived from them and must be rebuilt after every
//! change ([`Bf16Weights::refresh`]), which the trainer does after each
//! update. Packing reads every weight once and writes it twice in half the
//! bytes, about 1% of a step's matmul work at 512 rows per sphere.

use super::ops::bf16::{
    LANES, PACK_JOB_PAIRS, PACK_JOB_PAIRS_TRANSPOSED, PairsRef, pack_columns_range,
    pack_rows_transposed_range,
};
use super::ops::matmul::MatRef;
use super::params::ParamLayout;
use rayon::prelude::*;

/// One weight W (rows, cols) in both layouts.
#[derive(Clone, Debug, Default)]
pub struct WeightPacks {
    rows: usize,
    cols: usize,
    /// Row pairs, transposed: the right operand of `x · Wᵀ`.
    forward: Vec<u32>,
    /// Column pairs: the right operand of `dy · W`.
    backward: Vec<u32>,
}

impl WeightPacks {
    /// Packs W (rows, cols) into both layouts, pair rows in parallel jobs.
    fn pack(&mut self, w: &[f32], rows: usize, cols: usize) {
        self.rows = rows;
        self.cols = cols;
        let w = MatRef::new(&w[..rows * cols], rows, cols);
        let f_stride = rows.next_multiple_of(LANES);
        self.forward.resize(cols.div_ceil(2) * f_stride, 0);
        let b_stride = cols.next_multiple_of(LANES);
        self.backward.resize(rows.div_ceil(2) * b_stride, 0);
        rayon::join(
            || {
                self.forward
                    .par_chunks_mut(PACK_JOB_PAIRS_TRANSPOSED * f_stride)
                    .enumerate()
                    .for_each(|(j, d)| {
                        pack_rows_transposed_range(d, w, j * PACK_JOB_PAIRS_TRANSPOSED)
                    })
            },
            || {
                self.backward
                    .par_chunks_mut(PACK_JOB_PAIRS * b_stride)
                    .enumerate()
                    .for_each(|(j, d)| pack_columns_range(d, w, j * PACK_JOB_PAIRS))
            },
        );
    }

    /// Packs a (rows, cols) weight on its own (tests).
    pub fn pack_for_test(&mut self, w: &[f32], rows: usize, cols: usize) {
        self.pack(w, rows, cols)
    }

    /// W as the right operand of `x (n, cols) · Wᵀ`: (rows, cols/2 pairs).
    pub fn forward(&self) -> PairsRef<'_> {
        let pairs = self.cols.div_ceil(2);
        let stride = self.forward.len() / pairs.max(1);
        PairsRef::new(&self.forward, self.rows, pairs, 1, stride)
    }

    /// W as the right operand of `dy (n, rows) · W`: (cols, rows/2 pairs).
    pub fn backward(&self) -> PairsRef<'_> {
        let pairs = self.rows.div_ceil(2);
        let stride = self.backward.len() / pairs.max(1);
        PairsRef::new(&self.backward, self.cols, pairs, 1, stride)
    }
}

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
        w.refresh(layout, vocab, c, inner, params);
        w
    }

    /// Re-packs every weight from `params` (on rayon's threads).
    pub fn refresh(
        &mut self,
        layout: &ParamLayout,
        vocab: usize,
        c: usize,
        inner: usize,
        params: &[f32],
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
            packs.pack(&params[at..at + rows * cols], rows, cols)
        });
    }
}
