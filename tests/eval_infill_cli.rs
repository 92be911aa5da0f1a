//! `cllm eval-infill` end to end: a small model written here (a BPE
//! tokenizer with the FIM tokens trained on the test's C, or bytes) fills
//! holes of a folder of C files; the JSON, the table and the samples file
//! agree, and a model without FIM tokens is measured from the prefix only
//! with a note saying infill is unavailable.

use cllm_core::{Gpt, ModelConfig};
use cllm_data::tokenizer::Tokenizer;
use cllm_memory::Memory;
use cllm_train::TrainConfig;
use cllm_train::checkpoint::{CheckpointRef, TrainingState, save};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

/// A folder of held-out C: a source file and a header with bodies, and a
/// text file the folder scan must not read.
fn write_data(dir: &Path) -> (PathBuf, Vec<String>) {
    let data = dir.join("heldout");
    std::fs::create_dir_all(&data).unwrap();
    let mut c = String::from("#include \"lib.h\"\n\n");
    for i in 0..12 {
        c.push_str(&format!(
            "int clamp_{i}(int v, int lo, int hi) {{\n    if (v < lo) {{\n        return lo;\n    }}\n    \
             for (int k = 0; k < {i}; k++) {{\n        v += k;\n    }}\n    return v > hi ? hi : v;\n}}\n\n"
        ));
    }
    let h = "static inline int twice(int x) {\n    while (x > 100) {\n        x /= 2;\n    }\n    \
             return x * 2;\n}\n"
        .to_string();
    std::fs::write(data.join("lib.c"), &c).unwrap();
    std::fs::write(data.join("lib.h"), &h).unwrap();
    std::fs::write(
        data.join("notes.txt"),
        "int not_c(void) {\n    return 1;\n}\n",
    )
    .unwrap();
    (data, vec![c, h])
}

/// A checkpoint of a freshly initialised tiny model over `tok`, with a
/// repository memory over `texts` when asked.
fn write_model(path: &Path, tok: &Tokenizer, texts: &[String], memory: bool) {
    let mut cfg = ModelConfig::preset("tiny").unwrap();
    cfg.vocab_size = tok.vocab_size().max(256);
    cfg.n_ctx = 128;
    let model = Gpt::new(cfg, 9).unwrap();
    let memory = memory.then(|| {
        let tokens: Vec<u32> = texts.iter().flat_map(|t| tok.encode(t)).collect();
        Memory::build(tokens, model.config.vocab_size).to_bytes()
    });
    save(
        path,
        &CheckpointRef {
            model: &model.config,
            params: &model.params,
            optimizer: None,
            tokenizer_json: &tok.to_json(),
            train_config: &TrainConfig::default(),
            state: &TrainingState::start(),
            memory: memory.as_deref(),
        },
    )
    .unwrap();
}

fn cllm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cllm"))
        .args(args)
        .output()
        .expect("run cllm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_str(&text(&out.stdout))
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", text(&out.stdout)))
}

fn samples(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every cell's figures are those of its lines in the samples file.
fn assert_cells_match_samples(report: &Value, lines: &[Value]) {
    for cell in report["cells"].as_array().unwrap() {
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| l["kind"] == cell["kind"] && l["mode"] == cell["mode"])
            .filter(|l| l["memory"] == cell["memory"])
            .collect();
        assert_eq!(
            cell["count"].as_u64().unwrap() as usize,
            mine.len(),
            "{cell}"
        );
        let share = |key: &str| {
            mine.iter().filter(|l| l[key] == true).count() as f64 / mine.len().max(1) as f64
        };
        assert!((cell["exact_match"].as_f64().unwrap() - share("exact")).abs() < 1e-9);
        assert!((cell["parse_rate"].as_f64().unwrap() - share("parses")).abs() < 1e-9);
        let es: f64 = mine
            .iter()
            .map(|l| l["edit_similarity"].as_f64().unwrap())
            .sum::<f64>()
            / mine.len().max(1) as f64;
        assert!((cell["edit_similarity"].as_f64().unwrap() - es).abs() < 1e-9);
    }
}

