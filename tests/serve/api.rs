//! Completions, streaming and chat: the engine's reply in OpenAI's shapes,
//! with seeds and stop strings.

use super::*;

#[test]
fn models_lists_the_model_and_its_chat_format() {
    let server = start(lively_model(), 1, 1);
    let (status, v) = call(server.addr(), "GET", "/v1/models", "", "");
    assert_eq!(status, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny");
    assert_eq!(v["data"][0]["context_length"], 32);
    assert!(
        v["data"][0]["chat_format"]
            .as_str()
            .unwrap()
            .contains("plain text")
    );
    let (status, v) = call(server.addr(), "GET", "/v1/models/tiny", "", "");
    assert_eq!((status, &v["id"]), (200, &json!("tiny")));
}

#[test]
fn completion_is_the_engine_reply_with_usage_and_finish_reason() {
    let model = lively_model();
    let expected = library_reply(
        &model,
        "int main",
        SamplingConfig {
            temperature: 0.0,
            max_new_tokens: 8,
            ..SamplingConfig::default()
        },
    );
    let server = start(model, 1, 1);
    let body =
        json!({"model": "anything", "prompt": "int main", "max_tokens": 8, "temperature": 0});
    let (status, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "tiny");
    assert_eq!(text_of(&v), expected);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], 8);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(v["usage"]["total_tokens"], 16);

    // A suffix (editors' fill in the middle) is accepted and ignored.
    let body = json!({"prompt": "int main", "suffix": "}", "max_tokens": 8, "temperature": 0});
    let (status, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!((status, text_of(&v)), (200, expected.as_str()), "{v}");
    // echo puts the prompt first; logprobs report each token.
    let body = json!({"prompt": "int main", "max_tokens": 8, "temperature": 0, "echo": true});
    let (_, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(text_of(&v), format!("int main{expected}"));
    let body = json!({"prompt": "int main", "max_tokens": 4, "temperature": 0, "logprobs": 2});
    let (status, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(status, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 4);
    for (x, top) in lp["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(lp["top_logprobs"].as_array().unwrap())
    {
        assert!(x.as_f64().unwrap() <= 0.0);
        assert!(!top.as_object().unwrap().is_empty());
        assert!(top.as_object().unwrap().len() <= 2);
    }
}

#[test]
fn same_seed_same_text_and_another_seed_differs() {
    let server = start(lively_model(), 2, 2);
    let body = |seed: u64| json!({"prompt": "x", "max_tokens": 24, "temperature": 1.0, "top_k": 0, "seed": seed});
    let (_, a) = post(server.addr(), "/v1/completions", &body(7));
    let (_, b) = post(server.addr(), "/v1/completions", &body(7));
    let (_, c) = post(server.addr(), "/v1/completions", &body(8));
    assert_eq!(text_of(&a), text_of(&b));
    assert_ne!(
        text_of(&a),
        text_of(&c),
        "24 tokens of 256 ids at temperature 1"
    );
}

#[test]
fn stop_strings_end_the_reply_before_them() {
    let server = start(closing_model(), 1, 1);
    for stop in [json!("}}}"), json!(["\u{1}", "}}}"])] {
        let body = json!({"prompt": "x", "max_tokens": 10, "temperature": 0, "stop": stop});
        let (status, v) = post(server.addr(), "/v1/completions", &body);
        assert_eq!(status, 200, "{v}");
        assert_eq!(text_of(&v), "");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }
    let body = json!({"prompt": "x", "max_tokens": 10, "temperature": 0, "stop": "\u{1}"});
    let (_, v) = post(server.addr(), "/v1/completions", &body);
    assert_eq!(text_of(&v), "}".repeat(10));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn streaming_sends_each_piece_then_finish_usage_and_done() {
    let model = lively_model();
    let server = start(model, 1, 1);
    let body = json!({"prompt": "int", "max_tokens": 20, "temperature": 0.9, "seed": 3});
    let (_, whole) = post(server.addr(), "/v1/completions", &body);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let events = Events::open(server.addr(), "/v1/completions", &streamed);
    assert_eq!(events.status, 200);
    assert_eq!(
        header(&events.headers, "content-type"),
        Some("text/event-stream")
    );
    let chunks = events.collect();
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 20);
    let (finish, pieces) = rest.split_last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert!(
        pieces
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
    assert!(pieces.len() > 1, "tokens arrive one by one");
    let text: String = pieces.iter().map(text_of).collect();
    assert_eq!(text, text_of(&whole), "streamed and whole replies agree");
}

#[test]
fn chat_formats_messages_as_text_whole_and_streamed() {
    let server = start(closing_model(), 1, 1);
    let body =
        json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5});
    let (status, v) = post(server.addr(), "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "}}}}}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let prompt = "User: hi\nAssistant:";
    assert_eq!(v["usage"]["prompt_tokens"], prompt.len());

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = Events::open(server.addr(), "/v1/chat/completions", &streamed).collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "}}}}}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}
