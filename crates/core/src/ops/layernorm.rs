//! LayerNorm over the channel dimension, eps 1e-5 (GPT-2's):
//! y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps), var biased.

pub const EPS: f32 = 1e-5;

use super::fast_math::simd_fn;

/// Sums run over this many independent lanes (then a fixed tree), so the
/// loops vectorise and every instruction-set path adds in the same order.
const LANES: usize = 16;

/// Σ f(a_i, b_i, c_i) over a row, in [`LANES`] lanes: element i goes to
/// lane i % LANES, lanes are folded pairwise (8 + 8, 4 + 4, ...). Written
/// over whole chunks (no indexing) so that it vectorises. One sum a pass:
/// a pass computing two sums at once (the backward's) was vectorised
/// across the two accumulators instead of across the lanes, in scalar
/// loads and lane inserts, and ran far slower.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let n = a.len();
    let (b, c) = (&b[..n], &c[..n]);
    let full = n - n % LANES;
    let mut acc = [0.0f32; LANES];
    for ((ca, cb), cc) in a[..full]
        .chunks_exact(LANES)
        .zip(b[..full].chunks_exact(LANES))
        .zip(c[..full].chunks_exact(LANES))
    {
        let (ca, cb, cc): (&[f32; LANES], &[f32; LANES], &[f32; LANES]) = (
            ca.try_into().unwrap(),
            cb.try_into().unwrap(),
            cc.try_into().unwrap(),
        );
        for k in 0..LANES {
            acc[k] += f(ca[k], cb[k], cc[k]);
        }
    }
    for (k, ((&x, &y), &z)) in a[full..].iter().zip(&b[full..]).zip(&c[full..]).enumerate() {
        acc[k] += f(x, y, z);
    }
    let mut width = LANES / 2;
    while width > 0 {
        for k in 0..width {
            acc[k] += acc[k + width];
        }
        width /= 2;
    }
    acc[0]
}

simd_fn! {
    /// Forward. x (N, C), w (C), b (C) -> out (N, C); mean and rstd (N) are
    /// kept for the backward pass.
    pub fn layernorm_forward(
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        x: &[f32],
        w: &[f32],
        b: &[f32],
        c: usize,
    ) {
        let (w, b) = (&w[..c], &b[..c]);
        for (((row, o), m), r) in x
            .chunks_exact(c)
            .zip(out.chunks_exact_mut(c))
            .zip(mean.iter_mut())
            .zip(rstd.iter_mut())
        {
            let mu = lane_sum(row, row, row, |x, _, _| x) / c as f32;
            let var = lane_sum(row, row, row, |x, _, _| (x - mu) * (x - mu)) / c as f32;
            let s = 1.0 / (var + EPS).sqrt();
            for (((o, &v), &w), &b) in o.iter_mut().zip(row).zip(w).zip(b) {
                *o = (v - mu) * s * w + b;
            }
            *m = mu;
            *r = s;
        }
    }
}

