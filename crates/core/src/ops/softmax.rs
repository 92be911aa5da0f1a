//! Softmax: the one implementation behind attention rows, the head's
//! cross-entropy and sampling.
//!
//! Numerically careful: the maximum is subtracted before exponentiating, so
//! no exponential overflows and the largest is exactly 1; the log-sum-exp
//! comes back for losses and for recomputing probabilities in a backward
//! pass. Reductions run over 16 independent lanes so they vectorise; the
//! exponential is `fast_math::exp` (a few ulp, see its tests).

use super::fast_math::{self, simd_fn};

const LANES: usize = 16;

simd_fn! {
    /// `row = out_scale · softmax(in_scale · row)`, in place. Returns
    /// (log-sum-exp of `in_scale · row`, the index of the first maximum,
    /// or 0 unless `find_argmax`). `in_scale` is attention's 1/√d or a
    /// sampling temperature's inverse; `out_scale` folds in a caller's
    /// gradient scale (1 for plain probabilities).
    pub fn softmax_in_place(
        row: &mut [f32],
        in_scale: f32,
        out_scale: f32,
        find_argmax: bool,
    ) -> (f32, usize) {
        if in_scale != 1.0 {
            for x in row.iter_mut() {
                *x *= in_scale;
            }
        }
        let (max, sum, argmax) = exp_shifted(row, find_argmax);
        let factor = out_scale / sum;
        for x in row.iter_mut() {
            *x *= factor;
        }
        (max + sum.ln(), argmax)
    }
}

/// `row = exp(row - max(row))` in place; returns (max, Σ of the
/// exponentials, the index of the first maximum or 0 unless `find_argmax`).
/// The first half of [`softmax_in_place`], shared with the head's tiles
/// (`crossentropy`); always inlined, so it is compiled for the SIMD path of
/// the function that calls it.
#[inline(always)]
pub(super) fn exp_shifted(row: &mut [f32], find_argmax: bool) -> (f32, f32, usize) {
    let max = row_max(row);
    // First index holding the maximum (ties go to the lowest index).
    let argmax = if find_argmax {
        row.iter().position(|&x| x == max).unwrap_or(0)
    } else {
        0
    };
    let mut lane_sum = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for ch in &mut chunks {
        for k in 0..LANES {
            let e = fast_math::exp(ch[k] - max);
            ch[k] = e;
            lane_sum[k] += e;
        }
    }
    let mut sum = 0.0f32;
    for x in chunks.into_remainder() {
        *x = fast_math::exp(*x - max);
        sum += *x;
    }
    sum += lane_sum.iter().sum::<f32>();
    (max, sum, argmax)
}

/// [`exp_shifted`] where the exponentials are wanted only as bf16 (the
/// bf16 head's tiles): `out = bf16(exp(row - max(row)))`, `row` left as
/// it is. The sum is of the f32 exponentials, in [`exp_shifted`]'s order,
/// so the two give the same bits for (max, sum, argmax). One pass that
/// stores two bytes an element instead of storing four and reading them
/// back to round.
///
/// The rounding is [`to_bf16`](super::bf16::to_bf16)'s without its NaN case: `fast_math::exp`
/// clamps its argument (a NaN goes to the lower bound), so it returns a
/// finite, normal, positive float, where the two roundings agree; the
/// select cost as much as the rest of the rounding (tested against
/// `to_bf16` with NaN and infinite logits in `crossentropy`).
#[inline(always)]
pub(super) fn exp_shifted_bf16(
    row: &[f32],
    out: &mut [u16],
    find_argmax: bool,
) -> (f32, f32, usize) {
    exp_shifted_rounding(row, out, find_argmax, |e, o| {
        for k in 0..LANES {
            o[k] = round_finite(e[k]);
        }
    })
}

