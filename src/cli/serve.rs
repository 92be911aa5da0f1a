//! `cllm serve`: the model behind an OpenAI-compatible HTTP API on this
//! machine (loopback unless `--host` says otherwise) until Ctrl-C.

use super::eval::Switch;
use super::interrupt::Interrupts;
use clap::Args;
use cllm_serve as serve;
use cllm_serve::{ServeConfig, ServeModel};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The `.cllm` checkpoint or model to serve
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Address to listen on; anything but loopback must be asked for here
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every request but /health (a key
    /// given here shows in `ps` to other users of the machine: prefer
    /// --api-key-file or the CLLM_API_KEY environment variable)
    #[arg(long, value_name = "KEY", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Read the API key from the first line of FILE (else CLLM_API_KEY is used
    /// when set)
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Let web pages from ORIGIN call the server (CORS headers, preflight
    /// OPTIONS answered); repeat for more origins; '*' allows any
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Vec<String>,
    /// Append one JSON line per request to FILE (time, endpoint, status,
    /// prompt/cached/predicted tokens, milliseconds; never the prompt or the key)
    #[arg(long, value_name = "FILE")]
    pub log_requests: Option<PathBuf>,
    /// Recent prompts kept prefilled, so that a request sharing a beginning
    /// with one computes only the rest (0 = off)
    #[arg(long, value_name = "N", default_value_t = serve::DEFAULT_PROMPT_CACHE)]
    pub prompt_cache: usize,
    /// Decoding threads (requests generated at once; 0 = one per core)
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Requests that may wait for a decoding thread; more get HTTP 429
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Most max_tokens one request may ask for
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_limit: usize,
    /// Load the repository memory saved with the model (requests switch it with "memory")
    #[arg(long, value_enum, default_value_t = Switch::On)]
    pub memory: Switch,
    /// Do not print a line per request
    #[arg(long)]
    pub quiet: bool,
    /// Each request's reply comes from its own copy of the model adapted to
    /// its prompt (nothing carries over to other requests or clients; the
    /// prompt cache is not used then)
    #[command(flatten)]
    pub adapt: super::eval::AdaptArgs,
}

/// The environment variable an API key may come from.
pub const API_KEY_ENV: &str = "CLLM_API_KEY";

/// The key from --api-key, --api-key-file or CLLM_API_KEY, in that order.
fn api_key(args: &ServeArgs) -> Result<Option<String>, String> {
    if let Some(key) = &args.api_key {
        return Ok(Some(key.clone()));
    }
    let (key, from) = if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
        let first = text.lines().next().unwrap_or("").trim().to_string();
        (first, format!("the API key file {}", path.display()))
    } else {
        match std::env::var(API_KEY_ENV) {
            Ok(v) => (v.trim().to_string(), API_KEY_ENV.to_string()),
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(e) => return Err(format!("{API_KEY_ENV}: {e}")),
        }
    };
    if key.is_empty() {
        return Err(format!(
            "{from} gives an empty API key: put the key there, or {}",
            if args.api_key_file.is_some() {
                "leave out --api-key-file".to_string()
            } else {
                format!("unset {API_KEY_ENV}")
            }
        ));
    }
    Ok(Some(key))
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    let api_key = api_key(&args)?;
    let (gpt, tok, memory, saved_adapt) = super::generate::load_model(&args.model, args.memory)?;
    let adapt_settings = args
        .adapt
        .resolve(saved_adapt)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let id = args
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cllm".into());
    let n_ctx = gpt.config.n_ctx;
    let infill = tok.fim_tokens().is_some();
    let model = ServeModel {
        id,
        gpt: Arc::new(gpt),
        tok: Arc::new(tok),
        memory: memory.map(Arc::new),
        adapt: adapt_settings.map(|settings| -> serve::Adapt {
            Arc::new(move |gpt: &cllm_core::Gpt, ids: &[u32]| {
                cllm_train::adapt::adapt_to_prompt(gpt, ids, settings).map_err(|e| e.to_string())
            })
        }),
    };
    let workers = if args.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.workers
    };
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        api_key: api_key.clone(),
        workers,
        queue: args.queue,
        max_tokens: args.max_tokens_limit,
        log: !args.quiet,
        cors: args.cors.clone(),
        request_log: args.log_requests.clone(),
        prompt_cache: args.prompt_cache,
    };
    let interrupts = Interrupts::watch("quitting without waiting for replies")?;
    let has_memory = model.memory.is_some();
    let handle = serve::start(model, config).map_err(|e| e.to_string())?;
    cllm_serve::log_line!(
        "serving {} ({} context tokens, {}) at {}",
        handle.model_id(),
        n_ctx,
        if has_memory {
            "with its repository memory"
        } else {
            "no repository memory"
        },
        handle.base_url()
    );
    cllm_serve::log_line!(
        "  {workers} decoding threads, up to {} waiting requests; endpoints /v1/models, /v1/completions, /v1/chat/completions, /infill{}",
        args.queue,
        if infill {
            ""
        } else {
            " (this model has no fill-in-the-middle tokens: /infill answers 501)"
        }
    );
    if let Some(a) = adapt_settings {
        cllm_serve::log_line!(
            "  adapting a copy of the model to each request's prompt (lr {}, decay {}); the prompt cache is not used",
            a.lr,
            a.decay
        );
    }
    if let Some(path) = &args.log_requests {
        cllm_serve::log_line!("  logging requests to {}", path.display());
    }
    if !serve::is_loopback(&args.host) {
        if api_key.is_none() {
            cllm_serve::log_line!(
                "  warning: listening on {} without --api-key: anyone who can reach this machine can use the model",
                args.host
            );
        } else {
            cllm_serve::log_line!("  listening beyond this machine; requests need the API key");
        }
    }
    cllm_serve::log_line!("  Ctrl-C stops the server");
    let signal = interrupts
        .first
        .recv()
        .map_err(|_| "the Ctrl-C watcher stopped".to_string())?;
    cllm_serve::log_line!("\n{}: stopping the server", signal.name());
    let stats = handle.stop();
    cllm_serve::log_line!(
        "stopped: {} requests answered, {} cancelled by their client, {} refused as busy, {} tokens generated",
        stats.completed,
        stats.cancelled,
        stats.rejected,
        stats.tokens
    );
    Ok(())
}
