//! `/infill` as the llama.cpp editor plugins call it: the exact request
//! shapes of llama.vim (autoload/llama.vim: the completion and the warm-up
//! of its ring of extra context) and llama.vscode (src/llama-server.ts:
//! three completions with `n_cmpl`, and its preparation request), read back
//! the way they read it; streaming; the middle is the engine's; errors in
//! llama.cpp's body; 501 for a model without FIM tokens.

use super::*;

/// The prefix lines, the current line up to the cursor, and the rest, as
/// llama.vim's `s:fim_ctx_local` cuts them (cursor inside `sum`'s loop).
fn cursor_context() -> (String, String, String) {
    let lines: Vec<&str> = C_TEXT.lines().collect();
    let y = lines.iter().position(|l| l.contains("total += ")).unwrap();
    let line = lines[y];
    let x = line.find('+').unwrap();
    let prefix = format!("{}\n", lines[..y].join("\n"));
    let middle = line[..x].to_string();
    let suffix = format!("{}\n{}\n", &line[x..], lines[y + 1..].join("\n"));
    (prefix, middle, suffix)
}

fn ring_chunk() -> Value {
    json!({"text": "struct point { int x; int y; };\n", "time": [1733, 52000], "filename": "point.h"})
}

/// llama.vim's `llama#fim` request (its defaults: n_predict 128, top-k 40,
/// top-p 0.90, t_max 500/250 ms for a first request).
fn llama_vim_fim() -> Value {
    let (prefix, middle, suffix) = cursor_context();
    json!({
        "id_slot": 0,
        "input_prefix": prefix,
        "input_suffix": suffix,
        "input_extra": [ring_chunk()],
        "prompt": middle,
        "n_predict": 128,
        "stop": [],
        "n_indent": 8,
        "top_k": 40,
        "top_p": 0.90,
        "samplers": ["top_k", "top_p", "infill"],
        "stream": false,
        "cache_prompt": true,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 250,
        "response_fields": [
            "content",
            "timings/prompt_n",
            "timings/prompt_ms",
            "timings/prompt_per_token_ms",
            "timings/prompt_per_second",
            "timings/predicted_n",
            "timings/predicted_ms",
            "timings/predicted_per_token_ms",
            "timings/predicted_per_second",
            "truncated",
            "tokens_cached",
        ],
    })
}

/// llama.vim's `s:ring_update` warm-up, sent every second while chunks
/// wait: only the extra context, nothing to predict.
fn llama_vim_warm_up() -> Value {
    json!({
        "id_slot": 0,
        "input_prefix": "",
        "input_suffix": "",
        "input_extra": [ring_chunk()],
        "prompt": "",
        "n_predict": 0,
        "temperature": 0.0,
        "samplers": [],
        "stream": false,
        "cache_prompt": true,
        "t_max_prompt_ms": 1,
        "t_max_predict_ms": 1,
        "response_fields": [""],
    })
}

