//! Matrix multiply: the one fast kernel (the `gemm` crate, single-threaded)
//! behind safe strided views, the naive triple loop kept as its test oracle,
//! and the linear layer (`y = x Wᵀ + b`) forward and backward built on it.
//!
//! Parallelism comes from the trainer's worker threads, so every call here
//! runs on the calling thread only (`gemm::Parallelism::None`).

/// Whether `gemm` was built with its AVX-512 kernels (the default
/// `gemm-avx512` feature), which it picks at run time where the CPU has AVX-512F.
pub const GEMM_AVX512_KERNELS: bool = cfg!(feature = "gemm-avx512");

/// A read-only strided view of a matrix inside a slice:
/// element (r, c) is `data[r * row_stride + c * col_stride]`.
///
/// The fields are private and every constructor checks that each element
/// the view addresses lies inside its slice: [`matmul`] hands the raw
/// pointers to `gemm`, so a view that did not fit would let safe code read
/// out of bounds.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major (rows, cols) matrix at the start of `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// A (rows, cols) matrix whose rows are `row_stride` apart, e.g. one
    /// head's queries inside the interleaved (T, 3C) qkv buffer.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let m = MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        };
        m.check("matrix view");
        m
    }

    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    fn check(&self, what: &str) {
        assert!(
            fits(
                self.data.len(),
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride
            ),
            "{what}: ({}, {}) with strides ({}, {}) does not fit in {} values",
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
            self.data.len()
        );
    }

    /// Row `r` as a slice when its elements are contiguous (not a
    /// transposed view).
    #[inline]
    pub fn row_slice(&self, r: usize) -> Option<&'a [f32]> {
        (self.col_stride == 1 && r < self.rows)
            .then(|| &self.data[r * self.row_stride..r * self.row_stride + self.cols])
    }

    #[inline]
    pub fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.row_stride + c * self.col_stride]
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// A writable (rows, cols) view whose rows are `row_stride` apart; like
/// [`MatRef`], only constructible when it fits its slice.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, row_stride, 1),
            "output view: ({rows}, {cols}) with row stride {row_stride} does not fit in {} values",
            data.len()
        );
        MatMut {
            data,
            rows,
            cols,
            row_stride,
        }
    }
}

impl<'a> MatMut<'a> {
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// The slice the view writes into (for kernels that take raw rows).
    pub fn into_data(self) -> &'a mut [f32] {
        self.data
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Whether every element of a (rows, cols) view with these strides lies
/// inside a slice of `len` values. Overflowing offsets do not fit.
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
        .is_some_and(|last| last < len)
}

