//! `cllm serve` over plain HTTP: a server started here on 127.0.0.1 (port 0)
//! with a tiny model, talked to with std's `TcpStream`: completions,
//! streaming, chat, stop strings, seeds, concurrent streams, the full
//! queue's 429, bad requests, client disconnects, the API key, and the CLI
//! stopped by Ctrl-C. Waits are on conditions with deadlines, never sleeps.

use cllm_core::rng::Rng;
use cllm_core::{Gpt, ModelConfig, ParamLayout};
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{Generator, SamplingConfig};
use cllm_serve as serve;
use cllm_serve::{ServeConfig, ServeModel, ServerHandle, StatsSnapshot};
use cllm_train::TrainConfig;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn tiny_config() -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = 256;
    cfg.n_ctx = 32;
    cfg
}

/// Random weights large enough that sampling varies.
fn lively_model() -> Gpt {
    let cfg = tiny_config();
    let layout = ParamLayout::new(&cfg);
    let mut rng = Rng::new(5);
    let params = (0..layout.total).map(|_| rng.normal() * 0.3).collect();
    Gpt::from_params(cfg, params).unwrap()
}

/// A model whose next byte is always `}` (see tests/generate_cli.rs).
fn closing_model() -> Gpt {
    let cfg = tiny_config();
    let layout = ParamLayout::new(&cfg);
    let mut params = vec![0.0f32; layout.total];
    params[layout.ln_f_bias] = 1.0;
    params[layout.wte + b'}' as usize * cfg.n_embd] = 10.0;
    Gpt::from_params(cfg, params).unwrap()
}

fn start(model: Gpt, workers: usize, queue: usize) -> ServerHandle {
    start_with(model, |c| {
        c.workers = workers;
        c.queue = queue;
    })
}

fn start_with(model: Gpt, adjust: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    let mut config = ServeConfig {
        port: 0,
        max_tokens: 1_000_000,
        ..ServeConfig::default()
    };
    adjust(&mut config);
    let model = ServeModel {
        id: "tiny".into(),
        gpt: Arc::new(model),
        tok: Arc::new(Tokenizer::bytes()),
        memory: None,
    };
    serve::start(model, config).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

fn send_request(s: &mut TcpStream, method: &str, path: &str, body: &str, extra: &str) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    s.flush().unwrap();
}

/// Status line and headers (lower-cased names).
fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One whole request: status and JSON body.
fn call(addr: SocketAddr, method: &str, path: &str, body: &str, extra: &str) -> (u16, Value) {
    let mut s = connect(addr);
    send_request(&mut s, method, path, body, extra);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let len: usize = header(&headers, "content-length")
        .expect("a whole answer has a length")
        .parse()
        .unwrap();
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).unwrap();
    let value = serde_json::from_slice(&buf)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)));
    (status, value)
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    call(addr, "POST", path, &body.to_string(), "")
}

/// A server-sent event stream over chunked HTTP.
struct Events {
    r: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    buf: String,
}

impl Events {
    fn open(addr: SocketAddr, path: &str, body: &Value) -> Events {
        let mut s = connect(addr);
        send_request(&mut s, "POST", path, &body.to_string(), "");
        let mut r = BufReader::new(s);
        let (status, headers) = read_head(&mut r);
        Events {
            r,
            status,
            headers,
            buf: String::new(),
        }
    }

    /// The next event's data, or `None` at the end of the body.
    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..at + 2).collect();
                let data = event.trim_end().strip_prefix("data: ").expect("data: line");
                return Some(data.to_string());
            }
            let mut size = String::new();
            self.r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; n + 2];
            self.r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                return None;
            }
            self.buf.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        }
    }

    /// All events to `[DONE]`, parsed; checks the body ends there.
    fn collect(mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let data = self.next().expect("stream ended before [DONE]");
            if data == "[DONE]" {
                assert_eq!(self.next(), None, "nothing after [DONE]");
                return out;
            }
            out.push(serde_json::from_str(&data).unwrap());
        }
    }
}