simd_fn! {
    /// Backward. With xhat = (x - mean) rstd and dxhat = dout ⊙ w:
    /// dx `+=` rstd (dxhat - mean(dxhat) - xhat mean(dxhat ⊙ xhat)) (added,
    /// because x is the residual stream, whose gradient also flows past),
    /// dw `+=` Σ dout ⊙ xhat, db `+=` Σ dout.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_backward(
        dx: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
        dout: &[f32],
        x: &[f32],
        mean: &[f32],
        rstd: &[f32],
        w: &[f32],
        c: usize,
    ) {
        let dw = &mut dw[..c];
        let db = &mut db[..c];
        let w = &w[..c];
        for ((((dxr, g), row), &mu), &s) in dx
            .chunks_exact_mut(c)
            .zip(dout.chunks_exact(c))
            .zip(x.chunks_exact(c))
            .zip(mean)
            .zip(rstd)
        {
            let (g, row) = (&g[..c], &row[..c]);
            let sum_dxhat = lane_sum(g, w, row, |g, w, _| g * w);
            let sum_dxhat_xhat = lane_sum(g, w, row, |g, w, x| g * w * ((x - mu) * s));
            let mean_dxhat = sum_dxhat / c as f32;
            let mean_dxhat_xhat = sum_dxhat_xhat / c as f32;
            for (((((d, &g), &v), &w), dw), db) in dxr
                .iter_mut()
                .zip(g)
                .zip(row)
                .zip(w)
                .zip(dw.iter_mut())
                .zip(db.iter_mut())
            {
                let xhat = (v - mu) * s;
                *d += s * (g * w - mean_dxhat - xhat * mean_dxhat_xhat);
                *dw += g * xhat;
                *db += g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fast_math::{available_paths, with_path};
    use crate::ops::fd;

    #[test]
    fn backward_matches_finite_differences() {
        let (n, c) = (3, 6);
        let x = fd::random(n * c, 1);
        let w: Vec<f32> = fd::random(c, 2).iter().map(|v| 1.0 + v).collect();
        let b = fd::random(c, 3);
        let g = fd::random(n * c, 4);
        let (mut mean, mut rstd, mut out) = (vec![0.0; n], vec![0.0; n], vec![0.0; n * c]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, &x, &w, &b, c);
        let mut dx = vec![0.0; n * c];
        let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
        layernorm_backward(&mut dx, &mut dw, &mut db, &g, &x, &mean, &rstd, &w, c);
        let run = |x: &[f32], w: &[f32], b: &[f32]| {
            let (mut m, mut r, mut o) = (vec![0.0; n], vec![0.0; n], vec![0.0; n * c]);
            layernorm_forward(&mut o, &mut m, &mut r, x, w, b, c);
            fd::dot(&o, &g)
        };
        fd::check("dx", &x, &dx, 2e-3, &mut |p| run(p, &w, &b));
        fd::check("dw", &w, &dw, 2e-3, &mut |p| run(&x, p, &b));
        fd::check("db", &b, &db, 2e-3, &mut |p| run(&x, &w, p));
    }

    /// LayerNorm and its backward in f64, written out plainly.
    #[allow(clippy::type_complexity)]
    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        g: &[f32],
        c: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
        for (r, row) in x.chunks(c).enumerate() {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let mu = row.iter().sum::<f64>() / c as f64;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / c as f64;
            let s = 1.0 / (var + EPS as f64).sqrt();
            let xhat: Vec<f64> = row.iter().map(|v| (v - mu) * s).collect();
            let dxhat: Vec<f64> = (0..c).map(|i| g[r * c + i] as f64 * w[i] as f64).collect();
            let m1 = dxhat.iter().sum::<f64>() / c as f64;
            let m2 = (0..c).map(|i| dxhat[i] * xhat[i]).sum::<f64>() / c as f64;
            for i in 0..c {
                y[r * c + i] = xhat[i] * w[i] as f64 + b[i] as f64;
                dx[r * c + i] = s * (dxhat[i] - m1 - xhat[i] * m2);
                dw[i] += g[r * c + i] as f64 * xhat[i];
                db[i] += g[r * c + i] as f64;
            }
        }
        (y, dx, dw, db)
    }

    #[test]
    fn matches_f64_reference_at_model_widths() {
        // Widths with and without a remainder after the 16 lanes.
        for &c in &[128usize, 37, 5] {
            let n = 7;
            let x: Vec<f32> = fd::random(n * c, 11)
                .iter()
                .map(|v| 3.0 * v + 0.5)
                .collect();
            let w: Vec<f32> = fd::random(c, 12).iter().map(|v| 1.0 + v).collect();
            let b = fd::random(c, 13);
            let g = fd::random(n * c, 14);
            // Every instruction-set path this CPU runs, to the same bits
            // (the lanes add in the same order on each).
            let run = |path| {
                with_path(path, || {
                    let (mut m, mut r, mut y) = (vec![0.0; n], vec![0.0; n], vec![0.0; n * c]);
                    layernorm_forward(&mut y, &mut m, &mut r, &x, &w, &b, c);
                    let mut dx = vec![0.25f32; n * c];
                    let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
                    layernorm_backward(&mut dx, &mut dw, &mut db, &g, &x, &m, &r, &w, c);
                    [y, dx, dw, db].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
                })
            };
            let paths = available_paths();
            let first = run(paths[0]);
            for &path in &paths[1..] {
                assert!(run(path) == first, "{path:?} differs from {:?}", paths[0]);
            }
            let [y, dx, dw, db] =
                first.map(|v| v.into_iter().map(f32::from_bits).collect::<Vec<_>>());
            let (ry, rdx, rdw, rdb) = reference(&x, &w, &b, &g, c);
            let close = |a: f32, b: f64, what: &str| {
                assert!(
                    (a as f64 - b).abs() < 2e-5 * (1.0 + b.abs()),
                    "{what} c={c}: {a} vs {b}"
                )
            };
            for i in 0..n * c {
                close(y[i], ry[i], "y");
                // dx was 0.25 before: the backward adds.
                close(dx[i] - 0.25, rdx[i], "dx");
            }
            for i in 0..c {
                close(dw[i], rdw[i], "dw");
                close(db[i], rdb[i], "db");
            }
        }
    }

    #[test]
    fn forward_normalises_each_row() {
        let c = 8;
        let x = fd::random(2 * c, 9);
        let (mut m, mut r, mut o) = (vec![0.0; 2], vec![0.0; 2], vec![0.0; 2 * c]);
        layernorm_forward(&mut o, &mut m, &mut r, &x, &[1.0; 8], &[0.0; 8], c);
        for row in o.chunks(c) {
            let mu: f32 = row.iter().sum::<f32>() / c as f32;
            let var: f32 = row.iter().map(|v| v * v).sum::<f32>() / c as f32;
            assert!(mu.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "{mu} {var}");
        }
    }
}
