//! [`Decoder`]: the cached forward pass of one new token, with every
//! matrix-vector product (the attention and MLP projections and the tied
//! head) split over output rows between the threads of a [`DecodePool`]
//! that stays up for the whole reply, in fp32 or in bf16.
//!
//! One token at batch 1 reads every weight once and does two flops per
//! weight: it is bound by memory bandwidth, not arithmetic. So the rows of
//! each product are split between the cores (each core streams its share
//! of the weights), and where the CPU has AVX512_BF16 the weights can be
//! kept in bf16 (half the bytes) with `vdpbf16ps` ([`bf16_gemv`]).
//!
//! The split never changes a result: each row's dot product is computed by
//! the same code in the same order on whichever thread owns it, so a reply
//! is bit for bit the same with 1 thread or 16 (tests/decode_parallel.rs).
//!
//! Everything else of the step (LayerNorm, attention over the cache, GELU,
//! residuals) is the same code as [`KvCache::append`] runs; only the
//! products differ (row-wise kernels here, the blocked GEMM there), so
//! the logits agree with [`KvCache::append`] to float tolerance.

use super::error::GenerateError;
use super::gemv::{self, F32Kernel};
use super::pool::{DecodePool, SharedOut, split_rows};
use cllm_core::ops::attention::{self, AttnShape};
use cllm_core::ops::bf16_gemv::{self, Bf16Kernel, Bf16Matrix};
use cllm_core::ops::{embedding, gelu, layernorm, residual};
use cllm_core::{Gpt, KvCache, ModelConfig};

/// The weights' number format for decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// bf16 where the CPU has AVX512_BF16, fp32 elsewhere.
    #[default]
    Auto,
    Fp32,
    /// bf16 weights and inputs, fp32 accumulation (the scalar model of the
    /// instruction where the CPU lacks it: right, but slow).
    Bf16,
}

impl Precision {
    /// What `self` means on this CPU: `Fp32` or `Bf16`.
    pub fn resolve(self) -> Precision {
        match self {
            Precision::Auto if bf16_gemv::has_avx512_bf16() => Precision::Bf16,
            Precision::Auto => Precision::Fp32,
            p => p,
        }
    }

    pub const ALL: [Precision; 3] = [Precision::Auto, Precision::Fp32, Precision::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = GenerateError;
    fn from_str(s: &str) -> Result<Self, GenerateError> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| GenerateError::UnknownPrecision(s.to_string()))
    }
}

/// How to decode: threads (0 = every core) and precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeOptions {
    pub threads: usize,
    pub precision: Precision,
    /// The smallest product, in bytes of weights, split between the
    /// threads (the results do not depend on it).
    pub split_bytes: usize,
}

impl Default for DecodeOptions {
    /// One thread, fp32: the reference numbers, and no threads started
    /// behind a caller's back (the trainer samples text between steps of
    /// its own threads).
    fn default() -> Self {
        DecodeOptions {
            threads: 1,
            precision: Precision::Fp32,
            split_bytes: DEFAULT_MIN_PARALLEL_BYTES,
        }
    }
}

impl DecodeOptions {
    /// Every core, bf16 where supported: for a person waiting on a reply.
    pub fn interactive() -> Self {
        DecodeOptions {
            threads: 0,
            precision: Precision::Auto,
            split_bytes: DEFAULT_MIN_PARALLEL_BYTES,
        }
    }
}

/// Threads meant by a count where 0 means every core.
pub fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism()
            .map(|c| c.get())
            .unwrap_or(1)
    } else {
        threads
    }
}

/// A product is split between threads only from this many bytes of
/// weights: below it, waking the workers costs more than the rows save.
/// So the head is split, and the layers' products (at most 1 MB each up to
/// `seed`) are not.
pub const DEFAULT_MIN_PARALLEL_BYTES: usize = 4 << 20;

/// Rows per thread's share are whole multiples of this.
const GRANULE: usize = 16;

