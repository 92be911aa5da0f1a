//! AdamW (Loshchilov & Hutter) with bias correction and decoupled weight
//! decay, over the flat parameter buffer; and global-norm gradient clipping.
//!
//! For each parameter p with gradient g at step t (1-based):
//!   m = b1 m + (1 - b1) g
//!   v = b2 v + (1 - b2) g^2
//!   m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)
//!   p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)     (wd only on matrices)
//!
//! Its checkpoint records (`AdamW::resume`, `OptimizerRef::from`) are in
//! `checkpoint.rs`, beside the format they convert to.

use std::ops::Range;

pub use crate::config::AdamWConfig;

#[derive(Clone, Debug, PartialEq)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// First moment, same layout as the parameters.
    pub m: Vec<f32>,
    /// Second moment, same layout as the parameters.
    pub v: Vec<f32>,
    /// Updates applied so far.
    pub step: u64,
    /// Where weight decay applies (matrices only).
    decay: Vec<Range<usize>>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, num_params: usize, decay: Vec<Range<usize>>) -> AdamW {
        AdamW {
            config,
            m: vec![0.0; num_params],
            v: vec![0.0; num_params],
            step: 0,
            decay,
        }
    }

    pub fn decay_ranges(&self) -> &[Range<usize>] {
        &self.decay
    }

    /// One full update over the whole buffer (single thread).
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        assert_eq!(params.len(), self.m.len());
        assert_eq!(grads.len(), self.m.len());
        let coeffs = self.begin_step(lr, 1.0);
        let (m, v) = (&mut self.m[..], &mut self.v[..]);
        coeffs.apply(0, params, grads, m, v);
    }

    /// Counts one step and returns what every slice of the update needs, so
    /// that threads can update disjoint slices of the buffer in parallel with
    /// results identical to [`AdamW::update`]. `grad_scale` multiplies every
    /// gradient (clipping folds in here).
    pub fn begin_step(&mut self, lr: f32, grad_scale: f32) -> AdamWStep {
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        AdamWStep {
            lr,
            grad_scale,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            inv_bc1: (1.0 / (1.0 - (c.beta1 as f64).powi(t))) as f32,
            inv_bc2: (1.0 / (1.0 - (c.beta2 as f64).powi(t))) as f32,
            decay: self.decay.clone(),
        }
    }
}

/// The coefficients of one AdamW step (see [`AdamW::begin_step`]).
#[derive(Clone, Debug)]
pub struct AdamWStep {
    lr: f32,
    grad_scale: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    inv_bc1: f32,
    inv_bc2: f32,
    decay: Vec<Range<usize>>,
}

impl AdamWStep {
    /// Updates the slice of the flat buffer that starts at `offset`.
    pub fn apply(
        &self,
        offset: usize,
        params: &mut [f32],
        grads: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let end = offset + params.len();
        assert!(grads.len() == params.len() && m.len() == params.len() && v.len() == params.len());
        // Walk the slice once, alternating undecayed gaps and decayed ranges.
        let mut at = offset;
        for r in &self.decay {
            if r.end <= at {
                continue;
            }
            if r.start >= end {
                break;
            }
            let start = r.start.max(at);
            self.apply_range(at - offset..start - offset, 0.0, params, grads, m, v);
            let stop = r.end.min(end);
            self.apply_range(
                start - offset..stop - offset,
                self.weight_decay,
                params,
                grads,
                m,
                v,
            );
            at = stop;
        }
        self.apply_range(at - offset..end - offset, 0.0, params, grads, m, v);
    }

    fn apply_range(
        &self,
        range: Range<usize>,
        wd: f32,
        p: &mut [f32],
        grads: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let (b1, b2, eps, lr) = (self.beta1, self.beta2, self.eps, self.lr);
        for i in range {
            let g = grads[i] * self.grad_scale;
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            let m_hat = m[i] * self.inv_bc1;
            let v_hat = v[i] * self.inv_bc2;
            p[i] -= lr * (m_hat / (v_hat.sqrt() + eps) + wd * p[i]);
        }
    }
}

/// The global L2 norm of `grads` (accumulated in f64).
pub fn global_norm(grads: &[f32]) -> f32 {
    grads
        .iter()
        .map(|&g| (g as f64) * (g as f64))
        .sum::<f64>()
        .sqrt() as f32
}

