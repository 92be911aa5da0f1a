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
    use crate::ops::fd;

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

    fn gelu_f64(x: f64) -> (f64, f64) {
        let s = (2.0 / std::f64::consts::PI).sqrt();
        let k = 0.044715;
        let t = (s * (x + k * x * x * x)).tanh();
        let dy = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s * (1.0 + 3.0 * k * x * x);
        (0.5 * x * (1.0 + t), dy)
    }

    /// Forward and backward against f64 over the whole range GELU sees (and
    /// far beyond), on every instruction-set path the CPU has, which must
    /// all give the same bits.
    #[test]
    fn matches_f64_over_the_range_on_every_path() {
        let mut x: Vec<f32> = (0..60001).map(|i| (i as f32 - 30000.0) * 1e-3).collect();
        x.extend([-1e4f32, -200.0, -50.0, 50.0, 200.0, 1e4, 1e-30, -1e-30]);
        let g: Vec<f32> = (0..x.len()).map(|i| 1.0 - (i % 7) as f32 * 0.3).collect();
        let run = |path| {
            fast_math::with_path(path, || {
                let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                gelu_forward(&mut y, &x);
                gelu_backward(&mut dx, &g, &x);
                (y, dx)
            })
        };
        let (y, dx) = run(fast_math::SimdPath::Portable);
        for i in 0..x.len() {
            let (want, dwant) = gelu_f64(x[i] as f64);
            let err = (y[i] as f64 - want).abs();
            assert!(
                err < 4e-7 * (1.0 + want.abs()),
                "gelu({}) = {} vs {want}",
                x[i],
                y[i]
            );
            let derr = (dx[i] as f64 - g[i] as f64 * dwant).abs();
            assert!(
                derr < 1e-6 * (1.0 + x[i].abs() as f64),
                "gelu'({}) = {} vs {}",
                x[i],
                dx[i],
                g[i] as f64 * dwant
            );
        }
        for path in fast_math::available_paths() {
            let (py, pdx) = run(path);
            assert!(
                py.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{path:?}"
            );
            assert!(
                pdx.iter().zip(&dx).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{path:?}"
            );
        }
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