/// The bf16 copies of the matrices (head and every linear weight).
struct Bf16Weights {
    /// Which parameter buffer they were made from (address and length):
    /// a decoder handed another model makes them again.
    source: (usize, usize),
    head: Bf16Matrix,
    /// Per layer: c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj.
    layers: Vec<[Bf16Matrix; 4]>,
}

pub struct Decoder {
    pool: DecodePool,
    precision: Precision,
    f32_kernel: F32Kernel,
    bf16_kernel: Bf16Kernel,
    min_parallel: usize,
    bf16: Option<Bf16Weights>,
    config: Option<ModelConfig>,
    // ---- one row of scratch
    x: Vec<f32>,
    mid: Vec<f32>,
    ln: Vec<f32>,
    stat: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    branch: Vec<f32>,
    fc: Vec<f32>,
    fc_gelu: Vec<f32>,
    logits: Vec<f32>,
    packed: Vec<u16>,
}

/// One linear map of the step: which weights and its shape.
#[derive(Clone, Copy)]
enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a Bf16Matrix),
}

impl Decoder {
    pub fn new(options: DecodeOptions) -> Decoder {
        Decoder {
            pool: DecodePool::new(resolve_threads(options.threads)),
            precision: options.precision.resolve(),
            f32_kernel: F32Kernel::detect(),
            bf16_kernel: Bf16Kernel::detect(),
            min_parallel: options.split_bytes,
            bf16: None,
            config: None,
            x: Vec::new(),
            mid: Vec::new(),
            ln: Vec::new(),
            stat: vec![0.0; 2],
            qkv: Vec::new(),
            attn: Vec::new(),
            branch: Vec::new(),
            fc: Vec::new(),
            fc_gelu: Vec::new(),
            logits: Vec::new(),
            packed: Vec::new(),
        }
    }

    /// Threads each product is split between.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// `Fp32` or `Bf16` (never `Auto`).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Whether the bf16 products run the instruction (false: its scalar
    /// model, or fp32).
    pub fn bf16_in_hardware(&self) -> bool {
        self.precision == Precision::Bf16 && self.bf16_kernel == Bf16Kernel::Avx512Bf16
    }

    /// The smallest product (in bytes of weights) split between threads;
    /// the results do not depend on it.
    pub fn set_min_parallel(&mut self, bytes: usize) {
        self.min_parallel = bytes;
    }

    /// Runs the scalar models instead of the kernels (for tests: what a
    /// machine without AVX-512 computes).
    pub fn use_scalar_models(&mut self) {
        self.f32_kernel = F32Kernel::Model;
        self.bf16_kernel = Bf16Kernel::Model;
    }

    /// Bytes of weights one token reads at this precision: every matrix
    /// (in its format) plus the fp32 biases, LayerNorm parameters and the
    /// token's two embedding rows.
    pub fn weight_bytes_per_token(config: &ModelConfig, precision: Precision) -> usize {
        let (c, i, v, l) = (
            config.n_embd,
            config.n_inner,
            config.vocab_size,
            config.n_layer,
        );
        let (matrix_bytes, pad): (usize, fn(usize) -> usize) = match precision.resolve() {
            Precision::Bf16 => (2, bf16_gemv::padded),
            _ => (4, |n| n),
        };
        let matrices = v * pad(c) + l * (3 * c * pad(c) + c * pad(c) + i * pad(c) + c * pad(i));
        let vectors = l * (3 * c + c + i + c + 4 * c) + 2 * c + 2 * c;
        matrices * matrix_bytes + vectors * 4
    }

