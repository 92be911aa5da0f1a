//! HTTP glue over `tiny_http`: routing, the API key (every path but
//! `/health`, as llama-server does), CORS (`--cors`: the allowed origins'
//! headers on every answer, preflight `OPTIONS` answered), reading a
//! bounded body, and queueing generation requests (429 when the queue is
//! full).

use super::Shared;
use super::api::{self, ApiError};
use super::infill_request;
use super::reply::Conn;
use super::request::{self, Endpoint};
use super::worker::{Job, Work};
use crossbeam_channel::{Sender, TrySendError};
use std::sync::atomic::Ordering;
use tiny_http::{Method, Request};

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: u64 = 4 << 20;

/// Paths answered without the API key.
const PUBLIC_PATHS: [&str; 2] = ["/health", "/v1/health"];

/// What a POST path asks for.
enum Route {
    OpenAi(Endpoint),
    Infill,
}

/// Answers `req` or queues it for a decoding thread.
pub(crate) fn handle(shared: &Shared, queue: &Sender<Job>, req: Request) {
    let origin = header(&req, "Origin");
    let allowed = origin
        .as_deref()
        .and_then(|o| allow_origin(&shared.config.cors, o));
    let mut cors = Vec::new();
    if let Some(allowed) = &allowed {
        cors.push(("Access-Control-Allow-Origin".to_string(), allowed.clone()));
        if allowed != "*" {
            cors.push(("Vary".to_string(), "Origin".to_string()));
        }
    }
    let method = req.method().clone();
    if method == Method::Options {
        let requested = header(&req, "Access-Control-Request-Headers");
        let conn = Conn::new(req, cors, shared.request_log.clone());
        return preflight(conn, origin.as_deref(), allowed.is_some(), requested);
    }
    let mut conn = Conn::new(req, cors, shared.request_log.clone());
    let path = conn.path().to_string();
    if let Some(key) = &shared.config.api_key
        && !PUBLIC_PATHS.contains(&path.as_str())
    {
        let given = header(conn.request(), "Authorization");
        if given.as_deref().map(str::trim) != Some(format!("Bearer {key}").as_str()) {
            return conn.error(&ApiError::unauthorized());
        }
    }
    let route = match path.as_str() {
        "/v1/completions" | "/completions" => Some(Route::OpenAi(Endpoint::Completions)),
        "/v1/chat/completions" | "/chat/completions" => Some(Route::OpenAi(Endpoint::Chat)),
        "/infill" => Some(Route::Infill),
        _ => None,
    };
    match (method, route) {
        (Method::Post, Some(route)) => {
            let body = match conn.body(MAX_BODY_BYTES) {
                Ok(b) => b,
                Err(e) => return refuse(shared, conn, &e, matches!(route, Route::Infill)),
            };
            let (model, limits) = (&shared.model, &shared.limits);
            let work = match route {
                Route::OpenAi(endpoint) => request::parse(endpoint, &body, &model.tok, limits)
                    .map(Work::OpenAi)
                    .map_err(|e| (e, false)),
                // llama.cpp answers 501 before it reads the body.
                Route::Infill if model.tok.fim_tokens().is_none() => {
                    Err((ApiError::infill_unsupported(), true))
                }
                Route::Infill => infill_request::parse(&body, &model.tok, limits)
                    .map(Work::Infill)
                    .map_err(|e| (e, true)),
            };
            match work {
                Ok(work) => enqueue(shared, queue, Job { work, conn }),
                Err((e, llama)) => refuse(shared, conn, &e, llama),
            }
        }
        (_, Some(_)) => conn.error(&method_not_allowed("POST")),
        (Method::Get, None) => get(shared, conn, &path),
        (m, None) => {
            if path.starts_with("/v1/models") || PUBLIC_PATHS.contains(&path.as_str()) {
                conn.error(&method_not_allowed("GET"))
            } else {
                conn.error(&ApiError::not_found(&format!("{m} {path}")))
            }
        }
    }
}

