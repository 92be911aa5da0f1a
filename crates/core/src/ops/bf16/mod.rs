//! bfloat16 matrix multiply: inputs rounded to bf16, products accumulated in
//! f32, as PyTorch's CPU autocast does, on the AVX512_BF16 instruction
//! `vdpbf16ps` where the CPU has it.
//!
//! Operands travel as *pairs*: a `u32` holding two bf16 values that are
//! neighbours along the inner (k) dimension, low half k = 2p, high half
//! k = 2p + 1, which is the unit `vdpbf16ps` multiplies. One instruction
//! does, for each of 16 lanes,
//!   acc = ftz(fma(a_hi, b_hi, daz(acc)))
//!   acc = ftz(fma(a_lo, b_lo, acc))
//! with inputs flushed to zero when subnormal (DAZ), results flushed (FTZ),
//! round-to-nearest-even and no intermediate overflow of the product. That
//! is Intel's definition; `model_dot_pair` writes it out in scalar code and
//! the test `hardware_matches_the_scalar_model` checks it bit for bit on
//! the machine it runs on (random cases with subnormals, infinities and
//! overflowing products included).
//!
//! The kernel accumulates every output element in one fixed order (pairs
//! p = 0, 1, 2, ... from the output's old value or zero) whatever its
//! blocking, because a partial sum stored to memory and read back is exact.
//! So [`matmul_pairs_with`] with [`Kernel::Model`] gives exactly the bits
//! of [`Kernel::Avx512`]: the scalar model is the reference the fast kernel
//! is tested against, and the path that runs where the instruction is
//! missing.
//!
//! Files: `precision.rs` (what the user picks), `pack.rs` (f32 operands into
//! pairs; `pack_avx512.rs` its AVX-512F path), `weight_packs.rs` (a weight
//! packed once per step in both layouts), `avx512.rs` (the `vdpbf16ps`
//! kernel); the scalar model kernel is here.

#[cfg(target_arch = "x86_64")]
mod avx512;
mod pack;
pub(super) mod pack_avx512;
mod precision;
#[cfg(test)]
mod tests;
mod weight_packs;

pub use pack::{
    pack_columns, pack_columns_range, pack_row_into, pack_rows, pack_rows_transposed,
    pack_rows_transposed_range,
};
pub use precision::{Precision, PrecisionChoice};
pub use weight_packs::{PackPart, WeightPacks};

use super::matmul::{MatMut, MatRef};

/// Which code multiplies bf16 pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `vdpbf16ps` on 512-bit vectors (AVX512_BF16: Zen 4/5, Sapphire Rapids).
    Avx512,
    /// The scalar model of the same arithmetic: the reference, and the
    /// fallback on CPUs without the instruction.
    Model,
}

impl Kernel {
    /// The fastest kernel this CPU runs (decided at run time).
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512bf16")
                && std::arch::is_x86_feature_detected!("avx512f")
                && super::fast_math::detected_path() == super::fast_math::SimdPath::Avx512
            {
                return Kernel::Avx512;
            }
        }
        Kernel::Model
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512_bf16",
            Kernel::Model => "scalar model",
        }
    }
}

/// f32 -> bf16, round to nearest, ties to even; NaN stays a (quiet) NaN.
/// Branch-free, so loops of it vectorise.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16;
    let quiet_nan = ((bits >> 16) | 0x40) as u16;
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        quiet_nan
    } else {
        rounded
    }
}

/// bf16 -> f32 (exact).
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Two bf16 values as one pair: `lo` is k = 2p, `hi` is k = 2p + 1.
#[inline]
pub fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | ((to_bf16(hi) as u32) << 16)
}

#[inline]
fn flush(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// One lane of `vdpbf16ps`: `acc` plus the products of the pairs `a`, `b`,
/// high halves first, each step one fused multiply-add (see the module
/// comment).
#[inline]
pub fn model_dot_pair(acc: f32, a: u32, b: u32) -> f32 {
    let (a_lo, a_hi) = (
        flush(from_bf16(a as u16)),
        flush(from_bf16((a >> 16) as u16)),
    );
    let (b_lo, b_hi) = (
        flush(from_bf16(b as u16)),
        flush(from_bf16((b >> 16) as u16)),
    );
    let t = flush(a_hi.mul_add(b_hi, flush(acc)));
    flush(a_lo.mul_add(b_lo, t))
}

/// Columns a fast-kernel tile covers; B operands are padded to a multiple.
pub const LANES: usize = 32;

/// A matrix of bf16 pairs: element (i, p), the pair of inner indices 2p and
/// 2p + 1 of row i, is `data[i * row_stride + p * pair_stride]`.
///
/// As the left operand (A, broadcast) any strides do. As the right operand
/// (B), rows must be contiguous (`row_stride == 1`) and every pair row must
/// be readable to a multiple of [`LANES`] (the packers pad with zeros).
#[derive(Clone, Copy, Debug)]
pub struct PairsRef<'a> {
    data: &'a [u32],
    rows: usize,
    pairs: usize,
    row_stride: usize,
    pair_stride: usize,
}

