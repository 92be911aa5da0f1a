//! `/v1/completions` filling a hole: OpenAI's `suffix`, and FIM marker text
//! in the prompt (Continue's default template, Qwen's spellings, files
//! before the prefix) turned into the special tokens; whole and streamed,
//! each the engine's middle.

use super::*;
use cllm_generate::Infill;

const PREFIX: &str = "int sum(const int *values, int n) {\n    int total = 0;\n";
const SUFFIX: &str = "    return total;\n}\n";

fn greedy(prompt: &str, extra: Value) -> Value {
    let mut body =
        json!({"prompt": prompt, "max_tokens": 12, "temperature": 0, "repetition_penalty": 1.0});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn a_suffix_or_fim_marker_text_fills_the_hole() {
    let model = lively_fim_model();
    let (expected, stats) = library_middle(&model, PREFIX, SUFFIX, 12);
    let server = start_fim(model, |_| {});
    let addr = server.addr();
    let (status, v) = post(
        addr,
        "/v1/completions",
        &greedy(PREFIX, json!({"suffix": SUFFIX})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(text_of(&v), expected);
    assert_eq!(v["usage"]["prompt_tokens"], stats.prompt_tokens);
    // Continue's default template, and Qwen's spellings of the markers.
    for template in [
        format!("<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"),
        format!("<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"),
    ] {
        let (status, v) = post(addr, "/v1/completions", &greedy(&template, json!({})));
        assert_eq!(status, 200, "{v}");
        assert_eq!(text_of(&v), expected, "{template}");
        assert_eq!(v["usage"]["prompt_tokens"], stats.prompt_tokens);
        // Streamed, as Continue asks: the same middle, piece by piece.
        let mut streamed = greedy(&template, json!({}));
        streamed["stream"] = json!(true);
        let chunks = Events::open(addr, "/v1/completions", &streamed).collect();
        let text: String = chunks.iter().map(text_of).collect();
        assert_eq!(text, expected);
    }
    // The hole without any suffix is a plain continuation of the prefix.
    let (_, plain) = post(addr, "/v1/completions", &greedy(PREFIX, json!({})));
    assert_eq!(
        plain["usage"]["prompt_tokens"],
        fim_tokenizer().encode(PREFIX).len()
    );
}

#[test]
fn marker_holes_in_either_order_are_filled_and_other_arrangements_read_as_ids() {
    let model = lively_fim_model();
    let tok = fim_tokenizer();
    let server = start_fim(model.clone(), |_| {});
    let addr = server.addr();
    // <file_sep>name\ntext, then the hole: the file is context before it,
    // kept while it fits beside the room left for the middle (4 tokens).
    let with_file = format!(
        "<file_sep>point.h\nstruct point;\n<fim_prefix>{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"
    );
    let (ids, found) = cllm_data::fim::encode_with_markers(tok, &with_file);
    assert!(found);
    let hole = Infill {
        prefix: PREFIX.into(),
        suffix: SUFFIX.into(),
        extra: vec![cllm_data::fim::ExtraChunk {
            filename: "point.h".into(),
            text: "struct point;\n".into(),
        }],
    };
    let (expected, stats) = library_fill(&model, &hole, 4);
    assert_eq!(stats.prompt_tokens, ids.len());
    let short = json!({"max_tokens": 4});
    let (status, v) = post(addr, "/v1/completions", &greedy(&with_file, short));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], ids.len());
    assert_eq!(text_of(&v), expected);
    // With room for 12 new tokens the file no longer fits: it is left out,
    // the hole kept whole.
    let (status, v) = post(addr, "/v1/completions", &greedy(&with_file, json!({})));
    assert_eq!(status, 200, "{v}");
    let (expected, stats) = library_middle(&model, PREFIX, SUFFIX, 12);
    assert_eq!(v["usage"]["prompt_tokens"], stats.prompt_tokens);
    assert_eq!(text_of(&v), expected);
    // Suffix first (SPM): the same hole, the same middle.
    let spm = format!("<fim_suffix>{SUFFIX}<fim_prefix>{PREFIX}<fim_middle>");
    let (status, v) = post(addr, "/v1/completions", &greedy(&spm, json!({})));
    assert_eq!(status, 200, "{v}");
    assert_eq!(text_of(&v), expected);
    // Marker text that is no hole is read as its ids: a middle after
    // marker text is the model's, token for token.
    let other = format!("<file_sep>sum.c\n{PREFIX}<fim_middle>");
    let (ids, _) = cllm_data::fim::encode_with_markers(tok, &other);
    let mut g = Generator::from_ids(
        &model,
        tok,
        ids.clone(),
        PREFIX,
        SamplingConfig {
            temperature: 0.0,
            max_new_tokens: 12,
            repetition_penalty: 1.0,
            ..SamplingConfig::default()
        },
        cllm_generate::decoder::DecodeOptions::default(),
    )
    .unwrap();
    while g.next_token().is_some() {}
    let (status, v) = post(addr, "/v1/completions", &greedy(&other, json!({})));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], ids.len());
    assert_eq!(text_of(&v), g.text());
    // ... and refused when too long for the context, as text is.
    let long = format!("<file_sep>big.c\n{}<fim_middle>", C_TEXT.repeat(3));
    let (status, v) = post(addr, "/v1/completions", &greedy(&long, json!({})));
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("context_length_exceeded"))
    );
    // A hole too long for the context is cut, not refused.
    let long = format!(
        "<fim_prefix>{}<fim_suffix>{SUFFIX}<fim_middle>",
        C_TEXT.repeat(3)
    );
    let (status, v) = post(addr, "/v1/completions", &greedy(&long, json!({})));
    assert_eq!(status, 200, "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() < FIM_CTX as u64);
}
