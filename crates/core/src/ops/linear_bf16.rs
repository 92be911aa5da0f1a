//! The linear layer (`y = x Wᵀ + b`) in bf16: the same contract as
//! `matmul::linear_forward` / `linear_backward`, with the weight given as
//! its per-step packs and the activations rounded to bf16 on the way in.
//! Every product accumulates in f32 and every result is f32.
//!
//! The activations' packs live in per-thread buffers: each sphere thread
//! grows them once to its largest layer and reuses them every call.

use super::bf16::{
    Kernel, Start, WeightPacks, matmul_pairs, matmul_pairs_from, pack_columns, pack_rows,
};
use super::matmul::{MatMut, MatRef, add_bias_gradient};
use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<[Vec<u32>; 3]> =
        const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` with two of this thread's conversion buffers.
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u32>, &mut Vec<u32>) -> R) -> R {
    with_scratch3(|a, b, _| f(a, b))
}

/// Runs `f` with this thread's three conversion buffers (not re-entrant:
/// `f` must not call it again).
pub fn with_scratch3<R>(f: impl FnOnce(&mut Vec<u32>, &mut Vec<u32>, &mut Vec<u32>) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let [a, b, c] = &mut *s;
        f(a, b, c)
    })
}

/// Forward. x (N, I), W packed from (O, I), bias (O) or none, out (N, O).
pub fn linear_forward(
    out: &mut [f32],
    x: &[f32],
    w: &WeightPacks,
    bias: Option<&[f32]>,
    n: usize,
    i: usize,
    o: usize,
) {
    let out = &mut out[..n * o];
    with_scratch(|a, _| {
        let xa = pack_rows(a, MatRef::new(x, n, i));
        // The sums start from the bias in registers: no pass writing it
        // into every row for the product to read back.
        let start = bias.map_or(Start::Zero, |b| Start::Bias(&b[..o]));
        matmul_pairs_from(
            Kernel::detect(),
            MatMut::new(out, n, o),
            xa,
            w.forward(),
            start,
        );
    });
}

/// Backward: dx (N, I) `=` dout · W when given, dw (O, I) `+=` doutᵀ · x,
/// dbias (O) `+=` column sums of dout (in f32, from the f32 dout).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    w: &WeightPacks,
    n: usize,
    i: usize,
    o: usize,
) {
    with_scratch(|a, b| {
        if let Some(dx) = dx {
            let da = pack_rows(a, MatRef::new(dout, n, o));
            matmul_pairs(MatMut::new(dx, n, i), da, w.backward(), false);
        }
        let dt = pack_columns(a, MatRef::new(dout, n, o));
        let xc = pack_columns(b, MatRef::new(x, n, i));
        matmul_pairs(MatMut::new(&mut dw[..o * i], o, i), dt, xc, true);
    });
    if let Some(db) = dbias {
        add_bias_gradient(db, dout, n, o);
    }
}

/// A linear layer's weight as the model multiplies it: the f32 slice (the
/// layer's `(O, I)` weight at its start) or its bf16 packs.
#[derive(Clone, Copy)]
pub enum LinearWeight<'a> {
    F32(&'a [f32]),
    Bf16(&'a WeightPacks),
}

impl<'a> LinearWeight<'a> {
    /// A layer's weight: its bf16 `packs` when the model has them, else
    /// the f32 weight at `offset` in `params`.
    pub fn of_layer(params: &'a [f32], offset: usize, packs: Option<&'a WeightPacks>) -> Self {
        match packs {
            Some(packs) => LinearWeight::Bf16(packs),
            None => LinearWeight::F32(&params[offset..]),
        }
    }

    /// `matmul::linear_forward` or this module's, by precision.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        self,
        out: &mut [f32],
        x: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        i: usize,
        o: usize,
    ) {
        match self {
            LinearWeight::F32(w) => super::matmul::linear_forward(out, x, w, bias, n, i, o),
            LinearWeight::Bf16(w) => linear_forward(out, x, w, bias, n, i, o),
        }
    }

    /// `matmul::linear_backward` or this module's, by precision.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        self,
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        dbias: Option<&mut [f32]>,
        dout: &[f32],
        x: &[f32],
        n: usize,
        i: usize,
        o: usize,
    ) {
        match self {
            LinearWeight::F32(w) => {
                super::matmul::linear_backward(dx, dw, dbias, dout, x, w, n, i, o)
            }
            LinearWeight::Bf16(w) => linear_backward(dx, dw, dbias, dout, x, w, n, i, o),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::bf16::{from_bf16, to_bf16};
    use crate::ops::matmul;
    use crate::rng::Rng;

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal()).collect()
    }

    fn rounded(v: &[f32]) -> Vec<f32> {
        v.iter().map(|&x| from_bf16(to_bf16(x))).collect()
    }

    /// The bf16 layer equals the f32 layer applied to bf16-rounded inputs,
    /// to f32 accumulation error.
    #[test]
    fn matches_the_f32_layer_on_rounded_inputs() {
        let (n, i, o) = (19, 45, 37);
        let mut rng = Rng::new(8);
        let x = random(n * i, &mut rng);
        let w = random(o * i, &mut rng);
        let bias = random(o, &mut rng);
        let dout = random(n * o, &mut rng);
        let mut packs = WeightPacks::default();
        packs.pack(&w, o, i);

        let mut y = vec![0.0; n * o];
        linear_forward(&mut y, &x, &packs, Some(&bias), n, i, o);
        let mut want = vec![0.0; n * o];
        matmul::linear_forward(&mut want, &rounded(&x), &rounded(&w), Some(&bias), n, i, o);
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (k, (p, q)) in a.iter().zip(b).enumerate() {
                assert!(
                    (p - q).abs() < 1e-4 * (1.0 + q.abs()),
                    "{what}[{k}]: {p} vs {q}"
                );
            }
        };
        close(&y, &want, "y");

        let (mut dx, mut dw, mut db) = (vec![0.0; n * i], vec![0.5; o * i], vec![0.0; o]);
        linear_backward(
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
            &dout,
            &x,
            &packs,
            n,
            i,
            o,
        );
        let (mut wdx, mut wdw, mut wdb) = (vec![0.0; n * i], vec![0.5; o * i], vec![0.0; o]);
        let dr = rounded(&dout);
        matmul::linear_backward(
            Some(&mut wdx),
            &mut wdw,
            None,
            &dr,
            &rounded(&x),
            &rounded(&w),
            n,
            i,
            o,
        );
        matmul::linear_backward(
            None,
            &mut vec![0.0; o * i],
            Some(&mut wdb),
            &dout,
            &x,
            &w,
            n,
            i,
            o,
        );
        close(&dx, &wdx, "dx");
        close(&dw, &wdw, "dw");
        close(&db, &wdb, "dbias");
    }
}
