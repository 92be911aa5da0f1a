//! The generation engine: the KV cache against the full forward pass, the
//! sliding window, seeded sampling, top-k / top-p against an independent
//! computation of the allowed set, stop strings and max tokens, streaming
//! text, the background driver, and the C syntax check (the code guards in
//! a reply: generate_guards.rs).

use cllm_core::rng::Rng;
use cllm_core::{Gpt, KvCache, Logits, ModelConfig, Workspace};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::sampling::sample_next;
use cllm_generate::{
    FinishReason, GenerateError, GenerationEvent, GenerationStart, Generator, Infill,
    SamplingConfig, check_c, sample_text, spawn_generation,
};
use common::{byte_config, lively_model, random_tokens, rel_diff};
use std::collections::HashSet;
use std::sync::Arc;

mod common;

// ----------------------------------------------------------------------------
// KV cache

fn check_cache_against_full_forward(cfg: ModelConfig) {
    let model = lively_model(cfg.clone(), 11);
    let (t, v) = (cfg.n_ctx, cfg.vocab_size);
    let tokens = random_tokens(t, v, 5);
    let mut ws = Workspace::new(&cfg, 1, t);
    let full = model.forward(&mut ws, Logits(&tokens));

    // One token at a time: each step's logits are the full pass's row.
    let mut cache = KvCache::new(&cfg);
    for (pos, &tok) in tokens.iter().enumerate() {
        let step = cache.append(&model, &[tok]).unwrap();
        let d = rel_diff(step, &full[pos * v..(pos + 1) * v]);
        assert!(d < 1e-4, "position {pos}: cached logits differ by {d}");
    }
    assert_eq!(cache.len(), t);
    assert!(
        cache.append(&model, &[0]).is_err(),
        "a full cache must refuse"
    );

    // A prefill chunk, then single steps, then a second chunk.
    let mut cache = KvCache::new(&cfg);
    let split = t / 3;
    let mut rows = cache.append_all_logits(&model, &tokens[..split]).unwrap();
    for &tok in &tokens[split..split + 2] {
        rows.extend_from_slice(cache.append(&model, &[tok]).unwrap());
    }
    rows.extend(
        cache
            .append_all_logits(&model, &tokens[split + 2..])
            .unwrap(),
    );
    let d = rel_diff(&rows, &full);
    assert!(d < 1e-4, "chunked cache logits differ by {d}");
}

#[test]
fn kv_cache_equals_full_forward_tiny() {
    check_cache_against_full_forward(ModelConfig::preset("tiny").unwrap());
}

#[test]
fn kv_cache_equals_full_forward_baby_preset() {
    // 4 layers, 4 heads, width 128, context 64.
    check_cache_against_full_forward(byte_config("baby"));
}

#[test]
fn kv_cache_rejects_bad_input_without_changing() {
    let cfg = ModelConfig::preset("tiny").unwrap();
    let model = lively_model(cfg.clone(), 1);
    let mut cache = KvCache::new(&cfg);
    let err = cache.append(&model, &[3, 37]).unwrap_err().to_string();
    assert!(err.contains("37"), "{err}");
    assert!(cache.append(&model, &[]).is_err());
    assert!(cache.is_empty());
    let other = lively_model(byte_config("tiny"), 1);
    assert!(cache.append(&other, &[1]).is_err());
}

// ----------------------------------------------------------------------------
// Generator

/// Greedy decoding of the raw logits (no repetition penalty).
fn greedy(max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        repetition_penalty: 1.0,
        max_new_tokens,
        ..SamplingConfig::default()
    }
}

/// Runs a reply to the end; returns (ids, concatenated pieces, generator text).
fn run_reply(
    model: &Gpt,
    tok: &Tokenizer,
    prompt: &str,
    cfg: SamplingConfig,
) -> (Vec<u32>, String, String, Option<FinishReason>) {
    let mut g = Generator::new(model, tok, prompt, cfg).unwrap();
    let mut pieces = String::new();
    while let Some(t) = g.next_token() {
        pieces.push_str(&t.text_piece);
    }
    (
        g.generated_ids().to_vec(),
        pieces,
        g.text().to_string(),
        g.finish_reason(),
    )
}

