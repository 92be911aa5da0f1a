//! The attention product's AVX-512 path: fused multiply-adds, and the
//! tile's k loop in intrinsics.

use super::avx2::avx_transpose8x8;
use super::product::{MulAdd, View};

/// One rounding (`vfmadd`: the AVX-512 path is compiled with FMA), and
/// the tile's k loop in AVX-512 intrinsics. Left to itself
/// the compiler's SLP vectoriser assembled the 8 x 32 tile's B row from
/// scalar loads, blends and permutes (`vmovss`, `vinsertf32x4`,
/// `vpermt2pd` around every other FMA in `perf annotate`); here each k is
/// two vector loads of B, RR broadcasts of A and 2·RR FMAs.
pub(super) struct FusedAvx512;
impl MulAdd for FusedAvx512 {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }

    #[inline(always)]
    unsafe fn tile_loop<const RR: usize, const WW: usize>(
        acc: &mut [[f32; WW]; RR],
        a: View,
        i0: usize,
        b: &[f32],
        b_rs: usize,
        j0: usize,
        k0: usize,
        k1: usize,
    ) -> bool {
        let acc = acc.as_mut_ptr().cast::<f32>();
        let a_ptr = a.data.as_ptr();
        let b_ptr = b.as_ptr();
        // SAFETY: the trait method's contract (bounds, and `FusedAvx512`
        // is instantiated only on the AVX-512 path, see `kernel_path`).
        unsafe {
            match WW {
                32 => avx512_tile::<RR, 2>(acc, a_ptr, a.rs, a.cs, i0, b_ptr, b_rs, j0, k0, k1),
                16 => avx512_tile::<RR, 1>(acc, a_ptr, a.rs, a.cs, i0, b_ptr, b_rs, j0, k0, k1),
                _ => return false,
            }
        }
        true
    }

    const TRANSPOSE8: bool = true;

    #[inline(always)]
    unsafe fn transpose8x8(src: *const f32, rs: usize, dst: *mut f32, ld: usize) {
        // SAFETY: the trait method's contract.
        unsafe { avx_transpose8x8(src, rs, dst, ld) }
    }
}

/// The k loop of [`FusedAvx512::tile_loop`]: `acc` is RR rows of NV
/// vectors of 16 floats.
///
/// # Safety
/// The CPU has AVX-512F; every a, b index for rows i0..i0+RR, columns
/// j0..j0+16·NV and k in k0..k1 is in bounds.
#[target_feature(enable = "avx512f")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn avx512_tile<const RR: usize, const NV: usize>(
    acc: *mut f32,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    i0: usize,
    b: *const f32,
    b_rs: usize,
    j0: usize,
    k0: usize,
    k1: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): as the function's contract.
    unsafe {
        let mut v = [[_mm512_setzero_ps(); NV]; RR];
        for (r, row) in v.iter_mut().enumerate() {
            for (n, x) in row.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(acc.add(r * 16 * NV + n * 16));
            }
        }
        let mut a_k = a.add(i0 * a_rs + k0 * a_cs);
        let mut b_k = b.add(k0 * b_rs + j0);
        for _ in k0..k1 {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (n, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b_k.add(n * 16));
            }
            for (r, row) in v.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a_k.add(r * a_rs));
                for (x, &bn) in row.iter_mut().zip(&bv) {
                    *x = _mm512_fmadd_ps(av, bn, *x);
                }
            }
            a_k = a_k.add(a_cs);
            b_k = b_k.add(b_rs);
        }
        for (r, row) in v.iter().enumerate() {
            for (n, x) in row.iter().enumerate() {
                _mm512_storeu_ps(acc.add(r * 16 * NV + n * 16), *x);
            }
        }
    }
}