impl<'a> PairsRef<'a> {
    pub fn new(
        data: &'a [u32],
        rows: usize,
        pairs: usize,
        row_stride: usize,
        pair_stride: usize,
    ) -> Self {
        if rows > 0 && pairs > 0 {
            let last = (rows - 1) * row_stride + (pairs - 1) * pair_stride;
            assert!(
                last < data.len(),
                "bf16 pairs view ({rows}, {pairs}) with strides ({row_stride}, {pair_stride}) does not fit in {} values",
                data.len()
            );
        }
        PairsRef {
            data,
            rows,
            pairs,
            row_stride,
            pair_stride,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn pairs(&self) -> usize {
        self.pairs
    }

    /// Rows `start .. start + count` (a right operand's column block).
    pub fn row_block(&self, start: usize, count: usize) -> PairsRef<'a> {
        assert!(
            start + count <= self.rows,
            "bf16 pairs view: rows out of range"
        );
        let offset = (start * self.row_stride).min(self.data.len());
        PairsRef::new(
            &self.data[offset..],
            count,
            self.pairs,
            self.row_stride,
            self.pair_stride,
        )
    }

    /// Pairs `start .. start + count` of every row (a block of the inner
    /// dimension).
    pub fn pair_block(&self, start: usize, count: usize) -> PairsRef<'a> {
        assert!(
            start + count <= self.pairs,
            "bf16 pairs view: pairs out of range"
        );
        let offset = (start * self.pair_stride).min(self.data.len());
        PairsRef::new(
            &self.data[offset..],
            self.rows,
            count,
            self.row_stride,
            self.pair_stride,
        )
    }

    #[inline]
    fn at(&self, i: usize, p: usize) -> u32 {
        self.data[i * self.row_stride + p * self.pair_stride]
    }

    /// Whether this view can be the right operand of the fast kernel.
    fn is_lane_padded(&self) -> bool {
        self.row_stride == 1
            && (self.pairs == 0
                || (self.pairs - 1) * self.pair_stride + self.rows.next_multiple_of(LANES)
                    <= self.data.len())
    }
}

fn round_up_lanes(n: usize) -> usize {
    n.next_multiple_of(LANES)
}

/// What a product's sums start from.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// Zero: `out = A · Bᵀ`.
    Zero,
    /// The output's old value: `out += A · Bᵀ`.
    Out,
    /// A bias broadcast down the rows: `out[i][j] = bias[j] + (A · Bᵀ)[i][j]`,
    /// the same bits as writing the bias into every row and accumulating,
    /// without that pass over the output (a linear layer's forward).
    Bias(&'a [f32]),
}

impl Start<'_> {
    fn of(accumulate: bool) -> Start<'static> {
        if accumulate { Start::Out } else { Start::Zero }
    }
}

/// `out = A · Bᵀ` over pairs (or `out +=` when `accumulate`): out (m, n)
/// with m = `a.rows()`, n = `b.rows()`, both over the same pairs. In f32
/// terms, with A packed from a (m, k) and B from b (k, n): out = a · b.
pub fn matmul_pairs(out: MatMut, a: PairsRef, b: PairsRef, accumulate: bool) {
    matmul_pairs_with(Kernel::detect(), out, a, b, accumulate)
}

/// [`matmul_pairs`] on a chosen kernel (tests run both).
pub fn matmul_pairs_with(kernel: Kernel, out: MatMut, a: PairsRef, b: PairsRef, accumulate: bool) {
    matmul_pairs_from(kernel, out, a, b, Start::of(accumulate))
}

/// [`matmul_pairs`] with the sums starting from `start` (a bias: `bias`
/// holds at least `b.rows()` values).
pub fn matmul_pairs_from(kernel: Kernel, out: MatMut, a: PairsRef, b: PairsRef, start: Start) {
    let (m, n) = (a.rows, b.rows);
    if let Start::Bias(bias) = start {
        assert!(
            bias.len() >= n,
            "bf16 matmul: a bias of {} for {n} columns",
            bias.len()
        );
    }
    assert_eq!(
        a.pairs, b.pairs,
        "bf16 matmul: inner pairs {} and {} differ",
        a.pairs, b.pairs
    );
    assert!(
        out.rows() == m && out.cols() == n,
        "bf16 matmul: output is ({}, {}), product is ({m}, {n})",
        out.rows(),
        out.cols()
    );
    if m == 0 || n == 0 {
        return;
    }
    match kernel {
        Kernel::Model => model_matmul(out, a, b, start),
        Kernel::Avx512 => {
            assert!(
                b.is_lane_padded(),
                "bf16 matmul: the right operand must be lane-padded with contiguous rows"
            );
            assert!(
                Kernel::detect() == Kernel::Avx512,
                "bf16 matmul: this CPU lacks AVX512_BF16"
            );
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has the instructions (checked above), the
            // views were bounds-checked (A at construction, B's padded rows
            // just now, the output by MatMut), and the output is a unique
            // borrow.
            unsafe {
                avx512::matmul(out, a, b, start)
            }
        }
    }
}

fn model_matmul(out: MatMut, a: PairsRef, b: PairsRef, start: Start) {
    let (m, n, stride) = (a.rows, b.rows, out.row_stride());
    let data = out.into_data();
    for i in 0..m {
        for j in 0..n {
            let o = &mut data[i * stride + j];
            let mut acc = match start {
                Start::Zero => 0.0,
                Start::Out => *o,
                Start::Bias(bias) => bias[j],
            };
            for p in 0..a.pairs {
                acc = model_dot_pair(acc, a.at(i, p), b.at(j, p));
            }
            *o = acc;
        }
    }
}

/// `out = a · b` (or `+=`) with a (m, k) and b (k, n) rounded to bf16,
/// packing both on the way (tests and one-off products; the model packs
/// its weights once per step instead).
pub fn matmul_bf16(kernel: Kernel, out: MatMut, a: MatRef, b: MatRef, accumulate: bool) {
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    let a = pack_rows(&mut pa, a);
    let b = pack_columns(&mut pb, b);
    matmul_pairs_with(kernel, out, a, b, accumulate);
}
