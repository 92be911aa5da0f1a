//! Generation speed at batch 1 (for `cllm bench --generate`): tokens/s of
//! the [`Generator`] over a reply at each thread count and precision,
//! beside the memory-bandwidth limit (bytes of weights one token reads /
//! the bandwidth measured here), and what one cached token costs against a
//! full forward pass over the same context.

use super::decoder::{DecodeOptions, Decoder, Precision};
use super::error::GenerateError;
use super::generator::Generator;
use super::pool::{DecodePool, split_rows};
use super::sampling::SamplingConfig;
use cllm_core::ops::bf16_gemv;
use cllm_core::rng::Rng;
use cllm_core::{Gpt, KvCache, Logits, ModelConfig, Workspace};
use cllm_data::tokenizer::Tokenizer;
use std::time::Instant;

/// Memory bandwidth at one thread count, best of a few passes.
#[derive(Clone, Debug)]
pub struct Bandwidth {
    pub threads: usize,
    /// Bytes per second of a read-only sum over a buffer far larger than
    /// the last-level cache (what decoding does with its weights).
    pub read_bytes_per_sec: f64,
    /// Bytes per second of a copy (bytes read plus bytes written).
    pub copy_bytes_per_sec: f64,
    /// Size of the buffer read.
    pub buffer_bytes: usize,
}

/// Reads `buffer_bytes` (at least 4x the L3 of usual machines) with
/// `threads` threads of one pool, splitting the buffer as decoding splits
/// rows; best of `passes`.
pub fn measure_bandwidth(threads: usize, buffer_bytes: usize, passes: usize) -> Bandwidth {
    let pool = DecodePool::new(threads);
    let n = buffer_bytes / 4;
    let mut data: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let mut best_read = f64::INFINITY;
    let sums: Vec<std::sync::Mutex<f32>> =
        (0..threads).map(|_| std::sync::Mutex::new(0.0)).collect();
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        pool.run(&|i| {
            let range = split_rows(n, 4096, i, threads);
            *sums[i].lock().unwrap() = read_sum(&data[range]);
        });
        best_read = best_read.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&sums);
    // Copy: the first half into the second.
    let half = n / 2;
    let mut best_copy = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let (src, dst) = data.split_at_mut(half);
        let dst = super::pool::SharedOut::new(&mut dst[..half]);
        let src: &[f32] = src;
        let start = Instant::now();
        pool.run(&|i| {
            let range = split_rows(half, 4096, i, threads);
            // SAFETY: split_rows gives disjoint ranges per thread.
            let out = unsafe { dst.rows(range.clone()) };
            out.copy_from_slice(&src[range]);
        });
        best_copy = best_copy.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&data);
    Bandwidth {
        threads,
        read_bytes_per_sec: (n * 4) as f64 / best_read,
        copy_bytes_per_sec: (half * 4 * 2) as f64 / best_copy,
        buffer_bytes: n * 4,
    }
}

