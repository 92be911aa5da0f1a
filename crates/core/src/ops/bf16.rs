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
//! the machine it runs on (an AMD Zen 5 matched on 2M random cases,
//! subnormals, infinities and overflowing products included).
//!
//! The kernel accumulates every output element in one fixed order (pairs
//! p = 0, 1, 2, ... from the output's old value or zero) whatever its
//! blocking, because a partial sum stored to memory and read back is exact.
//! So [`matmul_pairs_with`] with [`Kernel::Model`] gives exactly the bits
//! of [`Kernel::Avx512`]: the scalar model is the reference the fast kernel
//! is tested against, and the path that runs where the instruction is
//! missing.

use super::matmul::{MatMut, MatRef};

/// Float precision of the training matmuls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 everywhere (the `gemm` crate).
    #[default]
    Fp32,
    /// bf16 inputs and f32 accumulation for the linear layers and the tied
    /// head (forward and both backward products); f32 master weights,
    /// optimizer moments, LayerNorm, attention, softmax and loss.
    Bf16,
}

/// What the user asked for: `auto` is bf16 where the CPU has AVX512_BF16.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    #[default]
    Auto,
    Fp32,
    Bf16,
}

impl PrecisionChoice {
    pub const NAMES: [&'static str; 3] = ["auto", "fp32", "bf16"];
    pub const ALL: [PrecisionChoice; 3] = [
        PrecisionChoice::Auto,
        PrecisionChoice::Fp32,
        PrecisionChoice::Bf16,
    ];

    pub fn parse(s: &str) -> Result<PrecisionChoice, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(PrecisionChoice::Auto),
            "fp32" | "f32" => Ok(PrecisionChoice::Fp32),
            "bf16" => Ok(PrecisionChoice::Bf16),
            _ => Err(format!(
                "unknown precision '{s}' (expected auto, fp32 or bf16)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PrecisionChoice::Auto => "auto",
            PrecisionChoice::Fp32 => "fp32",
            PrecisionChoice::Bf16 => "bf16",
        }
    }

    /// The precision to run: `auto` picks bf16 only where the instruction
    /// exists; an explicit `bf16` runs everywhere (on the scalar model,
    /// slowly, where the instruction is missing: [`Kernel::detect`]).
    pub fn resolve(self) -> Precision {
        match self {
            PrecisionChoice::Fp32 => Precision::Fp32,
            PrecisionChoice::Bf16 => Precision::Bf16,
            PrecisionChoice::Auto if Kernel::detect() == Kernel::Avx512 => Precision::Bf16,
            PrecisionChoice::Auto => Precision::Fp32,
        }
    }
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

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

pub(super) fn round_up_lanes(n: usize) -> usize {
    n.next_multiple_of(LANES)
}

/// Element (r, c) of an f32 view, or 0 past its edge (odd inner sizes).
#[inline]
fn get_or_zero(x: &MatRef, r: usize, c: usize) -> f32 {
    if r < x.rows() && c < x.cols() {
        x.at(r, c)
    } else {
        0.0
    }
}

/// Sizes a reused buffer to `len` words without clearing it (the packers
/// write every word; zeroing a `small` step's activation packs first was
/// 2% of the step).
fn fit(dst: &mut Vec<u32>, len: usize) {
    if dst.len() < len {
        dst.resize(len, 0);
    } else {
        dst.truncate(len);
    }
}

/// Packs X (R, K) as the pairs of its rows: element (r, p) = (X[r, 2p],
/// X[r, 2p+1]), stored row after row. As a left operand this is X itself.
pub fn pack_rows<'a>(dst: &'a mut Vec<u32>, x: MatRef) -> PairsRef<'a> {
    let (rows, pairs) = (x.rows(), x.cols().div_ceil(2));
    fit(dst, rows * pairs);
    for (r, out) in dst.chunks_exact_mut(pairs.max(1)).enumerate().take(rows) {
        match x.row_slice(r) {
            Some(row) => pack_row_into(out, row),
            None => {
                for (p, o) in out.iter_mut().enumerate() {
                    *o = pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
                }
            }
        }
    }
    PairsRef::new(dst, rows, pairs, pairs, 1)
}

