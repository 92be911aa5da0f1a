//! Tokenizer round trips, Hugging Face compatibility of the saved
//! `tokenizer.json`, progress and cancelling.

use std::str::FromStr;
use std::sync::atomic::AtomicBool;

use cllm_core::rng::Rng;
use cllm_data::tokenizer::{EOT, MIN_BPE_VOCAB_SIZE, Tokenizer};

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
    let mut hf = tokenizers::Tokenizer::from_str(&json).unwrap();
    // tokenizer.json cannot say "special tokens in the input are text";
    // another program that loads it sets that itself to get our ids.
    hf.set_encode_special_tokens(true);
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
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
fn bad_inputs_are_errors() {
    let texts = ["abc"];
    let err =
        Tokenizer::train_bpe(&texts, 100, &mut |_, _| {}, &AtomicBool::new(false)).unwrap_err();
    assert!(err.to_string().contains("too small"), "{err}");
    let err = Tokenizer::train_bpe(
        &texts,
        MIN_BPE_VOCAB_SIZE - 1,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(&MIN_BPE_VOCAB_SIZE.to_string()),
        "{err}"
    );
    Tokenizer::train_bpe(
        &texts,
        MIN_BPE_VOCAB_SIZE,
        &mut |_, _| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(Tokenizer::from_json("{not json").is_err());
    // A word-level (not byte-level) tokenizer is refused with a reason.
    let word_level = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"hello":0,"[UNK]":1},"unk_token":"[UNK]"}}"#;
    let err = Tokenizer::from_json(word_level).unwrap_err();
    assert!(err.to_string().contains("byte level"), "{err}");
}

/// The reported panic: a 65,535-byte line puts the 64 KiB training-chunk
/// target inside the following three-byte character.
#[test]
fn long_line_then_korean_trains_and_round_trips() {
    let text = format!("{}한\nmore text 한국어\n", "a".repeat(65_535));
    let tok = Tokenizer::train_bpe(&[&text], 300, &mut |_, _| {}, &AtomicBool::new(false))
        .expect("training on a long line before a multi-byte character");
    assert_eq!(tok.decode(&tok.encode(&text)), text);
    // The same with the character at every offset around the target, after
    // short words (quicker to train on than one 64 KiB word).
    for pad in 65_530..65_540 {
        let words: String = "ab cd ".chars().cycle().take(pad).collect();
        let text = format!("{words}한글\n");
        let tok = Tokenizer::train_bpe(&[&text], 270, &mut |_, _| {}, &AtomicBool::new(false))
            .unwrap_or_else(|e| panic!("pad {pad}: {e}"));
        assert_eq!(tok.decode(&tok.encode(&text)), text, "pad {pad}");
    }
}

/// `<|endoftext|>` typed in a file is text: it round-trips and never
/// becomes the separator id, also after a save and reload (checkpoints).
#[test]
fn literal_endoftext_in_a_file_is_ordinary_text() {
    let mut files = corpus();
    files.push(format!(
        "// tokens look like {EOT} in docs\nlet s = \"{EOT}\";\n"
    ));
    let texts: Vec<&str> = files.iter().map(|s| s.as_str()).collect();
    let tok = Tokenizer::train_bpe(&texts, 500, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
    let eot = tok.eot_id().expect("BPE has a separator");
    let reloaded = Tokenizer::from_json(&tok.to_json()).unwrap();
    assert_eq!(reloaded.eot_id(), Some(eot));
    for text in [
        EOT.to_string(),
        format!("before{EOT}after"),
        format!("{EOT}{EOT}\n {EOT} x"),
        files.last().unwrap().clone(),
    ] {
        for (which, t) in [("trained", &tok), ("reloaded", &reloaded)] {
            let ids = t.encode(&text);
            assert!(
                !ids.contains(&eot),
                "{which}: {text:?} encoded with the separator id: {ids:?}"
            );
            assert_eq!(t.decode(&ids), text, "{which}");
        }
        assert_eq!(reloaded.encode(&text), tok.encode(&text));
    }
    // The separator itself still decodes to its text, for generation.
    assert_eq!(tok.decode(&[eot]), EOT);
}

/// Damage the `tokenizers` library panics on (found by
/// crates/train/tests/fuzz_checkpoint_sections.rs): a syntax error inside
/// the decoder (it `expect`s its helper), and a subword prefix longer than
/// a merge's second token (it subtracts the lengths). Errors, not panics.
#[test]
fn tokenizer_json_the_library_panics_on_is_an_error() {
    let json = train(300).to_json();
    let at = json.find("\"decoder\"").unwrap();
    let open = at + json[at..].find('{').unwrap();
    let broken = format!(
        "{}{{\"type\" \"ByteLevel\"{}",
        &json[..open],
        &json[open + 1..]
    );
    let err = Tokenizer::from_json(&broken).unwrap_err();
    assert!(
        err.to_string().contains("not a valid tokenizer.json"),
        "{err}"
    );

    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["model"]["continuing_subword_prefix"] = "##########".into();
    let err = Tokenizer::from_json(&value.to_string()).unwrap_err();
    assert!(
        err.to_string().contains("continuing_subword_prefix"),
        "{err}"
    );
}
