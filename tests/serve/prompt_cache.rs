//! The prompt cache: a request sharing a beginning with an earlier one
//! reuses its rows (`timings.cache_n`, whole chunks of
//! `cllm_generate::PREFILL_CHUNK` rows) and gets the very answer a server
//! without the cache gives. Typing on at the end of a prefix too long for
//! the context keeps the prompt's beginning (the prefix is cut in steps).

use super::*;
use cllm_generate::PREFILL_CHUNK;

const CTX: usize = 4 * PREFILL_CHUNK;

/// llama.vim's request after typing `line` at the end of a long file.
fn typed(line: &str) -> Value {
    json!({
        "input_prefix": C_TEXT.repeat(3),
        "input_suffix": "\n}\n",
        "prompt": line,
        "n_predict": 10,
        "temperature": 0.7,
        "seed": 5,
    })
}

#[test]
fn typing_on_reuses_the_cached_prompt_and_changes_nothing_in_the_answer() {
    let cached = start_fim(lively_fim_model_ctx(CTX), |c| c.workers = 2);
    let cold = start_fim(lively_fim_model_ctx(CTX), |c| c.prompt_cache = 0);
    let lines = [
        "int f(struct point *p) {",
        "int f(struct point *p) { p",
        "int f(struct point *p) { p->",
        "int f(struct point *p) { p->x",
    ];
    let mut reused = Vec::new();
    for line in lines {
        let (status, warm) = post(cached.addr(), "/infill", &typed(line));
        assert_eq!(status, 200, "{warm}");
        let (_, fresh) = post(cold.addr(), "/infill", &typed(line));
        assert_eq!(fresh["timings"]["cache_n"], 0);
        for k in [
            "content",
            "tokens",
            "stop_type",
            "tokens_evaluated",
            "truncated",
        ] {
            assert_eq!(warm[k], fresh[k], "{line:?}: {k}");
        }
        assert_eq!(
            warm["truncated"], true,
            "the file is longer than the context"
        );
        let n = warm["timings"]["cache_n"].as_u64().unwrap();
        let evaluated = warm["timings"]["prompt_n"].as_u64().unwrap();
        assert_eq!(n + evaluated, warm["tokens_evaluated"].as_u64().unwrap());
        assert_eq!(n % PREFILL_CHUNK as u64, 0, "whole chunks");
        reused.push(n);
    }
    assert_eq!(reused[0], 0, "nothing cached yet");
    assert!(
        reused[1..].iter().all(|&n| n >= PREFILL_CHUNK as u64),
        "typing on keeps the beginning: {reused:?}"
    );
    // The same request again reuses every whole chunk before its last row.
    let (_, again) = post(cached.addr(), "/infill", &typed(lines[3]));
    let n = again["tokens_evaluated"].as_u64().unwrap();
    let chunk = PREFILL_CHUNK as u64;
    assert_eq!(again["timings"]["cache_n"], (n - 1) / chunk * chunk);
    // cache_prompt: false starts cold.
    let mut body = typed(lines[3]);
    body["cache_prompt"] = json!(false);
    let (_, v) = post(cached.addr(), "/infill", &body);
    assert_eq!(v["timings"]["cache_n"], 0);
    assert_eq!(v["content"], again["content"]);
}

#[test]
fn completions_start_from_the_cache_too() {
    let server = start_fim(lively_fim_model_ctx(CTX), |c| c.workers = 1);
    let prompt = &C_TEXT[..200];
    let body = json!({"prompt": prompt, "max_tokens": 4, "seed": 1});
    let (_, first) = post(server.addr(), "/v1/completions", &body);
    let (_, second) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(first["choices"], second["choices"]);
    let cached = |v: &Value| {
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(cached(&first), 0);
    assert!(cached(&second) >= PREFILL_CHUNK as u64, "{second}");
    let chat =
        json!({"messages": [{"role": "user", "content": prompt}], "max_tokens": 4, "seed": 1});
    let (_, a) = post(server.addr(), "/v1/chat/completions", &chat);
    let (_, b) = post(server.addr(), "/v1/chat/completions", &chat);
    assert_eq!(a["choices"], b["choices"]);
    assert!(cached(&b) >= PREFILL_CHUNK as u64, "{b}");
}
