//! `prepare()` end to end on folders made at run time: the tokenizer learns
//! from the training split only, Stop is told apart from failure in every
//! phase, and the data fingerprint is stable and notices changes.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cllm_data::tokenizer::Tokenizer;
use cllm_train::config::{CorpusSettings, TokenizerKind, TrainConfig};
use cllm_train::events::{Event, Phase};
use cllm_train::prepare::{PrepareError, Prepared, prepare};

/// Training text without the letters q, j and x; the last file (sorted
/// last) is full of a word made of them.
fn make_tree(dir: &Path) {
    for i in 0..12 {
        fs::write(
            dir.join(format!("a{i:02}.c")),
            format!(
                "int add_{i}(int a, int b) {{\n    return a + b * {i}; // sum the values\n}}\n"
            )
            .repeat(20),
        )
        .unwrap();
    }
    fs::write(dir.join("zz_held_out.txt"), "qqjjxx qjxqjx\n".repeat(300)).unwrap();
}

fn config(dir: &Path, val_fraction: f32) -> TrainConfig {
    TrainConfig {
        corpus: CorpusSettings {
            data: vec![dir.to_path_buf()],
            tokenizer: TokenizerKind::Bpe,
            vocab_size: 600,
            val_fraction,
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

fn run(config: &TrainConfig, tokenizer: Option<Tokenizer>) -> Result<Prepared, PrepareError> {
    prepare(config, tokenizer, &AtomicBool::new(false), &mut |_| {})
}

/// Tokens (other than single bytes and the special tokens) containing any
/// of the held-out word's letters.
fn learned_with_qjx(tok: &Tokenizer) -> Vec<String> {
    (0..tok.vocab_size() as u32)
        .filter(|&id| !tok.is_special(id))
        .map(|id| tok.token_bytes(id))
        .filter(|b| b.len() > 1 && b.iter().any(|c| b"qjx".contains(c)))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

#[test]
fn the_tokenizer_never_learns_from_validation_text() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let held_bytes = fs::metadata(tmp.path().join("zz_held_out.txt"))
        .unwrap()
        .len() as f64;
    let total: f64 = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len() as f64)
        .sum();
    // Hold out a little more than the last file.
    let fraction = (held_bytes / total + 0.02) as f32;
    let prepared = run(&config(tmp.path(), fraction), None).unwrap();
    assert_eq!(prepared.files, 13);
    assert!(prepared.val.names.contains(&"zz_held_out.txt".to_string()));
    assert!(
        !prepared
            .train
            .names
            .contains(&"zz_held_out.txt".to_string())
    );
    let leaked = learned_with_qjx(&prepared.tokenizer);
    assert!(leaked.is_empty(), "merges from validation text: {leaked:?}");
    // The validation word is spelled out byte by byte.
    let tok = &prepared.tokenizer;
    assert_eq!(tok.encode("qjxqjx").len(), 6);
    // The validation tokens are that file's text, encoded.
    let val_text = tok.decode(&prepared.val.tokens);
    assert!(val_text.ends_with(&"qqjjxx qjxqjx\n".repeat(300)));

    // Control: without a validation split the same word is learned, so the
    // check above can fail.
    let all = run(&config(tmp.path(), 0.0), None).unwrap();
    assert!(all.val.tokens.is_empty());
    assert!(!learned_with_qjx(&all.tokenizer).is_empty());
}

#[test]
fn the_split_holds_out_the_tail_of_the_text() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let mut cfg = config(tmp.path(), 0.25);
    cfg.corpus.tokenizer = TokenizerKind::Bytes;
    let p = run(&cfg, None).unwrap();
    let bytes = (p.train.bytes + p.val.bytes) as f64;
    let share = p.val.bytes as f64 / bytes;
    // Cut at a line start after the exact byte count: lines are < 80 bytes.
    assert!(
        (0.25 - 80.0 / bytes..=0.25 + 1.0 / bytes).contains(&share),
        "held out {share}"
    );
    // Byte tokens: the two sides are the texts, in order.
    let joined: Vec<u32> = [p.train.tokens.clone(), p.val.tokens.clone()].concat();
    let mut expected = Vec::new();
    let mut names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        expected.extend(fs::read(path).unwrap().into_iter().map(u32::from));
    }
    assert_eq!(joined, expected);
    // The file cut in two starts the validation side at a line start.
    let first_val = &p.val.tokens[p.val.docs[0].clone()];
    assert_eq!(p.train.names.last(), p.val.names.first());
    let train_last = &p.train.tokens[p.train.docs.last().unwrap().clone()];
    assert_eq!(*train_last.last().unwrap(), u32::from(b'\n'));
    assert!(!first_val.is_empty());
}

