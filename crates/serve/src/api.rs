//! The OpenAI wire format: the error body every failure answers with, and
//! the JSON of completions, chat completions and their streamed chunks.

use serde_json::{Value, json};

/// A refused or failed request: HTTP status and OpenAI's error body
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// 400: a field is missing, of the wrong type or out of range.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_string());
        self
    }

    /// 501 for `/infill` on a model without FIM tokens, in llama.cpp's
    /// words (clients match on them).
    pub fn infill_unsupported() -> ApiError {
        ApiError {
            status: 501,
            message: "Infill is not supported by this model: prefix token is missing. suffix token is missing. middle token is missing. \
                      (its tokenizer has no fill-in-the-middle tokens: models trained on bytes or before FIM only continue a prefix; train a new model to fill in the middle)"
                .into(),
            kind: "not_supported_error",
            param: None,
            code: None,
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::invalid(None, format!("{what} does not exist on this server"))
            .with_status(404)
            .with_code("not_found")
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: 401,
            message: "missing or wrong API key: send `Authorization: Bearer <key>` with the server's key (`cllm serve --api-key`, `--api-key-file` or CLLM_API_KEY)".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 429: the request queue is full.
    pub fn queue_full(limit: usize) -> ApiError {
        ApiError {
            status: 429,
            message: format!(
                "the server is busy: all decoding threads are working and {limit} requests are already waiting; retry later"
            ),
            kind: "rate_limit_error",
            param: None,
            code: Some("queue_full"),
        }
    }

    /// 503: the server is stopping.
    pub fn shutting_down() -> ApiError {
        ApiError {
            status: 503,
            message: "the server is shutting down".into(),
            kind: "server_error",
            param: None,
            code: Some("shutting_down"),
        }
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn body(&self) -> String {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
        .to_string()
    }

    /// llama.cpp's error body, `{"error": {"code": <status>, "message",
    /// "type"}}`, for its own endpoints (`/infill`).
    pub fn llama_body(&self) -> String {
        json!({"error": {
            "code": self.status,
            "message": self.message,
            "type": self.kind,
        }})
        .to_string()
    }
}

/// How a base model sees a chat: the messages as plain text, one
/// `Role: content` paragraph each, then `Assistant:` for it to continue.
pub const CHAT_FORMAT: &str = "base model, no chat template: the chat endpoint formats the messages as plain text, \
     one \"Role: content\" line per message (System, User, Assistant), then \"Assistant:\", and stops at \"\\nUser:\" or \"\\nSystem:\"";

/// The model card of `GET /v1/models`; `infill`: whether the model fills
/// in the middle (`/infill`, a `suffix`, FIM marker text).
pub fn model_card(id: &str, created: u64, n_ctx: usize, has_memory: bool, infill: bool) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": created,
        "owned_by": "cllm",
        "context_length": n_ctx,
        "repository_memory": has_memory,
        "infill": infill,
        "chat_format": CHAT_FORMAT,
    })
}

/// `finish_reason` as the API names it.
pub fn finish_name(reason: Option<cllm_generate::FinishReason>) -> &'static str {
    match reason {
        Some(cllm_generate::FinishReason::MaxTokens) => "length",
        _ => "stop",
    }
}

/// OpenAI's `usage`; `cached_tokens`: prompt tokens whose rows came from
/// the prompt cache.
pub fn usage(prompt_tokens: usize, completion_tokens: usize, cached_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    })
}
