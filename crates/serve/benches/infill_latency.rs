//! `/infill` latency as llama.vim sees it: its request shape with
//! `n_predict` 32, over HTTP on loopback, one decoding thread; a first
//! request (no cached prompt: a server with `--prompt-cache 0`), the same
//! request repeated (its prompt cached), and typing on (each request one
//! character longer than the last). Prints the wall-clock medians and the
//! server's own prefill and generation times.
//!
//! ```sh
//! cargo bench -p cllm-serve --bench infill_latency                 # small preset, random weights
//! CLLM_BENCH_MODEL=model.cllm cargo bench -p cllm-serve --bench infill_latency
//! ```
//!
//! Without a model it serves the `small` preset with random weights and a
//! 2048-token BPE tokenizer trained on the C fixture below, the size of
//! the default training run's model; random weights may end a middle
//! early (`predicted` says how many tokens came).

use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_serve::{ServeConfig, ServeModel, ServerHandle};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

const TEXT: &str = include_str!("../../generate/tests/fixtures/sqlite_functions.c");
const RUNS: usize = 30;
const NEW_TOKENS: usize = 32;

fn main() {
    let (gpt, tok, name) = model();
    if tok.fim_tokens().is_none() {
        eprintln!("{name}: its tokenizer has no FIM tokens: /infill cannot be measured");
        std::process::exit(1);
    }
    println!(
        "/infill latency, {name}: {} layers, {} channels, {} context tokens, {} vocabulary; {NEW_TOKENS} new tokens, {RUNS} runs each, 1 decoding thread",
        gpt.config.n_layer, gpt.config.n_embd, gpt.config.n_ctx, gpt.config.vocab_size
    );
    let (gpt, tok) = (Arc::new(gpt), Arc::new(tok));
    let serve = |prompt_cache: usize| -> ServerHandle {
        let model = ServeModel {
            id: name.clone(),
            gpt: Arc::clone(&gpt),
            tok: Arc::clone(&tok),
            memory: None,
            adapt: None,
        };
        let config = ServeConfig {
            port: 0,
            workers: 1,
            prompt_cache,
            ..ServeConfig::default()
        };
        cllm_serve::start(model, config).expect("the server starts")
    };
    let cold = serve(0);
    let cached = serve(cllm_serve::DEFAULT_PROMPT_CACHE);
    let (prefix, line, suffix) = cursor();
    // A seed whose middle runs the whole 32 tokens (a model may end one
    // sooner, random weights at any token).
    let seed = (1..=64)
        .find(|&s| {
            let (_, v) = timed(cold.addr(), &llama_vim_request(&prefix, &line, &suffix, s));
            v["timings/predicted_n"].as_u64() == Some(NEW_TOKENS as u64)
        })
        .unwrap_or(1);
    println!("  seed {seed}");
    let request = |line: &str| llama_vim_request(&prefix, line, &suffix, seed);

    let first: Vec<_> = (0..RUNS)
        .map(|_| timed(cold.addr(), &request(&line)))
        .collect();
    report("first request (nothing cached)", &first);
    timed(cached.addr(), &request(&line));
    let repeated: Vec<_> = (0..RUNS)
        .map(|_| timed(cached.addr(), &request(&line)))
        .collect();
    report("repeated prefix (prompt cached)", &repeated);
    let typing: Vec<_> = (0..RUNS)
        .map(|i| {
            let typed: String = format!("{line}{}", "x".repeat(i + 1));
            timed(cached.addr(), &request(&typed))
        })
        .collect();
    report("typing on (one more character each)", &typing);
}