#[test]
fn sliding_window_keeps_going_past_n_ctx_and_matches_full_forward() {
    let cfg = byte_config("tiny"); // n_ctx 16
    let model = lively_model(cfg.clone(), 3);
    let tok = Tokenizer::bytes();
    let prompt = "int x = 1;";
    let prompt_ids = tok.encode(prompt);
    let mut g = Generator::new(&model, &tok, prompt, greedy(50)).unwrap();
    let mut ws = Workspace::new(&cfg, 1, cfg.n_ctx);
    let mut all = prompt_ids.clone();
    let mut slides = 0;
    let mut last_len = g.context_tokens().len();
    while let Some(t) = g.next_token() {
        all.push(t.id);
        if g.finish_reason().is_some() {
            break;
        }
        let ctx = g.context_tokens();
        assert!(ctx.len() <= cfg.n_ctx);
        assert!(
            all.ends_with(ctx),
            "the window must be the most recent tokens"
        );
        if ctx.len() < last_len {
            slides += 1;
            assert_eq!(ctx.len(), cfg.n_ctx / 2);
        }
        last_len = ctx.len();
        // The cache's next-token logits equal a full pass over the window.
        let full = model.forward(&mut ws, Logits(ctx));
        let v = cfg.vocab_size;
        let last_row = &full[(ctx.len() - 1) * v..];
        let d = rel_diff(g.next_logits(), last_row);
        assert!(d < 1e-4, "after {} tokens: logits differ by {d}", all.len());
        // Greedy picks the arg-max of exactly those logits.
    }
    assert_eq!(g.generated_ids().len(), 50);
    assert!(
        slides >= 3,
        "60 tokens through a 16-token window slide several times"
    );
}

#[test]
fn greedy_picks_the_argmax_of_the_full_forward() {
    let cfg = byte_config("tiny");
    let model = lively_model(cfg.clone(), 8);
    let tok = Tokenizer::bytes();
    let (ids, ..) = run_reply(&model, &tok, "abc", greedy(10));
    let mut seq = tok.encode("abc");
    let mut ws = Workspace::new(&cfg, 1, cfg.n_ctx);
    for &id in &ids {
        let full = model.forward(&mut ws, Logits(&seq));
        let row = &full[(seq.len() - 1) * cfg.vocab_size..];
        let best = (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(id as usize, best);
        seq.push(id);
    }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let model = lively_model(byte_config("tiny"), 4);
    let tok = Tokenizer::bytes();
    let cfg = |seed| SamplingConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 0.95,
        repetition_penalty: 1.1,
        max_new_tokens: 40,
        seed,
        ..SamplingConfig::default()
    };
    let a = run_reply(&model, &tok, "void f(", cfg(7));
    let b = run_reply(&model, &tok, "void f(", cfg(7));
    let c = run_reply(&model, &tok, "void f(", cfg(8));
    assert_eq!(a, b, "same seed, same output");
    assert_eq!(a.0.len(), 40);
    assert_ne!(a.0, c.0, "another seed should give another reply");
    // The trainer's helper is the same generator.
    let s1 = sample_text(&model, &tok, "void f(", 20, 3);
    assert_eq!(s1, sample_text(&model, &tok, "void f(", 20, 3));
    assert!(!s1.is_empty());
}

#[test]
fn streamed_pieces_are_the_decoded_reply() {
    // Random byte-level output is full of split and invalid UTF-8: the
    // pieces must still add up to the whole reply decoded at once.
    let model = lively_model(byte_config("tiny"), 9);
    let tok = Tokenizer::bytes();
    for seed in 0..5 {
        let cfg = SamplingConfig {
            temperature: 1.5,
            top_k: 0,
            max_new_tokens: 60,
            seed,
            ..SamplingConfig::default()
        };
        let (ids, pieces, text, _) = run_reply(&model, &tok, "é", cfg);
        assert_eq!(pieces, text);
        assert_eq!(text, tok.decode(&ids));
    }
}

#[test]
fn max_tokens_is_honoured() {
    let model = lively_model(byte_config("tiny"), 2);
    let tok = Tokenizer::bytes();
    let (ids, pieces, text, finish) = run_reply(&model, &tok, "x", greedy(7));
    assert_eq!(ids.len(), 7);
    assert_eq!(finish, Some(FinishReason::MaxTokens));
    assert_eq!(pieces, text);
    let (ids, _, text, finish) = run_reply(&model, &tok, "x", greedy(0));
    assert!(ids.is_empty() && text.is_empty());
    assert_eq!(finish, Some(FinishReason::MaxTokens));
}