    /// Sizes the scratch for `model` and, decoding in bf16, rounds its
    /// matrices to bf16 (done by the first [`Decoder::step`] otherwise;
    /// nothing when already done for this model).
    pub fn prepare(&mut self, model: &Gpt) {
        let cfg = &model.config;
        if self.config.as_ref() != Some(cfg) {
            let (c, i, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
            self.x = vec![0.0; c];
            self.mid = vec![0.0; c];
            self.ln = vec![0.0; c];
            self.qkv = vec![0.0; 3 * c];
            self.attn = vec![0.0; c];
            self.branch = vec![0.0; c];
            self.fc = vec![0.0; i];
            self.fc_gelu = vec![0.0; i];
            self.logits = vec![0.0; v];
            self.config = Some(cfg.clone());
            self.bf16 = None;
        }
        if self.precision != Precision::Bf16 {
            return;
        }
        let source = (model.params.as_ptr() as usize, model.params.len());
        if self.bf16.as_ref().is_some_and(|w| w.source == source) {
            return;
        }
        let (c, inner, v) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size);
        let p = &model.params;
        let lay = &model.layout;
        let m = |at: usize, rows: usize, cols: usize| {
            Bf16Matrix::from_f32(&p[at..at + rows * cols], rows, cols)
        };
        self.bf16 = Some(Bf16Weights {
            source,
            head: m(lay.wte, v, c),
            layers: lay
                .layers
                .iter()
                .map(|o| {
                    [
                        m(o.c_attn_weight, 3 * c, c),
                        m(o.attn_proj_weight, c, c),
                        m(o.c_fc_weight, inner, c),
                        m(o.mlp_proj_weight, c, inner),
                    ]
                })
                .collect(),
        });
    }

    /// Runs `token` at the cache's next position and returns the logits
    /// (V) predicting the token after it. Errors (nothing changes) when
    /// the cache was made for another model, is full, or the id is outside
    /// the vocabulary.
    pub fn step(
        &mut self,
        model: &Gpt,
        cache: &mut KvCache,
        token: u32,
    ) -> Result<&[f32], GenerateError> {
        let vocab = model.config.vocab_size;
        if token as usize >= vocab {
            return Err(GenerateError::TokenOutsideVocabulary { token, vocab });
        }
        cache.check(model, &[token]).map_err(GenerateError::model)?;
        self.prepare(model);
        let cfg = &model.config;
        let (c, inner, v, t_max) = (cfg.n_embd, cfg.n_inner, cfg.vocab_size, cfg.n_ctx);
        let p = &model.params;
        let lay = &model.layout;
        let p0 = cache.len();
        let shape = AttnShape {
            batch: 1,
            seq: 1,
            channels: c,
            heads: cfg.n_head,
        };
        let (mean, rstd) = self.stat.split_at_mut(1);
        embedding::embedding_forward(
            &mut self.x,
            &[token],
            &p[lay.wte..lay.wte + v * c],
            &p[lay.wpe + p0 * c..lay.wpe + t_max * c],
            1,
            c,
        );
        for (l, o) in lay.layers.iter().enumerate() {
            let w = |at: usize, rows: usize, cols: usize, k: usize| match &self.bf16 {
                Some(b) => Weights::Bf16(&b.layers[l][k]),
                None => Weights::F32(&p[at..at + rows * cols]),
            };
            let (w_attn, w_proj, w_fc, w_mlp) = (
                w(o.c_attn_weight, 3 * c, c, 0),
                w(o.attn_proj_weight, c, c, 1),
                w(o.c_fc_weight, inner, c, 2),
                w(o.mlp_proj_weight, c, inner, 3),
            );
            layernorm::layernorm_forward(
                &mut self.ln,
                mean,
                rstd,
                &self.x,
                &p[o.ln_1_weight..o.ln_1_weight + c],
                &p[o.ln_1_bias..o.ln_1_bias + c],
                c,
            );
            let bias = |at: usize, n: usize| Some(&p[at..at + n]);
            let ctx = Products {
                pool: &self.pool,
                f32_kernel: self.f32_kernel,
                bf16_kernel: self.bf16_kernel,
                min_parallel: self.min_parallel,
            };
            ctx.linear(
                &mut self.qkv,
                &self.ln,
                w_attn,
                bias(o.c_attn_bias, 3 * c),
                &mut self.packed,
            );
            let (keys, values, scores) = cache.layer_parts(l);
            attention::attention_forward_cached(
                &mut self.attn,
                &self.qkv,
                keys,
                values,
                p0,
                scores,
                shape,
            );
            ctx.linear(
                &mut self.branch,
                &self.attn,
                w_proj,
                bias(o.attn_proj_bias, c),
                &mut self.packed,
            );
            residual::residual_forward(&mut self.mid, &self.x, &self.branch);
            layernorm::layernorm_forward(
                &mut self.ln,
                mean,
                rstd,
                &self.mid,
                &p[o.ln_2_weight..o.ln_2_weight + c],
                &p[o.ln_2_bias..o.ln_2_bias + c],
                c,
            );
            ctx.linear(
                &mut self.fc,
                &self.ln,
                w_fc,
                bias(o.c_fc_bias, inner),
                &mut self.packed,
            );
            gelu::gelu_forward(&mut self.fc_gelu, &self.fc);
            ctx.linear(
                &mut self.branch,
                &self.fc_gelu,
                w_mlp,
                bias(o.mlp_proj_bias, c),
                &mut self.packed,
            );
            residual::residual_forward(&mut self.x, &self.mid, &self.branch);
        }
        layernorm::layernorm_forward(
            &mut self.ln,
            mean,
            rstd,
            &self.x,
            &p[lay.ln_f_weight..lay.ln_f_weight + c],
            &p[lay.ln_f_bias..lay.ln_f_bias + c],
            c,
        );
        let head = match &self.bf16 {
            Some(b) => Weights::Bf16(&b.head),
            None => Weights::F32(&p[lay.wte..lay.wte + v * c]),
        };
        let ctx = Products {
            pool: &self.pool,
            f32_kernel: self.f32_kernel,
            bf16_kernel: self.bf16_kernel,
            min_parallel: self.min_parallel,
        };
        ctx.linear(&mut self.logits, &self.ln, head, None, &mut self.packed);
        cache.advance(1);
        Ok(&self.logits)
    }
}

