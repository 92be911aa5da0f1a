//! Answering `/infill` as llama.cpp's server does: the middle, generated
//! with llama.cpp's extra stops (`t_max_predict_ms`: past that time, stop
//! at the next new line; `n_indent`: stop before a line indented less), in
//! llama.cpp's reply (`content`, `stop_type`, `tokens_cached`, `timings`,
//! ...; only `response_fields` when asked), whole, as several completions
//! (`n_cmpl`), or streamed as `data: {...}` events without a `[DONE]`.

use super::Shared;
use super::api::ApiError;
use super::infill_request::InfillRequest;
use super::prompts;
use super::reply::{Conn, SseStream};
use super::request_log::Counts;
use cllm_generate::{FinishReason, GenerationStats};
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// One completion's result.
struct Middle {
    content: String,
    ids: Vec<u32>,
    stop_type: &'static str,
    stopping_word: String,
    has_new_line: bool,
    /// The context filled up before the reply ended.
    context_full: bool,
    stats: GenerationStats,
    reused: usize,
    /// A streamed answer's client went away.
    client_gone: bool,
}

pub(crate) fn run(shared: &Shared, req: InfillRequest, mut conn: Conn) {
    let started = Instant::now();
    if req.stream {
        match conn.events() {
            Ok(sse) => stream(shared, &req, sse, started),
            Err(_) => {
                shared.stats.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        }
        return;
    }
    let mut results = Vec::new();
    for i in 0..req.completions {
        let seed = req.sampling.seed.wrapping_add(i as u64);
        let middle = match complete(shared, &req, seed, None) {
            Ok(m) => m,
            Err(e) => return conn.llama_error(&e),
        };
        let counts = &mut conn.counts;
        counts.prompt_tokens = middle.stats.prompt_tokens;
        counts.cached_tokens = middle.reused;
        counts.predicted_tokens += middle.stats.generated_tokens;
        counts.stop = Some(middle.stop_type.to_string());
        results.push(final_json(shared, &req, &middle, i, false));
    }
    let body = match results.len() {
        1 => results.pop().unwrap_or_default(),
        _ => Value::Array(results),
    };
    shared.stats.completed.fetch_add(1, Ordering::SeqCst);
    let note = conn.counts.stop.clone().unwrap_or_default();
    log_line(shared, &conn.counts, started, &note);
    conn.json(200, &body.to_string());
}

fn stream(shared: &Shared, req: &InfillRequest, mut sse: SseStream, started: Instant) {
    let result = complete(shared, req, req.sampling.seed, Some(&mut sse));
    let middle = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = sse.send(&e.llama_body());
            let _ = sse.end();
            return;
        }
    };
    sse.counts.prompt_tokens = middle.stats.prompt_tokens;
    sse.counts.cached_tokens = middle.reused;
    sse.counts.predicted_tokens = middle.stats.generated_tokens;
    sse.counts.stop = Some(middle.stop_type.to_string());
    let counts = sse.counts.clone();
    let last = final_json(shared, req, &middle, 0, true).to_string();
    let ended = if !middle.client_gone && sse.send(&last).is_ok() {
        sse.end().is_ok()
    } else {
        sse.abandon();
        false
    };
    if ended {
        shared.stats.completed.fetch_add(1, Ordering::SeqCst);
        log_line(shared, &counts, started, "streamed");
    } else {
        shared.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        log_line(shared, &counts, started, "client went away: cancelled");
    }
}