#[test]
fn stop_string_ends_the_reply_before_it() {
    let model = lively_model(byte_config("tiny"), 6);
    let tok = Tokenizer::bytes();
    // Printable prompt so the greedy reply is mostly text we can cut.
    let (_, _, free, _) = run_reply(&model, &tok, "int main() {", greedy(40));
    let chars: Vec<char> = free.chars().collect();
    assert!(chars.len() > 14, "reply too short to cut: {free:?}");
    let stop: String = chars[10..13].iter().collect();
    let cut = free.find(&stop).unwrap();
    let mut cfg = greedy(40);
    cfg.stop = vec!["a string that never appears".into(), stop.clone()];
    let mut g = Generator::new(&model, &tok, "int main() {", cfg).unwrap();
    let mut pieces = String::new();
    while let Some(t) = g.next_token() {
        assert!(!t.text_piece.contains(&stop));
        pieces.push_str(&t.text_piece);
    }
    assert_eq!(g.finish_reason(), Some(FinishReason::StopString));
    assert_eq!(g.text(), &free[..cut]);
    assert_eq!(
        pieces,
        &free[..cut],
        "the stop string never reaches the stream"
    );
    assert!(g.generated_ids().len() < 40);
}

// ----------------------------------------------------------------------------
// top-k / top-p against an independent allowed set

/// The ids top-k then top-p may keep, computed directly: sort by
/// probability (f64 softmax of logits / T), take the k largest, then the
/// shortest prefix whose renormalised mass reaches p.
fn allowed(logits: &[f32], t: f64, k: usize, p: f64) -> Vec<(u32, f64)> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let w: Vec<f64> = logits
        .iter()
        .map(|&l| ((l as f64 - max) / t).exp())
        .collect();
    let z: f64 = w.iter().sum();
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| w[b].partial_cmp(&w[a]).unwrap());
    let k = if k == 0 { ids.len() } else { k };
    let top: Vec<usize> = ids.into_iter().take(k).collect();
    let mass: f64 = top.iter().map(|&i| w[i] / z).sum();
    let mut out = Vec::new();
    let mut acc = 0.0;
    for i in top {
        let q = w[i] / z / mass;
        out.push((i as u32, q));
        acc += q;
        if p < 1.0 && acc >= p {
            break;
        }
    }
    let total: f64 = out.iter().map(|x| x.1).sum();
    out.iter().map(|&(i, q)| (i, q / total)).collect()
}

#[test]
fn top_k_and_top_p_never_pick_outside_their_set() {
    let mut rng = Rng::new(99);
    let cases = [
        (1.0, 5, 1.0),
        (1.0, 0, 0.5),
        (0.7, 10, 0.8),
        (1.3, 0, 0.9),
        (1.0, 1, 1.0),
    ];
    for (case, &(t, k, p)) in cases.iter().enumerate() {
        let logits: Vec<f32> = (0..60).map(|_| rng.normal() * 2.0).collect();
        let set = allowed(&logits, t as f64, k, p as f64);
        let ids: HashSet<u32> = set.iter().map(|x| x.0).collect();
        let cfg = SamplingConfig {
            temperature: t,
            top_k: k,
            top_p: p,
            ..SamplingConfig::default()
        };
        let mut draw_rng = Rng::new(case as u64);
        let mut seen = HashSet::new();
        for _ in 0..5000 {
            let id = sample_next(&logits, &[], &cfg, &mut draw_rng);
            assert!(ids.contains(&id), "case {case}: drew {id} outside {ids:?}");
            seen.insert(id);
        }
        // Nor is the set narrower than it should be.
        for &(id, q) in &set {
            if q >= 0.01 {
                assert!(
                    seen.contains(&id),
                    "case {case}: {id} (p {q:.3}) never drawn"
                );
            }
        }
    }
}

#[test]
fn top_k_one_is_greedy() {
    let model = lively_model(byte_config("tiny"), 12);
    let tok = Tokenizer::bytes();
    let cfg = SamplingConfig {
        temperature: 1.0,
        top_k: 1,
        repetition_penalty: 1.0,
        max_new_tokens: 20,
        seed: 5,
        ..SamplingConfig::default()
    };
    assert_eq!(
        run_reply(&model, &tok, "if (", cfg).0,
        run_reply(&model, &tok, "if (", greedy(20)).0
    );
}

