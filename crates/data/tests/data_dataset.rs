//! Token datasets, train/validation splits, the batch iterator's resume
//! equality, and the binary token file.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use cllm_data::batches::{BatchPosition, Batcher};
use cllm_data::dataset::{Split, TokenDataset};
use cllm_data::token_file::{read_tokens, write_tokens};
use cllm_data::tokenizer::Tokenizer;

fn files(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("f{i}.c"),
                format!("int v{i} = {};\n", i * 7).repeat(1 + i % 5),
            )
        })
        .collect()
}

#[test]
fn byte_dataset_is_the_concatenated_bytes() {
    let files = files(6);
    let data = TokenDataset::from_texts(&Tokenizer::bytes(), &files);
    let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
    let expected: Vec<u32> = all.bytes().map(u32::from).collect();
    assert_eq!(data.tokens, expected);
    assert_eq!(data.bytes, all.len() as u64);
    for (doc, (_, text)) in data.docs.iter().zip(&files) {
        assert_eq!(doc.len(), text.len());
    }
    // One byte per token: bits per byte is nats / ln 2.
    assert!((data.bits_per_byte(1.0) - 1.0 / std::f64::consts::LN_2).abs() < 1e-12);
}

#[test]
fn bpe_dataset_separates_files_with_eot() {
    let files = files(5);
    let texts: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
    let tok = Tokenizer::train_bpe(&texts, 300, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
    let eot = tok.eot_id().unwrap();
    let data = TokenDataset::from_texts(&tok, &files);
    assert_eq!(
        data.tokens.iter().filter(|&&t| t == eot).count(),
        files.len() - 1
    );
    for (i, doc) in data.docs.iter().enumerate() {
        assert_eq!(tok.decode(&data.tokens[doc.clone()]), files[i].1);
        if i > 0 {
            assert_eq!(data.tokens[doc.start - 1], eot);
        }
    }
    let raw: u64 = files.iter().map(|(_, t)| t.len() as u64).sum();
    assert_eq!(data.bytes, raw);
    let loss = 2.0;
    let bpb = loss * data.tokens.len() as f64 / (raw as f64 * std::f64::consts::LN_2);
    assert!((data.bits_per_byte(loss) - bpb).abs() < 1e-12);
}

#[test]
fn fraction_split_holds_out_the_tail() {
    let data = TokenDataset::from_texts(&Tokenizer::bytes(), &files(10));
    let (train, val) = data.split(Split::Fraction(0.25), 1);
    let expected_val = (data.len() as f64 * 0.25).round() as usize;
    assert_eq!(val.len(), expected_val);
    assert_eq!(
        [train.tokens.clone(), val.tokens.clone()].concat(),
        data.tokens
    );
    assert_eq!(train.bytes + val.bytes, data.bytes);
    assert_eq!(data.split(Split::Fraction(0.25), 99), (train, val));
}

#[test]
fn file_split_is_deterministic_and_keeps_files_whole() {
    let files = files(30);
    let data = TokenDataset::from_texts(&Tokenizer::bytes(), &files);
    let (train, val) = data.split(Split::Files(0.2), 7);
    assert_eq!(
        data.split(Split::Files(0.2), 7),
        (train.clone(), val.clone())
    );
    let train_names: HashSet<&String> = train.names.iter().collect();
    let val_names: HashSet<&String> = val.names.iter().collect();
    assert!(train_names.is_disjoint(&val_names));
    assert_eq!(train_names.len() + val_names.len(), files.len());
    for (name, doc) in val.names.iter().zip(&val.docs) {
        let text = &files.iter().find(|(n, _)| n == name).unwrap().1;
        let ids: Vec<u32> = text.bytes().map(u32::from).collect();
        assert_eq!(val.tokens[doc.clone()], ids[..]);
    }
    assert_eq!(train.bytes + val.bytes, data.bytes);
    let share = val.len() as f64 / data.len() as f64;
    assert!((0.2..0.45).contains(&share), "held out {share}");
    // Another seed picks other files.
    let differs = (8..20).any(|s| data.split(Split::Files(0.2), s).1.names != val.names);
    assert!(differs);
    // Always one file left to train on.
    let (train_all, _) = data.split(Split::Files(1.0), 3);
    assert_eq!(train_all.docs.len(), 1);
}

fn counting_dataset(n: u32) -> TokenDataset {
    TokenDataset {
        tokens: (0..n).collect(),
        docs: std::iter::once(0..n as usize).collect(),
        bytes: u64::from(n),
        doc_bytes: vec![u64::from(n)],
        names: vec!["count".into()],
        eot: None,
    }
}

#[test]
fn each_epoch_visits_every_window_once_in_a_new_order() {
    let t = 8;
    let data = counting_dataset(103);
    let mut b = Batcher::new(&data, t, 5).unwrap();
    assert_eq!(b.windows_per_epoch(), 102 / 8);
    let (mut inp, mut tgt) = (vec![0; t], vec![0; t]);
    let mut orders = Vec::new();
    for epoch in 0..3 {
        let mut starts = Vec::new();
        for _ in 0..b.windows_per_epoch() {
            assert_eq!(b.position().epoch, epoch);
            b.next_into(&mut inp, &mut tgt);
            // Tokens are their positions: the window is contiguous and the
            // target is the input shifted by one.
            for k in 0..t {
                assert_eq!(inp[k], inp[0] + k as u32);
                assert_eq!(tgt[k], inp[k] + 1);
            }
            assert_eq!(inp[0] % t as u32, 0);
            starts.push(inp[0]);
        }
        let mut sorted = starts.clone();
        sorted.sort();
        let all: Vec<u32> = (0..b.windows_per_epoch() as u32)
            .map(|w| w * t as u32)
            .collect();
        assert_eq!(sorted, all);
        orders.push(starts);
    }
    assert_eq!(b.position(), BatchPosition { epoch: 3, index: 0 });
    assert_ne!(orders[0], orders[1]);
    assert_ne!(orders[1], orders[2]);
}

#[test]
fn resumed_batcher_sees_exactly_the_same_batches() {
    let t = 4;
    let data = counting_dataset(50);
    let mut first = Batcher::new(&data, t, 9).unwrap();
    let (mut inp, mut tgt) = (vec![0; 2 * t], vec![0; 2 * t]);
    for _ in 0..7 {
        first.next_batch(&mut inp, &mut tgt);
    }
    let saved = serde_json::to_string(&first.position()).unwrap();
    let mut expected = Vec::new();
    for _ in 0..20 {
        // Crosses several epoch boundaries (12 windows per epoch).
        first.next_batch(&mut inp, &mut tgt);
        expected.push((inp.clone(), tgt.clone()));
    }
    let mut resumed = Batcher::new(&data, t, 9).unwrap();
    resumed.set_position(serde_json::from_str(&saved).unwrap());
    for (want_in, want_tgt) in expected {
        resumed.next_batch(&mut inp, &mut tgt);
        assert_eq!((inp.clone(), tgt.clone()), (want_in, want_tgt));
    }
    // A different seed gives a different order.
    let mut other = Batcher::new(&data, t, 10).unwrap();
    let mut a = Batcher::new(&data, t, 9).unwrap();
    let mut differs = false;
    for _ in 0..5 {
        a.next_into(&mut inp[..t], &mut tgt[..t]);
        let x = inp[..t].to_vec();
        other.next_into(&mut inp[..t], &mut tgt[..t]);
        differs |= x != inp[..t];
    }
    assert!(differs);
}

#[test]
fn too_little_data_is_an_error() {
    let err = Batcher::new(&counting_dataset(8), 8, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("8 tokens"), "{err}");
    assert!(Batcher::new(&counting_dataset(9), 8, 0).is_ok());
}

#[test]
fn token_file_round_trips_and_rejects_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tokens.bin");
    let tokens: Vec<u32> = (0..1000).map(|i| (i * 37) % 500).collect();
    write_tokens(&path, 500, &tokens).unwrap();
    assert_eq!(read_tokens(&path).unwrap(), (500, tokens.clone()));

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(
        read_tokens(&path)
            .unwrap_err()
            .to_string()
            .contains("truncated")
    );
    let mut bad = bytes.clone();
    bad[0] = b'X';
    std::fs::write(&path, &bad).unwrap();
    assert!(
        read_tokens(&path)
            .unwrap_err()
            .to_string()
            .contains("magic")
    );
    write_tokens(&path, 100, &tokens).unwrap();
    assert!(
        read_tokens(&path)
            .unwrap_err()
            .to_string()
            .contains("outside the vocabulary")
    );
}

