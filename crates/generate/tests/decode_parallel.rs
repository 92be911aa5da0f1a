//! The decoder (`generate::Decoder`): one cached token's forward with its
//! products split over rows between threads, in fp32 and bf16.
//! - its logits against the full forward pass (`Gpt::forward` with `Logits`, blocked GEMM),
//! - the same bits with 1, 2 and 3 threads, token by token and for whole
//!   replies (tokens and logits),
//! - the kernels against their scalar models, bit for bit, through a
//!   whole decode (where the CPU has the instructions),
//! - bf16 close to fp32, and the bytes a token reads.

use cllm_core::{Gpt, KvCache, Logits, ModelConfig, Workspace};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::decoder::{DecodeOptions, Decoder, Precision};
use cllm_generate::{Generator, SamplingConfig};
use common::{byte_config, lively_model, random_tokens, rel_diff};

mod common;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every position's logits through the decoder, one token at a time after
/// a one-token prefill through the cache.
fn decode_all(model: &Gpt, decoder: &mut Decoder, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = KvCache::new(&model.config);
    let mut rows = vec![cache.append(model, &tokens[..1]).unwrap().to_vec()];
    for &t in &tokens[1..] {
        rows.push(decoder.step(model, &mut cache, t).unwrap().to_vec());
    }
    rows
}

fn decoder(threads: usize, precision: Precision) -> Decoder {
    // Split every product, however small, so the tiny models exercise it.
    Decoder::new(DecodeOptions {
        threads,
        precision,
        split_bytes: 0,
    })
}

#[test]
fn fp32_decoding_matches_the_full_forward_pass() {
    for preset in ["tiny", "baby"] {
        let cfg = byte_config(preset);
        let model = lively_model(cfg.clone(), 3);
        let tokens = random_tokens(cfg.n_ctx, cfg.vocab_size, 4);
        let mut ws = Workspace::new(&cfg, 1, cfg.n_ctx);
        let full = model.forward(&mut ws, Logits(&tokens));
        let v = cfg.vocab_size;
        for threads in [1, 3] {
            let rows = decode_all(&model, &mut decoder(threads, Precision::Fp32), &tokens);
            for (i, row) in rows.iter().enumerate() {
                let d = rel_diff(row, &full[i * v..(i + 1) * v]);
                assert!(d < 1e-4, "{preset}, {threads} threads, position {i}: {d}");
            }
        }
    }
}

#[test]
fn bf16_decoding_stays_close_to_fp32() {
    let cfg = byte_config("baby");
    let model = lively_model(cfg.clone(), 5);
    let tokens = random_tokens(40, cfg.vocab_size, 6);
    let f = decode_all(&model, &mut decoder(1, Precision::Fp32), &tokens);
    let b = decode_all(&model, &mut decoder(2, Precision::Bf16), &tokens);
    let mut worst = 0.0f32;
    for (x, y) in b.iter().zip(&f).skip(1) {
        worst = worst.max(rel_diff(x, y));
        assert_ne!(bits(x), bits(y), "bf16 gave the fp32 bits: it did not run");
    }
    // bf16 keeps 8 bits of mantissa: the rounding of weights and inputs
    // moves logits by about 2^-8 of their scale through 4 layers.
    assert!(worst < 0.05, "bf16 logits differ from fp32 by {worst}");
}

/// The split is over output rows and each row is computed the same way on
/// any thread: every logit has the same bits with 1, 2 and 3 threads.
#[test]
fn threads_do_not_change_a_bit() {
    for preset in ["tiny", "small"] {
        let cfg = byte_config(preset);
        let model = lively_model(cfg.clone(), 7);
        let tokens = random_tokens(cfg.n_ctx, cfg.vocab_size, 8);
        for precision in [Precision::Fp32, Precision::Bf16] {
            let one = decode_all(&model, &mut decoder(1, precision), &tokens);
            for threads in [2, 3] {
                let many = decode_all(&model, &mut decoder(threads, precision), &tokens);
                for (i, (a, b)) in many.iter().zip(&one).enumerate() {
                    assert_eq!(
                        bits(a),
                        bits(b),
                        "{preset} {precision:?} {threads} threads, position {i}"
                    );
                }
            }
        }
    }
}

/// The kernels (AVX-512F fp32, AVX512_BF16 `vdpbf16ps`) against the scalar
/// models a machine without them runs: the same logits bit for bit over a
/// whole decode. Where the CPU lacks them both sides run the model.
#[test]
fn kernels_match_their_scalar_models_through_a_decode() {
    let cfg = byte_config("baby");
    let model = lively_model(cfg.clone(), 9);
    let tokens = random_tokens(cfg.n_ctx, cfg.vocab_size, 10);
    for precision in [Precision::Fp32, Precision::Bf16] {
        let fast = decode_all(&model, &mut decoder(2, precision), &tokens);
        let mut slow_decoder = decoder(1, precision);
        slow_decoder.use_scalar_models();
        let slow = decode_all(&model, &mut slow_decoder, &tokens);
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            assert_eq!(bits(a), bits(b), "{precision:?} position {i}");
        }
    }
}

