//! Tokenizer round trips, Hugging Face compatibility of the saved
//! `tokenizer.json`, progress and cancelling.

use std::str::FromStr;
use std::sync::atomic::AtomicBool;

use cllm::data::tokenizer::{EOT, Tokenizer};
use cllm::rng::Rng;

/// A small varied corpus made at run time: C, Rust, prose, unicode.
fn corpus() -> Vec<String> {
    let mut files = Vec::new();
    for i in 0..40 {
        files.push(format!(
            "#include <stdio.h>\n\nstatic int counter_{i} = {i};\n\nint add_{i}(int a, int b) {{\n    \
             return a + b * {i}; // add things\n}}\n\nint main(void) {{\n\tprintf(\"%d\\n\", add_{i}(1, 2));\n    \
             return 0;\n}}\n"
        ));
        files.push(format!(
            "fn compute_{i}(values: &[f32]) -> f32 {{\n    values.iter().map(|v| v * {i}.0).sum()\n}}\n"
        ));
        files.push(format!(
            "The quick brown fox jumps over the lazy dog {i} times. Ünïcödé façade, naïve café — \
             日本語のテキスト {i}. Emoji 🦀🚀 and math ∑∫√.\n\n"
        ));
    }
    files
}

fn samples() -> Vec<String> {
    let mut s: Vec<String> = vec![
        String::new(),
        "int main() {\n    return 0;\n}\n".into(),
        "fn main() { println!(\"héllo\"); }".into(),
        "    \t\t   \n\n\n      trailing spaces   ".into(),
        "Prose, with punctuation... and 'quotes' — \"double\" too!".into(),
        "日本語 中文 한국어 العربية עברית ελληνικά кириллица".into(),
        "emoji 🦀👩‍👩‍👧‍👦 combining e\u{301} zero\u{200b}width \u{feff}".into(),
        "\r\n\r mixed\rline\r\nendings\0nul".into(),
        format!("before{EOT}after"),
        "x".repeat(3000),
        " ".repeat(257),
    ];
    // Random unicode strings, including rare code points.
    let mut rng = Rng::new(11);
    for _ in 0..20 {
        let len = rng.below(60) as usize;
        let text: String = (0..len)
            .filter_map(|_| char::from_u32(rng.below(0x2_0000) as u32))
            .collect();
        s.push(text);
    }
    s
}

fn train(vocab: usize) -> Tokenizer {
    let files = corpus();
    let texts: Vec<&str> = files.iter().map(|s| s.as_str()).collect();
    Tokenizer::train_bpe(&texts, vocab, &mut |_, _| {}, &AtomicBool::new(false)).unwrap()
}

#[test]
fn bpe_round_trips_and_compresses() {
    let tok = train(600);
    // A small corpus can run out of pairs to merge before the target.
    assert!(
        (400..=600).contains(&tok.vocab_size()),
        "vocab {}",
        tok.vocab_size()
    );
    let eot = tok.eot_id().expect("BPE has <|endoftext|>");
    assert_eq!(tok.decode(&[eot]), EOT);
    for text in samples() {
        let ids = tok.encode(&text);
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        assert_eq!(tok.decode(&ids), text, "round trip of {text:?}");
        // Streaming decode: the tokens' bytes concatenate to the text.
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| tok.token_bytes(id)).collect();
        assert_eq!(bytes, text.as_bytes());
    }
    // Trained merges pay off on text like the corpus.
    let code = &corpus()[0];
    assert!(
        tok.encode(code).len() * 2 < code.len(),
        "BPE did not compress"
    );
}

#[test]
fn saved_json_loads_in_the_tokenizers_crate_with_identical_ids_and_text() {
    let tok = train(350);
    assert_eq!(tok.vocab_size(), 350);
    let json = tok.to_json();
    let hf = tokenizers::Tokenizer::from_str(&json).unwrap();
    let reloaded = Tokenizer::from_json(&json).unwrap();
    assert_eq!(reloaded.vocab_size(), tok.vocab_size());
    assert_eq!(reloaded.eot_id(), tok.eot_id());
    for text in samples() {
        let ours = tok.encode(&text);
        let theirs = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ours, theirs, "ids differ for {text:?}");
        assert_eq!(
            hf.decode(&ours, false).unwrap(),
            tok.decode(&ours),
            "text differs for {text:?}"
        );
        assert_eq!(reloaded.encode(&text), ours);
    }
}

#[test]
fn byte_tokenizer_is_the_bytes_and_its_json_is_hf_compatible() {
    let tok = Tokenizer::bytes();
    assert_eq!(tok.vocab_size(), 256);
    assert_eq!(tok.eot_id(), None);
    let json = tok.to_json();
    let hf = tokenizers::Tokenizer::from_str(&json).unwrap();
    assert!(matches!(
        Tokenizer::from_json(&json).unwrap(),
        Tokenizer::Bytes
    ));
    for text in samples() {
        let ids = tok.encode(&text);
        let expected: Vec<u32> = text.bytes().map(u32::from).collect();
        assert_eq!(ids, expected);
        assert_eq!(tok.decode(&ids), text);
        assert_eq!(
            hf.encode(text.as_str(), false).unwrap().get_ids(),
            ids.as_slice()
        );
        assert_eq!(hf.decode(&ids, false).unwrap(), text);
    }
    // One byte of a multi-byte character is a partial sequence.
    assert_eq!(tok.token_bytes(0xC3), vec![0xC3]);
    assert!(tok.token_bytes(300).is_empty());
}

#[test]
fn progress_is_reported_and_cancel_stops_training() {
    let files = corpus();
    let texts: Vec<&str> = files.iter().map(|s| s.as_str()).collect();
    let mut calls = Vec::new();
    Tokenizer::train_bpe(
        &texts,
        300,
        &mut |d, t| calls.push((d, t)),
        &AtomicBool::new(false),
    )
    .unwrap();
    let (done, total) = *calls.last().unwrap();
    assert_eq!(done, total);
    assert!(calls.iter().all(|&(d, t)| d <= t && t == total));
    let err =
        Tokenizer::train_bpe(&texts, 300, &mut |_, _| {}, &AtomicBool::new(true)).unwrap_err();
    assert!(err.contains("cancelled"), "{err}");
}

#[test]
fn bad_inputs_are_errors() {
    let texts = ["abc"];
    let err =
        Tokenizer::train_bpe(&texts, 100, &mut |_, _| {}, &AtomicBool::new(false)).unwrap_err();
    assert!(err.contains("too small"), "{err}");
    assert!(Tokenizer::from_json("{not json").is_err());
    // A word-level (not byte-level) tokenizer is refused with a reason.
    let word_level = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"hello":0,"[UNK]":1},"unk_token":"[UNK]"}}"#;
    let err = Tokenizer::from_json(word_level).unwrap_err();
    assert!(err.contains("byte level"), "{err}");
}
