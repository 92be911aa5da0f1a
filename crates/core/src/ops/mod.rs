//! One file per operation; each holds its forward and its backward, side by
//! side, over plain slices with shape comments, so the training pass
//! (`gpt/`) and the key/value-cache decoder (`kv_cache.rs`) both call them.
//!
//! Conventions: activations are row-major `(B, T, C)` slices; a backward
//! function says for each gradient whether it overwrites (`=`) or adds
//! (`+=`). Parameter gradients always add, so micro-batches accumulate.

/// Calls `$tile::<R>($t)` with the const `R` equal to `$rows` (1 to 12, the
/// register tiles' heights; anything else runs as 1), so that every edge
/// height of a blocked kernel is its own fully unrolled instance.
macro_rules! dispatch_tile_rows {
    ($rows:expr, $tile:ident, $t:expr) => {
        match $rows {
            12 => $tile::<12>($t),
            11 => $tile::<11>($t),
            10 => $tile::<10>($t),
            9 => $tile::<9>($t),
            8 => $tile::<8>($t),
            7 => $tile::<7>($t),
            6 => $tile::<6>($t),
            5 => $tile::<5>($t),
            4 => $tile::<4>($t),
            3 => $tile::<3>($t),
            2 => $tile::<2>($t),
            _ => $tile::<1>($t),
        }
    };
}
pub(crate) use dispatch_tile_rows;

pub mod attention;
pub mod bf16;
pub mod bf16_gemv;
pub mod crossentropy;
pub mod dropout;
pub mod embedding;
pub mod fast_math;
pub mod gelu;
pub mod layernorm;
pub mod linear_bf16;
pub mod matmul;
pub mod matmul_tn;
pub mod residual;
pub mod softmax;

/// Finite-difference checking shared by the per-operation tests.
#[cfg(test)]
pub(crate) mod fd {
    /// Checks `analytic` against central differences of `loss` around `x`:
    /// (L(x + h e_k) - L(x - h e_k)) / 2h for every k. `loss` is evaluated in
    /// f32 and summed in f64; with h = 1e-2 the truncation error is O(h²)
    /// and the rounding error about 1e-7 / h, so `tol` of ~1e-3 relative to
    /// the gradient's scale separates a right gradient from a wrong one.
    pub fn check(
        name: &str,
        x: &[f32],
        analytic: &[f32],
        tol: f64,
        loss: &mut dyn FnMut(&[f32]) -> f64,
    ) {
        assert_eq!(x.len(), analytic.len());
        let h = 1e-2f32;
        let mut probe = x.to_vec();
        let scale = analytic
            .iter()
            .fold(0.0f64, |m, &g| m.max(g.abs() as f64))
            .max(1e-3);
        for k in 0..x.len() {
            probe[k] = x[k] + h;
            let plus = loss(&probe);
            probe[k] = x[k] - h;
            let minus = loss(&probe);
            probe[k] = x[k];
            let fd = (plus - minus) / (2.0 * h as f64);
            let err = (fd - analytic[k] as f64).abs() / scale;
            assert!(
                err < tol,
                "{name}[{k}]: analytic {} vs finite difference {fd} (error {err:.2e} of scale {scale:.2e})",
                analytic[k]
            );
        }
    }

    /// A deterministic pseudo-random vector in about [-1, 1].
    pub fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..n).map(|_| rng.normal() * 0.5).collect()
    }

    /// sum(y ⊙ g) in f64: a scalar loss whose gradient wrt y is g.
    pub fn dot(y: &[f32], g: &[f32]) -> f64 {
        y.iter().zip(g).map(|(a, b)| *a as f64 * *b as f64).sum()
    }
}
