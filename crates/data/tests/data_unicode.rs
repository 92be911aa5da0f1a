//! Text handling on generated Unicode: training a tokenizer never panics
//! wherever a multi-byte character falls against the 64 KiB training-chunk
//! target, encode / decode round-trips, and the train / validation text
//! split never loses or cuts a character.

use std::sync::atomic::AtomicBool;

use cllm_data::dataset::{Split, split_texts};
use cllm_data::tokenizer::Tokenizer;
use proptest::prelude::*;

/// Texts are fed to the BPE trainer in pieces of about this many bytes
/// (`TRAIN_CHUNK_BYTES` in crates/data/src/tokenizer.rs).
const CHUNK: usize = 64 * 1024;

/// Characters of every UTF-8 width, plus line ends and the separator's
/// characters, so lines of all lengths come out.
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range('a', 'z'),
        1 => Just('\n'),
        1 => Just(' '),
        2 => prop::char::range('\u{80}', '\u{7ff}'),
        2 => prop::char::range('\u{800}', '\u{ffff}'),
        2 => prop::char::range('\u{10000}', '\u{10ffff}'),
        1 => prop::sample::select(vec!['<', '|', '>', 'é', '한', '🦀', '\u{feff}']),
    ]
}

fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any_char(), 0..max).prop_map(|cs| cs.into_iter().collect())
}

/// `len` bytes of short ASCII words, no line end.
fn filler(len: usize) -> String {
    "ab cd ef ".chars().cycle().take(len).collect()
}

fn train(texts: &[&str], vocab: usize) -> Tokenizer {
    Tokenizer::train_bpe(texts, vocab, &mut |_, _| {}, &AtomicBool::new(false))
        .unwrap_or_else(|e| panic!("training failed: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A long first line of `pad` bytes (every length from 8 before to 8
    /// after the chunk target) ending in a run of one-, two-, three- or
    /// four-byte characters, then random text: training succeeds and the
    /// text round-trips. The line is short words, so training stays fast.
    #[test]
    fn training_around_the_chunk_target_never_panics(
        back in 0usize..=16,
        wide in prop::sample::select(vec!['a', 'é', '한', '🦀']),
        tail in any_text(40),
        second in any_text(200),
    ) {
        let pad = CHUNK - 8 + back;
        let run: String = std::iter::repeat_n(wide, 8).collect();
        let text = format!("{}{run}{tail}", filler(pad - run.len()));
        prop_assert_eq!(text.len(), pad + tail.len());
        let tok = train(&[&text, &second], 280);
        prop_assert_eq!(tok.decode(&tok.encode(&text)), text);
        prop_assert_eq!(tok.decode(&tok.encode(&second)), second);
    }

    /// Random texts train a tokenizer that round-trips them and other
    /// random texts (unseen characters fall back to their bytes).
    #[test]
    fn random_unicode_round_trips(
        texts in prop::collection::vec(any_text(300), 1..5),
        other in any_text(300),
    ) {
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let tok = train(&refs, 300);
        for t in texts.iter().chain([&other]) {
            let ids = tok.encode(t);
            prop_assert_eq!(&tok.decode(&ids), t);
            let bytes: Vec<u8> = ids.iter().flat_map(|&id| tok.token_bytes(id)).collect();
            prop_assert_eq!(bytes.as_slice(), t.as_bytes());
        }
    }

    /// Splitting texts into train / validation keeps every byte, in order,
    /// whatever the fraction and wherever the cut lands.
    #[test]
    fn text_split_keeps_every_character(
        texts in prop::collection::vec(any_text(120), 1..6),
        fraction in 0.0f32..0.9,
        by_files in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // Scanned files are never empty; a cut never makes an empty piece.
        let files: Vec<(String, String)> = texts
            .iter()
            .filter(|t| !t.is_empty())
            .enumerate()
            .map(|(i, t)| (format!("f{i}"), t.clone()))
            .collect();
        let how = if by_files { Split::Files(fraction) } else { Split::Fraction(fraction) };
        let (train, val) = split_texts(&files, how, seed);
        prop_assert!(train.iter().chain(&val).all(|(_, t)| !t.is_empty()));
        let total: usize = texts.iter().map(|t| t.len()).sum();
        let held: usize = val.iter().map(|(_, t)| t.len()).sum();
        let kept: usize = train.iter().map(|(_, t)| t.len()).sum();
        prop_assert_eq!(held + kept, total);
        if !by_files {
            // The tail split: train then validation is the text in order.
            let joined: String = train.iter().chain(&val).map(|(_, t)| t.as_str()).collect();
            prop_assert_eq!(joined, texts.concat());
        }
    }
}