#[test]
fn bad_settings_and_prompts_are_errors() {
    let model = lively_model(ModelConfig::preset("tiny").unwrap(), 1);
    let tok = Tokenizer::bytes();
    // The byte tokenizer's 256 ids do not fit the tiny vocabulary of 37.
    let err = Generator::new(&model, &tok, "x", greedy(1)).err().unwrap();
    assert!(err.to_string().contains("tokenizer"), "{err}");
    let model = lively_model(byte_config("tiny"), 1);
    assert!(Generator::new(&model, &tok, "", greedy(1)).is_err());
    let cfg = SamplingConfig {
        top_p: 1.5,
        ..SamplingConfig::default()
    };
    assert!(
        Generator::new(&model, &tok, "x", cfg)
            .err()
            .unwrap()
            .to_string()
            .contains("top-p")
    );
}

// ----------------------------------------------------------------------------
// Background driver

#[test]
fn background_generation_streams_the_same_tokens_and_can_be_cancelled() {
    let model = Arc::new(lively_model(byte_config("tiny"), 21));
    let tok = Arc::new(Tokenizer::bytes());
    let cfg = SamplingConfig {
        max_new_tokens: 30,
        seed: 4,
        ..SamplingConfig::default()
    };
    let (want, ..) = run_reply(&model, &tok, "for (", cfg.clone());
    let handle = spawn_generation(
        Arc::clone(&model),
        Arc::clone(&tok),
        "for (".into(),
        cfg,
        None,
        None,
        || {},
    );
    let mut got = Vec::new();
    let stats = loop {
        match handle.events.recv().unwrap() {
            GenerationEvent::Token(t) => got.push(t.id),
            GenerationEvent::Finished(s) => break s,
            GenerationEvent::Error(e) => panic!("{e}"),
        }
    };
    assert_eq!(got, want);
    assert_eq!(stats.generated_tokens, 30);
    assert_eq!(stats.finish, Some(FinishReason::MaxTokens));

    // A reply far too long to finish on its own ends when cancelled.
    let cfg = SamplingConfig {
        max_new_tokens: 100_000_000,
        ..SamplingConfig::default()
    };
    let handle = spawn_generation(model, tok, "x".into(), cfg, None, None, || {});
    assert!(matches!(
        handle.events.recv().unwrap(),
        GenerationEvent::Token(_)
    ));
    handle.cancel();
    // Every token generated is reported, and the end comes promptly.
    let mut tokens = 1;
    let stats = loop {
        match handle
            .events
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("generation did not end within 30 s of the cancel")
        {
            GenerationEvent::Finished(s) => break s,
            GenerationEvent::Token(_) => tokens += 1,
            GenerationEvent::Error(e) => panic!("{e}"),
        }
    };
    assert_eq!(stats.finish, Some(FinishReason::Cancelled));
    assert_eq!(stats.generated_tokens, tokens);
}

#[test]
fn background_generation_runs_with_the_prepared_weights() {
    let model = Arc::new(lively_model(byte_config("tiny"), 21));
    let other = lively_model(byte_config("tiny"), 22);
    let tok = Arc::new(Tokenizer::bytes());
    let cfg = SamplingConfig {
        max_new_tokens: 20,
        seed: 4,
        ..SamplingConfig::default()
    };
    let (want, ..) = run_reply(&other, &tok, "for (", cfg.clone());
    let (plain, ..) = run_reply(&model, &tok, "for (", cfg.clone());
    assert_ne!(want, plain);
    let reply = |prepare: cllm_generate::PrepareModel| {
        let handle = spawn_generation(
            Arc::clone(&model),
            Arc::clone(&tok),
            "for (".into(),
            cfg.clone(),
            None,
            Some(prepare),
            || {},
        );
        let mut got = Vec::new();
        loop {
            match handle.events.recv().unwrap() {
                GenerationEvent::Token(t) => got.push(t.id),
                GenerationEvent::Finished(_) => return Ok(got),
                GenerationEvent::Error(e) => return Err(e),
            }
        }
    };
    let swapped = other.clone();
    assert_eq!(reply(Box::new(move |_| Ok(swapped))), Ok(want));
    let refused = reply(Box::new(|_| Err("cannot adapt".into())));
    assert_eq!(refused, Err(GenerateError::Prepare("cannot adapt".into())));
}

