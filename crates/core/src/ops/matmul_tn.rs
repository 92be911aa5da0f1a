//! `out (m, n) += aᵀ · b` for a (k, m) and b (k, n), both row-major, with a
//! short inner size k: the tied head's `dwte (V, C) += dlogitsᵀ · x` over
//! one chunk of rows (k = 256, m = 50,257, n = 256 on the seed preset).
//!
//! Through `gemm` this product ran well below the head's two other
//! products: each chunk reads and writes all of dwte (51 MB, from DRAM)
//! for only k = 256 multiply-adds per element, and the loads of the
//! output stall the kernel. Here a register tile of 12 rows x 32 columns runs over the
//! whole k with the output's next row block prefetched while it computes
//! (the bf16 kernel does the same). AVX-512 only; other CPUs use `gemm`.

#[cfg(target_arch = "x86_64")]
use super::fast_math::{SimdPath, simd_path};
use super::matmul::{MatMut, MatRef, matmul};

/// `out (m, n) += aᵀ · b`: a (k, m), b (k, n), out (m, n), all row-major
/// and contiguous. Every output element is the f32 sum, in order of k, of
/// fused multiply-adds starting from its old value on the AVX-512 path.
pub fn matmul_tn_acc(out: &mut [f32], a: &[f32], b: &[f32], k: usize, m: usize, n: usize) {
    let (out, a, b) = (&mut out[..m * n], &a[..k * m], &b[..k * n]);
    #[cfg(target_arch = "x86_64")]
    if simd_path() == SimdPath::Avx512 && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX-512F and FMA (checked just now); the
        // slices hold exactly the shapes the kernel addresses.
        unsafe { avx512::matmul_tn_acc(out, a, b, k, m, n) };
        return;
    }
    matmul(
        MatMut::new(out, m, n),
        MatRef::new(a, k, m).t(),
        MatRef::new(b, k, n),
        true,
    );
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Rows of the register tile: 2 x MR accumulators of 16 lanes, plus
    /// two of B and a broadcast, in 32 zmm registers.
    const MR: usize = 12;
    /// Columns of the register tile.
    const NR: usize = 32;

    /// # Safety
    /// The CPU has AVX-512F and FMA; out, a and b hold (m, n), (k, m) and
    /// (k, n) floats.
    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn matmul_tn_acc(
        out: &mut [f32],
        a: &[f32],
        b: &[f32],
        k: usize,
        m: usize,
        n: usize,
    ) {
        assert!(out.len() >= m * n && a.len() >= k * m && b.len() >= k * n);
        if k == 0 {
            return;
        }
        let (o, a, b) = (out.as_mut_ptr(), a.as_ptr(), b.as_ptr());
        for i0 in (0..m).step_by(MR) {
            let rows = MR.min(m - i0);
            for j in (0..n).step_by(NR) {
                let cols = NR.min(n - j);
                // SAFETY: rows i0..i0 + rows < m, columns j..j + cols <= n
                // and k rows of a and b are inside the slices (asserted).
                unsafe {
                    if i0 + MR < m {
                        // The next row block's outputs, fetched from DRAM
                        // while this tile computes (the product's inner
                        // size is too short to hide the load otherwise).
                        let next = o.add((i0 + MR) * n + j);
                        for r in 0..MR.min(m - i0 - MR) {
                            let p = next.add(r * n) as *const i8;
                            _mm_prefetch::<_MM_HINT_T0>(p);
                            _mm_prefetch::<_MM_HINT_T0>(p.add(64 * usize::from(cols > 16)));
                        }
                    }
                    let t = Tile {
                        a: a.add(i0),
                        m,
                        b: b.add(j),
                        n,
                        k,
                        out: o.add(i0 * n + j),
                        cols,
                    };
                    crate::ops::dispatch_tile_rows!(rows, tile, &t)
                }
            }
        }
    }

    /// One tile: rows of a's columns `a + r` (stride m between k), b's
    /// columns `b ..b + cols` (stride n), out rows of stride n.
    struct Tile {
        a: *const f32,
        m: usize,
        b: *const f32,
        n: usize,
        k: usize,
        out: *mut f32,
        cols: usize,
    }

    /// R rows x up to 32 columns: out[r][c] += Σ_p a[p][r] · b[p][c].
    #[target_feature(enable = "avx512f,fma")]
    #[inline]
    unsafe fn tile<const R: usize>(t: &Tile) {
        let m0: __mmask16 = if t.cols >= 16 {
            0xffff
        } else {
            ((1u32 << t.cols) - 1) as u16
        };
        let m1: __mmask16 = if t.cols >= 32 {
            0xffff
        } else if t.cols > 16 {
            ((1u32 << (t.cols - 16)) - 1) as u16
        } else {
            0
        };
        // SAFETY (whole body): the caller's Tile addresses R rows and
        // `cols` columns of the output, and k rows of a and b; the masks
        // keep every load and store inside `cols`.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for (r, row) in acc.iter_mut().enumerate() {
                let o = t.out.add(r * t.n);
                row[0] = _mm512_maskz_loadu_ps(m0, o);
                row[1] = _mm512_maskz_loadu_ps(m1, o.add(16));
            }
            let (mut ap, mut bp) = (t.a, t.b);
            for _ in 0..t.k {
                let b0 = _mm512_maskz_loadu_ps(m0, bp);
                let b1 = _mm512_maskz_loadu_ps(m1, bp.add(16));
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*ap.add(r));
                    row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(av, b1, row[1]);
                }
                ap = ap.add(t.m);
                bp = bp.add(t.n);
            }
            for (r, row) in acc.iter().enumerate() {
                let o = t.out.add(r * t.n);
                _mm512_mask_storeu_ps(o, m0, row[0]);
                _mm512_mask_storeu_ps(o.add(16), m1, row[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::fast_math::{available_paths, with_path};
    use crate::ops::fd;
    use crate::ops::matmul::matmul_naive;

    /// Against the f64 oracle on every path this CPU runs, on shapes that
    /// cross each tile edge: rows around 12 and its multiples, columns
    /// around 16 and 32, and k of 0, 1 and odd sizes; the output starts
    /// non-zero, since the product accumulates.
    #[test]
    fn matches_the_naive_product_on_every_path() {
        for &(k, m, n) in &[
            (1usize, 1usize, 1usize),
            (0, 5, 7),
            (3, 12, 32),
            (7, 13, 33),
            (17, 11, 15),
            (16, 25, 16),
            (9, 36, 47),
            (33, 50, 64),
            (5, 24, 70),
        ] {
            let a = fd::random(k * m, 1);
            let b = fd::random(k * n, 2);
            let start = fd::random(m * n, 3);
            let mut want = start.clone();
            matmul_naive(
                MatMut::new(&mut want, m, n),
                MatRef::new(&a, k, m).t(),
                MatRef::new(&b, k, n),
                true,
            );
            for path in available_paths() {
                let mut got = start.clone();
                with_path(path, || matmul_tn_acc(&mut got, &a, &b, k, m, n));
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() < 1e-5 * (1.0 + k as f32),
                        "{path:?} k={k} m={m} n={n}: out[{i}] {g} vs {w}"
                    );
                }
            }
        }
    }
}
