//! Filling a middle: the prompt the model reads, greedy choices against a
//! full forward pass over it, the reply ending at a special token or a full
//! context (never sliding the prefix and suffix away), and the refusals.

use std::sync::atomic::AtomicBool;

use cllm_core::{Gpt, Logits, ModelConfig, Workspace};
use cllm_data::fim::ExtraChunk;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::decoder::DecodeOptions;
use cllm_generate::{FinishReason, GenerateError, Generator, Infill, SamplingConfig};
use common::{byte_config, lively_model};

mod common;

fn fim_tokenizer() -> Tokenizer {
    let texts: Vec<String> = (0..40)
        .map(|i| format!("int f_{i}(int a) {{\n    if (a > {i}) {{\n        return a;\n    }}\n    return {i};\n}}\n"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Tokenizer::train_bpe(&refs, 300, &mut |_, _| {}, &AtomicBool::new(false)).unwrap()
}

fn model_for(tok: &Tokenizer, seed: u64) -> Gpt {
    let mut cfg = ModelConfig::preset("baby").unwrap(); // n_ctx 64
    cfg.vocab_size = tok.vocab_size();
    cfg.dropout = 0.0;
    lively_model(cfg, seed)
}

fn greedy(max_new_tokens: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        repetition_penalty: 1.0,
        max_new_tokens,
        ..SamplingConfig::default()
    }
}

fn argmax(row: &[f32]) -> u32 {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap() as u32
}

#[test]
fn the_model_reads_the_fim_prompt_and_greedy_follows_the_full_forward() {
    let tok = fim_tokenizer();
    let f = tok.fim_tokens().unwrap();
    let model = model_for(&tok, 4);
    let infill = Infill {
        prefix: "int f_3(int a) {\n    if (a > ".into(),
        suffix: ") {\n        return a;\n    }\n".into(),
        extra: Vec::new(),
    };
    let (mut g, fit) =
        Generator::infill(&model, &tok, &infill, greedy(8), DecodeOptions::default()).unwrap();
    let mut want = vec![f.suffix];
    want.extend(tok.encode(&infill.suffix));
    want.push(f.prefix);
    // The prefix's current line follows <fim_middle>, as trained.
    let (head, line) = infill
        .prefix
        .split_at(infill.prefix.rfind('\n').unwrap() + 1);
    want.extend(tok.encode(head));
    want.push(f.middle);
    want.extend(tok.encode(line));
    assert_eq!(g.context_tokens(), &want[..]);
    assert_eq!(fit.prompt_tokens, want.len());
    assert!(!fit.truncated);
    let cfg = &model.config;
    let mut ws = Workspace::new(cfg, 1, cfg.n_ctx);
    let mut seq = want.clone();
    while let Some(t) = g.next_token() {
        let full = model.forward(&mut ws, Logits(&seq));
        assert_eq!(t.id, argmax(&full[(seq.len() - 1) * cfg.vocab_size..]));
        seq.push(t.id);
    }
}

#[test]
fn a_middle_ends_at_a_special_token_or_a_full_context_and_never_slides() {
    let tok = fim_tokenizer();
    let long_prefix = "int f_1(int a) {\n    return a;\n}\n".repeat(8);
    let (mut ended_at_special, mut ended_full) = (0, 0);
    for seed in 0..24 {
        let model = model_for(&tok, seed);
        let infill = Infill {
            prefix: long_prefix.clone(),
            suffix: "\n}\n".into(),
            extra: vec![ExtraChunk {
                filename: "a.h".into(),
                text: "int f_2(int a);".into(),
            }],
        };
        // Room for a quarter of the context, asked for far more; sampled
        // hot, so special tokens come up.
        let cfg = SamplingConfig {
            temperature: 2.0,
            top_k: 0,
            top_p: 1.0,
            seed,
            ..greedy(500)
        };
        let (mut g, fit) =
            Generator::infill(&model, &tok, &infill, cfg, DecodeOptions::default()).unwrap();
        assert!(fit.truncated, "a 300-byte prefix does not fit 48 tokens");
        let prompt = g.context_tokens().to_vec();
        assert!(prompt.len() <= 48);
        let mut text = String::new();
        while let Some(t) = g.next_token() {
            text.push_str(&t.text_piece);
            assert!(g.context_tokens().starts_with(&prompt), "the window slid");
        }
        match g.finish_reason() {
            Some(FinishReason::EndOfText) => {
                ended_at_special += 1;
                assert!(tok.is_special(*g.generated_ids().last().unwrap()));
            }
            Some(FinishReason::MaxTokens) => {
                ended_full += 1;
                assert!(g.context_tokens().len() >= model.config.n_ctx - 1);
            }
            other => panic!("seed {seed}: ended with {other:?}"),
        }
        assert!(!text.contains("<fim_") && !text.contains("<|endoftext|>"));
        assert_eq!(text, g.text());
    }
    assert!(
        ended_at_special > 0 && ended_full > 0,
        "{ended_at_special} / {ended_full}"
    );
}

#[test]
fn models_without_fim_tokens_refuse_and_bad_ids_are_errors() {
    let cfg = byte_config("tiny");
    let model = lively_model(cfg, 1);
    let bytes = Tokenizer::bytes();
    let infill = Infill {
        prefix: "a".into(),
        suffix: "b".into(),
        extra: Vec::new(),
    };
    let err = Generator::infill(&model, &bytes, &infill, greedy(4), DecodeOptions::default())
        .err()
        .unwrap();
    assert_eq!(err, GenerateError::NoInfill);
    assert!(err.to_string().contains("infill is not supported"));
    let bad = Generator::from_ids(
        &model,
        &bytes,
        vec![1, 999],
        "",
        greedy(4),
        DecodeOptions::default(),
    );
    assert!(matches!(
        bad.err(),
        Some(GenerateError::TokenOutsideVocabulary { token: 999, .. })
    ));
    let empty = Generator::from_ids(
        &model,
        &bytes,
        vec![],
        "",
        greedy(4),
        DecodeOptions::default(),
    );
    assert_eq!(empty.err(), Some(GenerateError::EmptyPrompt));
}

#[test]
fn ids_ending_in_fim_middle_are_filled_as_a_middle() {
    let tok = fim_tokenizer();
    let f = tok.fim_tokens().unwrap();
    let model = model_for(&tok, 9);
    let mut ids = vec![f.prefix];
    ids.extend(tok.encode(&"x = 1;\n".repeat(6)));
    assert!(ids.len() + 2 < 64);
    ids.extend([f.suffix, f.middle]);
    let prompt = ids.clone();
    let mut g = Generator::from_ids(
        &model,
        &tok,
        ids,
        "x = 1;\n",
        greedy(500),
        DecodeOptions::default(),
    )
    .unwrap();
    while g.next_token().is_some() {
        assert!(g.context_tokens().starts_with(&prompt), "the window slid");
    }
}
