//! HTTP glue over `tiny_http`: routing, the API key, reading a bounded
//! body, and queueing generation requests (429 when the queue is full).

use super::Shared;
use super::api::{self, ApiError};
use super::reply::{respond_error, respond_json};
use super::request::{self, Endpoint};
use super::worker::Job;
use crossbeam_channel::{Sender, TrySendError};
use std::io::Read;
use std::sync::atomic::Ordering;
use tiny_http::{Method, Request};

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: u64 = 4 << 20;

/// Answers `req` or queues it for a decoding thread.
pub(crate) fn handle(shared: &Shared, queue: &Sender<Job>, mut req: Request) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    if let Some(key) = &shared.config.api_key {
        let expected = format!("Bearer {key}");
        let given = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().trim().to_string());
        if given.as_deref() != Some(expected.as_str()) {
            return respond_error(req, &ApiError::unauthorized());
        }
    }
    let endpoint = match path.as_str() {
        "/v1/completions" | "/completions" => Some(Endpoint::Completions),
        "/v1/chat/completions" | "/chat/completions" => Some(Endpoint::Chat),
        _ => None,
    };
    let method = req.method().clone();
    match (method, endpoint) {
        (Method::Post, Some(endpoint)) => {
            let mut body = Vec::new();
            let read = req
                .as_reader()
                .take(MAX_BODY_BYTES + 1)
                .read_to_end(&mut body);
            if let Err(e) = read {
                return respond_error(
                    req,
                    &ApiError::invalid(None, format!("cannot read the request body: {e}")),
                );
            }
            if body.len() as u64 > MAX_BODY_BYTES {
                let e = ApiError::invalid(
                    None,
                    format!(
                        "the request body is larger than {} MiB",
                        MAX_BODY_BYTES >> 20
                    ),
                )
                .with_status(413);
                return respond_error(req, &e);
            }
            let parsed = request::parse(endpoint, &body, &shared.model.tok, &shared.limits);
            match parsed {
                Ok(gen_req) => enqueue(
                    shared,
                    queue,
                    Job {
                        req: gen_req,
                        http: req,
                        path,
                    },
                ),
                Err(e) => {
                    log(shared, &path, &e);
                    respond_error(req, &e)
                }
            }
        }
        (_, Some(_)) => respond_error(req, &method_not_allowed("POST")),
        (Method::Get, None) => {
            let model = &shared.model;
            let card = api::model_card(
                &model.id,
                shared.created,
                shared.limits.n_ctx,
                model.memory.is_some(),
            );
            if path == "/v1/models" || path == "/models" {
                let list = serde_json::json!({"object": "list", "data": [card]});
                respond_json(req, 200, &list.to_string());
            } else if let Some(id) = path
                .strip_prefix("/v1/models/")
                .or_else(|| path.strip_prefix("/models/"))
            {
                if id == model.id {
                    respond_json(req, 200, &card.to_string());
                } else {
                    respond_error(
                        req,
                        &ApiError::not_found(&format!("the model '{id}'"))
                            .with_code("model_not_found"),
                    );
                }
            } else if path == "/" || path == "/health" {
                let body = serde_json::json!({"status": "ok", "model": model.id});
                respond_json(req, 200, &body.to_string());
            } else {
                respond_error(req, &ApiError::not_found(&format!("GET {path}")));
            }
        }
        (m, None) => {
            if path.starts_with("/v1/models") || path == "/health" {
                respond_error(req, &method_not_allowed("GET"))
            } else {
                respond_error(req, &ApiError::not_found(&format!("{m} {path}")))
            }
        }
    }
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::invalid(None, format!("this endpoint answers {allowed} only"))
        .with_status(405)
        .with_code("method_not_allowed")
}

fn enqueue(shared: &Shared, queue: &Sender<Job>, job: Job) {
    if shared.stopping.load(Ordering::SeqCst) {
        return respond_error(job.http, &ApiError::shutting_down());
    }
    shared.stats.queued.fetch_add(1, Ordering::SeqCst);
    match queue.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(job)) => {
            shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
            shared.stats.rejected.fetch_add(1, Ordering::SeqCst);
            let e = ApiError::queue_full(shared.config.queue);
            log(shared, &job.path, &e);
            respond_error(job.http, &e);
        }
        Err(TrySendError::Disconnected(job)) => {
            shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
            respond_error(job.http, &ApiError::shutting_down());
        }
    }
}

fn log(shared: &Shared, path: &str, e: &ApiError) {
    if shared.config.log {
        eprintln!("POST {path}: {} {}", e.status, e.message);
    }
}
