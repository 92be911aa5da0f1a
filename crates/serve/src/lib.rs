//! `cllm serve`: an OpenAI-compatible HTTP server over a loaded model, with
//! llama.cpp's `/infill` for the editor plugins.
//!
//! - [`api`]: the error bodies and the JSON of answers and chunks.
//! - [`fields`]: typed access to a body's fields.
//! - [`request`]: OpenAI request bodies checked field by field.
//! - [`fim_prompt`]: the prompt a completion becomes (text, a hole before
//!   a `suffix`, FIM marker text).
//! - [`infill_request`], [`infill`]: llama.cpp's `/infill`, taken and
//!   answered as llama.cpp does.
//! - [`worker`]: decoding threads running the engine's generator.
//! - [`prompts`]: replies started from the shared prompt cache.
//! - [`http`]: routing, API key, CORS, the bounded queue (429).
//! - [`reply`]: JSON answers and server-sent events written to a client.
//! - [`request_log`]: `--log-requests`, one JSON line per request.
//! - [`error`]: why a server did not start ([`ServeError`]).
//!
//! Threads: a few HTTP threads read and check requests and put generation
//! requests on a bounded queue; `workers` decoding threads take them one
//! at a time. A full queue answers 429 at once.

/// A line on stderr, dropped when stderr is gone: a server whose terminal
/// closed keeps answering (`eprintln!` would panic).
#[macro_export]
macro_rules! log_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod api;
pub mod error;
pub mod fields;
pub mod fim_prompt;
pub mod http;
pub mod infill;
pub mod infill_request;
pub mod prompts;
pub mod reply;
pub mod request;
pub mod request_log;
pub mod worker;

pub use error::ServeError;

use cllm_core::Gpt;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::PromptCache;
use cllm_memory::Memory;
use request::Limits;
use request_log::RequestLog;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Adapts a copy of the model to a prompt's tokens before the reply
/// (dynamic evaluation; the caller's trainer does it, the server only calls
/// it). Each request adapts its own copy, dropped with its reply, so one
/// client's text never reaches another's reply.
pub type Adapt = Arc<dyn Fn(&Gpt, &[u32]) -> Result<Gpt, String> + Send + Sync>;

/// The model a server answers with.
#[derive(Clone)]
pub struct ServeModel {
    /// The name `/v1/models` lists (requests may name any model).
    pub id: String,
    pub gpt: Arc<Gpt>,
    pub tok: Arc<Tokenizer>,
    /// The repository memory; requests switch it with `"memory"`.
    pub memory: Option<Arc<Memory>>,
    /// When set, every request's reply comes from a copy of the model
    /// adapted to its prompt.
    pub adapt: Option<Adapt>,
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub host: String,
    /// 0 picks a free port ([`ServerHandle::addr`] says which).
    pub port: u16,
    /// When set, requests need `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Decoding threads: requests generated at once.
    pub workers: usize,
    /// Requests that may wait for a decoding thread; more get 429.
    pub queue: usize,
    /// Most `max_tokens` one request may ask for.
    pub max_tokens: usize,
    /// One line per request on stderr.
    pub log: bool,
    /// Origins a browser may call from (`*`: any); empty: no CORS headers.
    pub cors: Vec<String>,
    /// Appends one JSON line per request to this file.
    pub request_log: Option<PathBuf>,
    /// Prompts kept prefilled for the next requests (0: none).
    pub prompt_cache: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            api_key: None,
            workers: 4,
            queue: 16,
            max_tokens: 4096,
            log: false,
            cors: Vec::new(),
            request_log: None,
            prompt_cache: DEFAULT_PROMPT_CACHE,
        }
    }
}

/// Counters of a running server.
#[derive(Default, Debug)]
pub struct Stats {
    /// Requests waiting for a decoding thread.
    pub queued: AtomicUsize,
    /// Requests being generated.
    pub active: AtomicUsize,
    pub completed: AtomicU64,
    /// Streams whose client went away (their generation stopped).
    pub cancelled: AtomicU64,
    /// Requests refused with 429.
    pub rejected: AtomicU64,
    /// Tokens generated, all requests together.
    pub tokens: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub queued: usize,
    pub active: usize,
    pub completed: u64,
    pub cancelled: u64,
    pub rejected: u64,
    pub tokens: u64,
}

/// Prompts the server keeps prefilled by default: a few editors' worth of
/// recent requests.
pub const DEFAULT_PROMPT_CACHE: usize = 8;

pub(crate) struct Shared {
    model: ServeModel,
    config: ServeConfig,
    limits: Limits,
    stats: Stats,
    stopping: AtomicBool,
    created: u64,
    /// Recent prompts' key/value rows, shared by the decoding threads.
    prompts: Mutex<PromptCache>,
    request_log: Option<Arc<RequestLog>>,
}

/// HTTP threads reading requests.
const HTTP_THREADS: usize = 4;