fn wait_for(handle: &ServerHandle, what: &str, ok: impl Fn(&StatsSnapshot) -> bool) {
    let start = Instant::now();
    loop {
        let s = handle.stats();
        if ok(&s) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn text_of(v: &Value) -> &str {
    v["choices"][0]["text"].as_str().unwrap()
}

fn library_reply(model: &Gpt, prompt: &str, cfg: SamplingConfig) -> String {
    let tok = Tokenizer::bytes();
    let mut g = Generator::new(model, &tok, prompt, cfg).unwrap();
    while g.next_token().is_some() {}
    g.text().to_string()
}

#[test]
fn models_lists_the_model_and_its_chat_format() {
    let server = start(lively_model(), 1, 1);
    let (status, v) = call(server.addr(), "GET", "/v1/models", "", "");
    assert_eq!(status, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny");
    assert_eq!(v["data"][0]["context_length"], 32);
    assert!(
        v["data"][0]["chat_format"]
            .as_str()
            .unwrap()
            .contains("plain text")
    );
    let (status, v) = call(server.addr(), "GET", "/v1/models/tiny", "", "");
    assert_eq!((status, &v["id"]), (200, &json!("tiny")));
}

#[test]
fn completion_is_the_engine_reply_with_usage_and_finish_reason() {
    let model = lively_model();
    let expected = library_reply(
        &model,
        "int main",
        SamplingConfig {
            temperature: 0.0,
            max_new_tokens: 8,
            ..SamplingConfig::default()
        },
    );
    let server = start(model, 1, 1);
    let body =
        json!({"model": "anything", "prompt": "int main", "max_tokens": 8, "temperature": 0});
    let (status, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "tiny");
    assert_eq!(text_of(&v), expected);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 16);

    // A suffix (editors' fill in the middle) is accepted and ignored.
    let body = json!({"prompt": "int main", "suffix": "}", "max_tokens": 8, "temperature": 0});
    let (status, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!((status, text_of(&v)), (200, expected.as_str()), "{v}");
    // echo puts the prompt first; logprobs report each token.
    let body = json!({"prompt": "int main", "max_tokens": 8, "temperature": 0, "echo": true});
    let (_, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(text_of(&v), format!("int main{expected}"));
    let body = json!({"prompt": "int main", "max_tokens": 4, "temperature": 0, "logprobs": 2});
    let (status, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(status, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 4);
    for (x, top) in lp["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(lp["top_logprobs"].as_array().unwrap())
    {
        assert!(x.as_f64().unwrap() <= 0.0);
        assert!(!top.as_object().unwrap().is_empty());
        assert!(top.as_object().unwrap().len() <= 2);
    }
}

#[test]
fn same_seed_same_text_and_another_seed_differs() {
    let server = start(lively_model(), 2, 2);
    let body = |seed: u64| json!({"prompt": "x", "max_tokens": 24, "temperature": 1.0, "top_k": 0, "seed": seed});
    let (_, a) = post(server.addr(), "/v1/completions", &body(7));
    let (_, b) = post(server.addr(), "/v1/completions", &body(7));
    let (_, c) = post(server.addr(), "/v1/completions", &body(8));
    assert_eq!(text_of(&a), text_of(&b));
    assert_ne!(
        text_of(&a),
        text_of(&c),
        "24 tokens of 256 ids at temperature 1"
    );
}

#[test]
fn stop_strings_end_the_reply_before_them() {
    let server = start(closing_model(), 1, 1);
    for stop in [json!("}}}"), json!(["\u{1}", "}}}"])] {
        let body = json!({"prompt": "x", "max_tokens": 10, "temperature": 0, "stop": stop});
        let (status, v) = post(server.addr(), "/v1/completions", &body);
        assert_eq!(status, 200, "{v}");
        assert_eq!(text_of(&v), "");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }
    let body = json!({"prompt": "x", "max_tokens": 10, "temperature": 0, "stop": "\u{1}"});
    let (_, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(text_of(&v), "}".repeat(10));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn streaming_sends_each_piece_then_finish_usage_and_done() {
    let model = lively_model();
    let server = start(model, 1, 1);
    let body = json!({"prompt": "int", "max_tokens": 20, "temperature": 0.9, "seed": 3});
    let (_, whole) = post(server.addr(), "/v1/completions", &body);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = Events::open(server.addr(), "/v1/completions", &streamed);
    assert_eq!(events.status, 200);
    assert_eq!(
        header(&events.headers, "content-type"),
        Some("text/event-stream")
    );
    let chunks = events.collect();
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 20);
    let (finish, pieces) = rest.split_last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert!(
        pieces
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert!(pieces.len() > 1, "tokens arrive one by one");
    let text: String = pieces.iter().map(text_of).collect();
    assert_eq!(text, text_of(&whole), "streamed and whole replies agree");
}

#[test]
fn chat_formats_messages_as_text_whole_and_streamed() {
    let server = start(closing_model(), 1, 1);
    let body =
        json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let (status, v) = post(server.addr(), "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "}}}}}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let prompt = "User: hi\nAssistant:";
    assert_eq!(v["usage"]["prompt_tokens"], prompt.len());

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = Events::open(server.addr(), "/v1/chat/completions", &streamed).collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "}}}}}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

/// A stream that runs until its client leaves.
fn endless() -> Value {
    json!({"prompt": "x", "max_tokens": 1_000_000, "temperature": 0, "stream": true})
}

#[test]
fn concurrent_streams_do_not_block_each_other_and_disconnects_cancel() {
    let server = start(closing_model(), 4, 4);
    let mut streams: Vec<Events> = (0..4)
        .map(|_| Events::open(server.addr(), "/v1/completions", &endless()))
        .collect();
    // Every stream delivers while all four are open.
    for round in 0..3 {
        for (i, s) in streams.iter_mut().enumerate() {
            assert_eq!(s.status, 200);
            let data = s.next().unwrap();
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(text_of(&v), "}", "stream {i} round {round}");
        }
    }
    assert_eq!(server.stats().active, 4);
    drop(streams);
    wait_for(&server, "4 cancelled streams", |s| {
        s.cancelled == 4 && s.active == 0
    });
    // The decoding threads are free again.
    let (status, _) = post(
        server.addr(),
        "/v1/completions",
        &json!({"prompt": "x", "max_tokens": 2}),
    );
    assert_eq!(status, 200);
}

#[test]
fn a_full_queue_answers_429_and_frees_when_a_client_leaves() {
    let server = start(closing_model(), 1, 1);
    let mut running = Events::open(server.addr(), "/v1/completions", &endless());
    running.next().unwrap();
    wait_for(&server, "one active", |s| s.active == 1);
    // The second waits in the queue ...
    let mut waiting = connect(server.addr());
    send_request(
        &mut waiting,
        "POST",
        "/v1/completions",
        &endless().to_string(),
        "",
    );
    wait_for(&server, "one queued", |s| s.queued == 1);
    // ... and the third finds it full.
    let (status, v) = post(server.addr(), "/v1/completions", &json!({"prompt": "x"}));
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(server.stats().rejected, 1);
    // The running client leaves: its generation stops and the waiting one starts.
    drop(running);
    let mut waiting = BufReader::new(waiting);
    let (status, _) = read_head(&mut waiting);
    assert_eq!(status, 200);
    wait_for(&server, "the first cancelled, the second running", |s| {
        s.cancelled == 1 && s.active == 1 && s.queued == 0
    });
    drop(waiting);
    wait_for(&server, "both cancelled", |s| {
        s.cancelled == 2 && s.active == 0
    });
}

#[test]
fn bad_requests_get_openai_error_bodies_and_the_server_carries_on() {
    let server = start_with(lively_model(), |c| c.max_tokens = 100);
    let addr = server.addr();
    let long_prompt = "a".repeat(40);
    let cases: Vec<(&str, &str, String, u16, Option<&str>)> = vec![
        ("POST", "/v1/completions", "{\"prompt\": ".into(), 400, None),
        ("POST", "/v1/completions", "[1, 2]".into(), 400, None),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":-1}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":1000000000000}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":"ten"}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":2.5}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","temperature":"hot"}"#.into(),
            400,
            Some("temperature"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","temperature":-0.5}"#.into(),
            400,
            Some("temperature"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","top_p":1.5}"#.into(),
            400,
            Some("top_p"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","top_k":-3}"#.into(),
            400,
            Some("top_k"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","repetition_penalty":0}"#.into(),
            400,
            Some("repetition_penalty"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","stop":5}"#.into(),
            400,
            Some("stop"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","stop":[""]}"#.into(),
            400,
            Some("stop"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","n":3}"#.into(),
            400,
            Some("n"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","seed":-1}"#.into(),
            400,
            Some("seed"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","stream":"yes"}"#.into(),
            400,
            Some("stream"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","logprobs":9}"#.into(),
            400,
            Some("logprobs"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","suffix":5}"#.into(),
            400,
            Some("suffix"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","memory":true}"#.into(),
            400,
            Some("memory"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":["a","b"]}"#.into(),
            400,
            Some("prompt"),
        ),
        (
            "POST",
            "/v1/completions",
            format!(r#"{{"prompt":"{long_prompt}"}}"#),
            400,
            Some("prompt"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"prompt":"a"}"#.into(),
            400,
            Some("messages"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"robot","content":"a"}]}"#.into(),
            400,
            Some("messages"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"a"}],"logprobs":true}"#.into(),
            400,
            Some("logprobs"),
        ),
        ("GET", "/v1/completions", String::new(), 405, None),
        ("POST", "/v1/models", "{}".into(), 405, None),
        ("POST", "/v1/embeddings", "{}".into(), 404, None),
        ("GET", "/v1/models/other", String::new(), 404, None),
    ];
    for (method, path, body, status, param) in cases {
        let (got, v) = call(addr, method, path, &body, "");
        assert_eq!(got, status, "{method} {path} {body}: {v}");
        let e = &v["error"];
        assert!(!e["message"].as_str().unwrap().is_empty(), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        assert_eq!(e["param"].as_str(), param, "{body}: {v}");
    }
    let (got, v) = post(addr, "/v1/completions", &json!({"prompt": long_prompt}));
    assert_eq!(
        (got, &v["error"]["code"]),
        (400, &json!("context_length_exceeded"))
    );
    // A body over the limit is refused without reading it all.
    let huge = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(5 << 20));
    let (got, _) = call(addr, "POST", "/v1/completions", &huge, "");
    assert_eq!(got, 413);
    // Still serving.
    let (got, v) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "a", "max_tokens": 3}),
    );
    assert_eq!(got, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[test]
fn the_api_key_is_required_when_set() {
    let server = start_with(lively_model(), |c| c.api_key = Some("s3cret".into()));
    let (status, v) = call(server.addr(), "GET", "/v1/models", "", "");
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (status, _) = call(
        server.addr(),
        "GET",
        "/v1/models",
        "",
        "Authorization: Bearer wrong\r\n",
    );
    assert_eq!(status, 401);
    let (status, _) = call(
        server.addr(),
        "GET",
        "/v1/models",
        "",
        "Authorization: Bearer s3cret\r\n",
    );
    assert_eq!(status, 200);
}

#[test]
fn stopping_the_server_ends_running_streams() {
    let server = start(closing_model(), 1, 1);
    let mut running = Events::open(server.addr(), "/v1/completions", &endless());
    running.next().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.stop());
    });
    let stats = rx.recv_timeout(DEADLINE).expect("stop returns");
    assert_eq!((stats.active, stats.queued), (0, 0));
    // The stream is ended properly: a finish chunk, [DONE], end of body.
    let rest = running.collect();
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

fn save_checkpoint(path: &std::path::Path, model: &Gpt) {
    let tokenizer_json = Tokenizer::bytes().to_json();
    let train_config = TrainConfig::default();
    let state = TrainingState::start();
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &tokenizer_json,
            train_config: &train_config,
            state: &state,
            memory: None,
        },
    )
    .unwrap();
}

#[test]
fn cli_serves_a_checkpoint_and_ctrl_c_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.cllm");
    save_checkpoint(&path, &closing_model());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(["serve", "--model", path.to_str().unwrap(), "--port", "0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving tiny "), "{line}");
    let url = line.trim().rsplit(' ').next().unwrap();
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/v1"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(addr.ip().is_loopback());
    let (status, v) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "x", "max_tokens": 4}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(text_of(&v), "}}}}");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "cllm serve did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("stopping the server"), "{rest}");
    assert!(rest.contains("1 requests answered"), "{rest}");
}