/// One row's pairs: `out[p]` = (row[2p], row[2p+1]), an odd tail padded
/// with zero.
#[inline]
pub fn pack_row_into(out: &mut [u32], row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::bf16_pack::available() {
        // SAFETY: AVX-512F is present.
        let done = unsafe { super::bf16_pack::pack_row_pairs(out, row) };
        return pack_row_into_scalar(&mut out[done..], &row[2 * done..]);
    }
    pack_row_into_scalar(out, row)
}

/// [`pack_row_into`] in scalar code (the reference of the fast path, and
/// the tail it leaves).
pub(super) fn pack_row_into_scalar(out: &mut [u32], row: &[f32]) {
    let whole = row.len() / 2;
    for (o, two) in out[..whole].iter_mut().zip(row.chunks_exact(2)) {
        *o = pair(two[0], two[1]);
    }
    if row.len() % 2 == 1 {
        out[whole] = pair(row[row.len() - 1], 0.0);
    }
}

/// Packs X (K, N) as pairs down its columns: element (c, p) = (X[2p, c],
/// X[2p+1, c]), stored pair row after pair row, each padded to a multiple
/// of [`LANES`]. As a left operand this is Xᵀ; as a right operand, X.
pub fn pack_columns<'a>(dst: &'a mut Vec<u32>, x: MatRef) -> PairsRef<'a> {
    let (cols, pairs) = (x.cols(), x.rows().div_ceil(2));
    let stride = round_up_lanes(cols);
    fit(dst, pairs * stride);
    pack_columns_range(dst, x, 0);
    PairsRef::new(dst, cols, pairs, 1, stride)
}

/// The pair rows `first ..` of [`pack_columns`] into `dst` (whole rows of
/// the padded stride).
pub fn pack_columns_range(dst: &mut [u32], x: MatRef, first: usize) {
    pack_columns_range_with(dst, x, first, super::bf16_pack::available())
}

/// [`pack_columns_range`] in scalar code only (the fast path's reference).
#[cfg(test)]
pub(super) fn pack_columns_range_scalar(dst: &mut [u32], x: MatRef, first: usize) {
    pack_columns_range_with(dst, x, first, false)
}

fn pack_columns_range_with(dst: &mut [u32], x: MatRef, first: usize, fast: bool) {
    let cols = x.cols();
    let stride = round_up_lanes(cols);
    for (k, out) in dst.chunks_exact_mut(stride).enumerate() {
        let p = first + k;
        out[cols..].fill(0);
        match (x.row_slice(2 * p), x.row_slice(2 * p + 1)) {
            (Some(lo), Some(hi)) => {
                let mut done = 0;
                #[cfg(target_arch = "x86_64")]
                if fast {
                    // SAFETY: AVX-512F is present (`fast`).
                    done = unsafe { super::bf16_pack::pack_column_pairs(&mut out[..cols], lo, hi) };
                }
                let _ = fast;
                for ((o, &l), &h) in out[done..cols].iter_mut().zip(&lo[done..]).zip(&hi[done..]) {
                    *o = pair(l, h);
                }
            }
            (Some(lo), None) => {
                for (o, &l) in out[..cols].iter_mut().zip(lo) {
                    *o = pair(l, 0.0);
                }
            }
            _ => {
                for (c, o) in out[..cols].iter_mut().enumerate() {
                    *o = pair(get_or_zero(&x, 2 * p, c), get_or_zero(&x, 2 * p + 1, c));
                }
            }
        }
    }
}

/// Packs X (N, K) as its row pairs laid out transposed: element (r, p) =
/// (X[r, 2p], X[r, 2p+1]) at `p * stride + r`, the stride a multiple of
/// [`LANES`]. As a right operand this is Xᵀ (a weight used as `x · Wᵀ`).
pub fn pack_rows_transposed<'a>(dst: &'a mut Vec<u32>, x: MatRef) -> PairsRef<'a> {
    let (rows, pairs) = (x.rows(), x.cols().div_ceil(2));
    let stride = round_up_lanes(rows);
    dst.clear();
    dst.resize(pairs * stride, 0);
    pack_rows_transposed_range(dst, x, 0);
    PairsRef::new(dst, rows, pairs, 1, stride)
}

