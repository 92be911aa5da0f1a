//! `POST /infill` as llama.cpp's server takes it (what llama.vim and
//! llama.vscode send): `input_prefix`, `input_suffix`, `prompt` (the
//! current line up to the cursor, appended to the prefix), `input_extra`
//! (`[{filename, text}]` chunks of other files, placed before the prefix
//! while they fit), `n_predict` (`0`: only prefill the prompt cache, as the
//! plugins' warm-up asks; negative: until the context is full), sampling
//! with llama.cpp's defaults (temperature 0.8, top-k 40, top-p 0.95, no
//! repetition penalty), `stop`, `n_indent`, `t_max_predict_ms`, `stream`,
//! `cache_prompt`, `response_fields`, `n_cmpl`. Fields llama.cpp has and
//! this server does not use (`samplers`, `id_slot`, `t_max_prompt_ms`,
//! `min_p`, ...) are accepted and ignored.

use super::api::ApiError;
use super::fields::{Fields, fresh_seed};
use super::fim_prompt;
use super::request::Limits;
use cllm_data::fim::ExtraChunk;
use cllm_data::tokenizer::Tokenizer;
use cllm_generate::{Infill, InfillFit, Prompt, SamplingConfig};
use serde_json::Value;

/// Most completions one request may ask for with `n_cmpl`.
pub const MAX_COMPLETIONS: usize = 8;

/// A checked `/infill` request.
#[derive(Clone, Debug)]
pub struct InfillRequest {
    pub prompt: Prompt,
    pub fit: InfillFit,
    pub sampling: SamplingConfig,
    /// `n_predict: 0`: prefill the prompt into the cache, generate nothing.
    pub warm_up: bool,
    pub stream: bool,
    /// Completions, each with the next seed (`n_cmpl`).
    pub completions: usize,
    /// Start from a cached prompt sharing the beginning.
    pub cache_prompt: bool,
    /// Only these fields of the answer (`a/b` names a nested one), under
    /// those names, as llama.cpp's `response_fields` gives them.
    pub response_fields: Vec<String>,
    /// After this many milliseconds of generation, stop at the next new line.
    pub t_max_predict_ms: Option<u64>,
    /// Stop before a line (after the first) indented less than this.
    pub n_indent: usize,
    pub memory: bool,
}

pub fn parse(body: &[u8], tok: &Tokenizer, limits: &Limits) -> Result<InfillRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(
            None,
            "the request body must be a JSON object",
        ));
    };
    let f = Fields(&obj);
    let required = |name: &str| -> Result<String, ApiError> {
        f.string(name)?
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(Some(name), format!("\"{name}\" is required")))
    };
    let input_prefix = required("input_prefix")?;
    let input_suffix = required("input_suffix")?;
    let line = f.string("prompt")?.unwrap_or("");
    let extra = extra_chunks(&f)?;

    let most = limits.max_tokens.min(limits.n_ctx);
    let n_predict = match f.int("n_predict")?.or(f.int("max_tokens")?) {
        Some(n) if n < 0 => most,
        Some(n) if n as u64 > limits.max_tokens as u64 => {
            return Err(ApiError::invalid(
                Some("n_predict"),
                format!(
                    "n_predict is {n}, more than this server allows ({}; see `cllm serve --max-tokens-limit`)",
                    limits.max_tokens
                ),
            ));
        }
        Some(n) => n as usize,
        None => most,
    };
    let sampling = sampling(&f, n_predict)?;
    let completions = match f.int("n_cmpl")? {
        None => 1,
        Some(n) if (1..=MAX_COMPLETIONS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                Some("n_cmpl"),
                format!("n_cmpl must be between 1 and {MAX_COMPLETIONS}, got {n}"),
            ));
        }
    };
    let stream = f.boolean("stream")?.unwrap_or(false);
    if stream && completions > 1 {
        return Err(ApiError::invalid(
            Some("n_cmpl"),
            "several completions (n_cmpl) cannot be streamed: drop stream or n_cmpl",
        ));
    }
    let memory = f.memory(limits.has_memory)?;
    // Accepted, not used: llama.cpp's sampler order and slot choice.
    accepted(&f, "samplers")?;
    f.int("id_slot")?;
    f.int("t_max_prompt_ms")?;

    let hole = Infill {
        prefix: format!("{input_prefix}{line}"),
        suffix: input_suffix,
        extra,
    };
    let (prompt, fit) = fim_prompt::infill(tok, limits.n_ctx, &hole, sampling.max_new_tokens)?;
    Ok(InfillRequest {
        prompt,
        fit,
        warm_up: n_predict == 0,
        sampling,
        stream,
        completions,
        cache_prompt: f.boolean("cache_prompt")?.unwrap_or(true),
        response_fields: f.strings("response_fields")?,
        t_max_predict_ms: f
            .int("t_max_predict_ms")?
            .filter(|&t| t > 0)
            .map(|t| t as u64),
        n_indent: f.int("n_indent")?.unwrap_or(0).max(0) as usize,
        memory,
    })
}

