//! `cllm prepare` and `cllm tokenize` end to end on a small folder.

use std::fs;

use clap::Parser;
use cllm::cli::prepare::{self, PrepareArgs};
use cllm::cli::tokenize::{self, TokenizeArgs};
use cllm::cli::{Cli, Commands};
use cllm_data::consolidate::split_consolidated;
use cllm_data::token_file::read_tokens;
use cllm_data::tokenizer::{DEFAULT_VOCAB_SIZE, MIN_BPE_VOCAB_SIZE, Tokenizer};

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
        force: false,
        max_file_bytes: None,
        exclude: Vec::new(),
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
        ext: Vec::new(),
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
        force: false,
        max_file_bytes: None,
        exclude: Vec::new(),
        verbose: false,
    })
    .unwrap_err();
    assert!(err.contains("no files kept"), "{err}");
}

fn prepare_args(input: &std::path::Path, ext: &[&str], output: &std::path::Path) -> PrepareArgs {
    PrepareArgs {
        input: vec![input.to_path_buf()],
        ext: ext.iter().map(|e| e.to_string()).collect(),
        output: output.to_path_buf(),
        force: false,
        max_file_bytes: None,
        exclude: Vec::new(),
        verbose: false,
    }
}

#[test]
fn prepare_never_replaces_a_file_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.c"), "int a;\n").unwrap();
    let corpus = tmp.path().join("repo_code.txt");
    fs::write(&corpus, "the shipped corpus\n").unwrap();

    let err = prepare::run(prepare_args(&src, &[], &corpus)).unwrap_err();
    assert!(err.contains(&corpus.display().to_string()), "{err}");
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&corpus).unwrap(), "the shipped corpus\n");

    let mut forced = prepare_args(&src, &[], &corpus);
    forced.force = true;
    prepare::run(forced).unwrap();
    assert_eq!(
        fs::read_to_string(&corpus).unwrap(),
        "// ===== FILE: a.c =====\nint a;\n"
    );

    // The default output is the shipped corpus, so it is protected too.
    let Some(Commands::Prepare(args)) = Cli::try_parse_from(["cllm", "prepare", "--input", "src"])
        .unwrap()
        .command
    else {
        panic!("not a prepare command");
    };
    assert_eq!(
        args.output,
        std::path::Path::new("training_data/repo_code.txt")
    );
    assert!(!args.force);
}

#[test]
fn prepare_does_not_read_its_own_output_back() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), "alpha\n").unwrap();
    let corpus = src.join("corpus.txt");
    prepare::run(prepare_args(&src, &["txt"], &corpus)).unwrap();
    let mut again = prepare_args(&src, &["txt"], &corpus);
    again.force = true;
    prepare::run(again).unwrap();
    assert_eq!(
        fs::read_to_string(&corpus).unwrap(),
        "// ===== FILE: a.txt =====\nalpha\n"
    );
}

#[test]
fn extensions_and_vocabulary_are_read_like_train() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for name in ["a.c", "b.h", "c.md", "d.rs"] {
        fs::write(src.join(name), format!("// {name}\n")).unwrap();
    }
    // The forms a person types, through clap as the binary parses them.
    for ext in [&["c", "h", "md"][..], &[".c,.h,.md"], &["c, h", "md"]] {
        let out = tmp.path().join(format!(
            "out_{}.txt",
            ext.join("_").replace([',', ' ', '.'], "")
        ));
        let mut argv = vec!["cllm".to_string(), "prepare".into(), "--input".into()];
        argv.push(src.display().to_string());
        argv.push("--ext".into());
        argv.extend(ext.iter().map(|e| e.to_string()));
        argv.push("--output".into());
        argv.push(out.display().to_string());
        let Some(Commands::Prepare(args)) = Cli::try_parse_from(&argv).unwrap().command else {
            panic!("not a prepare command");
        };
        prepare::run(args).unwrap();
        let names: Vec<String> = split_consolidated(&fs::read_to_string(&out).unwrap())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["a.c", "b.h", "c.md"], "--ext {ext:?}");
    }

    // tokenize: train's default vocabulary, and its minimum.
    let Some(Commands::Tokenize(args)) = Cli::try_parse_from([
        "cllm", "tokenize", "--input", "x", "--output", "y", "--ext", "c,h",
    ])
    .unwrap()
    .command
    else {
        panic!("not a tokenize command");
    };
    assert_eq!(args.vocab_size, DEFAULT_VOCAB_SIZE);
    assert_eq!(
        args.vocab_size,
        cllm_train::config::TrainConfig::default().corpus.vocab_size
    );
    let small = TokenizeArgs {
        input: vec![src.clone()],
        ext: vec!["c".into()],
        output: tmp.path().join("tok"),
        vocab_size: MIN_BPE_VOCAB_SIZE - 1,
    };
    let err = tokenize::run(small.clone()).unwrap_err();
    assert!(
        err.contains("--vocab-size") && err.contains(&MIN_BPE_VOCAB_SIZE.to_string()),
        "{err}"
    );
    assert!(!tmp.path().join("tok").exists());
    tokenize::run(TokenizeArgs {
        vocab_size: MIN_BPE_VOCAB_SIZE,
        ext: vec![".c,.h".into()],
        ..small
    })
    .unwrap();
    let tok =
        Tokenizer::from_json(&fs::read_to_string(tmp.path().join("tok/tokenizer.json")).unwrap())
            .unwrap();
    let (_, tokens) = read_tokens(&tmp.path().join("tok/tokens.bin")).unwrap();
    let eot = tok.decode(&[tok.eot_id().unwrap()]);
    assert_eq!(tok.decode(&tokens), format!("// a.c\n{eot}// b.h\n"));
}
