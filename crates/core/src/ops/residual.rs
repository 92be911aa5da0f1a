//! Residual connection: out = a + b. Its backward hands the same gradient
//! to both inputs. The model runs it in place on the residual stream (the
//! stream's gradient buffer simply carries on), so the backward here exists
//! for completeness and the test.

/// Forward: out (N) = a (N) + b (N).
pub fn residual_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// In place: x (N) += y (N).
pub fn residual_add(x: &mut [f32], y: &[f32]) {
    for (o, &v) in x.iter_mut().zip(y) {
        *o += v;
    }
}

/// Backward: da `+=` dout, db `+=` dout.
pub fn residual_backward(da: &mut [f32], db: &mut [f32], dout: &[f32]) {
    for ((a, b), &g) in da.iter_mut().zip(db.iter_mut()).zip(dout) {
        *a += g;
        *b += g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fd;

    #[test]
    fn backward_matches_finite_differences() {
        let a = fd::random(7, 1);
        let b = fd::random(7, 2);
        let g = fd::random(7, 3);
        let (mut da, mut db) = (vec![0.0; 7], vec![0.0; 7]);
        residual_backward(&mut da, &mut db, &g);
        let mut out = vec![0.0; 7];
        fd::check("da", &a, &da, 1e-3, &mut |p| {
            residual_forward(&mut out, p, &b);
            fd::dot(&out, &g)
        });
        fd::check("db", &b, &db, 1e-3, &mut |p| {
            residual_forward(&mut out, &a, p);
            fd::dot(&out, &g)
        });
        let mut x = a.clone();
        residual_add(&mut x, &b);
        residual_forward(&mut out, &a, &b);
        assert_eq!(x, out);
    }
}
