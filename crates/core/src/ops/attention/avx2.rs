//! The attention product's AVX2 + FMA path: fused multiply-adds, the 8 x 8
//! block transpose (the AVX-512 path uses it too), and the tile's k loop
//! in intrinsics.

use super::product::{MulAdd, View};

/// One rounding (`vfmadd`: the AVX2 path is compiled with FMA), the block
/// transpose, and the tile's k loop in AVX2 intrinsics. 16 ymm registers
/// cannot hold an 8 x 32 tile (32 accumulators), so the tile is done in
/// sub-tiles of 4 rows x 16 columns, each over the whole k range: 8
/// accumulators (the FMA latency times its throughput), 2 loads of B and 4
/// broadcasts of A per k. Each accumulator still adds its k terms in order,
/// so the bits are the AVX-512 path's. The compiler's own loop, which this
/// replaces, left AVX2 attention far further from its FMA floor than the
/// AVX-512 path.
pub(super) struct FusedAvx2;
impl MulAdd for FusedAvx2 {
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
        if !WW.is_multiple_of(16) || !(RR == 1 || RR.is_multiple_of(4)) {
            return false;
        }
        let acc = acc.as_mut_ptr().cast::<f32>();
        let a_ptr = a.data.as_ptr();
        let b_ptr = b.as_ptr();
        // SAFETY: the trait method's contract (bounds, and `FusedAvx2` is
        // instantiated only on the AVX2 + FMA path, see `kernel_path`);
        // each sub-tile lies inside the tile.
        unsafe {
            for jj in (0..WW).step_by(16) {
                if RR == 1 {
                    avx2_tile::<1>(
                        acc.add(jj),
                        WW,
                        a_ptr,
                        a.rs,
                        a.cs,
                        i0,
                        b_ptr,
                        b_rs,
                        j0 + jj,
                        k0,
                        k1,
                    );
                } else {
                    for rr in (0..RR).step_by(4) {
                        avx2_tile::<4>(
                            acc.add(rr * WW + jj),
                            WW,
                            a_ptr,
                            a.rs,
                            a.cs,
                            i0 + rr,
                            b_ptr,
                            b_rs,
                            j0 + jj,
                            k0,
                            k1,
                        );
                    }
                }
            }
        }
        true
    }

    const TRANSPOSE8: bool = true;

    #[inline(always)]
    unsafe fn transpose8x8(src: *const f32, rs: usize, dst: *mut f32, ld: usize) {
        // SAFETY: the trait method's contract (AVX2 implies AVX).
        unsafe { avx_transpose8x8(src, rs, dst, ld) }
    }
}

/// An 8 x 8 block transpose in AVX registers (unpack, shuffle, swap the
/// 128-bit halves). Packing Kᵀ and Vᵀ by strided gathers (`vgatherqps`)
/// was the hottest spot of the backward after the products: at T = 128,
/// hs = 32 a head's pack is 1/8 of its Q Kᵀ in element count, and each
/// gathered element was a separate cache line.
///
/// # Safety
/// The CPU has AVX; rows `src + j * rs` and `dst + d * ld` hold 8 floats
/// for j, d < 8.
#[target_feature(enable = "avx")]
#[inline]
pub(super) unsafe fn avx_transpose8x8(src: *const f32, rs: usize, dst: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): as the function's contract.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|j| _mm256_loadu_ps(src.add(j * rs)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let out = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (d, v) in out.iter().enumerate() {
            _mm256_storeu_ps(dst.add(d * ld), *v);
        }
    }
}

/// One RR x 16 sub-tile of [`FusedAvx2::tile_loop`]: accumulator row r at
/// `acc + r * acc_rs`, two vectors of 8 floats.
///
/// # Safety
/// The CPU has AVX2 and FMA; every a, b index for rows i0..i0+RR, columns
/// j0..j0+16 and k in k0..k1 is in bounds, and so are the accumulators.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn avx2_tile<const RR: usize>(
    acc: *mut f32,
    acc_rs: usize,
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
        let mut v = [[_mm256_setzero_ps(); 2]; RR];
        for (r, row) in v.iter_mut().enumerate() {
            for (n, x) in row.iter_mut().enumerate() {
                *x = _mm256_loadu_ps(acc.add(r * acc_rs + n * 8));
            }
        }
        let mut a_k = a.add(i0 * a_rs + k0 * a_cs);
        let mut b_k = b.add(k0 * b_rs + j0);
        for _ in k0..k1 {
            let b0 = _mm256_loadu_ps(b_k);
            let b1 = _mm256_loadu_ps(b_k.add(8));
            for (r, row) in v.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a_k.add(r * a_rs));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
            a_k = a_k.add(a_cs);
            b_k = b_k.add(b_rs);
        }
        for (r, row) in v.iter().enumerate() {
            for (n, x) in row.iter().enumerate() {
                _mm256_storeu_ps(acc.add(r * acc_rs + n * 8), *x);
            }
        }
    }
}
