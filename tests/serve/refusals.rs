//! Bad requests get OpenAI error bodies and the server carries on; the API
//! key is required when set.

use super::*;

#[test]
fn bad_requests_get_openai_error_bodies_and_the_server_carries_on() {
    let server = start_with(lively_model(), |c| c.max_tokens = 100);
    let addr = server.addr();
    let long_prompt = "a".repeat(40);
    let cases: Vec<(&str, &str, String, u16, Option<&str>)> = vec![
        ("POST", "/v1/completions", "{\"prompt\": ".into(), 400, None),
        ("POST", "/v1/completions", "[1, 2]".into(), 400, None),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":-1}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":1000000000000}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":"ten"}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","max_tokens":2.5}"#.into(),
            400,
            Some("max_tokens"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","temperature":"hot"}"#.into(),
            400,
            Some("temperature"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","temperature":-0.5}"#.into(),
            400,
            Some("temperature"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","top_p":1.5}"#.into(),
            400,
            Some("top_p"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","top_k":-3}"#.into(),
            400,
            Some("top_k"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","repetition_penalty":0}"#.into(),
            400,
            Some("repetition_penalty"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","stop":5}"#.into(),
            400,
            Some("stop"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","stop":[""]}"#.into(),
            400,
            Some("stop"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","n":3}"#.into(),
            400,
            Some("n"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","seed":-1}"#.into(),
            400,
            Some("seed"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","stream":"yes"}"#.into(),
            400,
            Some("stream"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","logprobs":9}"#.into(),
            400,
            Some("logprobs"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","suffix":5}"#.into(),
            400,
            Some("suffix"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":"a","memory":true}"#.into(),
            400,
            Some("memory"),
        ),
        (
            "POST",
            "/v1/completions",
            r#"{"prompt":["a","b"]}"#.into(),
            400,
            Some("prompt"),
        ),
        (
            "POST",
            "/v1/completions",
            format!(r#"{{"prompt":"{long_prompt}"}}"#),
            400,
            Some("prompt"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"prompt":"a"}"#.into(),
            400,
            Some("messages"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"robot","content":"a"}]}"#.into(),
            400,
            Some("messages"),
        ),
        (
            "POST",
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"a"}],"logprobs":true}"#.into(),
            400,
            Some("logprobs"),
        ),
        ("GET", "/v1/completions", String::new(), 405, None),
        ("POST", "/v1/models", "{}".into(), 405, None),
        ("POST", "/v1/embeddings", "{}".into(), 404, None),
        ("GET", "/v1/models/other", String::new(), 404, None),
    ];
    for (method, path, body, status, param) in cases {
        let (got, v) = call(addr, method, path, &body, "");
        assert_eq!(got, status, "{method} {path} {body}: {v}");
        let e = &v["error"];
        assert!(!e["message"].as_str().unwrap().is_empty(), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        assert_eq!(e["param"].as_str(), param, "{body}: {v}");
    }
    let (got, v) = post(addr, "/v1/completions", &json!({"prompt": long_prompt}));
    assert_eq!(
        (got, &v["error"]["code"]),
        (400, &json!("context_length_exceeded"))
    );
    // A body over the limit is refused without reading it all.
    let huge = format!(r#"{{"prompt":"{}"}}"#, "a".repeat(5 << 20));
    let (got, _) = call(addr, "POST", "/v1/completions", &huge, "");
    assert_eq!(got, 413);
    // Still serving.
    let (got, v) = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "a", "max_tokens": 3}),
    );
    assert_eq!(got, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3);
}

#[test]
fn the_api_key_is_required_when_set() {
    let server = start_with(lively_model(), |c| c.api_key = Some("s3cret".into()));
    let (status, v) = call(server.addr(), "GET", "/v1/models", "", "");
    assert_eq!(status, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    let (status, _) = call(
        server.addr(),
        "GET",
        "/v1/models",
        "",
        "Authorization: Bearer wrong\r\n",
    );
    assert_eq!(status, 401);
    let (status, _) = call(
        server.addr(),
        "GET",
        "/v1/models",
        "",
        "Authorization: Bearer s3cret\r\n",
    );
    assert_eq!(status, 200);
}