/// `input_extra`, checked as llama.cpp checks it.
fn extra_chunks(f: &Fields) -> Result<Vec<ExtraChunk>, ApiError> {
    let param = Some("input_extra");
    let items = match f.get("input_extra") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::invalid(
                param,
                "\"input_extra\" must be an array of {\"filename\": string, \"text\": string}",
            ));
        }
    };
    items
        .iter()
        .map(|chunk| {
            let text = chunk.get("text").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(
                    param,
                    "extra_context chunk must contain a \"text\" field with a string value",
                )
            })?;
            let filename = match chunk.get("filename") {
                None | Some(Value::Null) => "",
                Some(Value::String(s)) => s,
                Some(_) => {
                    return Err(ApiError::invalid(
                        param,
                        "extra_context chunk's \"filename\" field must be a string",
                    ));
                }
            };
            Ok(ExtraChunk {
                filename: filename.to_string(),
                text: text.to_string(),
            })
        })
        .collect()
}

/// llama.cpp's sampling fields and defaults.
fn sampling(f: &Fields, max_new_tokens: usize) -> Result<SamplingConfig, ApiError> {
    let mut s = SamplingConfig {
        max_new_tokens,
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        repetition_penalty: 1.0,
        seed: match f.int("seed")? {
            Some(s) if s >= 0 => s as u64,
            _ => fresh_seed(),
        },
        stop: f.strings("stop")?,
        ..SamplingConfig::default()
    };
    if let Some(t) = f.number("temperature")? {
        // llama.cpp: a temperature at or below 0 picks the most probable.
        s.temperature = t.max(0.0) as f32;
    }
    if let Some(k) = f.int("top_k")? {
        s.top_k = k.max(0) as usize;
    }
    if let Some(p) = f.number("top_p")? {
        if !(0.0..=1.0).contains(&p) {
            return Err(ApiError::invalid(
                Some("top_p"),
                format!("top_p must be between 0 and 1, got {p}"),
            ));
        }
        // 0 keeps the most probable token only.
        s.top_p = (p as f32).max(f32::MIN_POSITIVE);
    }
    for name in ["repeat_penalty", "repetition_penalty"] {
        if let Some(r) = f.number(name)? {
            if !(r > 0.0 && r <= 100.0) {
                return Err(ApiError::invalid(
                    Some(name),
                    format!("{name} must be in (0, 100] (1 = off), got {r}"),
                ));
            }
            s.repetition_penalty = r as f32;
        }
    }
    s.stop.retain(|x| !x.is_empty());
    s.validate().map_err(|e| ApiError::invalid(None, e))?;
    Ok(s)
}

/// A field accepted for compatibility: a string or a list of strings.
fn accepted(f: &Fields, name: &str) -> Result<(), ApiError> {
    match f.get(name) {
        None | Some(Value::String(_)) => Ok(()),
        Some(_) => f.strings(name).map(|_| ()),
    }
}
