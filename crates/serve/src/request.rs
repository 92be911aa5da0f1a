//! Request validation: the JSON body of `/v1/completions` and
//! `/v1/chat/completions` checked field by field into a [`GenRequest`], or
//! an [`ApiError`] naming the field. Unknown fields are ignored (clients
//! send many); known fields of the wrong type or out of range are refused.

use super::api::ApiError;
use super::fields::{Fields, fresh_seed};
use super::fim_prompt;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{Prompt, SamplingConfig};
use serde_json::Value;

/// Which endpoint a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

/// What the server allows, from the model and `cllm serve`'s flags.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The model's context: longer prompts are refused.
    pub n_ctx: usize,
    /// Most `max_tokens` one request may ask for.
    pub max_tokens: usize,
    /// Whether the model carries a repository memory.
    pub has_memory: bool,
}

/// A checked generation request.
#[derive(Clone, Debug)]
pub struct GenRequest {
    pub endpoint: Endpoint,
    /// The request's prompt text (a chat already formatted), for `echo`.
    pub prompt: String,
    /// What the model reads: the text, the hole between it and `suffix`,
    /// or the ids of FIM marker text.
    pub start: Prompt,
    pub prompt_tokens: usize,
    pub sampling: SamplingConfig,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// Completions only: the prompt is returned before the completion.
    pub echo: bool,
    /// Completions only: this many alternatives per token (0..=5).
    pub logprobs: Option<usize>,
    /// Mix in the repository memory.
    pub memory: bool,
}

/// Stop strings a chat ends at, so the model does not write the next turn.
pub const CHAT_STOPS: [&str; 2] = ["\nUser:", "\nSystem:"];
/// Default `max_tokens`: OpenAI's 16 for completions; chat replies get more.
pub const DEFAULT_MAX_TOKENS_COMPLETION: usize = 16;
pub const DEFAULT_MAX_TOKENS_CHAT: usize = 256;
/// Editors send many (Continue: its template's markers, common and language stops).
const MAX_STOPS: usize = 64;