#[test]
fn eval_infill_scores_each_way_with_and_without_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (data, texts) = write_data(dir.path());
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tok = Tokenizer::train_bpe(&refs, 320, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
    assert!(tok.fim_tokens().is_some());
    let model = dir.path().join("fim.cllm");
    write_model(&model, &tok, &texts, true);
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());

    let args = [
        "eval-infill",
        "--model",
        m,
        "--data",
        d,
        "--holes",
        "3",
        "--seed",
        "5",
        "--json",
    ];
    let out = cllm(&args);
    let report = json_of(&out);
    assert_eq!(report["infill_available"], true, "{report}");
    assert_eq!(report["infill_note"], Value::Null);
    assert_eq!(report["memory"], true);
    assert_eq!(report["documents"], 2, "notes.txt is not C: {report}");
    assert_eq!(report["holes"]["single_line"], 3);
    assert_eq!(report["holes"]["block"], 3);
    assert_eq!(report["n_ctx"], 128);
    assert_eq!(report["max_tokens"]["block"], 32);
    for key in [
        "functions",
        "candidates",
        "seed",
        "samples_file",
        "model",
        "data",
    ] {
        assert!(!report[key].is_null(), "{key} missing: {report}");
    }
    let cells = report["cells"].as_array().unwrap();
    let mut ways: Vec<String> = cells
        .iter()
        .map(|c| format!("{} {} {}", c["kind"], c["mode"], c["memory"]))
        .collect();
    ways.sort();
    ways.dedup();
    assert_eq!(
        ways.len(),
        8,
        "2 kinds x 2 modes x 2 memory settings: {ways:?}"
    );
    for cell in cells {
        assert_eq!(cell["count"], 3, "{cell}");
        for key in [
            "exact_match",
            "edit_similarity",
            "parse_rate",
            "mean_tokens",
            "empty",
        ] {
            assert!(cell[key].is_number(), "{key}: {cell}");
        }
    }
    let samples_file = PathBuf::from(report["samples_file"].as_str().unwrap());
    assert_eq!(samples_file, dir.path().join("fim-eval-infill.jsonl"));
    let lines = samples(&samples_file);
    assert_eq!(lines.len(), 24);
    assert_cells_match_samples(&report, &lines);
    // The same draw and greedy fills on a second run.
    assert_eq!(json_of(&cllm(&args))["cells"], report["cells"]);

    // The table, model only: one row per kind, a group per way of asking.
    let out = cllm(
        &args[..args.len() - 1]
            .iter()
            .chain(&["--memory", "off"])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for needle in [
        "3 single-line and 3 block holes from 2 files",
        "with suffix, model only",
        "prefix only, model only",
        "single-line",
        "block",
        "exact match with the suffix over the prefix only (model only)",
        "fim-eval-infill.jsonl",
    ] {
        assert!(table.contains(needle), "{needle:?} not in:\n{table}");
    }
    assert!(
        !table.contains("memory |") && !table.contains(", memory"),
        "{table}"
    );
    assert_eq!(samples(&samples_file).len(), 12);
}

#[test]
fn a_model_without_fim_tokens_is_measured_from_the_prefix_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (data, texts) = write_data(dir.path());
    let model = dir.path().join("bytes.cllm");
    write_model(&model, &Tokenizer::bytes(), &texts, false);
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let base = ["eval-infill", "--model", m, "--data", d, "--holes", "2"];

    let out = cllm(&[&base[..], &["--json"]].concat());
    let report = json_of(&out);
    assert_eq!(report["infill_available"], false);
    let note = report["infill_note"].as_str().unwrap();
    assert!(note.contains("infill is unavailable"), "{note}");
    assert!(text(&out.stderr).contains("infill is unavailable"));
    assert_eq!(report["memory"], false, "the model carries none");
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    assert!(
        cells
            .iter()
            .all(|c| c["mode"] == "prefix_only" && c["count"] == 2)
    );

    let out = cllm(&base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.contains("infill is unavailable"), "{table}");
    assert!(table.contains("carries no repository memory"), "{table}");
    assert!(table.contains("prefix only, model only"), "{table}");
    assert!(!table.contains("with suffix"), "{table}");

    // Data with no function bodies is refused with what was found.
    let empty = dir.path().join("decls.h");
    std::fs::write(&empty, "int f(void);\n").unwrap();
    let out = cllm(&[
        "eval-infill",
        "--model",
        m,
        "--data",
        empty.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no holes to fill"),
        "{}",
        text(&out.stderr)
    );
}