/// Scales `grads` so their global norm is at most `max_norm` (0 or less:
/// never clip). Returns the norm before clipping and whether it clipped.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f32) -> (f32, bool) {
    let norm = global_norm(grads);
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        grads.iter_mut().for_each(|g| *g *= scale);
        (norm, true)
    } else {
        (norm, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two AdamW steps worked out by hand (f64 arithmetic in the comments).
    /// b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1, lr = 0.1.
    /// Parameter 0 (decayed) starts at 1.0; parameter 1 (not decayed) at 2.0.
    /// Step 1, g = (0.5, -1.0):
    ///   m = (0.05, -0.1), v = (0.0025, 0.01); m_hat = g, v_hat = g^2
    ///   update = sign(g) (to 1e-8):  p0 = 1 - 0.1 (1 + 0.1 * 1) = 0.89
    ///                                p1 = 2 - 0.1 (-1)          = 2.1
    /// Step 2, g = (0.5, 1.0):
    ///   p0: m = 0.095, v = 0.004975; m_hat = 0.095/0.19 = 0.5,
    ///       v_hat = 0.004975/0.0199 = 0.25 -> ratio 1
    ///       p0 = 0.89 - 0.1 (1 + 0.1 * 0.89) = 0.7811
    ///   p1: m = -0.09 + 0.1 = 0.01, v = 0.0099 + 0.01 = 0.0199;
    ///       m_hat = 0.01/0.19 = 0.0526316, v_hat = 1 -> ratio 0.0526316
    ///       p1 = 2.1 - 0.00526316 = 2.0947368
    #[test]
    fn two_steps_match_hand_computation() {
        let cfg = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let decayed: Vec<std::ops::Range<usize>> = std::iter::once(0..1).collect();
        let mut opt = AdamW::new(cfg, 2, decayed);
        let mut p = vec![1.0f32, 2.0];
        opt.update(&mut p, &[0.5, -1.0], 0.1);
        assert!((p[0] - 0.89).abs() < 1e-6, "{p:?}");
        assert!((p[1] - 2.1).abs() < 1e-6, "{p:?}");
        opt.update(&mut p, &[0.5, 1.0], 0.1);
        assert!((p[0] - 0.7811).abs() < 1e-6, "{p:?}");
        assert!((p[1] - 2.094_736_8).abs() < 1e-6, "{p:?}");
        assert_eq!(opt.step, 2);
    }

    #[test]
    fn sliced_updates_equal_one_update() {
        let n = 1000;
        let decay = vec![100..300, 450..460, 900..1000];
        let grads: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let p0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.013).sin()).collect();
        let mut whole = AdamW::new(AdamWConfig::default(), n, decay.clone());
        let mut p_whole = p0.clone();
        let mut sliced = AdamW::new(AdamWConfig::default(), n, decay);
        let mut p_sliced = p0.clone();
        for _ in 0..3 {
            whole.update(&mut p_whole, &grads, 0.01);
            let step = sliced.begin_step(0.01, 1.0);
            for (start, end) in [(0, 120), (120, 455), (455, 457), (457, 1000)] {
                step.apply(
                    start,
                    &mut p_sliced[start..end],
                    &grads[start..end],
                    &mut sliced.m[start..end],
                    &mut sliced.v[start..end],
                );
            }
        }
        assert_eq!(p_whole, p_sliced);
        assert_eq!(whole.m, sliced.m);
    }

    #[test]
    fn clipping_reports_norm_and_scales() {
        let mut g = vec![3.0f32, 4.0];
        let (norm, clipped) = clip_grad_norm(&mut g, 1.0);
        assert!((norm - 5.0).abs() < 1e-6 && clipped);
        assert!((global_norm(&g) - 1.0).abs() < 1e-5);
        let mut g = vec![0.3f32, 0.4];
        assert_eq!(clip_grad_norm(&mut g, 1.0), (0.5, false));
        assert_eq!(g, vec![0.3, 0.4]);
        let mut g = vec![30.0f32, 40.0];
        assert_eq!(clip_grad_norm(&mut g, 0.0), (50.0, false));
    }
}
