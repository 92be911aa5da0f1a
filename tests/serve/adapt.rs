//! `cllm serve --adapt on`: each request is answered by its own copy of the
//! model adapted to its prompt — the very reply the library gives with
//! those weights — and nothing of one request reaches the next; the prompt
//! cache is neither read nor filled with adapted rows.

use super::*;
use cllm_generate::decoder::DecodeOptions;
use cllm_generate::{Infill, Prompt};
use cllm_train::adapt::{AdaptSettings, adapt_to_prompt};

/// A step large enough that the tiny models' replies change.
const SETTINGS: AdaptSettings = AdaptSettings {
    enabled: true,
    lr: 0.3,
    decay: 0.0,
};

fn start_adapting(model: Gpt, tok: Tokenizer) -> ServerHandle {
    let config = ServeConfig {
        port: 0,
        workers: 1,
        ..ServeConfig::default()
    };
    let adapt: serve::Adapt = Arc::new(|gpt: &Gpt, ids: &[u32]| {
        adapt_to_prompt(gpt, ids, SETTINGS).map_err(|e| e.to_string())
    });
    let model = ServeModel {
        id: "tiny".into(),
        gpt: Arc::new(model),
        tok: Arc::new(tok),
        memory: None,
        adapt: Some(adapt),
    };
    serve::start(model, config).unwrap()
}

fn greedy(n: usize) -> SamplingConfig {
    SamplingConfig {
        temperature: 0.0,
        max_new_tokens: n,
        repetition_penalty: 1.0,
        ..SamplingConfig::default()
    }
}

/// The library's greedy reply to `prompt` and its first token's probability.
fn library_reply(model: &Gpt, prompt: &str) -> (String, f32) {
    let tok = Tokenizer::bytes();
    let prompt = Prompt::text(&tok, prompt).unwrap();
    let mut g = Generator::from_prompt(
        model,
        &tok,
        prompt,
        greedy(8),
        DecodeOptions::default(),
        None,
    )
    .unwrap();
    let first = g.next_token().unwrap().prob;
    while g.next_token().is_some() {}
    (g.text().to_string(), first)
}

#[test]
fn each_completion_comes_from_a_copy_adapted_to_its_own_prompt() {
    let model = lively_model();
    let (a, b) = ("total += count; total += ", "static char *name = na");
    let adapted_b = adapt_to_prompt(&model, &Tokenizer::bytes().encode(b), SETTINGS).unwrap();
    let (want, want_p) = library_reply(&adapted_b, b);
    let (_, plain_p) = library_reply(&model, b);
    assert!(
        (want_p.ln() - plain_p.ln()).abs() > 1e-3,
        "adapting must change the reply for the test to see it"
    );
    let server = start_adapting(model, Tokenizer::bytes());
    let ask = |prompt: &str| {
        let body = json!({"prompt": prompt, "max_tokens": 8, "temperature": 0,
            "logprobs": 1, "repetition_penalty": 1.0});
        let (status, v) = post(server.addr(), "/v1/completions", &body);
        assert_eq!(status, 200, "{v}");
        v
    };
    // B, then A (adapting to A), then B again: both B replies are B's own.
    let first = ask(b);
    ask(a);
    let again = ask(b);
    for v in [&first, &again] {
        let choice = &v["choices"][0];
        assert_eq!(choice["text"], want.as_str(), "{v}");
        let lp = choice["logprobs"]["token_logprobs"][0].as_f64().unwrap();
        assert!(
            (lp - want_p.ln() as f64).abs() < 1e-4,
            "{lp} vs {}",
            want_p.ln()
        );
        assert_eq!(
            v["usage"]["prompt_tokens_details"]["cached_tokens"], 0,
            "{v}"
        );
    }
}

#[test]
fn an_infill_is_filled_by_weights_adapted_to_its_prefix_and_suffix() {
    let model = lively_fim_model();
    let lines: Vec<&str> = C_TEXT.lines().collect();
    let prefix = format!("{}\n    total", lines[..lines.len() / 2].join("\n"));
    let suffix = format!(";\n{}\n", lines[lines.len() / 2..].join("\n"));
    let hole = Infill {
        prefix: prefix.clone(),
        suffix: suffix.clone(),
        extra: Vec::new(),
    };
    let tok = fim_tokenizer();
    let (prompt, _) = Prompt::infill(tok, model.config.n_ctx, &hole, 10).unwrap();
    let adapted = adapt_to_prompt(&model, prompt.document_ids(), SETTINGS).unwrap();
    let (want, _) = library_fill(&adapted, &hole, 10);
    let server = start_adapting(model, tok.clone());
    let body = json!({"input_prefix": prefix, "input_suffix": suffix, "n_predict": 10,
        "temperature": 0, "repeat_penalty": 1.0, "cache_prompt": true});
    // The warm-up editors send, then the same request twice.
    let (status, warm) = post(
        server.addr(),
        "/infill",
        &json!({
        "input_prefix": prefix, "input_suffix": suffix, "n_predict": 0}),
    );
    assert_eq!(status, 200, "{warm}");
    for _ in 0..2 {
        let (status, v) = post(server.addr(), "/infill", &body);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["content"], want.as_str(), "{v}");
        assert_eq!(v["timings"]["cache_n"], 0, "no cached rows: {v}");
    }
}