#[test]
fn llama_vim_requests_are_answered_the_way_it_reads_them() {
    let server = start_fim(lively_fim_model(), |c| c.workers = 1);
    let addr = server.addr();
    // The warm-up: prefilled, nothing generated, `{}` (no field asked for).
    let (status, _, raw) = call_raw(
        addr,
        "POST",
        "/infill",
        &llama_vim_warm_up().to_string(),
        "",
    );
    assert_eq!((status, raw.as_str()), (200, "{}"));
    assert_eq!(server.stats().tokens, 0, "the warm-up generates nothing");

    let (status, headers, raw) =
        call_raw(addr, "POST", "/infill", &llama_vim_fim().to_string(), "");
    assert_eq!(status, 200, "{raw}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert!(llama_vim_accepts(&raw), "llama.vim would drop: {raw}");
    let v: Value = serde_json::from_str(&raw).unwrap();
    // `s:fim_render` reads these keys, flat, as response_fields names them.
    let content = v["content"].as_str().unwrap();
    assert!(v["tokens_cached"].as_u64().unwrap() > 0, "{v}");
    assert!(v["truncated"].is_boolean(), "{v}");
    for k in [
        "timings/prompt_n",
        "timings/prompt_ms",
        "timings/prompt_per_second",
        "timings/predicted_n",
        "timings/predicted_ms",
        "timings/predicted_per_second",
    ] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
    let predicted = v["timings/predicted_n"].as_u64().unwrap();
    assert!((1..=128).contains(&predicted), "{v}");
    assert!(
        v.get("stop_type").is_none(),
        "only the fields asked for: {v}"
    );
    assert_eq!(server.stats().tokens, predicted);
    assert!(predicted == 128 || content.len() < 128 * 8, "{v}");
}

#[test]
fn the_middle_is_the_engines_with_the_line_appended_to_the_prefix() {
    let model = lively_fim_model();
    let (prefix, middle, suffix) = cursor_context();
    let (expected, stats) = library_middle(&model, &format!("{prefix}{middle}"), &suffix, 12);
    let server = start_fim(model, |_| {});
    let body = json!({
        "input_prefix": prefix, "input_suffix": suffix, "prompt": middle,
        "n_predict": 12, "temperature": 0, "repeat_penalty": 1.0,
    });
    let (status, v) = post(server.addr(), "/infill", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"], expected.as_str());
    assert_eq!(v["tokens_predicted"], stats.generated_tokens);
    assert_eq!(v["tokens_evaluated"], stats.prompt_tokens);
    assert_eq!(v["model"], "tiny");
    assert_eq!(v["stop"], true);
    let stop = v["stop_type"].as_str().unwrap();
    assert!(stop == "limit" || stop == "eos", "{v}");
    assert_eq!(
        v["timings"]["prompt_n"], stats.prompt_tokens,
        "a cold prompt"
    );
    assert_eq!(v["timings"]["cache_n"], 0);
    assert_eq!(
        v["tokens"].as_array().unwrap().len(),
        stats.generated_tokens
    );
    // The whole prefix does not fit the 64-token context: it was cut.
    assert_eq!(v["truncated"], true);
}

#[test]
fn llama_vscode_asks_for_three_completions_and_prepares_its_context() {
    let server = start_fim(lively_fim_model(), |_| {});
    let (prefix, middle, suffix) = cursor_context();
    // createRequestPayload(false, ...): n_cmpl = max_parallel_completions (3).
    let body = json!({
        "id_slot": 0, "input_prefix": prefix, "input_suffix": suffix,
        "input_extra": [{"text": "int y;\n", "time": 1733000000000u64, "filename": "/src/a.c"}],
        "prompt": middle, "n_predict": 16, "n_cmpl": 3,
        "top_k": 40, "top_p": 0.99, "stream": false, "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": true, "n_indent": 8, "t_max_prompt_ms": 500, "t_max_predict_ms": 2500,
    });
    let (status, v) = post(server.addr(), "/infill", &body);
    assert_eq!(status, 200, "{v}");
    // getComplFromContent: an array of results, each with `content`.
    let all = v.as_array().unwrap();
    assert_eq!(all.len(), 3);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert!(r["content"].is_string(), "{r}");
        assert!(r["timings"]["prompt_n"].is_number());
    }
    // Later completions of the same prompt start from its cached rows.
    assert!(all[1]["timings"]["cache_n"].as_u64().unwrap() > 0, "{v}");
    // createRequestPayload(true, "", "", chunks, "", ...): the preparation.
    let prep = json!({
        "id_slot": 0, "input_prefix": "", "input_suffix": "", "input_extra": [ring_chunk()],
        "prompt": "", "n_predict": 0, "samplers": [], "cache_prompt": true,
        "t_max_prompt_ms": 500, "t_max_predict_ms": 1,
    });
    let (status, v) = post(server.addr(), "/infill", &prep);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["content"], &v["tokens_predicted"]),
        (&json!(""), &json!(0))
    );
}