#[test]
fn background_generation_fills_a_middle_or_says_it_cannot() {
    let texts = ["int add(int a, int b) {\n    return a + b;\n}\n"; 20];
    let bpe = Tokenizer::train_bpe(&texts, 300, &mut |_, _| {}, &Default::default()).unwrap();
    let mut cfg = byte_config("tiny");
    cfg.vocab_size = cfg.vocab_size.max(bpe.vocab_size());
    let model = Arc::new(lively_model(cfg, 8));
    let infill = Infill {
        prefix: "int add(int a, int b) {\n    return ".into(),
        suffix: ";\n}\n".into(),
        extra: Vec::new(),
    };
    let sampling = SamplingConfig {
        max_new_tokens: 12,
        seed: 3,
        ..SamplingConfig::default()
    };
    let options = cllm_generate::decoder::DecodeOptions::default();
    let (mut reference, _) =
        Generator::infill(&model, &bpe, &infill, sampling.clone(), options).unwrap();
    let mut want = Vec::new();
    while let Some(t) = reference.next_token() {
        want.push(t.id);
    }
    let events = |tok: Tokenizer| {
        let handle = spawn_generation(
            Arc::clone(&model),
            Arc::new(tok),
            GenerationStart::Infill(infill.clone()),
            sampling.clone(),
            None,
            None,
            || {},
        );
        let mut got = Vec::new();
        loop {
            match handle.events.recv().unwrap() {
                GenerationEvent::Token(t) => got.push(t.id),
                GenerationEvent::Finished(_) => return Ok(got),
                GenerationEvent::Error(e) => return Err(e),
            }
        }
    };
    assert_eq!(events(bpe.clone()).unwrap(), want);
    assert!(!want.is_empty());
    // Bytes have no FIM tokens: the thread answers with the reason.
    assert_eq!(
        events(Tokenizer::bytes()).unwrap_err(),
        cllm_generate::GenerateError::NoInfill
    );
}

// ----------------------------------------------------------------------------
// C syntax check

#[test]
fn syntax_check_accepts_valid_c() {
    let programs = [
        "int main() { return 0; }",
        "#include <stdio.h>\n\nstatic int square(int x) {\n    return x * x;\n}\n\nint main(void) {\n    for (int i = 0; i < 3; i++) printf(\"%d\\n\", square(i));\n    return 0;\n}\n",
        "// Calculate the nth prime number\nint nth_prime(int n) { int c = 0, p = 1; while (c < n) { p++; int ok = 1; for (int d = 2; d * d <= p; d++) if (p % d == 0) { ok = 0; break; } c += ok; } return p; }\n",
        "typedef struct { double x, y; } point;\nvoid cllm_move(point *p, double dx) { p->x += dx; }\n",
    ];
    for src in programs {
        let r = check_c(src).unwrap();
        assert!(r.parses, "should parse: {src}\n{:?}", r.first_error);
        assert!(r.first_error.is_none());
    }
}

#[test]
fn syntax_check_flags_broken_c_with_its_position() {
    let r = check_c("int main( { return").unwrap();
    assert!(!r.parses);
    let e = r.first_error.unwrap();
    assert_eq!(e.line, 1);

    // The error sits on line 3, after a clean first function.
    let src = "int a(void) { return 1; }\n\nint b(void) { return 1 +; }\n";
    let r = check_c(src).unwrap();
    assert!(!r.parses);
    let e = r.first_error.unwrap();
    assert_eq!(e.line, 3, "{e:?}");
    assert!(e.column > 1 && e.column <= 27, "{e:?}");

    // An unclosed body: the parser assumes a `}` it never saw.
    let r = check_c("int main() {\n    return 0;\n").unwrap();
    assert!(!r.parses);
    let e = r.first_error.unwrap();
    assert!(e.line >= 2, "{e:?}");
    assert!(
        e.message.contains('}') || e.message.contains("unexpected"),
        "{e:?}"
    );
}

// ----------------------------------------------------------------------------
// Context

/// A model cut to the context it was trained at gives the same logits on
/// those positions, and no more positions than that.
#[test]
fn cutting_the_context_keeps_the_trained_positions() {
    let cfg = byte_config("tiny");
    let model = lively_model(cfg.clone(), 21);
    let n = cfg.n_ctx / 2;
    let tokens = random_tokens(n, cfg.vocab_size, 9);
    let mut ws = Workspace::new(&cfg, 1, n);
    let full = model.forward(&mut ws, Logits(&tokens));
    let cut = model.with_context(n).unwrap();
    assert_eq!(cut.config.n_ctx, n);
    assert_eq!(
        cut.params.len(),
        cllm_core::ParamLayout::new(&cut.config).total
    );
    let mut ws = Workspace::new(&cut.config, 1, n);
    let short = cut.forward(&mut ws, Logits(&tokens));
    assert_eq!(full, short);
    // The cache of the cut model holds n positions and no more.
    let mut cache = KvCache::new(&cut.config);
    cache.append(&cut, &tokens).unwrap();
    assert!(cache.append(&cut, &tokens[..1]).is_err());
}