/// A running server; dropping it stops it.
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    http_threads: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// Whether `host` names this machine only (loopback).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks the model, binds and starts the threads.
pub fn start(model: ServeModel, config: ServeConfig) -> Result<ServerHandle, ServeError> {
    if config.workers == 0 {
        return Err(ServeError::NoWorkers);
    }
    let (tokenizer_tokens, model_tokens) = (model.tok.vocab_size(), model.gpt.config.vocab_size);
    if tokenizer_tokens > model_tokens {
        return Err(ServeError::ModelMismatch {
            model: model.id.clone(),
            tokenizer_tokens,
            model_tokens,
        });
    }
    let host = config
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let server = tiny_http::Server::http((host.as_str(), config.port)).map_err(|source| {
        let in_use = source
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse);
        let (host, port) = (config.host.clone(), config.port);
        if in_use {
            ServeError::PortInUse { host, port }
        } else {
            ServeError::Listen { host, port, source }
        }
    })?;
    let addr = server.server_addr().to_ip().ok_or(ServeError::NotIp)?;
    let request_log = match &config.request_log {
        Some(path) => Some(Arc::new(RequestLog::open(path).map_err(|source| {
            ServeError::RequestLog {
                path: path.clone(),
                source,
            }
        })?)),
        None => None,
    };
    let server = Arc::new(server);
    let limits = Limits {
        n_ctx: model.gpt.config.n_ctx,
        max_tokens: config.max_tokens,
        has_memory: model.memory.is_some(),
    };
    let shared = Arc::new(Shared {
        model,
        limits,
        stats: Stats::default(),
        stopping: AtomicBool::new(false),
        created: worker::unix_now(),
        prompts: Mutex::new(PromptCache::new(config.prompt_cache)),
        request_log,
        config,
    });
    let (tx, rx) = crossbeam_channel::bounded::<worker::Job>(shared.config.queue);
    let mut workers = Vec::new();
    for i in 0..shared.config.workers {
        let (shared, rx) = (Arc::clone(&shared), rx.clone());
        let t = std::thread::Builder::new()
            .name(format!("cllm-serve-decode-{i}"))
            .spawn(move || worker::work(&shared, rx))
            .map_err(|source| ServeError::Thread {
                what: "a decoding thread",
                source,
            })?;
        workers.push(t);
    }
    drop(rx);
    let mut http_threads = Vec::new();
    for i in 0..HTTP_THREADS {
        let (shared, server, tx) = (Arc::clone(&shared), Arc::clone(&server), tx.clone());
        let t = std::thread::Builder::new()
            .name(format!("cllm-serve-http-{i}"))
            .spawn(move || {
                while !shared.stopping.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(100)) {
                        Ok(Some(req)) => http::handle(&shared, &tx, req),
                        Ok(None) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
            .map_err(|source| ServeError::Thread {
                what: "an HTTP thread",
                source,
            })?;
        http_threads.push(t);
    }
    Ok(ServerHandle {
        addr,
        shared,
        http_threads,
        workers,
    })
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, `http://host:port/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn model_id(&self) -> &str {
        &self.shared.model.id
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            queued: s.queued.load(Ordering::SeqCst),
            active: s.active.load(Ordering::SeqCst),
            completed: s.completed.load(Ordering::SeqCst),
            cancelled: s.cancelled.load(Ordering::SeqCst),
            rejected: s.rejected.load(Ordering::SeqCst),
            tokens: s.tokens.load(Ordering::SeqCst),
        }
    }

    /// Stops taking requests, cancels the ones being generated (within a
    /// token), answers queued ones 503, waits for every thread, and
    /// returns the final counts.
    pub fn stop(mut self) -> StatsSnapshot {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for t in self.http_threads.drain(..) {
            let _ = t.join();
        }
        for t in self.workers.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cllm_core::{ModelConfig, ParamLayout};

    fn model(vocab_size: usize) -> ServeModel {
        let mut cfg = ModelConfig::preset("tiny").unwrap();
        cfg.vocab_size = vocab_size;
        cfg.n_ctx = 16;
        let params = vec![0.0; ParamLayout::new(&cfg).total];
        ServeModel {
            id: "tiny".into(),
            gpt: Arc::new(Gpt::from_params(cfg, params).unwrap()),
            tok: Arc::new(Tokenizer::bytes()),
            memory: None,
            adapt: None,
        }
    }

    fn config(port: u16) -> ServeConfig {
        ServeConfig {
            port,
            workers: 1,
            ..ServeConfig::default()
        }
    }

    #[test]
    fn a_server_that_cannot_start_says_why() {
        let no_workers = ServeConfig {
            workers: 0,
            ..config(0)
        };
        let e = start(model(256), no_workers).err().unwrap();
        assert!(matches!(e, ServeError::NoWorkers), "{e}");
        assert!(e.to_string().contains("--workers"), "{e}");

        let e = start(model(100), config(0)).err().unwrap();
        assert!(
            matches!(
                e,
                ServeError::ModelMismatch {
                    tokenizer_tokens: 256,
                    model_tokens: 100,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("'tiny'"), "{e}");

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = start(model(256), config(port)).err().unwrap();
        assert!(
            matches!(e, ServeError::PortInUse { port: p, .. } if p == port),
            "{e}"
        );
        assert!(e.to_string().contains("--port"), "{e}");
    }
}
