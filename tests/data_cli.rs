//! `cllm prepare` and `cllm tokenize` end to end on a small folder.

use std::fs;

use cllm::cli::prepare::{self, PrepareArgs};
use cllm::cli::tokenize::{self, TokenizeArgs};
use cllm::data::consolidate::split_consolidated;
use cllm::data::token_file::read_tokens;
use cllm::data::tokenizer::Tokenizer;

#[test]
fn prepare_then_tokenize() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("nested")).unwrap();
    fs::write(
        src.join("main.c"),
        "int main(void) {\r\n    return 0;\r\n}\r\n",
    )
    .unwrap();
    fs::write(src.join("nested/util.h"), "\u{feff}#define MAX 10\n").unwrap();
    fs::write(src.join("copy.c"), "int main(void) {\n    return 0;\n}\n").unwrap();
    fs::write(src.join("blob.c"), b"\x00\x01\x02").unwrap();
    let corpus = tmp.path().join("out/repo_code.txt");
    prepare::run(PrepareArgs {
        input: vec![src.clone()],
        ext: vec!["c".into(), "h".into()],
        output: corpus.clone(),
        max_file_bytes: None,
        verbose: false,
    })
    .unwrap();
    let text = fs::read_to_string(&corpus).unwrap();
    // Sorted walk: copy.c is met first, so main.c is its duplicate.
    assert_eq!(
        text,
        "// ===== FILE: copy.c =====\nint main(void) {\n    return 0;\n}\n\
         // ===== FILE: nested/util.h =====\n#define MAX 10\n"
    );

    let out = tmp.path().join("tok");
    tokenize::run(TokenizeArgs {
        input: vec![corpus.clone()],
        output: out.clone(),
        vocab_size: 280,
    })
    .unwrap();
    let tok =
        Tokenizer::from_json(&fs::read_to_string(out.join("tokenizer.json")).unwrap()).unwrap();
    let (vocab, tokens) = read_tokens(&out.join("tokens.bin")).unwrap();
    assert_eq!(vocab as usize, tok.vocab_size());
    let files = split_consolidated(&text);
    let eot = tok.decode(&[tok.eot_id().unwrap()]);
    let joined: Vec<String> = files.into_iter().map(|(_, t)| t).collect();
    assert_eq!(tok.decode(&tokens), joined.join(&eot));

    let err = prepare::run(PrepareArgs {
        input: vec![src],
        ext: vec!["zzz".into()],
        output: tmp.path().join("none.txt"),
        max_file_bytes: None,
        verbose: false,
    })
    .unwrap_err();
    assert!(err.contains("no files kept"), "{err}");
}
