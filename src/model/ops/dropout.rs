//! Inverted dropout: each element is kept with probability 1 - p and then
//! scaled by 1 / (1 - p), so the expected activation is unchanged and
//! evaluation needs no rescaling.

use crate::rng::Rng;

/// Forward, in place: fills `mask` (N) with 0 or 1 / (1 - p) drawn from
/// `rng` and multiplies `x` (N) by it.
pub fn dropout_forward(x: &mut [f32], mask: &mut [f32], p: f32, rng: &mut Rng) {
    let keep_scale = 1.0 / (1.0 - p);
    for (v, m) in x.iter_mut().zip(mask.iter_mut()) {
        *m = if rng.next_f32() < p { 0.0 } else { keep_scale };
        *v *= *m;
    }
}

/// Backward, in place: dx = dout ⊙ mask (the mask from the forward pass).
pub fn dropout_backward(d: &mut [f32], mask: &[f32]) {
    for (g, &m) in d.iter_mut().zip(mask) {
        *g *= m;
    }
}

/// Where dropout masks come from.
pub enum DropoutRng<'a> {
    /// One stream for the whole micro-batch.
    Shared(&'a mut Rng),
    /// One stream per sequence, in batch order.
    PerSequence(&'a mut [Rng]),
}

impl DropoutRng<'_> {
    /// Draws masks for `x` (B, T, C) laid out by sequence, `row` = T * C
    /// values per sequence, and applies them.
    pub(crate) fn draw(&mut self, x: &mut [f32], mask: &mut [f32], p: f32, row: usize) {
        match self {
            DropoutRng::Shared(rng) => dropout_forward(x, mask, p, rng),
            DropoutRng::PerSequence(rngs) => {
                for ((xs, ms), rng) in x
                    .chunks_mut(row)
                    .zip(mask.chunks_mut(row))
                    .zip(rngs.iter_mut())
                {
                    dropout_forward(xs, ms, p, rng);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::fd;

    #[test]
    fn keeps_expectation_and_drops_about_p() {
        let n = 100_000;
        let mut x = vec![1.0f32; n];
        let mut mask = vec![0.0; n];
        dropout_forward(&mut x, &mut mask, 0.25, &mut Rng::new(1));
        let dropped = x.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((dropped - 0.25).abs() < 0.01, "dropped {dropped}");
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert!(x.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    }

    #[test]
    fn backward_matches_finite_differences_for_a_fixed_mask() {
        let x = fd::random(50, 1);
        let g = fd::random(50, 2);
        let mut mask = vec![0.0; 50];
        let mut y = x.clone();
        dropout_forward(&mut y, &mut mask, 0.3, &mut Rng::new(4));
        let mut d = g.clone();
        dropout_backward(&mut d, &mask);
        // Same seed = same mask, so the forward is a fixed linear map.
        let mut m2 = vec![0.0; 50];
        fd::check("dx", &x, &d, 1e-3, &mut |p| {
            let mut y = p.to_vec();
            dropout_forward(&mut y, &mut m2, 0.3, &mut Rng::new(4));
            fd::dot(&y, &g)
        });
    }
}