#[test]
fn streamed_infill_sends_pieces_then_the_final_answer_without_done() {
    let server = start_fim(lively_fim_model(), |_| {});
    let (prefix, middle, suffix) = cursor_context();
    let body = json!({
        "input_prefix": prefix, "input_suffix": suffix, "prompt": middle,
        "n_predict": 20, "temperature": 0.9, "seed": 4,
    });
    let (_, whole) = post(server.addr(), "/infill", &body);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = Events::open(server.addr(), "/infill", &streamed);
    assert_eq!(events.status, 200);
    let data = events.all();
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "llama.cpp sends no [DONE]"
    );
    let chunks: Vec<Value> = data
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (last, pieces) = chunks.split_last().unwrap();
    assert_eq!(last["stop"], true);
    assert_eq!(last["content"], "", "the text came in the pieces");
    assert!(pieces.iter().all(|c| c["stop"] == false));
    let text: String = pieces
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, whole["content"].as_str().unwrap());
    assert_eq!(last["tokens_predicted"], whole["tokens_predicted"]);
}

#[test]
fn a_model_without_fim_tokens_answers_501_as_llama_cpp() {
    let server = start(lively_model(), 1, 1);
    let (status, v) = post(server.addr(), "/infill", &llama_vim_fim());
    assert_eq!(status, 501, "{v}");
    let e = &v["error"];
    assert_eq!(e["code"], 501);
    assert_eq!(e["type"], "not_supported_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Infill is not supported by this model"),
        "{v}"
    );
    // The model card says so too.
    let (_, v) = call(server.addr(), "GET", "/v1/models/tiny", "", "");
    assert_eq!(v["infill"], false);
}

#[test]
fn bad_infill_requests_get_llama_cpp_error_bodies() {
    let server = start_fim(lively_fim_model(), |c| c.max_tokens = 100);
    let ok = json!({"input_prefix": "int x", "input_suffix": ";\n"});
    let cases = [
        (json!({"input_suffix": ""}), "\"input_prefix\" is required"),
        (json!({"input_prefix": ""}), "\"input_suffix\" is required"),
        (
            json!({"input_prefix": 1, "input_suffix": ""}),
            "input_prefix must be a string",
        ),
        (
            json!({"input_prefix": "", "input_suffix": "", "input_extra": {}}),
            "\"input_extra\" must be an array",
        ),
        (
            json!({"input_prefix": "", "input_suffix": "", "input_extra": [{"filename": "a"}]}),
            "must contain a \"text\" field",
        ),
        (
            json!({"input_prefix": "", "input_suffix": "", "input_extra": [{"text": "a", "filename": 3}]}),
            "\"filename\" field must be a string",
        ),
        (
            json!({"input_prefix": "", "input_suffix": "", "n_predict": 101}),
            "more than this server allows",
        ),
        (
            json!({"input_prefix": "", "input_suffix": "", "n_cmpl": 2, "stream": true}),
            "cannot be streamed",
        ),
        (
            json!({"input_prefix": "", "input_suffix": "", "top_p": 3}),
            "top_p",
        ),
    ];
    for (body, says) in cases {
        let (status, v) = post(server.addr(), "/infill", &body);
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], 400, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, v) = call(server.addr(), "POST", "/infill", "{not json", "");
    assert_eq!((status, &v["error"]["code"]), (400, &json!(400)));
    let (status, _) = call(server.addr(), "GET", "/infill", "", "");
    assert_eq!(status, 405);
    // n_predict -1 (llama.cpp's "no limit") runs to the context's end.
    let mut body = ok.clone();
    body["n_predict"] = json!(-1);
    let (status, v) = post(server.addr(), "/infill", &body);
    assert_eq!(status, 200, "{v}");
}

#[test]
fn a_streamed_infill_stops_when_its_client_leaves() {
    let server = start_fim(always_model_slow("}", 1024), |c| c.workers = 1);
    let body =
        json!({"input_prefix": "int f() {", "input_suffix": "}", "n_predict": -1, "stream": true});
    let mut events = Events::open(server.addr(), "/infill", &body);
    let first: Value = serde_json::from_str(&events.next().unwrap()).unwrap();
    assert_eq!(
        (&first["content"], &first["stop"]),
        (&json!("}"), &json!(false))
    );
    drop(events);
    wait_for(&server, "the stream cancelled", |s| {
        s.cancelled == 1 && s.active == 0
    });
    assert!(server.stats().tokens < 900, "generation stopped early");
}