/// The pair rows `first ..` of [`pack_rows_transposed`] into `dst`.
pub fn pack_rows_transposed_range(dst: &mut [u32], x: MatRef, first: usize) {
    #[cfg(target_arch = "x86_64")]
    if super::bf16_pack::available() {
        return pack_rows_transposed_range_fast(dst, x, first);
    }
    pack_rows_transposed_range_scalar(dst, x, first)
}

/// [`pack_rows_transposed_range`] with AVX-512F: whole 16 x 16 tiles of
/// (rows, pairs) in registers, the edges in scalar code.
#[cfg(target_arch = "x86_64")]
fn pack_rows_transposed_range_fast(dst: &mut [u32], x: MatRef, first: usize) {
    let rows = x.rows();
    let stride = round_up_lanes(rows);
    let count = dst.len() / stride;
    // Pair rows whose two floats exist in every row, in whole tiles.
    let tiles = ((x.cols() / 2).saturating_sub(first)).min(count) / 16;
    let mut r0 = 0;
    while r0 + 16 <= rows && tiles > 0 {
        if (r0..r0 + 16).any(|r| x.row_slice(r).is_none()) {
            break;
        }
        let rows16: [&[f32]; 16] =
            std::array::from_fn(|i| x.row_slice(r0 + i).expect("checked just above"));
        // SAFETY: AVX-512F is present (checked by the caller).
        unsafe {
            super::bf16_pack::pack_tile_rows_transposed(dst, stride, r0, rows16, first, tiles)
        };
        // The pair rows past the tiles, for these rows.
        for r in r0..r0 + 16 {
            for k in 16 * tiles..count {
                let p = first + k;
                dst[k * stride + r] =
                    pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
            }
        }
        r0 += 16;
    }
    // The rows past the last whole tile (or all of them, for views without
    // contiguous rows).
    for r in r0..rows {
        for k in 0..count {
            let p = first + k;
            dst[k * stride + r] = pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
        }
    }
}

/// [`pack_rows_transposed_range`] in scalar code (the fast path's
/// reference, and the path without AVX-512F).
pub(super) fn pack_rows_transposed_range_scalar(dst: &mut [u32], x: MatRef, first: usize) {
    let rows = x.rows();
    let stride = round_up_lanes(rows);
    let count = dst.len() / stride;
    // Blocks of rows: a block's pairs are converted row by row (contiguous,
    // vectorised) into a small buffer, then written out transposed, one
    // contiguous run of the block's rows per pair row.
    const BLOCK: usize = 64;
    let mut block = vec![0u32; BLOCK * count];
    for r0 in (0..rows).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(rows);
        for (i, r) in (r0..r1).enumerate() {
            let out = &mut block[i * count..(i + 1) * count];
            match x.row_slice(r) {
                Some(row) => {
                    let lo = (2 * first).min(row.len());
                    let hi = (2 * (first + count)).min(row.len());
                    out.fill(0);
                    pack_row_into(out, &row[lo..hi]);
                }
                None => {
                    for (k, o) in out.iter_mut().enumerate() {
                        let p = first + k;
                        *o = pair(get_or_zero(&x, r, 2 * p), get_or_zero(&x, r, 2 * p + 1));
                    }
                }
            }
        }
        for k in 0..count {
            let out = &mut dst[k * stride + r0..k * stride + r1];
            for (i, o) in out.iter_mut().enumerate() {
                *o = block[i * count + k];
            }
        }
    }
}

/// Pair rows per parallel packing job.
pub const PACK_JOB_PAIRS: usize = 32;