#[test]
fn stop_in_any_phase_is_stopped_and_failures_are_failed() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let cfg = config(tmp.path(), 0.1);

    // Stop before anything ran.
    let err = prepare(&cfg, None, &AtomicBool::new(true), &mut |_| {})
        .err()
        .unwrap();
    assert!(matches!(err, PrepareError::Stopped), "{err:?}");
    assert_eq!(err.to_string(), "stopped before training began");

    // Stop pressed when the first event of a phase is seen.
    let is_scan = |e: &Event| matches!(e, Event::Phase(Phase::Scanning { .. }));
    // BPE progress counts bytes (thousands here), encoding counts files.
    let is_bpe =
        |e: &Event| matches!(e, Event::Phase(Phase::Tokenizing { total, .. }) if *total > 1000);
    let is_encode = |e: &Event| matches!(e, Event::Phase(Phase::Tokenizing { done: 0, total }) if *total < 1000);
    type When<'a> = &'a dyn Fn(&Event) -> bool;
    let phases: [(&str, When); 3] = [
        ("scanning", &is_scan),
        ("BPE training", &is_bpe),
        ("encoding", &is_encode),
    ];
    for (what, when) in phases {
        let cancel = AtomicBool::new(false);
        let mut seen = false;
        let result = prepare(&cfg, None, &cancel, &mut |e| {
            if when(&e) {
                seen = true;
                cancel.store(true, Ordering::Relaxed);
            }
        });
        assert!(seen, "{what}: the phase never started");
        let err = result.err();
        assert!(
            matches!(err, Some(PrepareError::Stopped)),
            "{what}: {err:?}"
        );
    }

    // A missing folder is a failure naming it.
    let missing = tmp.path().join("no_such_folder");
    let err = run(&config(&missing, 0.1), None).err().unwrap();
    match &err {
        PrepareError::Failed(e) => assert!(e.to_string().contains("no_such_folder"), "{e}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // So is a folder with nothing to train on.
    let empty = tempfile::tempdir().unwrap();
    let err = run(&config(empty.path(), 0.1), None).err().unwrap();
    assert!(
        matches!(&err, PrepareError::Failed(e) if e.to_string().contains("no usable text files")),
        "{err}"
    );
}

#[test]
fn fingerprint_is_stable_across_runs_and_resumes_and_notices_changes() {
    let tmp = tempfile::tempdir().unwrap();
    make_tree(tmp.path());
    let cfg = config(tmp.path(), 0.1);
    let first = run(&cfg, None).unwrap();
    let fp = &first.fingerprint;
    assert_eq!(fp.files, 13);
    assert_eq!(fp.train_tokens, first.train.tokens.len());
    assert_eq!(fp.val_tokens, first.val.tokens.len());
    assert_eq!(run(&cfg, None).unwrap().fingerprint, *fp);
    // A resume reuses the checkpoint's tokenizer (saved as JSON).
    let saved = Tokenizer::from_json(&first.tokenizer.to_json()).unwrap();
    let resumed = run(&cfg, Some(saved)).unwrap();
    assert_eq!(resumed.fingerprint.difference(fp), None);
    assert_eq!(resumed.fingerprint, *fp);

    // A new file, then a changed one.
    fs::write(tmp.path().join("a99_new.c"), "int extra;\n").unwrap();
    let saved = Tokenizer::from_json(&first.tokenizer.to_json()).unwrap();
    let added = run(&cfg, Some(saved.clone())).unwrap().fingerprint;
    let msg = fp.difference(&added).unwrap();
    assert!(
        msg.contains("the file list changed: 1 file added (e.g. added: a99_new.c)"),
        "{msg}"
    );
    assert!(!msg.contains("tokenizer"), "{msg}");
    fs::remove_file(tmp.path().join("a99_new.c")).unwrap();
    fs::write(tmp.path().join("a03.c"), "int changed;\n").unwrap();
    let changed = run(&cfg, Some(saved.clone())).unwrap().fingerprint;
    let msg = fp.difference(&changed).unwrap();
    assert!(
        msg.contains("1 file changed (e.g. changed: a03.c)"),
        "{msg}"
    );

    // The same files with another split: the tokens changed.
    make_tree(tmp.path());
    let mut other_split = cfg.clone();
    other_split.corpus.val_fraction = 0.3;
    let split = run(&other_split, Some(saved)).unwrap().fingerprint;
    let msg = fp.difference(&split).unwrap();
    assert!(
        msg.contains("training and validation tokens changed"),
        "{msg}"
    );
    // A retrained tokenizer on other settings.
    assert!(first.tokenizer.vocab_size() > 300);
    let retrained = run(
        &{
            let mut c = cfg.clone();
            c.corpus.vocab_size = 300;
            c
        },
        None,
    )
    .unwrap()
    .fingerprint;
    assert_eq!(
        fp.difference(&retrained).as_deref(),
        Some("the tokenizer changed")
    );
}
