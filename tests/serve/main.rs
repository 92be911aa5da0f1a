//! `cllm serve` over plain HTTP: a server started here on 127.0.0.1 (port 0)
//! with a tiny model, talked to with std's `TcpStream`: completions,
//! streaming, chat, stop strings, seeds, concurrent streams, the full
//! queue's 429, bad requests, client disconnects, the API key, and the CLI
//! stopped by Ctrl-C; fill in the middle as the editor plugins ask for it
//! (llama.cpp's `/infill`, OpenAI's `suffix`, FIM marker text, the `openai`
//! Python client), the prompt cache, CORS, the key's sources and the
//! request log. Waits are on conditions with deadlines, never sleeps.

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

mod access;
mod adapt;
mod api;
mod command;
mod fim_completions;
mod fim_model;
mod infill;
mod infill_stops;
mod load;
mod prompt_cache;
mod python_client;
mod refusals;

use fim_model::*;

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
    start_model(model, Tokenizer::bytes(), adjust)
}

fn start_model(model: Gpt, tok: Tokenizer, adjust: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    let mut config = ServeConfig {
        port: 0,
        max_tokens: 1_000_000,
        ..ServeConfig::default()
    };
    adjust(&mut config);
    let model = ServeModel {
        id: "tiny".into(),
        gpt: Arc::new(model),
        tok: Arc::new(tok),
        memory: None,
        adapt: None,
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
    let (status, _, raw) = call_raw(addr, method, path, body, extra);
    let value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    (status, value)
}

/// One whole request: status, headers (lower-cased names) and the body as
/// it came.
fn call_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra: &str,
) -> (u16, Vec<(String, String)>, String) {
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
    (status, headers, String::from_utf8(buf).unwrap())
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

    /// Every event's data to the end of the body, unparsed.
    fn all(mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(data) = self.next() {
            out.push(data);
        }
        out
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