pub fn parse(
    endpoint: Endpoint,
    body: &[u8],
    tok: &Tokenizer,
    limits: &Limits,
) -> Result<GenRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(None, format!("the request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(
            None,
            "the request body must be a JSON object",
        ));
    };
    let f = Fields(&obj);

    let prompt = match endpoint {
        Endpoint::Completions => completion_prompt(&f)?,
        Endpoint::Chat => chat_prompt(&f)?,
    };
    let prompt_param = match endpoint {
        Endpoint::Completions => "prompt",
        Endpoint::Chat => "messages",
    };

    if let Some(n) = f.uint("n")?
        && n != 1
    {
        return Err(ApiError::invalid(Some("n"), "only n = 1 is supported"));
    }
    if let Some(n) = f.uint("best_of")?
        && n != 1
    {
        return Err(ApiError::invalid(
            Some("best_of"),
            "only best_of = 1 is supported",
        ));
    }
    for name in ["presence_penalty", "frequency_penalty"] {
        if let Some(v) = f.number(name)?
            && v != 0.0
        {
            return Err(ApiError::invalid(
                Some(name),
                format!(
                    "{name} is not supported; use repetition_penalty (above 1 discourages repeats)"
                ),
            ));
        }
    }
    // A suffix (fill in the middle, sent by editors' autocompletion) makes
    // the request an infill where the model has FIM tokens; a model without
    // them completes from the prefix only.
    let suffix = f.string("suffix")?.map(str::to_string);
    if f.get("logit_bias")
        .is_some_and(|v| v.as_object().is_none_or(|m| !m.is_empty()))
    {
        return Err(ApiError::invalid(
            Some("logit_bias"),
            "logit_bias is not supported",
        ));
    }

    let max_name = if f.get("max_tokens").is_none() && f.get("max_completion_tokens").is_some() {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    let max_tokens = match f.uint(max_name)? {
        Some(n) if n as usize > limits.max_tokens || n > usize::MAX as u64 => {
            return Err(ApiError::invalid(
                Some(max_name),
                format!(
                    "{max_name} is {n}, more than this server allows ({}; see `cllm serve --max-tokens-limit`)",
                    limits.max_tokens
                ),
            ));
        }
        Some(n) => n as usize,
        None => match endpoint {
            Endpoint::Completions => DEFAULT_MAX_TOKENS_COMPLETION,
            Endpoint::Chat => DEFAULT_MAX_TOKENS_CHAT,
        }
        .min(limits.max_tokens),
    };

    let mut sampling = SamplingConfig {
        max_new_tokens: max_tokens,
        seed: match f.uint("seed")? {
            Some(s) => s,
            None => fresh_seed(),
        },
        ..SamplingConfig::default()
    };
    if let Some(t) = f.number("temperature")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid(
                Some("temperature"),
                format!("temperature must be between 0 and 2, got {t}"),
            ));
        }
        sampling.temperature = t as f32;
    }
    if let Some(p) = f.number("top_p")? {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid(
                Some("top_p"),
                format!("top_p must be in (0, 1], got {p}"),
            ));
        }
        sampling.top_p = p as f32;
    }
    if let Some(k) = f.uint("top_k")? {
        sampling.top_k = k.min(u32::MAX as u64) as usize;
    }
    if let Some(r) = f.number("repetition_penalty")? {
        if !(r > 0.0 && r <= 100.0) {
            return Err(ApiError::invalid(
                Some("repetition_penalty"),
                format!("repetition_penalty must be in (0, 100] (1 = off), got {r}"),
            ));
        }
        sampling.repetition_penalty = r as f32;
    }
    if let Some(b) = f.boolean("balanced_brackets")? {
        sampling.balanced_brackets = b;
    }
    if let Some(b) = f.boolean("line_guard")? {
        sampling.line_guard = b;
    }
    sampling.stop = stops(&f)?;
    if endpoint == Endpoint::Chat {
        for s in CHAT_STOPS {
            if !sampling.stop.iter().any(|x| x == s) {
                sampling.stop.push(s.to_string());
            }
        }
    }
    sampling
        .validate()
        .map_err(|e| ApiError::invalid(None, e))?;

    let stream = f.boolean("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => Fields(o).boolean("include_usage")?.unwrap_or(false),
        Some(_) => {
            return Err(ApiError::invalid(
                Some("stream_options"),
                "stream_options must be an object",
            ));
        }
    };
    let (echo, logprobs) = match endpoint {
        Endpoint::Completions => {
            let echo = f.boolean("echo")?.unwrap_or(false);
            let logprobs = match f.uint("logprobs")? {
                Some(n) if n > 5 => {
                    return Err(ApiError::invalid(
                        Some("logprobs"),
                        format!("logprobs must be between 0 and 5, got {n}"),
                    ));
                }
                other => other.map(|n| n as usize),
            };
            if echo && logprobs.is_some() {
                return Err(ApiError::invalid(
                    Some("logprobs"),
                    "logprobs of the echoed prompt are not supported: drop echo or logprobs",
                ));
            }
            // A line the guard takes back would leave log-probabilities of
            // tokens that are not in the reply.
            if sampling.line_guard && logprobs.is_some() {
                return Err(ApiError::invalid(
                    Some("logprobs"),
                    "logprobs are not supported with line_guard (a line taken back would leave log-probabilities of tokens not in the reply): drop one",
                ));
            }
            (echo, logprobs)
        }
        Endpoint::Chat => {
            if f.boolean("logprobs")?.unwrap_or(false) {
                return Err(ApiError::invalid(
                    Some("logprobs"),
                    "logprobs are supported on /v1/completions only",
                ));
            }
            (false, None)
        }
    };
    let memory = f.memory(limits.has_memory)?;

    let (start, prompt_tokens) = match endpoint {
        Endpoint::Completions => {
            fim_prompt::completion(tok, limits.n_ctx, &prompt, suffix, max_tokens)
        }
        Endpoint::Chat => fim_prompt::plain(tok, limits.n_ctx, &prompt),
    }
    .map_err(|e| e.with_param(prompt_param))?;
    Ok(GenRequest {
        endpoint,
        prompt,
        start,
        prompt_tokens,
        sampling,
        stream,
        include_usage,
        echo,
        logprobs,
        memory,
    })
}

fn completion_prompt(f: &Fields) -> Result<String, ApiError> {
    match f.get("prompt") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => Ok(s.clone()),
            [] => Ok(String::new()),
            [_] => Err(ApiError::invalid(
                Some("prompt"),
                "prompt must be a string (token id arrays are not supported)",
            )),
            _ => Err(ApiError::invalid(
                Some("prompt"),
                "only one prompt per request is supported",
            )),
        },
        Some(_) => Err(ApiError::invalid(Some("prompt"), "prompt must be a string")),
    }
}

/// The messages as plain text (see [`super::api::CHAT_FORMAT`]).
fn chat_prompt(f: &Fields) -> Result<String, ApiError> {
    let param = Some("messages");
    let Some(value) = f.get("messages") else {
        return Err(ApiError::invalid(param, "messages is required"));
    };
    let Value::Array(messages) = value else {
        return Err(ApiError::invalid(param, "messages must be an array"));
    };
    if messages.is_empty() {
        return Err(ApiError::invalid(param, "messages must not be empty"));
    }
    let mut text = String::new();
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(ApiError::invalid(
                param,
                format!("messages[{i}] must be an object"),
            ));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.as_str(),
            _ => {
                return Err(ApiError::invalid(
                    param,
                    format!("messages[{i}].role must be a string"),
                ));
            }
        };
        let name = match role {
            "system" | "developer" => "System",
            "user" => "User",
            "assistant" => "Assistant",
            "tool" | "function" => "Tool",
            other => {
                return Err(ApiError::invalid(
                    param,
                    format!(
                        "messages[{i}].role \"{other}\" is not one of system, developer, user, assistant, tool"
                    ),
                ));
            }
        };
        let content = match m.get("content") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut s = String::new();
                for part in parts {
                    match part.get("text") {
                        Some(Value::String(t))
                            if part.get("type").and_then(Value::as_str) == Some("text") =>
                        {
                            s.push_str(t)
                        }
                        _ => {
                            return Err(ApiError::invalid(
                                param,
                                format!("messages[{i}].content: only text parts are supported"),
                            ));
                        }
                    }
                }
                s
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    param,
                    format!("messages[{i}].content must be a string or a list of text parts"),
                ));
            }
        };
        text.push_str(name);
        text.push_str(": ");
        text.push_str(&content);
        text.push('\n');
    }
    text.push_str("Assistant:");
    Ok(text)
}

