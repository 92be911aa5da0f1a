//! The head's AVX512_BF16 path: sixteen exponentials rounded to bf16 by
//! one instruction.

/// [`exp_tile_bf16`](super::tile::exp_tile_bf16) rounding sixteen exponentials with one
/// `vcvtneps2bf16`. It flushes subnormal inputs, which the exponentials
/// never are (exp's clamped argument keeps them at or above 2⁻¹²⁶),
/// so its bits are those of the integer rounding; the integer rounding's
/// truncating store (`vpmovdw` to memory, which LLVM chose) had cost the
/// bf16 head's pass 1 more than all the bytes it saved.
///
/// # Safety
/// AVX-512F and AVX512_BF16 must be present.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn exp_tile_bf16_convert(
    row: &[f32],
    out: &mut [u16],
    find_argmax: bool,
) -> (f32, f32, usize) {
    use std::arch::x86_64::*;
    crate::ops::softmax::exp_shifted_rounding(row, out, find_argmax, |e, o| {
        let o = &mut o[..16];
        // SAFETY: 16 floats read from `e`, 16 u16 written to `o` (both
        // bounds-checked); the features are the function's.
        unsafe {
            let h = _mm512_cvtneps_pbh(_mm512_loadu_ps(e.as_ptr()));
            let h = std::mem::transmute::<__m256bh, __m256i>(h);
            // Ordinary stores: streaming ones (which skip reading the
            // line first) are slower here, pass 2 then finding none of
            // the chunk's last rows in L3.
            _mm256_storeu_si256(o.as_mut_ptr().cast(), h);
        }
    })
}