fn get(shared: &Shared, conn: Conn, path: &str) {
    let model = &shared.model;
    let card = api::model_card(
        &model.id,
        shared.created,
        shared.limits.n_ctx,
        model.memory.is_some(),
        model.tok.fim_tokens().is_some(),
    );
    if path == "/v1/models" || path == "/models" {
        let list = serde_json::json!({"object": "list", "data": [card]});
        conn.json(200, &list.to_string());
    } else if let Some(id) = path
        .strip_prefix("/v1/models/")
        .or_else(|| path.strip_prefix("/models/"))
    {
        if id == model.id {
            conn.json(200, &card.to_string());
        } else {
            conn.error(
                &ApiError::not_found(&format!("the model '{id}'")).with_code("model_not_found"),
            );
        }
    } else if path == "/" || PUBLIC_PATHS.contains(&path) {
        // llama-server's health answer, with the model's name.
        let body = serde_json::json!({"status": "ok", "model": model.id});
        conn.json(200, &body.to_string());
    } else {
        conn.error(&ApiError::not_found(&format!("GET {path}")));
    }
}

/// The value of `Access-Control-Allow-Origin` for a request from `origin`:
/// `*` when any origin is allowed, the origin itself when it is listed.
fn allow_origin(allowed: &[String], origin: &str) -> Option<String> {
    if allowed.iter().any(|a| a == "*") {
        Some("*".into())
    } else {
        allowed
            .iter()
            .any(|a| a.trim_end_matches('/') == origin)
            .then(|| origin.to_string())
    }
}

/// `OPTIONS`: a browser's CORS preflight (answered without the API key,
/// which browsers do not send on it), or a plain question of the methods.
fn preflight(mut conn: Conn, origin: Option<&str>, allowed: bool, requested: Option<String>) {
    let methods = "GET, POST, OPTIONS";
    match origin {
        None => {
            conn.add_header("Allow", methods);
            conn.empty(204)
        }
        Some(_) if allowed => {
            // The headers a browser asks to send (Authorization,
            // Content-Type, ...) when they are plain header names.
            let headers = requested
                .filter(|h| {
                    h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b))
                })
                .unwrap_or_else(|| "Authorization, Content-Type".into());
            conn.add_header("Access-Control-Allow-Methods", methods);
            conn.add_header("Access-Control-Allow-Headers", &headers);
            conn.add_header("Access-Control-Max-Age", "86400");
            conn.empty(204)
        }
        Some(origin) => conn.error(
            &ApiError::invalid(
                None,
                format!(
                    "the origin {origin} may not call this server from a browser: start it with `--cors {origin}` (or `--cors '*'`)"
                ),
            )
            .with_status(403)
            .with_code("cors_origin_not_allowed"),
        ),
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::invalid(None, format!("this endpoint answers {allowed} only"))
        .with_status(405)
        .with_code("method_not_allowed")
}

/// Answers a refused request: llama.cpp's error body on its endpoints,
/// OpenAI's elsewhere.
fn refuse(shared: &Shared, conn: Conn, e: &ApiError, llama: bool) {
    log(shared, conn.path(), e);
    if llama {
        conn.llama_error(e)
    } else {
        conn.error(e)
    }
}

fn enqueue(shared: &Shared, queue: &Sender<Job>, job: Job) {
    if shared.stopping.load(Ordering::SeqCst) {
        return job.conn.error(&ApiError::shutting_down());
    }
    shared.stats.queued.fetch_add(1, Ordering::SeqCst);
    match queue.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(job)) => {
            shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
            shared.stats.rejected.fetch_add(1, Ordering::SeqCst);
            let e = ApiError::queue_full(shared.config.queue);
            let llama = matches!(job.work, Work::Infill(_));
            refuse(shared, job.conn, &e, llama);
        }
        Err(TrySendError::Disconnected(job)) => {
            shared.stats.queued.fetch_sub(1, Ordering::SeqCst);
            job.conn.error(&ApiError::shutting_down());
        }
    }
}

fn log(shared: &Shared, path: &str, e: &ApiError) {
    if shared.config.log {
        crate::log_line!("POST {path}: {} {}", e.status, e.message);
    }
}