/// The model to measure: `CLLM_BENCH_MODEL`, else the `small` preset with
/// random weights over a tokenizer trained on the fixture.
fn model() -> (Gpt, Tokenizer, String) {
    if let Ok(path) = std::env::var("CLLM_BENCH_MODEL") {
        let path = std::path::Path::new(&path);
        let ckpt = cllm_train::checkpoint::load(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tok = Tokenizer::from_json(&ckpt.tokenizer_json).expect("its tokenizer loads");
        let context = cllm_train::checkpoint::trained_context(&ckpt);
        let gpt = Gpt::from_params(ckpt.model, ckpt.params)
            .and_then(|m| m.with_context(context))
            .expect("the model builds");
        let name = path
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned());
        return (gpt, tok, name);
    }
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let tok = Tokenizer::train_bpe(&[TEXT], 2048, &mut |_, _| {}, &cancel).expect("a tokenizer");
    let mut cfg = ModelConfig::preset("small").expect("the small preset");
    cfg.vocab_size = tok.vocab_size();
    let gpt = Gpt::new(cfg, 1).expect("a model");
    (gpt, tok, "small preset, random weights".into())
}

/// llama.vim's cut of the fixture around a cursor inside a function body:
/// up to 256 lines before, the line up to the cursor, the rest of the line
/// and up to 64 lines after.
fn cursor() -> (String, String, String) {
    let lines: Vec<&str> = TEXT.lines().collect();
    let y = lines.len() * 2 / 3;
    let y = (y..lines.len())
        .find(|&i| lines[i].trim().len() > 12 && lines[i].starts_with(' '))
        .unwrap_or(y);
    let line = lines[y];
    let x = line.len() / 2;
    let x = (x..line.len())
        .find(|&i| line.is_char_boundary(i))
        .unwrap_or(0);
    let prefix = format!("{}\n", lines[y.saturating_sub(256)..y].join("\n"));
    let end = (y + 1 + 64).min(lines.len());
    let suffix = format!("{}\n{}\n", &line[x..], lines[y + 1..end].join("\n"));
    (prefix, line[..x].to_string(), suffix)
}

fn llama_vim_request(prefix: &str, line: &str, suffix: &str, seed: u64) -> String {
    json!({
        "id_slot": 0, "input_prefix": prefix, "input_suffix": suffix, "input_extra": [],
        "prompt": line, "n_predict": NEW_TOKENS, "stop": [], "n_indent": 0,
        "top_k": 40, "top_p": 0.90, "samplers": ["top_k", "top_p", "infill"],
        "stream": false, "cache_prompt": true, "t_max_prompt_ms": 500, "t_max_predict_ms": 1000,
        "seed": seed,
        "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms", "timings/predicted_n",
            "timings/predicted_ms", "timings/cache_n", "truncated", "tokens_cached"],
    })
    .to_string()
}

/// One request: wall-clock milliseconds and the answer.
fn timed(addr: SocketAddr, body: &str) -> (f64, Value) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let head = format!(
        "POST /infill HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .expect("send");
    let mut r = BufReader::new(s);
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("read");
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().expect("a length");
        }
    }
    let mut buf = vec![0; length];
    r.read_exact(&mut buf).expect("the body");
    let ms = start.elapsed().as_secs_f64() * 1e3;
    (ms, serde_json::from_slice(&buf).expect("JSON"))
}

fn report(what: &str, runs: &[(f64, Value)]) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let field = |k: &str| {
        median(
            runs.iter()
                .map(|(_, v)| v[k].as_f64().unwrap_or(f64::NAN))
                .collect(),
        )
    };
    let mut wall: Vec<f64> = runs.iter().map(|(ms, _)| *ms).collect();
    wall.sort_by(f64::total_cmp);
    println!(
        "  {what:<38} median {:6.1} ms  p90 {:6.1} ms  | prompt {:.0} tokens ({:.0} cached) {:5.1} ms, predicted {:.0} tokens {:5.1} ms",
        wall[wall.len() / 2],
        wall[wall.len() * 9 / 10],
        field("timings/prompt_n") + field("timings/cache_n"),
        field("timings/cache_n"),
        field("timings/prompt_ms"),
        field("timings/predicted_n"),
        field("timings/predicted_ms"),
    );
}