fn stops(f: &Fields) -> Result<Vec<String>, ApiError> {
    let param = Some("stop");
    let list = match f.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut v = Vec::new();
            for item in items {
                match item {
                    Value::String(s) => v.push(s.clone()),
                    _ => {
                        return Err(ApiError::invalid(
                            param,
                            "stop must be a string or a list of strings",
                        ));
                    }
                }
            }
            v
        }
        Some(_) => {
            return Err(ApiError::invalid(
                param,
                "stop must be a string or a list of strings",
            ));
        }
    };
    if list.len() > MAX_STOPS {
        return Err(ApiError::invalid(
            param,
            format!("at most {MAX_STOPS} stop strings"),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(ApiError::invalid(param, "stop strings must not be empty"));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            n_ctx: 32,
            max_tokens: 100,
            has_memory: false,
        }
    }

    fn parse_c(body: &str) -> Result<GenRequest, ApiError> {
        parse(
            Endpoint::Completions,
            body.as_bytes(),
            &Tokenizer::bytes(),
            &limits(),
        )
    }

    #[test]
    fn fields_are_checked_and_named() {
        let r = parse_c(r#"{"prompt":"ab","max_tokens":5,"stop":"x","seed":3}"#).unwrap();
        assert!(!r.sampling.balanced_brackets, "off unless asked for");
        assert_eq!(r.sampling.max_new_tokens, 5);
        assert_eq!(r.sampling.stop, vec!["x"]);
        assert_eq!(r.sampling.seed, 3);
        assert_eq!(r.prompt_tokens, 2);
        for (body, param) in [
            (r#"{"prompt":"a","max_tokens":-1}"#, "max_tokens"),
            (r#"{"prompt":"a","max_tokens":101}"#, "max_tokens"),
            (r#"{"prompt":"a","max_tokens":"5"}"#, "max_tokens"),
            (r#"{"prompt":"a","temperature":"hot"}"#, "temperature"),
            (r#"{"prompt":"a","top_p":0}"#, "top_p"),
            (r#"{"prompt":"a","stop":[1]}"#, "stop"),
            (r#"{"prompt":"a","n":2}"#, "n"),
            (r#"{"prompt":"a","stream":"yes"}"#, "stream"),
            (
                r#"{"prompt":"a","balanced_brackets":1}"#,
                "balanced_brackets",
            ),
            (r#"{"prompt":"a","memory":true}"#, "memory"),
            (r#"{"prompt":5}"#, "prompt"),
        ] {
            let e = parse_c(body).unwrap_err();
            assert_eq!(e.status, 400, "{body}");
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
        let long = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(33));
        assert_eq!(
            parse_c(&long).unwrap_err().code,
            Some("context_length_exceeded")
        );
        assert_eq!(parse_c("{not json").unwrap_err().code, Some("invalid_json"));
    }

    #[test]
    fn balanced_brackets_can_be_asked_for() {
        let r = parse_c(r#"{"prompt":"ab","balanced_brackets":true}"#).unwrap();
        assert!(r.sampling.balanced_brackets);
        assert!(!r.sampling.line_guard, "off unless asked for");
        let r = parse_c(r#"{"prompt":"ab","line_guard":true}"#).unwrap();
        assert!(r.sampling.line_guard);
        assert!(!r.sampling.balanced_brackets);
        let err = parse_c(r#"{"prompt":"ab","line_guard":"yes"}"#).unwrap_err();
        assert!(err.message.contains("line_guard"), "{}", err.message);
        let err = parse_c(r#"{"prompt":"ab","line_guard":true,"logprobs":2}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("logprobs"));
        assert!(parse_c(r#"{"prompt":"ab","line_guard":false,"logprobs":2}"#).is_ok());
    }

    #[test]
    fn chat_messages_become_plain_text() {
        let body = r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}]}"#;
        let r = parse(
            Endpoint::Chat,
            body.as_bytes(),
            &Tokenizer::bytes(),
            &Limits {
                n_ctx: 1000,
                ..limits()
            },
        )
        .unwrap();
        assert_eq!(r.prompt, "System: Be brief.\nUser: Hi\nAssistant:");
        assert!(r.sampling.stop.iter().any(|s| s == "\nUser:"));
    }
}
