//! The data fingerprint on its own: equal data, equal fingerprints; each
//! kind of change is told in plain words; big file lists are capped.

use cllm_data::dataset::TokenDataset;
use cllm_data::fingerprint::{DataFingerprint, MAX_LISTED_FILES};
use cllm_data::tokenizer::Tokenizer;

fn files(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| (n.to_string(), format!("// {n}\nint x;\n")))
        .collect()
}

fn fingerprint(files: &[(String, String)], tokenizer_json: &str) -> DataFingerprint {
    let data = TokenDataset::from_texts(&Tokenizer::bytes(), files);
    let val = TokenDataset::from_texts(&Tokenizer::bytes(), &files[files.len() - 1..]);
    DataFingerprint::new(files, &data, &val, tokenizer_json)
}

#[test]
fn same_data_same_fingerprint_and_it_survives_json() {
    let f = files(&["a.c", "b.c"]);
    let fp = fingerprint(&f, "{}");
    assert_eq!(fingerprint(&f, "{}"), fp);
    assert_eq!(fp.difference(&fp.clone()), None);
    assert_eq!(fp.files, 2);
    assert_eq!(fp.train_tokens, f[0].1.len() + f[1].1.len());
    assert_eq!(fp.train_hash.len(), 64);
    let json = serde_json::to_string(&fp).unwrap();
    let back: DataFingerprint = serde_json::from_str(&json).unwrap();
    assert_eq!(back, fp);
}

#[test]
fn changes_are_named() {
    let before = fingerprint(&files(&["a.c", "b.c", "c.c", "d.c"]), "{}");
    let now = fingerprint(&files(&["a.c", "c.c", "e.c", "f.c", "g.c"]), "{}");
    assert_eq!(
        before.difference(&now).unwrap(),
        "the file list changed: 3 files added, 2 files removed (e.g. added: e.c)"
    );
    let mut edited = files(&["a.c", "b.c", "c.c", "d.c"]);
    edited[2].1.push_str("int y;\n");
    assert_eq!(
        before.difference(&fingerprint(&edited, "{}")).unwrap(),
        "the file list changed: 1 file changed (e.g. changed: c.c)"
    );
    let mut reordered = files(&["a.c", "b.c", "c.c", "d.c"]);
    reordered.swap(0, 1);
    assert!(
        before
            .difference(&fingerprint(&reordered, "{}"))
            .unwrap()
            .contains("another order")
    );
    assert_eq!(
        before
            .difference(&fingerprint(&files(&["a.c", "b.c", "c.c", "d.c"]), "{ }"))
            .unwrap(),
        "the tokenizer changed"
    );
}

#[test]
fn big_file_lists_keep_only_their_hash() {
    let names: Vec<String> = (0..=MAX_LISTED_FILES).map(|i| format!("f{i}.c")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let big = fingerprint(&files(&refs), "{}");
    assert!(big.file_list.is_none());
    let fewer = fingerprint(&files(&refs[1..]), "{}");
    assert_eq!(
        fewer.file_list.as_ref().map(Vec::len),
        Some(MAX_LISTED_FILES)
    );
    assert_eq!(
        big.difference(&fewer).unwrap(),
        format!(
            "the file list changed ({} files before, {} now)",
            MAX_LISTED_FILES + 1,
            MAX_LISTED_FILES
        )
    );
}