/// A whole reply through `Generator`: the same tokens and the same logits
/// at every step with 1 and 2 threads, sampled (temperature, top-k) so
/// that any logit difference could change a token.
#[test]
fn a_reply_is_the_same_with_one_thread_or_two() {
    let cfg = byte_config("small");
    let model = lively_model(cfg.clone(), 12);
    let tok = Tokenizer::bytes();
    let sampling = SamplingConfig {
        temperature: 0.9,
        top_k: 50,
        max_new_tokens: 150, // past n_ctx = 128: the window slides once
        seed: 3,
        ..SamplingConfig::default()
    };
    for precision in [Precision::Fp32, Precision::Bf16] {
        let reply = |threads: usize| {
            let opts = DecodeOptions {
                threads,
                precision,
                split_bytes: 0,
            };
            let mut g =
                Generator::with_options(&model, &tok, "int main() {", sampling.clone(), opts)
                    .unwrap();
            assert_eq!(g.decoding().0, threads);
            let mut steps = vec![bits(g.next_logits())];
            let mut ids = Vec::new();
            while let Some(t) = g.next_token() {
                ids.push(t.id);
                steps.push(bits(g.next_logits()));
            }
            (ids, steps)
        };
        let (ids1, logits1) = reply(1);
        let (ids2, logits2) = reply(2);
        assert_eq!(ids1.len(), 150);
        assert_eq!(ids1, ids2, "{precision:?}: tokens differ");
        assert_eq!(logits1, logits2, "{precision:?}: logits differ");
    }
}

#[test]
fn a_decoder_refuses_what_the_cache_refuses() {
    let cfg = byte_config("tiny");
    let model = lively_model(cfg.clone(), 1);
    let mut cache = KvCache::new(&cfg);
    let mut d = decoder(2, Precision::Fp32);
    let err = d
        .step(&model, &mut cache, cfg.vocab_size as u32)
        .unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
    assert_eq!(cache.len(), 0);
    for t in 0..cfg.n_ctx as u32 {
        d.step(&model, &mut cache, t % cfg.vocab_size as u32)
            .unwrap();
    }
    assert!(
        d.step(&model, &mut cache, 0).is_err(),
        "a full cache took a token"
    );
    let other = lively_model(byte_config("baby"), 1);
    assert!(d.step(&other, &mut KvCache::new(&cfg), 0).is_err());
}

#[test]
fn bytes_per_token_count_every_weight_read() {
    for preset in ["small", "seed"] {
        let cfg = ModelConfig::preset(preset).unwrap();
        let (c, t) = (cfg.n_embd, cfg.n_ctx);
        // Everything but the position table, of which one row is read,
        // and the token's own embedding row read once more.
        let fp32 = 4 * (cfg.num_params() - t * c + c + c);
        assert_eq!(Decoder::weight_bytes_per_token(&cfg, Precision::Fp32), fp32);
        let bf16 = Decoder::weight_bytes_per_token(&cfg, Precision::Bf16);
        // The matrices at 2 bytes (their widths are multiples of 32).
        let matrices = cfg.vocab_size * c + cfg.n_layer * (4 * c * c + 2 * c * cfg.n_inner);
        assert_eq!(bf16, fp32 - 2 * matrices, "{preset}");
    }
}

/// The bench's figures hang together: one run per thread count and
/// precision (bf16 only where the CPU has it), each limit the measured read
/// bandwidth over the bytes a token reads, each share the speed over it.
#[test]
fn the_generation_bench_puts_each_speed_beside_its_bandwidth_limit() {
    use cllm_generate::bench::{bench_generate, measure_bandwidth};
    let bandwidth: Vec<_> = [1, 2]
        .iter()
        .map(|&t| measure_bandwidth(t, 8 << 20, 1))
        .collect();
    for b in &bandwidth {
        assert!(
            b.read_bytes_per_sec > 1e8 && b.copy_bytes_per_sec > 1e8,
            "{b:?}"
        );
    }
    let r = bench_generate("tiny", 8, 20, 1, &[1, 2], &bandwidth).unwrap();
    let precisions = if Precision::Auto.resolve() == Precision::Bf16 {
        2
    } else {
        1
    };
    assert_eq!(r.runs.len(), 2 * precisions);
    assert_eq!(r.generated_tokens, 20);
    for run in &r.runs {
        let bw = bandwidth.iter().find(|b| b.threads == run.threads).unwrap();
        let bytes = Decoder::weight_bytes_per_token(&byte_config("tiny"), run.precision);
        assert_eq!(run.weight_bytes_per_token, bytes);
        let limit = bw.read_bytes_per_sec / bytes as f64;
        assert!((run.limit_tokens_per_sec / limit - 1.0).abs() < 1e-9);
        assert!(run.tokens_per_sec > 0.0);
        assert!((run.share_of_limit * limit / run.tokens_per_sec - 1.0).abs() < 1e-9);
        assert_eq!(run.in_hardware, run.precision == Precision::Bf16);
    }
}
