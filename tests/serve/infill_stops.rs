//! Why an `/infill` answer ends, in llama.cpp's `stop_type`: the model's
//! end of text (`eos`), a stop string (`word`, with `stopping_word`),
//! `n_predict` (`limit`), a line indented less than `n_indent` (`limit`,
//! the line cut at its text), and `t_max_predict_ms` (`limit` at the first
//! new line past the time, never in the middle of a line).

use super::*;

fn infill(server: &ServerHandle, extra: Value) -> Value {
    let mut body =
        json!({"input_prefix": "int f(void) {\n", "input_suffix": "}\n", "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, v) = post(server.addr(), "/infill", &body);
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn end_of_text_stop_strings_and_n_predict() {
    let eot = fim_tokenizer().eot_id().unwrap();
    let server = start_fim(always_id(eot, FIM_CTX), |_| {});
    let v = infill(&server, json!({"n_predict": 10}));
    assert_eq!(
        (&v["stop_type"], &v["content"]),
        (&json!("eos"), &json!(""))
    );
    assert_eq!(v["tokens_predicted"], 1);

    let server = start_fim(always_model("}", FIM_CTX), |_| {});
    let v = infill(&server, json!({"n_predict": 5}));
    assert_eq!(
        (&v["stop_type"], &v["content"]),
        (&json!("limit"), &json!("}}}}}"))
    );
    assert_eq!(v["stopping_word"], "");
    let v = infill(&server, json!({"n_predict": 10, "stop": ["x", "}}}"]}));
    assert_eq!(
        (&v["stop_type"], &v["content"]),
        (&json!("word"), &json!(""))
    );
    assert_eq!(v["stopping_word"], "}}}");
}

#[test]
fn a_line_indented_less_than_n_indent_ends_the_middle_before_its_text() {
    // Every token a new line: the second line is empty, indented 0 < 4.
    let server = start_fim(always_model("\n", FIM_CTX), |_| {});
    let v = infill(&server, json!({"n_predict": 10, "n_indent": 4}));
    assert_eq!(
        (&v["stop_type"], &v["content"]),
        (&json!("limit"), &json!("\n"))
    );
    assert_eq!(v["has_new_line"], true);
    let v = infill(&server, json!({"n_predict": 10}));
    assert_eq!(v["content"], "\n".repeat(10), "no n_indent, no cut");
}

#[test]
fn past_t_max_predict_ms_the_middle_ends_at_a_new_line_only() {
    // A model slow enough and a context long enough that 1 ms passes long
    // before the context's end.
    let n_ctx = 512;
    let server = start_fim(always_model_slow("\n", n_ctx), |_| {});
    let v = infill(&server, json!({"n_predict": -1, "t_max_predict_ms": 1}));
    assert_eq!(v["stop_type"], "limit", "{v}");
    let n = v["tokens_predicted"].as_u64().unwrap() as usize;
    let room = n_ctx - v["tokens_evaluated"].as_u64().unwrap() as usize;
    assert!(n < room, "stopped by the time, not the context: {v}");
    assert_eq!(v["truncated"], false);
    assert!(v["timings"]["predicted_ms"].as_f64().unwrap() >= 1.0, "{v}");
    // Without new lines the time limit never cuts: n_predict ends it.
    let server = start_fim(always_model("}", n_ctx), |_| {});
    let v = infill(&server, json!({"n_predict": 300, "t_max_predict_ms": 1}));
    assert_eq!(v["tokens_predicted"], 300);
    assert_eq!(v["stop_type"], "limit");
}