/// Generates one middle; with `sse`, each piece is sent as it comes (a
/// failed write cancels, and the middle comes back with stop type `none`).
fn complete(
    shared: &Shared,
    req: &InfillRequest,
    seed: u64,
    mut sse: Option<&mut SseStream>,
) -> Result<Middle, ApiError> {
    let tok = &shared.model.tok;
    let mut cfg = req.sampling.clone();
    cfg.seed = seed;
    // A warm-up generates nothing, so it has nothing to adapt for.
    let adapted = match req.warm_up {
        true => None,
        false => prompts::adapted(shared, &req.prompt)?,
    };
    let mut g = prompts::start(
        shared,
        adapted.as_ref(),
        req.prompt.clone(),
        cfg,
        req.memory,
        req.cache_prompt,
    )?;
    let generating = Instant::now();
    let evaluated = g.stats().prompt_tokens;
    let limit = req.t_max_predict_ms.map(Duration::from_millis);
    let (mut own_stop, mut cut, mut has_new_line) = (false, None, false);
    let (mut sent, mut gone) = (0usize, false);
    while !req.warm_up && !own_stop {
        if shared.stopping.load(Ordering::SeqCst) || gone {
            g.cancel();
        }
        let Some(t) = g.next_token() else {
            break;
        };
        let new_line = tok.token_bytes(t.id).contains(&b'\n');
        has_new_line |= new_line;
        if req.n_indent > 0 && has_new_line {
            cut = indent_cut(g.text(), req.n_indent);
            own_stop = cut.is_some();
        }
        own_stop |= new_line && limit.is_some_and(|l| generating.elapsed() > l);
        if let Some(out) = sse.as_deref_mut() {
            // A piece never goes past the indentation cut.
            let end = cut.unwrap_or(usize::MAX).saturating_sub(sent);
            let piece = &t.text_piece[..t.text_piece.len().min(end)];
            if !piece.is_empty() {
                let n = g.generated_ids().len();
                gone = out.send(&partial_json(piece, t.id, n, evaluated)).is_err();
                sent += piece.len();
            }
        }
    }
    let text = g.text();
    let content = text[..cut.unwrap_or(text.len()).min(text.len())].to_string();
    if let Some(out) = sse
        && !gone
        && content.len() > sent
    {
        // Text held back (a possible stop string) when the reply was cut short.
        let n = g.generated_ids().len();
        let last = g.generated_ids().last().copied().unwrap_or(0);
        gone = out
            .send(&partial_json(&content[sent..], last, n, evaluated))
            .is_err();
    }
    let stats = g.stats();
    shared
        .stats
        .tokens
        .fetch_add(stats.generated_tokens as u64, Ordering::SeqCst);
    let finish = stats.finish;
    let stop_type = match finish {
        _ if gone => "none",
        _ if own_stop => "limit",
        Some(FinishReason::EndOfText | FinishReason::Closed) => "eos",
        Some(FinishReason::StopString) => "word",
        Some(FinishReason::Cancelled) => "none",
        Some(FinishReason::MaxTokens) | None => "limit",
    };
    let stopping_word = if finish == Some(FinishReason::StopString) {
        let raw = tok.decode(g.generated_ids());
        let after = raw.get(g.text().len()..).unwrap_or("");
        let sampling = &req.sampling;
        sampling
            .stop
            .iter()
            .find(|s| after.starts_with(s.as_str()))
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    };
    let context_full = finish == Some(FinishReason::MaxTokens)
        && stats.generated_tokens < req.sampling.max_new_tokens;
    let reused = g.reused_prompt_tokens();
    let ids = g.generated_ids().to_vec();
    prompts::keep(shared, g, adapted.is_some());
    Ok(Middle {
        content,
        ids,
        stop_type,
        stopping_word,
        has_new_line,
        context_full,
        stats,
        reused,
        client_gone: gone,
    })
}

/// Where the first line after the first new line that is indented less
/// than `n_indent` begins its text, once it has any (an empty line counts,
/// as in llama.cpp): llama.cpp cuts the reply there.
pub fn indent_cut(text: &str, n_indent: usize) -> Option<usize> {
    let mut at = text.find('\n')? + 1;
    loop {
        let line = &text[at..];
        let indent = line
            .bytes()
            .take_while(|&b| b == b' ' || b == b'\t')
            .count();
        let rest = &line[indent..];
        if !rest.is_empty() && indent < n_indent {
            return Some(at + indent);
        }
        at += line.find('\n')? + 1;
    }
}

fn partial_json(piece: &str, id: u32, predicted: usize, evaluated: usize) -> String {
    json!({
        "index": 0, "content": piece, "tokens": [id], "stop": false, "id_slot": 0,
        "tokens_predicted": predicted, "tokens_evaluated": evaluated,
    })
    .to_string()
}

