//! Who may call the server and what it keeps: `/health` without the API
//! key, the key from `CLLM_API_KEY` or `--api-key-file`, CORS with its
//! preflight, and the request log (never the key).

use super::*;

#[test]
fn health_needs_no_key_and_everything_else_does() {
    let server = start_with(lively_model(), |c| c.api_key = Some("s3cret".into()));
    for path in ["/health", "/v1/health"] {
        let (status, v) = call(server.addr(), "GET", path, "", "");
        assert_eq!((status, &v["status"]), (200, &json!("ok")), "{path}");
    }
    let (status, _) = call(server.addr(), "POST", "/infill", "{}", "");
    assert_eq!(status, 401);
    let (status, _) = call(server.addr(), "GET", "/", "", "");
    assert_eq!(status, 401);
}

const ORIGIN: &str = "http://localhost:5173";

#[test]
fn cors_answers_the_preflight_and_marks_answers_for_allowed_origins() {
    let server = start_with(lively_model(), |c| {
        c.cors = vec![ORIGIN.into()];
        c.api_key = Some("k".into());
    });
    let addr = server.addr();
    let preflight = format!(
        "Origin: {ORIGIN}\r\nAccess-Control-Request-Method: POST\r\n\
         Access-Control-Request-Headers: authorization, content-type\r\n"
    );
    // No key on a preflight: browsers do not send it there.
    let (status, headers, _) = call_raw_empty(addr, "OPTIONS", "/v1/completions", &preflight);
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert!(
        header(&headers, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        header(&headers, "access-control-allow-headers"),
        Some("authorization, content-type")
    );
    // The answers themselves, whole and streamed.
    let auth = format!("Origin: {ORIGIN}\r\nAuthorization: Bearer k\r\n");
    let (status, headers, _) = call_raw(addr, "GET", "/v1/models", "", &auth);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    let body = json!({"prompt": "x", "max_tokens": 2, "stream": true}).to_string();
    let mut s = connect(addr);
    send_request(&mut s, "POST", "/v1/completions", &body, &auth);
    let (status, headers) = read_head(&mut BufReader::new(s));
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(ORIGIN)
    );
    // Another origin gets no CORS header and a refused preflight.
    let other = "Origin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\n";
    let (status, headers, raw) = call_raw(addr, "OPTIONS", "/v1/completions", "", other);
    assert_eq!(status, 403, "{raw}");
    assert!(raw.contains("--cors http://evil.example"), "{raw}");
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    let (_, headers, _) = call_raw(addr, "GET", "/health", "", other);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    // Without --cors nothing is allowed; any origin with '*'.
    let closed = start_with(lively_model(), |_| {});
    let (status, _, _) = call_raw(closed.addr(), "OPTIONS", "/infill", "", &preflight);
    assert_eq!(status, 403);
    let open = start_with(lively_model(), |c| c.cors = vec!["*".into()]);
    let (status, headers, _) = call_raw_empty(open.addr(), "OPTIONS", "/infill", &preflight);
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
}

/// A request whose answer has no body (204).
fn call_raw_empty(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &str,
) -> (u16, Vec<(String, String)>, ()) {
    let mut s = connect(addr);
    send_request(&mut s, method, path, "", extra);
    let (status, headers) = read_head(&mut BufReader::new(s));
    (status, headers, ())
}

#[test]
fn the_request_log_has_a_json_line_per_request_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let server = start_fim(lively_fim_model(), |c| {
        c.request_log = Some(path.clone());
        c.api_key = Some("hunter2-key".into());
    });
    let auth = "Authorization: Bearer hunter2-key\r\n";
    let body = json!({"input_prefix": "int x", "input_suffix": ";\n", "n_predict": 3}).to_string();
    let (status, _, _) = call_raw(server.addr(), "POST", "/infill", &body, auth);
    assert_eq!(status, 200);
    let (status, _, _) = call_raw(server.addr(), "GET", "/v1/models", "", "");
    assert_eq!(status, 401);
    let streamed = json!({"prompt": "int", "max_tokens": 2, "stream": true}).to_string();
    let mut s = connect(server.addr());
    send_request(&mut s, "POST", "/v1/completions", &streamed, auth);
    let mut events = Events {
        r: BufReader::new(s),
        status: 0,
        headers: Vec::new(),
        buf: String::new(),
    };
    events.status = read_head(&mut events.r).0;
    events.collect();
    drop(server);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let infill = &lines[0];
    assert_eq!(
        (&infill["endpoint"], &infill["status"]),
        (&json!("/infill"), &json!(200))
    );
    assert!(infill["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(infill["predicted_tokens"].as_u64().unwrap() <= 3);
    assert!(infill["ms"].as_f64().unwrap() >= 0.0);
    assert!(infill["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        (&lines[1]["endpoint"], &lines[1]["status"]),
        (&json!("/v1/models"), &json!(401))
    );
    assert_eq!(lines[2]["endpoint"], "/v1/completions");
    assert_eq!(lines[2]["predicted_tokens"], 2);
    assert_eq!(lines[2]["stop"], "length");
}