/// `out = a · b` (or `out += a · b` when `accumulate`), through the fast
/// kernel. Shapes: a (m, k), b (k, n), out (m, n).
pub fn matmul(out: MatMut, a: MatRef, b: MatRef, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(
        b.rows, k,
        "matmul: inner dimensions {k} and {} differ",
        b.rows
    );
    assert!(
        out.rows == m && out.cols == n,
        "matmul: output is ({}, {}), product is ({m}, {n})",
        out.rows,
        out.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                out.data[r * out.row_stride..r * out.row_stride + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the three views were bounds-checked at construction (every
    // element they address lies inside their slices), the output is a
    // unique borrow so it cannot alias the inputs, and gemm reads/writes
    // only elements addressed by the given shapes and strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.data.as_mut_ptr(),
            1,
            out.row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The oracle: the same contract as [`matmul`], as a plain triple loop
/// accumulating in f64.
pub fn matmul_naive(out: MatMut, a: MatRef, b: MatRef, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k);
    assert!(out.rows == m && out.cols == n);
    for r in 0..m {
        for c in 0..n {
            let mut acc = 0.0f64;
            for i in 0..k {
                acc += a.at(r, i) as f64 * b.at(i, c) as f64;
            }
            let o = &mut out.data[r * out.row_stride + c];
            *o = if accumulate {
                *o + acc as f32
            } else {
                acc as f32
            };
        }
    }
}

// ----------------------------------------------------------------------------
// Linear layer: y (N, O) = x (N, I) · Wᵀ + b, W stored (O, I) like torch.

/// Every row of `out` (rows of `o`) set to the bias, when there is one:
/// the product then adds onto it.
pub fn start_from_bias(out: &mut [f32], bias: Option<&[f32]>, o: usize) {
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(o) {
            row.copy_from_slice(&b[..o]);
        }
    }
}

/// dbias (O) `+=` the column sums of dout (N, O).
pub fn add_bias_gradient(db: &mut [f32], dout: &[f32], n: usize, o: usize) {
    let db = &mut db[..o];
    for row in dout[..n * o].chunks_exact(o) {
        for (d, &g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
}

/// Forward. x (N, I), w (O, I), bias (O) or none, out (N, O).
pub fn linear_forward(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    i: usize,
    o: usize,
) {
    let out = &mut out[..n * o];
    start_from_bias(out, bias, o);
    matmul(
        MatMut::new(out, n, o),
        MatRef::new(x, n, i),
        MatRef::new(w, o, i).t(),
        bias.is_some(),
    );
}

/// Backward. Given dout (N, O): dx (N, I) `=` dout · W when `dx` is given
/// (overwritten: in a GPT every linear input feeds exactly one layer),
/// dw (O, I) `+=` doutᵀ · x, dbias (O) `+=` column sums of dout.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    n: usize,
    i: usize,
    o: usize,
) {
    if let Some(dx) = dx {
        matmul(
            MatMut::new(dx, n, i),
            MatRef::new(dout, n, o),
            MatRef::new(w, o, i),
            false,
        );
    }
    matmul(
        MatMut::new(dw, o, i),
        MatRef::new(dout, n, o).t(),
        MatRef::new(x, n, i),
        true,
    );
    if let Some(db) = dbias {
        add_bias_gradient(db, dout, n, o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn views_that_do_not_fit_are_refused() {
        let data = vec![0.0f32; 12];
        assert!(fits(12, 3, 4, 4, 1));
        assert!(!fits(12, 3, 5, 4, 1));
        // Offsets that overflow usize never fit.
        assert!(!fits(12, 2, 2, usize::MAX, 1));
        assert!(!fits(12, 3, 3, usize::MAX / 2 + 1, 1));
        let built = std::panic::catch_unwind(|| MatRef::strided(&data, 2, 2, usize::MAX));
        assert!(built.is_err());
        let mut out = vec![0.0f32; 4];
        let built = std::panic::catch_unwind(move || {
            MatMut::strided(&mut out, 3, 2, 2);
        });
        assert!(built.is_err());
    }

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal()).collect()
    }

    #[test]
    fn fast_kernel_matches_naive_oracle_with_strides_and_transposes() {
        let mut rng = Rng::new(11);
        // Odd sizes exercise the kernel's edge handling.
        for &(m, k, n) in &[(1, 1, 1), (7, 5, 3), (33, 17, 65), (64, 96, 40)] {
            for &(ta, tb, acc) in &[
                (false, false, false),
                (true, false, true),
                (false, true, true),
                (true, true, false),
            ] {
                // a stored (m, k) or (k, m) with a padded row stride.
                let (ar, ac) = if ta { (k, m) } else { (m, k) };
                let (br, bc) = if tb { (n, k) } else { (k, n) };
                let a_data = random(ar * (ac + 3), &mut rng);
                let b_data = random(br * bc, &mut rng);
                let a = MatRef::strided(&a_data, ar, ac, ac + 3);
                let a = if ta { a.t() } else { a };
                let b = MatRef::new(&b_data, br, bc);
                let b = if tb { b.t() } else { b };
                let start = random(m * (n + 2), &mut rng);
                let mut fast = start.clone();
                let mut slow = start.clone();
                matmul(MatMut::strided(&mut fast, m, n, n + 2), a, b, acc);
                matmul_naive(MatMut::strided(&mut slow, m, n, n + 2), a, b, acc);
                for (x, y) in fast.iter().zip(&slow) {
                    assert!(
                        (x - y).abs() < 1e-4 * (1.0 + y.abs()),
                        "{m}x{k}x{n} {ta} {tb}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn views_are_bounds_checked() {
        let data = vec![0.0; 10];
        let _ = MatRef::strided(&data, 3, 4, 4);
    }

    /// Finite differences of L = sum(y ⊙ g) for a fixed random g, in f64
    /// terms: dL/dθ ≈ (L(θ+h) - L(θ-h)) / 2h.
    #[test]
    fn linear_backward_matches_finite_differences() {
        let (n, i, o) = (5, 4, 3);
        let mut rng = Rng::new(3);
        let x = random(n * i, &mut rng);
        let w = random(o * i, &mut rng);
        let b = random(o, &mut rng);
        let g = random(n * o, &mut rng);
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            let mut y = vec![0.0; n * o];
            linear_forward(&mut y, x, w, Some(b), n, i, o);
            y.iter()
                .zip(&g)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let mut dx = vec![0.0; n * i];
        let mut dw = vec![0.0; o * i];
        let mut db = vec![0.0; o];
        linear_backward(Some(&mut dx), &mut dw, Some(&mut db), &g, &x, &w, n, i, o);
        let h = 1e-2f32;
        let check = |analytic: &[f32], which: usize| {
            for k in 0..analytic.len() {
                let (mut xp, mut wp, mut bp) = (x.clone(), w.clone(), b.clone());
                let (mut xm, mut wm, mut bm) = (x.clone(), w.clone(), b.clone());
                match which {
                    0 => {
                        xp[k] += h;
                        xm[k] -= h;
                    }
                    1 => {
                        wp[k] += h;
                        wm[k] -= h;
                    }
                    _ => {
                        bp[k] += h;
                        bm[k] -= h;
                    }
                }
                let fd = (loss(&xp, &wp, &bp) - loss(&xm, &wm, &bm)) / (2.0 * h as f64);
                // The loss is linear in each argument, so the only error is
                // f32 rounding of the forward pass.
                assert!(
                    (fd - analytic[k] as f64).abs() < 1e-3,
                    "param {which}[{k}]: fd {fd} vs {}",
                    analytic[k]
                );
            }
        };
        check(&dx, 0);
        check(&dw, 1);
        check(&db, 2);
    }
}
