//! Inverted dropout: each element is kept with probability 1 - p and then
//! scaled by 1 / (1 - p), so the expected activation is unchanged and
//! evaluation needs no rescaling.

use crate::rng::Rng;

/// Forward, in place: fills `mask` (N) with 0 or 1 / (1 - p) drawn from
/// `rng` and multiplies `x` (N) by it. Element i is dropped when half i % 2
/// (low, then high) of draw i / 2 from `rng`, as a 32-bit integer, is
/// below p · 2³² (a last odd element uses the low half of one more draw).
///
/// Why halves and blocks: one draw per element, turned into a float and
/// compared, was slow: the generator's serial chain, and a branch missed
/// one time in ten. Here
/// the draws for a block are taken first (the only serial part, half as
/// many) and the block's masks are a branch-free compare and select the
/// compiler vectorises.
pub fn dropout_forward(x: &mut [f32], mask: &mut [f32], p: f32, rng: &mut Rng) {
    const BLOCK: usize = 128;
    let keep_scale = 1.0 / (1.0 - p);
    let threshold = drop_threshold(p);
    let n = x.len().min(mask.len());
    let mut halves = [0u32; BLOCK];
    for (xs, ms) in x[..n].chunks_mut(BLOCK).zip(mask[..n].chunks_mut(BLOCK)) {
        for pair in halves[..xs.len().next_multiple_of(2)].chunks_exact_mut(2) {
            let r = rng.next_u64();
            pair[0] = r as u32;
            pair[1] = (r >> 32) as u32;
        }
        for ((v, m), &h) in xs.iter_mut().zip(ms.iter_mut()).zip(&halves) {
            *m = if h < threshold { 0.0 } else { keep_scale };
            *v *= *m;
        }
    }
}

/// p · 2³² rounded: a uniform 32-bit integer falls below it with
/// probability p to within 2⁻³³ (p < 1 keeps it below 2³²).
fn drop_threshold(p: f32) -> u32 {
    (p as f64 * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
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
    use crate::ops::fd;

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
    fn each_element_follows_its_half_of_the_stream() {
        // The documented draw order, element by element, including a
        // block edge and an odd tail, against a plain reading of it.
        let (n, p) = (2 * 128 + 37, 0.4f32);
        let mut x: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
        let mut mask = vec![9.0; n];
        dropout_forward(&mut x, &mut mask, p, &mut Rng::new(11));
        let mut rng = Rng::new(11);
        let mut draw = 0u64;
        let threshold = (p as f64 * 2f64.powi(32)).round();
        for i in 0..n {
            if i % 2 == 0 {
                draw = rng.next_u64();
            }
            let half = if i % 2 == 0 {
                draw & 0xffff_ffff
            } else {
                draw >> 32
            };
            let keep = (half as f64) >= threshold;
            let want = if keep { 1.0 / (1.0 - p) } else { 0.0 };
            assert_eq!(mask[i], want, "element {i}");
            assert_eq!(x[i], (i as f32 + 1.0) * want, "element {i}");
        }
        // A call takes exactly ceil(n / 2) draws: the next one follows.
        let mut used = Rng::new(11);
        dropout_forward(&mut vec![1.0; n], &mut vec![0.0; n], p, &mut used);
        let mut skipped = Rng::new(11);
        for _ in 0..n.div_ceil(2) {
            skipped.next_u64();
        }
        assert_eq!(used.next_u64(), skipped.next_u64());
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