/// llama.cpp's final answer (its `to_json_non_oaicompat`), cut to the
/// `response_fields` when some were asked for.
fn final_json(
    shared: &Shared,
    req: &InfillRequest,
    m: &Middle,
    index: usize,
    streamed: bool,
) -> Value {
    let s = &m.stats;
    let prompt_n = s.prompt_tokens - m.reused;
    let (prompt_ms, predicted_ms) = (s.prefill_secs * 1e3, s.generate_secs * 1e3);
    let per_token = |ms: f64, n: usize| if n > 0 { ms / n as f64 } else { 0.0 };
    let per_second = |ms: f64, n: usize| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    let sampling = &req.sampling;
    let full = json!({
        "index": index,
        "content": if streamed { "" } else { m.content.as_str() },
        "tokens": if streamed { &[][..] } else { &m.ids[..] },
        "id_slot": 0,
        "stop": true,
        "model": shared.model.id,
        "tokens_predicted": s.generated_tokens,
        "tokens_evaluated": s.prompt_tokens,
        "generation_settings": {
            "n_predict": sampling.max_new_tokens, "seed": sampling.seed.wrapping_add(index as u64),
            "temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
            "repeat_penalty": sampling.repetition_penalty, "stop": sampling.stop,
            "n_indent": req.n_indent, "t_max_predict_ms": req.t_max_predict_ms.unwrap_or(0),
            "memory": req.memory,
        },
        "prompt": shared.model.tok.decode(req.prompt.ids()),
        "has_new_line": m.has_new_line,
        "truncated": req.fit.truncated || m.context_full,
        "stop_type": m.stop_type,
        "stopping_word": m.stopping_word,
        "tokens_cached": s.prompt_tokens + s.generated_tokens,
        "timings": {
            "cache_n": m.reused,
            "prompt_n": prompt_n,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": per_token(prompt_ms, prompt_n),
            "prompt_per_second": per_second(prompt_ms, prompt_n),
            "predicted_n": s.generated_tokens,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": per_token(predicted_ms, s.generated_tokens),
            "predicted_per_second": per_second(predicted_ms, s.generated_tokens),
        },
    });
    if req.response_fields.is_empty() {
        full
    } else {
        nested_values(&req.response_fields, &full)
    }
}

/// llama.cpp's `json_get_nested_values`: for each path (`a/b` names
/// `value["a"]["b"]`) that exists, its value under the path itself.
pub fn nested_values(paths: &[String], value: &Value) -> Value {
    let mut out = Map::new();
    for path in paths {
        let found = path
            .split('/')
            .try_fold(value, |v, key| v.as_object().and_then(|o| o.get(key)));
        if let Some(v) = found {
            out.insert(path.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn log_line(shared: &Shared, counts: &Counts, started: Instant, outcome: &str) {
    if shared.config.log {
        crate::log_line!(
            "POST /infill: {} prompt tokens ({} cached) + {} new in {:.0} ms, {outcome}",
            counts.prompt_tokens,
            counts.cached_tokens,
            counts.predicted_tokens,
            started.elapsed().as_secs_f64() * 1e3,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_less_indented_line_after_the_first_is_cut_at_its_text() {
        assert_eq!(indent_cut("x = 1;", 4), None);
        assert_eq!(indent_cut("x = 1;\n    y = 2;\n", 4), None);
        assert_eq!(indent_cut("x = 1;\n    y = 2;\n}\n", 4), Some(18));
        assert_eq!(indent_cut("x\n  ", 4), None, "not judged before its text");
        assert_eq!(indent_cut("x\n  \n", 4), Some(4), "an empty line ends it");
        assert_eq!(indent_cut("x\n\t\t\t\ty\n  z", 4), Some(10));
    }

    #[test]
    fn response_fields_pick_nested_values_under_their_paths() {
        let v = json!({"content": "a", "timings": {"prompt_n": 3}, "n": 1});
        let paths = ["content", "timings/prompt_n", "timings/nope", ""].map(String::from);
        assert_eq!(
            nested_values(&paths, &v),
            json!({"content": "a", "timings/prompt_n": 3})
        );
    }
}