/// How the products of a step run.
struct Products<'a> {
    pool: &'a DecodePool,
    f32_kernel: F32Kernel,
    bf16_kernel: Bf16Kernel,
    min_parallel: usize,
}

impl Products<'_> {
    /// out (rows) = W (rows, x.len()) x + bias, split over rows.
    fn linear(
        &self,
        out: &mut [f32],
        x: &[f32],
        w: Weights,
        bias: Option<&[f32]>,
        packed: &mut Vec<u16>,
    ) {
        let rows = out.len();
        let cols = x.len();
        if let Weights::Bf16(m) = w {
            assert_eq!((m.rows, m.cols), (rows, cols), "bf16 matrix shape");
            bf16_gemv::pack_vector(x, packed);
        }
        let packed: &[u16] = packed;
        let rows_of = |o: &mut [f32], row0: usize| match w {
            Weights::F32(m) => gemv::gemv_rows(self.f32_kernel, o, m, x, bias, cols, row0),
            Weights::Bf16(m) => bf16_gemv::gemv_rows(self.bf16_kernel, o, m, packed, bias, row0),
        };
        let threads = self.pool.threads();
        let bytes = match w {
            Weights::F32(_) => rows * cols * 4,
            Weights::Bf16(m) => m.bytes(),
        };
        if threads == 1 || bytes < self.min_parallel || rows < 2 * GRANULE {
            rows_of(out, 0);
            return;
        }
        let shared = SharedOut::new(out);
        self.pool.run(&|i| {
            let range = split_rows(rows, GRANULE, i, threads);
            if range.is_empty() {
                return;
            }
            let row0 = range.start;
            // SAFETY: split_rows gives each thread a disjoint range of
            // rows, and `out` is not touched otherwise until `run` returns.
            let mine = unsafe { shared.rows(range) };
            rows_of(mine, row0);
        });
    }
}
