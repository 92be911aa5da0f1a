//! The decoding threads: each takes a queued request, runs the engine's
//! [`Generator`] over it and answers, whole or as server-sent events. A
//! stream whose client went away (a write fails) cancels its generation.
//! Replies start from the server's prompt cache ([`super::prompts`]).

use super::Shared;
use super::api::{self, ApiError};
use super::infill;
use super::infill_request::InfillRequest;
use super::prompts::{keep, start};
use super::reply::Conn;
use super::request::{Endpoint, GenRequest};
use cllm_generate::GeneratedToken;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What a queued request asks for.
pub enum Work {
    /// `/v1/completions` or `/v1/chat/completions`.
    OpenAi(GenRequest),
    /// llama.cpp's `/infill`.
    Infill(InfillRequest),
}

/// A checked request waiting for a decoding thread, with the connection
/// to answer on.
pub struct Job {
    pub work: Work,
    pub conn: Conn,
}

/// The decoding thread's loop: until the queue closes.
pub(crate) fn work(shared: &Shared, queue: crossbeam_channel::Receiver<Job>) {
    for job in queue {
        shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
        if shared.stopping.load(Ordering::SeqCst) {
            job.conn.error(&ApiError::shutting_down());
            continue;
        }
        shared.stats.active.fetch_add(1, Ordering::SeqCst);
        match job.work {
            Work::OpenAi(req) => run(shared, req, job.conn),
            Work::Infill(req) => infill::run(shared, req, job.conn),
        }
        shared.stats.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One generated token's log-probabilities, for `logprobs`.
struct TokenLogprob {
    text: String,
    logprob: f32,
    top: Vec<(String, f32)>,
}

fn run(shared: &Shared, req: GenRequest, mut conn: Conn) {
    let model = &shared.model;
    let started = Instant::now();
    let path = conn.path().to_string();
    let adapted = match super::prompts::adapted(shared, &req.start) {
        Ok(a) => a,
        Err(e) => return conn.error(&e),
    };
    let mut generator = match start(
        shared,
        adapted.as_ref(),
        req.start.clone(),
        req.sampling.clone(),
        req.memory,
        true,
    ) {
        Ok(g) => g,
        Err(e) => return conn.error(&e),
    };
    let cached_tokens = generator.reused_prompt_tokens();
    conn.counts.prompt_tokens = req.prompt_tokens;
    conn.counts.cached_tokens = cached_tokens;
    let id = new_id(req.endpoint);
    let created = unix_now();
    let lp = |t: &GeneratedToken| {
        req.logprobs.map(|n| TokenLogprob {
            text: String::from_utf8_lossy(&model.tok.token_bytes(t.id)).into_owned(),
            logprob: t.prob.max(1e-30).ln(),
            top: t.top_alternatives.iter().take(n).cloned().collect(),
        })
    };
    let chunk = |text: &str, lps: &[TokenLogprob], finish: Option<&str>, offset: usize| -> Value {
        match req.endpoint {
            Endpoint::Completions => json!({
                "id": id, "object": "text_completion", "created": created, "model": model.id,
                "choices": [{"index": 0, "text": text,
                    "logprobs": req.logprobs.map(|_| logprobs_json(lps, offset)),
                    "finish_reason": finish}],
            }),
            Endpoint::Chat => json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model.id,
                "choices": [{"index": 0,
                    "delta": if finish.is_some() { json!({}) } else { json!({"content": text}) },
                    "logprobs": null, "finish_reason": finish}],
            }),
        }
    };

    let outcome = if req.stream {
        let Ok(mut sse) = conn.events() else {
            shared.stats.cancelled.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let mut ok = true;
        if req.endpoint == Endpoint::Chat {
            let first = json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model.id,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                    "logprobs": null, "finish_reason": null}],
            });
            ok = sse.send(&first.to_string()).is_ok();
        } else if req.echo && !req.prompt.is_empty() {
            ok = sse
                .send(&chunk(&req.prompt, &[], None, 0).to_string())
                .is_ok();
        }
        let mut offset = 0;
        while ok {
            if shared.stopping.load(Ordering::SeqCst) {
                generator.cancel();
            }
            let Some(t) = generator.next_token() else {
                break;
            };
            let lps: Vec<TokenLogprob> = lp(&t).into_iter().collect();
            if !t.text_piece.is_empty() || !lps.is_empty() {
                ok = sse
                    .send(&chunk(&t.text_piece, &lps, None, offset).to_string())
                    .is_ok();
                offset += t.text_piece.len();
            }
        }
        let stats = generator.stats();
        shared
            .stats
            .tokens
            .fetch_add(stats.generated_tokens as u64, Ordering::SeqCst);
        sse.counts.predicted_tokens = stats.generated_tokens;
        sse.counts.stop = Some(api::finish_name(stats.finish).to_string());
        if ok {
            let finish = api::finish_name(stats.finish);
            let mut sent = sse.send(&chunk("", &[], Some(finish), offset).to_string());
            if req.include_usage && sent.is_ok() {
                let last = json!({
                    "id": id, "created": created, "model": model.id,
                    "object": if req.endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" },
                    "choices": [],
                    "usage": api::usage(stats.prompt_tokens, stats.generated_tokens, cached_tokens),
                });
                sent = sse.send(&last.to_string());
            }
            ok = match sent {
                Ok(()) => sse.finish().is_ok(),
                Err(_) => {
                    sse.abandon();
                    false
                }
            };
        } else {
            sse.abandon();
        }
        if ok {
            shared.stats.completed.fetch_add(1, Ordering::SeqCst);
            format!("streamed, {}", api::finish_name(stats.finish))
        } else {
            generator.cancel();
            shared.stats.cancelled.fetch_add(1, Ordering::SeqCst);
            "client went away: cancelled".to_string()
        }
    } else {
        let mut lps = Vec::new();
        loop {
            if shared.stopping.load(Ordering::SeqCst) {
                generator.cancel();
            }
            let Some(t) = generator.next_token() else {
                break;
            };
            lps.extend(lp(&t));
        }
        let stats = generator.stats();
        shared
            .stats
            .tokens
            .fetch_add(stats.generated_tokens as u64, Ordering::SeqCst);
        let finish = api::finish_name(stats.finish);
        let usage = api::usage(stats.prompt_tokens, stats.generated_tokens, cached_tokens);
        let body = match req.endpoint {
            Endpoint::Completions => {
                let (text, offset) = if req.echo {
                    (
                        format!("{}{}", req.prompt, generator.text()),
                        req.prompt.len(),
                    )
                } else {
                    (generator.text().to_string(), 0)
                };
                json!({
                    "id": id, "object": "text_completion", "created": created, "model": model.id,
                    "choices": [{"index": 0, "text": text,
                        "logprobs": req.logprobs.map(|_| logprobs_json(&lps, offset)),
                        "finish_reason": finish}],
                    "usage": usage,
                })
            }
            Endpoint::Chat => json!({
                "id": id, "object": "chat.completion", "created": created, "model": model.id,
                "choices": [{"index": 0,
                    "message": {"role": "assistant", "content": generator.text()},
                    "logprobs": null, "finish_reason": finish}],
                "usage": usage,
            }),
        };
        // Counted first, so a client that has its answer sees it counted.
        shared.stats.completed.fetch_add(1, Ordering::SeqCst);
        conn.counts.predicted_tokens = stats.generated_tokens;
        conn.counts.stop = Some(finish.to_string());
        conn.json(200, &body.to_string());
        finish.to_string()
    };
    let stats = generator.stats();
    keep(shared, generator, adapted.is_some());
    if shared.config.log {
        crate::log_line!(
            "POST {path}: {} prompt ({} cached) + {} new tokens in {:.2} s ({:.1} tokens/s), {outcome}",
            stats.prompt_tokens,
            cached_tokens,
            stats.generated_tokens,
            started.elapsed().as_secs_f64(),
            stats.tokens_per_sec,
        );
    }
}

/// The completions API's `logprobs` object; offsets count from `offset`.
fn logprobs_json(lps: &[TokenLogprob], offset: usize) -> Value {
    let mut at = offset;
    let mut offsets = Vec::with_capacity(lps.len());
    for l in lps {
        offsets.push(at);
        at += l.text.len();
    }
    json!({
        "tokens": lps.iter().map(|l| l.text.clone()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|l| {
            l.top.iter().map(|(t, p)| (t.clone(), json!(p.max(1e-30).ln()))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

fn new_id(endpoint: Endpoint) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = match endpoint {
        Endpoint::Completions => "cmpl",
        Endpoint::Chat => "chatcmpl",
    };
    format!(
        "{prefix}-{:x}{:04x}",
        unix_now(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
