//! Why a server did not start. A bad request never ends up here: it is
//! answered with an HTTP status and OpenAI's error body ([`crate::api::ApiError`]).

/// Why [`crate::start`] refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("at least one decoding thread is needed (--workers)")]
    NoWorkers,
    #[error(
        "the model '{model}' cannot be served: its tokenizer has {tokenizer_tokens} tokens but the model only {model_tokens}: they do not belong together"
    )]
    ModelMismatch {
        model: String,
        tokenizer_tokens: usize,
        model_tokens: usize,
    },
    #[error(
        "cannot listen on {host}:{port}: the port is in use by another program; pick another with --port (0 picks a free one)"
    )]
    PortInUse { host: String, port: u16 },
    #[error("cannot listen on {host}:{port}: {source}")]
    Listen {
        host: String,
        port: u16,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot open the request log {path} (--log-requests): {source}")]
    RequestLog {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the server is not on an IP address")]
    NotIp,
    #[error("cannot start {what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
}
