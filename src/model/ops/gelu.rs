//! GELU, tanh form (GPT-2's):
//! y = 0.5 x (1 + tanh(s (x + 0.044715 x³))), s = sqrt(2 / π).

use super::fast_math::{self, simd_fn};

const S: f32 = 0.797_884_6; // sqrt(2 / pi)
const K: f32 = 0.044_715;

simd_fn! {
    /// Forward, elementwise: out = gelu(x). Shapes (N,) — any layout.
    pub fn gelu_forward(out: &mut [f32], x: &[f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            let t = fast_math::tanh(S * (v + K * v * v * v));
            *o = 0.5 * v * (1.0 + t);
        }
    }
}

simd_fn! {
    /// Backward: dx `=` dout ⊙ gelu'(x), where with u = s (x + k x³), t = tanh u:
    /// gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t²) s (1 + 3 k x²).
    /// Overwrites: the MLP's hidden pre-activation feeds only the GELU.
    pub fn gelu_backward(dx: &mut [f32], dout: &[f32], x: &[f32]) {
        for ((d, &g), &v) in dx.iter_mut().zip(dout).zip(x) {
            let t = fast_math::tanh(S * (v + K * v * v * v));
            let local = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * S * (1.0 + 3.0 * K * v * v);
            *d = g * local;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::fd;

    #[test]
    fn backward_matches_finite_differences() {
        let x: Vec<f32> = fd::random(40, 5).iter().map(|v| v * 6.0).collect();
        let g = fd::random(40, 6);
        let mut dx = vec![0.0; 40];
        gelu_backward(&mut dx, &g, &x);
        let mut y = vec![0.0; 40];
        fd::check("dx", &x, &dx, 1e-3, &mut |p| {
            gelu_forward(&mut y, p);
            fd::dot(&y, &g)
        });
    }

    #[test]
    fn forward_matches_the_formula_in_f64() {
        for &v in &[-5.0f32, -1.0, -0.1, 0.0, 0.003, 0.5, 2.0, 8.0] {
            let x = v as f64;
            let want = 0.5
                * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
            let mut y = [0.0f32];
            gelu_forward(&mut y, &[v]);
            assert!(
                (y[0] as f64 - want).abs() < 1e-6 * (1.0 + want.abs()),
                "gelu({v}) = {} vs {want}",
                y[0]
            );
        }
    }
}