/// [`exp_shifted_bf16`] with the rounding of each whole vector of
/// exponentials given (`round16(e, out)` writes bf16(e) to `out`'s 16),
/// for a caller with a rounding instruction; the row's tail uses
/// [`round_finite`].
#[inline(always)]
pub(super) fn exp_shifted_rounding(
    row: &[f32],
    out: &mut [u16],
    find_argmax: bool,
    round16: impl Fn(&[f32; LANES], &mut [u16]),
) -> (f32, f32, usize) {
    let max = row_max(row);
    let argmax = if find_argmax {
        row.iter().position(|&x| x == max).unwrap_or(0)
    } else {
        0
    };
    let out = &mut out[..row.len()];
    let mut lane_sum = [0.0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    let mut outs = out.chunks_exact_mut(LANES);
    for (ch, o) in (&mut chunks).zip(&mut outs) {
        let mut e = [0.0f32; LANES];
        for k in 0..LANES {
            e[k] = fast_math::exp(ch[k] - max);
            lane_sum[k] += e[k];
        }
        round16(&e, o);
    }
    let mut sum = 0.0f32;
    for (&x, o) in chunks.remainder().iter().zip(outs.into_remainder()) {
        let e = fast_math::exp(x - max);
        *o = round_finite(e);
        sum += e;
    }
    sum += lane_sum.iter().sum::<f32>();
    (max, sum, argmax)
}

/// [`to_bf16`](super::bf16::to_bf16) for a float that is not a NaN: round to nearest, ties to
/// even.
#[inline(always)]
pub(super) fn round_finite(x: f32) -> u16 {
    let bits = x.to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The largest element (NaNs ignored; -inf for an empty row). Four
/// vectors of lanes, so the compares do not wait on each other (one chain
/// of 2-cycle compares made the maximum a sizeable part of a head tile
/// row's cost), then a halving tree. A maximum does not depend on
/// the order it is taken in, so the result is that of a left-to-right
/// scan.
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    const WIDE: usize = 4 * LANES;
    let mut lanes = [f32::NEG_INFINITY; WIDE];
    let mut chunks = row.chunks_exact(WIDE);
    for ch in &mut chunks {
        for k in 0..WIDE {
            lanes[k] = if ch[k] > lanes[k] { ch[k] } else { lanes[k] };
        }
    }
    for (k, &x) in chunks.remainder().iter().enumerate() {
        lanes[k] = if x > lanes[k] { x } else { lanes[k] };
    }
    let mut width = WIDE / 2;
    while width > 0 {
        for k in 0..width {
            lanes[k] = if lanes[k + width] > lanes[k] {
                lanes[k + width]
            } else {
                lanes[k]
            };
        }
        width /= 2;
    }
    lanes[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the textbook formula in f64, over lengths around the lane
    /// width, with large and tiny values.
    #[test]
    fn matches_a_plain_f64_softmax() {
        for n in [1usize, 5, 15, 16, 17, 33, 100] {
            for (in_scale, out_scale) in [(1.0f32, 1.0f32), (0.125, 1.0), (1.0, 0.25), (2.0, 3.0)] {
                let x: Vec<f32> = (0..n)
                    .map(|i| ((i * 37 % 11) as f32 - 5.0) * 9.0 + if i == 3 { 80.0 } else { 0.0 })
                    .collect();
                let scaled: Vec<f64> = x.iter().map(|&v| (v * in_scale) as f64).collect();
                let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scaled.iter().map(|v| (v - max).exp()).sum();
                let mut row = x.clone();
                let (lse, arg) = softmax_in_place(&mut row, in_scale, out_scale, true);
                assert!(((lse as f64) - (max + z.ln())).abs() < 1e-4 * (1.0 + max.abs()));
                let want_arg = scaled.iter().position(|&v| v == max).unwrap();
                assert_eq!(arg, want_arg);
                for (got, v) in row.iter().zip(&scaled) {
                    let want = out_scale as f64 * (v - max).exp() / z;
                    assert!(
                        (*got as f64 - want).abs() < 1e-6 * out_scale as f64 + 1e-6 * want,
                        "n {n}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let mut row = vec![1e30f32, -1e30, 0.0, 1e30];
        let (lse, arg) = softmax_in_place(&mut row, 1.0, 1.0, true);
        assert!(lse.is_finite());
        assert_eq!(arg, 0);
        assert!((row[0] - 0.5).abs() < 1e-6 && (row[3] - 0.5).abs() < 1e-6);
        assert!(row[1] < 1e-30, "{}", row[1]);
    }
}