/// The sum of `data` in 64 independent lanes (so the adds' latency never
/// limits the loads), with the widest vectors the CPU has.
fn read_sum(data: &[f32]) -> f32 {
    #[inline(always)]
    fn lanes(data: &[f32]) -> f32 {
        let mut acc = [0.0f32; 64];
        for chunk in data.chunks_exact(64) {
            for (a, &v) in acc.iter_mut().zip(chunk) {
                *a += v;
            }
        }
        acc.iter().sum()
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn wide(data: &[f32]) -> f32 {
            lanes(data)
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && cllm_core::ops::fast_math::detected_path()
                == cllm_core::ops::fast_math::SimdPath::Avx512
        {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { wide(data) };
        }
    }
    lanes(data)
}

/// Average time of one empty dispatch to every thread: the decoder's own
/// pool (parked on a condition variable) and a rayon pool of the same size
/// (`broadcast`), alternating so both see the same machine.
pub fn measure_dispatch(threads: usize, rounds: usize) -> (f64, f64) {
    let pool = DecodePool::new(threads);
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .ok();
    let mut own = 0.0;
    let mut theirs = 0.0;
    for _ in 0..4 {
        let start = Instant::now();
        for _ in 0..rounds {
            pool.run(&|i| {
                std::hint::black_box(i);
            });
        }
        own += start.elapsed().as_secs_f64();
        if let Some(r) = &rayon {
            let start = Instant::now();
            for _ in 0..rounds {
                r.broadcast(|c| std::hint::black_box(c.index()));
            }
            theirs += start.elapsed().as_secs_f64();
        }
    }
    let per = (4 * rounds.max(1)) as f64;
    (
        own / per,
        if rayon.is_some() {
            theirs / per
        } else {
            f64::NAN
        },
    )
}

/// One reply's speed at one thread count and precision.
#[derive(Clone, Debug)]
pub struct DecodeRun {
    pub threads: usize,
    /// `Fp32` or `Bf16`.
    pub precision: Precision,
    /// bf16 through `vdpbf16ps` (false: fp32, or the scalar model).
    pub in_hardware: bool,
    /// Generated tokens per second over the reply (prefill not included),
    /// best of the repeats.
    pub tokens_per_sec: f64,
    /// Bytes of weights one token reads at this precision.
    pub weight_bytes_per_token: usize,
    /// The memory-bandwidth limit: read bandwidth at this thread count /
    /// weight bytes per token.
    pub limit_tokens_per_sec: f64,
    /// tokens_per_sec / limit_tokens_per_sec.
    pub share_of_limit: f64,
}

#[derive(Clone, Debug)]
pub struct GenerateBench {
    pub preset: String,
    pub num_params: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Every thread count x precision measured.
    pub runs: Vec<DecodeRun>,
    /// The bandwidth behind each thread count's limit.
    pub bandwidth: Vec<Bandwidth>,
    /// The context length both costs below are measured at.
    pub context: usize,
    /// Best time of one cached step through the decoder (one thread, fp32:
    /// one new token with `context - 1` positions already in the cache).
    pub cached_token_secs: f64,
    /// Best time of `Gpt::forward(.., Logits(..))` over `context` tokens: what generating a
    /// token costs without a cache (it recomputes every position).
    pub full_forward_secs: f64,
    /// Best time of a prefill of `context` tokens through the cache with
    /// only the last position's logits: a full forward at its cheapest.
    pub prefill_secs: f64,
    /// The same prefill in [`crate::prefill_chunk`]-row chunks, as a reply
    /// starts (so that a cached beginning is bit for bit a cold start's).
    pub chunked_prefill_secs: f64,
}

/// Measures `preset` with random weights (the speed does not depend on
/// them): greedy replies of `new_tokens` after a `prompt_tokens` prompt of
/// random text at every count of `threads` in fp32 and, where the CPU has
/// AVX512_BF16, bf16 (best of `repeats`), against `bandwidth` (one entry
/// per thread count, see [`measure_bandwidth`]); then the cached step and
/// the full forward at the full context.
pub fn bench_generate(
    preset: &str,
    prompt_tokens: usize,
    new_tokens: usize,
    repeats: usize,
    threads: &[usize],
    bandwidth: &[Bandwidth],
) -> Result<GenerateBench, GenerateError> {
    let mut cfg = ModelConfig::preset(preset).map_err(|_| GenerateError::UnknownPreset {
        name: preset.to_string(),
    })?;
    // The prompt goes through the byte tokenizer, whose 256 ids every
    // preset but the test-only `tiny` (37) already covers.
    cfg.vocab_size = cfg.vocab_size.max(256);
    let model = Gpt::new(cfg.clone(), 1).map_err(GenerateError::model)?;
    let n_ctx = cfg.n_ctx;
    let repeats = repeats.max(1);
    // A prompt of random printable text.
    let tok = Tokenizer::bytes();
    let mut rng = Rng::new(7);
    let prompt: String = (0..prompt_tokens.clamp(1, n_ctx))
        .map(|_| (b' ' + rng.below(95) as u8) as char)
        .collect();
    let sampling = SamplingConfig {
        temperature: 0.0,
        max_new_tokens: new_tokens.max(1),
        ..SamplingConfig::default()
    };
    let mut precisions = vec![Precision::Fp32];
    if bf16_gemv::has_avx512_bf16() {
        precisions.push(Precision::Bf16);
    }
    let mut runs = Vec::new();
    let (mut prompt_seen, mut generated) = (0, 0);
    for &t in threads {
        let read = bandwidth
            .iter()
            .find(|b| b.threads == t)
            .map(|b| b.read_bytes_per_sec)
            .unwrap_or(f64::NAN);
        for &precision in &precisions {
            let options = DecodeOptions {
                threads: t,
                precision,
                ..DecodeOptions::default()
            };
            let mut best = 0.0f64;
            let mut in_hardware = false;
            for _ in 0..repeats {
                let mut g =
                    Generator::with_options(&model, &tok, &prompt, sampling.clone(), options)?;
                while g.next_token().is_some() {}
                let stats = g.stats();
                best = best.max(stats.tokens_per_sec);
                prompt_seen = stats.prompt_tokens;
                generated = stats.generated_tokens;
                in_hardware = precision == Precision::Bf16 && bf16_gemv::has_avx512_bf16();
            }
            let bytes = Decoder::weight_bytes_per_token(&cfg, precision);
            let limit = read / bytes as f64;
            runs.push(DecodeRun {
                threads: t,
                precision,
                in_hardware,
                tokens_per_sec: best,
                weight_bytes_per_token: bytes,
                limit_tokens_per_sec: limit,
                share_of_limit: best / limit,
            });
        }
    }

    let context: Vec<u32> = (0..n_ctx)
        .map(|_| rng.below(cfg.vocab_size as u64) as u32)
        .collect();
    let mut cache = KvCache::new(&cfg);
    let mut decoder = Decoder::new(DecodeOptions::default());
    cache
        .append(&model, &context[..n_ctx - 1])
        .map_err(GenerateError::model)?;
    let mut cached_token_secs = f64::INFINITY;
    for _ in 0..repeats.max(5) {
        let start = Instant::now();
        decoder.step(&model, &mut cache, context[n_ctx - 1])?;
        cached_token_secs = cached_token_secs.min(start.elapsed().as_secs_f64());
        // Drop the step again: rebuild the first n_ctx - 1 positions.
        cache.clear();
        cache
            .append(&model, &context[..n_ctx - 1])
            .map_err(GenerateError::model)?;
    }
    let mut ws = Workspace::new(&cfg, 1, n_ctx);
    let mut full_forward_secs = f64::INFINITY;
    let mut prefill_secs = f64::INFINITY;
    let mut chunked_prefill_secs = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        let logits = model.forward(&mut ws, Logits(&context));
        full_forward_secs = full_forward_secs.min(start.elapsed().as_secs_f64());
        std::hint::black_box(logits);
        cache.clear();
        let start = Instant::now();
        cache
            .append(&model, &context)
            .map_err(GenerateError::model)?;
        prefill_secs = prefill_secs.min(start.elapsed().as_secs_f64());
        cache.clear();
        let start = Instant::now();
        for chunk in context.chunks(crate::prefill_chunk(n_ctx)) {
            cache.append(&model, chunk).map_err(GenerateError::model)?;
        }
        chunked_prefill_secs = chunked_prefill_secs.min(start.elapsed().as_secs_f64());
    }
    Ok(GenerateBench {
        preset: preset.to_string(),
        num_params: cfg.num_params(),
        prompt_tokens: prompt_seen,
        generated_tokens: generated,
        runs,
        bandwidth: bandwidth.to_vec(),
        context: n_ctx,
        cached_token_secs,
        full_forward_secs,
        prefill_secs,
        chunked_prefill_secs,
    })
}
