//! LayerNorm over the channel dimension, eps 1e-5 (GPT-2's):
//! y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps), var biased.

pub const EPS: f32 = 1e-5;

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
    for (((row, o), m), r) in x
        .chunks_exact(c)
        .zip(out.chunks_exact_mut(c))
        .zip(mean.iter_mut())
        .zip(rstd.iter_mut())
    {
        let mu = row.iter().sum::<f32>() / c as f32;
        let var = row.iter().map(|&v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
        let s = 1.0 / (var + EPS).sqrt();
        for (((o, &v), &w), &b) in o.iter_mut().zip(row).zip(w).zip(b) {
            *o = (v - mu) * s * w + b;
        }
        *m = mu;
        *r = s;
    }
}

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
    for ((((dxr, g), row), &mu), &s) in dx
        .chunks_exact_mut(c)
        .zip(dout.chunks_exact(c))
        .zip(x.chunks_exact(c))
        .zip(mean)
        .zip(rstd)
    {
        let mut sum_dxhat = 0.0f32;
        let mut sum_dxhat_xhat = 0.0f32;
        for ((&g, &v), &w) in g.iter().zip(row).zip(w) {
            let xhat = (v - mu) * s;
            let dxhat = g * w;
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * xhat;
        }
        let mean_dxhat = sum_dxhat / c as f32;
        let mean_dxhat_xhat = sum_dxhat_xhat / c as f32;
        for i in 0..c {
            let xhat = (row[i] - mu) * s;
            let dxhat = g[i] * w[i];
            dxr[i] += s * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
            dw[i] += g[i] * xhat;
            db[i] += g[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::fd;

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