/// Pair rows per parallel job of the transposed layout. Such a job reads
/// two floats per pair of every row: at 128 pairs, whole 1 KiB rows of a
/// 256-wide weight, which memory streams; at 32 it read a quarter of each
/// row per pass over the 50 MB embedding and took 1.6x as long (11.1 ms
/// against 6.8 ms on a Zen 5).
pub const PACK_JOB_PAIRS_TRANSPOSED: usize = 128;

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

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{LANES, MatMut, PairsRef, Start};
    use std::arch::x86_64::*;

    /// Rows of a register tile: 2 x MR accumulators of 16 lanes.
    const MR: usize = 12;
    /// Pairs per block: a block of B (KC pairs x NC columns, 512 KiB)
    /// stays in L2 while every row block of A passes over it.
    const KC: usize = 256;
    const NC: usize = 512;

    /// # Safety
    /// The CPU has avx512f and avx512bf16; the views are in bounds and B
    /// is lane-padded (see `matmul_pairs_with`).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn matmul(out: MatMut, a: PairsRef, b: PairsRef, start: Start) {
        let accumulate = matches!(start, Start::Out);
        let bias = match start {
            Start::Bias(bias) => bias.as_ptr(),
            _ => std::ptr::null(),
        };
        let (m, n, kp) = (a.rows, b.rows, a.pairs);
        let out_stride = out.row_stride();
        let out_ptr = out.into_data().as_mut_ptr();
        let mut p0 = 0;
        loop {
            let kc = KC.min(kp - p0.min(kp));
            // The first block starts from zero or the output's old value,
            // later ones from the partial sums they stored (exact).
            let load = accumulate || p0 > 0;
            for j0 in (0..n).step_by(NC) {
                let j_end = (j0 + NC).min(n);
                for i0 in (0..m).step_by(MR) {
                    let rows = MR.min(m - i0);
                    for j in (j0..j_end).step_by(LANES) {
                        let cols = LANES.min(j_end - j);
                        // SAFETY: rows, cols and kc stay inside the views.
                        unsafe {
                            if load && i0 + MR < m {
                                // A product with a short inner size (the
                                // head's dwte: 128 pairs per chunk) spends
                                // as long loading its output from DRAM as
                                // multiplying; fetch the next row block's
                                // outputs while this one computes.
                                let next = out_ptr.add((i0 + MR) * out_stride + j);
                                for r in 0..MR.min(m - i0 - MR) {
                                    let o = next.add(r * out_stride) as *const i8;
                                    _mm_prefetch::<_MM_HINT_T0>(o);
                                    _mm_prefetch::<_MM_HINT_T0>(o.add(64 * usize::from(cols > 16)));
                                }
                            }
                            let a_ptr = a.data.as_ptr().add(i0 * a.row_stride + p0 * a.pair_stride);
                            let b_ptr = b.data.as_ptr().add(j + p0 * b.pair_stride);
                            let o_ptr = out_ptr.add(i0 * out_stride + j);
                            let t = Tile {
                                a: a_ptr,
                                a_rs: a.row_stride,
                                a_ps: a.pair_stride,
                                b: b_ptr,
                                b_ps: b.pair_stride,
                                kc,
                                out: o_ptr,
                                out_rs: out_stride,
                                cols,
                                load,
                                // The first block starts from the bias.
                                bias: if p0 == 0 && !bias.is_null() {
                                    bias.add(j)
                                } else {
                                    std::ptr::null()
                                },
                            };
                            crate::ops::dispatch_tile_rows!(rows, tile, &t)
                        }
                    }
                }
            }
            p0 += kc;
            if p0 >= kp {
                break;
            }
        }
    }

    struct Tile {
        a: *const u32,
        a_rs: usize,
        a_ps: usize,
        b: *const u32,
        b_ps: usize,
        kc: usize,
        out: *mut f32,
        out_rs: usize,
        cols: usize,
        load: bool,
        /// Where not null (and not `load`): `cols` values every row starts from.
        bias: *const f32,
    }

    /// R rows x 32 columns of the output over `kc` pairs.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[inline]
    unsafe fn tile<const R: usize>(t: &Tile) {
        let m0: __mmask16 = if t.cols >= 16 {
            0xffff
        } else {
            (1u32 << t.cols) as u16 - 1
        };
        let m1: __mmask16 = if t.cols >= 32 {
            0xffff
        } else if t.cols > 16 {
            ((1u32 << (t.cols - 16)) - 1) as u16
        } else {
            0
        };
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        // SAFETY (whole body): the caller's Tile addresses R rows of A over
        // kc pairs, lane-padded rows of B, and R x cols outputs.
        unsafe {
            if t.load {
                for (r, row) in acc.iter_mut().enumerate() {
                    let o = t.out.add(r * t.out_rs);
                    row[0] = _mm512_maskz_loadu_ps(m0, o);
                    row[1] = _mm512_maskz_loadu_ps(m1, o.add(16));
                }
            } else if !t.bias.is_null() {
                let b0 = _mm512_maskz_loadu_ps(m0, t.bias);
                let b1 = _mm512_maskz_loadu_ps(m1, t.bias.add(16));
                for row in acc.iter_mut() {
                    *row = [b0, b1];
                }
            }
            for p in 0..t.kc {
                let bp = t.b.add(p * t.b_ps);
                let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp as *const _));
                let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(16) as *const _));
                let ap = t.a.add(p * t.a_ps);
                for (r, row) in acc.iter_mut().enumerate() {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*ap.add(r * t.a_rs) as i32));
                    row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                    row[1] = _mm512_dpbf16_ps(row[1], av, b1);
                }
            }
            for (r, row) in acc.iter().enumerate() {
                let o = t.out.add(r * t.out_rs);
                _mm512_mask_storeu_ps(o, m0, row[0]);
                _mm512_mask_storeu_ps(o.add(16), m1, row[1]);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::matmul::matmul_naive;
    use crate::rng::Rng;

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal()).collect()
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to even (1).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), to_bf16(1.0));
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        // Just above halfway rounds up.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20))),
            1.0 + 2f32.powi(-7)
        );
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
        // Every bf16 value survives a round trip; an f64 reference picks
        // the nearest of the two bf16 neighbours of random floats.
        let mut rng = Rng::new(5);
        for _ in 0..100_000 {
            let x = rng.normal() * 2f32.powi((rng.next_u64() % 60) as i32 - 30);
            let h = to_bf16(x);
            assert_eq!(to_bf16(from_bf16(h)), h);
            let down = f32::from_bits(x.to_bits() & 0xffff_0000);
            let up = f32::from_bits((x.to_bits() & 0xffff_0000) + 0x1_0000);
            let (dd, du) = ((x as f64 - down as f64).abs(), (up as f64 - x as f64).abs());
            let want = if dd < du || (dd == du && (down.to_bits() >> 16) & 1 == 0) {
                down
            } else {
                up
            };
            assert_eq!(from_bf16(h), want, "{x}");
        }
    }

    #[test]
    fn scalar_model_is_close_to_an_f64_product_of_the_rounded_inputs() {
        let mut rng = Rng::new(7);
        let (m, k, n) = (9, 37, 21);
        let a = random(m * k, &mut rng);
        let b = random(k * n, &mut rng);
        let round = |v: &[f32]| v.iter().map(|&x| from_bf16(to_bf16(x))).collect::<Vec<_>>();
        let (ar, br) = (round(&a), round(&b));
        let mut want = vec![0.0; m * n];
        matmul_naive(
            MatMut::new(&mut want, m, n),
            MatRef::new(&ar, m, k),
            MatRef::new(&br, k, n),
            false,
        );
        let mut got = vec![0.0; m * n];
        matmul_bf16(
            Kernel::Model,
            MatMut::new(&mut got, m, n),
            MatRef::new(&a, m, k),
            MatRef::new(&b, k, n),
            false,
        );
        for (g, w) in got.iter().zip(&want) {
            // f32 accumulation of 37 exact products: a few ulps of the sum
            // of magnitudes.
            assert!((g - w).abs() < 1e-5 * k as f32, "{g} vs {w}");
        }
    }

    /// One `vdpbf16ps` lane against the model, on random values over a
    /// wide range (subnormals, overflowing products, infinities).
    #[test]
    fn hardware_matches_the_scalar_model() {
        if Kernel::detect() != Kernel::Avx512 {
            eprintln!("no AVX512_BF16 here: the model is the only kernel");
            return;
        }
        let mut rng = Rng::new(99);
        let wide = |rng: &mut Rng| {
            let e = (rng.next_u64() % 300) as i32 - 150;
            rng.normal() * 2f32.powi(e)
        };
        for case in 0..20_000 {
            let m = 1 + case % 13;
            let n = 1 + (case * 7) % 40;
            let k = 1 + (case * 3) % 9;
            let a: Vec<f32> = (0..m * k).map(|_| wide(&mut rng)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| wide(&mut rng)).collect();
            let start: Vec<f32> = (0..m * n).map(|_| wide(&mut rng)).collect();
            let acc = case % 2 == 0;
            let (mut fast, mut model) = (start.clone(), start);
            for (kernel, out) in [(Kernel::Avx512, &mut fast), (Kernel::Model, &mut model)] {
                matmul_bf16(
                    kernel,
                    MatMut::new(out, m, n),
                    MatRef::new(&a, m, k),
                    MatRef::new(&b, k, n),
                    acc,
                );
            }
            for (x, y) in fast.iter().zip(&model) {
                assert!(
                    x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                    "case {case} ({m}x{k}x{n}): {x:e} vs model {y:e}"
                );
            }
        }
    }

    /// The blocked kernel against the model bit for bit, on shapes that
    /// cross every block edge (rows past 12, columns past 32 and 512,
    /// pairs past 256), with strides, transposes and accumulation.
    #[test]
    fn blocked_kernel_matches_the_model_bit_for_bit() {
        if Kernel::detect() != Kernel::Avx512 {
            eprintln!("no AVX512_BF16 here: the model is the only kernel");
            return;
        }
        let mut rng = Rng::new(3);
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 3, 33),
            (25, 600, 70),
            (12, 513, 530),
            (5, 64, 1),
        ] {
            let a = random(m * k, &mut rng);
            let bt = random(n * k, &mut rng);
            let start = random(m * n, &mut rng);
            for accumulate in [false, true] {
                // B given as a (n, k) matrix used transposed, the head's
                // `x · wteᵀ` shape, through the transposed packer.
                let (mut pa, mut pb) = (Vec::new(), Vec::new());
                let ap = pack_rows(&mut pa, MatRef::new(&a, m, k));
                let bp = pack_rows_transposed(&mut pb, MatRef::new(&bt, n, k));
                let (mut fast, mut model) = (start.clone(), start.clone());
                matmul_pairs_with(
                    Kernel::Avx512,
                    MatMut::new(&mut fast, m, n),
                    ap,
                    bp,
                    accumulate,
                );
                matmul_pairs_with(
                    Kernel::Model,
                    MatMut::new(&mut model, m, n),
                    ap,
                    bp,
                    accumulate,
                );
                assert!(
                    fast.iter()
                        .zip(&model)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{m}x{k}x{n} accumulate {accumulate}"
                );
                // A given transposed (the weight-gradient shape), through
                // the column packer, into a strided output.
                let at = random(k * m, &mut rng);
                let ap = pack_columns(&mut pa, MatRef::new(&at, k, m));
                let mut pb2 = Vec::new();
                let bp = pack_rows_transposed(&mut pb2, MatRef::new(&bt, n, k));
                let wide = random(m * (n + 5), &mut rng);
                let (mut fast, mut model) = (wide.clone(), wide);
                matmul_pairs_with(
                    Kernel::Avx512,
                    MatMut::strided(&mut fast, m, n, n + 5),
                    ap,
                    bp,
                    accumulate,
                );
                matmul_pairs_with(
                    Kernel::Model,
                    MatMut::strided(&mut model, m, n, n + 5),
                    ap,
                    bp,
                    accumulate,
                );
                assert!(
                    fast.iter()
                        .zip(&model)
                        .all(|(x, y)| x.to_bits() == y.to_bits())
                );
            }
        }
    }

    /// Sums started from a bias: the same bits as writing the bias into
    /// every row and accumulating (what the linear layer did before), on
    /// every kernel here, across the block edges; and the packers' reused
    /// buffers give the same products as fresh ones.
    #[test]
    fn a_bias_start_is_the_bias_written_then_accumulated() {
        let mut rng = Rng::new(21);
        let mut kernels = vec![Kernel::Model];
        if Kernel::detect() == Kernel::Avx512 {
            kernels.push(Kernel::Avx512);
        }
        // Reused across shapes, larger ones first: stale words must not leak.
        let (mut pa, mut pb) = (Vec::new(), Vec::new());
        for &(m, k, n) in &[
            (25, 600, 70),
            (13, 3, 33),
            (12, 513, 530),
            (5, 0, 7),
            (1, 1, 1),
        ] {
            let a = random(m * k, &mut rng);
            let bt = random(n * k, &mut rng);
            let bias = random(n + 3, &mut rng);
            let ap = pack_rows(&mut pa, MatRef::new(&a, m, k));
            let bp = pack_rows_transposed(&mut pb, MatRef::new(&bt, n, k));
            for &kernel in &kernels {
                let mut fused = random(m * n, &mut rng);
                let start = Start::Bias(&bias);
                matmul_pairs_from(kernel, MatMut::new(&mut fused, m, n), ap, bp, start);
                let mut two_step: Vec<f32> = (0..m * n).map(|i| bias[i % n]).collect();
                matmul_pairs_with(kernel, MatMut::new(&mut two_step, m, n), ap, bp, true);
                assert!(
                    fused
                        .iter()
                        .zip(&two_step)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{kernel:?} {m}x{k}x{n}"
                );
            }
            let (mut fresh_a, mut fresh_b) = (Vec::new(), Vec::new());
            let fa = pack_rows(&mut fresh_a, MatRef::new(&a, m, k));
            let fb = pack_columns(&mut fresh_b, MatRef::new(&bt, n, k).t());
            let (mut o1, mut o2) = (vec![0.0; m * n], vec![0.0; m * n]);
            let reused_b = pack_columns(&mut pb, MatRef::new(&bt, n, k).t());
            let reused_a = pack_rows(&mut pa, MatRef::new(&a, m, k));
            matmul_pairs_with(Kernel::Model, MatMut::new(&mut o1, m, n), fa, fb, false);
            matmul_pairs_with(
                Kernel::Model,
                MatMut::new(&mut o2, m, n),
                reused_a,
                reused_b,
                false,
            );
            assert_eq!(o1, o2, "{m}x{k}x{n}");
        }
    }

    #[test]
    fn packers_agree_with_each_other() {
        let mut rng = Rng::new(4);
        let (m, k, n) = (7, 11, 5);
        let a = random(m * k, &mut rng);
        let b = random(k * n, &mut rng);
        let mut bt = vec![0.0; n * k];
        for r in 0..k {
            for c in 0..n {
                bt[c * k + r] = b[r * n + c];
            }
        }
        let (mut pa, mut pb, mut pbt) = (Vec::new(), Vec::new(), Vec::new());
        let ap = pack_rows(&mut pa, MatRef::new(&a, m, k));
        let b1 = pack_columns(&mut pb, MatRef::new(&b, k, n));
        let b2 = pack_rows_transposed(&mut pbt, MatRef::new(&bt, n, k));
        let (mut o1, mut o2) = (vec![0.0; m * n], vec![0.0; m * n]);
        matmul_pairs_with(Kernel::Model, MatMut::new(&mut o1, m, n), ap, b1, false);
        matmul_pairs_with(Kernel::Model, MatMut::new(&mut o2, m, n), ap, b2, false);
        assert_eq!(o1, o2);
    }

    #[test]
    fn precision_choice_parses_and_resolves() {
        assert_eq!(PrecisionChoice::parse("BF16"), Ok(PrecisionChoice::Bf16));
        assert!(PrecisionChoice::parse("fp16").unwrap_err().contains("fp16"));
        assert_eq!(PrecisionChoice::Fp32.resolve(), Precision::Fp32);
        assert_eq!(PrecisionChoice::Bf16.resolve(), Precision::Bf16);
        let auto = PrecisionChoice::Auto.resolve();
        assert_eq!(auto == Precision::Bf16, Kernel::detect() == Kernel::Avx512);
    }
}