#[test]
fn text_split_cuts_the_tail_at_a_line_start() {
    use cllm_data::dataset::split_texts;
    let files = vec![
        ("a".to_string(), "one\ntwo\n".to_string()),
        ("b".to_string(), "three\nfour\nfive\n".to_string()),
    ];
    // 24 bytes; 0.33 holds out 8: the cut (byte 16, inside "four") moves to
    // the next line start.
    let (train, val) = split_texts(&files, Split::Fraction(0.33), 1);
    assert_eq!(
        train,
        vec![
            ("a".to_string(), "one\ntwo\n".to_string()),
            ("b".to_string(), "three\nfour\n".to_string())
        ]
    );
    assert_eq!(val, vec![("b".to_string(), "five\n".to_string())]);
    // A cut on a line start stays there; at a file boundary no file is cut.
    let (train, val) = split_texts(&files, Split::Fraction(0.68), 1);
    assert_eq!(train, files[..1].to_vec());
    assert_eq!(val, files[1..].to_vec());
    // Nothing held out.
    assert_eq!(
        split_texts(&files, Split::Fraction(0.0), 1),
        (files.clone(), Vec::new())
    );
    // A file with no line end after the cut is cut at a character boundary.
    // 91 bytes, 46 held out: byte 45 is inside a character, 43 starts one.
    let one = vec![("k".to_string(), format!("a{}", "한국어".repeat(10)))];
    let (train, val) = split_texts(&one, Split::Fraction(0.5), 1);
    assert_eq!(format!("{}{}", train[0].1, val[0].1), one[0].1);
    assert_eq!(val[0].1.len(), 48);
}

#[test]
fn text_file_split_matches_the_token_file_split() {
    use cllm_data::dataset::split_texts;
    let files = files(30);
    // Bytes: token counts are byte counts, so both splits choose alike.
    let data = TokenDataset::from_texts(&Tokenizer::bytes(), &files);
    let (_, val) = data.split(Split::Files(0.2), 7);
    let (train_texts, val_texts) = split_texts(&files, Split::Files(0.2), 7);
    let names: Vec<String> = val_texts.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, val.names);
    assert_eq!(train_texts.len() + val_texts.len(), files.len());
}
